"""The cost model: what a run will take (time, memory) on a device, before any calibration (core/jobs/estimate.py).

- Work: operations per token for the forward and backward passes (LoRA's backward skips the frozen weights'
  gradients), counted from the model's layers built on the meta device (no weights are read), over the data's real
  token lengths after truncation, batched as the Trainer batches them, for every epoch and evaluation.
- Memory: weights, gradients, AdamW states and the kept best weights (trainable only), activations of the largest
  batch, and the process's baseline.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
from dataclasses import dataclass, replace
from functools import lru_cache

from core.i18n import _, ngettext, number
from core.store.db import Dataset
from core.store.settings import Settings
from core.training.config import SCORING_BATCH, TrainConfig
from core.training.machine_load import cpu_slowdown

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

    from core.training import models
    from core.training.methods import count_params, wrap_model

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
    """Matrix products of every Linear (2 per weight) and of attention (scores and weighted sum: 4 x seq x hidden per
    layer). merged: the model as it is scored (core.training.evaluate.merged), LoRA's adapters folded into the
    weights."""
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
# The data: real token lengths, batched as the Trainer batches them


def token_lengths(settings: Settings, dataset: Dataset, source: str) -> dict[str, list[int]]:
    """Each split's token lengths (up to 512), tokenized once per dataset and model and kept beside the dataset."""
    folder = settings.data_dir / dataset.path
    cache = folder / f"token-lengths-{hashlib.sha256(source.encode()).hexdigest()[:12]}.json"
    try:
        return json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    from core.data.datasets import load_split
    from core.data.reading import SPLITS
    from core.training import models

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
    """(texts, padded length) of each batch of one epoch: the engine's batches are random (core.training.trainer's
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
    name: str  # as runs record it (core.training.device.device_name)
    bf16: bool
    memory_mb: float  # what a run may use: the GPU's memory, or the memory this machine has free
    slowdown: float = 1.0  # a busy CPU trains slower: how much, by its load now (see cpu_slowdown)


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
    from core.training.device import device_name, pick_device, precision
    from core.training.evaluate import cpu_has_bf16

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
    """Optimizer steps and dev evaluations, as core.training.train sets up the Trainer."""
    steps_per_epoch = max(1, math.ceil(n_train / config.batch_size))
    steps = max(1, math.ceil(config.epochs * steps_per_epoch))
    eval_every = max(1, steps_per_epoch // config.evals_per_epoch)
    return steps, steps // eval_every + (1 if steps % eval_every else 0)


FEW_UPDATES = 10  # fewer corrections than this in a whole run and the model barely moves from where it started


def few_updates_text(config: TrainConfig, n_train: int) -> str | None:
    """How many updates (optimizer steps) the settings give, in words, when they are very few (a batch of 4,096 on
    2,000 texts corrects the model once an epoch), with a batch size that gives enough; None when they are enough."""
    steps, __ = schedule(config, n_train)
    if steps >= FEW_UPDATES:
        return None
    per_epoch = max(1, math.ceil(n_train / config.batch_size))
    said = _(
        "Very few updates: batch size {batch} on {texts} training texts corrects the model {times} an epoch, "
        "{steps} in all over {epochs}, too few for it to learn much.",
        batch=number(config.batch_size),
        texts=number(n_train),
        times=ngettext("once", "{n} times", per_epoch),
        steps=number(steps),
        epochs=ngettext(
            "{epochs} epoch", "{epochs} epochs", 1 if config.epochs == 1 else 2, epochs=f"{config.epochs:g}"
        ),
    )
    for batch in (b for b in (32, 16, 8, 4, 2, 1) if b < config.batch_size):
        more, __ = schedule(replace(config, batch_size=batch), n_train)
        if more >= FEW_UPDATES:
            return _("{said} Batch size {batch} gives {more} updates.", said=said, batch=batch, more=number(more))
    return _("{said} More epochs or more training texts give more.", said=said)


def step_flops(shape: ModelShape, batches: list[tuple[int, int]]) -> tuple[float, float]:
    """One training step's work, averaged over `batches` ((texts, tokens) each), in its two parts: the passes over its
    tokens, and AdamW over the trained weights."""
    tokens = sum(n * s * train_flops_per_token(shape, s) for n, s in batches) / max(1, len(batches))
    return tokens, OPTIMIZER_FLOPS_PER_PARAM * shape.trainable


def raw_step_seconds(shape: ModelShape, batches: list[tuple[int, int]], kind: str) -> float:
    """One training step's time before calibration (core.jobs.probe times one step and compares)."""
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
    # Scoring batches (core.training.evaluate.length_batches) hold one length once they have a quarter of
    # SCORING_BATCH.
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
