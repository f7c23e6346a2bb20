"""A data folder that outlives its database (runs.db deleted to start over, a move to PostgreSQL with the same
LORALAB_DATA_DIR, two databases on one data folder): ids start again at 1, but no run or dataset ever meets the
folders of another."""

from __future__ import annotations

import dataclasses
import json

from sqlalchemy import text

from core.jobs.runs import create_run, request_cancel, resume_step
from core.store.db import Run, RunStatus, get_engine, open_database, session_factory
from core.store.storage import run_dir
from core.training.artifacts import CHECKPOINT_STATE, checkpoints_dir, latest_checkpoint
from core.training.config import TrainConfig
from core.training.train import train_run
from tests.conftest import make_rows, write_csv
from tests.helpers import get_run, store

FAST = {"epochs": 2, "batch_size": 16, "evals_per_epoch": 1, "max_length": 32}  # 6 steps an epoch


def test_a_new_database_on_an_old_data_folder_never_resumes_or_replaces_the_old_runs_files(
    settings, tmp_path, csv_folder, tiny_model
):
    old = dataclasses.replace(settings, checkpoint_every_s=0.0)  # a checkpoint at every step that logs
    old_dataset = store(old, csv_folder, "old data")
    with session_factory(old.db_url)() as s:
        killed = create_run(s, old_dataset, tiny_model, TrainConfig(method="full", **FAST), status=RunStatus.RUNNING)
        request_cancel(s, killed.id)  # stops after its first step, leaving that step's checkpoint
    assert train_run(old, killed.id) == RunStatus.CANCELLED
    killed = get_run(old, killed.id)
    checkpoint = latest_checkpoint(checkpoints_dir(old, killed), killed.uid)
    assert checkpoint is not None and resume_step(old, killed) == checkpoint[1]
    old_train = (old.data_dir / old_dataset.path / "train.csv").read_bytes()

    # runs.db moved aside: a new database on the same data folder, its ids starting at 1 again.
    new = dataclasses.replace(settings, db_url=f"sqlite:///{tmp_path / 'new-runs.db'}")
    open_database(new.db_url)
    other = tmp_path / "other"
    other.mkdir()
    for split, seed in (("train", 11), ("dev", 12), ("test", 13)):
        write_csv(other / f"{split}.csv", make_rows(48 if split == "train" else 12, seed))
    new_dataset = store(new, other, "other data")
    assert new_dataset.id == old_dataset.id and new_dataset.path != old_dataset.path
    with session_factory(new.db_url)() as s:
        run = create_run(s, new_dataset, tiny_model, TrainConfig(method="full", **FAST), status=RunStatus.RUNNING)
    assert run.id == killed.id and run_dir(new, run) != run_dir(old, killed)
    assert train_run(new, run.id) == RunStatus.COMPLETED

    trained = get_run(new, run.id)
    assert not any("Resumed" in note for note in trained.notes), trained.notes  # trained from scratch
    assert trained.step == trained.total_steps == 6  # 48 rows / 16, 2 epochs: all of them trained here
    # The old database's files are as they were: its dataset, and the checkpoint its run can still resume from.
    assert (old.data_dir / old_dataset.path / "train.csv").read_bytes() == old_train
    assert latest_checkpoint(checkpoints_dir(old, killed), killed.uid) == checkpoint


def test_a_checkpoint_written_by_another_run_is_never_resumed(settings, csv_folder):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        run = create_run(s, dataset, "m", TrainConfig())
        s.get(Run, run.id).status = RunStatus.CRASHED.value
        s.commit()
    run = get_run(settings, run.id)
    for step, writer in ((10, run.uid), (20, "another run's uid"), (30, None)):
        folder = checkpoints_dir(settings, run) / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / CHECKPOINT_STATE).write_text(json.dumps({"run_uid": writer}))
    assert resume_step(settings, run) == 10  # its own; not 20 (another run's) nor 30 (no owner)


def test_runs_and_datasets_stored_before_uids_keep_their_id_named_folders(settings, csv_folder):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        run = create_run(s, dataset, "m", TrainConfig())
    with get_engine(settings.db_url).begin() as conn:  # as the migration leaves rows recorded before it
        conn.execute(text("UPDATE runs SET uid = NULL, status = 'crashed'"))
    legacy = get_run(settings, run.id)
    assert run_dir(settings, legacy) == settings.runs_dir / str(run.id)
    folder = checkpoints_dir(settings, legacy) / "checkpoint-7"
    folder.mkdir(parents=True)
    (folder / CHECKPOINT_STATE).write_text(json.dumps({"best_step": None, "train_seconds": 1.0}))  # written before
    assert resume_step(settings, legacy) == 7


def test_two_databases_in_one_folder_each_get_a_worker_that_trains_their_own_queue(
    settings, tmp_path, csv_folder, tiny_model
):
    """g.db and b.db side by side share data/ (the default data folder): a worker serving g.db does not keep b.db's
    queue waiting; b.db gets a worker of its own, and each trains only its own runs."""
    import subprocess

    from core.jobs.worker import ensure_worker, worker_alive
    from tests.helpers import start_worker, wait_for

    g = dataclasses.replace(settings, db_url=f"sqlite:///{tmp_path / 'g.db'}")
    b = dataclasses.replace(settings, db_url=f"sqlite:///{tmp_path / 'b.db'}")
    assert g.data_dir == b.data_dir
    open_database(b.db_url)
    dataset = store(b, csv_folder)
    with session_factory(b.db_url)() as s:
        queued = create_run(s, dataset, tiny_model, TrainConfig(method="lora", **FAST))
    first = start_worker(g, output=subprocess.PIPE)
    second = None
    try:
        wait_for(lambda: worker_alive(g), what="g.db's worker")
        assert not worker_alive(b)  # so the dashboard on b.db starts one for it
        second = start_worker(b, output=subprocess.PIPE)
        wait_for(lambda: get_run(b, queued.id).status == RunStatus.COMPLETED.value, timeout=120, what="b.db's run")
        assert ensure_worker(b) is False and ensure_worker(g) is False  # each is served, once
        assert first.poll() is None and second.poll() is None
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.kill()
                worker.wait()
