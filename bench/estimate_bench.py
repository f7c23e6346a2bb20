"""How good are the estimates? Each run is estimated as the Train page would estimate it (from the runs finished
before it in the same database), then trained through the worker's child process, and the two are compared.

    .venv/bin/python bench/estimate_bench.py          # 12 runs, bundled model, about 10 minutes on 2 cores
    .venv/bin/python bench/estimate_bench.py --probe-load 2   # each run estimated from a probe timed under load

Runs: both methods x three batch sizes x two max lengths over two datasets, one epoch each: a 400-row subset of the
demo set (news titles, about 11 tokens) and a variant built from it whose texts are two titles of the same class
(about 22 tokens, so max length 16 cuts them and 64 does not). The database starts empty: the first runs are
estimated by the cost model alone, later ones are calibrated by the runs finished before them. One JSON line per
run goes to stdout and OUT/results.jsonl, the table to OUT/table.md; docs/estimates.md shows the latest table.

--probe-load N: each run is estimated from a probe alone (its own empty database: no finished run calibrates it),
the probe timed while N busy programs compete for the CPUs; then the load stops and the run trains. The table adds
the CPU share the probe's threads got, and what the estimate would have been had the probe's time been used,
corrected by that share or by the load average (as before the CPU share was measured).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from a clean clone: the engine is imported from the tree

from core.data import checking, datasets, reading
from core.jobs import cost, estimate
from core.store import db
from core.training import (
    machine_load,
    models,
)
from core.training.config import TrainConfig

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
            with open(datasets.DEMO_DIR / f"{split}.csv", encoding="utf-8") as f:
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
    _, classes = datasets.demo_files()
    check = checking.check_dataset(reading.files_from_folder(folder), settings, class_names=classes)
    assert check.ok, check.errors
    return datasets.save_dataset(session, settings, check, name)


@contextlib.contextmanager
def competing_load(programs: int, limit_s: float = 900):
    """`programs` busy loops, each ending by itself after limit_s should this script be killed, stopped on leaving."""
    code = f"import time\nend = time.time() + {limit_s}\nwhile time.time() < end: pass"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(programs)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def probed_estimate(settings, sessions, dataset_id: int, source: str, config: TrainConfig, load: int) -> dict:
    """The estimate from a probe alone, the probe timed beside `load` busy programs; made for the quiet machine the
    run then trains on."""
    from core.jobs.probe import claim_next_probe, probe_in_child
    from core.store.db import Probe

    device = dataclasses.replace(cost.this_device(settings), slowdown=1.0)  # the probe's load has stopped
    with sessions() as s:
        estimate.estimate_run(settings, s, s.get(db.Dataset, dataset_id), source, config, device, probe=True)
    probe_id = claim_next_probe(settings)
    with competing_load(load):
        status = probe_in_child(settings, probe_id)
    with sessions() as s:
        probe = s.get(Probe, probe_id)
        if status != "done":
            raise SystemExit(f"The probe failed: {probe.error}")
        est = estimate.estimate_run(settings, s, s.get(db.Dataset, dataset_id), source, config, device)
    result = probe.result
    # With a probe alone, a probe's time makes the training estimate the raw one times its ratio (taken back to a
    # quiet machine by the CPU share); by the load average instead, slowdown / load_slowdown times that.
    by_share = est["raw"]["train_seconds"] * result["time_ratio"]
    est["probe"] = {
        "cpu_share": result.get("cpu_share"),
        "used": est["probed"],  # its time trusted (not held back: machine_load.held_back)
        "train_s_est_by_share": by_share,
        "train_s_est_by_load": by_share * result["slowdown"] / result["load_slowdown"],
    }
    return est


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "estimate"), help="output folder")
    parser.add_argument("--runs", type=int, default=len(PLAN), help="the first N runs of the plan")
    parser.add_argument(
        "--probe-load",
        type=int,
        default=0,
        metavar="N",
        help="estimate each run from a probe alone, timed beside N busy programs (0: from the runs before it)",
    )
    parser.add_argument("--model", default=models.BUNDLED, help="model source (default: the bundled model)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.pop("LORALAB_DATA_DIR", None)

    from core.jobs.runs import create_run
    from core.jobs.worker import supervise
    from core.store.db import Run, open_database, session_factory
    from core.store.settings import get_settings

    tmp = Path(tempfile.mkdtemp(prefix="estimate-bench-"))
    settings = get_settings(f"sqlite:///{tmp / 'runs.db'}")
    open_database(settings.db_url)
    sessions = session_factory(settings.db_url)
    folders = build(tmp / "csv")
    with sessions() as s:
        dataset_ids = {name: store(s, settings, folder, name).id for name, folder in folders.items()}
    results = []
    for i, (dataset_name, method, batch, max_length) in enumerate(PLAN[: args.runs], 1):
        device = cost.this_device(settings)  # the load now, as the Train page reads it when a run is queued
        config = TrainConfig(method=method, epochs=1, batch_size=batch, max_length=max_length, evals_per_epoch=2)
        if args.probe_load:  # a database of its own: nothing but the probe calibrates the estimate
            settings = get_settings(f"sqlite:///{tmp / f'probed-{i}' / 'runs.db'}")
            open_database(settings.db_url)
            sessions = session_factory(settings.db_url)
            with sessions() as s:
                dataset_ids = {dataset_name: store(s, settings, folders[dataset_name], dataset_name).id}
            est = probed_estimate(settings, sessions, dataset_ids[dataset_name], args.model, config, args.probe_load)
        with sessions() as s:
            dataset = s.get(db.Dataset, dataset_ids[dataset_name])
            if not args.probe_load:
                est = estimate.estimate_run(settings, s, dataset, args.model, config, device)
            run_id = create_run(s, dataset, args.model, config, estimate=est).id
        from core.jobs.worker import claim_next_run

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
                "cpu_share": run.cpu_share,  # of the time its threads were ready to run, how much they ran
            }
        if "probe" in est:
            row["probe_load"] = args.probe_load  # busy programs beside the probe
            row["probe_cpu_share"] = est["probe"]["cpu_share"]
            row["probe_time_used"] = est["probe"]["used"]
            row["train_s_est_by_share"] = round(est["probe"]["train_s_est_by_share"], 1)
            row["train_s_est_by_load"] = round(est["probe"]["train_s_est_by_load"], 1)
        if run.status == "completed":
            row["time_ratio"] = round(row["train_s_est"] / row["train_s"], 2)
            row["memory_ratio"] = round(row["peak_mb_est"] / row["peak_mb"], 2)
            if "probe" in est:
                row["time_ratio_by_share"] = round(row["train_s_est_by_share"] / row["train_s"], 2)
                row["time_ratio_by_load"] = round(row["train_s_est_by_load"] / row["train_s"], 2)
        print(json.dumps(row), flush=True)
        results.append(row)
    with open(out / "results.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in results)
    (out / "table.md").write_text(table(results, device.name))
    print(table(results, device.name))
    return 0


def ratio_text(t: float | None, status: str) -> str:
    return f"{t:.2f}" + ("" if 0.67 <= t <= 1.5 else " **miss**") if t else status


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
        tm = ratio_text(t, r["status"])
        mm = f"{m:.2f}" + ("" if 0.8 <= m <= 1.25 else " **miss**") if m else "-"
        lines.append(
            f"| {i} | {r['dataset']} | {r['method']} | {r['batch']} | {r['max_length']} | {r['calibrated_by']} "
            f"| {r['train_s_est']:.1f} | {r['train_s'] or 0:.1f} | {tm} "
            f"| {r['peak_mb_est']:.0f} | {r['peak_mb'] or 0:.0f} | {mm} "
            f"| {r['score_s_est']:.2f} | {r['score_s'] or 0:.2f} |"
        )
    probed = [r for r in results if "probe_cpu_share" in r]
    if probed:
        lines += [
            "",
            f"Each estimated from a probe alone, timed beside {probed[0]['probe_load']} busy programs; trained "
            "without them. The estimate (a probe held back below a CPU share of "
            f"{machine_load.QUIET_SHARE} is not used for time: the cost model's), and what the probe's time would "
            "have given, corrected by its CPU share or by the load average (before):",
            "",
            "| # | method | probe CPU share | probe's time used | train s | train s est | est/meas "
            "| by CPU share | est/meas | by load average | est/meas |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for i, r in enumerate(results, 1):
            share = f"{r['probe_cpu_share']:.2f}" if r["probe_cpu_share"] is not None else "not measured"
            lines.append(
                f"| {i} | {r['method']} | {share} | {'yes' if r['probe_time_used'] else 'no'} "
                f"| {r['train_s'] or 0:.1f} | {r['train_s_est']:.1f} | {ratio_text(r.get('time_ratio'), r['status'])} "
                f"| {r['train_s_est_by_share']:.1f} | {ratio_text(r.get('time_ratio_by_share'), r['status'])} "
                f"| {r['train_s_est_by_load']:.1f} | {ratio_text(r.get('time_ratio_by_load'), r['status'])} |"
            )
        hits = sum(0.67 <= (r.get("time_ratio") or 0) <= 1.5 for r in probed)
        lines += ["", f"Time: {hits} of {len(probed)} within 0.67-1.5x."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
