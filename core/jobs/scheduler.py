"""Which queued runs the worker starts, and when: several side by side where the device has room for them by their
memory estimates (up to LORALAB_RUNS_AT_ONCE: as many as fit on a GPU, at most 4; one on a CPU), each supervised
in a thread of the worker and trained in its own child process as before. Never one that would not fit beside
those running; a run alone always starts (it was queued on purpose). Also: when a worker the dashboard started
may leave.

No torch here: the worker stays a small process.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time

from sqlalchemy import select

from core.jobs.cost import MAX_GPU_RUNS, device_memory_mb
from core.jobs.queue import fits_beside
from core.store.db import Run, RunStatus, session_factory
from core.store.settings import Settings

log = logging.getLogger("lora_lab.worker")


def worker_slots(settings: Settings) -> tuple[int, str]:
    """How many runs may train at once, and the device kind ("gpu" or "cpu"), without importing torch."""
    gpu = settings.runner == "local" and settings.device in ("auto", "cuda") and _has_nvidia_gpu()
    if settings.runs_at_once:
        return max(1, settings.runs_at_once), "gpu" if gpu else "cpu"
    return (MAX_GPU_RUNS, "gpu") if gpu else (1, "cpu")


def _has_nvidia_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


class RunSupervisors:
    """The runs this worker trains side by side, each watched by its supervisor, a thread of the worker: run id ->
    (that thread, the run's estimated memory)."""

    def __init__(self, settings: Settings, supervise):
        self.settings, self.supervise = settings, supervise
        self.slots, self.kind = worker_slots(settings)
        self.active: dict[int, tuple[threading.Thread, float | None]] = {}
        self.memory_mb = 0.0  # measured when the device is empty of our runs, kept while any trains

    def reap(self) -> None:
        for run_id, (thread, _) in list(self.active.items()):
            if not thread.is_alive():
                del self.active[run_id]

    @property
    def busy(self) -> bool:
        self.reap()
        return bool(self.active)

    def start_next(self, claim) -> bool:
        """Claim and start the oldest queued run if it fits beside those training. True if one was started."""
        self.reap()
        if len(self.active) >= self.slots:
            return False
        with session_factory(self.settings.db_url, read_only=True)() as s:
            waiting = s.execute(
                select(Run.id, Run.estimate).where(Run.status == RunStatus.QUEUED.value).order_by(Run.id).limit(1)
            ).first()
        if waiting is None:
            return False
        needs = (waiting.estimate or {}).get("peak_memory_mb")
        if not self.active:
            self.memory_mb = device_memory_mb(self.settings, self.kind)
        running = [mb for _, mb in self.active.values()]  # None: no estimate, so nothing starts beside it
        if not fits_beside(running, needs, self.memory_mb, self.slots):
            return False
        run_id = claim(self.settings)
        if run_id is None:
            return False
        if run_id != waiting.id:  # another worker took that one meanwhile: read this one's estimate
            with session_factory(self.settings.db_url, read_only=True)() as s:
                needs = (s.get(Run, run_id).estimate or {}).get("peak_memory_mb")
        thread = threading.Thread(target=self._supervise, args=(run_id,), name=f"run-{run_id}", daemon=True)
        self.active[run_id] = (thread, needs)
        thread.start()
        return True

    def _supervise(self, run_id: int) -> None:
        log.info("run %s started (%d training)", run_id, len(self.active))
        try:
            log.info("run %s ended: %s", run_id, self.supervise(self.settings, run_id).value)
        except Exception:  # noqa: BLE001 - a thread's error must not pass silently; the run's row says the rest
            log.exception("supervising run %s failed", run_id)

    def wait(self) -> None:
        """Until every run started here has ended."""
        for thread, _ in list(self.active.values()):
            thread.join()
        self.reap()


def dashboard_gone(pid: int | None) -> bool:
    """Whether the dashboard that started this worker has stopped (False for a worker started by hand)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class IdleClock:
    """How long the worker has had nothing to do."""

    def __init__(self):
        self.since = time.monotonic()

    def busy(self) -> None:
        self.since = time.monotonic()

    def idle_s(self) -> float:
        return time.monotonic() - self.since
