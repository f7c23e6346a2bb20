"""Helpers the engine, fault and cluster tests share: store a dataset, start a worker, read a run, wait."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from core import data
from core.db import Metric, Run, session_factory

ROOT = Path(__file__).resolve().parent.parent


def store(settings, folder, name="tiny"):
    """Check and store the train/dev/test CSVs of a folder, as the Data page does."""
    check = data.check_dataset(data.files_from_folder(folder), settings)
    assert check.ok, check.errors
    with session_factory(settings.db_url)() as s:
        return data.save_dataset(s, settings, check, name)


def save_bert(folder, tokenizer, hidden=32, layers=2, heads=2, intermediate=64) -> str:
    """A BERT classifier with random weights and this tokenizer, saved as save_pretrained saves a downloaded one, so
    that the real loading code reads it."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=128,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def wait_for(predicate, timeout=90.0, every=0.2, what="a condition"):
    """Poll until `predicate()` is truthy and return its value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def get_run(settings, run_id) -> Run:
    with session_factory(settings.db_url, read_only=True)() as s:
        return s.get(Run, run_id)


def metric_count(settings, run_id) -> int:
    with session_factory(settings.db_url, read_only=True)() as s:
        return s.scalar(select(func.count(Metric.id)).where(Metric.run_id == run_id))


def metric_rows(settings, run_id) -> list[tuple[str, int, float]]:
    """(name, step, value) of every logged value of a run, in logging order."""
    with session_factory(settings.db_url, read_only=True)() as s:
        rows = s.execute(
            select(Metric.name, Metric.step, Metric.value).where(Metric.run_id == run_id).order_by(Metric.id)
        )
        return [tuple(r) for r in rows]


def core_command(settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m core ARGS --db URL`, as a user types it, on the test's database and data folder."""
    return subprocess.run(
        [sys.executable, "-m", "core", *args, "--db", settings.db_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "LORALAB_DATA_DIR": str(settings.data_dir)},
    )


def start_worker(settings, env: dict | None = None, output=subprocess.DEVNULL, **popen) -> subprocess.Popen:
    """A real worker process (`python -m core worker`) for the settings' database and data folder."""
    return subprocess.Popen(
        [sys.executable, "-m", "core", "worker", "--db", settings.db_url],
        cwd=ROOT,
        env={**os.environ, "LORALAB_DATA_DIR": str(settings.data_dir), **(env or {})},
        stdout=output,
        stderr=subprocess.STDOUT if output is subprocess.PIPE else subprocess.DEVNULL,
        text=True,
        **popen,
    )


def train_now(settings, dataset, model_source: str, method: str, **config) -> int:
    """Record a run and train it in this process (no worker, no child process): a finished run to use, fast."""
    from core.config import TrainConfig
    from core.train import train_run

    with session_factory(settings.db_url)() as s:
        run = Run(
            dataset_id=dataset.id,
            dataset_name=dataset.name,
            method=method,
            model_source=model_source,
            config=TrainConfig(method=method, **config).to_dict(),
        )
        s.add(run)
        s.commit()
        run_id = run.id
    assert train_run(settings, run_id).value == "completed", get_run(settings, run_id).error
    return run_id
