"""How long a run will take and how much memory it will need, before it is queued; and what the queue will do.

A model of the cost, calibrated on this machine:
- Work: operations per token for the forward and backward passes (LoRA's backward skips the frozen weights'
  gradients), counted from the model's layers built on the meta device (no weights are read), over the data's real
  token lengths after truncation, batched as the trainer batches them, for every epoch and evaluation.
- Memory: weights, gradients, AdamW states and the kept best weights (trainable only), activations of the largest
  batch, and the process's baseline.
- Calibration: the finished runs of this machine store their estimate beside what they measured; similar runs
  (same device, method and model first) pull the estimate toward what was measured, more as they accumulate. Where
  none exists yet, a probe (a few real training steps, run by the worker in its own process) stands in.

No Streamlit here; nothing is trained or loaded in full in the calling process.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import math
import os
import statistics
import subprocess
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.config import SCORING_BATCH, TrainConfig
from core.db import ACTIVE, Dataset, Probe, Run, RunStatus
from core.runs import training_seconds_left
from core.settings import Settings

log = logging.getLogger("lora_lab.estimate")
MB = 2**20
MAX_GPU_RUNS = 4  # at most this many runs side by side on one GPU, however many fit
# Uncalibrated constants (a 2-core AMX Xeon, fitted to 48 measured trainings of bench/estimate_bench.py and
# bench/train_bench.py; a recent datacenter GPU); calibration replaces them on each machine.
PRIOR = {
    "cpu": {"flops_per_s": 2.8e11, "step_s": 0.04, "eval_s": 0.01, "baseline_mb": 720.0, "overhead_s": 12.0},
    "gpu": {"flops_per_s": 4.0e13, "step_s": 0.015, "eval_s": 0.05, "baseline_mb": 60.0, "overhead_s": 15.0},
}
# Memory-bound work that counts no multiplications, in operations' worth: AdamW and zeroing a gradient, per trainable
# parameter and step; LoRA's dropout, adapter products and sums, per token and input or output feature of each
# adapted layer, forward and backward.
OPTIMIZER_FLOPS_PER_PARAM = 840
ADAPTER_FLOPS_PER_FEATURE = 2150
PRIOR_WEIGHT = 0.5  # the prior (or a probe) counts as half a finished run
OTHER_RUN_WEIGHT = 0.25  # a run of another method or model on this device counts a quarter as much as a similar one
RECENT_RUNS = 20  # calibrate on the newest finished runs of this device
MIN_SHARE = 0.05  # a timing is taken back to a quiet machine by at most 20x (measured_slowdown)
# A CPU timing whose threads got less of the CPU than this while ready to run was held back by other work: its time is
# not used. Measured (bench/estimate_bench.py --probe-load 2): probes at a share of 0.50 took 3.1-4.3x a quiet step,
# not 2x, since threads that take turns with other programs also wait for each other; 1 / share corrects only what
# is near 1.
QUIET_SHARE = 0.9


# ---------------------------------------------------------------------------------------------------------------
# The model: parameters and operations, from its config on the meta device


@dataclass(frozen=True)
class ModelShape:
    total: int  # parameters, as the run will count them
    trainable: int
    linear: int  # weights of every nn.Linear: each costs 2 operations per token and weight in the forward pass
    trainable_linear: int  # those whose weight trains: their weight gradient costs 2 more in the backward pass
    frozen_linear: int  # cast to bf16 once where bf16 is used (a second copy)
    adapted_features: int  # input plus output features of every layer with LoRA adapters (0 for full fine-tuning)
    scored_linear: int  # Linear weights of the model as it is scored: LoRA's adapters merged in, the plain model's
    layers: int
    hidden: int
    heads: int


@lru_cache(maxsize=32)
def _shape(source: str, num_labels: int, config_json: str, settings: Settings) -> ModelShape:
    import torch

    from core import models
    from core.methods import count_params, wrap_model

    config = TrainConfig.from_dict(json.loads(config_json))
    model_config = models.load_config(source, settings, num_labels=num_labels)
    model = wrap_model(models.classifier_on_meta(model_config), config)  # shapes only: no memory, no weights read
    trainable, total = count_params(model)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    linear = sum(m.weight.numel() for m in linears)
    trainable_linear = sum(m.weight.numel() for m in linears if m.weight.requires_grad)
    adapted = [m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")]  # peft's LoRA layers
    adapted_features = sum(m.in_features + m.out_features for m in adapted)
    plain = [m for m in models.classifier_on_meta(model_config).modules() if isinstance(m, torch.nn.Linear)]
    return ModelShape(
        total=total,
        trainable=trainable,
        linear=linear,
        trainable_linear=trainable_linear,
        frozen_linear=linear - trainable_linear,
        adapted_features=adapted_features,
        scored_linear=sum(m.weight.numel() for m in plain),
        layers=int(getattr(model_config, "num_hidden_layers", 12)),
        hidden=int(getattr(model_config, "hidden_size", 768)),
        heads=int(getattr(model_config, "num_attention_heads", 12)),
    )


def model_shape(source: str, num_labels: int, config: TrainConfig, settings: Settings) -> ModelShape:
    """Parameter and operation counts of the model the run will train (cached per model and LoRA settings)."""
    keep = ("method", "lora_r", "lora_alpha", "lora_dropout", "lora_targets")
    return _shape(source, num_labels, json.dumps({k: getattr(config, k) for k in keep}, sort_keys=True), settings)


def forward_flops_per_token(shape: ModelShape, seq: float, merged: bool = False) -> float:
    """Matrix products of every Linear (2 per weight) and of attention (scores and weighted sum: 4 x seq x hidden
    per layer). merged: the model as it is scored (core.evaluate.merged), LoRA's adapters folded into the weights."""
    return 2 * (shape.scored_linear if merged else shape.linear) + 4 * shape.layers * shape.hidden * seq


def train_flops_per_token(shape: ModelShape, seq: float) -> float:
    """Forward; backward through the activations (as much again: every layer has something trainable below or in
    it); and the weight gradients of the trainable Linears only. Full fine-tuning: about 6 per weight; LoRA: 4, and
    the memory-bound work of its adapters."""
    return (
        2 * forward_flops_per_token(shape, seq)
        + 2 * shape.trainable_linear
        + 4 * shape.layers * shape.hidden * seq
        + ADAPTER_FLOPS_PER_FEATURE * shape.adapted_features
    )


# ---------------------------------------------------------------------------------------------------------------
# The data: real token lengths, batched as the trainer batches them


def token_lengths(settings: Settings, dataset: Dataset, source: str) -> dict[str, list[int]]:
    """Each split's token lengths (up to 512), tokenized once per dataset and model and kept beside the dataset."""
    folder = settings.data_dir / dataset.path
    cache = folder / f"token-lengths-{hashlib.sha256(source.encode()).hexdigest()[:12]}.json"
    try:
        return json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    from core import models
    from core.data import SPLITS, load_split

    tokenizer = models.load_tokenizer(source, settings)
    lengths = {}
    for split in SPLITS:
        texts = load_split(settings, dataset, split)["text"].tolist()
        lengths[split] = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=512)["input_ids"]]
    try:
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(lengths), encoding="utf-8")
        tmp.replace(cache)  # whole or not at all
    except OSError:
        pass  # a read-only data folder: tokenize again next time
    return lengths


def train_batches(lengths: list[int], batch_size: int, seed: int) -> list[tuple[int, int]]:
    """(texts, padded length) of each batch of one epoch: the engine's batches are random (core.trainer's
    EpochSeededSampler), and the collator pads a batch to its longest text."""
    import numpy as np  # here: the dashboard's first page asks this module for queue times, which need no numpy

    arr = np.asarray(lengths)[np.random.default_rng(seed).permutation(len(lengths))]
    return [(len(b), int(b.max())) for b in np.array_split(arr, range(batch_size, len(arr), batch_size)) if len(b)]


def eval_batches(lengths: list[int], batch_size: int) -> list[tuple[int, int]]:
    """The dev set, sorted by length, in batches of batch_size, each padded to its longest text."""
    import numpy as np

    arr = np.sort(np.asarray(lengths))
    return [(len(b), int(b.max())) for b in np.array_split(arr, range(batch_size, len(arr), batch_size)) if len(b)]


# ---------------------------------------------------------------------------------------------------------------
# The device


@dataclass(frozen=True)
class Device:
    kind: str  # "cpu" or "gpu"
    name: str  # as runs record it (core.device.device_name)
    bf16: bool
    memory_mb: float  # what a run may use: the GPU's memory, or the memory this machine has free
    slowdown: float = 1.0  # a busy CPU trains slower: how much, by its load now (see cpu_slowdown)


def cpu_slowdown(load_average: float | None, cpus: int | None) -> float:
    """How much slower than alone a run trains on a CPU this busy: with a 1-minute load average above the number of
    CPUs, each runnable process gets about cpus / load of them. 1 when unknown or not busy."""
    if not load_average or not cpus:
        return 1.0
    return max(1.0, load_average / cpus)


def scheduler_times() -> dict[str, tuple[int, int]] | None:
    """Each thread of this process: nanoseconds it has run on a CPU, and waited for one while ready to run (Linux's
    scheduler statistics); None where the system does not say."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    out = {}
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/schedstat", encoding="ascii") as f:
                ran, waited = f.read().split()[:2]
            out[task] = (int(ran), int(waited))
        except (OSError, ValueError):
            continue  # a thread that ended meanwhile
    return out or None


def cpu_share(before: dict | None, after: dict | None) -> float | None:
    """Between two scheduler_times() readings, the share of the time this process's threads were ready to run that
    they ran: about 1 where the machine had a CPU free for each, 0.5 where they had to take turns with as much other
    work (2 training threads beside 2 busy programs on 2 CPUs). A thread that waits for another thread, or for the
    disk, is not ready to run: only other programs' work lowers it. None where not known."""
    if not before or not after:
        return None
    ran = waited = 0
    for task, (r, w) in after.items():
        r0, w0 = before.get(task, (0, 0))
        ran, waited = ran + r - r0, waited + w - w0
    return ran / (ran + waited) if ran > 0 and waited >= 0 else None


def held_back(share: float | None) -> bool:
    """Whether a CPU timing with this share (cpu_share) was held back too much by other work to say this machine's
    speed. Unknown shares (older runs, not Linux) are not: the load average corrects those."""
    return share is not None and share < QUIET_SHARE


def measured_slowdown(share: float | None, load_average: float | None, cpus: int | None) -> float:
    """How much slower than alone something timed on a CPU ran: by the share of the CPU its threads got (cpu_share)
    where known, else by the machine's load average then (cpu_slowdown), which trails a change by about a minute."""
    if share:
        return 1 / max(MIN_SHARE, min(1.0, share))
    return cpu_slowdown(load_average, cpus)


def device_memory_mb(settings: Settings, kind: str) -> float:
    """LORALAB_DEVICE_MEMORY_MB if set; a GPU's total memory (nvidia-smi, so the dashboard never holds a CUDA
    context; else torch); on a CPU, the memory available now (psutil)."""
    if settings.device_memory_mb:
        return float(settings.device_memory_mb)
    if kind == "gpu":
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits", "--id=0"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            return float(out.stdout.split()[0])
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            import torch

            return torch.cuda.mem_get_info()[1] / MB
    import psutil

    return psutil.virtual_memory().available / MB


@lru_cache(maxsize=4)
def _device_kind_name_bf16(preference: str) -> tuple[str, str, bool]:
    from core.device import device_name, pick_device, precision
    from core.evaluate import cpu_has_bf16

    try:
        device = pick_device(preference)
    except ValueError:  # the Train page says so; estimate for the CPU meanwhile
        device = "cpu"
    bf16 = precision(device, cpu_has_bf16()) == "bf16"
    # Apple silicon's GPU shares the machine's memory: sized as a CPU is
    return ("gpu" if device == "cuda" else "cpu"), device_name(device), bf16


def this_device(settings: Settings) -> Device:
    """The device the next run trains on (LORALAB_DEVICE), as runs record it, and its memory."""
    kind, name, bf16 = _device_kind_name_bf16(settings.device)
    slowdown = cpu_slowdown(os.getloadavg()[0], os.cpu_count()) if kind == "cpu" else 1.0
    return Device(kind, name, bf16, device_memory_mb(settings, kind), slowdown)


def runs_at_once(settings: Settings, device: Device) -> int:
    """LORALAB_RUNS_AT_ONCE, else as many as fit on a GPU (at most 4) and one on a CPU."""
    if settings.runs_at_once:
        return max(1, settings.runs_at_once)
    return MAX_GPU_RUNS if device.kind == "gpu" else 1


# ---------------------------------------------------------------------------------------------------------------
# The uncalibrated estimate


def schedule(config: TrainConfig, n_train: int) -> tuple[int, int]:
    """Optimizer steps and dev evaluations, as core.train sets up the Trainer."""
    steps_per_epoch = max(1, math.ceil(n_train / config.batch_size))
    steps = max(1, math.ceil(config.epochs * steps_per_epoch))
    eval_every = max(1, steps_per_epoch // config.evals_per_epoch)
    return steps, steps // eval_every + (1 if steps % eval_every else 0)


FEW_UPDATES = 10  # fewer corrections than this in a whole run and the model barely moves from where it started


def few_updates_text(config: TrainConfig, n_train: int) -> str | None:
    """How many updates (optimizer steps) the settings give, in words, when they are very few (a batch of 4,096 on
    2,000 texts corrects the model once an epoch), with a batch size that gives enough; None when they are enough."""
    steps, _ = schedule(config, n_train)
    if steps >= FEW_UPDATES:
        return None
    per_epoch = max(1, math.ceil(n_train / config.batch_size))
    said = (
        f"Very few updates: batch size {config.batch_size:,} on {n_train:,} training texts corrects the model "
        f"{'once' if per_epoch == 1 else f'{per_epoch:,} times'} an epoch, {steps:,} in all over "
        f"{config.epochs:g} epoch{'' if config.epochs == 1 else 's'}, too few for it to learn much."
    )
    for batch in (b for b in (32, 16, 8, 4, 2, 1) if b < config.batch_size):
        more, _ = schedule(replace(config, batch_size=batch), n_train)
        if more >= FEW_UPDATES:
            return f"{said} Batch size {batch} gives {more:,} updates."
    return f"{said} More epochs or more training texts give more."


def step_flops(shape: ModelShape, batches: list[tuple[int, int]]) -> tuple[float, float]:
    """One training step's work, averaged over `batches` ((texts, tokens) each), in its two parts: the passes over its
    tokens, and AdamW over the trained weights."""
    tokens = sum(n * s * train_flops_per_token(shape, s) for n, s in batches) / max(1, len(batches))
    return tokens, OPTIMIZER_FLOPS_PER_PARAM * shape.trainable


def raw_step_seconds(shape: ModelShape, batches: list[tuple[int, int]], kind: str) -> float:
    """One training step's time before calibration (core.probe times one step and compares)."""
    prior = PRIOR[kind]
    return sum(step_flops(shape, batches)) / prior["flops_per_s"] + prior["step_s"]


def raw_estimate(shape: ModelShape, lengths: dict[str, list[int]], config: TrainConfig, device: Device) -> dict:
    """Work, memory and time before calibration: what the cost model alone says."""
    prior = PRIOR[device.kind]
    cut = {split: [min(n, config.max_length) for n in ls] for split, ls in lengths.items()}
    steps, evals = schedule(config, len(cut["train"]))
    epoch = train_batches(cut["train"], config.batch_size, config.seed)
    token_flops, optimizer_flops = (steps * f for f in step_flops(shape, epoch))  # every epoch alike
    eval_flops = evals * sum(
        n * s * forward_flops_per_token(shape, s) for n, s in eval_batches(cut["dev"], 2 * config.batch_size)
    )
    # Scored merged, in batches of one length: the same work for both methods
    score_flops = sum(forward_flops_per_token(shape, s, merged=True) * s for s in cut["test"])
    # Two parts that calibrate apart: work that grows with the tokens, and fixed costs of each step and evaluation
    # (the optimizer, zeroing gradients, launching the passes), which dominate many small batches of short texts.
    step_seconds = optimizer_flops / prior["flops_per_s"] + steps * prior["step_s"] + evals * prior["eval_s"]
    train_seconds = (token_flops + eval_flops) / prior["flops_per_s"] + step_seconds
    # Scoring batches (core.evaluate.length_batches) hold one length once they have a quarter of SCORING_BATCH.
    score_seconds = score_flops / prior["flops_per_s"] + 0.002 * math.ceil(len(cut["test"]) / (SCORING_BATCH // 4))
    # Memory, in bytes: float32 weights; a bf16 copy of the frozen (LoRA) or all (autocast) Linear weights; float32
    # gradients, AdamW's two moments and the kept best weights of what trains; the activations kept for the
    # backward pass of the largest batch (Korthikanti et al. 2022: per layer and token 34 x hidden + 5 x heads x
    # seq bytes in 16-bit; twice that in float32).
    longest = max(cut["train"], default=1)
    activation_bytes = shape.layers * config.batch_size * longest * (34 * shape.hidden + 5 * shape.heads * longest)
    activation_bytes *= 1 if device.bf16 else 2
    weights = 4 * shape.total + (
        2 * (shape.frozen_linear if config.method == "lora" else shape.linear) if device.bf16 else 0
    )
    state = 4 * shape.trainable * 4  # gradients, two moments, best weights
    peak_mb = prior["baseline_mb"] + (weights + state + activation_bytes) / MB
    return {
        "train_seconds": train_seconds,
        "step_seconds": step_seconds,
        "score_seconds": score_seconds,
        "overhead_seconds": prior["overhead_s"],
        "peak_memory_mb": peak_mb,
        "steps": steps,
        "evals": evals,
        "train_flops": token_flops + optimizer_flops + eval_flops,
    }


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
    mean = total / (PRIOR_WEIGHT + sum(w for w, _ in observed))
    return math.exp(mean) if log else mean


def _fit_time(prior: float, observed: list[tuple[float, float, float, float]]) -> tuple[float, float]:
    """Multipliers (a, b) of the raw estimate's two parts, token work and fixed costs per step, that best explain
    the finished runs: observed holds (weight, raw token-work seconds, raw per-step seconds, measured seconds).
    Weighted least squares of log(a x work + b x steps) against log(measured), each multiplier pulled toward the
    prior ratio with weight PRIOR_WEIGHT (a few Gauss-Newton steps on log a, log b). Runs that all have the same
    mix of the two parts move both alike: the single ratio of measured over estimated, averaged in logs."""
    u = v = anchor = math.log(prior)
    for _ in range(50):
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
# Probes: a few real training steps where this device has no similar run yet


def probe_key(device: Device, method: str, model_source: str) -> str:
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
    has = "this GPU has" if device.kind == "gpu" else "this machine has"
    free = "" if device.kind == "gpu" else " free"
    said = f"needs about {memory_text(estimate['peak_memory_mb'])}, {has} {memory_text(device.memory_mb)}{free}"
    options = []
    batch = config.batch_size // 2
    while batch >= 1:
        smaller = TrainConfig.from_dict({**config.to_dict(), "batch_size": batch})
        if (
            estimate_run(settings, session, dataset, model_source, smaller, device)["peak_memory_mb"]
            <= device.memory_mb
        ):
            options.append(f"batch size {batch} fits")
            break
        batch //= 2
    if config.method == "full":
        lora = TrainConfig.from_dict({**config.to_dict(), "method": "lora", "learning_rate": None})
        if estimate_run(settings, session, dataset, model_source, lora, device)["peak_memory_mb"] <= device.memory_mb:
            options.append("LoRA" if options else "LoRA fits")
    if not options:
        options = ["even batch size 1 does not fit: try a shorter max length or a smaller model"]
    return f"{said}: {', or '.join(options)}."


def memory_text(mb: float) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def duration_text(seconds: float | None) -> str:
    """Plain and rounded: "about 2 min 10 s" is what a person plans with; a tenth under a second ("0.2 s", where
    a round 0 would read as nothing at all). The one way the dashboard writes a duration, measured or estimated."""
    if seconds is None:
        return "unknown"
    if 0 < seconds < 0.95:
        return f"{seconds:.1f} s" if seconds >= 0.05 else "under 0.1 s"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3570:  # to 10 s under 10 minutes, to the minute above
        minutes, secs = divmod(int(round(seconds / 10) * 10) if seconds < 600 else int(round(seconds / 60) * 60), 60)
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(int(round(seconds / 60)), 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


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


def calibration_version(session: Session) -> tuple:
    """Changes whenever an estimate could: a run ends, a probe finishes, the queue changes."""
    finished = session.scalar(select(func.count()).select_from(Run).where(Run.status == RunStatus.COMPLETED.value))
    probes = session.scalar(select(func.count()).select_from(Probe).where(Probe.status == "done"))
    active = tuple(session.scalars(select(Run.id).where(Run.status.in_(ACTIVE)).order_by(Run.id)))
    return finished, probes, active


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
    start and end (UTC)."""
    by_id = {r.id: r for r in runs}

    def pick(run_id, key):
        run = by_id.get(run_id)
        return ((run.estimate or {}).get(key) if run else None) or None

    table = table.copy()
    at = table.columns.get_loc("train time") + 1 if "train time" in table.columns else len(table.columns)
    estimated = [pick(i, "train_seconds") for i in table["run"]]
    table.insert(at, "estimated train", ["" if s is None else duration_text(s) for s in estimated])
    table.insert(at + 1, "peak memory (MB)", [getattr(by_id.get(i), "peak_memory_mb", None) for i in table["run"]])
    table.insert(at + 2, "estimated peak (MB)", [pick(i, "peak_memory_mb") for i in table["run"]])
    table["expected start (UTC)"] = [times.get(i, (None, None))[0] for i in table["run"]]
    table["expected end (UTC)"] = [times.get(i, (None, None))[1] for i in table["run"]]
    return table
