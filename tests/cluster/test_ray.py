"""Runs as Ray jobs on a real (local, token-authenticated) Ray head: a pair trains, cancel stops the job, a job
stopped or killed behind the worker's back ends crashed with its metrics kept. The database is the PostgreSQL
test server when there is one (as on a real cluster), else SQLite."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys

import pytest

from core.jobs.runners import RayRunner, RunnerError
from core.jobs.runs import create_comparison, create_run, request_cancel
from core.jobs.worker import run_worker
from core.store.db import Run, session_factory
from core.store.storage import run_dir
from core.training.config import TrainConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start_worker(settings) -> subprocess.Popen:
    """`python -m core worker` with this test's settings (LORALAB_RUNNER=ray and RAY_ADDRESS are in the env)."""
    return subprocess.Popen(
        [sys.executable, "-m", "core", "worker", "--db", settings.db_url],
        cwd=ROOT,
        env={**os.environ, "LORALAB_DATA_DIR": str(settings.data_dir)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def job_status(client, job_id: str, lab) -> str:
    return lab.wait(lambda: (s := str(client.get_job_status(job_id))) in ("STOPPED", "SUCCEEDED", "FAILED") and s, 60)


def test_gpus_per_run_follow_the_cluster_and_the_setting(ray_settings):
    assert RayRunner.gpus_per_run(ray_settings) == 0  # the test head has no GPU: the job reserves none
    assert RayRunner.gpus_per_run(dataclasses.replace(ray_settings, ray_gpus="1")) == 1
    with pytest.raises(RunnerError, match="LORALAB_RAY_GPUS"):
        RayRunner.gpus_per_run(dataclasses.replace(ray_settings, ray_gpus="many"))


def test_a_pair_trains_as_ray_jobs_and_its_models_predict_here(ray_lab, ray_client, csv_folder, tiny_model):
    settings = ray_lab.settings
    dataset = ray_lab.store(csv_folder)
    with session_factory(settings.db_url)() as s:
        config = TrainConfig(method="full", learning_rate=3e-3, **ray_lab.FAST)
        _, (full, lora) = create_comparison(s, dataset, tiny_model, config)

    assert run_worker(settings, poll_s=0.1, exit_when_idle=True) == 0

    for run_id in (full.id, lora.id):
        run = ray_lab.run(run_id)
        assert run.status == "completed", run.error
        assert run.job_id.startswith(f"loralab-run-{run_id}-")
        info = ray_client.get_job_info(run.job_id)
        assert str(info.status) == "SUCCEEDED"
        assert f"-m core.training.train {run_id} --db" in info.entrypoint and "--parent-pid" not in info.entrypoint
        assert ray_lab.metrics(run_id) > 0 and run.test_metrics["confusion_matrix"]
        log = (run_dir(settings, run) / "train.log").read_text()
        assert run.job_id in log  # Ray's log of the job, copied into the run's folder
    assert ray_lab.run(lora.id).trainable_params < ray_lab.run(full.id).trainable_params / 2

    from core.training.predict import load_run

    for run_id in (full.id, lora.id):  # the artifacts the jobs wrote serve Predict and Compare here
        with session_factory(settings.db_url, read_only=True)() as s:
            label, probs = load_run(settings, s.get(Run, run_id)).predict("bank shares profit")
        assert label in probs


def test_cancel_stops_the_running_ray_job(ray_lab, ray_client, csv_folder, tiny_model):
    settings = ray_lab.settings
    dataset = ray_lab.store(csv_folder)
    with session_factory(settings.db_url)() as s:
        run = create_run(s, dataset, tiny_model, TrainConfig(method="full", **ray_lab.LONG))
    worker = start_worker(settings)
    try:
        ray_lab.wait(lambda: ray_lab.run(run.id).step > 0)
        job_id = ray_lab.run(run.id).job_id
        assert str(ray_client.get_job_status(job_id)) == "RUNNING"
        with session_factory(settings.db_url)() as s:
            request_cancel(s, run.id)
        ray_lab.wait(lambda: ray_lab.run(run.id).status == "cancelled", timeout=30)
        assert job_status(ray_client, job_id, ray_lab) == "STOPPED"
        assert ray_lab.metrics(run.id) > 0  # what was logged stays
        assert worker.poll() is None  # the worker lives on
    finally:
        worker.kill()
        worker.wait()


def test_a_ray_job_stopped_or_killed_behind_the_workers_back_ends_crashed(ray_lab, ray_client, csv_folder, tiny_model):
    settings = ray_lab.settings
    dataset = ray_lab.store(csv_folder)
    with session_factory(settings.db_url)() as s:
        stopped = create_run(s, dataset, tiny_model, TrainConfig(method="lora", **ray_lab.LONG))
        killed = create_run(s, dataset, tiny_model, TrainConfig(method="full", **ray_lab.LONG))
    worker = start_worker(settings)
    try:
        # Stopped through Ray (`ray job stop`, Ray's dashboard), not through LoRA Lab
        ray_lab.wait(lambda: ray_lab.metrics(stopped.id) > 0)
        ray_client.stop_job(ray_lab.run(stopped.id).job_id)
        ray_lab.wait(lambda: ray_lab.run(stopped.id).status == "crashed", timeout=30)
        assert "stopped outside LoRA Lab" in ray_lab.run(stopped.id).error
        assert ray_lab.metrics(stopped.id) > 0

        # The training process killed (out of memory, say) on the node that runs it: this machine
        ray_lab.wait(lambda: ray_lab.metrics(killed.id) > 0)
        run = ray_lab.run(killed.id)
        os.kill(run.pid, signal.SIGKILL)
        ray_lab.wait(lambda: ray_lab.run(killed.id).status == "crashed", timeout=30)
        error = ray_lab.run(killed.id).error
        assert "killed (SIGKILL)" in error and "Metrics logged so far are kept" in error
        assert ray_lab.metrics(killed.id) > 0
        assert job_status(ray_client, run.job_id, ray_lab) == "FAILED"
        assert run.job_id in (run_dir(settings, run) / "train.log").read_text()
        assert worker.poll() is None
    finally:
        worker.kill()
        worker.wait()
