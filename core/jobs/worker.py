"""The long-lived worker: claims queued runs, oldest first, and trains each in its own process (several side by
side where they fit: core.jobs.scheduler).

Where that process runs is the runner's business (core.jobs.runners: a child process here, or a Ray job on a
cluster); the supervising is the same for both: heartbeat, cancel (the run stops at its next step; a signal, or
stopping the Ray job, if it does not), and `crashed` when the process ends without saying how.

One worker per database on a machine (an OS file lock in the data folder, named after the database, released by the
kernel however the worker dies): two databases on one data folder each get their own. On PostgreSQL several machines
may each run one against the same database: claims are atomic there too.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path

from sqlalchemy import case, func, select, update
from sqlalchemy.engine import make_url

from core.i18n import _, words_of
from core.jobs.runners import RunnerError, WarmStart, child_env, start_run
from core.jobs.runs import request_cancel
from core.store import storage
from core.store.db import (
    LabelJob,
    Run,
    RunStatus,
    Study,
    claim_oldest,
    interrupts_deferred,
    open_database,
    session_factory,
    shown_url,
    utcnow,
)
from core.store.settings import PROJECT_ROOT, Settings, sqlite_path
from core.store.storage import run_dir

log = logging.getLogger("lora_lab.worker")
HEARTBEAT_S = 5.0  # how often the worker renews a label job's heartbeat while its child labels
POLL_S = 0.5  # how often the supervisor checks the process, renews the heartbeat and reads the cancel flag
LOGS_EVERY_S = 5.0  # how often a Ray job's log is copied into the run's train.log while it trains


def claim_next_run(settings: Settings) -> int | None:
    """Atomically move the oldest queued run to running (core.store.db.claim_oldest); None when the queue is empty."""

    def fields(now):  # a resumed run keeps its first start time; the resume's time is kept beside it
        return {
            "started_at": func.coalesce(Run.started_at, now),
            "resumed_at": case((Run.started_at.is_(None), None), else_=now),
            "heartbeat_at": now,
        }

    return claim_oldest(settings.db_url, Run, fields)


def supervise(settings: Settings, run_id: int, warm: WarmStart | None = None) -> RunStatus:
    """Train one claimed run where the runner setting says, until it ends; record how it ended if it could not.
    With `warm`, a local run takes its waiting process, and another is prepared while more runs are queued. A study's
    run, once ended, advances its study (its next runs queued)."""
    with session_factory(settings.db_url)() as s:
        study_id = s.get(Run, run_id).study_id
    status = _supervise_run(settings, run_id, warm)
    if study_id is not None and _advance_study(settings, study_id) and warm is not None:
        warm.prepare()  # the study's next runs were just queued
    return status


def _supervise_run(settings: Settings, run_id: int, warm: WarmStart | None) -> RunStatus:
    sessions = session_factory(settings.db_url)
    with sessions() as s:
        folder = run_dir(settings, s.get(Run, run_id))
    try:
        storage.use_data_folder(settings)  # the data folder records this database before it holds its files
        folder.mkdir(parents=True, exist_ok=True)
        job = start_run(settings, run_id, folder / "train.log", warm)
    except RunnerError as e:
        return _record_end(sessions, run_id, RunStatus.FAILED, words_of(e))
    except OSError as e:  # the data folder is full, read-only, or in the way: this run fails, the worker goes on
        where = e.filename or folder
        return _record_end(
            sessions,
            run_id,
            RunStatus.FAILED,
            _(
                "Could not create {where}: {why}. Free some disk space or make the data folder writable, then "
                "launch the run again.",
                where=where,
                why=e.strerror or e,
            ),
        )
    if job.job_id:
        with sessions.begin() as s:
            s.get(Run, run_id).job_id = job.job_id
    elif warm is not None and _more_queued(sessions):
        warm.prepare()
    cancel_seen, stop_level, logs_saved, interrupted = None, 0, time.monotonic(), False
    while True:
        try:
            if (ended := job.poll()) is not None:
                break
            time.sleep(POLL_S)
            with interrupts_deferred(), sessions.begin() as s:  # Ctrl+C raises after the write, not inside it
                run = s.get(Run, run_id)
                if run.status == RunStatus.RUNNING.value:
                    run.heartbeat_at = utcnow()  # the supervisor vouches for a live process
                cancel = run.cancel_requested
            if cancel and cancel_seen is None:
                cancel_seen = time.monotonic()
            if cancel_seen is not None:
                waited = time.monotonic() - cancel_seen
                level = 2 if waited > 2 * job.cancel_grace_s else 1 if waited >= job.cancel_grace_s else 0
                if level > stop_level:  # first ask politely, then force
                    job.stop(force=level == 2)
                    stop_level = level
            if time.monotonic() - logs_saved > LOGS_EVERY_S:
                job.save_logs()
                logs_saved = time.monotonic()
        except KeyboardInterrupt:  # Ctrl+C: the run is cancelled as if asked, and the process stops once it has ended
            if interrupted:
                raise  # a second Ctrl+C: leave at once
            interrupted = True
            with interrupts_deferred(), sessions() as s:
                request_cancel(s, run_id)
    job.save_logs()
    status = _record_end(sessions, run_id, RunStatus.CRASHED, ended)
    if interrupted:
        raise KeyboardInterrupt
    return status


def _advance_study(settings: Settings, study_id: int) -> int:
    """Queue what the study needs now that one of its runs has ended (a learning-rate study's chosen rates on their
    fresh seeds, once its rates have all ended: core.jobs.studies.advance). Returns how many runs it queued."""
    from core.jobs import studies  # here: the pages import this module, and studies import torch

    with session_factory(settings.db_url)() as s:
        queued = len(studies.advance(s, s.get(Study, study_id)))
    if queued:
        log.info("study %s: queued %d runs on the rates chosen on the dev set", study_id, queued)
    return queued


def _more_queued(sessions) -> bool:
    with sessions() as s:
        return s.scalar(select(Run.id).where(Run.status == RunStatus.QUEUED.value).limit(1)) is not None


def _record_end(sessions, run_id: int, status: RunStatus, error: str) -> RunStatus:
    """If the run is still marked running, its process could not record its end: record it (cancelled if that was
    asked for). Returns how the run ended."""
    with sessions.begin() as s:
        run = s.get(Run, run_id)
        if run.status == RunStatus.RUNNING.value:
            if run.cancel_requested:
                run.status, run.error = RunStatus.CANCELLED.value, None
            else:
                run.status, run.error = status.value, error
            run.finished_at = utcnow()
        return RunStatus(run.status)


def claim_next_label_job(settings: Settings) -> int | None:
    """Atomically move the oldest queued label job to running, as claim_next_run does for runs."""
    return claim_oldest(settings.db_url, LabelJob, lambda now: {"started_at": now, "heartbeat_at": now})


def label_in_child(settings: Settings, job_id: int) -> RunStatus:
    """The worker's side: label the job in a child process (a crash there leaves the worker running, and the model's
    memory is given back when it ends); a child that ends without recording an end fails the job."""
    sessions = session_factory(settings.db_url)
    with session_factory(settings.db_url, read_only=True)() as s:
        folder = settings.data_dir / s.get(LabelJob, job_id).folder
    with open(folder / "label.log", "ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "core.results.labels", str(job_id), "--db", settings.db_url],
            cwd=PROJECT_ROOT,
            env=child_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            while (code := child.poll()) is None:
                with sessions.begin() as s:  # the worker vouches for a live labelling process, as for a run
                    s.execute(update(LabelJob).where(LabelJob.id == job_id).values(heartbeat_at=utcnow()))
                try:
                    child.wait(timeout=HEARTBEAT_S)
                except subprocess.TimeoutExpired:
                    pass
        except KeyboardInterrupt:  # Ctrl+C on the worker: stop the child too
            child.kill()
            child.wait()
            code = None
    with sessions.begin() as s:
        job = s.get(LabelJob, job_id)
        if job.status == RunStatus.RUNNING.value:
            job.status, job.finished_at = RunStatus.FAILED.value, utcnow()
            job.error = (
                _("The worker was stopped from the keyboard (Ctrl+C) while it labelled the file. Label it again.")
                if code is None
                else _(
                    "The labelling process ended without finishing (exit status {code}). Label the file again.",
                    code=code,
                )
            )
        status = RunStatus(job.status)
    if code is None:
        raise KeyboardInterrupt
    return status


def reconcile_stale_runs(settings: Settings) -> list[int]:
    """Runs still marked running whose heartbeat stopped (machine rebooted, worker killed) have crashed; label
    jobs likewise have failed. Returns the runs' ids."""
    sessions = session_factory(settings.db_url)
    cutoff = utcnow() - timedelta(seconds=settings.stale_after_s)
    with sessions.begin() as s:
        s.execute(
            update(LabelJob)
            .where(
                LabelJob.status == RunStatus.RUNNING.value,
                (LabelJob.heartbeat_at < cutoff) | LabelJob.heartbeat_at.is_(None),
            )
            .values(
                status=RunStatus.FAILED.value,
                finished_at=utcnow(),
                error=_(
                    "The labelling stopped (the machine restarted or the worker was killed). Label the file again."
                ),
            )
        )
        stale = s.scalars(
            select(Run)
            .where(Run.status == RunStatus.RUNNING.value, (Run.heartbeat_at < cutoff) | (Run.heartbeat_at.is_(None)))
            .with_for_update(skip_locked=True)  # PostgreSQL: another worker reconciling at once takes other rows
        ).all()
        for run in stale:
            run.status = RunStatus.CRASHED.value
            run.finished_at = utcnow()
            run.error = _(
                "The run stopped sending a heartbeat (the machine restarted or the worker was killed). Metrics logged "
                "so far are kept."
            )
        return [r.id for r in stale]


def lock_path(settings: Settings) -> Path:
    """One worker per database: the lock is named after it, so two databases on one data folder (a.db and b.db side
    by side share data/) each get their own worker. SQLite: one per database file. Another database: one per machine,
    database and data folder, so that workers on several machines can share a data folder mounted over NFS (where a
    flock is seen by every machine)."""
    db_file = sqlite_path(settings.db_url)
    if db_file is not None:
        name, identity = db_file.stem, str(db_file)
    else:
        url = make_url(settings.db_url)
        name = f"{socket.gethostname()}-{url.database or url.get_backend_name()}"
        identity = url.set(password=None).render_as_string(hide_password=False)
    name = re.sub(r"[^\w.-]+", "-", name)[:60]
    return settings.data_dir / f"worker-{name}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}.lock"


@contextmanager
def worker_lock(settings: Settings, wait_s: float = 3.0):
    """Held for the worker's lifetime; yields False if another worker holds it. Waits a moment first, because a
    dashboard checking whether a worker is alive holds the lock for an instant."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_path(settings), "a+") as f:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.1)
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def worker_alive(settings: Settings) -> bool:
    """Whether a worker holds the lock. Only looks: writes nothing and holds a shared lock for an instant."""
    try:
        f = open(lock_path(settings))
    except FileNotFoundError:
        return False
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def run_worker(
    settings: Settings,
    poll_s: float = 1.0,
    exit_when_idle: bool = False,
    dashboard_pid: int | None = None,
    idle_exit_s: float = 300.0,
) -> int:
    """The worker loop. Returns 0 when it stops; 3 if another worker already serves this database.

    Runs train side by side where they fit (core.jobs.scheduler). A worker the dashboard started (dashboard_pid) leaves
    after idle_exit_s with nothing to do once that dashboard has stopped; the next page view starts one again."""
    from core.jobs.scheduler import IdleClock, RunSupervisors, dashboard_gone
    from core.jobs.studies import advance_all  # here: the pages import this module, and studies import torch

    with worker_lock(settings) as got:
        if not got:
            log.info("another worker is already running for %s", make_url(settings.db_url))  # password hidden
            return 3
        log.info("worker %s serving %s", os.getpid(), shown_url(settings.db_url))  # the log never shows a password
        open_database(settings.db_url)
        last_reconcile = 0.0
        for study_id, queued in advance_all(settings).items():  # a study whose last rate ended while no worker ran
            log.info("study %s: queued %d runs on the rates chosen on the dev set", study_id, queued)
        warm = WarmStart(settings)  # a training process started ahead while runs are queued: a study's runs are short
        supervisors, idle = RunSupervisors(settings, partial(supervise, warm=warm)), IdleClock()
        try:
            while True:
                if time.monotonic() - last_reconcile > settings.stale_after_s / 2:
                    for run_id in reconcile_stale_runs(settings):
                        log.warning("run %s had crashed; marked so", run_id)
                    last_reconcile = time.monotonic()
                job_id = claim_next_label_job(settings)  # first: someone waits on the Predict page for it
                if job_id is not None:
                    log.info("label job %s ended: %s", job_id, label_in_child(settings, job_id).value)
                    continue
                if supervisors.start_next(claim_next_run):
                    idle.busy()
                    continue
                if supervisors.busy:
                    idle.busy()
                elif _probe_next(settings):
                    idle.busy()
                    continue
                elif exit_when_idle and not _more_queued(session_factory(settings.db_url, read_only=True)):
                    return 0  # a run still queued (one that did not fit beside the run that has just ended) is next
                elif dashboard_gone(dashboard_pid) and idle.idle_s() >= idle_exit_s:
                    log.info("idle for %.0f s and the dashboard that started it has stopped: leaving", idle.idle_s())
                    return 0
                time.sleep(poll_s)
        except KeyboardInterrupt:  # Ctrl+C: the runs training here are cancelled; leave once each has ended
            with interrupts_deferred(), session_factory(settings.db_url)() as s:
                for run_id in list(supervisors.active):
                    request_cancel(s, run_id)
            supervisors.wait()  # each supervisor sees the cancel, stops its child and records the end
            raise
        finally:
            warm.close()


def _probe_next(settings: Settings) -> bool:
    """Measure a queued probe (core.jobs.probe) in a child process, when nothing trains. True if there was one."""
    from core.jobs.probe import claim_next_probe, probe_in_child

    probe_id = claim_next_probe(settings)
    if probe_id is None:
        return False
    log.info("probe %s ended: %s", probe_id, probe_in_child(settings, probe_id))
    return True


def ensure_worker(settings: Settings) -> bool:
    """Start a worker in the background if none serves this database. Returns True if one was started.

    It runs in its own session, so a run goes on when the dashboard stops; once idle a while after that, it leaves.
    """
    if worker_alive(settings):
        return False
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.data_dir / "worker.log", "ab") as out:
        subprocess.Popen(  # it leaves when idle a while after this dashboard has stopped
            [sys.executable, "-m", "core", "worker", "--db", settings.db_url, "--dashboard-pid", str(os.getpid())],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=PROJECT_ROOT,
            env=child_env(settings),
            start_new_session=True,
        )
    return True
