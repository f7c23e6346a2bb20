"""Faults injected into real processes: killed workers, a second worker, an older database, a full disk."""

from __future__ import annotations

import signal
import subprocess

from sqlalchemy import func, select, text

from core.jobs.runs import create_run
from core.jobs.worker import ensure_worker, worker_alive
from core.store.db import Metric, Run, get_engine, open_database, session_factory
from core.training.config import TrainConfig
from tests.helpers import get_run, metric_count, start_worker, store, wait_for

FAST = {"epochs": 2, "batch_size": 16, "evals_per_epoch": 1, "max_length": 32}


def test_only_one_worker_serves_a_database(settings):
    first = start_worker(settings, output=subprocess.PIPE)
    try:
        wait_for(lambda: worker_alive(settings))
        second = start_worker(settings, output=subprocess.PIPE)
        assert second.wait(timeout=60) == 3
        assert "another worker is already running" in second.stdout.read()
        assert ensure_worker(settings) is False  # the dashboard does not start another one either
        assert first.poll() is None
    finally:
        first.kill()
        first.wait()
    wait_for(lambda: not worker_alive(settings), timeout=10)  # the kernel releases a killed worker's lock


def test_killing_the_worker_mid_run_crashes_the_run_and_a_new_worker_carries_on(settings, csv_folder, tiny_model):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        doomed = create_run(
            s, dataset, tiny_model, TrainConfig(method="full", **{**FAST, "epochs": 100, "batch_size": 8})
        )
        after = create_run(s, dataset, tiny_model, TrainConfig(method="full", **FAST))
    first = start_worker(settings, output=subprocess.PIPE)
    wait_for(lambda: metric_count(settings, doomed.id) > 0)
    child_pid = get_run(settings, doomed.id).pid
    first.send_signal(signal.SIGKILL)
    first.wait()
    # The orphaned child notices its supervisor is gone, stops at its next step and says so.
    wait_for(lambda: get_run(settings, doomed.id).status == "crashed", timeout=30)
    assert "worker that supervised this run stopped" in get_run(settings, doomed.id).error
    wait_for(lambda: subprocess.run(["kill", "-0", str(child_pid)], capture_output=True).returncode != 0, 30)
    kept = metric_count(settings, doomed.id)
    assert kept > 0
    second = start_worker(settings, output=subprocess.PIPE)
    try:
        wait_for(lambda: get_run(settings, after.id).status == "completed", timeout=120)
    finally:
        second.kill()
        second.wait()
    assert metric_count(settings, doomed.id) == kept  # nothing logged before the kill was lost
    with get_engine(settings.db_url).connect() as conn:
        assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"


def test_an_older_database_is_upgraded_in_place_with_its_history(settings, tmp_path):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from core.store.db import MIGRATIONS

    path = tmp_path / "old.db"
    old = create_engine(f"sqlite:///{path}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with old.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")  # the first released schema
        conn.execute(
            text(
                "INSERT INTO datasets (id, name, created_at, content_hash, path, classes, sizes, label_counts,"
                " warnings, source) VALUES (1, '旧数据', '2026-01-01', 'h', 'datasets/1', '[\"a\",\"b\"]',"
                " '{}', '{}', '[]', '{}')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO runs (id, created_at, dataset_id, dataset_name, method, model_source, config,"
                " status, cancel_requested, step, notes, test_metrics) VALUES (1, '2026-01-01', 1, '旧数据',"
                " 'lora', 'm', '{}', 'completed', 0, 40, '[]', '{\"accuracy\": 0.9}')"
            )
        )
        conn.execute(
            text("INSERT INTO metrics (run_id, step, epoch, name, value) VALUES (1, 10, 0.5, 'train_loss', 1.5)")
        )
    old.dispose()

    engine = open_database(f"sqlite:///{path}")  # what the dashboard and worker do on start
    with engine.connect() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    from alembic.script import ScriptDirectory

    assert head == ScriptDirectory.from_config(config).get_current_head()
    with session_factory(f"sqlite:///{path}", read_only=True)() as s:
        run = s.get(Run, 1)
        assert (run.dataset_name, run.status, run.test_metrics["accuracy"]) == ("旧数据", "completed", 0.9)
        assert s.scalar(select(func.count(Metric.id))) == 1
