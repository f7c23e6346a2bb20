"""The small core helpers the dashboard uses: presets, pairs with their own learning rates, the demo set, and the
read-only tables (history, progress, curves, comparison, disagreements)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from core.data import checking, datasets, reading
from core.jobs.runs import ConfigError, create_comparison, create_run
from core.results import comparisons, describe, tables
from core.store.db import Dataset, Metric, Prediction, Run, RunStatus, session_factory, utcnow
from core.store.settings import get_settings
from core.training import methods
from core.training.config import PRESETS, TrainConfig, preset_config, problems_of


@pytest.fixture
def dataset(settings, csv_folder) -> Dataset:
    check = checking.check_dataset(reading.files_from_folder(csv_folder), settings)
    with session_factory(settings.db_url)() as s:
        return datasets.save_dataset(s, settings, check, "tiny")


def test_presets_are_valid_configs_for_both_methods():
    for name in PRESETS:
        for method in ("full", "lora"):
            config = preset_config(name, method)
            assert config.method == method and not config.problems(), (name, method)
    quick = {m: preset_config("quick demo", m) for m in ("full", "lora")}
    assert (quick["lora"].epochs, quick["lora"].evals_per_epoch, quick["lora"].learning_rate) == (1.5, 1, 4e-3)
    assert quick["full"].learning_rate == 1.5e-4
    seed = preset_config("as in the published experiment", "lora")
    assert (seed.epochs, seed.batch_size, seed.max_length, seed.lora_r, seed.lora_alpha) == (5, 32, 64, 8, 32)
    assert seed.lora_targets == "query,key,value" and seed.weight_decay == 0.001 and seed.lora_dropout == 0.1


def test_problems_of_a_pair_name_the_method_only_when_they_differ():
    full = TrainConfig(method="full", batch_size=0, learning_rate=5e-5)
    lora = TrainConfig(method="lora", batch_size=0, learning_rate=2.0, lora_r=0)
    problems = problems_of([full, lora])
    assert problems[0] == "Batch size must be between 1 and 4096."
    assert "LoRA: LoRA rank r must be between 1 and 1024." in problems
    assert any(p.startswith("LoRA: Learning rate") for p in problems)
    assert problems_of([TrainConfig(method="full")]) == []


def test_a_pair_keeps_each_methods_learning_rate_and_a_refused_pair_queues_nothing(settings, dataset):
    with session_factory(settings.db_url)() as s:
        _, (full, lora) = create_comparison(s, dataset, "m", TrainConfig(epochs=2), {"full": 2e-5, "lora": None})
        assert full.pair_id == lora.pair_id and full.config["seed"] == lora.config["seed"]
        assert full.config["learning_rate"] == 2e-5
        assert lora.config["learning_rate"] == TrainConfig(method="lora").learning_rate
        with pytest.raises(ConfigError):
            create_comparison(s, dataset, "m", TrainConfig(lora_r=0), {})
        assert len(tables.all_runs(s)) == 2


def test_param_counts_before_training(tiny_model):
    counts = methods.param_counts(tiny_model, ["a", "b", "c"], TrainConfig(method="lora", lora_r=2), get_settings())
    assert counts["full"][0] == counts["full"][1]
    assert 0 < counts["lora"][0] < counts["full"][0]


def test_demo_dataset_is_stored_once(settings):
    with session_factory(settings.db_url)() as s:
        first = datasets.add_demo_dataset(s, settings)
        again = datasets.add_demo_dataset(s, settings)
        assert first.id == again.id and first.name == datasets.DEMO_NAME
        assert first.classes == ["business", "entertainment", "politics", "sports", "tech"]
        assert tables.datasets_frame(s)["train"].tolist() == [first.sizes["train"]]


def add_run(s, dataset, status, method="lora", pair_id=None, **values) -> Run:
    run = create_run(s, dataset, "m", TrainConfig(method=method, batch_size=8), pair_id=pair_id)
    run.status = status.value
    for key, value in values.items():
        setattr(run, key, value)
    s.commit()
    return run


def test_history_filters_progress_and_latest_pair(settings, dataset):
    with session_factory(settings.db_url)() as s:
        a = add_run(s, dataset, RunStatus.COMPLETED, "full", pair_id="p1")
        b = add_run(s, dataset, RunStatus.COMPLETED, "lora", pair_id="p1")
        add_run(s, dataset, RunStatus.COMPLETED, "full", pair_id="p2")
        add_run(s, dataset, RunStatus.FAILED, "lora", pair_id="p2")
        running = add_run(s, dataset, RunStatus.RUNNING, step=10, total_steps=40)
        running.started_at = running.timing_at = utcnow() - timedelta(seconds=20)
        running.timing_step = 0
        s.commit()
        assert tables.latest_pair(s) == [a.id, b.id], "the newest pair whose two runs completed"
        assert len(tables.history_frame(s)) == 5
        assert tables.history_frame(s, statuses=["failed"])["method"].tolist() == ["LoRA"]
        assert len(tables.history_frame(s, methods=["full"], datasets=["tiny"])) == 2
        assert tables.any_active(s) and tables.overview(s) == {"datasets": 1, "runs": 5, "active": 1, "completed": 3}
        done, eta = tables.progress(running)
        assert done == 0.25 and eta == pytest.approx(60, abs=5)
        assert tables.progress(a) == (1.0, None)


def test_curves_comparison_confusion_and_disagreements(settings, dataset):
    classes = ["0", "1", "2"]
    with session_factory(settings.db_url)() as s:
        runs = []
        for preds in ([0, 1, 2, 0], [0, 2, 2, 1]):
            test = {"classes": classes, "confusion_matrix": [[2, 0, 0], [0, 1, 0], [0, 0, 1]]}
            run = add_run(s, dataset, RunStatus.COMPLETED, test_metrics=test)
            s.add_all(
                Prediction(run_id=run.id, idx=i, text=f"文本 {i}", true_label=[0, 1, 2, 0][i], pred_label=p, probs=[])
                for i, p in enumerate(preds)
            )
            s.add(Metric(run_id=run.id, step=3, epoch=0.5, name="train_loss", value=1.0))
            runs.append(run)
        s.commit()
        curves = tables.curves_frame(s, runs)
        assert curves["examples"].tolist() == [24, 24] and curves["run"].str.startswith("#").all()
        table = comparisons.scores_table(runs)
        assert list(table.columns[1:]) == [describe.run_label(r, runs) for r in runs]
        shares, names = tables.confusion(runs[0], normalised=True)
        assert names == classes and np.allclose(shares.sum(axis=1), 1)
        disagree = comparisons.disagreements(s, runs)
        assert disagree["text"].tolist() == ["文本 1", "文本 3"]
        assert disagree["true label"].tolist() == ["1", "0"]
        assert disagree.iloc[0, 3:].tolist() == ["1 ✓", "2 ✗"]

        other = add_run(s, dataset, RunStatus.COMPLETED, test_metrics={"classes": classes})
        with pytest.raises(comparisons.NotComparable, match="no stored test predictions"):
            comparisons.disagreements(s, [runs[0], other])


def test_the_download_holds_the_numbers_of_the_figures_compare_shows(settings, dataset):
    """One home for the scores: Compare's table writes scores() as the dashboard writes numbers, and the download is
    scores() itself, so a spreadsheet gets numbers, not '73.7 %'; a figure a run lacks is empty in both."""
    from core import words

    with session_factory(settings.db_url)() as s:
        test = {"accuracy": 0.7374, "f1_macro": 0.5, "precision_weighted": 0.75, "recall_weighted": 0.7374}
        run = add_run(
            s,
            dataset,
            RunStatus.COMPLETED,
            test_metrics=test,
            train_seconds=130.0,
            samples_per_second=1234.4,
            trainable_params=1000,
            total_params=4000,
            peak_memory_mb=1536.0,
            artifact_bytes=91_586_023,
        )
        bare = add_run(s, dataset, RunStatus.COMPLETED)
        numbers = comparisons.scores([run, bare]).set_index("run")
        table = comparisons.scores_table([run, bare]).set_index("")
    one, other = describe.run_label(run, [run, bare]), describe.run_label(bare, [run, bare])
    assert list(numbers.index) == [one, other] and list(table.columns) == [one, other]
    got = numbers.loc[one]
    assert got["test accuracy"] == 0.7374 and table.loc["test accuracy", one] == words.percent(0.7374) == "73.7 %"
    assert got["training time (s)"] == 130.0 and table.loc["training time", one] == words.duration_text(130.0)
    assert got["texts trained per second"] == 1234.4 and table.loc["texts trained per second", one] == "1,234"
    assert got["trainable weights"] == 1000 and got["trainable share"] == 0.25
    assert table.loc["trainable weights", one] == "1,000 (25.0 %)"
    assert got["model size on disk (bytes)"] == 91_586_023 and table.loc["model size on disk", one] == "87 MB"
    assert numbers.loc[other].isna().all() and (table[other] == "–").all()


def test_the_scores_table_writes_sizes_as_every_size_is_written(settings, dataset):
    """One way to write a size: peak memory (in MB) and the model on disk (in bytes) read as the Runs page's disk."""
    from core import words

    with session_factory(settings.db_url)() as s:
        run = add_run(s, dataset, RunStatus.COMPLETED, peak_memory_mb=1536.0, artifact_bytes=91_586_023)
        table = comparisons.scores_table([run]).set_index("")
    column = table.columns[0]
    assert table.loc["peak memory", column] == "1.5 GB" == words.size_text(1536 * 2**20)
    assert table.loc["model size on disk", column] == "87 MB" == words.size_text(91_586_023)
    assert words.memory_text(900) == "900 MB" and words.memory_text(4.5) == words.size_text(4.5 * 2**20) == "4.5 MB"
