"""Creating, cancelling and reading runs: what the dashboard and the command line share."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from core.i18n import _
from core.results import tables
from core.store.db import ComparisonGroup, Dataset, Run, RunStatus, utcnow
from core.store.settings import Settings
from core.training import models
from core.training.artifacts import checkpoints_dir, latest_checkpoint, trained_model
from core.training.config import TrainConfig


class ConfigError(Exception):
    """Hyperparameters that cannot be trained, in plain words."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(" ".join(problems))


def create_run(
    session: Session,
    dataset: Dataset,
    model_source: str,
    config: TrainConfig,
    pair_id: str | None = None,
    status: RunStatus = RunStatus.QUEUED,
    estimate: dict | None = None,
    group: ComparisonGroup | None = None,
) -> Run:
    """Record a run. Queued runs are picked up by the worker in the order they were created. `estimate` is
    core.jobs.estimate's for it, kept beside what the run will measure."""
    problems = config.problems()
    if problems:
        raise ConfigError(problems)
    run = Run(
        dataset_id=dataset.id,
        dataset_name=dataset.name,
        pair_id=pair_id,
        group=group,
        method=config.method,
        model_source=models.absolute_source(model_source),
        config=config.to_dict(),
        status=status.value,
        started_at=utcnow() if status == RunStatus.RUNNING else None,
        heartbeat_at=utcnow() if status == RunStatus.RUNNING else None,
        estimate=estimate,
    )
    session.add(run)
    session.commit()
    return run


MAX_REPEATS = 5


def create_comparison(
    session: Session,
    dataset: Dataset,
    model_source: str,
    config: TrainConfig,
    learning_rates: dict[str, float | None] | None = None,
    estimates: dict[str, dict] | None = None,
    repeats: int = 1,
    status: RunStatus = RunStatus.QUEUED,
) -> tuple[ComparisonGroup, list[Run]]:
    """A comparison: `repeats` pairs (full fine-tuning + LoRA, same data and epochs) with seeds s, s+1, ...

    Runs come full, LoRA, full, LoRA..., seed by seed, so the worker finishes the first pair first. Each method gets
    its rate from `learning_rates` (None: that method's default); without it, the config's rate goes to the config's
    method and the other method keeps its default; `estimates` holds core.jobs.estimate's per method. Every config is
    checked before any run is recorded, so a refused comparison leaves nothing queued.
    """
    if not 1 <= repeats <= MAX_REPEATS:
        raise ConfigError([_("Repeats must be between 1 and {most}.", most=MAX_REPEATS)])
    if learning_rates is None:
        learning_rates = {config.method: config.learning_rate}
    configs = [
        TrainConfig.from_dict({**config.to_dict(), "method": method, "learning_rate": learning_rates.get(method)})
        for method in ("full", "lora")
    ]
    problems = list(dict.fromkeys(p for c in configs for p in c.problems()))
    if problems:
        raise ConfigError(problems)
    group = ComparisonGroup(repeats=repeats, first_seed=config.seed)
    runs = []
    for k in range(repeats):
        pair_id = uuid.uuid4().hex[:12]
        for c in configs:
            seeded = TrainConfig.from_dict({**c.to_dict(), "seed": config.seed + k})
            estimate = (estimates or {}).get(c.method)  # the seed changes neither time nor memory
            runs.append(create_run(session, dataset, model_source, seeded, pair_id, status, estimate, group))
    return group, runs


def request_cancel(session: Session, run_id: int) -> Run | None:
    """Ask a run to stop. A queued run is cancelled at once; a running one stops within a few seconds."""
    run = session.get(Run, run_id)
    if run is None or run.run_status.finished:
        return run
    if run.status == RunStatus.QUEUED.value:
        run.status, run.finished_at = RunStatus.CANCELLED.value, utcnow()
    run.cancel_requested = True
    session.commit()
    return run


RESUMABLE = (RunStatus.CRASHED.value, RunStatus.FAILED.value, RunStatus.CANCELLED.value)


def resume_step(settings: Settings, run: Run) -> int | None:
    """The step an ended, unfinished run can go on from: its last checkpoint's, or its last step once its training
    has finished (its model saved and recorded: it resumes with test scoring alone); None if it cannot."""
    if run.status not in RESUMABLE:
        return None
    if trained_model(settings, run) is not None:
        return run.step
    found = latest_checkpoint(checkpoints_dir(settings, run), run.uid)
    return found[1] if found else None


def resume_run(session: Session, settings: Settings, run_id: int) -> int:
    """Queue a crashed, failed or cancelled run again: it goes on from its last checkpoint, in the same history
    (what was logged after the checkpoint is logged again), or, if its training had finished, with test scoring
    alone. Returns the step it goes on from. Raises ValueError, in plain words, if it cannot."""
    run = session.get(Run, run_id)
    if run is None:
        raise ValueError(_("There is no run {run}.", run=run_id))
    step = resume_step(settings, run)
    if step is None:
        if run.status not in RESUMABLE:
            raise ValueError(
                _(
                    "Run {run} is {status}: only a crashed, failed or cancelled run can resume.",
                    run=run_id,
                    status=tables.status_text(run.status),
                )
            )
        raise ValueError(
            _(
                "Run {run} has no checkpoint to resume from (it saves one every {seconds} s of training). Launch it "
                "again from the Train page.",
                run=run_id,
                seconds=f"{settings.checkpoint_every_s:g}",
            )
        )
    run.status, run.error, run.finished_at, run.cancel_requested = RunStatus.QUEUED.value, None, None, False
    session.commit()
    return step


def summary(run: Run) -> dict:
    """A run as plain data (what `python -m core status --json` prints)."""
    test = run.test_metrics or {}
    return {
        "run_id": run.id,
        "status": run.status,
        "method": run.method,
        "model": run.model_source,
        "base_revision": run.base_revision,
        "dataset": run.dataset_name,
        "pair_id": run.pair_id,
        "group": run.group_id,
        "config": run.config,
        "error": run.error,
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "resumed_at": run.resumed_at.isoformat() if run.resumed_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "step": run.step,
        "total_steps": run.total_steps,
        "train_seconds": run.train_seconds,
        "samples_per_second": run.samples_per_second,
        "trainable_params": run.trainable_params,
        "total_params": run.total_params,
        "peak_memory_mb": run.peak_memory_mb,
        "score_seconds": run.score_seconds,
        "estimate": run.estimate,
        "device": run.device,
        "load_average": run.load_average,
        "cpu_percent": run.cpu_percent,
        "cpu_count": run.cpu_count,
        "cpu_share": run.cpu_share,
        "artifact_bytes": run.artifact_bytes,
        "tokenizer_bytes": run.tokenizer_bytes,
        "test": {
            k: test.get(k)
            for k in ("accuracy", "precision_weighted", "recall_weighted", "f1_macro", "confusion_matrix")
        }
        if test
        else None,
    }
