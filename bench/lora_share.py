"""How far LoRA's training time can fall below full fine-tuning's on this machine, and what dropout has to do with it.

    .venv/bin/python bench/lora_share.py [--data assets/demo] [--epochs 2] [--rounds 2] [--model SRC]

Real runs of the engine (core.training.train, each in its own process as the worker starts it), both methods,
interleaved round after round so that a change in the machine's load hits them alike, in two variants:
- torch: the engine as it is, torch's nn.Dropout;
- free: every nn.Dropout an identity, in both methods. Not a way to train (the model then trains without dropout,
  LoRA's adapters included): a bound, what LoRA's share of full's time would be if dropout masks cost nothing.
  (Attention-probability dropout, inside scaled_dot_product_attention, is left as it is in both.)
One JSON line per run, then per variant LoRA's train time over full's, round by round and their median.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.data import datasets
from core.training import models
from core.training.config import TrainConfig

VARIANTS = ("torch", "free")


def child(db_url: str, run_id: int, variant: str) -> int:
    """Train one queued run in this process, with the variant's dropout."""
    import torch

    from core.store.db import RunStatus
    from core.store.settings import get_settings
    from core.training.train import train_run

    if variant == "free":
        torch.nn.Dropout.forward = lambda self, x: x
    status = train_run(get_settings(db_url), run_id)
    return 0 if status == RunStatus.COMPLETED else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data", type=Path, default=datasets.DEMO_DIR, help="train.csv, dev.csv, test.csv (text 0, label 1)"
    )
    p.add_argument("--model", default=models.BUNDLED)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--child", nargs=3, metavar=("DB", "RUN_ID", "VARIANT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child[0], int(args.child[1]), args.child[2])

    from preset_bench import store_dataset

    from core.jobs.runs import create_run
    from core.store.db import Dataset, Run, RunStatus, open_database, session_factory
    from core.store.settings import get_settings

    work = Path(tempfile.mkdtemp(prefix="lora_share-"))
    try:
        settings = get_settings(f"sqlite:///{work / 'bench.db'}")
        open_database(settings.db_url)
        dataset_id = store_dataset(settings, args.data)
        sessions = session_factory(settings.db_url)
        seconds: dict[tuple[str, str], list[float]] = {(v, m): [] for v in VARIANTS for m in ("full", "lora")}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                for method in ("full", "lora"):
                    config = TrainConfig(method=method, epochs=args.epochs)
                    with sessions() as s:
                        run = create_run(s, s.get(Dataset, dataset_id), args.model, config, status=RunStatus.RUNNING)
                        run_id = run.id
                    command = [sys.executable, __file__, "--child", settings.db_url, str(run_id), variant]
                    done = subprocess.run(command, capture_output=True, text=True)
                    with sessions() as s:
                        run = s.get(Run, run_id)
                        if done.returncode != 0:
                            raise SystemExit(
                                f"The {method} run ({variant} dropout) ended {run.status}: "
                                f"{run.error or done.stderr[-2000:]}"
                            )
                        row = {"variant": variant, "method": method, "train_seconds": round(run.train_seconds, 2)}
                        row["test_accuracy"] = run.test_metrics["accuracy"]
                    seconds[variant, method].append(run.train_seconds)
                    print(json.dumps(row), flush=True)
        for variant in VARIANTS:
            shares = [lora / full for full, lora in zip(seconds[variant, "full"], seconds[variant, "lora"])]
            each = ", ".join(f"{s:.2f}" for s in shares)
            print(f"{variant:5}: LoRA / full train time {each}; median {statistics.median(shares):.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
