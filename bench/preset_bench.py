"""How well and how fast each preset trains: our engine on the demo set (or your data), every preset, both methods,
several seeds. It answers the question a preset's caption must: what it reaches, and in how long, on this machine.

    .venv/bin/python bench/preset_bench.py                      # demo set, bundled model, seeds 42-44
    .venv/bin/python bench/preset_bench.py --presets "quick demo" --seeds 3 --data DIR --model SRC

Each run is recorded in a temporary SQLite database and trained by core.jobs.worker.supervise, the child process the
dashboard's worker uses. One JSON line per run (also OUT/presets.jsonl), then a table (OUT/presets.md): per preset and
method the mean test accuracy and macro-F1 over the seeds with their range, and the median train time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.data import checking, datasets, reading
from core.training import models
from core.training.config import PRESETS, TrainConfig, preset_config


def train_one(settings, dataset_id: int, model: str, config: TrainConfig) -> dict:
    from core.jobs.runs import create_run
    from core.jobs.worker import supervise
    from core.store.db import Dataset, Run, RunStatus, session_factory

    sessions = session_factory(settings.db_url)
    with sessions() as s:
        run_id = create_run(s, s.get(Dataset, dataset_id), model, config, status=RunStatus.RUNNING).id
    status = supervise(settings, run_id)
    with sessions() as s:
        run = s.get(Run, run_id)
        if status != RunStatus.COMPLETED:
            raise SystemExit(f"run {run_id} ended {status.value}: {run.error}")
        return {
            "train_seconds": run.train_seconds,
            "test_accuracy": run.test_metrics["accuracy"],
            "test_f1_macro": run.test_metrics["f1_macro"],
        }


def store_dataset(settings, folder: Path) -> int:
    """The folder's train/dev/test CSVs (text in column 0, label in 1; classes.txt if there) stored as a dataset."""
    from core.store.db import session_factory

    files = reading.files_from_folder(folder)
    classes_file = folder / "classes.txt"
    names = reading.read_class_names(classes_file.read_bytes()) if classes_file.is_file() else None
    check = checking.check_dataset(files, settings, text_column="0", label_column="1", class_names=names)
    if not check.ok:
        raise SystemExit("The data was refused:\n- " + "\n- ".join(check.errors))
    with session_factory(settings.db_url)() as s:
        return datasets.save_dataset(s, settings, check, "bench").id


def table(rows: list[dict]) -> str:
    lines = ["| preset | method | seeds | test accuracy, mean (range) | macro-F1, mean | train s, median |"]
    lines.append("|" + " --- |" * 6)
    for preset in dict.fromkeys(r["preset"] for r in rows):
        for method in ("full", "lora"):
            mine = [r for r in rows if r["preset"] == preset and r["method"] == method]
            if not mine:
                continue
            acc = [r["test_accuracy"] * 100 for r in mine]
            lines.append(
                f"| {preset} | {method} | {len(mine)} | {statistics.fmean(acc):.2f} % ({min(acc):.2f}-{max(acc):.2f})"
                f" | {statistics.fmean(r['test_f1_macro'] for r in mine):.4f}"
                f" | {statistics.median(r['train_seconds'] for r in mine):.1f} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data", type=Path, default=datasets.DEMO_DIR, help="train.csv, dev.csv, test.csv (text 0, label 1)"
    )
    p.add_argument("--model", default=models.BUNDLED)
    p.add_argument("--presets", default=",".join(PRESETS), help="comma-separated preset names")
    p.add_argument("--methods", default="full,lora")
    p.add_argument("--seeds", type=int, default=3, help="seeds 42, 43, ...")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = p.parse_args(argv)

    from core.store.db import open_database
    from core.store.settings import get_settings

    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="preset_bench-"))
    try:
        settings = get_settings(f"sqlite:///{work / 'bench.db'}")
        open_database(settings.db_url)
        dataset_id = store_dataset(settings, args.data)
        rows, out = [], args.out / "presets.jsonl"
        out.write_text("")
        started = time.perf_counter()
        for seed in range(42, 42 + args.seeds):  # seed by seed: a load that drifts hits every preset alike
            for preset in [x.strip() for x in args.presets.split(",") if x.strip()]:
                for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
                    config = TrainConfig.from_dict({**preset_config(preset, method).to_dict(), "seed": seed})
                    row = {"preset": preset, "method": method, "seed": seed, **config.to_dict()}
                    row.update(train_one(settings, dataset_id, args.model, config))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    with open(out, "a") as f:
                        f.write(json.dumps(row) + "\n")
        text = table(rows) + f"\n\nWall time {(time.perf_counter() - started) / 60:.1f} min.\n"
        (args.out / "presets.md").write_text(text)
        print(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
