"""Training and inference benchmark: the seed article's code against our engine, on the same data and settings.

    .venv/bin/python bench/train_bench.py                 # demo data, bundled model (about 12 minutes on 2 cores)
    .venv/bin/python bench/train_bench.py --data DIR --model SRC --epochs 3 --reps 2
    .venv/bin/python bench/train_bench.py --smoke         # a tiny model and a few dozen rows: checks it still runs

For each method (full, LoRA) it alternates the two pipelines, reference then ours, `--reps` times:
- reference: bench/article.py, the article's training script and then its test script, each in a child process;
- ours: a run recorded in a temporary SQLite database and trained through core.jobs.worker.supervise, the child process
  the dashboard's worker and `python -m core train` use; its timings and metrics are read back from the database,
  and its test scoring and single-sentence latency are timed in a child process through core.training.predict.load_run.
Both get the same batch size, epochs, learning rate (the engine's per-method default unless given), warmup share,
evaluations per epoch, max length and seed. One JSON line per measurement goes to stdout and to
OUT/results.jsonl, then a table (OUT/table.md) and a chart (OUT/train_bench.png). docs/benchmarks.md holds that
table.md as written, unedited, and the chart as assets/bench/train_bench.png: replace both from a new run.
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

from core.data import checking, datasets, reading
from core.training import models
from core.training.config import TrainConfig

PIPELINES = ("reference", "ours")
# The demo set and the two sets bench/build_data.py builds: English news titles (5 classes), Chinese requests to an
# assistant (19), English programming questions (20).
DEFAULT_DATASETS = ("demo", "ecdt_zh", "stackoverflow_en")
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

    from core.training.evaluate import macro_f1  # the engine's own definition, so both pipelines are scored alike

    return float(accuracy_score(y_true, y_pred)), macro_f1(y_true, y_pred)


def latency_ms(seconds: list[float]) -> tuple[float, float]:
    import numpy as np

    return float(np.percentile(seconds, 50) * 1000), float(np.percentile(seconds, 95) * 1000)


def test_labels(folder: Path) -> list[int]:
    import pandas as pd

    return pd.read_csv(folder / "test.csv", keep_default_na=False)["1"].astype(int).tolist()


def measure_reference(args, folder: Path, method: str, config: TrainConfig, work: Path, classes: list[str]) -> dict:
    out = work / f"reference-{method}"
    common = ["--data", str(folder), "--model", args.model_path, "--method", method, "--out", str(out)]
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
    accuracy, f1 = metrics(test_labels(folder), tested["predictions"])
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


def measure_ours(args, folder: Path, method: str, config: TrainConfig, settings, dataset_id: int, work: Path) -> dict:
    """A run as `python -m core train` makes it: recorded in the database, trained by supervise's child process."""
    from core.jobs.runs import create_run
    from core.jobs.worker import supervise
    from core.store.db import Dataset, Run, RunStatus, session_factory
    from core.store.storage import run_dir

    sessions = session_factory(settings.db_url)
    with sessions() as s:
        run_id = create_run(s, s.get(Dataset, dataset_id), args.model, config, status=RunStatus.RUNNING).id
    status = supervise(settings, run_id)
    with sessions() as s:
        run = s.get(Run, run_id)
        if status != RunStatus.COMPLETED:
            raise SystemExit(f"our run {run_id} ended {status.value}: {run.error} (log: {run_dir(settings, run)})")
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
        + ["--data", str(folder), "--latency", str(args.latency), "--batch-size", str(config.batch_size)],
        work / "children.log",
        {"LORALAB_DATA_DIR": str(settings.data_dir)},
    )
    p50, p95 = latency_ms(scored["latencies"])
    return {**result, "scoring_seconds": scored["scoring_seconds"], "latency_p50_ms": p50, "latency_p95_ms": p95}


def score_run(args) -> dict:
    """Child process: our test-set scoring and single-sentence latency, through what the Predict page uses."""
    import pandas as pd

    from core.store.db import Run, session_factory
    from core.store.settings import get_settings
    from core.training.predict import load_run

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


def group_key(row: dict) -> tuple:
    return row["dataset"], float(row["epochs"]), row["method"], row["pipeline"]


def summarise(rows: list[dict]) -> dict:
    """Per data set, length, method and pipeline: times are medians over the seeds, accuracy and F1 means with their
    range (a seed moves a run by a point or more)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(group_key(r), []).append(r)
    out = {}
    for key, mine in groups.items():
        keys = ["train_seconds", "samples_per_second", "peak_memory_mb", "scoring_seconds"]
        keys += ["latency_p50_ms", "latency_p95_ms"]
        out[key] = {k: statistics.median(r[k] for r in mine) for k in keys}
        for k in ("test_accuracy", "test_f1_macro"):
            values = [r[k] for r in mine]
            out[key][k] = statistics.fmean(values)
            out[key][k + "_range"] = (min(values), max(values))
        out[key]["seeds"] = sorted(r["seed"] for r in mine)
    return out


def table(summary: dict, dataset: str, epochs: float) -> str:
    head = (
        "| method | pipeline | train s | samples/s | ours / ref | test acc, mean (range) | macro-F1, mean (range) "
        "| seeds | peak MB | test scoring s | scoring speed-up | p50 ms |"
    )
    lines = [head, "|" + " --- |" * 12]
    for method in ("full", "lora"):
        ref = summary.get((dataset, epochs, method, "reference"))
        for pipeline in PIPELINES:
            m = summary.get((dataset, epochs, method, pipeline))
            if m is None:
                continue
            ratio = speed = "1.00x"
            if pipeline == "ours" and ref:
                ratio = f"**{m['samples_per_second'] / ref['samples_per_second']:.2f}x**"
                speed = f"**{ref['scoring_seconds'] / m['scoring_seconds']:.2f}x**"
            acc, f1 = m["test_accuracy_range"], m["test_f1_macro_range"]
            lines.append(
                f"| {method} | {pipeline} | {m['train_seconds']:.1f} | {m['samples_per_second']:.1f} | {ratio} "
                f"| {m['test_accuracy']:.2%} ({acc[0]:.2%}-{acc[1]:.2%}) "
                f"| {m['test_f1_macro']:.4f} ({f1[0]:.4f}-{f1[1]:.4f}) | {len(m['seeds'])} "
                f"| {m['peak_memory_mb']:.0f} | {m['scoring_seconds']:.2f} | {speed} | {m['latency_p50_ms']:.1f} |"
            )
    return "\n".join(lines)


def dataset_order(name: str) -> tuple:
    """The default three first, the others by name: the order of the tables and bars does not depend on which run a
    --continue went on from."""
    return (DEFAULT_DATASETS.index(name) if name in DEFAULT_DATASETS else len(DEFAULT_DATASETS), name)


def datasets_in(rows: list[dict]) -> list[str]:
    return sorted({r["dataset"] for r in rows}, key=dataset_order)


def pairs(rows: list[dict], dataset: str, epochs: float, method: str) -> list[tuple[int, dict, dict]]:
    """(seed, the article's run, ours) for each seed both pipelines finished."""
    mine = [r for r in rows if group_key(r)[:3] == (dataset, epochs, method)]
    found = []
    for seed in sorted({r["seed"] for r in mine}):
        pair = {r["pipeline"]: r for r in mine if r["seed"] == seed}
        if set(pair) == set(PIPELINES):
            found.append((seed, pair["reference"], pair["ours"]))
    return found


def mean_and_error(values: list[float]) -> str:
    """A mean in points and its standard error: how far the pairs spread says whether a gap is more than chance."""
    error = f" (s.e. {statistics.stdev(values) / len(values) ** 0.5:.2f})" if len(values) > 1 else ""
    return f"{statistics.fmean(values):+.2f}{error}"


def gaps(found: list[tuple[int, dict, dict]], key: str) -> list[float]:
    return [(ours[key] - ref[key]) * 100 for _, ref, ours in found]


def by_seed(rows: list[dict], dataset: str, epochs: float) -> str:
    """Ours minus the article's, seed by seed: the two pipelines trained on one seed are a pair."""
    lines = ["| method | seed | article's acc | ours | ours - article's, points | macro-F1, points |"]
    lines.append("|" + " --- |" * 6)
    for method in ("full", "lora"):
        found = pairs(rows, dataset, epochs, method)
        acc, f1 = gaps(found, "test_accuracy"), gaps(found, "test_f1_macro")
        for (seed, ref, ours), a, f in zip(found, acc, f1):
            scores = f"{ref['test_accuracy']:.2%} | {ours['test_accuracy']:.2%}"
            lines.append(f"| {method} | {seed} | {scores} | {a:+.2f} | {f:+.2f} |")
        if found:
            lines.append(f"| {method} | mean of {len(found)} | | | **{mean_and_error(acc)}** | {mean_and_error(f1)} |")
    return "\n".join(lines)


def overview(rows: list[dict], summary: dict) -> str:
    """One line per data set, length and method: the issue's targets at a glance, from the paired seeds (accuracy)
    and the medians (times)."""
    head = (
        "| data set | epochs | method | seeds | test acc, ours - article's, points (>= -0.5) | macro-F1, points "
        "(>= -0.5) | training throughput, ours / article's (>= 1.5x) | test scoring, speed-up (>= 2x) "
        "| train time, LoRA / full (<= 0.75) |"
    )
    lines = [head, "|" + " --- |" * 9]
    for dataset in datasets_in(rows):
        for epochs in sorted({float(r["epochs"]) for r in rows if r["dataset"] == dataset}):
            for method in ("full", "lora"):
                found, speed = pairs(rows, dataset, epochs, method), speeds(summary, dataset, epochs, method)
                if not (found and speed):
                    continue
                share = "" if speed["lora_share"] is None else f"{speed['lora_share']:.2f}"
                lines.append(
                    f"| {dataset} | {epochs:g} | {method} | {len(found)} "
                    f"| **{mean_and_error(gaps(found, 'test_accuracy'))}** "
                    f"| {mean_and_error(gaps(found, 'test_f1_macro'))} "
                    f"| {speed['throughput']:.2f}x | {speed['scoring']:.2f}x | {share} |"
                )
    return "\n".join(lines)


def lora_share(summary: dict, dataset: str, epochs: float) -> float | None:
    """Our LoRA's median training time over our full fine-tuning's; None unless both ran (the article's need not)."""
    full, lora = (summary.get((dataset, epochs, method, "ours")) for method in ("full", "lora"))
    return lora["train_seconds"] / full["train_seconds"] if full and lora else None


def speeds(summary: dict, dataset: str, epochs: float, method: str) -> dict | None:
    """Ours against the article's, from the medians: training throughput, test scoring speed-up, and for LoRA its
    training time over full fine-tuning's (None without a full run). None unless both pipelines ran."""
    ref, ours = (summary.get((dataset, epochs, method, p)) for p in PIPELINES)
    if not (ref and ours):
        return None
    return {
        "throughput": ours["samples_per_second"] / ref["samples_per_second"],
        "scoring": ref["scoring_seconds"] / ours["scoring_seconds"],
        "lora_share": lora_share(summary, dataset, epochs) if method == "lora" else None,
    }


def targets(summary: dict, dataset: str, epochs: float) -> list[tuple[str, bool]]:
    """The targets for one data set and length, each with whether this run met it."""
    checks = []
    for method in ("full", "lora"):
        ref, ours = summary.get((dataset, epochs, method, "reference")), summary.get((dataset, epochs, method, "ours"))
        if not (ref and ours):
            continue
        speed = speeds(summary, dataset, epochs, method)
        ratio = speed["throughput"]
        checks.append((f"{method}: training throughput ours / reference = {ratio:.2f}x (>= 1.5x)", ratio >= 1.5))
        gap = (ours["test_accuracy"] - ref["test_accuracy"]) * 100
        checks.append((f"{method}: test accuracy ours - reference = {gap:+.2f} points (>= -0.5)", gap >= -0.5))
        gap = (ours["test_f1_macro"] - ref["test_f1_macro"]) * 100
        checks.append((f"{method}: test macro-F1 ours - reference = {gap:+.2f} points (>= -0.5)", gap >= -0.5))
        scoring = speed["scoring"]
        checks.append((f"{method}: test scoring reference / ours = {scoring:.2f}x (>= 2x)", scoring >= 2))
        p50 = ours["latency_p50_ms"]
        checks.append((f"{method}: single-sentence prediction p50 = {p50:.1f} ms (<= 20 ms)", p50 <= 20))
    full, lora = summary.get((dataset, epochs, "full", "ours")), summary.get((dataset, epochs, "lora", "ours"))
    if full and lora:
        share = lora_share(summary, dataset, epochs)
        checks.append((f"ours: LoRA train time / full = {share:.2f} (<= 0.75)", share <= 0.75))
        mem = (lora["peak_memory_mb"], full["peak_memory_mb"])
        checks.append((f"ours: peak memory LoRA {mem[0]:.0f} MB < full {mem[1]:.0f} MB", mem[0] < mem[1]))
    return checks


def chart(summary: dict, path: Path, title: str) -> Path:
    """Per data set, length and method: ours against the reference in training throughput (a ratio) and in test
    accuracy (a difference in points). PNG through kaleido; HTML if that fails."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    labels, ratios, acc_gaps = [], [], []
    for dataset, epochs, method, pipeline in sorted(summary, key=lambda k: (dataset_order(k[0]), *k[1:])):
        ref = summary.get((dataset, epochs, method, "reference"))
        if pipeline != "ours" or ref is None:
            continue
        ours = summary[dataset, epochs, method, pipeline]
        labels.append(f"{dataset}<br>{epochs:g} ep, {method}")
        ratios.append(speeds(summary, dataset, epochs, method)["throughput"])
        acc_gaps.append((ours["test_accuracy"] - ref["test_accuracy"]) * 100)
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=[
            "Training throughput, ours / article's (target >= 1.5)",
            "Test accuracy, ours - article's, points (target >= -0.5)",
        ],
    )
    fig.add_trace(go.Bar(x=labels, y=ratios, text=[f"{r:.2f}x" for r in ratios], marker_color="#1f77b4"), 1, 1)
    fig.add_trace(go.Bar(x=labels, y=acc_gaps, text=[f"{g:+.2f}" for g in acc_gaps], marker_color="#ff7f0e"), 1, 2)
    fig.add_hline(y=1.5, line_dash="dash", row=1, col=1)
    fig.add_hline(y=-0.5, line_dash="dash", row=1, col=2)
    low, high = min([*acc_gaps, -0.5]), max([*acc_gaps, 0.0])  # the target line inside, room for labels
    pad = 0.15 * (high - low) + 0.2
    fig.update_yaxes(range=[low - pad, high + pad], row=1, col=2)
    fig.update_traces(textposition="outside")
    fig.update_layout(title=title, width=1400, height=500, template="plotly_white", showlegend=False)
    try:
        fig.write_image(str(path), scale=1)
        return path
    except Exception as e:  # noqa: BLE001 - kaleido needs a Chromium; the numbers are in the table either way
        html = path.with_suffix(".html")
        fig.write_html(str(html), include_plotlyjs="cdn")
        print(f"warning: could not write {path.name} ({type(e).__name__}: {e}); wrote {html.name}", file=sys.stderr)
        return html


def smoke_setup(work: Path, source_data: Path) -> tuple[Path, str]:
    """A few dozen rows of the data and a tiny BERT (tiny_model)."""
    import pandas as pd

    folder = work / "smoke-data"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 64), ("dev", 40), ("test", 40)):  # dev: a full batch (drop_last)
        rows = pd.read_csv(source_data / f"{split}.csv", keep_default_na=False).head(n)
        rows.to_csv(folder / f"{split}.csv", index=False)
    if (source_data / "classes.txt").is_file():
        shutil.copy(source_data / "classes.txt", folder / "classes.txt")
    return folder, tiny_model(work / "tiny-model")


def tiny_model(model_dir: Path) -> str:
    """A tiny BERT (the bundled model's tokenizer, 2 layers of width 32) saved as a downloaded base model is; for the
    smoke modes of this benchmark and of bench/explain_bench.py."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from core.store.settings import get_settings

    tokenizer = AutoTokenizer.from_pretrained(models.resolve(models.BUNDLED, get_settings()))
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
    return str(model_dir)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--datasets",
        default=",".join(DEFAULT_DATASETS),
        help="comma-separated: 'demo', a set built by bench/build_data.py (bench/data/NAME), or a folder of "
        "train/dev/test.csv (text 0, label 1)",
    )
    p.add_argument("--model", default=models.BUNDLED, help="bundled model (default), Hugging Face id or folder")
    p.add_argument("--methods", default="full,lora")
    p.add_argument("--pipelines", default="reference,ours", help="ours alone: try an engine change quickly")
    p.add_argument("--epochs", default="2,5", help="comma-separated training lengths: short and long by default")
    p.add_argument("--reps", type=int, default=4, help="seeds per data set and length, the same in both pipelines")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--lr-full", type=float, help="default: the engine's (TrainConfig)")
    p.add_argument("--lr-lora", type=float, help="default: the engine's (TrainConfig)")
    p.add_argument("--seed", type=int, default=42, help="repetition r uses seed + r, in both pipelines")
    p.add_argument("--latency", type=int, default=200, help="single sentences timed per measurement")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out", help="results.jsonl, table.md, PNG")
    p.add_argument(
        "--continue",
        dest="resume",
        action="store_true",
        help="keep OUT/results.jsonl and measure only what it lacks (a long benchmark stopped half way goes on)",
    )
    p.add_argument("--smoke", action="store_true", help="tiny model, a few dozen rows, one repetition")
    p.add_argument("--score-run", type=int, help=argparse.SUPPRESS)  # internal: the child that times our scoring
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)  # the scoring child's test.csv folder
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


def dataset_folder(name: str) -> Path:
    if name == "demo":
        return datasets.DEMO_DIR
    built = ROOT / "bench" / "data" / name
    if built.is_dir():
        return built
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser().resolve()
    raise SystemExit(
        f"No data set '{name}': build it with `.venv/bin/python bench/build_data.py {name}`, or give a folder."
    )


def store_dataset(settings, folder: Path, name: str) -> tuple[int, list[str]]:
    from core.store.db import session_factory

    files = reading.files_from_folder(folder)
    classes_file = folder / "classes.txt"
    names = reading.read_class_names(classes_file.read_bytes()) if classes_file.is_file() else None
    check = checking.check_dataset(files, settings, text_column="0", label_column="1", class_names=names)
    if not check.ok:
        raise SystemExit(f"The data set {name} was refused:\n- " + "\n- ".join(check.errors))
    with session_factory(settings.db_url)() as s:
        dataset = datasets.save_dataset(s, settings, check, name)
        return dataset.id, list(dataset.classes)


def bench(args, methods: list[str], work: Path) -> int:
    from core.store.db import open_database
    from core.store.settings import get_settings

    names = [d.strip() for d in args.datasets.split(",") if d.strip()][: 1 if args.smoke else None]
    lengths = [float(e) for e in str(args.epochs).split(",") if e.strip()]
    folders = {name: dataset_folder(name) for name in names}
    if args.smoke:
        smoke, args.model = smoke_setup(work, folders[names[0]])
        names, folders, lengths = ["smoke"], {"smoke": smoke}, [1.0]
        args.reps, args.latency = 1, 10
    if Path(args.model).expanduser().is_dir():  # a local model folder: let the engine read it
        args.model = str(Path(args.model).expanduser().resolve())
        roots = os.environ.get("LORALAB_MODEL_ROOTS", str(ROOT / "models"))
        os.environ["LORALAB_MODEL_ROOTS"] = os.pathsep.join([roots, str(Path(args.model).parent)])
    os.environ.pop("LORALAB_DATA_DIR", None)
    settings = get_settings(f"sqlite:///{work / 'bench.db'}")
    open_database(settings.db_url)
    args.model_path = models.resolve(args.model, settings)
    stored = {name: store_dataset(settings, folder, name) for name, folder in folders.items()}
    header = {
        "machine": machine(),
        "model": models.describe(args.model),
        "datasets": {name: str(folder) for name, folder in folders.items()},
        "epochs": lengths,
        "reps": args.reps,
        "load_avg_start": load_avg(),
    }
    print(json.dumps({"kind": "setup", **header}), flush=True)
    results = args.out / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines()] if args.resume and results.exists() else []
    done = {(*group_key(r), r["seed"]) for r in rows}
    if not args.resume:
        results.write_text("")
    started = time.perf_counter()
    # Seeds outermost: every data set and length gets its first seed before any gets its second, so a benchmark
    # stopped half way (--continue goes on from there) has compared everything on the same seeds.
    for rep in range(args.reps):
        for name in names:
            dataset_id, classes = stored[name]
            for epochs in lengths:
                for method in methods:
                    lr = args.lr_full if method == "full" else args.lr_lora
                    config = TrainConfig(
                        method=method,
                        epochs=epochs,
                        batch_size=args.batch_size,
                        learning_rate=lr,
                        max_length=args.max_length,
                        seed=args.seed + rep,
                    )
                    for pipeline in [p for p in PIPELINES if p in args.pipelines]:  # A B: drifting load hits both
                        if (name, epochs, method, pipeline, config.seed) in done:
                            continue
                        load = load_avg()
                        if pipeline == "reference":
                            m = measure_reference(args, folders[name], method, config, work, classes)
                        else:
                            m = measure_ours(args, folders[name], method, config, settings, dataset_id, work)
                        row = {"kind": "measurement", "dataset": name, "epochs": epochs, "method": method}
                        row.update(pipeline=pipeline, rep=rep, seed=config.seed, **m)
                        row.update(lr=config.learning_rate, load_avg_before=load, load_avg_after=load_avg())
                        rows.append(row)
                        line = json.dumps(row)
                        print(line, flush=True)
                        with open(results, "a") as f:
                            f.write(line + "\n")

    summary = summarise(rows)
    elapsed = time.perf_counter() - started
    loads = [r["load_avg_before"] for r in rows] + [r["load_avg_after"] for r in rows]
    about = (
        f"{header['machine']}. {header['model']}; batch {args.batch_size}, max_length {args.max_length}; repetition "
        f"r uses seed {args.seed} + r in both pipelines (each table says which seeds it holds): times are medians "
        f"over the seeds, accuracy and F1 means (range). This invocation took {elapsed / 60:.1f} min"
        f"{' and went on from OUT/results.jsonl (--continue)' if args.resume else ''}; 1-minute load average "
        f"{min(loads):.2f}-{max(loads):.2f}."
    )
    sections, met = [about, "", overview(rows, summary)], True
    for name in datasets_in(rows):
        for epochs in sorted({float(r["epochs"]) for r in rows if r["dataset"] == name}):
            checks = targets(summary, name, epochs)
            met = met and all(ok for _, ok in checks)
            sections += [f"\n### {name}, {epochs:g} epochs\n", table(summary, name, epochs), ""]
            sections += [f"- [{'x' if ok else ' '}] {check}" for check, ok in checks]
            sections += ["", "Seed by seed, test accuracy:", "", by_seed(rows, name, epochs)]
    text = "\n".join(sections)
    (args.out / "table.md").write_text(text + "\n")
    png = chart(summary, args.out / "train_bench.png", f"Article's code vs our engine, {header['model']}")
    print(json.dumps({"kind": "summary", "elapsed_s": elapsed, "chart": str(png), "targets_met": met}))
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
