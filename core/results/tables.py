"""Read-only queries the dashboard shows as tables and charts: plain data and DataFrames, no Streamlit."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.i18n import N_, _
from core.results.describe import machine_text, run_colours, run_label, settings_text
from core.store.db import ACTIVE, Dataset, Metric, Run, RunStatus, utcnow
from core.training import models
from core.training.config import METHOD_NAMES
from core.words import duration_text, in_percent

if TYPE_CHECKING:  # pandas and numpy are imported where a table or matrix is made: the Start page, the first a
    import numpy as np  # cold start draws, needs neither
    import pandas as pd

# A table's columns are named in English, as code looks them up; `headers` writes them in the reader's language
# where the table is shown or downloaded. N_ marks every header a table of the dashboard shows.
HISTORY_COLUMNS = [
    N_("run"),
    N_("status"),
    N_("method"),
    N_("settings"),
    N_("dataset"),
    N_("test accuracy"),
    N_("macro-F1"),
    N_("train time"),
    N_("machine while training"),
    N_("pair"),
    N_("trainable params"),
    N_("model"),
    N_("created (UTC)"),
]
DATASET_COLUMNS = [
    N_("id"),
    N_("name"),
    N_("classes"),
    N_("train"),
    N_("dev"),
    N_("test"),
    N_("runs"),
    N_("active runs"),
    N_("created (UTC)"),
]
SHOWN_COLUMNS = (  # added where the history is shown (core.jobs.queue, core.results.studies; ui.local_times)
    N_("created"),
    N_("estimated train"),
    N_("peak memory (MB)"),
    N_("estimated peak (MB)"),
    N_("expected start (UTC)"),
    N_("expected end (UTC)"),
    N_("expected start"),
    N_("expected end"),
    N_("study"),
    N_("comparison"),  # the Runs page's comparisons (core.results.comparisons.groups_frame) and studies
    N_("runs completed"),
    N_("varies"),
    N_("open"),
)
STATUS_NAMES = {  # a run's status (RunStatus) -> its word on screen
    RunStatus.QUEUED.value: N_("queued"),
    RunStatus.RUNNING.value: N_("running"),
    RunStatus.COMPLETED.value: N_("completed"),
    RunStatus.FAILED.value: N_("failed"),
    RunStatus.CANCELLED.value: N_("cancelled"),
    RunStatus.CRASHED.value: N_("crashed"),
}


def header(name) -> str:
    """A column's header in the reader's language ('test accuracy' -> '测试准确率'); a name no table marks (a run's
    label, a class name) as it is."""
    return _(name) if isinstance(name, str) and name else name  # _("") is the catalogue's header


def headers(frame: pd.DataFrame) -> pd.DataFrame:
    """The table with its column headers in the reader's language, to show or to download: code looks its columns up
    by their English names before this."""
    return frame.rename(columns=header)


def status_text(status: str) -> str:
    """A run's status in the reader's language: 'completed' -> '已完成'."""
    return _(STATUS_NAMES[status]) if status in STATUS_NAMES else status


def list_datasets(session: Session) -> list[Dataset]:
    return list(session.scalars(select(Dataset).order_by(Dataset.id.desc())))


def datasets_frame(session: Session) -> pd.DataFrame:
    """Stored datasets, newest first, with how many runs use each (and how many of those are still to finish)."""
    import pandas as pd

    runs = dict(session.execute(select(Run.dataset_id, func.count()).group_by(Run.dataset_id)).all())
    active = dict(
        session.execute(
            select(Run.dataset_id, func.count()).where(Run.status.in_(ACTIVE)).group_by(Run.dataset_id)
        ).all()
    )
    rows = [
        [
            d.id,
            d.name,
            ", ".join(map(str, d.classes)),
            d.sizes.get("train"),
            d.sizes.get("dev"),
            d.sizes.get("test"),
            runs.get(d.id, 0),
            active.get(d.id, 0),
            d.created_at,
        ]
        for d in session.scalars(select(Dataset).order_by(Dataset.id.desc()))
    ]
    return pd.DataFrame(rows, columns=DATASET_COLUMNS)


def active_runs_on(session: Session, dataset_id: int) -> int:
    """How many runs on a dataset are still waiting or training."""
    query = select(func.count()).select_from(Run).where(Run.dataset_id == dataset_id, Run.status.in_(ACTIVE))
    return session.scalar(query)


def history_frame(
    session: Session,
    statuses: list[str] | None = None,
    methods: list[str] | None = None,
    datasets: list[str] | None = None,
) -> pd.DataFrame:
    """Every run, newest first; each filter left empty keeps everything. Accuracy and macro-F1 as numbers of percent
    (the Runs page writes them in the reader's language); a pair is named by its other run's number."""
    import pandas as pd

    pairs: dict[str, list[int]] = {}
    for run_id, pair_id in session.execute(select(Run.id, Run.pair_id).where(Run.pair_id.is_not(None))):
        pairs.setdefault(pair_id, []).append(run_id)
    query = select(Run).order_by(Run.id.desc())
    if statuses:
        query = query.where(Run.status.in_(statuses))
    if methods:
        query = query.where(Run.method.in_(methods))
    if datasets:
        query = query.where(Run.dataset_name.in_(datasets))
    rows = []
    for run in session.scalars(query):
        test = run.test_metrics or {}
        rows.append(
            [
                run.id,
                status_text(run.status),
                _(METHOD_NAMES[run.method]) if run.method in METHOD_NAMES else run.method,
                settings_text(run),
                run.dataset_name,
                in_percent(test.get("accuracy")),
                in_percent(test.get("f1_macro")),
                "" if run.train_seconds is None else duration_text(run.train_seconds),
                machine_text(run) if run.train_seconds is not None else "",
                ", ".join(_("with #{run}", run=i) for i in pairs.get(run.pair_id, []) if i != run.id),
                run.trainable_params,
                models.describe(run.model_source),
                run.created_at,
            ]
        )
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def runs_by_id(session: Session, run_ids: list[int]) -> list[Run]:
    """The runs that exist among `run_ids`, in the order given."""
    found = {r.id: r for r in session.scalars(select(Run).where(Run.id.in_(run_ids)))}
    return [found[i] for i in run_ids if i in found]


def all_runs(session: Session) -> list[Run]:
    return list(session.scalars(select(Run).order_by(Run.id.desc())))


def partners(session: Session, run: Run) -> list[Run]:
    """The other run(s) launched in the same pair."""
    if not run.pair_id:
        return []
    return list(session.scalars(select(Run).where(Run.pair_id == run.pair_id, Run.id != run.id).order_by(Run.id)))


def queue_text(session: Session, run: Run) -> str:
    """Where a queued run stands, in words: which runs train or wait before it (oldest first)."""
    ahead = list(
        session.scalars(
            select(Run.id)
            .where(Run.status.in_(ACTIVE), Run.id != run.id)
            .where((Run.status == RunStatus.RUNNING.value) | (Run.id < run.id))
            .order_by(Run.id)
        )
    )
    if not ahead:
        return _("Waiting for the background worker to start it (a few seconds).")
    if len(ahead) == 1:
        return _("Waiting its turn: it starts when run #{run} has finished.", run=ahead[0])
    # Where several runs train side by side (LORALAB_RUNS_AT_ONCE), it may start before all of them have finished.
    return _(
        "Waiting its turn behind runs {runs} and #{last}: it starts as soon as the worker has room for it.",
        runs=", ".join(f"#{i}" for i in ahead[:-1]),
        last=ahead[-1],
    )


def completed_runs(session: Session) -> list[Run]:
    return list(session.scalars(select(Run).where(Run.status == RunStatus.COMPLETED.value).order_by(Run.id.desc())))


def latest_pair(session: Session) -> list[int]:
    """Ids of the most recent pair whose two runs both completed; else the two latest completed runs."""
    pair_id = session.scalar(
        select(Run.pair_id)
        .where(Run.pair_id.is_not(None), Run.status == RunStatus.COMPLETED.value)
        .group_by(Run.pair_id)
        .having(func.count() >= 2)
        .order_by(func.max(Run.id).desc())
        .limit(1)
    )
    query = select(Run.id).where(Run.status == RunStatus.COMPLETED.value)
    if pair_id is not None:
        query = query.where(Run.pair_id == pair_id)
    return sorted(session.scalars(query.order_by(Run.id.desc()).limit(2)))


def any_active(session: Session) -> bool:
    return session.scalar(select(func.count()).select_from(Run).where(Run.status.in_(ACTIVE))) > 0


def overview(session: Session) -> dict[str, int]:
    """Counts for the start page: datasets, and runs by status."""
    by_status = dict(session.execute(select(Run.status, func.count()).group_by(Run.status)).all())
    return {
        "datasets": session.scalar(select(func.count()).select_from(Dataset)),
        "runs": sum(by_status.values()),
        "active": sum(by_status.get(s, 0) for s in ACTIVE),
        "completed": by_status.get(RunStatus.COMPLETED.value, 0),
    }


def progress(run: Run, now: datetime | None = None) -> tuple[float | None, float | None]:
    """Share of steps done and estimated seconds of training left (None while it cannot be known: say
    "estimating"; see core.results.tables.training_seconds_left)."""
    if not run.total_steps:
        return (1.0 if run.status == RunStatus.COMPLETED.value else None), None
    return min(1.0, run.step / run.total_steps), training_seconds_left(run, now or utcnow())


def curves_frame(session: Session, runs: list[Run]) -> pd.DataFrame:
    """Logged values of the runs with a readable run name, its colour and 'examples' seen (step x batch size)."""
    frame = metrics_frame(session, [r.id for r in runs])
    labels = {r.id: run_label(r, runs) for r in runs}
    batch = {r.id: int(r.config.get("batch_size", 1)) for r in runs}
    frame["run"] = frame["run_id"].map(labels)
    frame["colour"] = frame["run_id"].map(run_colours(runs))
    frame["examples"] = frame["step"] * frame["run_id"].map(batch)
    return frame


def confusion(run: Run, normalised: bool = False) -> tuple[np.ndarray, list[str]]:
    """The test confusion matrix (rows: true class, columns: predicted), counts or each row's shares."""
    import numpy as np

    test = run.test_metrics or {}
    matrix = np.asarray(test.get("confusion_matrix") or [[]], dtype=float)
    if normalised and matrix.size:
        totals = matrix.sum(axis=1, keepdims=True)
        matrix = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    return matrix, list(test.get("classes") or [])


MIN_TIMED_STEPS = 3  # steps timed before the time left is estimated; until then it is "estimating"


def training_seconds_left(run: Run, now: datetime) -> float | None:
    """Seconds of training left at the pace of the steps that the current training process has timed since the end
    of its first step; None until MIN_TIMED_STEPS are timed. Neither start-up (loading the model, tokenizing) nor
    the steps before a resume count: a run resumed 20 s ago from step 500, now at 510 of 600, has 180 s left. A run
    past its last step (scoring the test set) has none."""
    if run.status != RunStatus.RUNNING.value or not run.total_steps:
        return None
    if run.step >= run.total_steps:
        return 0.0
    if run.timing_at is None:
        return None
    timed = run.step - (run.timing_step or 0)
    if timed < MIN_TIMED_STEPS:
        return None
    return max(0.0, (now - run.timing_at).total_seconds() / timed * (run.total_steps - run.step))


def metrics_frame(session: Session, run_ids: list[int]) -> pd.DataFrame:
    """Every logged value of the given runs: run_id, step, epoch, name, value."""
    import pandas as pd

    rows = session.execute(
        select(Metric.run_id, Metric.step, Metric.epoch, Metric.name, Metric.value)
        .where(Metric.run_id.in_(run_ids))
        .order_by(Metric.run_id, Metric.step, Metric.id)
    ).all()
    return pd.DataFrame(rows, columns=["run_id", "step", "epoch", "name", "value"])
