"""Training and inference benchmark: the seed article's code against our engine, on the same data and settings.

    .venv/bin/python bench/train_bench.py                 # demo data, bundled model (about 12 minutes on 2 cores)
    .venv/bin/python bench/train_bench.py --data DIR --model SRC --epochs 3 --reps 2
    .venv/bin/python bench/train_bench.py --smoke         # a tiny model and a few dozen rows: checks it still runs

For each method (full, LoRA) it alternates the two pipelines, reference then ours, `--reps` times:
- reference: bench/article.py, the article's training script and then its test script, each in a child process;
- ours: a run recorded in a temporary SQLite database and trained through core.worker.supervise, the child process
  the dashboard's worker and `python -m core train` use; its timings and metrics are read back from the database,
  and its test scoring and single-sentence latency are timed in a child process through core.predict.load_run.
Both get the same batch size, epochs, learning rate (the engine's per-method default unless given), warmup share,
evaluations per epoch, max length and seed. One JSON line per measurement goes to stdout and to
OUT/results.jsonl, then a table (OUT/table.md) and a chart (OUT/train_bench.png).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from a clean clone: the engine is imported from the tree

from core import data, models  # noqa: E402
from core.config import TrainConfig  # noqa: E402

PIPELINES = ("reference", "ours")
PASSES = 10  # timed passes over the test set for each pipeline; the fastest counts (one pass moves by 40 % here)


def child_env(extra: dict | None = None) -> dict:
    """The same environment for every child: the worker's (tokenizers single-threaded), no progress bars."""
    return {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", **(extra or {})}


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def run_child(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    done = subprocess.run(cmd, cwd=ROOT, env=child_env(env), capture_output=True, text=True)
    with open(log, "a") as out:
        out.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[1:3])} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return last_json(done.stdout)


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    flags = ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        flags = " ".join(f for f in ("avx512_bf16", "amx_bf16") if f in info)
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores{', ' + flags if flags else ''}; torch {torch.__version__}"


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def metrics(y_true: list[int], y_pred: list[int]) -> tuple[float, float]:
    from sklearn.metrics import accuracy_score

    from core.evaluate import macro_f1  # the engine's own definition, so both pipelines are scored alike

    return float(accuracy_score(y_true, y_pred)), macro_f1(y_true, y_pred)


def latency_ms(seconds: list[float]) -> tuple[float, float]:
    import numpy as np

    return float(np.percentile(seconds, 50) * 1000), float(np.percentile(seconds, 95) * 1000)


def test_labels(folder: Path) -> list[int]:
    import pandas as pd

    return pd.read_csv(folder / "test.csv", keep_default_na=False)["1"].astype(int).tolist()


def measure_reference(args, method: str, config: TrainConfig, work: Path, classes: list[str]) -> dict:
    out = work / f"reference-{method}"
    common = ["--data", str(args.data), "--model", args.model_path, "--method", method, "--out", str(out)]
    common += ["--num-labels", str(len(classes)), "--batch-size", str(config.batch_size)]
    common += ["--max-length", str(config.max_length), "--seed", str(config.seed)]
    script = [sys.executable, str(ROOT / "bench" / "article.py")]
    trained = run_child(
        [
            *script,
            "train",
            *common,
            *("--epochs", str(config.epochs), "--lr", str(config.learning_rate)),
            *("--weight-decay", str(config.weight_decay), "--warmup-ratio", str(config.warmup_ratio)),
            *("--evals-per-epoch", str(config.evals_per_epoch)),
        ],
        work / "children.log",
    )
    tested = run_child(
        [*script, "test", *common, "--latency", str(args.latency), "--passes", str(PASSES)], work / "children.log"
    )
    shutil.rmtree(out, ignore_errors=True)  # checkpoints: hundreds of megabytes
    accuracy, f1 = metrics(test_labels(args.data), tested["predictions"])
    p50, p95 = latency_ms(tested["latencies"])
    return {
        "train_seconds": trained["train_seconds"],
        "samples_per_second": trained["samples"] / trained["train_seconds"],
        "peak_memory_mb": trained["peak_memory_mb"],
        "test_accuracy": accuracy,
        "test_f1_macro": f1,
        "scoring_seconds": tested["scoring_seconds"],
        "latency_p50_ms": p50,
        "latency_p95_ms": p95,
    }


def measure_ours(args, method: str, config: TrainConfig, settings, dataset_id: int, work: Path) -> dict:
    """A run as `python -m core train` makes it: recorded in the database, trained by supervise's child process."""
    from core.db import Dataset, Run, RunStatus, session_factory
    from core.runs import create_run
    from core.worker import supervise

    sessions = session_factory(settings.db_url)
    with sessions() as s:
        run_id = create_run(s, s.get(Dataset, dataset_id), args.model, config, status=RunStatus.RUNNING).id
    status = supervise(settings, run_id)
    with sessions() as s:
        run = s.get(Run, run_id)
        if status != RunStatus.COMPLETED:
            raise SystemExit(f"our run {run_id} ended {status.value}: {run.error} (log: {settings.runs_dir}/{run_id})")
        result = {
            "run_id": run_id,
            "train_seconds": run.train_seconds,
            "samples_per_second": run.samples_per_second,
            "peak_memory_mb": run.peak_memory_mb,
            "test_accuracy": run.test_metrics["accuracy"],
            "test_f1_macro": run.test_metrics["f1_macro"],
        }
    scored = run_child(
        [sys.executable, str(Path(__file__).resolve()), "--score-run", str(run_id), "--db", settings.db_url]
        + ["--data", str(args.data), "--latency", str(args.latency), "--batch-size", str(config.batch_size)],
        work / "children.log",
        {"LORALAB_DATA_DIR": str(settings.data_dir)},
    )
    p50, p95 = latency_ms(scored["latencies"])
    return {**result, "scoring_seconds": scored["scoring_seconds"], "latency_p50_ms": p50, "latency_p95_ms": p95}


def score_run(args) -> dict:
    """Child process: our test-set scoring and single-sentence latency, through what the Predict page uses."""
    import pandas as pd

    from core.db import Run, session_factory
    from core.predict import load_run
    from core.settings import get_settings

    settings = get_settings(args.db)
    with session_factory(settings.db_url)() as s:
        predictor = load_run(settings, s.get(Run, args.score_run))
    texts = pd.read_csv(args.data / "test.csv", keep_default_na=False)["0"].astype(str).tolist()
    predictor.predict_proba(texts[: args.batch_size])  # warm-up, as for the reference
    passes = []
    for _ in range(PASSES):  # the fastest pass, as for the reference
        started = time.perf_counter()
        predictor.predict_proba(texts)
        passes.append(time.perf_counter() - started)
    latencies = []
    for i in range(args.latency):
        started = time.perf_counter()
        predictor.predict(texts[i % len(texts)])
        latencies.append(time.perf_counter() - started)
    return {"scoring_seconds": min(passes), "latencies": latencies}


def summarise(rows: list[dict], methods: list[str]) -> dict:
    """Medians over repetitions, per method and pipeline; accuracy and F1 are means over the repetitions' seeds."""
    out = {}
    for method in methods:
        for pipeline in PIPELINES:
            mine = [r for r in rows if r["method"] == method and r["pipeline"] == pipeline]
            if not mine:
                continue
            keys = ["train_seconds", "samples_per_second", "peak_memory_mb", "scoring_seconds"]
            keys += ["latency_p50_ms", "latency_p95_ms"]
            out[method, pipeline] = {k: statistics.median(r[k] for r in mine) for k in keys}
            for k in ("test_accuracy", "test_f1_macro"):
                out[method, pipeline][k] = statistics.fmean(r[k] for r in mine)
    return out


def table(summary: dict, methods: list[str]) -> str:
    head = (
        "| method | pipeline | train s | samples/s | ours / ref | test acc | macro-F1 | peak MB | test scoring s "
        "| scoring speed-up | p50 ms | p95 ms |"
    )
    lines = [head, "|" + " --- |" * 12]
    for method in methods:
        ref = summary.get((method, "reference"))
        for pipeline in PIPELINES:
            m = summary.get((method, pipeline))
            if m is None:
                continue
            ratio = speed = "1.00x"
            if pipeline == "ours" and ref:
                ratio = f"**{m['samples_per_second'] / ref['samples_per_second']:.2f}x**"
                speed = f"**{ref['scoring_seconds'] / m['scoring_seconds']:.2f}x**"
            lines.append(
                f"| {method} | {pipeline} | {m['train_seconds']:.1f} | {m['samples_per_second']:.1f} | {ratio} "
                f"| {m['test_accuracy']:.2%} | {m['test_f1_macro']:.4f} | {m['peak_memory_mb']:.0f} "
                f"| {m['scoring_seconds']:.2f} | {speed} | {m['latency_p50_ms']:.1f} | {m['latency_p95_ms']:.1f} |"
            )
    return "\n".join(lines)


def targets(summary: dict, methods: list[str]) -> list[tuple[str, bool]]:
    """The issue's targets, each with whether this run met it."""
    checks = []
    for method in methods:
        ref, ours = summary.get((method, "reference")), summary.get((method, "ours"))
        if not (ref and ours):
            continue
        ratio = ours["samples_per_second"] / ref["samples_per_second"]
        checks.append((f"{method}: training throughput ours / reference = {ratio:.2f}x (>= 1.5x)", ratio >= 1.5))
        gap = (ours["test_accuracy"] - ref["test_accuracy"]) * 100
        checks.append((f"{method}: test accuracy ours - reference = {gap:+.2f} points (>= -0.5)", gap >= -0.5))
        speed = ref["scoring_seconds"] / ours["scoring_seconds"]
        checks.append((f"{method}: test scoring reference / ours = {speed:.2f}x (>= 2x)", speed >= 2))
        p50 = ours["latency_p50_ms"]
        checks.append((f"{method}: single-sentence prediction p50 = {p50:.1f} ms (<= 20 ms)", p50 <= 20))
    full, lora = summary.get(("full", "ours")), summary.get(("lora", "ours"))
    if full and lora:
        share = lora["train_seconds"] / full["train_seconds"]
        checks.append((f"ours: LoRA train time / full = {share:.2f} (<= 0.75)", share <= 0.75))
        mem = (lora["peak_memory_mb"], full["peak_memory_mb"])
        checks.append((f"ours: peak memory LoRA {mem[0]:.0f} MB < full {mem[1]:.0f} MB", mem[0] < mem[1]))
    return checks


def chart(summary: dict, methods: list[str], path: Path, title: str) -> Path:
    """Four panels of grouped bars, reference against ours for each method. PNG through kaleido; HTML if it fails."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = [
        ("samples_per_second", "Training samples / s (higher is better)"),
        ("scoring_seconds", "Test-set scoring, s (lower is better)"),
        ("latency_p50_ms", "One sentence, p50 ms (lower is better)"),
        ("peak_memory_mb", "Peak memory, MB (lower is better)"),
    ]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[1] for p in panels])
    colors = {"reference": "#9aa5b1", "ours": "#1f77b4"}
    for col, (key, _) in enumerate(panels, start=1):
        for pipeline in PIPELINES:
            present = [m for m in methods if (m, pipeline) in summary]
            values = [summary[m, pipeline][key] for m in present]
            fig.add_trace(
                go.Bar(
                    x=present,
                    y=values,
                    name="article's code (reference)" if pipeline == "reference" else "LoRA Lab engine (ours)",
                    marker_color=colors[pipeline],
                    text=[f"{v:.3g}" for v in values],
                    textposition="outside",
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
    fig.update_layout(
        barmode="group", title=title, width=1400, height=450, template="plotly_white", legend_orientation="h"
    )
    try:
        fig.write_image(str(path), scale=1)
        return path
    except Exception as e:  # noqa: BLE001 - kaleido needs a Chromium; the numbers are in the table either way
        html = path.with_suffix(".html")
        fig.write_html(str(html), include_plotlyjs="cdn")
        print(f"warning: could not write {path.name} ({type(e).__name__}: {e}); wrote {html.name}", file=sys.stderr)
        return html


def smoke_setup(work: Path, source_data: Path) -> tuple[Path, str]:
    """A few dozen rows of the data and a tiny BERT (the bundled model's tokenizer, 2 layers of width 32)."""
    import pandas as pd
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = work / "smoke-data"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 64), ("dev", 40), ("test", 40)):  # dev: a full batch (drop_last)
        rows = pd.read_csv(source_data / f"{split}.csv", keep_default_na=False).head(n)
        rows.to_csv(folder / f"{split}.csv", index=False)
    if (source_data / "classes.txt").is_file():
        shutil.copy(source_data / "classes.txt", folder / "classes.txt")
    model_dir = work / "tiny-model"
    tokenizer = AutoTokenizer.from_pretrained(models.resolve(models.BUNDLED))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(model_dir)  # a base checkpoint, as the bundled one: the head is new
    tokenizer.save_pretrained(model_dir)
    return folder, str(model_dir)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=data.DEMO_DIR, help="train.csv, dev.csv, test.csv (text 0, label 1)")
    p.add_argument("--model", default=models.BUNDLED, help="bundled model (default), Hugging Face id or folder")
    p.add_argument("--methods", default="full,lora")
    p.add_argument("--pipelines", default="reference,ours", help="ours alone: try an engine change quickly")
    p.add_argument("--epochs", type=float, default=5.0, help="the article's 5 by default")
    p.add_argument("--reps", type=int, default=2, help="repetitions of each pipeline, alternating")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--lr-full", type=float, help="default: the engine's (TrainConfig)")
    p.add_argument("--lr-lora", type=float, help="default: the engine's (TrainConfig)")
    p.add_argument("--seed", type=int, default=42, help="repetition r uses seed + r, in both pipelines")
    p.add_argument("--latency", type=int, default=200, help="single sentences timed per measurement")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out", help="results.jsonl, table.md, PNG")
    p.add_argument("--smoke", action="store_true", help="tiny model, a few dozen rows, one repetition")
    p.add_argument("--score-run", type=int, help=argparse.SUPPRESS)  # internal: the child that times our scoring
    p.add_argument("--db", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.score_run is not None:
        print(json.dumps(score_run(args)))
        return 0
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="train_bench-"))
    try:
        return bench(args, methods, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench(args, methods: list[str], work: Path) -> int:
    from core.db import session_factory
    from core.settings import get_settings

    if args.smoke:
        args.data, args.model = smoke_setup(work, args.data)
        args.epochs, args.reps, args.latency = 1.0, 1, 10
    args.data = args.data.resolve()
    if Path(args.model).expanduser().is_dir():  # a local model folder: let the engine read it
        args.model = str(Path(args.model).expanduser().resolve())
        roots = os.environ.get("LORALAB_MODEL_ROOTS", str(ROOT / "models"))
        os.environ["LORALAB_MODEL_ROOTS"] = os.pathsep.join([roots, str(Path(args.model).parent)])
    os.environ.pop("LORALAB_DATA_DIR", None)
    args.model_path = models.resolve(args.model)

    settings = get_settings(f"sqlite:///{work / 'bench.db'}")
    files = data.files_from_folder(args.data)
    classes_file = args.data / "classes.txt"
    names = data.read_class_names(classes_file.read_bytes()) if classes_file.is_file() else None
    check = data.check_dataset(files, settings, text_column="0", label_column="1", class_names=names)
    if not check.ok:
        raise SystemExit("The data was refused:\n- " + "\n- ".join(check.errors))
    with session_factory(settings.db_url)() as s:
        dataset = data.save_dataset(s, settings, check, "bench")
        dataset_id, classes = dataset.id, list(dataset.classes)

    header = {
        "machine": machine(),
        "model": models.describe(args.model),
        "data": str(args.data),
        "epochs": args.epochs,
        "reps": args.reps,
        "load_avg_start": load_avg(),
    }
    print(json.dumps({"kind": "setup", **header}), flush=True)
    rows = []
    results = args.out / "results.jsonl"
    results.write_text("")
    started = time.perf_counter()
    for method in methods:
        lr = args.lr_full if method == "full" else args.lr_lora
        config = TrainConfig(
            method=method,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=lr,
            max_length=args.max_length,
            seed=args.seed,
        )
        for rep in range(args.reps):
            # Each repetition its own seed, the same for both pipelines: accuracy is then compared over as many
            # seeds as repetitions (one seed's result moves by a point or more with the data order alone).
            config = TrainConfig.from_dict({**config.to_dict(), "seed": args.seed + rep})
            for pipeline in [p for p in PIPELINES if p in args.pipelines]:  # A B A B: drifting load hits both alike
                load = load_avg()
                if pipeline == "reference":
                    m = measure_reference(args, method, config, work, classes)
                else:
                    m = measure_ours(args, method, config, settings, dataset_id, work)
                row = {"kind": "measurement", "method": method, "pipeline": pipeline, "rep": rep, "seed": config.seed}
                row.update(m)
                row.update(lr=config.learning_rate, load_avg_before=load, load_avg_after=load_avg())
                rows.append(row)
                line = json.dumps(row)
                print(line, flush=True)
                with open(results, "a") as f:
                    f.write(line + "\n")

    summary = summarise(rows, methods)
    elapsed = time.perf_counter() - started
    loads = [r["load_avg_before"] for r in rows] + [r["load_avg_after"] for r in rows]
    about = (
        f"{header['machine']}. {header['model']}, {Path(args.data).name}, {args.epochs:g} epochs, batch "
        f"{args.batch_size}, max_length {args.max_length}; {args.reps} repetition(s) (seeds {args.seed}-"
        f"{args.seed + args.reps - 1}): times are medians, accuracy and F1 means. "
        f"Benchmark wall time {elapsed / 60:.1f} min; 1-minute load average {min(loads):.2f}-{max(loads):.2f}."
    )
    checks = targets(summary, methods)
    text = "\n".join(
        [about, "", table(summary, methods), "", *[f"- [{'x' if ok else ' '}] {name}" for name, ok in checks]]
    )
    (args.out / "table.md").write_text(text + "\n")
    png = chart(summary, methods, args.out / "train_bench.png", f"Article's code vs our engine, {header['model']}")
    met = all(ok for _, ok in checks)
    print(json.dumps({"kind": "summary", "elapsed_s": elapsed, "chart": str(png), "targets_met": met}))
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
