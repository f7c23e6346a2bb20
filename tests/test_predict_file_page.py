"""AppTests of the Predict page's two tabs and of the Runs page's model download, with a really trained tiny run."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.jobs.worker import claim_next_label_job
from core.results import export, labels
from core.training.config import TrainConfig
from tests.conftest import make_rows, write_csv
from tests.helpers import store, train_now

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def no_worker(monkeypatch):
    """The page queues a label job; the test labels it itself, no background worker is started."""
    monkeypatch.setattr("core.jobs.worker.ensure_worker", lambda settings: False)


@pytest.fixture
def run_id(settings, csv_folder, tiny_model) -> int:
    fast = {"epochs": 2, "batch_size": 16, "evals_per_epoch": 1, "max_length": 32, "learning_rate": 5e-3}
    return train_now(settings, store(settings, csv_folder), tiny_model, "lora", **fast)


def open_page(page: str, **query) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90).run()
    at.switch_page(f"pages/{page}.py")
    at.query_params.update(query)
    return at.run()


def test_predict_tabs_type_a_text_and_label_a_file(settings, run_id, tmp_path):
    at = open_page("predict")
    at.text_area(key="predict_text").set_value("goal match team").run()
    assert not at.exception and at.metric[0].value in {"0", "1", "2"}

    rows = [(f"id{i}", t) for i, (t, _) in enumerate(make_rows(30, 5))]
    path = write_csv(tmp_path / "new.csv", rows, header=("id", "title"))
    at.file_uploader(key="label_file").set_value((path.name, path.read_bytes(), "text/csv")).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="label_column").value == "title", "the text column is guessed by its name"
    assert at.multiselect(key="label_runs").value == [run_id]
    at.button(key="label_start").click().run()
    assert "waiting for the background worker" in " ".join(str(i.value) for i in at.info)

    labels.run_label_job(settings, claim_next_label_job(settings))
    at.run()
    assert not at.exception and not at.error
    (button,) = at.get("download_button")
    assert "new-labelled.csv (30 rows)" in button.proto.label
    out = pd.read_csv(labels.output_path(settings, labels_job(settings)), dtype=str, encoding="utf-8-sig")
    run = f"#{run_id} LoRA · seed {TrainConfig().seed}"
    assert out["id"].tolist() == [r[0] for r in rows] and f"{run} label" in out.columns
    (shown,) = [d.value for d in at.dataframe if f"{run} label" in d.value.columns]  # the first rows, on the page
    assert list(shown.columns) == ["id", "title", f"{run} label", f"{run} probability"]
    assert shown["id"].tolist() == [r[0] for r in rows[: labels.PREVIEW_ROWS]]


def labels_job(settings):
    from core.store.db import LabelJob, session_factory

    with session_factory(settings.db_url)() as s:
        return s.get(LabelJob, 1)


def test_label_a_file_names_the_rows_of_a_hostile_file(settings, run_id, tmp_path):
    at = open_page("predict")
    path = write_csv(tmp_path / "bad.csv", [("ok text", 1), ("", 2)], header=("text", "n"))
    at.file_uploader(key="label_file").set_value((path.name, path.read_bytes(), "text/csv")).run()
    at.button(key="label_start").click().run()
    assert not at.exception
    assert "bad.csv row 3, column 'text': the text is empty" in at.error[0].value
    at.file_uploader(key="label_file").set_value(("book.txt", b"\x00\x01\x02binary", "text/plain")).run()
    assert "contains NUL bytes" in at.error[0].value


def test_runs_page_offers_the_model_as_a_zip(settings, run_id):
    at = open_page("runs", run=str(run_id))
    assert not at.exception
    labels_shown = [b.proto.label for b in at.get("download_button")]
    assert labels_shown == ["Download the LoRA adapters (.zip)", "Download the merged model (.zip)"]
    with zipfile.ZipFile(io.BytesIO(export.export_bytes(settings, run_id, merged=True))) as z:
        assert f"run-{run_id}-lora-merged/model.safetensors" in z.namelist()
