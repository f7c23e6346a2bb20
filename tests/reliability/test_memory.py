"""Out of memory: the run goes on with a smaller batch and more gradient accumulation, or fails in plain words.

The error is injected where a real one is raised, in the training step, as torch raises it on a GPU
(torch.OutOfMemoryError) and on a CPU (RuntimeError from the allocator), for batches larger than a cap.
"""

from __future__ import annotations

import pytest
import torch
from transformers import Trainer

from core.jobs.runs import create_run
from core.store.db import session_factory
from core.training.config import TrainConfig
from core.training.failures import smaller_batch
from core.training.train import train_run
from tests.helpers import get_run, metric_rows, store

CONFIG = {"epochs": 2, "batch_size": 16, "evals_per_epoch": 1, "max_length": 32}  # 96 rows: 6 updates an epoch
ERRORS = {
    "gpu": lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    "cpu": lambda: RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 2147483648 bytes."),
}


def cap_batches(monkeypatch, largest: int, error) -> list[int]:
    """Make every training step on more than `largest` examples run out of memory; returns the batch sizes seen."""
    seen = []
    real_step = Trainer.training_step

    def training_step(self, model, inputs, *args, **kwargs):
        seen.append(len(inputs["input_ids"]))
        if seen[-1] > largest:
            raise error()
        return real_step(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", training_step)
    return seen


@pytest.mark.parametrize("kind", ["gpu", "cpu"])
def test_out_of_memory_halves_the_batch_and_keeps_the_examples_per_update(
    settings, csv_folder, tiny_model, monkeypatch, kind
):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        run = create_run(s, dataset, tiny_model, TrainConfig(method="full", **CONFIG))
    seen = cap_batches(monkeypatch, 4, ERRORS[kind])

    assert train_run(settings, run.id).value == "completed"
    done = get_run(settings, run.id)
    assert done.test_metrics["accuracy"] > 0 and done.error is None
    assert seen[:3] == [16, 8, 4]  # two failed attempts, then training at 4 per step
    assert max(seen[3:]) == 4
    assert done.step == 12  # the same number of updates as batch 16: 4 examples x 4 accumulated steps each
    assert done.notes == [
        "Out of memory: went on at batch size 8, accumulating gradients over 2 steps (16 examples per update).",
        "Out of memory: went on at batch size 4, accumulating gradients over 4 steps (16 examples per update).",
    ]
    steps = [(name, step) for name, step, _ in metric_rows(settings, run.id)]
    assert len(steps) == len(set(steps))  # one curve, not one per attempt


@pytest.mark.parametrize("method, advice", [("full", "try LoRA, a shorter"), ("lora", "try a shorter")])
def test_out_of_memory_at_batch_size_one_fails_with_advice(
    settings, csv_folder, tiny_model, monkeypatch, method, advice
):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        run = create_run(s, dataset, tiny_model, TrainConfig(method=method, **CONFIG))
    seen = cap_batches(monkeypatch, 0, ERRORS["gpu"])

    assert train_run(settings, run.id).value == "failed"
    failed = get_run(settings, run.id)
    assert seen == [16, 8, 4, 2, 1]
    assert failed.error == f"Out of memory, even at batch size 1: {advice} max length or a smaller model."
    assert failed.artifact_path is None and failed.test_metrics is None


def test_a_smaller_batch_keeps_the_examples_per_update_exactly():
    def splits(examples):
        batch, steps, out = examples, 1, []
        while batch > 1:
            batch, steps = smaller_batch(examples, steps)
            out.append((batch, steps))
        return out

    assert splits(16) == [(8, 2), (4, 4), (2, 8), (1, 16)]
    assert splits(12) == [(6, 2), (4, 3), (3, 4), (2, 6), (1, 12)]
    assert splits(7) == [(1, 7)]
    assert splits(1) == []
