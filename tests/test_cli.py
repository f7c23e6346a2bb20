"""The command line, run as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import select

from core.data import datasets
from core.store.db import Dataset, session_factory
from core.training import coverage, models
from core.training.artifacts import CHECKPOINT_STATE, checkpoints_dir
from tests.conftest import make_rows, write_csv
from tests.helpers import get_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, settings):
    return subprocess.run(
        [sys.executable, "-m", "core", *args, "--db", settings.db_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "LORALAB_DATA_DIR": str(settings.data_dir)},
    )


def split_args(folder):
    return ["--train", str(folder / "train.csv"), "--dev", str(folder / "dev.csv"), "--test", str(folder / "test.csv")]


def test_train_prints_one_json_object_then_status_and_predict(settings, csv_folder, tiny_model):
    out = cli(
        "train",
        *split_args(csv_folder),
        "--method",
        "full",
        "--model",
        tiny_model,
        "--epochs",
        "15",
        "--batch-size",
        "16",
        "--lr",
        "3e-3",
        "--json",
        settings=settings,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    for key in (
        "run_id",
        "status",
        "train_seconds",
        "samples_per_second",
        "trainable_params",
        "total_params",
        "peak_memory_mb",
        "device",
    ):
        assert result[key] is not None, key
    assert result["status"] == "completed"
    tokenizer = models.load_tokenizer(tiny_model, settings)  # the training texts' tokens the model does not know
    with session_factory(settings.db_url)() as s:
        train_texts = datasets.load_split(settings, s.scalars(select(Dataset)).one(), "train")["text"]
    assert result["unknown_token_share"] == pytest.approx(coverage.unknown_share(tokenizer, train_texts.tolist()))
    assert set(result["test"]) == {"accuracy", "precision_weighted", "recall_weighted", "f1_macro", "confusion_matrix"}

    status = cli("status", str(result["run_id"]), "--json", settings=settings)
    assert json.loads(status.stdout)["test"] == result["test"]

    pred = cli("predict", "--run", str(result["run_id"]), "the striker scored a goal", "--json", settings=settings)
    assert pred.returncode == 0, pred.stderr
    answer = json.loads(pred.stdout)
    assert answer["label"] in answer["probabilities"]
    assert abs(sum(answer["probabilities"].values()) - 1) < 1e-4


def test_submit_queues_cancel_cancels_and_resume_needs_a_checkpoint(settings, csv_folder, tiny_model):
    out = cli("submit", *split_args(csv_folder), "--model", tiny_model, settings=settings)
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip()
    assert json.loads(cli("status", run_id, "--json", settings=settings).stdout)["status"] == "queued"
    assert "cancelled" in cli("cancel", run_id, settings=settings).stdout

    out = cli("resume", run_id, settings=settings)
    assert out.returncode == 2 and "has no checkpoint to resume from" in out.stderr
    run = get_run(settings, int(run_id))
    checkpoint = checkpoints_dir(settings, run) / "checkpoint-10"
    checkpoint.mkdir(parents=True)
    (checkpoint / CHECKPOINT_STATE).write_text(json.dumps({"run_uid": run.uid}))
    out = cli("resume", run_id, settings=settings)
    assert out.returncode == 0 and out.stdout.strip() == f"run {run_id}: queued to resume from step 10"
    assert json.loads(cli("status", run_id, "--json", settings=settings).stdout)["status"] == "queued"


def test_refused_input_exits_non_zero_with_a_plain_message(settings, tmp_path, tiny_model):
    write_csv(tmp_path / "train.csv", make_rows(12, 1))
    write_csv(tmp_path / "dev.csv", [("a text", 0), ("", 1)])
    write_csv(tmp_path / "test.csv", make_rows(6, 2))
    out = cli("train", *split_args(tmp_path), "--model", tiny_model, settings=settings)
    assert out.returncode == 2
    assert "dev.csv row 3, column '0': the text is empty" in out.stderr
    assert "Traceback" not in out.stderr

    out = cli("train", *split_args(tmp_path), "--model", tiny_model, "--lr", "-1", settings=settings)
    assert out.returncode == 2 and "Learning rate" in out.stderr and "Traceback" not in out.stderr

    out = cli("status", "999", settings=settings)
    assert out.returncode == 2 and "no run 999" in out.stderr


def test_delete_asks_once_then_removes_runs_with_their_files_and_disk_says_what_the_history_takes(
    settings, csv_folder
):
    from sqlalchemy import select

    from core.jobs.runs import create_comparison, create_run
    from core.store.db import Run, session_factory
    from core.store.storage import run_dir
    from core.training.config import TrainConfig
    from tests.helpers import store
    from tests.test_storage import finish

    def delete(*args, answer=None):
        return subprocess.run(
            [sys.executable, "-m", "core", "delete", *args, "--db", settings.db_url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            input=answer,
            stdin=subprocess.DEVNULL if answer is None else None,
            env={**os.environ, "LORALAB_DATA_DIR": str(settings.data_dir)},
        )

    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        run = create_run(s, dataset, "m", TrainConfig())
        group, pair = create_comparison(s, dataset, "m", TrainConfig())
        waiting = create_run(s, dataset, "m", TrainConfig())
    for done in (run, *pair):
        finish(settings, done.id, checkpoint_bytes=3 * 2**20)
    disk = cli("disk", settings=settings)
    assert disk.returncode == 0 and "The history takes 9." in disk.stdout and "4 runs" in disk.stdout, disk.stdout

    unanswered = delete(str(run.id))  # no one to answer (stdin closed): refused plainly, nothing deleted
    assert unanswered.returncode == 2 and "no one answered" in unanswered.stderr, unanswered.stderr
    assert "Traceback" not in unanswered.stderr and "frees 3.0 MB" in unanswered.stderr
    declined = delete(str(run.id), answer="n\n")
    assert declined.returncode == 1 and "Nothing was deleted" in declined.stdout
    assert get_run(settings, run.id) is not None and run_dir(settings, run).is_dir()
    agreed = delete(str(run.id), answer="y\n")
    assert agreed.returncode == 0 and "freed 3.0 MB" in agreed.stdout, agreed.stderr
    assert not run_dir(settings, run).exists()

    refused = delete(str(waiting.id), "--yes")
    assert refused.returncode == 2 and f"Run {waiting.id} is queued: cancel it first" in refused.stderr
    whole = delete("--group", str(group.id), "--yes")
    assert whole.returncode == 0 and "freed 6.0 MB" in whole.stdout, whole.stderr
    with session_factory(settings.db_url, read_only=True)() as s:
        assert list(s.scalars(select(Run.id))) == [waiting.id]
    assert delete("--group", "99", "--yes").stderr.strip() == "error: There is no comparison group 99."
