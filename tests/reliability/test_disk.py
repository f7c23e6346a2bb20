"""A full disk or an unusable data folder: the run fails cleanly, says where, and leaves no half-written model.

The disk fills for real: the worker (and the training process it starts) run under a file-size limit
(RLIMIT_FSIZE), so the kernel refuses the write that would pass it (EFBIG), as it refuses writes on a full disk
(ENOSPC). The model is built larger than the limit; the database stays well under it.
"""

from __future__ import annotations

import resource
import shutil

import pytest
from sqlalchemy import text

from core.jobs.runs import create_run
from core.store.db import get_engine, session_factory
from core.store.storage import run_dir
from core.training.artifacts import artifact_dir
from core.training.config import TrainConfig
from tests.helpers import get_run, metric_count, save_bert, start_worker, store, wait_for

LIMIT = 8 * 2**20  # bytes a process may write to one file; the model below is about 19 MB
CONFIG = {"epochs": 2, "batch_size": 16, "evals_per_epoch": 1, "max_length": 32}


@pytest.fixture(scope="module")
def large_model(tiny_model, tmp_path_factory) -> str:
    """The tiny model's vocabulary in a BERT of 4.7 M parameters: larger than LIMIT as one weights file."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    return save_bert(tmp_path_factory.mktemp("large-bert"), tokenizer, hidden=384, layers=4, heads=4, intermediate=768)


def limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


@pytest.mark.parametrize("when", ["model", "checkpoint"])
def test_a_full_disk_fails_the_run_cleanly_and_names_the_folder(settings, csv_folder, large_model, when):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        run = create_run(s, dataset, large_model, TrainConfig(method="full", **CONFIG))
        following = create_run(s, dataset, large_model, TrainConfig(method="lora", **CONFIG))  # small: it fits
    seconds = "0" if when == "checkpoint" else "3600"  # a checkpoint after every step, or none
    worker = start_worker(settings, env={"LORALAB_CHECKPOINT_SECONDS": seconds}, preexec_fn=limit_file_size)
    try:
        failed = wait_for(lambda: (r := get_run(settings, run.id)).status in ("failed", "crashed", "completed") and r)
        wait_for(lambda: get_run(settings, following.id).status in ("failed", "completed"), timeout=120)
    finally:
        worker.kill()
        worker.wait()

    assert failed.status == "failed"
    assert failed.error.startswith(f"Could not save to {run_dir(settings, failed)}")
    assert "File too large" in failed.error and "Free some disk space" in failed.error
    assert failed.artifact_path is None and failed.test_metrics is None
    assert not artifact_dir(settings, failed).exists()
    assert not artifact_dir(settings, failed).with_name("model.partial").exists()  # nothing half-written is left
    assert metric_count(settings, run.id) > 0  # what was logged before the write failed is kept
    assert get_run(settings, following.id).status == "completed"  # the worker goes on with the queue
    with get_engine(settings.db_url).connect() as conn:
        assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"


def test_a_data_folder_that_cannot_be_written_fails_the_run_and_the_worker_goes_on(settings, csv_folder, tiny_model):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        run = create_run(s, dataset, tiny_model, TrainConfig(method="lora", **CONFIG))
    shutil.rmtree(settings.runs_dir, ignore_errors=True)
    settings.runs_dir.write_text("a file where the runs folder should be")  # fails as root too, unlike chmod
    worker = start_worker(settings)
    try:
        failed = wait_for(lambda: (r := get_run(settings, run.id)).status != "queued" and r.status != "running" and r)
        assert worker.poll() is None  # the worker is still serving the queue
    finally:
        worker.kill()
        worker.wait()
    assert failed.status == "failed"
    assert failed.error.startswith(f"Could not create {settings.runs_dir}")
    assert "make the data folder writable" in failed.error
