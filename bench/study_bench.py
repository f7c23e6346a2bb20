"""What a learning-rate study costs, and whether its pruner picks what a full grid would: a tuned verdict's targets.

    .venv/bin/python bench/study_bench.py                          # demo and stackoverflow_en, bundled model
    .venv/bin/python bench/study_bench.py --datasets demo,ecdt_zh --epochs 2
    .venv/bin/python bench/study_bench.py --smoke                  # a tiny model and a few dozen rows: it still runs

For each data set, in one database, runs one after another as the worker takes them (core.jobs.worker.claim_next_run
and supervise: the child process every run trains in), timed from the claim to the recorded end:
1. today's verdict at the default rates: a comparison of 3 seeds (6 runs);
2. a learning-rate study (core.jobs.studies): 5 rates a method, the default rates among them and never stopped early,
   the pruner on the others, then each method's best rate on dev on 3 fresh seeds: the tuned verdict with the default
   one beside it;
3. the grid trained to the end: the rates the study stopped early, trained to the end on the same seed (the rates it
   did not stop are its own runs: the same seed and settings train the same model, which the default pair of step 1
   and the default runs of step 2 check: their dev scores must be equal).
Targets: study time / comparison time <= 2.5; each method's chosen rate is the full grid's or within 0.5 points of its
dev accuracy; and a run's fixed cost (wall time minus training: process start, imports, loading, tokenizing, saving,
scoring) under 20 % of a quick-demo run's wall time (a quick-demo pair is timed on the first data set).
One JSON line per run and per data set (stdout and OUT/study_bench.jsonl), then OUT/study_bench.md.
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

from train_bench import dataset_folder, load_avg, machine, smoke_setup, store_dataset  # noqa: E402

from core.training import models  # noqa: E402
from core.training.config import DEFAULT_LEARNING_RATES, TrainConfig, preset_config  # noqa: E402

TIME_RATIO, PICK_POINTS, FIXED_SHARE = 2.5, 0.5, 0.20


def run_queued(settings, phase: str, out: list[dict]) -> float:
    """Train every queued run, oldest first, as the worker does (a training process started ahead while runs are
    queued: core.jobs.runners.WarmStart; a study advanced as each of its runs ends); seconds taken."""
    from core.jobs.runners import WarmStart
    from core.jobs.worker import claim_next_run

    started, warm = time.perf_counter(), WarmStart(settings)
    try:
        while True:
            run_id = claim_next_run(settings)
            if run_id is None:
                return time.perf_counter() - started
            out.append(timed_run(settings, phase, run_id, warm))
            print(json.dumps(out[-1]), flush=True)
    finally:
        warm.close()


def timed_run(settings, phase: str, run_id: int, warm) -> dict:
    """One claimed run through supervise, timed from the claim to its recorded end."""
    from core.jobs.worker import supervise
    from core.store.db import Run, session_factory

    claimed = time.perf_counter()
    status = supervise(settings, run_id, warm)
    wall = time.perf_counter() - claimed
    with session_factory(settings.db_url)() as s:
        run = s.get(Run, run_id)
        if status.value != "completed":
            raise SystemExit(f"run {run_id} ended {status.value}: {run.error}")
        return {
            "kind": "run",
            "phase": phase,
            "run_id": run_id,
            "method": run.method,
            "lr": run.config["learning_rate"],
            "seed": run.config["seed"],
            "role": run.study_role,
            "stopped_early": run.stopped_early,
            "steps": f"{run.step}/{run.total_steps}",
            "wall_seconds": round(wall, 2),
            "train_seconds": round(run.train_seconds, 2),
            "fixed_seconds": round(wall - run.train_seconds, 2),
            "stages": run.stage_seconds,
            "warm": run.stage_seconds["start"] < 1.0,
            "test_accuracy": run.test_metrics["accuracy"],
            "load_avg": load_avg(),
        }


def bench_dataset(args, settings, name: str, dataset_id: int, rows: list[dict]) -> dict:
    from core.jobs.runs import create_comparison, create_run
    from core.jobs.studies import DEFAULT_GRIDS, create_study
    from core.results import studies as found
    from core.store.db import Dataset, Study, session_factory

    base = TrainConfig(epochs=args.epochs, seed=args.seed)
    grids = {m: g[: args.rates] for m, g in DEFAULT_GRIDS.items()} if args.rates else DEFAULT_GRIDS
    sessions = session_factory(settings.db_url)
    load_start = load_avg()
    with sessions() as s:
        create_comparison(
            s, s.get(Dataset, dataset_id), args.model, base, {"full": None, "lora": None}, None, args.seeds
        )
    comparison_s = run_queued(settings, f"{name}: comparison", rows)
    with sessions() as s:
        study, _ = create_study(s, s.get(Dataset, dataset_id), args.model, base, "lr", seeds=args.seeds, grids=grids)
        study_id = study.id
    study_s = run_queued(settings, f"{name}: study", rows)
    with sessions() as s:
        study = s.get(Study, study_id)
        runs = found.study_runs(s, study_id)
        stopped = [r for r in runs if r.stopped_early]
        for run in stopped:  # the grid trained to the end: the stopped rates on the same seed, outside the study
            create_run(s, s.get(Dataset, dataset_id), args.model, TrainConfig.from_dict(run.config))
        summary = found.summary(s, study)
    grid_s = run_queued(settings, f"{name}: grid", rows)
    with sessions() as s:
        study = s.get(Study, study_id)
        runs = found.study_runs(s, study_id)
        tried = [r for r in runs if r.study_role in found.TRIED]
        full_grid = [r for r in tried if not r.stopped_early]
        extra = [r for r in rows if r["phase"] == f"{name}: grid"]
        dev = found.dev_scores(s, [r.id for r in full_grid] + [r["run_id"] for r in extra])
        grid_dev = {(r.method, r.config["learning_rate"]): dev[r.id]["accuracy"] for r in full_grid}
        grid_dev |= {(r["method"], r["lr"]): dev[r["run_id"]]["accuracy"] for r in extra}
        # Determinism: the comparison's first pair and the study's default runs are the same runs.
        first_pair = {
            r["method"]: r["run_id"] for r in rows if r["phase"] == f"{name}: comparison" and r["seed"] == args.seed
        }
        first_dev = found.dev_scores(s, list(first_pair.values()))
        same = {m: first_dev[run_id] for m, run_id in first_pair.items()}
        defaults = {r.method: dev[r.id] for r in tried if r.study_role == "default"}
    picks = {}
    for method in ("full", "lora"):
        mine = {lr: acc for (m, lr), acc in grid_dev.items() if m == method}
        grid_best = max(mine, key=lambda lr: (mine[lr], lr == DEFAULT_LEARNING_RATES[method]))
        chosen = summary["best"][method]["value"]
        picks[method] = {
            "chosen": chosen,
            "grid_best": grid_best,
            "points_behind": round(100 * (mine[grid_best] - mine[chosen]), 2),
        }
    stopped_n = sum(1 for r in runs if r.stopped_early)
    result = {
        "kind": "dataset",
        "dataset": name,
        "comparison_seconds": round(comparison_s, 1),
        "study_seconds": round(study_s, 1),
        "ratio": round(study_s / comparison_s, 2),
        "grid_seconds": round(grid_s, 1),
        "stopped_early": stopped_n,
        "rates_tried": len(tried),
        "picks": picks,
        "deterministic": same == defaults,
        "verdict": summary["verdict"]["sentence"] if summary["verdict"] else None,
        "default_verdict": summary["default_verdict"]["sentence"] if summary["default_verdict"] else None,
        "sentence": summary["sentence"],
        "load_avg_start": load_start,
        "load_avg_end": load_avg(),
    }
    print(json.dumps(result), flush=True)
    return result


def quick_demo_wall(args, settings, dataset_id: int, rows: list[dict]) -> float:
    """A quick-demo run's wall time, the median of full fine-tuning's and LoRA's, each started in its own process as
    one run launched alone is (the preset a run's fixed cost is held against)."""
    from core.jobs.runs import create_run
    from core.store.db import Dataset, RunStatus, session_factory

    for method in ("full", "lora"):
        with session_factory(settings.db_url)() as s:
            config = TrainConfig.from_dict({**preset_config("quick demo", method).to_dict(), "seed": args.seed})
            run_id = create_run(s, s.get(Dataset, dataset_id), args.model, config, status=RunStatus.RUNNING).id
        rows.append(timed_run(settings, "quick demo", run_id, None))
        print(json.dumps(rows[-1]), flush=True)
    return statistics.median(r["wall_seconds"] for r in rows if r["phase"] == "quick demo")


def report(args, results: list[dict], rows: list[dict], quick_s: float) -> str:
    lines = [
        f"Machine: {machine()}; model {models.describe(args.model)}; {args.epochs:g} epochs; {args.seeds} seeds; "
        f"load average {results[0]['load_avg_start']} at the start, {results[-1]['load_avg_end']} at the end.",
        "",
        "| data set | 3-seed pair at the default rates | tuned study (with the default verdict) | study / pair "
        f"(<= {TIME_RATIO}) | rates stopped early | full: chosen / grid's best (points behind) | LoRA: chosen / "
        f"grid's best (points behind) | within {PICK_POINTS} points | same model twice |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        p = r["picks"]
        within = all(v["points_behind"] <= PICK_POINTS for v in p.values())
        lines.append(
            f"| {r['dataset']} | {r['comparison_seconds']:.0f} s | {r['study_seconds']:.0f} s | **{r['ratio']:.2f}x** "
            f"{'✓' if r['ratio'] <= TIME_RATIO else '✗'} | {r['stopped_early']} of {r['rates_tried'] - 2} | "
            + " | ".join(f"{v['chosen']:g} / {v['grid_best']:g} ({v['points_behind']:.1f})" for v in p.values())
            + f" | {'✓' if within else '✗'} | {'yes' if r['deterministic'] else 'no'} |"
        )
    lines.append("")
    for warm, which in (
        (True, "taking the process started ahead (the worker's way while runs are queued)"),
        (False, "starting its own process"),
    ):
        mine = [r for r in rows if r["warm"] == warm]
        if not mine:
            continue
        fixed = statistics.median(r["fixed_seconds"] for r in mine)
        stages: dict[str, list[float]] = {}
        for r in mine:
            for k, v in (r["stages"] or {}).items():
                stages.setdefault(k, []).append(v)
        share = fixed / quick_s
        lines.append(
            f"A run's fixed cost (wall time from the claim to the recorded end, minus training), {which}, median of "
            f"{len(mine)} runs: **{fixed:.1f} s**, {100 * share:.0f} % of a quick-demo run's {quick_s:.1f} s (target "
            f"< {100 * FIXED_SHARE:.0f} %: {'✓' if share < FIXED_SHARE else '✗'}). Its parts, medians: "
            + ", ".join(f"{k} {statistics.median(v):.1f} s" for k, v in stages.items())
            + " (the rest: the supervisor's polling, the last evaluation, the process's exit).\n"
        )
    for r in results:
        lines += ["", f"{r['dataset']}: {r['sentence']}"]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="demo,stackoverflow_en", help="'demo', a bench/data set, or a folder")
    p.add_argument("--model", default=models.BUNDLED)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--seeds", type=int, default=3, help="the comparison's seeds and the study's fresh seeds")
    p.add_argument("--rates", type=int, default=0, help="the first N rates of each default grid (0: all five)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    p.add_argument("--smoke", action="store_true", help="a tiny model, a few dozen rows, the default rates, 1 seed")
    return p.parse_args(argv)


def main(argv=None) -> int:
    import os

    from core.store.db import open_database
    from core.store.settings import get_settings

    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="study_bench-"))
    try:
        names = [d.strip() for d in args.datasets.split(",") if d.strip()][: 1 if args.smoke else None]
        folders = {name: dataset_folder(name) for name in names}
        if args.smoke:
            folder, args.model = smoke_setup(work, folders[names[0]])
            folders, args.seeds, args.rates, args.epochs = {"smoke": folder}, 1, 1, 2.0
        if Path(args.model).expanduser().is_dir():
            args.model = str(Path(args.model).expanduser().resolve())
            roots = os.environ.get("LORALAB_MODEL_ROOTS", str(ROOT / "models"))
            os.environ["LORALAB_MODEL_ROOTS"] = os.pathsep.join([roots, str(Path(args.model).parent)])
        os.environ.pop("LORALAB_DATA_DIR", None)
        print(json.dumps({"kind": "setup", "machine": machine(), "load_avg": load_avg()}), flush=True)
        results, rows, quick_s = [], [], None
        for name, folder in folders.items():
            settings = get_settings(f"sqlite:///{work / (name + '.db')}")
            open_database(settings.db_url)
            dataset_id, _ = store_dataset(settings, folder, name)
            if quick_s is None:
                quick_s = quick_demo_wall(args, settings, dataset_id, rows)
            results.append(bench_dataset(args, settings, name, dataset_id, rows))
        text = report(args, results, [r for r in rows if r["phase"] != "quick demo"], quick_s)
        with open(args.out / "study_bench.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows + results)
        (args.out / "study_bench.md").write_text(text + "\n", encoding="utf-8")
        print(text)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
