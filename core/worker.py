"""The long-lived worker: claims queued runs one at a time and trains each in its own child process.

One worker per data folder (an OS file lock, released by the kernel however the worker dies). The worker
supervises its child: heartbeat, cancel (the child stops at its next step; a signal if it does not), and
records `crashed` when the child dies without saying how it ended.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import select, update

from core.db import Run, RunStatus, session_factory, utcnow
from core.settings import PROJECT_ROOT, Settings

log = logging.getLogger("lora_lab.worker")
CANCEL_GRACE_S = 10  # after a cancel, how long the child may take to stop by itself before it is signalled
HEARTBEAT_S = 2


def claim_next_run(settings: Settings) -> int | None:
    """Atomically move the oldest queued run to running; None when the queue is empty."""
    sessions = session_factory(settings.db_url)
    with sessions.begin() as s:
        run_id = s.scalar(select(Run.id).where(Run.status == RunStatus.QUEUED.value).order_by(Run.id).limit(1))
        if run_id is None:
            return None
        now = utcnow()
        claimed = s.execute(
            update(Run)
            .where(Run.id == run_id, Run.status == RunStatus.QUEUED.value)
            .values(status=RunStatus.RUNNING.value, started_at=now, heartbeat_at=now)
        ).rowcount
    return run_id if claimed == 1 else None


def _death_reason(returncode: int, log_path) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name
        why = (
            " This usually means the machine ran out of memory, or someone stopped the process."
            if name == "SIGKILL"
            else ""
        )
        return f"The training process was killed ({name}) before it finished.{why} Metrics logged so far are kept."
    return (
        f"The training process exited (code {returncode}) without recording a result. "
        f"Its log is at {log_path}. Metrics logged so far are kept."
    )


def supervise(settings: Settings, run_id: int) -> RunStatus:
    """Run one claimed run in a child process until it ends; record how it ended if the child could not."""
    sessions = session_factory(settings.db_url)
    run_dir = settings.runs_dir / str(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "train.log"
    env = {**os.environ, "LORALAB_DATA_DIR": str(settings.data_dir), "TOKENIZERS_PARALLELISM": "false"}
    with open(log_path, "ab") as out:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "core.train",
                str(run_id),
                "--db",
                settings.db_url,
                "--parent-pid",
                str(os.getpid()),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
            env=env,
        )
    cancel_seen = None
    while child.poll() is None:
        time.sleep(0.5)
        with sessions.begin() as s:
            run = s.get(Run, run_id)
            if run.status == RunStatus.RUNNING.value:
                run.heartbeat_at = utcnow()  # the supervisor vouches for a live child
            cancel = run.cancel_requested
        if cancel and cancel_seen is None:
            cancel_seen = time.monotonic()
        if cancel_seen is not None and child.poll() is None:
            waited = time.monotonic() - cancel_seen
            if waited > 2 * CANCEL_GRACE_S:
                child.kill()
            elif waited > CANCEL_GRACE_S:
                child.terminate()
    with sessions.begin() as s:
        run = s.get(Run, run_id)
        if run.status == RunStatus.RUNNING.value:  # the child could not record its end
            if run.cancel_requested:
                run.status, run.error = RunStatus.CANCELLED.value, None
            else:
                run.status, run.error = RunStatus.CRASHED.value, _death_reason(child.returncode, log_path)
            run.finished_at = utcnow()
        return RunStatus(run.status)


def reconcile_stale_runs(settings: Settings) -> list[int]:
    """Runs still marked running whose heartbeat stopped (machine rebooted, worker killed) have crashed."""
    sessions = session_factory(settings.db_url)
    cutoff = utcnow() - timedelta(seconds=settings.stale_after_s)
    with sessions.begin() as s:
        stale = s.scalars(
            select(Run).where(
                Run.status == RunStatus.RUNNING.value, (Run.heartbeat_at < cutoff) | (Run.heartbeat_at.is_(None))
            )
        ).all()
        for run in stale:
            run.status = RunStatus.CRASHED.value
            run.finished_at = utcnow()
            run.error = (
                "The run stopped sending a heartbeat (the machine restarted or the worker was killed). "
                "Metrics logged so far are kept."
            )
        return [r.id for r in stale]


def lock_path(settings: Settings):
    return settings.data_dir / "worker.lock"


@contextmanager
def worker_lock(settings: Settings):
    """Held for the worker's lifetime; yields False if another worker holds it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_path(settings), "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def worker_alive(settings: Settings) -> bool:
    with worker_lock(settings) as got:
        return not got


def run_worker(settings: Settings, poll_s: float = 1.0, exit_when_idle: bool = False) -> int:
    """The worker loop. Returns 0 when it stops; 3 if another worker already serves this data folder."""
    with worker_lock(settings) as got:
        if not got:
            log.info("another worker is already running for %s", settings.data_dir)
            return 3
        log.info("worker %s serving %s", os.getpid(), settings.db_url)
        last_reconcile = 0.0
        while True:
            if time.monotonic() - last_reconcile > settings.stale_after_s / 2:
                for run_id in reconcile_stale_runs(settings):
                    log.warning("run %s had crashed; marked so", run_id)
                last_reconcile = time.monotonic()
            run_id = claim_next_run(settings)
            if run_id is not None:
                log.info("run %s started", run_id)
                log.info("run %s ended: %s", run_id, supervise(settings, run_id).value)
                continue
            if exit_when_idle:
                return 0
            time.sleep(poll_s)


def ensure_worker(settings: Settings) -> bool:
    """Start a worker in the background if none serves this data folder. Returns True if one was started.

    It runs in its own session, so it outlives the dashboard that started it.
    """
    if worker_alive(settings):
        return False
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LORALAB_DATA_DIR": str(settings.data_dir)}
    with open(settings.data_dir / "worker.log", "ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "core", "worker", "--db", settings.db_url],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=PROJECT_ROOT,
            env=env,
            start_new_session=True,
        )
    return True
