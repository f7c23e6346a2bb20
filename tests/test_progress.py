"""Time left: measured from the steps the training process has timed, not from start-up or the first start; a resume
keeps the first start time."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

from core.jobs import queue
from core.jobs.runs import create_run
from core.jobs.worker import claim_next_run
from core.results import tables
from core.store.db import Run, RunStatus, session_factory, utcnow
from core.training.config import TrainConfig
from core.training.recorder import RunRecorder
from tests.helpers import get_run, store


def running(step: int, total: int, **timing) -> Run:
    return Run(status=RunStatus.RUNNING.value, step=step, total_steps=total, **timing)


def test_time_left_after_a_resume_counts_only_the_steps_since_the_resume():
    now = utcnow()
    # Started long ago, resumed 20 s ago from step 500, now at step 510 of 600: 2 s a step, 90 steps to go.
    run = running(
        510,
        600,
        started_at=now - timedelta(hours=1),
        resumed_at=now - timedelta(seconds=20),
        timing_step=500,
        timing_at=now - timedelta(seconds=20),
    )
    done, left = tables.progress(run, now=now)
    assert done == pytest.approx(0.85) and left == pytest.approx(180)


def test_time_left_says_estimating_until_a_few_steps_are_timed():
    now = utcnow()
    # Start-up took 90 s before the first step: the first steps say nothing of the pace yet.
    fresh = running(1, 160, started_at=now - timedelta(seconds=90), timing_step=1, timing_at=now)
    assert tables.progress(fresh, now=now) == (pytest.approx(1 / 160), None)
    untimed = running(4, 230, started_at=now - timedelta(seconds=60))
    assert tables.progress(untimed, now=now)[1] is None
    timed = running(1 + tables.MIN_TIMED_STEPS, 160, timing_step=1, timing_at=now - timedelta(seconds=3))
    assert tables.progress(timed, now=now)[1] == pytest.approx(1 / 1 * (160 - 1 - tables.MIN_TIMED_STEPS))


def test_the_recorder_starts_timing_after_its_first_step(settings, csv_folder):
    dataset = store(settings, csv_folder)
    sessions = session_factory(settings.db_url)
    with sessions() as s:
        run = create_run(s, dataset, "m", TrainConfig(), status=RunStatus.RUNNING)
    recorder = RunRecorder(sessions, run.id, None, checkpoint_every_s=1e9)
    args, control = SimpleNamespace(logging_steps=10), SimpleNamespace(should_save=False, should_training_stop=False)
    recorder.on_step_end(args, SimpleNamespace(global_step=501), control)
    recorder.last_beat = 0.5  # a second later: a heartbeat, not the first step
    recorder.on_step_end(args, SimpleNamespace(global_step=502), control)
    stored = get_run(settings, run.id)
    assert stored.timing_step == 501 and stored.timing_at is not None and stored.step == 502


def test_claiming_a_resumed_run_keeps_its_first_start_time(settings, csv_folder):
    dataset = store(settings, csv_folder)
    first = utcnow() - timedelta(hours=2)
    with session_factory(settings.db_url)() as s:
        run = create_run(s, dataset, "m", TrainConfig())
        fresh = create_run(s, dataset, "m", TrainConfig())
        s.get(Run, run.id).started_at = first  # it ran, crashed, and was queued again to resume
        s.commit()
    assert claim_next_run(settings) == run.id
    assert claim_next_run(settings) == fresh.id
    resumed, fresh = get_run(settings, run.id), get_run(settings, fresh.id)
    assert resumed.started_at == first and resumed.resumed_at > first
    assert fresh.started_at is not None and fresh.resumed_at is None


def test_the_queue_plan_uses_the_pace_since_the_resume_too():

    now = utcnow()
    est = {"total_seconds": 1000.0, "train_seconds": 900.0, "peak_memory_mb": 100.0}
    run = running(
        510,
        600,
        id=1,
        estimate=est,
        started_at=now - timedelta(hours=1),
        resumed_at=now - timedelta(seconds=20),
        timing_step=500,
        timing_at=now - timedelta(seconds=20),
    )
    start, end = queue.queue_times([run], now, slots=1, memory_mb=1000)[1]
    assert end == now + timedelta(seconds=180 + 100)  # 90 steps at 2 s, then what follows training (scoring, ...)
    fresh = running(2, 600, id=2, estimate=est, started_at=now - timedelta(seconds=90), timing_step=1, timing_at=now)
    assert queue.queue_times([fresh], now, slots=1, memory_mb=1000)[2][1] == now + timedelta(seconds=1000 - 90)
