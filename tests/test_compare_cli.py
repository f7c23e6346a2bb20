"""Comparison groups from the command line: `train` / `submit --pair --repeats N`, and `compare --json`."""

from __future__ import annotations

import json

import pytest

from tests.comparing import comparison, single, store_dataset
from tests.test_cli import cli, split_args


def test_train_a_pair_with_two_repeats_then_compare_the_group(settings, csv_folder, tiny_model):
    out = cli(
        "train",
        *split_args(csv_folder),
        "--pair",
        "--repeats",
        "2",
        "--model",
        tiny_model,
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--seed",
        "7",
        "--json",
        settings=settings,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    runs = result["runs"]
    assert [(r["method"], r["config"]["seed"]) for r in runs] == [("full", 7), ("lora", 7), ("full", 8), ("lora", 8)]
    assert {r["status"] for r in runs} == {"completed"} and {r["group"] for r in runs} == {result["group"]}

    out = cli("compare", str(result["group"]), "--json", settings=settings)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["verdict"] in ("lora_better", "full_better", "no_difference", "too_few")
    assert answer["metric"] == "accuracy" and answer["seeds"] == 2 and answer["test_size"] == 24
    assert answer["mcnemar_p"] is None, "McNemar's test is for one pair"
    low, high = answer["ci95_points"]
    assert low <= answer["difference_points"] <= high
    assert set(answer["costs"]) == {"time", "peak_memory", "trainable_weights", "disk"}
    assert 0 < answer["costs"]["trainable_weights"] < 1, "LoRA trains a small share of the weights"


def test_submit_a_pair_with_repeats_prints_the_group(settings, csv_folder, tiny_model):
    out = cli("submit", *split_args(csv_folder), "--pair", "--repeats", "3", "--model", tiny_model, settings=settings)
    assert out.returncode == 0, out.stderr
    group = out.stdout.strip()
    statuses = [json.loads(cli("status", str(i), "--json", settings=settings).stdout) for i in range(1, 7)]
    assert {s["group"] for s in statuses} == {int(group)} and {s["status"] for s in statuses} == {"queued"}
    assert [s["config"]["seed"] for s in statuses] == [42, 42, 43, 43, 44, 44]
    out = cli("compare", group, settings=settings)
    assert out.returncode == 2 and "no pair whose two runs both completed" in out.stderr

    out = cli("submit", *split_args(csv_folder), "--repeats", "2", "--model", tiny_model, settings=settings)
    assert out.returncode == 2 and "--repeats needs --pair" in out.stderr


def test_compare_a_pair_json_and_refusals(settings, tmp_path):
    dataset = store_dataset(settings, tmp_path / "a", n_test=60)
    group, (full, lora) = comparison(settings, dataset, [(set(range(0, 12)), set(range(0, 3)))])
    out = cli("compare", str(group), "--json", settings=settings)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["verdict"] == "lora_better" and answer["difference_points"] == 15.0
    assert answer["mcnemar_p"] == 2 / 2**9, "9 texts only LoRA got right, none the other way"
    costs = {"time": 0.5, "peak_memory": 600 / 900, "trainable_weights": 0.005, "disk": 0.025}
    assert answer["costs"] == pytest.approx(costs, abs=1e-6)
    assert json.loads(cli("compare", str(full), str(lora), "--json", settings=settings).stdout) == answer

    printed = cli("compare", str(group), settings=settings).stdout.splitlines()
    assert printed[:4] == answer["lines"], "the same words as the Compare page's verdict card"
    assert printed[0] == "Test accuracy: full fine-tuning 80.0 %, LoRA 95.0 %."
    assert printed[1].startswith("LoRA is better by 15.0 points (95 % interval ")
    assert printed[-1] == (
        "Against full fine-tuning, LoRA took 0.50x the training time, trained 2.00x as many texts per second, used "
        "0.67x the memory, trained 1/200 of the weights and saved 1/40 the disk space."
    )

    other = store_dataset(settings, tmp_path / "b", n_test=30, name="other")
    elsewhere = single(settings, other, set())
    for args, message in (
        ((str(full), str(elsewhere)), "different test sets"),
        (("99",), "There is no comparison group 99"),
        ((str(full), "99"), "There is no run 99"),
        (("x1",), "whole numbers"),
    ):
        out = cli("compare", *args, settings=settings)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)


def test_compare_a_group_pairs_only_runs_launched_together_as_the_page_does(settings, tmp_path):
    """A group of two seeds with some runs failed: `compare GROUP` compares the pairs whose two runs both completed,
    the pairs the Compare page shows, and never a full run of one seed against a LoRA run of another."""
    from core.jobs.runs import create_comparison
    from core.results import comparisons
    from core.store.db import Dataset, RunStatus, session_factory
    from core.training import models
    from core.training.config import TrainConfig
    from tests.comparing import complete

    dataset = store_dataset(settings, tmp_path / "a", n_test=30)
    for failed in ({3}, {1, 2}):  # positions in the group: full 42, LoRA 42, full 43, LoRA 43
        with session_factory(settings.db_url)() as s:
            group, runs = create_comparison(s, s.get(Dataset, dataset.id), models.BUNDLED, TrainConfig(), repeats=2)
            for k, run in enumerate(runs):
                if k in failed:
                    run.status = RunStatus.FAILED.value
                    s.commit()
                else:
                    complete(s, settings, run, set())
            ids = [r.id for r in runs]
            page = [[a.id, b.id] for a, b in comparisons.completed_pairs(comparisons.group_runs(s, group.id))]
        out = cli("compare", str(group.id), "--json", settings=settings)
        if page:
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)["runs"] == page == [ids[:2]]
        else:
            assert out.returncode == 2 and "no pair whose two runs both completed" in out.stderr, out.stdout


def test_the_verdicts_macro_f1_is_each_runs_own_when_the_test_set_lacks_a_class(settings, tmp_path):
    """One Compare page, one macro-F1: the verdict scores each run as its recorded test results do."""
    from core.results import comparisons
    from core.results.tables import runs_by_id
    from core.store.db import session_factory

    dataset = store_dataset(settings, tmp_path / "a", n_test=20, test_classes=2)  # no "tech" in the test set
    group, ids = comparison(settings, dataset, [(set(range(6)), set())])  # LoRA perfect; full wrong on six texts
    with session_factory(settings.db_url)() as s:
        full, lora = runs_by_id(s, ids)
        result, _ = comparisons.compute_verdict(s, [(full, lora)], resamples=200)
        recorded = [100 * r.test_metrics["f1_macro"] for r in (full, lora)]
    assert recorded[1] == 100.0
    assert (result.f1_macro.a, result.f1_macro.b) == ([pytest.approx(recorded[0])], [pytest.approx(recorded[1])])
    out = cli("compare", str(group), "--json", settings=settings)
    assert json.loads(out.stdout)["f1_macro"]["difference_points"] == pytest.approx(
        recorded[1] - recorded[0], abs=1e-4
    )


def test_a_pair_takes_each_methods_rate_and_refuses_a_bare_lr(settings, csv_folder, tiny_model):
    """`--pair --lr X` does not say which method X is for: refused in one line naming the two flags."""
    for command in ("submit", "train", "estimate"):
        out = cli(command, *split_args(csv_folder), "--pair", "--lr", "2e-5", "--model", tiny_model, settings=settings)
        assert out.returncode == 2, (command, out.stdout, out.stderr)
        assert "--lr-full" in out.stderr and "--lr-lora" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = cli("submit", *split_args(csv_folder), "--pair", "--method", "full", settings=settings)
    assert out.returncode == 2 and "leave out --method" in out.stderr, out.stderr
    status = json.loads(cli("status", "1", "--json", settings=settings).stdout or "{}")
    assert status.get("status") is None, "nothing was queued"

    out = cli(
        "submit", *split_args(csv_folder), "--pair", "--lr-full", "3e-5", "--lr-lora", "2e-3", "--model", tiny_model,
        settings=settings,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rates = [json.loads(cli("status", str(i), "--json", settings=settings).stdout)["config"] for i in (1, 2)]
    assert [(c["method"], c["learning_rate"]) for c in rates] == [("full", 3e-5), ("lora", 2e-3)]
    out = cli(
        "submit", *split_args(csv_folder), "--pair", "--lr-full", "3e-5", "--model", tiny_model, settings=settings
    )
    rates = [json.loads(cli("status", str(i), "--json", settings=settings).stdout)["config"] for i in (3, 4)]
    assert [c["learning_rate"] for c in rates] == [3e-5, 1e-3], "LoRA keeps its default"

    out = cli("submit", *split_args(csv_folder), "--lr-lora", "2e-3", "--model", tiny_model, settings=settings)
    assert out.returncode == 2 and "--lr-lora is for --pair" in out.stderr, out.stderr
    out = cli("submit", *split_args(csv_folder), "--lr", "2e-3", "--model", tiny_model, settings=settings)
    assert out.returncode == 0, out.stderr
    assert json.loads(cli("status", "5", "--json", settings=settings).stdout)["config"]["learning_rate"] == 2e-3


def test_the_page_the_cli_and_a_group_in_training_pair_runs_by_one_rule():
    """launched_pairs decides which runs pair; pairs_of and completed_pairs only choose among its pairs."""
    from core.results import comparisons
    from core.store.db import Run, RunStatus

    def run(i, pair, method, seed, status=RunStatus.COMPLETED):
        return Run(id=i, pair_id=pair, method=method, config={"seed": seed}, status=status.value)

    runs = [
        run(1, "b", "lora", 43),
        run(2, "a", "lora", 42),
        run(3, "a", "full", 42),
        run(4, "b", "full", 43, RunStatus.RUNNING),
    ]
    ids = lambda pairs: [(a.id, b.id) for a, b in pairs]  # noqa: E731
    assert ids(comparisons.launched_pairs(runs)) == [(3, 2), (4, 1)]
    assert ids(comparisons.pairs_of(runs)) == [(3, 2), (4, 1)]
    assert ids(comparisons.completed_pairs(runs)) == [(3, 2)], "a pair counts once both its runs completed"
    assert ids(comparisons.pairs_of(runs[:3])) == [], "a run outside a launched pair: no verdict for three runs"
    assert ids(comparisons.pairs_of([runs[0], runs[1]])) == [(1, 2)], "any two runs pair, the older first"
    assert ids(comparisons.pairs_of([runs[1], run(5, None, "full", 7)])) == [(5, 2)], "full fine-tuning first"
