"""Studies from the command line: `study` trains one in the foreground, `submit --study` queues one, `status` and
`compare --study` read one back; refusals in one plain line. The studies train the tiny BERT for one epoch on one
seed, two values each (what they find is tests/test_studies.py's; here: the command around it). The learning-rate
study runs as a user types it (`python -m core`); the others call the command's `main` in this process, which saves
each a process start (its runs train in their own processes all the same)."""

from __future__ import annotations

import json
import re
import statistics

import psutil
import pytest

from core import cli
from core.results import studies as found
from core.store.db import Metric, Run, RunStatus, Study, session_factory
from core.training.config import DEFAULT_LEARNING_RATES
from tests.helpers import core_command

QUICK = ["--epochs", "1", "--batch-size", "32", "--max-length", "16", "--seeds", "1"]
KEYS = {"study", "vary", "points", "verdict", "status", "sentence", "notes"}


def _main(settings, capsys, *args: str) -> tuple[int, str, str]:
    """`python -m core ARGS --db URL` in this process: (exit status, stdout, stderr)."""
    code = cli.main([*args, "--db", settings.db_url])
    out = capsys.readouterr()
    return code, out.out, out.err


def _data(folder, model) -> list[str]:
    return [*(f"--{s}={folder / f'{s}.csv'}" for s in ("train", "dev", "test")), "--model", model]


def _study(settings, study_id) -> tuple[Study, list[Run]]:
    with session_factory(settings.db_url)() as s:
        study = s.get(Study, study_id)
        s.expunge(study)
        runs = found.study_runs(s, study_id)
        s.expunge_all()
    return study, runs


def _check_points(out: dict, study: Study, runs: list[Run]) -> None:
    """Each point of the JSON object holds the runs of its value and method, and their mean scores."""
    tried = [r for r in runs if r.study_role != "final"]
    assert sorted(i for p in out["points"] for i in p["runs"]) == sorted(r.id for r in tried)
    for point in out["points"]:
        assert set(point) == {"value", "method", "runs", "dev", "test", "stopped_early"}
        members = [r for r in tried if r.id in point["runs"]]
        assert {(found.value_of(study, r), r.method) for r in members} == {(point["value"], point["method"])}
        assert point["test"]["accuracy"] == pytest.approx(
            statistics.fmean(r.test_metrics["accuracy"] for r in members)
        )
        assert point["stopped_early"] == any(r.stopped_early for r in members)
        assert set(point["dev"]) == {"accuracy", "f1_macro"} and point["dev"]["accuracy"] is not None


def test_a_learning_rate_study_trains_in_the_foreground_and_prints_one_json_object(
    settings, csv_folder, tiny_model, capsys
):
    out = core_command(
        settings, "study", "--vary", "lr", "--lr-full", "1e-6", "--lr-lora", "1e-6", *_data(csv_folder, tiny_model),
        *QUICK, "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert set(summary) == KEYS | {"best", "default_verdict"}
    study, runs = _study(settings, summary["study"])
    assert summary["vary"] == study.vary == "lr"
    assert study.grid["full"] == [1e-6, DEFAULT_LEARNING_RATES["full"]], "the default rate joins the grid"
    assert study.grid["lora"] == [1e-6, DEFAULT_LEARNING_RATES["lora"]]
    assert summary["status"] == {"completed": 6} and {r.status for r in runs} == {"completed"}
    _check_points(summary, study, runs)
    finals = [r for r in runs if r.study_role == "final"]
    for method in ("full", "lora"):
        best = summary["best"][method]
        point = next(p for p in summary["points"] if p["method"] == method and p["value"] == best["value"])
        assert best["dev"] == point["dev"]["accuracy"]
        assert [r.config["learning_rate"] for r in finals if r.method == method] == [best["value"]]
    assert {r.config["seed"] for r in finals} == {43}, "the chosen rates train on a fresh seed"
    assert sorted(sum(summary["verdict"]["runs"], [])) == sorted(r.id for r in finals)
    defaults = sorted(r.id for r in runs if r.study_role == "default")
    assert sorted(sum(summary["default_verdict"]["runs"], [])) == defaults
    # Progress on stderr: the estimate, each run as it starts (oldest first), each method's choice
    assert f"study {study.id}: about 6 runs, at most" in out.stderr
    started = [line for line in out.stderr.splitlines() if line.endswith("...")]
    assert started[0] == f"run {defaults[0]}: training (full, lr 5e-05, seed 42) ..."
    assert [int(line.split(":")[0].removeprefix("run ")) for line in started] == sorted(r.id for r in runs)
    assert "full's best rate on the dev set is" in out.stderr and "lora's best rate on the dev set is" in out.stderr

    # status and compare take the study's id: the same object
    for command in ("status", "compare"):
        code, stdout, _ = _main(settings, capsys, command, "--study", str(study.id), "--json")
        assert code == 0 and json.loads(stdout) == summary
    code, stdout, _ = _main(settings, capsys, "compare", "--study", str(study.id))
    assert code == 0
    assert f"verdict each at its best rate on dev: {summary['verdict']['lines'][1]}" in stdout.splitlines()
    assert f"verdict at the default rates: {summary['default_verdict']['lines'][1]}" in stdout.splitlines()


def test_a_size_study_prints_its_points_and_a_verdict_per_size(settings, csv_folder, tiny_model, capsys):
    code, stdout, stderr = _main(
        settings, capsys, "study", "--vary", "train_size", "--values", "12,96", *_data(csv_folder, tiny_model), *QUICK,
        "--json",
    )  # fmt: skip
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert set(summary) == KEYS
    study, runs = _study(settings, summary["study"])
    assert summary["vary"] == "train_size" and summary["status"] == {"completed": 4}
    _check_points(summary, study, runs)
    assert [(p["value"], p["method"]) for p in summary["points"]] == [
        (12, "full"),
        (12, "lora"),
        (96, "full"),
        (96, "lora"),
    ]
    assert {(r.method, r.config["learning_rate"]) for r in runs} == set(DEFAULT_LEARNING_RATES.items())
    assert [v["value"] for v in summary["verdict"]] == [12, 96]
    for verdict in summary["verdict"]:
        pair = [r.id for r in runs if r.config["train_rows"] == verdict["value"]]
        assert sum(verdict["runs"], []) == pair
    assert "run 1: training (full, 12 training rows, lr 5e-05, seed 42) ..." in stderr


def test_a_rank_study_in_words_then_its_status(settings, csv_folder, tiny_model, capsys):
    code, stdout, stderr = _main(
        settings, capsys, "study", "--vary", "lora_rank", "--values", "1,4", *_data(csv_folder, tiny_model), *QUICK
    )
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].startswith("Study #1 · LoRA rank · ")
    assert lines[1].startswith("LoRA's best rank, r = ")  # the sentence
    table = [re.split(r"\s{2,}", line) for line in lines[2:6]]
    assert table[0] == ["LoRA rank", "method", "dev acc", "test acc", "stopped early"]
    assert [row[:2] for row in table[1:]] == [["—", "full"], ["r = 1", "lora"], ["r = 4", "lora"]]
    assert [line.split(":")[0] for line in lines[6:]] == ["verdict at r = 1", "verdict at r = 4"]
    assert "run 2: training (lora, r = 1, lr 0.001, seed 42) ..." in stderr
    # As in the worker, each run after the first takes a process started ahead; none is left waiting afterwards
    _, runs = _study(settings, 1)
    assert max(r.stage_seconds["start"] for r in runs[1:]) < 0.5, [r.stage_seconds for r in runs]
    assert not [p for p in psutil.Process().children(recursive=True) if "--standby" in p.cmdline()]

    code, stdout, _ = _main(settings, capsys, "status", "--study", "1")
    assert code == 0
    assert "3 of about 3 runs recorded: 3 completed" in stdout
    assert "  run 3: completed (lora, r = 4, lr 0.001, seed 42), test accuracy " in stdout


def test_submit_a_study_queues_its_runs_and_prints_its_id(settings, csv_folder, tiny_model, capsys):
    code, stdout, stderr = _main(
        settings, capsys, "submit", "--study", "--vary", "lora_rank", "--values", "1,4",
        *_data(csv_folder, tiny_model), *QUICK, "--json",
    )  # fmt: skip
    assert code == 0, stderr
    queued = json.loads(stdout)
    assert set(queued) == {"study", "runs"}
    study, runs = _study(settings, queued["study"])
    assert queued["runs"] == [r.id for r in runs] and len(runs) == 3
    assert {r.status for r in runs} == {"queued"} and study.vary == "lora_rank"
    assert "python -m core worker" in stderr, "no worker runs here: it says how to start one"

    code, stdout, _ = _main(settings, capsys, "status", "--study", str(study.id), "--json")
    assert code == 0 and json.loads(stdout)["status"] == {"queued": 3}
    code, stdout, stderr = _main(
        settings, capsys, "submit", "--study", "--vary", "lr", *_data(csv_folder, tiny_model), *QUICK
    )
    assert code == 0, stderr
    assert stdout.strip() == str(study.id + 1)
    _, runs = _study(settings, study.id + 1)
    assert len(runs) == 10, "five rates a method; the final seeds are queued once the rates have ended"


@pytest.mark.parametrize(
    "args, said",
    [
        (["study", "--vary", "lr", "--values", "1,2"], "--values is for --vary train_size or lora_rank"),
        (["study", "--vary", "train_size", "--lr-full", "1e-4"], "--lr-full gives the rates a learning-rate study"),
        (["study", "--vary", "lora_rank", "--values", "2.5"], "--values takes whole numbers with --vary lora_rank"),
        (["study", "--vary", "lr", "--lr", "1e-4"], "--lr names no method"),
        (["study", "--vary", "lr", "--method", "full"], "leave out --method"),
        (["study", "--vary", "lr", "--repeats", "2"], "a study takes --seeds N"),
        (["study", "--vary", "epochs"], "A study needs --vary: one of lr, train_size, lora_rank, not 'epochs'."),
        (["study"], "A study needs --vary"),
        (["submit", "--vary", "lr"], "--vary is for a study: add --study"),
        (["submit", "--json"], "--json is for --study"),
        (["train", "--pair", "--lr-full", "1e-4,2e-4"], "rates to try make a study"),
        (["status", "--study", "7", "3"], "Give a run id or --study ID, not both."),
        (["status", "--study", "7"], "There is no study 7."),
        (["compare", "--study", "7"], "There is no study 7."),
        (["compare"], "Give one comparison group id, two or more run ids, or --study ID."),
    ],
)
def test_a_refusal_is_one_plain_line(settings, capsys, args, said):
    assert cli.main([*args, "--db", settings.db_url]) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1, err


def test_a_refused_study_records_nothing(settings, csv_folder, tiny_model, capsys):
    for args, said in [
        (["--vary", "train_size", "--values", "2,50"], "Training-set sizes must be between 3"),
        (["--vary", "lr", "--seeds", "9"], "Seeds must be between 1 and"),
        (["--vary", "lr", "--lr-lora", "2"], "Learning rates must be more than 0 and less than 1."),
    ]:
        assert cli.main(["study", *args, *_data(csv_folder, tiny_model), "--db", settings.db_url]) == 2
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1, err
    # Settings that cannot train: refused in train's words (one line for each problem)
    assert (
        cli.main(["study", "--vary", "lr", "--epochs", "0", *_data(csv_folder, tiny_model), "--db", settings.db_url])
        == 2
    )
    assert "The settings were refused:\n- Epochs must be more than 0" in capsys.readouterr().err
    with session_factory(settings.db_url)() as s:
        assert s.query(Study).count() == 0 and s.query(Run).count() == 0


def _finish(settings, run_id: int, status=RunStatus.COMPLETED) -> None:
    """What a finished run writes, without training: its dev evaluation and test scores (dev: 0.9 at the default
    rates, less the further a rate is from them); rates under 1e-5 are stopped early."""
    with session_factory(settings.db_url)() as s:
        run = s.get(Run, run_id)
        rate = run.config["learning_rate"]
        dev = 0.9 if rate == DEFAULT_LEARNING_RATES[run.method] else 0.5
        s.add_all(
            [
                Metric(run_id=run_id, step=2, epoch=1, name="eval_loss", value=1 - dev),
                Metric(run_id=run_id, step=2, epoch=1, name="eval_accuracy", value=dev),
            ]
        )
        run.status, run.test_metrics = status.value, {"accuracy": dev, "f1_macro": dev}
        run.step, run.total_steps = (1, 4) if rate < 1e-5 else (4, 4)
        run.stopped_early = rate < 1e-5
        if status != RunStatus.COMPLETED:
            run.error = "Out of memory."
        s.commit()


def test_the_foreground_loop_advances_the_study_says_what_stopped_and_cancels_on_ctrl_c(
    settings, csv_folder, tiny_model, capsys, monkeypatch
):
    from core.jobs import worker

    trained = []

    def supervise(settings_, run_id, warm=None):
        trained.append(run_id)
        _finish(settings_, run_id)

    monkeypatch.setattr(worker, "supervise", supervise)
    args = ["study", "--vary", "lr", "--lr-full", "1e-6", "--lr-lora", "3e-3", *_data(csv_folder, tiny_model)]
    assert cli.main([*args, "--seeds", "2", "--db", settings.db_url]) == 0
    err = capsys.readouterr().err
    study, runs = _study(settings, 1)
    assert trained == [r.id for r in runs] and len(runs) == 8, "every run, oldest first, the final seeds too"
    assert [(r.method, r.config["seed"]) for r in runs if r.study_role == "final"] == [
        ("full", 43),
        ("full", 44),
        ("lora", 43),
        ("lora", 44),
    ]
    assert "run 3: stopped early at step 1 of 4: its dev loss was clearly behind the other rates" in err
    assert "study 1: full's best rate on the dev set is 5e-05; training it on 2 fresh seeds" in err

    def interrupted(settings_, run_id, warm=None):  # Ctrl+C on the second run: it ends cancelled, as supervise has it
        if run_id == first + 1:
            _finish(settings_, run_id, RunStatus.CANCELLED)
            raise KeyboardInterrupt
        _finish(settings_, run_id)

    monkeypatch.setattr(worker, "supervise", interrupted)
    first = runs[-1].id + 1
    assert cli.main([*args, "--db", settings.db_url]) == 130
    assert "study 2: cancel requested" in capsys.readouterr().err
    _, runs = _study(settings, 2)
    assert [r.status for r in runs] == ["completed", "cancelled", "cancelled", "cancelled"]

    def failing(settings_, run_id, warm=None):
        _finish(settings_, run_id, RunStatus.FAILED if run_id == first else RunStatus.COMPLETED)

    monkeypatch.setattr(worker, "supervise", failing)
    first = runs[-1].id + 1
    assert cli.main(["study", "--vary", "lora_rank", "--values", "2", *_data(csv_folder, tiny_model), "--seeds", "1",
                     "--db", settings.db_url]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert f"run {first}: failed: Out of memory." in err
