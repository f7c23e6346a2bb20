"""Deleting runs with their files, the disk the history takes, and files no row points to (core.store.storage)."""

from __future__ import annotations

import dataclasses
import json
import os
import time

import pytest
from sqlalchemy import func, select

from core.jobs.runs import create_comparison, create_run
from core.store import storage
from core.store.db import ComparisonGroup, LabelJob, Metric, Prediction, Run, RunStatus, open_database, session_factory
from core.store.storage import run_dir
from core.training.config import TrainConfig
from tests.helpers import store

MB = 2**20


def finish(settings, run_id: int, status: str = "completed", checkpoint_bytes: int = MB) -> int:
    """Give a recorded run what a trained one leaves: an end, metrics, predictions and files (a checkpoint with the
    optimizer's state, a model, a log). Returns the bytes of its files."""
    with session_factory(settings.db_url)() as s:
        run = s.get(Run, run_id)
        run.status = status
        run.artifact_path = str((run_dir(settings, run) / "model").relative_to(settings.data_dir))
        s.add_all([Metric(run_id=run_id, step=k, epoch=k / 10, name="train_loss", value=1.0 / k) for k in (1, 2)])
        s.add(Prediction(run_id=run_id, idx=0, text="a text", true_label=0, pred_label=1, probs=[0.4, 0.6]))
        s.commit()
        folder = run_dir(settings, run)
    (folder / "trainer" / "checkpoint-5").mkdir(parents=True)
    (folder / "trainer" / "checkpoint-5" / "optimizer.pt").write_bytes(b"o" * checkpoint_bytes)
    (folder / "model").mkdir()
    (folder / "model" / "model.safetensors").write_bytes(b"w" * 3000)
    (folder / "train.log").write_text("trained\n")
    return checkpoint_bytes + 3000 + len("trained\n")


def label_job(settings, run_ids: list[int], status: str = "completed") -> int:
    folder = settings.data_dir / "labels" / f"job-{'-'.join(map(str, run_ids))}"
    folder.mkdir(parents=True)
    (folder / "input.csv").write_text("text\nhello\n")
    (folder / "labelled.csv").write_text("text,run label\nhello,a\n")
    with session_factory(settings.db_url)() as s:
        job = LabelJob(
            run_ids=run_ids,
            file_name="mine.csv",
            folder=str(folder.relative_to(settings.data_dir)),
            text_column="text",
            status=status,
        )
        s.add(job)
        s.commit()
        return job.id


def count(settings, model, **where) -> int:
    with session_factory(settings.db_url, read_only=True)() as s:
        query = select(func.count()).select_from(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return s.scalar(query)


def make_old(path) -> None:
    """As if written a day ago: older than storage.RECENT_S."""
    day_ago = time.time() - 86400
    os.utime(path, (day_ago, day_ago))


def test_deleting_a_run_removes_its_rows_its_files_and_the_files_labelled_with_it_and_nothing_else(
    settings, csv_folder
):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        doomed = create_run(s, dataset, "m", TrainConfig(method="full"))
        kept = create_run(s, dataset, "m", TrainConfig(method="lora"))
    doomed_bytes = finish(settings, doomed.id, checkpoint_bytes=2 * MB)
    kept_bytes = finish(settings, kept.id, status="crashed")
    with_doomed, with_kept = label_job(settings, [doomed.id]), label_job(settings, [kept.id])
    with session_factory(settings.db_url, read_only=True)() as s:
        use = storage.disk_use(s, settings)
        plan = storage.plan_deletion(s, settings, [doomed.id])
    assert use.runs == {doomed.id: doomed_bytes, kept.id: kept_bytes}
    assert use.labels > 0 and use.datasets > 0 and use.leftovers == [] and use.owned
    assert plan.refused == [] and plan.job_ids == [with_doomed] and plan.bytes > doomed_bytes

    with session_factory(settings.db_url)() as s:
        done = storage.delete_runs(s, settings, [doomed.id])
    assert done.run_ids == [doomed.id] and done.bytes == plan.bytes
    assert not run_dir(settings, doomed).exists()
    assert count(settings, Run, id=doomed.id) == 0
    assert count(settings, Metric, run_id=doomed.id) == count(settings, Prediction, run_id=doomed.id) == 0
    assert count(settings, LabelJob, id=with_doomed) == 0
    assert not (settings.data_dir / "labels" / f"job-{doomed.id}").exists()
    # The other run keeps everything: rows, checkpoint (it can still resume), the file labelled with it.
    assert (run_dir(settings, kept) / "trainer" / "checkpoint-5" / "optimizer.pt").is_file()
    assert count(settings, Metric, run_id=kept.id) == 2 and count(settings, Prediction, run_id=kept.id) == 1
    assert count(settings, LabelJob, id=with_kept) == 1
    assert (settings.data_dir / dataset.path / "train.csv").is_file()
    with session_factory(settings.db_url, read_only=True)() as s:
        after = storage.disk_use(s, settings)
    assert after.runs == {kept.id: kept_bytes} and after.leftovers == []


def test_a_run_waiting_or_training_or_labelling_a_file_is_not_deleted(settings, csv_folder):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        queued = create_run(s, dataset, "m", TrainConfig())
        running = create_run(s, dataset, "m", TrainConfig(), status=RunStatus.RUNNING)
        labelling = create_run(s, dataset, "m", TrainConfig())
    finish(settings, labelling.id)
    label_job(settings, [labelling.id], status=RunStatus.RUNNING.value)
    for run, words in ((queued, "is queued: cancel it first"), (running, "is running"), (labelling, "being labelled")):
        with session_factory(settings.db_url)() as s, pytest.raises(storage.DeleteRefused, match=words):
            storage.delete_runs(s, settings, [run.id, labelling.id])
    assert count(settings, Run) == 3 and count(settings, LabelJob) == 1
    assert run_dir(settings, labelling).is_dir()
    with session_factory(settings.db_url)() as s, pytest.raises(storage.DeleteRefused, match="There is no run 99"):
        storage.delete_runs(s, settings, [99])


def test_deleting_every_run_of_a_comparison_removes_the_comparison(settings, csv_folder):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        group, runs = create_comparison(s, dataset, "m", TrainConfig(), repeats=2)
    for run in runs:
        finish(settings, run.id)
    with session_factory(settings.db_url)() as s:
        storage.delete_runs(s, settings, [r.id for r in runs[:2]])  # the first seed's pair: the comparison stays
    assert count(settings, ComparisonGroup, id=group.id) == 1
    with session_factory(settings.db_url)() as s:
        storage.delete_runs(s, settings, [r.id for r in runs[2:]])
    assert count(settings, ComparisonGroup, id=group.id) == 0 and count(settings, Run) == 0
    assert not any(settings.runs_dir.iterdir())


def test_files_no_row_points_to_are_removed_only_from_a_data_folder_this_database_has_alone(
    settings, tmp_path, csv_folder
):
    dataset = store(settings, csv_folder)  # the first file this database keeps there: the folder records it
    marker = json.loads((settings.data_dir / storage.MARKER).read_text())
    assert [d["uid"] for d in marker["databases"]] == [storage.database_uid(settings)]
    stray = settings.runs_dir / "7-0123456789abcdef"  # a run whose row is gone (deleted by hand, say)
    (stray / "trainer").mkdir(parents=True)
    (stray / "trainer" / "optimizer.pt").write_bytes(b"o" * 5000)
    fresh = settings.datasets_dir / ".incoming-being-written"  # a save in progress: its row is not committed yet
    fresh.mkdir()
    make_old(stray)
    with session_factory(settings.db_url, read_only=True)() as s:
        use = storage.disk_use(s, settings)
        assert use.owned and set(use.leftovers) == {stray, fresh} and use.leftover_bytes == 5000
        assert storage.delete_leftovers(s, settings) == (1, 5000)
    assert not stray.exists() and fresh.is_dir() and (settings.data_dir / dataset.path).is_dir()

    # A second database on the same folder (b.db beside it): neither may take the other's files for leftovers.
    other = dataclasses.replace(settings, db_url=f"sqlite:///{tmp_path / 'b.db'}")
    open_database(other.db_url)
    theirs = store(other, csv_folder, "theirs")
    make_old(settings.data_dir / theirs.path)
    for each in (settings, other):
        with session_factory(each.db_url, read_only=True)() as s:
            use = storage.disk_use(s, each)
            assert not use.owned and use.leftovers
            with pytest.raises(storage.DeleteRefused, match="may hold another database's files"):
                storage.delete_leftovers(s, each)
    assert (settings.data_dir / theirs.path / "train.csv").is_file()
    assert (settings.data_dir / dataset.path / "train.csv").is_file()


def test_a_data_folder_that_held_files_before_it_was_marked_is_never_this_databases_alone(settings, csv_folder):
    before = settings.runs_dir / "3"  # a run folder from before the folder recorded whose it is
    before.mkdir(parents=True)
    (before / "train.log").write_text("old\n")
    make_old(before)
    store(settings, csv_folder)
    with session_factory(settings.db_url, read_only=True)() as s:
        use = storage.disk_use(s, settings)
        assert use.leftovers == [before] and not use.owned
        with pytest.raises(storage.DeleteRefused):
            storage.delete_leftovers(s, settings)
    assert before.is_dir()
    (settings.data_dir / storage.MARKER).write_text("{not json")  # a marker that cannot be read: nobody's
    assert not storage.owned_alone(settings)


def test_disk_sizes_are_written_one_way():
    from core.words import size_text

    assert [size_text(b) for b in (0, 400_000, 3 * MB, 91_586_023, 3 * 1024 * MB)] == [
        "0 MB",
        "0.4 MB",
        "3.0 MB",
        "87 MB",
        "3.0 GB",
    ]
