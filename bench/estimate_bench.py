"""How good are the estimates? Each run is estimated as the Train page would estimate it (from the runs finished
before it in the same database), then trained through the worker's child process, and the two are compared.

    .venv/bin/python bench/estimate_bench.py          # 12 runs, bundled model, about 10 minutes on 2 cores

Runs: both methods x three batch sizes x two max lengths over two datasets, one epoch each: a 400-row subset of the
demo set (news titles, about 11 tokens) and a variant built from it whose texts are two titles of the same class
(about 22 tokens, so max length 16 cuts them and 64 does not). The database starts empty: the first runs are
estimated by the cost model alone, later ones are calibrated by the runs finished before them. One JSON line per
run goes to stdout and OUT/results.jsonl, the table to OUT/table.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from a clean clone: the engine is imported from the tree

from core import data, estimate, models  # noqa: E402
from core.config import TrainConfig  # noqa: E402

# (dataset, method, batch size, max length), in the order they run: methods alternate, so each is calibrated by
# runs of its own kind early on.
PLAN = [
    ("titles", "full", 16, 64),
    ("titles", "lora", 16, 64),
    ("titles", "full", 32, 16),
    ("titles", "lora", 32, 16),
    ("pairs", "full", 8, 64),
    ("pairs", "lora", 8, 64),
    ("pairs", "full", 32, 16),
    ("pairs", "lora", 32, 16),
    ("titles", "full", 8, 16),
    ("titles", "lora", 8, 16),
    ("pairs", "full", 16, 64),
    ("pairs", "lora", 16, 64),
]
SIZES = {"train": 400, "dev": 100, "test": 150}


def write(path: Path, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["0", "1"])
        w.writerows(rows)


def build(folder: Path) -> dict[str, Path]:
    """The two datasets: a subset of the demo set, and its titles paired within a class."""
    rng = random.Random(7)
    out = {}
    for name in ("titles", "pairs"):
        target = folder / name
        target.mkdir(parents=True)
        for split, n in SIZES.items():
            with open(data.DEMO_DIR / f"{split}.csv", encoding="utf-8") as f:
                rows = [(r["0"], r["1"]) for r in csv.DictReader(f)]
            rng.shuffle(rows)
            rows = rows[:n]
            if name == "pairs":
                by_label = {}
                for text, label in rows:
                    by_label.setdefault(label, []).append(text)
                rows = [(f"{text}. {rng.choice(by_label[label])}", label) for text, label in rows]
            write(target / f"{split}.csv", rows)
        out[name] = target
    return out


def store(session, settings, folder: Path, name: str):
    _, classes = data.demo_files()
    check = data.check_dataset(data.files_from_folder(folder), settings, class_names=classes)
    assert check.ok, check.errors
    return data.save_dataset(session, settings, check, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "estimate"), help="output folder")
    parser.add_argument("--runs", type=int, default=len(PLAN), help="the first N runs of the plan")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.pop("LORALAB_DATA_DIR", None)

    from core.db import Run, session_factory
    from core.runs import create_run
    from core.settings import get_settings
    from core.worker import supervise

    tmp = Path(tempfile.mkdtemp(prefix="estimate-bench-"))
    settings = get_settings(f"sqlite:///{tmp / 'runs.db'}")
    sessions = session_factory(settings.db_url)
    folders = build(tmp / "csv")
    with sessions() as s:
        datasets = {name: store(s, settings, folder, name).id for name, folder in folders.items()}
    results = []
    for dataset_name, method, batch, max_length in PLAN[: args.runs]:
        device = estimate.this_device(settings)  # the load now, as the Train page reads it when a run is queued
        config = TrainConfig(method=method, epochs=1, batch_size=batch, max_length=max_length, evals_per_epoch=2)
        with sessions() as s:
            dataset = s.get(data.Dataset, datasets[dataset_name])
            est = estimate.estimate_run(settings, s, dataset, models.BUNDLED, config, device)
            run_id = create_run(s, dataset, models.BUNDLED, config, estimate=est).id
        from core.worker import claim_next_run

        assert claim_next_run(settings) == run_id
        supervise(settings, run_id)
        with sessions() as s:
            run = s.get(Run, run_id)
            row = {
                "run": run_id,
                "dataset": dataset_name,
                "method": method,
                "batch": batch,
                "max_length": max_length,
                "calibrated_by": est["similar_runs"] + est["other_runs"],
                "status": run.status,
                "train_s_est": est["train_seconds"],
                "train_s": run.train_seconds,
                "peak_mb_est": est["peak_memory_mb"],
                "peak_mb": run.peak_memory_mb,
                "score_s_est": est["score_seconds"],
                "score_s": run.score_seconds,
                "slowdown_est": est["slowdown"],  # the CPU's load when it was estimated, as a slowdown
                "load_avg": run.load_average,  # the mean 1-minute load average while it trained
            }
        if run.status == "completed":
            row["time_ratio"] = round(row["train_s_est"] / row["train_s"], 2)
            row["memory_ratio"] = round(row["peak_mb_est"] / row["peak_mb"], 2)
        print(json.dumps(row), flush=True)
        results.append(row)
    with open(out / "results.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in results)
    (out / "table.md").write_text(table(results, device.name))
    print(table(results, device.name))
    return 0


def table(results: list[dict], device: str) -> str:
    lines = [
        f"Device: {device}. Estimate / measured: time within 0.67-1.5x and memory within 0.8-1.25x is a hit.",
        "",
        "| # | data | method | batch | max len | runs before | train s est | train s | est/meas | peak MB est "
        "| peak MB | est/meas | scoring s est | scoring s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, r in enumerate(results, 1):
        t, m = r.get("time_ratio"), r.get("memory_ratio")
        tm = f"{t:.2f}" + ("" if t is None or 0.67 <= t <= 1.5 else " **miss**") if t else r["status"]
        mm = f"{m:.2f}" + ("" if 0.8 <= m <= 1.25 else " **miss**") if m else "-"
        lines.append(
            f"| {i} | {r['dataset']} | {r['method']} | {r['batch']} | {r['max_length']} | {r['calibrated_by']} "
            f"| {r['train_s_est']:.1f} | {r['train_s'] or 0:.1f} | {tm} "
            f"| {r['peak_mb_est']:.0f} | {r['peak_mb'] or 0:.0f} | {mm} "
            f"| {r['score_s_est']:.2f} | {r['score_s'] or 0:.2f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
