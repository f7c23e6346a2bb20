"""Studies (core.jobs.studies, core.results.studies, core.training.pruning): the pruner, the choice on dev, nested
subsets, fresh seeds for the tuned verdict, and each kind of study trained end to end on the tiny BERT."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.splitting import nested_rows
from core.jobs import studies
from core.jobs.runs import ConfigError
from core.results import studies as found
from core.store.db import Metric, Run, RunStatus, Study, session_factory
from core.training.config import TrainConfig
from core.training.pruning import PRUNE_AT, rung_step, stopped_by_pruner
from core.training.train import train_run
from tests.helpers import get_run, start_worker, store, wait_for


def test_nested_rows_hold_every_class_and_each_smaller_set():
    rng = np.random.default_rng(3)
    labels = rng.choice(5, size=997, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    sizes = [5, 20, 100, 250, 500, 997]
    subsets = [set(nested_rows(labels, n)) for n in sizes]
    for n, rows in zip(sizes, subsets):
        assert len(rows) == n
        assert set(labels[list(rows)]) == set(range(5))  # every class, from the smallest size on
    for small, large in zip(subsets, subsets[1:]):
        assert small <= large
    shares = np.bincount(labels[list(subsets[3])], minlength=5) / 250
    assert np.allclose(shares, np.bincount(labels, minlength=5) / len(labels), atol=1 / 250 + 1e-9)
    assert subsets[-1] == set(range(997))
    assert list(nested_rows(labels, 100)) == list(nested_rows(labels, 100))  # the same rows every time


def test_the_pruner_stops_the_worst_rates_and_never_the_best():
    # Five rates reporting their dev loss at steps 2 and 4 (the rung: step 2); run 1, the default rate, never stops.
    at_rung = {1: 0.60, 2: 0.90, 3: 0.45, 4: 1.20, 5: 0.30}
    reports = []
    for run_id, loss in at_rung.items():
        reports.append((run_id, 2, loss))
        if not stopped_by_pruner(reports, run_id, first_rung=2, never_stop={1}):
            reports.append((run_id, 4, loss - 0.05))
    stopped = {r for r in at_rung if stopped_by_pruner(reports, r, first_rung=2, never_stop={1})}
    assert stopped == {2, 4}  # behind the best so far at the rung: a higher loss
    assert 5 not in stopped and 3 not in stopped
    # The default rate is judged (it counts as a competitor) but never stopped, even when it is the worst.
    assert not stopped_by_pruner([(9, 2, 0.2), (1, 2, 1.5)], 1, first_rung=2, never_stop={1})
    assert stopped_by_pruner([(9, 2, 0.2), (1, 2, 1.5)], 1, first_rung=2)
    assert not stopped_by_pruner([(9, 2, 0.2), (1, 1, 1.5)], 1, first_rung=2)  # before the rung: nothing is judged


def test_the_pruner_judges_dev_loss_where_accuracy_cannot_tell_the_rates_apart(settings, csv_folder):
    """Early in training most rates sit at the majority class's accuracy; the loss already ranks them. The reports
    the pruner reads are the runs' dev losses (study_reports), and a lower one goes on."""
    from core.training.pruning import study_reports

    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        study = _lr_study(s, dataset, {"full": [5e-5], "lora": [1e-3, 3e-3]}, seeds=1, first_seed=7)
        default = _record(s, study, dataset, "default", "lora", 1e-3, 7, dev_acc=0.5, test_acc=0.5)
        grid = _record(s, study, dataset, "grid", "lora", 3e-3, 7, dev_acc=0.5, test_acc=0.5)
        _record(s, study, dataset, "default", "full", 5e-5, 7, dev_acc=0.5, test_acc=0.5)  # another method's
        reports, never_stop = study_reports(s, grid)
    # _record's two evaluations a run: losses 0.4 and 0.9, accuracies beside them (not reported)
    assert reports == [(default.id, 5, 0.4), (default.id, 10, 0.9), (grid.id, 5, 0.4), (grid.id, 10, 0.9)]
    assert never_stop == {default.id}
    # Three LoRA rates at a quarter of 2 epochs on a 10-class Chinese set (bench/study_bench.py's ecdt_zh): the same
    # accuracy, 23.0 %, for all three; their losses 2.696 (the default), 2.921 and 2.593 (the rate that ends best).
    reports = [(1, 23, 2.696), (2, 23, 2.921), (3, 23, 2.593)]
    assert stopped_by_pruner(reports[:2], 2, first_rung=23, never_stop={1})
    assert not stopped_by_pruner(reports, 3, first_rung=23, never_stop={1})


def test_the_rung_is_the_evaluation_nearest_a_quarter_of_the_training():
    assert rung_step(max_steps=100, eval_steps=25) == 25
    assert rung_step(max_steps=100, eval_steps=10) == 20  # 25 % lies between 20 and 30: the nearer, rounding half even
    assert rung_step(max_steps=94, eval_steps=23) == 23  # 2 epochs of 47 steps, 2 evaluations an epoch
    assert rung_step(max_steps=400, eval_steps=30) == 90
    assert rung_step(max_steps=10, eval_steps=20) == 20  # one evaluation: at its end, nothing is stopped


def _record(session, study, dataset, role, method, lr, seed, dev_acc, test_acc, status="completed"):
    """A run of the study as if trained: its dev evaluations and test scores written as a finished run writes them."""
    config = TrainConfig(method=method, learning_rate=lr, seed=seed)
    run = Run(
        dataset_id=dataset.id,
        dataset_name=dataset.name,
        method=method,
        model_source="m",
        config=config.to_dict(),
        status=status,
        study_id=study.id,
        study_role=role,
        test_metrics={"accuracy": test_acc, "f1_macro": test_acc},
    )
    session.add(run)
    session.flush()
    # Two evaluations: the kept one (lowest loss) has dev_acc; the other a higher accuracy at a higher loss.
    session.add_all(
        [
            Metric(run_id=run.id, step=5, epoch=1, name="eval_loss", value=0.4),
            Metric(run_id=run.id, step=5, epoch=1, name="eval_accuracy", value=dev_acc),
            Metric(run_id=run.id, step=10, epoch=2, name="eval_loss", value=0.9),
            Metric(run_id=run.id, step=10, epoch=2, name="eval_accuracy", value=0.99),
        ]
    )
    session.commit()
    return run


def _lr_study(session, dataset, grid: dict, seeds: int, first_seed: int) -> Study:
    """A learning-rate study recorded as create_study records one (default rates 5e-5 and 1e-3), without its runs."""
    study = Study(
        vary="lr",
        dataset_id=dataset.id,
        dataset_name=dataset.name,
        model_source="m",
        config=TrainConfig(seed=first_seed).to_dict(),
        grid={**grid, "default": {"full": 5e-5, "lora": 1e-3}},
        seeds=seeds,
        first_seed=first_seed,
    )
    session.add(study)
    session.flush()
    return study


def test_two_processes_advancing_one_study_at_once_queue_each_final_once(settings, csv_folder, monkeypatch):
    """A worker advances the study while another is half way through advancing it (between its queued runs, where it
    holds no lock): each method's chosen rate is trained on each fresh seed once, not twice."""
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        study = _lr_study(s, dataset, {"full": [5e-5, 1e-4], "lora": [1e-3, 3e-3]}, seeds=3, first_seed=7)
        _record(s, study, dataset, "default", "full", 5e-5, 7, dev_acc=0.70, test_acc=0.90)
        _record(s, study, dataset, "grid", "full", 1e-4, 7, dev_acc=0.80, test_acc=0.50)
        _record(s, study, dataset, "default", "lora", 1e-3, 7, dev_acc=0.65, test_acc=0.92)
        _record(s, study, dataset, "grid", "lora", 3e-3, 7, dev_acc=0.75, test_acc=0.40)
        queue, meanwhile = studies._queue, []

        def queue_while_another_advances(*args, **kwargs):
            run = queue(*args, **kwargs)  # committed: the first process holds no lock here
            if not meanwhile:
                with session_factory(settings.db_url)() as other:
                    meanwhile.extend(studies.advance(other, other.get(Study, study.id)))
            return run

        monkeypatch.setattr(studies, "_queue", queue_while_another_advances)
        first = studies.advance(s, study)
        assert meanwhile and first, "both queued some of the finals"
        finals = [r for r in found.study_runs(s, study.id) if r.study_role == "final"]
        chosen = sorted((r.method, r.config["seed"], r.config["learning_rate"]) for r in finals)
        assert chosen == [("full", seed, 1e-4) for seed in (8, 9, 10)] + [("lora", seed, 3e-3) for seed in (8, 9, 10)]


def test_the_rate_is_chosen_on_dev_and_the_tuned_verdict_uses_fresh_seeds_only(settings, csv_folder):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        study = _lr_study(s, dataset, {"full": [1e-5, 5e-5, 1e-4], "lora": [1e-3, 3e-3]}, seeds=2, first_seed=7)
        # Dev and test disagree: dev prefers 1e-4 (full) and 3e-3 (LoRA), test the others.
        _record(s, study, dataset, "default", "full", 5e-5, 7, dev_acc=0.70, test_acc=0.90)
        _record(s, study, dataset, "grid", "full", 1e-5, 7, dev_acc=0.60, test_acc=0.95)
        _record(s, study, dataset, "grid", "full", 1e-4, 7, dev_acc=0.80, test_acc=0.50)
        _record(s, study, dataset, "default", "lora", 1e-3, 7, dev_acc=0.65, test_acc=0.92)
        lora_best = _record(s, study, dataset, "grid", "lora", 3e-3, 7, dev_acc=0.75, test_acc=0.40)
        best = found.best_rates(study, found.points(s, study, found.study_runs(s, study.id)))
        assert {m: b["value"] for m, b in best.items()} == {"full": 1e-4, "lora": 3e-3}
        assert best["full"]["dev"] == pytest.approx(0.80)  # the kept weights' dev accuracy, not the highest one
        assert best["lora"]["edge"] == "highest" and best["lora"]["next"] > 3e-3
        assert best["full"]["edge"] == "highest"

        finals = studies.advance(s, study)
        assert sorted((r.method, r.config["seed"], r.config["learning_rate"]) for r in finals) == [
            ("full", 8, 1e-4),
            ("full", 9, 1e-4),
            ("lora", 8, 3e-3),
            ("lora", 9, 3e-3),
        ]
        assert all(r.study_role == "final" for r in finals)
        assert studies.advance(s, study) == []  # nothing twice

        # A pruned rate is never the choice, however its dev accuracy reads.
        lora_best.stopped_early = True
        s.commit()
        best = found.best_rates(study, found.points(s, study, found.study_runs(s, study.id)))
        assert best["lora"]["value"] == 1e-3

        # The tuned verdict pairs the final runs alone (seeds 8 and 9), never the seed the rates were chosen on.
        for run in finals:
            run.status = RunStatus.COMPLETED.value
        s.commit()
        runs = found.study_runs(s, study.id)
        chosen = {"full": {"value": 1e-4}, "lora": {"value": 3e-3}}
        tuned_runs = found.verdict_runs(study, runs, chosen)["tuned"]  # what the tuned verdict pairs
        assert {r.config["seed"] for r in tuned_runs} == {8, 9}
        assert sorted(r.id for r in tuned_runs) == sorted(r.id for r in finals)


def test_a_refused_study_records_nothing(settings, csv_folder, tiny_model):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        with pytest.raises(ConfigError, match="between 3"):
            studies.create_study(s, dataset, tiny_model, TrainConfig(), "train_size", values=[2, 50])
        with pytest.raises(ConfigError, match="ranks"):
            studies.create_study(s, dataset, tiny_model, TrainConfig(), "lora_rank", values=[0, 4])
        with pytest.raises(ConfigError, match="Seeds"):
            studies.create_study(s, dataset, tiny_model, TrainConfig(), "lr", seeds=9)
        assert s.query(Study).count() == 0 and s.query(Run).count() == 0


@pytest.mark.parametrize("vary, values", [("train_size", [12, 96]), ("lora_rank", [1, 4])])
def test_each_method_trains_at_its_own_rate_at_every_point(settings, csv_folder, tiny_model, vary, values):
    # The shared config is LoRA's (its rate 1e-3): full fine-tuning must not inherit that rate.
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        _, runs = studies.create_study(s, dataset, tiny_model, TrainConfig(), vary, seeds=1, values=values)
        assert {(r.method, r.config["learning_rate"]) for r in runs} == {("full", 5e-5), ("lora", 1e-3)}
        _, runs = studies.create_study(
            s, dataset, tiny_model, TrainConfig(), vary, seeds=1, values=values, default_rates={"full": 2e-5}
        )
        assert {(r.method, r.config["learning_rate"]) for r in runs} == {("full", 2e-5), ("lora", 1e-3)}


def test_values_typed_in_a_box_are_read_or_refused_in_plain_words():
    assert studies.values_from_text("100, 250;500  1e3") == [100, 250, 500, 1000]
    assert studies.values_from_text("1e-4,5e-4") == [1e-4, 5e-4]
    with pytest.raises(ConfigError, match="'fast' is not a number"):
        studies.values_from_text("1e-4, fast")
    with pytest.raises(ConfigError, match="'nan', 'x' are not numbers"):
        studies.values_from_text("nan x 3")
    with pytest.raises(ConfigError, match="No value was given"):
        studies.values_from_text(" , ")


def _train_queued(settings, study_id):
    """Train every queued run of the study in this process, oldest first, advancing the study as the worker does."""
    while True:
        with session_factory(settings.db_url)() as s:
            studies.advance(s, s.get(Study, study_id))
            queued = [r.id for r in found.study_runs(s, study_id) if r.status == RunStatus.QUEUED.value]
        if not queued:
            return
        assert train_run(settings, queued[0]) == RunStatus.COMPLETED


FAST = {"epochs": 2, "batch_size": 8, "evals_per_epoch": 4, "max_length": 16}
LEARNS = {"epochs": 8, "batch_size": 16, "evals_per_epoch": 1, "max_length": 16}  # the tiny BERT learns the rows


def test_a_learning_rate_study_end_to_end(settings, csv_folder, tiny_model):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        study, runs = studies.create_study(
            s,
            dataset,
            tiny_model,
            TrainConfig(**LEARNS, seed=3),
            "lr",
            seeds=1,
            grids={"full": [1e-6], "lora": [1e-6]},
            default_rates={"full": 3e-3, "lora": 1e-2},
        )
        assert [(r.study_role, r.method) for r in runs] == [
            ("default", "full"),
            ("default", "lora"),
            ("grid", "full"),
            ("grid", "lora"),
        ]
        assert study.grid["full"] == [1e-6, 3e-3]
        study_id = study.id
    _train_queued(settings, study_id)
    with session_factory(settings.db_url)() as s:
        study = s.get(Study, study_id)
        runs = found.study_runs(s, study_id)
        tiny = [r for r in runs if r.config["learning_rate"] == 1e-6]
        # A rate too small to learn anything falls behind at the rung and is stopped there, its model kept.
        assert all(r.stopped_early for r in tiny), [(r.id, r.notes) for r in tiny]
        assert all(r.step < r.total_steps for r in tiny)
        assert not any(r.stopped_early for r in runs if r.study_role == "default")
        out = found.summary(s, study)
    assert set(out) >= {"study", "vary", "points", "best", "verdict", "default_verdict"}
    assert {p["method"] for p in out["points"]} == {"full", "lora"}
    assert set(out["points"][0]) == {"value", "method", "runs", "dev", "test", "stopped_early"}
    for method in ("full", "lora"):
        assert out["best"][method]["value"] != 1e-6
    finals = [r for r in runs if r.study_role == "final"]
    assert {r.config["seed"] for r in finals} == {4}
    assert sorted(sum(out["verdict"]["runs"], [])) == sorted(r.id for r in finals)
    assert sorted(sum(out["default_verdict"]["runs"], [])) == sorted(r.id for r in runs if r.study_role == "default")


def _trained_study(settings, csv_folder, tiny_model, vary: str, values: list) -> tuple[int, list[Run]]:
    """A study of one seed on the tiny BERT, created and trained: its id and the runs it queued at first."""
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        study, runs = studies.create_study(s, dataset, tiny_model, TrainConfig(**FAST), vary, seeds=1, values=values)
        study_id = study.id
    _train_queued(settings, study_id)
    return study_id, runs


def test_a_size_study_trains_both_methods_on_the_same_nested_rows(settings, csv_folder, tiny_model):
    study_id, runs = _trained_study(settings, csv_folder, tiny_model, "train_size", [12, 96])
    assert [r.config["train_rows"] for r in runs] == [12, 12, 96, 96]
    with session_factory(settings.db_url)() as s:
        runs = found.study_runs(s, study_id)
        # 12 rows in batches of 8: 2 steps an epoch; 96 rows: 12.
        assert sorted((r.config["train_rows"], r.method, r.total_steps) for r in runs) == [
            (12, "full", 4),
            (12, "lora", 4),
            (96, "full", 24),
            (96, "lora", 24),
        ]
        out = found.summary(s, s.get(Study, study_id))
    assert [v["value"] for v in out["verdict"]] == [12, 96]
    assert all(v["runs"] for v in out["verdict"])
    assert out["sentence"]


def test_a_rank_study_holds_each_rank_against_the_same_full_runs(settings, csv_folder, tiny_model):
    study_id, runs = _trained_study(settings, csv_folder, tiny_model, "lora_rank", [1, 4])
    assert [(r.method, r.config["lora_r"]) for r in runs] == [("full", 8), ("lora", 1), ("lora", 4)]
    with session_factory(settings.db_url)() as s:
        runs = found.study_runs(s, study_id)
        full = next(r for r in runs if r.method == "full")
        out = found.summary(s, s.get(Study, study_id))
        trainable = {r.config["lora_r"]: r.trainable_params for r in runs if r.method == "lora"}
    assert trainable[1] < trainable[4]
    assert [v["value"] for v in out["verdict"]] == [1, 4]
    assert all(v["runs"][0][0] == full.id for v in out["verdict"])
    assert "r = " in out["sentence"]


def test_the_worker_starts_the_next_training_process_ahead_and_leaves_none_behind(settings, csv_folder, tiny_model):
    """A study's runs are short: the worker's second and third runs take a process whose imports were done while the
    first trained (its recorded start is near 0 s, a process started for its run takes seconds), and when the worker
    is stopped, no waiting process is left."""
    import psutil

    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        _, runs = studies.create_study(
            s, dataset, tiny_model, TrainConfig(**FAST), "lora_rank", seeds=1, values=[2, 4]
        )
    worker = start_worker(settings)
    try:
        wait_for(
            lambda: all(get_run(settings, r.id).run_status.finished for r in runs), timeout=240, what="the runs to end"
        )
        children = psutil.Process(worker.pid).children(recursive=True)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    starts = [get_run(settings, r.id).stage_seconds["start"] for r in runs]
    assert [get_run(settings, r.id).status for r in runs] == ["completed"] * 3
    assert starts[0] > 1.0 and max(starts[1:]) < 0.5, starts
    # The worker was stopped by a signal (no clean-up ran): the waiting process sees its input close and leaves.
    _, alive = psutil.wait_procs(children, timeout=60)
    assert not alive


def test_a_studys_time_counts_its_runs_and_what_the_pruner_saves():
    per_run = {
        "full": {"total_seconds": 60.0, "train_seconds": 50.0},
        "lora": {"total_seconds": 40.0, "train_seconds": 30.0},
    }
    grid = {"full": [1e-5, 5e-5, 1e-4], "lora": [1e-4, 1e-3]}
    lr = studies.study_seconds("lr", 2, grid, per_run, train_rows=1000)
    assert lr["runs"] == 3 + 2 + 2 * 2
    assert lr["most"] == pytest.approx(60 * (3 + 2) + 40 * (2 + 2))
    saved = 0.5 * (1 - PRUNE_AT)  # half the others stop at the rung, a quarter of the way
    assert lr["most"] - 50 * 2 * saved - 30 * 1 * saved == pytest.approx(lr["likely"])
    size = studies.study_seconds("train_size", 1, {"values": [100, 1000]}, per_run, train_rows=1000)
    assert size["runs"] == 4 and size["most"] == pytest.approx((60 - 45) + 60 + (40 - 27) + 40)
    rank = studies.study_seconds("lora_rank", 3, {"values": [1, 8]}, per_run, train_rows=1000)
    assert rank["runs"] == 9 and rank["most"] == pytest.approx(3 * (60 + 2 * 40))


def test_a_cancelled_rate_holds_the_choice_back_until_it_is_resumed(settings, csv_folder):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        study = _lr_study(s, dataset, {"full": [5e-5, 0.5], "lora": [1e-3]}, seeds=1, first_seed=42)
        _record(s, study, dataset, "default", "full", 5e-5, 42, dev_acc=0.5, test_acc=0.5)
        best = _record(s, study, dataset, "grid", "full", 0.5, 42, dev_acc=0.9, test_acc=0.5, status="cancelled")
        _record(s, study, dataset, "default", "lora", 1e-3, 42, dev_acc=0.5, test_acc=0.5)
        # A study stopped (Ctrl+C, or a rate cancelled on Runs) queues no final seeds for that method.
        assert [r.method for r in studies.advance(s, study)] == ["lora"]
        best.status = "completed"  # resumed and finished
        s.commit()
        chosen = found.best_rates(study, found.points(s, study, found.study_runs(s, study.id)))
        assert chosen["full"]["value"] == 0.5 and chosen["full"]["edge"] == "highest"
        assert chosen["full"]["next"] is None  # a rate of 1 or more is no rate to offer
        assert found.edge_notes(chosen) == [
            "Full fine-tuning's best learning rate, 0.5, is the highest it tried: the best may lie beyond it."
        ]
