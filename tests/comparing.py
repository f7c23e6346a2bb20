"""Completed runs with made-up test predictions, inserted as rows (no training): what Compare and `core compare`
read. Each run's predictions are right except on the texts given."""

from __future__ import annotations

import numpy as np

from core.data import checking, datasets, reading
from core.jobs.runs import create_comparison, create_run
from core.store.db import Dataset, Prediction, Run, RunStatus, session_factory, utcnow
from core.training import evaluate, models
from core.training.config import TrainConfig
from tests.conftest import write_csv

CLASSES = ["sport", "business", "tech"]


def store_dataset(settings, folder, n_test: int, name: str = "synthetic", test_classes: int = 3):
    """A dataset whose test split has n_test texts (labels 0, 1, 2 in turn; with test_classes=2, 0 and 1 only)."""
    folder.mkdir(exist_ok=True)
    for split, n in (("train", 30), ("dev", 9), ("test", n_test)):
        k = test_classes if split == "test" else 3
        write_csv(folder / f"{split}.csv", [(f"{split} text number {i}", i % k) for i in range(n)])
    check = checking.check_dataset(reading.files_from_folder(folder), settings, class_names=CLASSES)
    assert check.ok, check.errors
    with session_factory(settings.db_url)() as s:
        return datasets.save_dataset(s, settings, check, name)


def complete(s, settings, run: Run, wrong: set[int], seconds: float = 10.0) -> None:
    """Finish a run as training would: test predictions right except on the `wrong` rows (predicted next class)."""
    test = datasets.load_split(settings, run.dataset, "test")
    y = test["label"].to_numpy()
    preds = np.array([(t + 1) % 3 if i in wrong else t for i, t in enumerate(y)])
    probs = np.eye(3)[preds] * 0.7 + 0.1
    s.add_all(
        Prediction(run_id=run.id, idx=i, text=t, true_label=int(yy), pred_label=int(p), probs=pr.tolist())
        for i, (t, yy, p, pr) in enumerate(zip(test["text"], y, preds, probs))
    )
    lora = run.method == "lora"
    run.status, run.step, run.total_steps = RunStatus.COMPLETED.value, 20, 20
    run.started_at = run.finished_at = utcnow()
    run.test_metrics = evaluate.test_metrics(y, probs, run.dataset.classes)
    run.train_seconds = seconds * (0.5 if lora else 1.0)
    run.samples_per_second = 100.0 * (2 if lora else 1)
    run.trainable_params = 110_000 if lora else 22_000_000
    run.total_params = 22_000_000
    run.peak_memory_mb = 600.0 if lora else 900.0
    run.artifact_bytes = 2_250_000 if lora else 90_000_000
    s.commit()


def comparison(settings, dataset, wrong: list[tuple[set[int], set[int]]], epochs: float = 2) -> tuple[int, list[int]]:
    """A completed comparison group: one pair per (full's wrong rows, LoRA's wrong rows). Returns (group, run ids)."""
    with session_factory(settings.db_url)() as s:
        ds = s.get(Dataset, dataset.id)
        group, runs = create_comparison(s, ds, models.BUNDLED, TrainConfig(epochs=epochs), repeats=len(wrong))
        for k, (wrong_full, wrong_lora) in enumerate(wrong):
            complete(s, settings, runs[2 * k], wrong_full, seconds=10.0 + k)
            complete(s, settings, runs[2 * k + 1], wrong_lora, seconds=10.0 + k)
        return group.id, [r.id for r in runs]


def single(settings, dataset, wrong: set[int], method: str = "lora") -> int:
    with session_factory(settings.db_url)() as s:
        run = create_run(s, s.get(Dataset, dataset.id), models.BUNDLED, TrainConfig(method=method, epochs=5))
        complete(s, settings, run, wrong)
        return run.id
