"""A run's estimate before it is queued: the cost model (core/jobs/cost.py) calibrated on this machine.

Calibration: the finished runs of this machine store their estimate beside what they measured; similar runs (same
device, method and model first) pull the estimate toward what was measured, more as they accumulate. Where none
exists yet, a probe (a few real training steps, run by the worker in its own process: core/jobs/probe.py) stands in.

No Streamlit here; nothing is trained or loaded in full in the calling process.
"""

from __future__ import annotations

import logging
import math
import statistics

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.i18n import _
from core.jobs.cost import Device, model_shape, raw_estimate, this_device, token_lengths
from core.jobs.probe import probe_key, probe_result, request_probe
from core.store.db import ACTIVE, Dataset, Probe, Run, RunStatus
from core.store.settings import Settings
from core.training.config import TrainConfig
from core.training.machine_load import held_back, measured_slowdown
from core.words import memory_text

log = logging.getLogger("lora_lab.estimate")
PRIOR_WEIGHT = 0.5  # the prior (or a probe) counts as half a finished run
OTHER_RUN_WEIGHT = 0.25  # a run of another method or model on this device counts a quarter as much as a similar one
RECENT_RUNS = 20  # calibrate on the newest finished runs of this device


# ---------------------------------------------------------------------------------------------------------------
# Calibration on this machine's finished runs


def _finished_runs(session: Session, device: Device) -> list[Run]:
    """This device's newest finished runs that kept their estimate (older runs and runs queued without one have
    none to compare with)."""
    runs = session.scalars(
        select(Run)
        .where(Run.status == RunStatus.COMPLETED.value, Run.device == device.name, Run.train_seconds.is_not(None))
        .order_by(Run.id.desc())
        .limit(4 * RECENT_RUNS)
    )
    return [r for r in runs if (r.estimate or {}).get("raw")][:RECENT_RUNS]


def _blend(prior: float, observed: list[tuple[float, float]], log: bool) -> float:
    """The prior (weight PRIOR_WEIGHT) and weighted observations, averaged (in logs for ratios)."""
    f = math.log if log else (lambda x: x)
    total = PRIOR_WEIGHT * f(prior) + sum(w * f(v) for w, v in observed)
    mean = total / (PRIOR_WEIGHT + sum(w for w, __ in observed))
    return math.exp(mean) if log else mean


def _fit_time(prior: float, observed: list[tuple[float, float, float, float]]) -> tuple[float, float]:
    """Multipliers (a, b) of the raw estimate's two parts, token work and fixed costs per step, that best explain
    the finished runs: observed holds (weight, raw token-work seconds, raw per-step seconds, measured seconds).
    Weighted least squares of log(a x work + b x steps) against log(measured), each multiplier pulled toward the
    prior ratio with weight PRIOR_WEIGHT (a few Gauss-Newton steps on log a, log b). Runs that all have the same
    mix of the two parts move both alike: the single ratio of measured over estimated, averaged in logs."""
    u = v = anchor = math.log(prior)
    for __ in range(50):
        huu = hvv = PRIOR_WEIGHT
        huv = 0.0
        gu, gv = PRIOR_WEIGHT * (u - anchor), PRIOR_WEIGHT * (v - anchor)
        for w, work, steps, measured in observed:
            est = math.exp(u) * work + math.exp(v) * steps
            ju, jv = math.exp(u) * work / est, math.exp(v) * steps / est  # shares of each part in the estimate
            r = math.log(est / measured)
            huu, huv, hvv = huu + w * ju * ju, huv + w * ju * jv, hvv + w * jv * jv
            gu, gv = gu + w * ju * r, gv + w * jv * r
        det = huu * hvv - huv * huv
        du, dv = (hvv * gu - huv * gv) / det, (huu * gv - huv * gu) / det
        u, v = u - max(-1.0, min(1.0, du)), v - max(-1.0, min(1.0, dv))
        if abs(du) + abs(dv) < 1e-9:
            break
    return math.exp(u), math.exp(v)


def calibrate(
    raw: dict,
    method: str,
    model_source: str,
    runs: list[Run],
    probe: dict | None = None,
    slowdown: float = 1.0,
    score_prior: float = 1.0,
) -> dict:
    """The raw estimate corrected by this device's finished runs (each carries the raw estimate made when it was
    queued): training time by a multiplier for each of its two parts (token work, fixed costs per step; see
    _fit_time), scoring time by the measured / estimated ratio, memory by the measured - estimated difference. Runs
    of the same method and model count fully, others a quarter; the prior (1, 0; or a probe's ratio) counts half a
    run. Scoring is the same work for both methods (a LoRA model is scored merged): its ratio is learnt from the
    runs of either method alike, from `score_prior` before any. On a CPU, each run's time is taken back to a quiet
    machine by the CPU share it got (measured_slowdown); one held back more than that corrects (held_back) calibrates
    memory only. The estimate is slowed by the load now (`slowdown`): on a shared machine the load moves times more
    than anything else."""
    times, scores, memory, overheads, similar = [], [], [], [], 0
    step_share = raw.get("step_seconds", 0.0) / raw["train_seconds"]
    for run in runs:
        before = (run.estimate or {}).get("raw")
        if not before or not before.get("train_seconds") or not run.train_seconds:
            continue
        same = run.method == method and run.model_source == model_source
        similar += same
        w = 1.0 if same else OTHER_RUN_WEIGHT
        w_score = 1.0 if run.model_source == model_source else OTHER_RUN_WEIGHT
        cpu = run.device.startswith("CPU")
        busy = measured_slowdown(run.cpu_share, run.load_average, run.cpu_count) if cpu else 1.0
        # A run estimated before the two parts were kept is taken to have the mix of the run being estimated
        steps = before.get("step_seconds", before["train_seconds"] * step_share)
        timed = not (cpu and held_back(run.cpu_share))  # its times say more of the other work than of this machine
        if timed:
            times.append((w, before["train_seconds"] - steps, steps, run.train_seconds / busy))
        if timed and run.score_seconds and before.get("score_seconds"):
            scores.append((w_score, run.score_seconds / before["score_seconds"] / busy))
        if run.peak_memory_mb and (same or run.method == method):
            memory.append((w, run.peak_memory_mb - before["peak_memory_mb"]))
        if run.started_at and run.finished_at and not run.resumed_at:  # a resumed run waited in between
            wall = (run.finished_at - run.started_at).total_seconds()
            overheads.append((w, max(0.0, wall - run.train_seconds - (run.score_seconds or 0.0))))
    work_ratio, step_ratio = _fit_time((probe or {}).get("time_ratio", 1.0), times)
    steps = raw.get("step_seconds", 0.0)
    quiet_seconds = (raw["train_seconds"] - steps) * work_ratio + steps * step_ratio
    score_ratio = _blend(score_prior, scores, log=True)
    memory_offset = _blend((probe or {}).get("memory_offset_mb", 0.0), memory, log=False)
    overhead = _blend(raw["overhead_seconds"], overheads, log=False)
    train_seconds = quiet_seconds * slowdown
    score_seconds = raw["score_seconds"] * score_ratio * slowdown
    return {
        "method": method,
        "train_seconds": round(train_seconds, 1),
        "score_seconds": round(score_seconds, 3),
        "peak_memory_mb": round(max(1.0, raw["peak_memory_mb"] + memory_offset)),
        "total_seconds": round(train_seconds + score_seconds + overhead, 1),
        "similar_runs": similar,  # finished runs of this method and model on this device
        "other_runs": len(times) - similar,
        "probed": "time_ratio" in (probe or {}),  # a probe's time calibrates it
        "slowdown": round(slowdown, 2),
        "raw": {k: round(v, 3) if isinstance(v, float) else v for k, v in raw.items()},
    }


# ---------------------------------------------------------------------------------------------------------------
# What callers use


def estimate_run(
    settings: Settings,
    session: Session,
    dataset: Dataset,
    model_source: str,
    config: TrainConfig,
    device: Device | None = None,
    probe: bool = False,
) -> dict:
    """The calibrated estimate of one run: train_seconds, score_seconds, peak_memory_mb, total_seconds (claim to
    result), and how it was calibrated. probe=True queues a probe where this device has no similar run."""
    device = device or this_device(settings)
    shape = model_shape(model_source, len(dataset.classes), config, settings)
    raw = raw_estimate(shape, token_lengths(settings, dataset, model_source), config, device)
    key = probe_key(device, config.method, model_source)
    runs = _finished_runs(session, device)
    measured = probe_result(session, key)
    # Scoring's prior: every probe of this model on this device, whatever its method (a LoRA model is scored merged)
    probes = [probe_result(session, probe_key(device, m, model_source)) for m in ("full", "lora")]
    probed = [p["time_ratio"] for p in probes if p and "time_ratio" in p]
    score_prior = math.exp(statistics.fmean(map(math.log, probed))) if probed else 1.0
    out = calibrate(raw, config.method, model_source, runs, measured, device.slowdown, score_prior)
    if probe and not out["similar_runs"] and "time_ratio" not in (measured or {}):
        request_probe(session, key, dataset, model_source, config)
    out.update(
        device=device.name, device_memory_mb=round(device.memory_mb), fits=out["peak_memory_mb"] <= device.memory_mb
    )
    return out


def estimate_or_none(settings: Settings, session: Session, dataset: Dataset, model_source: str, config: TrainConfig):
    """The estimate to keep on a run being queued; None if it cannot be made (the run is queued all the same)."""
    try:
        return estimate_run(settings, session, dataset, model_source, config)
    except Exception:  # noqa: BLE001 - an estimate is advice: never the reason a run is not queued
        log.exception("no estimate for a %s run of %s", config.method, model_source)
        return None


def advice(
    settings: Settings,
    session: Session,
    dataset: Dataset,
    model_source: str,
    config: TrainConfig,
    estimate: dict,
    device: Device | None = None,
) -> str | None:
    """None if the run fits the device; else what it needs, what the device has, and what would fit: the largest
    smaller batch size, and LoRA for a full run."""
    device = device or this_device(settings)
    if estimate["peak_memory_mb"] <= device.memory_mb:
        return None
    needed, has = memory_text(estimate["peak_memory_mb"]), memory_text(device.memory_mb)
    if device.kind == "gpu":
        said = _("needs about {needed}, this GPU has {has}", needed=needed, has=has)
    else:
        said = _("needs about {needed}, this machine has {has} free", needed=needed, has=has)
    smaller_batch, lora_fits = None, False
    batch = config.batch_size // 2
    while batch >= 1:
        smaller = TrainConfig.from_dict({**config.to_dict(), "batch_size": batch})
        if (
            estimate_run(settings, session, dataset, model_source, smaller, device)["peak_memory_mb"]
            <= device.memory_mb
        ):
            smaller_batch = batch
            break
        batch //= 2
    if config.method == "full":
        lora = TrainConfig.from_dict({**config.to_dict(), "method": "lora", "learning_rate": None})
        if estimate_run(settings, session, dataset, model_source, lora, device)["peak_memory_mb"] <= device.memory_mb:
            lora_fits = True
    if smaller_batch and lora_fits:
        remedy = _("batch size {batch} fits, or LoRA", batch=smaller_batch)
    elif smaller_batch:
        remedy = _("batch size {batch} fits", batch=smaller_batch)
    elif lora_fits:
        remedy = _("LoRA fits")
    else:
        remedy = _("even batch size 1 does not fit: try a shorter max length or a smaller model")
    return _("{needs}: {remedy}.", needs=said, remedy=remedy)


def calibration_version(session: Session) -> tuple:
    """Changes whenever an estimate could: a run ends, a probe finishes, the queue changes."""
    finished = session.scalar(select(func.count()).select_from(Run).where(Run.status == RunStatus.COMPLETED.value))
    probes = session.scalar(select(func.count()).select_from(Probe).where(Probe.status == "done"))
    active = tuple(session.scalars(select(Run.id).where(Run.status.in_(ACTIVE)).order_by(Run.id)))
    return finished, probes, active
