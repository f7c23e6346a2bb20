"""Several runs at once where they fit (forced to 2 on this CPU), refused by the memory estimate where they do not;
probes; and the worker the dashboard started leaving once idle with no dashboard to serve."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from core.jobs import cost, estimate, worker
from core.jobs.probe import claim_next_probe, probe_result, request_probe, run_probe
from core.jobs.runs import create_run
from core.jobs.scheduler import dashboard_gone
from core.jobs.worker import run_worker
from core.store.db import Dataset, LabelJob, Probe, Run, RunStatus, session_factory
from core.training import machine_load
from core.training.config import TrainConfig
from tests.helpers import get_run, store, wait_for

QUICK = TrainConfig(method="lora", epochs=1, batch_size=32, evals_per_epoch=1, max_length=16)


def queue_two(settings, csv_folder, tiny_model, memory_mb: float) -> list[int]:
    dataset = store(settings, csv_folder)
    est = {"peak_memory_mb": memory_mb, "total_seconds": 30.0, "train_seconds": 20.0}
    with session_factory(settings.db_url)() as s:
        return [create_run(s, dataset, tiny_model, QUICK, estimate=est).id for _ in range(2)]


def started_lines(caplog, run_id: int) -> int:
    return sum(1 for r in caplog.records if r.getMessage().startswith(f"run {run_id} started"))


def test_two_runs_train_side_by_side_each_claimed_once(settings, csv_folder, tiny_model, caplog):
    ids = queue_two(settings, csv_folder, tiny_model, memory_mb=500)
    roomy = dataclasses.replace(settings, runs_at_once=2, device_memory_mb=100_000)
    with caplog.at_level(logging.INFO, logger="lora_lab.worker"):
        assert run_worker(roomy, poll_s=0.1, exit_when_idle=True) == 0
    first, second = (get_run(settings, i) for i in ids)
    assert first.status == second.status == RunStatus.COMPLETED.value, (first.error, second.error)
    assert [started_lines(caplog, i) for i in ids] == [1, 1]
    assert second.started_at < first.finished_at, "the second started while the first trained"


def test_a_worker_that_leaves_when_idle_leaves_no_run_queued(settings, csv_folder, tiny_model, monkeypatch):
    """The run training ends between the moment the next run was found not to fit beside it and the moment the
    worker looks whether it is idle: nothing runs, nothing started, and one run is still queued; it is trained."""
    from core.jobs.scheduler import RunSupervisors

    cancelled, queued = queue_two(settings, csv_folder, tiny_model, memory_mb=500)
    with session_factory(settings.db_url)() as s:  # one queued run is enough
        s.get(Run, cancelled).status = RunStatus.CANCELLED.value
        s.commit()
    start_next, refused = RunSupervisors.start_next, []

    def did_not_fit_a_moment_ago(self, claim):
        if not refused:
            refused.append(True)
            return False
        return start_next(self, claim)

    monkeypatch.setattr(RunSupervisors, "start_next", did_not_fit_a_moment_ago)
    assert run_worker(settings, poll_s=0.1, exit_when_idle=True) == 0
    assert refused and get_run(settings, queued).status == RunStatus.COMPLETED.value


def test_a_run_that_would_not_fit_beside_waits(settings, csv_folder, tiny_model, caplog):
    ids = queue_two(settings, csv_folder, tiny_model, memory_mb=500)
    tight = dataclasses.replace(settings, runs_at_once=2, device_memory_mb=800)  # room for one 500 MB run
    with caplog.at_level(logging.INFO, logger="lora_lab.worker"):
        assert run_worker(tight, poll_s=0.1, exit_when_idle=True) == 0
    first, second = (get_run(settings, i) for i in ids)
    assert first.status == second.status == RunStatus.COMPLETED.value, (first.error, second.error)
    assert [started_lines(caplog, i) for i in ids] == [1, 1]
    assert second.started_at >= first.finished_at, "the second waited for the first to end"


def test_cpu_trains_one_at_a_time_by_default(settings):
    assert not settings.runs_at_once
    from core.jobs.scheduler import worker_slots

    if worker_slots(settings)[1] == "cpu":
        assert worker_slots(settings) == (1, "cpu")
    assert worker_slots(dataclasses.replace(settings, runs_at_once=3))[0] == 3


def test_a_probe_measures_steps_and_calibrates_the_estimate(settings, csv_folder, tiny_model):
    dataset = store(settings, csv_folder)
    here = cost.this_device(settings)
    device = dataclasses.replace(here, slowdown=1.0)  # the load left out: only the probe moves the estimate
    longer = dataclasses.replace(QUICK, epochs=50)  # seconds, not tenths: the change shows through the rounding
    with session_factory(settings.db_url)() as s:
        before = estimate.estimate_run(settings, s, dataset, tiny_model, longer, device, probe=True)
        estimate.estimate_run(settings, s, dataset, tiny_model, longer, device, probe=True)  # asked twice, queued once
        assert len(s.scalars(select(Probe)).all()) == 1
    assert not before["probed"] and before["train_seconds"] == pytest.approx(before["raw"]["train_seconds"], abs=0.1)
    probe_id = claim_next_probe(settings)
    assert probe_id is not None and claim_next_probe(settings) is None
    assert run_probe(settings, probe_id) == "done"
    with session_factory(settings.db_url)() as s:
        result = s.get(Probe, probe_id).result
        after = estimate.estimate_run(settings, s, dataset, tiny_model, longer, device)
    assert result["time_ratio"] > 0 and result["peak_memory_mb"] > 0
    assert after["probed"]
    expected = after["raw"]["train_seconds"] * result["time_ratio"]  # the probe stands in for finished runs
    assert after["train_seconds"] == pytest.approx(expected, abs=0.1)


def test_a_probe_held_back_by_other_work_is_taken_again_and_its_time_not_used(
    settings, csv_folder, tiny_model, monkeypatch
):
    """A probe whose threads ran a quarter of the time they were ready to (another job starting beside it) is taken
    again; still held back, its time is not used (the estimate keeps the cost model's) and another probe is asked
    for, where one that had the CPU to itself calibrates. The load average would not have seen it yet."""
    dataset = store(settings, csv_folder)
    readings = []

    def scheduler_times_with(waited_per_ran: float):
        def fake():  # each reading: 1 s more on a CPU, and `waited_per_ran` s more waiting for one
            readings.append(waited_per_ran)
            n = readings.count(waited_per_ran)
            return {"1": (n * 10**9, int(n * waited_per_ran * 10**9))}

        return fake

    results = {}
    for name, waited in (("alone", 0.0), ("held back", 3.0)):
        monkeypatch.setattr(machine_load, "scheduler_times", scheduler_times_with(waited))
        with session_factory(settings.db_url).begin() as s:  # the same steps, measured twice
            probe = Probe(key=name, dataset_id=dataset.id, model_source=tiny_model, config=QUICK.to_dict())
            s.add(probe)
            s.flush()
            probe_id = probe.id
        assert run_probe(settings, probe_id) == "done"
        with session_factory(settings.db_url)() as s:
            results[name] = s.get(Probe, probe_id).result
    # time_ratio: the measured step over the model's step time, taken back to a quiet machine
    quiet = {name: r["time_ratio"] / r["step_seconds"] for name, r in results.items()}
    assert quiet["held back"] == pytest.approx(0.25 * quiet["alone"])
    assert readings.count(0.0) == 2 and readings.count(3.0) == 6  # timed once alone, three times held back
    assert results["alone"]["cpu_share"] == 1.0 and results["held back"]["cpu_share"] == 0.25
    assert results["alone"]["slowdown"] == 1.0 and results["held back"]["slowdown"] == 4.0
    with session_factory(settings.db_url)() as s:
        assert probe_result(s, "alone")["time_ratio"] == results["alone"]["time_ratio"]
        kept = probe_result(s, "held back")
        assert "time_ratio" not in kept and kept["memory_offset_mb"] == results["held back"]["memory_offset_mb"]
        request_probe(s, "alone", s.get(Dataset, dataset.id), tiny_model, QUICK)
        request_probe(s, "held back", s.get(Dataset, dataset.id), tiny_model, QUICK)
        queued = s.scalars(select(Probe.key).where(Probe.status == "queued")).all()
    assert queued == ["held back"]  # taken again later; the probe that had the CPU is in use


def test_dashboard_started_worker_leaves_when_idle_without_its_dashboard(settings):
    dashboard = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "worker", "--db", settings.db_url]
        + ["--dashboard-pid", str(dashboard.pid), "--idle-exit-s", "0.5"],
        cwd=str(worker.PROJECT_ROOT),
        env={**os.environ, "LORALAB_DATA_DIR": str(settings.data_dir)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: worker.worker_alive(settings), what="the dashboard's worker")
        time.sleep(3)  # idle for longer than --idle-exit-s
        assert proc.poll() is None, "its dashboard is alive: it stays"
        dashboard.kill()
        dashboard.wait()
        assert proc.wait(timeout=60) == 0, "idle, its dashboard gone: it leaves"
    finally:
        for p in (proc, dashboard):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_only_the_dashboards_worker_is_told_to_leave(monkeypatch, settings):
    assert not dashboard_gone(None)  # `python -m core worker` by hand: no dashboard pid, it stays
    started = []
    monkeypatch.setattr(worker.subprocess, "Popen", lambda cmd, **kw: started.append(cmd))
    assert worker.ensure_worker(settings)
    (cmd,) = started
    assert cmd[cmd.index("--dashboard-pid") + 1] == str(os.getpid())


def test_nothing_starts_beside_a_run_without_a_memory_estimate(settings, csv_folder, tiny_model):
    """A 2,000 MB device, two 1,204 MB runs: side by side they would not fit. The first has lost its estimate; it
    counts as unknown, not as 0 MB, so the second waits for it."""
    import threading

    from core.jobs.scheduler import RunSupervisors
    from core.jobs.worker import claim_next_run
    from core.store.db import Run

    first, second = queue_two(settings, csv_folder, tiny_model, memory_mb=1204)
    with session_factory(settings.db_url)() as s:
        s.get(Run, first).estimate = None
        s.commit()
    release = threading.Event()
    device = dataclasses.replace(settings, runs_at_once=2, device_memory_mb=2000)
    supervisors = RunSupervisors(device, lambda _settings, _run_id: release.wait(10) and RunStatus.COMPLETED)
    try:
        assert supervisors.start_next(claim_next_run), "a run alone always starts"
        assert not supervisors.start_next(claim_next_run), "the second must not start beside a run of unknown size"
        assert list(supervisors.active) == [first] and get_run(settings, second).status == RunStatus.QUEUED.value
    finally:
        release.set()
        supervisors.wait()


def test_every_child_process_gets_the_same_environment_as_a_ray_job(settings, monkeypatch):
    """One builder of a child's environment: a probe's process, a label job's, the worker the dashboard starts and a
    run's (local or on Ray) each get the settings a child needs; the local ones on top of this process's environment.
    """
    from core.jobs import probe, runners

    monkeypatch.setenv("LORALAB_SOMETHING_ELSE", "kept")
    ray = runners.child_env(settings, inherit=False)
    assert ray["LORALAB_DATA_DIR"] == str(settings.data_dir)
    assert ray["LORALAB_MODEL_ROOTS"] == os.pathsep.join(str(p) for p in settings.model_roots)
    needed = {"LORALAB_DATA_DIR", "LORALAB_MODEL_ROOTS", "LORALAB_CHECKPOINT_SECONDS", "TOKENIZERS_PARALLELISM"}
    assert set(ray) == needed
    seen = []

    def child(*args, env, **kwargs):
        seen.append(env)
        raise OSError("not started in this test")

    monkeypatch.setattr(subprocess, "run", child)
    monkeypatch.setattr(subprocess, "Popen", child)
    monkeypatch.setattr(worker, "worker_alive", lambda _settings: False)
    with pytest.raises(OSError):
        probe.probe_in_child(settings, 1)
    with pytest.raises(OSError):
        worker.ensure_worker(settings)
    with session_factory(settings.db_url)() as s:
        job = LabelJob(run_ids=[], file_name="texts.csv", folder="labels/1", text_column="text")
        s.add(job)
        s.commit()
    (settings.data_dir / "labels" / "1").mkdir(parents=True)
    with pytest.raises(OSError):
        worker.label_in_child(settings, job.id)
    with pytest.raises(OSError):
        runners.LocalRunner.start(settings, 1, settings.data_dir / "train.log")
    assert len(seen) == 4
    for env in seen:
        assert env == {**os.environ, **ray} and env["LORALAB_SOMETHING_ELSE"] == "kept"
