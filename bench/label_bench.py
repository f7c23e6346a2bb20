"""Rows per second labelling a file with each method's model (the bundled all-MiniLM-L6-v2), on this machine.

Trains a full and a LoRA run briefly on the demo set (speed does not depend on how well a model is trained), then
times `python -m core predict --file` on a file of demo titles repeated to --rows rows, and the labelling alone.

    .venv/bin/python bench/label_bench.py [--rows 20000]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's core, whichever is installed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()

    from core.data import reading
    from core.results import labels
    from core.store.db import Run, open_database, session_factory
    from core.store.settings import get_settings
    from core.training import predict

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        os.environ["LORALAB_DATA_DIR"] = str(work / "data")  # model folders are read only under the data folder
        db = f"sqlite:///{work / 'runs.db'}"
        demo = ROOT / "assets" / "demo"
        titles = [row[0] for row in csv.reader(open(demo / "test.csv", encoding="utf-8"))][1:]
        with open(work / "titles.csv", "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(["id", "text"])
            out.writerows([i, t] for i, t in zip(range(args.rows), itertools.cycle(titles)))
        splits = ["--train", demo / "train.csv", "--dev", demo / "dev.csv", "--test", demo / "test.csv"]
        settings = get_settings(db)
        open_database(db)
        print("| method | rows | labelling (s) | rows/s | command, with loading (s) |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for run_id, method in enumerate(("full", "lora"), start=1):
            subprocess.run(
                [sys.executable, "-m", "core", "train", *map(str, splits), "--method", method, "--epochs", "0.05"]
                + ["--classes", str(demo / "classes.txt"), "--db", db],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "core", "predict", "--run", str(run_id), "--file", str(work / "titles.csv")]
                + ["--out", str(work / f"out-{method}.csv"), "--db", db],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            command_s = time.perf_counter() - start
            with session_factory(db)() as s:
                predictor = predict.load_run(settings, s.get(Run, run_id))
            text_file = reading.read_text_file(reading.SplitFile.from_path(work / "titles.csv"), settings)
            start = time.perf_counter()
            labels.label_rows(text_file, "text", {run_id: predictor}, work / "out.csv")
            seconds = time.perf_counter() - start
            print(
                f"| {method} | {args.rows:,} | {seconds:.1f} | {args.rows / seconds:,.0f} | {command_s:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
