"""A run whose training has finished loses nothing when scoring the test set fails, is cancelled or is killed: it
resumes with scoring alone, and ends with the predictions of a run that was never broken.

Faults are injected into real processes where that is how they come: a cancel (the worker's SIGTERM once its grace has
passed) and a SIGKILL of the training process, held before scoring by LORALAB_TEST_HOLD_SCORING (core.training.train);
out of memory is raised where scoring computes, in this process, as tests/reliability/test_memory.py does.
"""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch
from sqlalchemy import select

from core.jobs.runs import create_run, request_cancel, resume_run, resume_step
from core.results import tables
from core.store.db import Prediction, session_factory
from core.training import evaluate
from core.training.artifacts import artifact_dir, checkpoints_dir, latest_checkpoint
from core.training.config import TrainConfig
from core.training.train import train_run
from tests.helpers import core_command, get_run, metric_rows, start_worker, store, train_now, wait_for

CONFIG = {"epochs": 2, "batch_size": 16, "evals_per_epoch": 1, "max_length": 32}  # 96 rows: 6 steps an epoch
RESUMED = "Resumed with test scoring: training had finished and its model was saved."


def predictions(settings, run_id) -> tuple[list[int], np.ndarray]:
    with session_factory(settings.db_url, read_only=True)() as s:
        rows = s.scalars(select(Prediction).where(Prediction.run_id == run_id).order_by(Prediction.idx)).all()
        return [r.pred_label for r in rows], np.array([r.probs for r in rows])


def assert_same_predictions(settings, run_id, reference_id) -> None:
    labels, probs = predictions(settings, run_id)
    expected_labels, expected = predictions(settings, reference_id)
    assert len(labels) == 24 and labels == expected_labels
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def assert_resumed_with_scoring_alone(settings, run_id, before, curves_before) -> None:
    """Completed, by scoring: no step trained again, no curve logged again, what training measured kept."""
    done = get_run(settings, run_id)
    assert done.status == "completed", done.error
    assert RESUMED in done.notes and not any(n.startswith("Resumed from the checkpoint") for n in done.notes)
    assert metric_rows(settings, run_id) == curves_before
    kept = ("step", "train_seconds", "trainable_params", "artifact_path", "artifact_bytes")
    assert [getattr(done, k) for k in kept] == [getattr(before, k) for k in kept]
    assert done.test_metrics["accuracy"] is not None and done.score_seconds > 0
    assert not checkpoints_dir(settings, done).exists()  # deleted once the run is recorded completed


@pytest.mark.parametrize("method", ["full", "lora"])
def test_out_of_memory_while_scoring_fails_the_run_and_it_resumes_with_scoring(
    settings, csv_folder, tiny_model, monkeypatch, method
):
    dataset = store(settings, csv_folder)
    reference = train_now(settings, dataset, tiny_model, method, **CONFIG)
    with session_factory(settings.db_url)() as s:
        run = create_run(s, dataset, tiny_model, TrainConfig(method=method, **CONFIG))
    real, calls = evaluate.predict_proba, []

    def first_scoring_runs_out_of_memory(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "predict_proba", first_scoring_runs_out_of_memory)

    assert train_run(settings, run.id).value == "failed"
    failed = get_run(settings, run.id)
    assert failed.error.startswith("Out of memory while scoring the test set. Training has finished")
    assert "resume the run" in failed.error and failed.test_metrics is None
    assert resume_step(settings, failed) == failed.step == failed.total_steps
    curves = metric_rows(settings, run.id)
    out = core_command(settings, "resume", str(run.id))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"run {run.id}: training had finished; queued to resume with test scoring"

    assert train_run(settings, run.id).value == "completed"
    assert len(calls) == 2  # the scoring that failed, and the resumed one
    assert_resumed_with_scoring_alone(settings, run.id, failed, curves)
    assert_same_predictions(settings, run.id, reference)


@pytest.mark.parametrize("fault, method", [("cancel", "full"), ("kill", "lora")])
def test_a_run_cancelled_or_killed_while_scoring_resumes_with_scoring(
    settings, csv_folder, tiny_model, tmp_path, fault, method
):
    dataset = store(settings, csv_folder)
    hold = tmp_path / "hold-scoring"
    hold.touch()
    with session_factory(settings.db_url)() as s:
        doomed = create_run(s, dataset, tiny_model, TrainConfig(method=method, **CONFIG))
    env = {"LORALAB_TEST_HOLD_SCORING": str(hold), "LORALAB_CHECKPOINT_SECONDS": "0"}  # a checkpoint every step
    worker = start_worker(settings, env=env)
    try:
        model = artifact_dir(settings, doomed) / "lora_lab.json"
        wait_for(lambda: model.is_file() or get_run(settings, doomed.id).run_status.finished, timeout=180)
        assert get_run(settings, doomed.id).status == "running", "the run was to wait before scoring"
        wait_for(lambda: get_run(settings, doomed.id).artifact_path, timeout=10, what="the saved model's record")
        scoring = get_run(settings, doomed.id)
        assert tables.progress(scoring) == (1.0, 0.0)  # no training left, nothing to estimate
        assert latest_checkpoint(checkpoints_dir(settings, doomed), doomed.uid) is not None  # kept while it scores
        if fault == "cancel":  # the worker asks, then sends SIGTERM after its grace (the child does not check)
            with session_factory(settings.db_url)() as s:
                request_cancel(s, doomed.id)
            ended = wait_for(lambda: (r := get_run(settings, doomed.id)).run_status.finished and r, timeout=60)
            assert (ended.status, ended.error) == ("cancelled", None)
        else:
            os.kill(scoring.pid, signal.SIGKILL)
            ended = wait_for(lambda: (r := get_run(settings, doomed.id)).run_status.finished and r, timeout=60)
            assert ended.status == "crashed" and "killed (SIGKILL)" in ended.error
        assert ended.test_metrics is None
        assert resume_step(settings, ended) == ended.step == ended.total_steps
        curves = metric_rows(settings, doomed.id)

        hold.unlink()
        with session_factory(settings.db_url)() as s:
            assert resume_run(s, settings, doomed.id) == ended.step
            unbroken = create_run(s, dataset, tiny_model, TrainConfig(method=method, **CONFIG))
        wait_for(lambda: all(get_run(settings, r.id).run_status.finished for r in (doomed, unbroken)), timeout=180)
    finally:
        worker.kill()
        worker.wait()

    assert get_run(settings, unbroken.id).status == "completed"
    assert_resumed_with_scoring_alone(settings, doomed.id, ended, curves)
    assert_same_predictions(settings, doomed.id, unbroken.id)
