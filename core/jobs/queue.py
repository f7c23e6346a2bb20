"""The queue's times: when each queued run starts and ends, whether one fits beside the running ones, and when a new
run's result can be expected."""

from __future__ import annotations

import heapq
import statistics
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.i18n import N_
from core.jobs.cost import Device, runs_at_once
from core.jobs.estimate import RECENT_RUNS, advice, estimate_run
from core.results.tables import training_seconds_left
from core.store.db import ACTIVE, Dataset, Run, RunStatus
from core.store.settings import Settings
from core.training.config import TrainConfig
from core.words import duration_text

# ---------------------------------------------------------------------------------------------------------------
# The queue's times


def fits_beside(running_mb: list[float | None], next_mb: float | None, memory_mb: float, slots: int) -> bool:
    """Whether a run may start beside the running ones: a free slot, and room for its estimated memory. A run without
    an estimate (None) trains only alone: it never starts beside others, and nothing starts beside it (it may need
    the whole device). With nothing running, the next run always starts, even one estimated not to fit: it was
    queued on purpose."""
    if not running_mb:
        return True
    if len(running_mb) >= slots or next_mb is None or None in running_mb:
        return False
    return sum(running_mb) + next_mb <= memory_mb


def queue_times(
    active: list[Run], now: datetime, slots: int, memory_mb: float, fallback_s: float | None = None
) -> dict[int, tuple[datetime, datetime | None]]:
    """Expected (start, end) of every queued and running run: running runs end when their estimate (or progress)
    says; queued ones start in order as slots and memory free up. fallback_s stands for runs without an estimate
    (None: their end is unknown, and so are the starts after them)."""

    def total(run: Run) -> float | None:
        est = run.estimate or {}
        return est.get("total_seconds") or fallback_s

    def memory(run: Run) -> float | None:
        return (run.estimate or {}).get("peak_memory_mb")

    out: dict[int, tuple[datetime, datetime | None]] = {}
    running: list[tuple[datetime, int, float | None]] = []  # (end, run id, memory) of what occupies the device
    unknown = False
    for run in sorted(active, key=lambda r: r.id):
        if run.status != RunStatus.RUNNING.value:
            continue
        start = run.started_at or now
        seconds = total(run)
        end = None if seconds is None else max(now, start + timedelta(seconds=seconds))
        if end is None:
            unknown = True
        left = training_seconds_left(run, now)
        if left is not None and (est := run.estimate or {}).get("train_seconds"):
            # Its progress so far is better evidence than the estimate: the steps left at the pace of the steps timed
            # since this training process began (not since the first start, which a resume keeps, nor start-up).
            end = now + timedelta(
                seconds=left + (est["total_seconds"] - est["train_seconds"]) * (run.step < run.total_steps)
            )
        out[run.id] = (start, end)
        heapq.heappush(running, (end or datetime.max, run.id, memory(run)))
    for run in sorted(active, key=lambda r: r.id):
        if run.status != RunStatus.QUEUED.value:
            continue
        clock = now
        while not fits_beside([m for *_, m in running], memory(run), memory_mb, slots):
            end, _, _ = heapq.heappop(running)
            clock = max(clock, end)
        if unknown or clock == datetime.max:
            out[run.id] = (None, None)
            unknown = True
            continue
        seconds = total(run)
        end = None if seconds is None else clock + timedelta(seconds=seconds)
        unknown = unknown or end is None
        out[run.id] = (clock, end)
        heapq.heappush(running, (end or datetime.max, run.id, memory(run)))
    return out


def queue_empties_at(times: dict[int, tuple[datetime | None, datetime | None]]) -> datetime | None:
    ends = [end for _, end in times.values()]
    return None if not ends or None in ends else max(ends)


# ---------------------------------------------------------------------------------------------------------------
# What the pages show


def fallback_seconds(session: Session) -> float | None:
    """Claim-to-result time of a run without an estimate: the median of the latest finished runs'; None if none."""
    rows = session.execute(
        select(Run.started_at, Run.finished_at)
        .where(Run.status == RunStatus.COMPLETED.value, Run.started_at.is_not(None), Run.finished_at.is_not(None))
        .order_by(Run.id.desc())
        .limit(RECENT_RUNS)
    ).all()
    walls = [(end - start).total_seconds() for start, end in rows]
    return statistics.median(walls) if walls else None


def queue_plan(settings: Settings, session: Session, device: Device, now: datetime) -> dict:
    """Expected (start, end) of every queued and running run, as the worker will take them on this device."""
    active = list(session.scalars(select(Run).where(Run.status.in_(ACTIVE))))
    slots = runs_at_once(settings, device)
    return queue_times(active, now, slots, device.memory_mb, fallback_seconds(session))


def queue_to_result(
    settings: Settings, session: Session, device: Device, estimates: list[dict], now: datetime
) -> float | None:
    """Seconds from now until runs queued now with these estimates would all have finished (the queue ahead of them
    included); None when a run ahead has no estimate and no finished run says how long runs take."""
    active = list(session.scalars(select(Run).where(Run.status.in_(ACTIVE))))
    first = max((r.id for r in active), default=0) + 1
    new = [Run(id=first + i, status=RunStatus.QUEUED.value, estimate=e) for i, e in enumerate(estimates)]
    times = queue_times(active + new, now, runs_at_once(settings, device), device.memory_mb, fallback_seconds(session))
    end = queue_empties_at({r.id: times[r.id] for r in new})
    return None if end is None else (end - now).total_seconds()


def plan(
    settings: Settings,
    session: Session,
    dataset: Dataset,
    model_source: str,
    configs: dict[str, TrainConfig],
    device: Device,
    now: datetime,
    repeats: int = 1,
) -> dict:
    """What the Train page shows: each method's estimate with its won't-fit advice ("advice"), how long from queuing
    to result for the pair, once per seed (`repeats`; "pair_seconds"), and for one run of each method
    ("single_seconds"), and whether this device has no run like them yet ("uncalibrated": a probe is then queued
    for the worker)."""
    estimates = {}
    for method, config in configs.items():
        estimates[method] = estimate_run(settings, session, dataset, model_source, config, device, probe=True)
        estimates[method]["advice"] = advice(
            settings, session, dataset, model_source, config, estimates[method], device
        )
    return {
        "estimates": estimates,
        "pair_seconds": queue_to_result(settings, session, device, list(estimates.values()) * repeats, now),
        "single_seconds": {m: queue_to_result(settings, session, device, [e], now) for m, e in estimates.items()},
        "uncalibrated": not all(e["similar_runs"] for e in estimates.values()),
    }


def with_estimates(table, runs: list[Run], times: dict) -> object:
    """The Runs history table with each run's estimate beside what it measured, and when an active run should
    start and end (UTC). The new columns' names are marked (N_) for the page that shows the table to translate."""
    by_id = {r.id: r for r in runs}

    def pick(run_id, key):
        run = by_id.get(run_id)
        return ((run.estimate or {}).get(key) if run else None) or None

    table = table.copy()
    at = table.columns.get_loc("train time") + 1 if "train time" in table.columns else len(table.columns)
    estimated = [pick(i, "train_seconds") for i in table["run"]]
    table.insert(at, N_("estimated train"), ["" if s is None else duration_text(s) for s in estimated])
    table.insert(at + 1, N_("peak memory (MB)"), [getattr(by_id.get(i), "peak_memory_mb", None) for i in table["run"]])
    table.insert(at + 2, N_("estimated peak (MB)"), [pick(i, "peak_memory_mb") for i in table["run"]])
    table[N_("expected start (UTC)")] = [times.get(i, (None, None))[0] for i in table["run"]]
    table[N_("expected end (UTC)")] = [times.get(i, (None, None))[1] for i in table["run"]]
    return table
