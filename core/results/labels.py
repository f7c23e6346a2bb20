"""Labelling a file of texts with finished runs' models.

The file is read and checked when it is given (the Data page's reader and messages), stored, and queued as a label
job. The worker labels it in its own process, a chunk of rows at a time, appending each chunk's answers to a CSV:
memory holds the file and one chunk's probabilities, never every row's. The same streaming serves `python -m core
predict --file`.
"""

from __future__ import annotations

import argparse
import resource
import sys
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from core import i18n
from core.data import checking, reading
from core.i18n import _, words_of
from core.results import describe
from core.results.downloads import write_safe_csv
from core.store import storage
from core.store.db import LabelJob, Run, RunStatus, open_database, session_factory, utcnow
from core.store.settings import Settings, get_settings
from core.training import models, predict

CHUNK_ROWS = 2_000  # rows labelled, and written, at a time
TEXT_NAMES = ("text", "sentence", "title", "headline", "content", "review", "comment", "message", "body", "question")
TEXT_NAMES += ("0",)  # the seed layout's text column
LOOKED_AT = 200  # rows whose lengths pick the text column when no column is named like one
OUTPUT = "labelled.csv"
PROBABILITY_DECIMALS = 4  # 0.9731: more digits are noise to the reader and make the file longer
PREVIEW_ROWS = 5  # rows of the labelled file shown on the Predict page


def guess_text_column(frame: pd.DataFrame) -> str:
    """The column named like a text column ('text', 'title', ...); else the one with the longest values in its first
    rows: texts are longer than the ids, dates and labels beside them."""
    columns = [str(c) for c in frame.columns]
    lower = {c.lower(): c for c in columns}
    named = next((lower[n] for n in TEXT_NAMES if n in lower), None)
    if named is not None or len(columns) == 1:
        return named or columns[0]
    head = frame.head(LOOKED_AT)
    return max(columns, key=lambda c: head[c].astype(str).str.len().mean())


def check_file(text_file: reading.TextFile, text_column: str | None, settings: Settings) -> str:
    """The text column to label, or DataError naming every problem as the Data page does."""
    columns = [str(c) for c in text_file.frame.columns]
    column = text_column or guess_text_column(text_file.frame)
    if column not in columns:
        raise reading.DataError(
            _(
                "{file} has no column '{column}'. Its columns are {columns}: pick the text column.",
                file=text_file.name,
                column=column,
                columns=", ".join(repr(c) for c in columns),
            )
        )
    problems = checking.text_problems(
        text_file.name, text_file.frame[column].astype(str), column, settings, text_file.plain
    )
    if problems:
        raise reading.DataError(problems)
    return column


def run_name(run: Run) -> str:
    """A run as the labelled file's columns name it: '#12 LoRA · seed 42' (its number, as on every page, keeps two
    runs of one method and seed apart)."""
    facts = describe.run_facts(run)
    return f"#{run.id} {facts['method']} · {facts['seed']}"


def output_columns(name: str, classes: list[str], all_probabilities: bool) -> list[str]:
    """The columns a run adds to the labelled file, in the language of the process that labels it."""
    extra = [f"{name} P({c})" for c in classes] if all_probabilities else []
    return [_("{run} label", run=name), _("{run} probability", run=name), *extra]


def preview(path: Path, rows: int = PREVIEW_ROWS) -> pd.DataFrame:
    """The first rows of a labelled file, as the file holds them (a cell a spreadsheet would run keeps its
    apostrophe)."""
    return pd.read_csv(path, nrows=rows, dtype=str, keep_default_na=False, encoding="utf-8-sig")


def label_rows(
    text_file: reading.TextFile,
    column: str,
    predictors: dict[str, predict.Predictor],
    out_path: Path,
    all_probabilities: bool = False,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write every input row, in order, with each run's label and probability (and every class's, if asked), to a
    formula-safe CSV; a chunk at a time. `predictors` maps each run's name (run_name) to its model; probabilities
    are rounded to PROBABILITY_DECIMALS. Written beside out_path and renamed when whole. Returns the rows written."""
    frame = text_file.frame
    tmp = out_path.with_name(out_path.name + ".partial")
    try:
        with open(tmp, "w", encoding="utf-8-sig", newline="") as f:
            for start in range(0, max(len(frame), 1), CHUNK_ROWS):
                chunk = frame.iloc[start : start + CHUNK_ROWS].reset_index(drop=True)
                texts = chunk[column].astype(str).tolist()
                for name, predictor in predictors.items():
                    probs = predictor.predict_proba(texts)
                    best = probs.argmax(axis=1)
                    probs = probs.astype(np.float64).round(PROBABILITY_DECIMALS)  # float32 would print 0.3393000066
                    names = output_columns(name, predictor.classes, all_probabilities)
                    chunk[names[0]] = pd.Series(np.asarray(predictor.classes, dtype=object)[best], dtype="str")
                    chunk[names[1]] = probs[np.arange(len(best)), best]
                    for k, class_column in enumerate(names[2:]):
                        chunk[class_column] = probs[:, k]
                write_safe_csv(chunk, f, header=start == 0)
                if progress is not None:
                    progress(start + len(chunk))
        tmp.replace(out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(frame)


def load_predictors(session: Session, settings: Settings, run_ids: list[int]) -> dict[str, predict.Predictor]:
    """Each run's model, by the run's name in the labelled file's columns."""
    out = {}
    for run_id in run_ids:
        run = session.get(Run, run_id)
        if run is None:
            raise predict.RunNotReady(_("There is no run {run} (it may have been deleted).", run=run_id))
        out[run_name(run)] = predict.load_run(settings, run)
    return out


def submit(
    session: Session,
    settings: Settings,
    file: reading.SplitFile,
    run_ids: list[int],
    text_column: str | None = None,
    all_probabilities: bool = False,
) -> LabelJob:
    """Check the file and the runs, store the file, and queue it for the worker. DataError / RunNotReady in plain
    words when it cannot be labelled; nothing is stored then."""
    if not run_ids:
        raise predict.RunNotReady(_("Pick at least one finished run to label the file with."))
    text_file = reading.read_text_file(file, settings)
    column = check_file(text_file, text_column, settings)
    for run_id in run_ids:
        run = session.get(Run, run_id)
        if run is None:
            raise predict.RunNotReady(_("There is no run {run}.", run=run_id))
        predict.artifact_folder(settings, run)  # completed, with its model files
    folder = Path("labels") / uuid.uuid4().hex
    storage.use_data_folder(settings)  # the data folder records this database before it holds its files
    (settings.data_dir / folder).mkdir(parents=True)
    input_name = "input.txt" if text_file.plain else "input.csv"
    (settings.data_dir / folder / input_name).write_bytes(file.read())
    job = LabelJob(
        run_ids=list(run_ids),
        file_name=file.name,
        folder=str(folder),
        text_column=column,
        all_probabilities=all_probabilities,
        rows_total=len(text_file.frame),
    )
    session.add(job)
    session.commit()
    return job


def input_path(settings: Settings, job: LabelJob) -> Path:
    folder = settings.data_dir / job.folder
    return next(p for p in (folder / "input.txt", folder / "input.csv") if p.exists())


def output_path(settings: Settings, job: LabelJob) -> Path:
    return settings.data_dir / job.folder / OUTPUT


def download_name(job: LabelJob) -> str:
    return f"{Path(job.file_name).stem}-labelled.csv"


def run_label_job(settings: Settings, job_id: int) -> RunStatus:
    """Label one claimed job in this process; record how it ended, and this process's peak memory."""
    sessions = session_factory(settings.db_url)
    try:
        with session_factory(settings.db_url, read_only=True)() as s:  # closed before labelling: no lock is held
            job = s.get(LabelJob, job_id)
            predictors = load_predictors(s, settings, job.run_ids)
        text_file = reading.read_text_file(reading.SplitFile.from_path(input_path(settings, job)), settings)
        text_file.name = job.file_name
        column = check_file(text_file, job.text_column, settings)

        def progress(done: int) -> None:
            with sessions.begin() as w:
                w.get(LabelJob, job_id).rows_done = done

        label_rows(text_file, column, predictors, output_path(settings, job), job.all_probabilities, progress)
        status, error = RunStatus.COMPLETED, None
    except (reading.DataError, predict.RunNotReady, models.ModelSourceError) as e:
        status, error = RunStatus.FAILED, words_of(e)
    except Exception as e:  # noqa: BLE001 - every failure is recorded on the job in plain words
        traceback.print_exc()
        status, error = RunStatus.FAILED, _("Labelling failed: {error}", error=e)
    with sessions.begin() as s:
        job = s.get(LabelJob, job_id)
        job.status, job.error, job.finished_at = status.value, error, utcnow()
        job.peak_memory_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.results.labels", description="label one claimed label job")
    parser.add_argument("job_id", type=int)
    parser.add_argument("--db")
    args = parser.parse_args(argv)
    i18n.set_language(i18n.from_environment())  # what it writes on the job and in the file: the server's language
    settings = get_settings(args.db)
    open_database(settings.db_url)
    status = run_label_job(settings, args.job_id)
    return 0 if status == RunStatus.COMPLETED else 1


if __name__ == "__main__":
    sys.exit(main())
