"""Where a claimed run trains: here in a child process (`local`) or on a Ray cluster as a Ray job (`ray`).

Both start the very same entry point, `python -m core.training.train RUN_ID --db URL`, and the worker's one supervise
loop drives either through the same four calls: start, poll, stop, save_logs. The training process writes its metrics,
heartbeat and end to the database itself; a runner only has to say how a run ended when the process could not (it was
killed, or its Ray job was lost).
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from core.i18n import _
from core.store.settings import PROJECT_ROOT, Settings

log = logging.getLogger("lora_lab.runners")


class RunnerError(Exception):
    """A run could not be started where the settings say, in plain words."""


def train_command(python: str, settings: Settings, run_id: int) -> list[str]:
    return [python, "-m", "core.training.train", str(run_id), "--db", settings.db_url]


def child_env(settings: Settings, inherit: bool = True) -> dict[str, str]:
    """The environment of every process the worker starts (a run's training, a probe, a label job, the worker the
    dashboard starts) and of a run's Ray job, so that a setting reaches it the same way wherever it runs:

    - LORALAB_DATA_DIR: the data folder, so that it finds the same files (datasets, checkpoints) as its parent;
    - LORALAB_MODEL_ROOTS: the folders models may be loaded from, so that it accepts the same models;
    - LORALAB_CHECKPOINT_SECONDS: how often a run saves a checkpoint to resume from;
    - TOKENIZERS_PARALLELISM=false: a tokenizer's threads would otherwise warn, or hang, once the data loader forks.

    inherit: this process's environment with those on top (a local child); False: those alone (a Ray job, which runs
    in the environment of the cluster's node)."""
    ours = {
        "LORALAB_DATA_DIR": str(settings.data_dir),
        "LORALAB_MODEL_ROOTS": os.pathsep.join(str(p) for p in settings.model_roots),
        "LORALAB_CHECKPOINT_SECONDS": str(settings.checkpoint_every_s),
        "TOKENIZERS_PARALLELISM": "false",
    }
    return {**os.environ, **ours} if inherit else ours


def death_reason(returncode: int, log_path) -> str:
    """Why a training process that did not record its end has ended, in plain words."""
    if returncode > 128 and returncode - 128 in signal.valid_signals():
        returncode = 128 - returncode  # a shell reports death by signal N as 128 + N
    if returncode < 0:
        name = signal.Signals(-returncode).name
        if name == "SIGKILL":
            return _(
                "The training process was killed ({signal}) before it finished. This usually means the machine ran "
                "out of memory, or someone stopped the process. Metrics logged so far are kept.",
                signal=name,
            )
        return _(
            "The training process was killed ({signal}) before it finished. Metrics logged so far are kept.",
            signal=name,
        )
    return _(
        "The training process exited (code {code}) without recording a result. Its log is at {log}. Metrics logged "
        "so far are kept.",
        code=returncode,
        log=log_path,
    )


class WarmStart:
    """A training process started ahead of its run: its imports (torch, transformers, peft: about 4 s on 2 cores)
    done, it waits for a run id on its standard input (`python -m core.training.train --standby`). A study is many
    short runs, each paying that start; the worker keeps one such process ready while runs are queued, and the next
    local run takes it. Thread-safe: the worker's supervisors start runs from their threads."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.lock = threading.Lock()
        self.process: subprocess.Popen | None = None

    def prepare(self) -> None:
        """Start a process to wait for the next run, unless one waits already."""
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                command = [sys.executable, "-m", "core.training.train", "--standby", "--db", self.settings.db_url]
                self.process = subprocess.Popen(
                    [*command, "--parent-pid", str(os.getpid())],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,  # until it has a run: then its run's train.log
                    cwd=PROJECT_ROOT,
                    env=child_env(self.settings),
                )

    def take(self, run_id: int, log_path: Path) -> subprocess.Popen | None:
        """The waiting process, now training this run (its output in log_path); None if none waits."""
        with self.lock:
            process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return None
        try:
            process.stdin.write(f"{run_id} {log_path}\n".encode())
            process.stdin.close()
        except OSError:  # it died meanwhile
            process.kill()
            return None
        return process

    def close(self) -> None:
        """Stop the waiting process (it also leaves by itself when the worker goes: its standard input closes)."""
        with self.lock:
            process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


class LocalRunner:
    """The training process as a child of the worker, on this machine."""

    cancel_grace_s = 10.0  # the child stops by itself at its next step; a signal only if it does not
    job_id = None

    def __init__(self, process: subprocess.Popen, log_path: Path):
        self.process, self.log_path = process, log_path

    @classmethod
    def start(cls, settings: Settings, run_id: int, log_path: Path, warm: WarmStart | None = None) -> LocalRunner:
        process = warm.take(run_id, log_path) if warm else None
        if process is None:
            # --parent-pid: the child stops by itself if the worker dies, rather than train on unsupervised.
            command = [*train_command(sys.executable, settings, run_id), "--parent-pid", str(os.getpid())]
            with open(log_path, "ab") as out:
                process = subprocess.Popen(
                    command,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=PROJECT_ROOT,
                    env=child_env(settings),
                )
        return cls(process, log_path)

    def poll(self) -> str | None:
        """None while the process runs; once it has ended, why, in case it could not record that itself."""
        code = self.process.poll()
        return None if code is None else death_reason(code, self.log_path)

    def stop(self, force: bool) -> None:
        (self.process.kill if force else self.process.terminate)()

    def save_logs(self) -> None:
        pass  # the child writes train.log itself


class RayRunner:
    """The training process as a Ray job (JobSubmissionClient) on the cluster at RAY_ADDRESS, one GPU reserved
    where the cluster has GPUs. The job's nodes must mount the same LORALAB_DATA_DIR and reach the database."""

    cancel_grace_s = 0.0  # a cancel stops the Ray job at once: Ray sends SIGTERM, then SIGKILL after a few seconds

    def __init__(self, client, job_id: str, log_path: Path, lost_after_s: float):
        self.client, self.job_id, self.log_path, self.lost_after_s = client, job_id, log_path, lost_after_s
        self.last_contact = time.monotonic()
        self.stopping = False

    @staticmethod
    def client(settings: Settings):
        if not settings.ray_address:
            raise RunnerError(
                _(
                    "LORALAB_RUNNER is 'ray' but RAY_ADDRESS is not set: set it to the Ray cluster's dashboard "
                    "address, e.g. http://HEAD-NODE:8265."
                )
            )
        try:
            from ray.job_submission import JobSubmissionClient
        except ImportError:
            raise RunnerError(
                _("LORALAB_RUNNER is 'ray' but Ray is not installed on this machine: pip install 'lora-lab[ray]'.")
            ) from None
        try:
            return JobSubmissionClient(settings.ray_address)
        except Exception as e:  # noqa: BLE001 - unreachable, refused, wrong token: all end here in plain words
            raise RunnerError(
                _(
                    "Could not reach the Ray cluster at {address} ({error}). Check that it is running and that this "
                    "machine has its token (RAY_AUTH_MODE=token), then launch the run again.",
                    address=settings.ray_address,
                    error=f"{type(e).__name__}: {e}",
                )
            ) from None

    @staticmethod
    def gpus_per_run(settings: Settings) -> float:
        """LORALAB_RAY_GPUS, or with "auto": 1 if any live node of the cluster has a GPU, else 0."""
        if settings.ray_gpus != "auto":
            try:
                return float(settings.ray_gpus)
            except ValueError:
                raise RunnerError(
                    _("LORALAB_RAY_GPUS must be 'auto' or a number, not '{value}'.", value=settings.ray_gpus)
                ) from None
        from ray.util.state import list_nodes

        nodes = list_nodes(address=settings.ray_address, detail=True)
        return 1.0 if any(n.state == "ALIVE" and n.resources_total.get("GPU", 0) > 0 for n in nodes) else 0.0

    @classmethod
    def start(cls, settings: Settings, run_id: int, log_path: Path, warm: WarmStart | None = None) -> RayRunner:
        client = cls.client(settings)
        job_id = f"loralab-run-{run_id}-{uuid.uuid4().hex[:8]}"  # unique even if a database is started afresh
        # No --parent-pid: the job has no parent here. If the worker dies, the job trains on and records its end.
        entrypoint = shlex.join(train_command(settings.ray_python or sys.executable, settings, run_id))
        try:
            gpus = cls.gpus_per_run(settings)
            client.submit_job(
                entrypoint=entrypoint,
                submission_id=job_id,
                runtime_env={"env_vars": child_env(settings, inherit=False)},
                entrypoint_num_gpus=gpus or None,
                metadata={"loralab_run_id": str(run_id)},
            )
        except RunnerError:
            raise
        except Exception as e:  # noqa: BLE001
            raise RunnerError(
                _(
                    "The Ray cluster at {address} refused the run ({error}).",
                    address=settings.ray_address,
                    error=f"{type(e).__name__}: {e}",
                )
            ) from None
        log.info("run %s submitted to Ray as %s (%s GPU)", run_id, job_id, gpus)
        return cls(client, job_id, log_path, settings.stale_after_s)

    def poll(self) -> str | None:
        try:
            info = self.client.get_job_info(self.job_id)
        except Exception as e:  # noqa: BLE001
            if "status code 404" in str(e):  # what JobSubmissionClient raises for a job it does not know
                return _(
                    "The Ray job {job} is gone: the Ray cluster restarted or lost it. Metrics logged so far are kept.",
                    job=self.job_id,
                )
            if time.monotonic() - self.last_contact > self.lost_after_s:
                return _(
                    "The Ray cluster stopped answering about job {job} for {seconds} s ({error}). Metrics logged so "
                    "far are kept.",
                    job=self.job_id,
                    seconds=f"{self.lost_after_s:.0f}",
                    error=f"{type(e).__name__}: {e}",
                )
            return None  # a blip: ask again
        self.last_contact = time.monotonic()
        status = str(info.status)
        if status in ("PENDING", "RUNNING"):
            return None
        if status == "STOPPED":
            return _(
                "The Ray job {job} was stopped outside LoRA Lab (ray job stop, or Ray's dashboard) before the run "
                "finished. Metrics logged so far are kept.",
                job=self.job_id,
            )
        if status == "FAILED" and info.driver_exit_code is not None:
            return death_reason(info.driver_exit_code, _("the run's train.log"))
        message = (info.message or "").splitlines()[0] if info.message else status
        return _(
            "The Ray job {job} ended ({message}) without the run recording a result; its node may have been lost. "
            "Its log is in the run's train.log. Metrics logged so far are kept.",
            job=self.job_id,
            message=message,
        )

    def stop(self, force: bool) -> None:
        if not self.stopping:
            self.stopping = True
            try:
                self.client.stop_job(self.job_id)
            except Exception as e:  # noqa: BLE001 - poll() tells what became of the job
                log.warning("could not stop Ray job %s: %s", self.job_id, e)

    def save_logs(self) -> None:
        """The job's log (kept by Ray on the node that ran it) into the run's train.log, as for a local run."""
        try:
            text = self.client.get_job_logs(self.job_id)
        except Exception as e:  # noqa: BLE001 - logs are a convenience; the run's status does not depend on them
            log.warning("could not fetch the log of Ray job %s: %s", self.job_id, e)
            return
        tmp = self.log_path.with_name(self.log_path.name + ".partial")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self.log_path)


RUNNERS = {"local": LocalRunner, "ray": RayRunner}


def start_run(
    settings: Settings, run_id: int, log_path: Path, warm: WarmStart | None = None
) -> LocalRunner | RayRunner:
    """Start the training process of a claimed run where LORALAB_RUNNER says (a local run takes `warm`'s waiting
    process if there is one)."""
    runner = RUNNERS.get(settings.runner)
    if runner is None:
        raise RunnerError(_("LORALAB_RUNNER is '{value}': use 'local' or 'ray'.", value=settings.runner))
    return runner.start(settings, run_id, log_path, warm)
