"""A probe: a few real training steps on real batch shapes, measured where this device has no finished run like the
one being estimated. The worker runs it in a child process (`python -m core.jobs.probe ID`), never in the dashboard's.

It stores how far this device is from the cost model's prior (time_ratio: measured over estimated step time;
memory_offset_mb: measured minus estimated peak memory), which core.jobs.estimate uses until similar runs exist.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import traceback

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.jobs import cost
from core.jobs.runners import child_env
from core.store.db import Dataset, Probe, claim_oldest, open_database, session_factory
from core.store.settings import PROJECT_ROOT, Settings, get_settings
from core.training.config import TrainConfig
from core.training.machine_load import held_back

STEPS = 3  # timed steps, after one warm-up step
ROUNDS = 3  # at most this many timings of STEPS steps, while other work holds them back
TIMEOUT_S = 600  # a probe taking longer than this is abandoned: estimates stay uncalibrated


def claim_next_probe(settings: Settings) -> int | None:
    """Atomically move the oldest queued probe to running (core.store.db.claim_oldest); None when there is none."""
    return claim_oldest(settings.db_url, Probe)


def probe_in_child(settings: Settings, probe_id: int) -> str:
    """The worker's side: measure in a child process; a child that ends without a result fails the probe."""
    try:
        code = subprocess.run(
            [sys.executable, "-m", "core.jobs.probe", str(probe_id), "--db", settings.db_url],
            cwd=PROJECT_ROOT,
            env=child_env(settings),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TIMEOUT_S,
        ).returncode
    except subprocess.TimeoutExpired:
        code = "timed out"
    with session_factory(settings.db_url).begin() as s:
        probe = s.get(Probe, probe_id)
        if probe.status == "running":
            probe.status, probe.error = "failed", f"The probe process ended without a result ({code})."
        return probe.status


def measure(settings: Settings, probe: Probe, dataset: Dataset) -> dict:
    """Time STEPS training steps on real batches of the dataset (the longest batch of a mega-batch first, as the
    trainer orders them) and read the peak memory; compare with the cost model's prior for the same work."""
    import numpy as np
    import torch

    from core.data.datasets import load_split
    from core.training import evaluate, machine_load, models
    from core.training.device import device_name, peak_memory_mb, pick_device, precision
    from core.training.methods import wrap_model

    config = TrainConfig.from_dict(probe.config)
    device = pick_device(settings.device)
    mixed = precision(device, evaluate.cpu_has_bf16())
    tokenizer = models.load_tokenizer(probe.model_source, settings)
    base, new_modules = models.load_base(probe.model_source, list(dataset.classes), settings)
    model = wrap_model(base, config, new_modules).to(device)  # as core.training.train wraps it
    if mixed == "bf16":
        evaluate.cast_linears(model, torch.bfloat16, frozen_only=True)
    model.train()
    texts = load_split(settings, dataset, "train")["text"].tolist()
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=config.max_length)["input_ids"]]
    order = np.random.default_rng(config.seed).permutation(len(texts))[: 50 * config.batch_size]
    order = sorted(order, key=lambda i: -lengths[i])
    batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)][:STEPS]
    encoded = [
        tokenizer(
            [texts[i] for i in b], truncation=True, max_length=config.max_length, padding=True, return_tensors="pt"
        )
        for b in batches
    ]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed)

    def step(batch) -> None:
        batch = {k: v.to(device) for k, v in batch.items()}
        labels = torch.zeros(batch["input_ids"].shape[0], dtype=torch.long, device=device)
        with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def timed() -> tuple[float, float | None]:
        """One step's time over STEPS steps, and the CPU share this process's threads got meanwhile."""
        threads, started = machine_load.scheduler_times(), time.perf_counter()
        for i in range(STEPS):
            step(encoded[i % len(encoded)])
        sync()
        return (time.perf_counter() - started) / STEPS, machine_load.cpu_share(threads, machine_load.scheduler_times())

    step(encoded[0])  # warm-up: allocations, kernels chosen
    sync()
    # Other work on the machine meanwhile (another job starting) would pass for this device's speed: taken again
    # while it held the steps back, the least held-back timing kept and taken back to a quiet machine by the share of
    # the CPU its threads got (the load average trails such a change by a minute). Still held back, its time is not
    # used (probe_result, below).
    rounds = [timed()]
    while device != "cuda" and machine_load.held_back(rounds[-1][1]) and len(rounds) < ROUNDS:
        rounds.append(timed())
    measured_step_s, share = max(rounds, key=lambda r: r[1] or 0.0)
    busy = 1.0 if device == "cuda" else machine_load.measured_slowdown(share, os.getloadavg()[0], os.cpu_count())

    here = cost.Device("gpu" if device == "cuda" else "cpu", device_name(device), mixed == "bf16", 0.0)
    shape = cost.model_shape(probe.model_source, len(dataset.classes), config, settings)
    shapes = [(len(b), int(e["input_ids"].shape[1])) for b, e in zip(batches, encoded)]
    raw_step_s = cost.raw_step_seconds(shape, [shapes[i % len(shapes)] for i in range(STEPS)], here.kind)
    raw_peak = cost.raw_estimate(shape, {"train": lengths, "dev": [], "test": []}, config, here)["peak_memory_mb"]
    measured_mb = peak_memory_mb(device)
    return {
        "time_ratio": measured_step_s / raw_step_s / busy,  # as on a quiet machine, as calibrate() wants
        "cpu_share": None if device == "cuda" else share,
        "slowdown": busy,  # how much the machine's other work slowed the steps timed
        # what the load average said of it, the correction before the CPU share (bench/estimate_bench.py compares)
        "load_slowdown": machine_load.cpu_slowdown(os.getloadavg()[0], os.cpu_count()) if device != "cuda" else 1.0,
        "memory_offset_mb": measured_mb - raw_peak,
        "step_seconds": measured_step_s,
        "peak_memory_mb": measured_mb,
        "device": device_name(device),
    }


def run_probe(settings: Settings, probe_id: int) -> str:
    sessions = session_factory(settings.db_url)
    with sessions() as s:
        probe = s.get(Probe, probe_id)
        dataset = s.get(Dataset, probe.dataset_id) if probe.dataset_id else None
    try:
        if dataset is None:
            raise ValueError("its dataset was deleted")
        values = {"status": "done", "result": measure(settings, probe, dataset)}
    except Exception as e:  # noqa: BLE001 - a failed probe leaves the estimate uncalibrated, nothing more
        traceback.print_exc()
        values = {"status": "failed", "error": str(e)[:2000]}
    with sessions.begin() as s:
        s.execute(update(Probe).where(Probe.id == probe_id).values(**values))
    return values["status"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Measure a few training steps for the estimates (the worker runs it)."
    )
    parser.add_argument("probe_id", type=int)
    parser.add_argument("--db", help="database URL")
    args = parser.parse_args(argv)
    settings = get_settings(args.db)
    open_database(settings.db_url)
    return 0 if run_probe(settings, args.probe_id) == "done" else 1


if __name__ == "__main__":
    sys.exit(main())


# ---------------------------------------------------------------------------------------------------------------
# Probes: a few real training steps where this device has no similar run yet


def probe_key(device: cost.Device, method: str, model_source: str) -> str:
    return f"{device.name}|{method}|{model_source}"


def probe_result(session: Session, key: str) -> dict | None:
    """The newest probe's result for this device, method and model. One timed before probes measured how much other
    work held them back (no "slowdown" kept) is not used: it may have been timed at a busy moment, as it was. One
    whose every timing was held back (held_back) keeps its memory but not its time ratio: the estimate's time stays
    the cost model's, and a later probe is asked for (request_probe)."""
    probe = session.scalars(
        select(Probe).where(Probe.key == key, Probe.status == "done").order_by(Probe.id.desc())
    ).first()
    if not probe or "slowdown" not in (probe.result or {}):
        return None
    if held_back(probe.result.get("cpu_share")):
        return {k: v for k, v in probe.result.items() if k != "time_ratio"}
    return probe.result


def request_probe(session: Session, key: str, dataset: Dataset, model_source: str, config: TrainConfig) -> None:
    """Queue a probe for the worker, unless one is queued or running for this device, method and model, or one
    done is in use (probe_result)."""
    if session.scalar(select(Probe.id).where(Probe.key == key, Probe.status.in_(("queued", "running")))) is not None:
        return
    if "time_ratio" in (probe_result(session, key) or {}):
        return
    session.add(Probe(key=key, dataset_id=dataset.id, model_source=model_source, config=config.to_dict()))
    session.commit()
