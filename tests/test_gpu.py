"""What only a CUDA GPU can show (bench/gpu_check.sh runs these on one; elsewhere they are skipped and say why):
a real CUDA out of memory recovered by a smaller batch, peak GPU memory recorded, the precision chosen for the card."""

from __future__ import annotations

import pytest
import torch

from core.jobs.runs import create_run
from core.store.db import session_factory
from core.training.config import TrainConfig
from core.training.device import precision
from core.training.train import train_run
from tests.conftest import FILLER, WORDS, write_csv
from tests.helpers import get_run, store

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bench/gpu_check.sh)")


def test_precision_follows_the_card():
    assert precision("cuda", cpu_bf16=False) == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")


def long_texts(folder, n: int, seed: int):
    """Texts of 150 words: every batch fills max_length (128), so activations, not weights, take the memory."""
    import random

    rng = random.Random(seed)
    rows = [(" ".join(rng.choices(FILLER + WORDS[i % 3], k=150)), i % 3) for i in range(n)]
    return write_csv(folder / f"{seed}.csv", rows)


def test_a_real_cuda_out_of_memory_goes_on_at_a_smaller_batch(settings, tmp_path, tiny_model):
    """No injection: the allocator is capped so that a batch of 96 long texts cannot fit, and torch raises
    torch.OutOfMemoryError from CUDA itself; the run must go on at a smaller batch and record its peak GPU memory."""
    for split, seed, n in (("train", 1, 96), ("dev", 2, 24), ("test", 3, 24)):
        long_texts(tmp_path, n, seed).rename(tmp_path / f"{split}.csv")
    dataset = store(settings, tmp_path)
    config = TrainConfig(method="full", epochs=1, batch_size=96, max_length=128, evals_per_epoch=1)
    with session_factory(settings.db_url)() as s:
        run = create_run(s, dataset, tiny_model, config)
    # The attention scores alone of 96 x 128 tokens are 12.6 MB a layer in float32: 24 MB cannot hold a step
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(24 * 2**20 / total)
    try:
        assert train_run(settings, run.id).value == "completed"
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    done = get_run(settings, run.id)
    assert any(note.startswith("Out of memory: went on at batch size") for note in done.notes or [])
    assert 0 < done.peak_memory_mb <= 24 and "CPU" not in done.device
