"""A crashed run resumes from its last checkpoint into the same history, and ends where an unbroken run ends."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from sqlalchemy import text

from core.jobs.runs import create_run, resume_run, resume_step
from core.store.db import get_engine, session_factory
from core.training.artifacts import checkpoints_dir, latest_checkpoint
from core.training.config import TrainConfig
from tests.helpers import get_run, metric_rows, start_worker, store, wait_for

CONFIG = {"epochs": 8, "batch_size": 8, "evals_per_epoch": 1, "max_length": 32}  # 12 steps an epoch, 96 in all


@pytest.mark.parametrize("method", ["full", "lora"])
def test_a_killed_run_resumes_from_its_checkpoint_and_matches_an_unbroken_run(
    settings, csv_folder, tiny_model, method
):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        doomed = create_run(s, dataset, tiny_model, TrainConfig(method=method, **CONFIG))
    worker = start_worker(settings, env={"LORALAB_CHECKPOINT_SECONDS": "0"})  # a checkpoint after every step
    try:
        folder = checkpoints_dir(settings, doomed)
        wait_for(lambda: (latest_checkpoint(folder, doomed.uid) or (None, 0))[1] >= 30, timeout=120, every=0.05)
        os.kill(get_run(settings, doomed.id).pid, signal.SIGKILL)
        crashed = wait_for(lambda: (r := get_run(settings, doomed.id)).status == "crashed" and r, timeout=30)
        assert "killed (SIGKILL)" in crashed.error
        before = metric_rows(settings, doomed.id)
        step = resume_step(settings, crashed)
        assert 30 <= step < 96

        with session_factory(settings.db_url)() as s:
            resume_run(s, settings, doomed.id)
            unbroken = create_run(s, dataset, tiny_model, TrainConfig(method=method, **CONFIG))
        wait_for(lambda: get_run(settings, unbroken.id).status == "completed", timeout=180)
    finally:
        worker.kill()
        worker.wait()

    resumed, reference = get_run(settings, doomed.id), get_run(settings, unbroken.id)
    assert resumed.status == "completed", resumed.error
    assert f"Resumed from the checkpoint at step {step}." in resumed.notes
    after = metric_rows(settings, doomed.id)
    assert after[: len([r for r in before if r[1] <= step])] == [r for r in before if r[1] <= step]  # kept as logged
    # One curve: no step logged twice, and the same steps, with the same values, as the run that was never broken.
    assert len({(name, s) for name, s, _ in after}) == len(after)
    expected = metric_rows(settings, unbroken.id)
    assert [(name, s) for name, s, _ in after] == [(name, s) for name, s, _ in expected]
    learned = {"train_loss", "learning_rate", "grad_norm", "eval_loss", "eval_accuracy", "eval_f1_macro"}
    assert {name for name, *_ in after} == learned  # not the Trainer's timings (eval_runtime, ...)
    np.testing.assert_allclose([v for *_, v in after], [v for *_, v in expected], rtol=1e-4, atol=1e-6)
    assert resumed.test_metrics["accuracy"] == pytest.approx(reference.test_metrics["accuracy"])
    assert resumed.train_seconds > 0 and resumed.step == reference.step == 96
    assert not checkpoints_dir(settings, doomed).exists()  # a completed run keeps its model, not its checkpoints
    with get_engine(settings.db_url).connect() as conn:
        assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"


def test_only_an_ended_run_with_a_checkpoint_can_resume(settings, csv_folder, tiny_model):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        queued = create_run(s, dataset, tiny_model, TrainConfig(**CONFIG))
        with pytest.raises(ValueError, match="only a crashed, failed or cancelled run can resume"):
            resume_run(s, settings, queued.id)
        s.get(type(queued), queued.id).status = "crashed"
        s.commit()
        with pytest.raises(ValueError, match="has no checkpoint to resume from"):
            resume_run(s, settings, queued.id)
        with pytest.raises(ValueError, match="There is no run 999"):
            resume_run(s, settings, 999)
