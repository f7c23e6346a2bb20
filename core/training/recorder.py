"""The Trainer callback that writes a run's progress to the database, keeps its best weights, obeys cancel, and
times its checkpoints; and where those checkpoints are."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sqlalchemy import update
from transformers import TrainerCallback

from core.store.db import Metric, Run, interrupts_deferred, utcnow
from core.training.artifacts import CHECKPOINT_STATE
from core.training.machine_load import cpu_share, scheduler_times


class RunRecorder(TrainerCallback):
    """Writes losses and evaluations to the database, keeps the heartbeat, obeys the cancel flag, keeps the best
    weights (lowest dev loss) in memory (a copy of the trainable weights), and asks for a checkpoint every
    `checkpoint_every_s` seconds, so that a crashed run can resume. A checkpoint also holds the best weights so far
    and the training time; only the newest checkpoint is kept."""

    LOGGED = {"loss": "train_loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm"}

    def __init__(
        self, sessions, run_id: int, parent_pid: int | None, checkpoint_every_s: float, run_uid: str | None = None
    ):
        self.sessions, self.run_id, self.parent_pid, self.run_uid = sessions, run_id, parent_pid, run_uid
        self.checkpoint_every_s = checkpoint_every_s
        self.last_beat = self.last_save = 0.0
        self.cancelled = self.orphaned = False
        self.best_loss = math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_step = self.last_eval_step = None
        self.seconds_before = 0.0  # training time of earlier processes, for a resumed run
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        self.threads_started = scheduler_times()
        self.load_samples: list[float] = []

    def resume_from(self, checkpoint: Path) -> None:
        saved = json.loads((checkpoint / CHECKPOINT_STATE).read_text(encoding="utf-8"))
        self.best_loss, self.best_step = saved.get("best_loss", math.inf), saved["best_step"]
        self.seconds_before = saved["train_seconds"]
        if (checkpoint / "best.safetensors").is_file():
            self.best_state = load_file(checkpoint / "best.safetensors")

    def train_seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def machine_load(self) -> dict[str, float | int | None]:
        """How busy the machine was while this process trained: the mean 1-minute load average (sampled with the
        heartbeat), this process's CPU use in percent of one CPU, the machine's CPUs, and the share of the time its
        threads were ready to run that they ran (core.training.machine_load.cpu_share: below 1, other work held them
        back)."""
        wall = time.perf_counter() - self.started
        return {
            "load_average": sum(self.load_samples) / len(self.load_samples) if self.load_samples else None,
            "cpu_percent": 100 * (time.process_time() - self.cpu_started) / wall if wall > 0 else None,
            "cpu_count": os.cpu_count(),
            "cpu_share": cpu_share(self.threads_started, scheduler_times()),
        }

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.last_save = time.perf_counter()
        self.cpu_started, self.load_samples = time.process_time(), [os.getloadavg()[0]]
        self.threads_started = scheduler_times()
        with interrupts_deferred(), self.sessions.begin() as s:
            s.execute(
                update(Run).where(Run.id == self.run_id).values(total_steps=state.max_steps, step=state.global_step)
            )

    def on_step_end(self, args, state, control, **kwargs):
        due = time.perf_counter() - self.last_save >= self.checkpoint_every_s
        if due and state.global_step % args.logging_steps == 0:
            # Saved at a step that logs (after its logging and evaluation): a resumed run's first logged loss then
            # averages the same steps as an unbroken run's.
            control.should_save = True
        now = time.monotonic()
        first = self.last_beat == 0.0
        if now - self.last_beat < 1.0:
            return
        self.last_beat = now
        self.load_samples.append(os.getloadavg()[0])
        values = {"step": state.global_step, "heartbeat_at": utcnow()}
        if first:  # step times are measured from the end of this process's first step: start-up is not a step
            values.update(timing_step=state.global_step, timing_at=values["heartbeat_at"])
        with interrupts_deferred(), self.sessions.begin() as s:
            s.execute(update(Run).where(Run.id == self.run_id).values(**values))
            self.cancelled = bool(s.get(Run, self.run_id).cancel_requested)
        self.orphaned = self.parent_pid is not None and os.getppid() != self.parent_pid
        if self.cancelled or self.orphaned:
            control.should_training_stop = True

    def on_save(self, args, state, control, **kwargs):
        """The Trainer has written model, optimizer, scheduler and random states: add ours, then mark it complete."""
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.best_state is not None:
            save_file(
                {n: t.detach().cpu().contiguous() for n, t in self.best_state.items()}, folder / "best.safetensors"
            )
        saved = {
            "run_uid": self.run_uid,  # a resume checks it: only this run goes on from this checkpoint
            "best_loss": self.best_loss,
            "best_step": self.best_step,
            "train_seconds": self.train_seconds(),
        }
        (folder / CHECKPOINT_STATE).write_text(json.dumps(saved), encoding="utf-8")
        for old in Path(args.output_dir).glob("checkpoint-*"):
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
        self.last_save = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        rows = []
        for key, value in (logs or {}).items():
            timing = key.endswith(("_runtime", "_per_second"))  # the Trainer's clock, not something learned
            name = self.LOGGED.get(key, key if key.startswith("eval_") and not timing else None)
            if name and isinstance(value, int | float) and np.isfinite(value):
                rows.append(
                    Metric(
                        run_id=self.run_id,
                        step=state.global_step,
                        epoch=state.epoch or 0.0,
                        name=name,
                        value=float(value),
                    )
                )
        if rows:
            with interrupts_deferred(), self.sessions.begin() as s:
                s.add_all(rows)

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        self.last_eval_step = state.global_step
        # The lowest dev loss, as the seed article's load_best_model_at_end: on the demo set's four seeds it kept
        # weights that scored 0.6 (full) and 0.2 (LoRA) points better on the test set than the highest dev accuracy,
        # which moves in steps of one example and ties often (bench/, README "Benchmark").
        loss = (metrics or {}).get("eval_loss", math.inf)
        if loss < self.best_loss:
            self.best_loss, self.best_step = loss, state.global_step
            self.best_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def restore_best(self, model) -> None:
        if self.best_state is not None:
            params = dict(model.named_parameters())
            with torch.no_grad():
                for name, value in self.best_state.items():
                    params[name].copy_(value)
