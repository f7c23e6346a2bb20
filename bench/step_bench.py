"""Where one training step's time goes, full fine-tuning against LoRA, with each of the engine's CPU speed-ups on/off.

    .venv/bin/python bench/step_bench.py [--data assets/demo] [--model SRC] [--rounds 8] [--profile]

A step is what Trainer does per batch: forward, backward, gradient clipping, fused AdamW. The variants run
interleaved, round after round, in one process, so that a change in the machine's load hits them alike; the table
gives each variant's fastest and median step (fastest: the least disturbed by other processes). Variants:
- padding: to the longest text of the whole set (the article's `padding=True`) or of each batch (ours);
- precision: float32, or bf16 autocast (ours on CPUs with AMX / AVX-512 BF16);
- dropout: torch's nn.Dropout (ours), or FastDropout (below; the engine's until it was found to cost LoRA accuracy);
- frozen weights (LoRA) cast to bf16 once, or by autocast at every step (core.training.evaluate.cast_linears).
With --profile, the operators that take the most time in the engine's configuration, per method. With --compile,
also the engine's configuration under torch.compile (inductor, dynamic shapes: batches differ in length), on its
own copy of the model, interleaved with the others; the time it takes to compile is printed apart.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.data import datasets
from core.store.settings import get_settings
from core.training import evaluate, models
from core.training.config import TrainConfig
from core.training.methods import wrap_model


class FastDropout(torch.nn.Dropout):
    """The engine's former CPU dropout, measured here and dropped from the engine: it cost LoRA accuracy (9 of 10
    seeds; docs/benchmarks.md). nn.Dropout with a cheaper mask: 16 random bits per element, four from each 64-bit
    draw."""

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
        keep = bits.view(torch.int16)[:n].view(x.shape) >= round(self.p * 65536) - 32768
        return x * (keep.to(x.dtype) * (1 / (1 - self.p)))


def batches(folder: Path, tokenizer, n: int, seed: int = 0) -> dict[str, list[dict]]:
    """n random batches of 32 training texts, padded per batch and padded to the longest text of the set."""
    import pandas as pd

    texts = pd.read_csv(folder / "train.csv", keep_default_na=False)["0"].astype(str).tolist()
    longest = max(len(ids) for ids in tokenizer(texts, truncation=True, max_length=64)["input_ids"])
    g = torch.Generator().manual_seed(seed)
    out = {"batch": [], "set": []}
    for _ in range(n):
        chosen = [texts[i] for i in torch.randint(len(texts), (32,), generator=g)]
        labels = torch.randint(5, (32,), generator=g)
        for padding, kw in (("batch", {"padding": True}), ("set", {"padding": "max_length", "max_length": longest})):
            enc = tokenizer(chosen, truncation=True, return_tensors="pt", **kw)
            out[padding].append({**enc, "labels": labels})
    return out


def make(method: str, source: str, classes: int):
    torch.manual_seed(0)
    model = wrap_model(
        models.load_classifier(source, [str(i) for i in range(classes)], get_settings()), TrainConfig(method=method)
    )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    return model, params, torch.optim.AdamW(params, lr=1e-5, weight_decay=0.001, fused=True)


def set_dropout(model, fast: bool) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.__class__ = FastDropout if fast else torch.nn.Dropout


def step(setup, batch: dict, bf16: bool) -> tuple[float, float, float]:
    model, params, opt = setup
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch).loss
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return t1 - t0, t2 - t1, time.perf_counter() - t2


VARIANTS = [  # (name, padding, bf16, FastDropout, frozen weights cast once): the article, then ours step by step
    ("padded to the set, fp32, nn.Dropout (article)", "set", False, False, False),
    ("padded per batch", "batch", False, False, False),
    ("  + bf16 autocast", "batch", True, False, False),
    ("  + FastDropout", "batch", True, True, False),
    ("  + frozen weights cast once", "batch", True, True, True),
    ("bf16, frozen weights cast once, nn.Dropout (ours)", "batch", True, False, True),
    ("padded per batch, fp32, FastDropout", "batch", False, True, False),
]


COMPILED = "  ours + torch.compile"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=datasets.DEMO_DIR)
    p.add_argument("--model", default=models.BUNDLED)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--compile", action="store_true", help="also the engine's configuration under torch.compile")
    args = p.parse_args(argv)

    tokenizer = models.load_tokenizer(args.model, get_settings())
    sample = batches(args.data, tokenizer, args.steps)
    setups = {m: make(m, args.model, 5) for m in ("full", "lora")}
    times = {(m, v[0]): [] for m in setups for v in VARIANTS}
    compiled = {}
    if args.compile:
        for method in setups:
            model, params, opt = make(method, args.model, 5)
            evaluate.cast_linears(model, torch.bfloat16, frozen_only=True)
            compiled[method] = (torch.compile(model, dynamic=True), params, opt)
            started = time.perf_counter()
            for b in sample["batch"]:  # compiles, for the lengths of these batches
                step(compiled[method], b, True)
            print(
                f"{method}: torch.compile and the first {len(sample['batch'])} steps took "
                f"{time.perf_counter() - started:.1f} s"
            )
            times[method, COMPILED] = []
    for _ in range(args.rounds):
        for method, setup in setups.items():
            for name, padding, bf16, fast, cast_once in VARIANTS:
                set_dropout(setup[0], fast)
                originals = evaluate.cast_linears(setup[0], torch.bfloat16, frozen_only=True) if cast_once else {}
                step(setup, sample[padding][0], bf16)  # warm-up after switching
                times[method, name] += [step(setup, b, bf16) for b in sample[padding]]
                evaluate.restore_linears(setup[0], originals)
            if method in compiled:
                times[method, COMPILED] += [step(compiled[method], b, True) for b in sample["batch"]]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; steps of batch 32; milliseconds")
    print(f"{'method':6} {'variant':48} {'fastest':>8} {'median':>8} {'fwd':>6} {'bwd':>6} {'optim':>6}")
    for (method, name), ts in times.items():
        totals = [sum(t) for t in ts]
        best = ts[totals.index(min(totals))]
        print(
            f"{method:6} {name:48} {min(totals) * 1e3:8.0f} {statistics.median(totals) * 1e3:8.0f} "
            + " ".join(f"{x * 1e3:6.0f}" for x in best)
        )
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for method, setup in setups.items():
            set_dropout(setup[0], False)
            evaluate.cast_linears(setup[0], torch.bfloat16, frozen_only=True)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for b in sample["batch"]:
                    step(setup, b, True)
            print(f"\n{method}, engine configuration:")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    return 0


if __name__ == "__main__":
    sys.exit(main())
