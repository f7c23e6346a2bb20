"""Seconds to explain a 64-token text (Integrated Gradients, core.training.explain) against the integration steps.

The model is the bundled all-MiniLM-L6-v2 with a new 5-class head, loaded and readied as a run's model is
(models.load_classifier, evaluate.ready_to_score): the time does not depend on what the head has learnt. Each step
count is timed --repeats times after a warm-up; the table gives the median and the fastest, the convergence delta,
and whether the median fits the budget (1 s: the Predict page explains in its own thread only within it).

    .venv/bin/python bench/explain_bench.py                   # steps 8 to 64, 5 repeats each, on a quiet machine
    .venv/bin/python bench/explain_bench.py --steps 16,24,32 --repeats 9 --model SRC
    .venv/bin/python bench/explain_bench.py --smoke           # a tiny BERT, two step counts (CI runs this)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's core, whichever is installed

import torch
from train_bench import tiny_model  # bench/, beside this script

from core.store.settings import get_settings
from core.training import evaluate, explain, models, predict

DEMO = ROOT / "assets" / "demo"


def long_text(tokenizer, tokens: int) -> str:
    """Demo test titles joined until the model reads `tokens` tokens, its [CLS] and [SEP] included, and cut there."""
    titles = [row[0] for row in csv.reader(open(DEMO / "test.csv", encoding="utf-8"))][1:]
    joined = " ".join(titles)
    room = tokens - tokenizer.num_special_tokens_to_add()
    cut = tokenizer(joined, add_special_tokens=False, truncation=True, max_length=room, return_offsets_mapping=True)
    return joined[: cut["offset_mapping"][-1][1]]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=models.BUNDLED, help="bundled model (default), Hugging Face id, or folder")
    p.add_argument("--steps", default="8,16,24,32,48,64", help="integration step counts to time, comma-separated")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tokens", type=int, default=64, help="the text's length, [CLS] and [SEP] included")
    p.add_argument("--budget", type=float, default=1.0, help="seconds an explanation may take")
    p.add_argument("--smoke", action="store_true", help="a tiny BERT, steps 4 and 8, one repeat: checks it runs")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="explain_bench-") as work:
        os.environ["LORALAB_DATA_DIR"] = work  # a model folder is read where it lies under the data folder
        if args.smoke:
            args.model, args.steps, args.repeats = tiny_model(Path(work) / "tiny-model"), "4,8", 1
        settings = get_settings()
        classes = (DEMO / "classes.txt").read_text(encoding="utf-8").split()
        model = evaluate.ready_to_score(models.load_classifier(args.model, classes, settings))
        predictor = predict.Predictor(model, models.load_tokenizer(args.model, settings), classes, args.tokens)
    text = long_text(predictor.tokenizer, args.tokens)
    explain.explain(predictor, text, steps=4, budget_s=0)  # warm-up: captum's import, the first passes

    rows = []
    for steps in [int(s) for s in args.steps.split(",")]:
        runs = [explain.explain(predictor, text, steps=steps, budget_s=0) for _ in range(args.repeats)]  # no retry
        seconds = [r.seconds for r in runs]
        row = {
            "model": models.describe(args.model),
            "tokens": args.tokens,
            "steps": steps,
            "median_s": statistics.median(seconds),
            "fastest_s": min(seconds),
            "delta": max(abs(r.delta) for r in runs),
            "change": runs[0].change,
            "threads": torch.get_num_threads(),
        }
        rows.append(row)
        print(json.dumps(row))
    print(f"\n{models.describe(args.model)}, a {args.tokens}-token text, {rows[0]['threads']} threads")
    print("| steps | median s | fastest s | largest delta | change explained | within budget |")
    print("| ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        fits = "yes" if r["median_s"] <= args.budget else "no"
        print(
            f"| {r['steps']} | {r['median_s']:.3f} | {r['fastest_s']:.3f} | {r['delta']:.5f} | {r['change']:+.4f} | "
            f"{fits} |"
        )
    within = [r["steps"] for r in rows if r["median_s"] <= args.budget]
    print(
        f"\nThe most steps within {args.budget:g} s: {max(within) if within else 'none'} "
        f"(core.training.explain.STEPS is {explain.STEPS})."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
