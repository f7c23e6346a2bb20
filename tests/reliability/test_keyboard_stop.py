"""Ctrl+C in the terminal (SIGINT to the whole process group: the command and the training process it started)
ends the run `cancelled`, as a stop asked for, for `core train` and for `core worker`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
from sqlalchemy import event

from core.cli import main
from core.jobs import worker
from core.store.db import Run, get_engine, session_factory
from core.training.recorder import RunRecorder
from tests.helpers import ROOT, get_run, metric_count, metric_rows, start_worker, wait_for


def splits(folder) -> list[str]:
    return [arg for s in ("train", "dev", "test") for arg in (f"--{s}", str(folder / f"{s}.csv"))]


def as_a_terminal_starts_it() -> None:
    """A command typed in a terminal takes SIGINT's default action. One started from a script's background job (as
    a CI runner may start the tests) inherits SIGINT ignored, and Ctrl+C could not reach it at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ctrl_c(process: subprocess.Popen, settings, run_id: int) -> None:
    """Once the run has logged a training step, what a terminal sends on Ctrl+C."""
    wait_for(lambda: metric_count(settings, run_id) > 0, timeout=180, what="the first logged step")
    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=120)


def test_ctrl_c_on_core_train_ends_the_run_cancelled(settings, csv_folder, tiny_model):
    command = [sys.executable, "-m", "core", "train", *splits(csv_folder), "--model", tiny_model, "--epochs", "100"]
    process = subprocess.Popen(
        [*command, "--db", settings.db_url],
        cwd=ROOT,
        env={**os.environ, "LORALAB_DATA_DIR": str(settings.data_dir)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives a command
        preexec_fn=as_a_terminal_starts_it,
    )
    ctrl_c(process, settings, 1)
    stderr = process.stderr.read()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    run = get_run(settings, 1)
    assert (run.status, run.error) == ("cancelled", None)
    assert run.finished_at is not None


def test_ctrl_c_on_core_worker_ends_the_run_cancelled(settings, csv_folder, tiny_model, capsys):
    args = ["submit", *splits(csv_folder), "--model", tiny_model, "--epochs", "100", "--db", settings.db_url]
    assert main(args) == 0
    run_id = int(capsys.readouterr().out)
    worker = start_worker(settings, start_new_session=True, preexec_fn=as_a_terminal_starts_it)
    ctrl_c(worker, settings, run_id)
    assert worker.returncode == 130
    run = get_run(settings, run_id)
    assert (run.status, run.error) == ("cancelled", None)
    assert run.finished_at is not None


@pytest.fixture
def ctrl_c_raises():
    """Ctrl+C raises KeyboardInterrupt in this process, as in a terminal, even if the tests inherit SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_while_the_supervisor_writes_still_records_the_cancel(settings, monkeypatch, ctrl_c_raises):
    """Ctrl+C may come while SQLAlchemy reads a result in a write session (the supervisor renews the heartbeat twice a
    second). No write lock may stay behind: the cancel written next, in the same process, would wait out the busy
    timeout for its own lock and fail with "database is locked" (exit 2, not 130)."""
    with session_factory(settings.db_url).begin() as s:
        run = Run(dataset_name="d", method="lora", model_source="m", config={}, status="running")
        s.add(run)
    ctrl_c_armed = False

    def ctrl_c(conn, cursor, statement, *_):
        nonlocal ctrl_c_armed
        if ctrl_c_armed and statement.startswith("SELECT"):
            ctrl_c_armed = False
            signal.raise_signal(signal.SIGINT)

    class Training:  # ends once the cancel is asked for, as the training process does at its next step
        cancel_grace_s, job_id, polls = 10.0, None, 0

        def poll(self):
            nonlocal ctrl_c_armed
            ended = "ended" if get_run(settings, run.id).cancel_requested else None
            self.polls += 1
            ctrl_c_armed = self.polls == 1  # Ctrl+C in the heartbeat write that follows the first poll
            return ended

        def stop(self, force):
            pass

        def save_logs(self):
            pass

    monkeypatch.setattr(worker, "start_run", lambda *_: Training())
    engine = get_engine(settings.db_url)
    event.listen(engine, "after_cursor_execute", ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):
            worker.supervise(settings, run.id)
    finally:
        event.remove(engine, "after_cursor_execute", ctrl_c)
    ended = get_run(settings, run.id)
    assert (ended.status, ended.error) == ("cancelled", None)


def test_ctrl_c_while_a_step_is_logged_stops_once_the_step_is_written(settings, ctrl_c_raises):
    """The training process writes every logged step (a tiny model, many a second), so Ctrl+C often comes during such
    a write: it raises once the write has ended, never inside SQLAlchemy's bookkeeping."""
    with session_factory(settings.db_url).begin() as s:
        run = Run(dataset_name="d", method="lora", model_source="m", config={}, status="running")
        s.add(run)
    recorder = RunRecorder(session_factory(settings.db_url), run.id, None, checkpoint_every_s=3600)

    def ctrl_c(conn, cursor, statement, *_):
        if statement.startswith("INSERT"):
            signal.raise_signal(signal.SIGINT)

    engine = get_engine(settings.db_url)
    event.listen(engine, "after_cursor_execute", ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):
            step = SimpleNamespace(global_step=3, epoch=0.5)
            recorder.on_log(None, step, None, logs={"loss": 0.5, "grad_norm": 2.0})
    finally:
        event.remove(engine, "after_cursor_execute", ctrl_c)
    assert metric_rows(settings, run.id) == [("train_loss", 3, 0.5), ("grad_norm", 3, 2.0)]
