"""The Runs and Predict pages drawn in Chinese (#28): a run training, a finished pair, a failed run; an answer with its
shaded explanation, and a file labelled. No English is left on them but names that stay (tests.english) and the
test's own data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import i18n
from core.data import datasets
from core.i18n import _
from core.jobs.runs import create_comparison, create_run
from core.jobs.worker import claim_next_label_job
from core.results import labels
from core.store.db import Dataset, RunStatus, session_factory, utcnow
from core.training import evaluate, models
from core.training.config import TrainConfig
from tests.conftest import FILLER, WORDS, make_rows, write_csv
from tests.english import english_left, open_in_chinese
from tests.helpers import store, train_now, zh_folder
from tests.test_pages import finish, open_page

CLASSES = ["体育", "财经", "科技"]
# The test's own data (class names, dataset name, the English words of its texts), a file's name, a time zone, keys,
# and Streamlit's badge markup (":blue-badge[训练中]").
KEPT = {*CLASSES, "中文新闻", *FILLER, *(w for ws in WORDS.values() for w in ws), "README", "UTC", "Ctrl", "Enter"}
KEPT |= {"badge", "blue", "green", "red", "orange", "gray"}
KEPT |= {"utf"}  # an encoding's name as Python reads it ('utf-8'), shown as it is
KEPT |= {"query", "key", "value"}  # LoRA's target layers in the settings table: BERT's own names for them, code


@pytest.fixture(autouse=True)
def no_worker(monkeypatch):
    """Pages queue runs and label jobs, but no background worker is started from a test."""
    monkeypatch.setattr("core.jobs.worker.ensure_worker", lambda settings: False)


@pytest.fixture(autouse=True)
def test_thread_speaks_chinese():
    """AppTest sends a chosen option back formatted in the test's own thread (a run's label, '2 轮'): in the page's
    language, or the page would not know the option."""
    with i18n.speaking("zh"):
        yield


def english(at: AppTest) -> list[str]:
    """English left on the page, less the test's own data (KEPT)."""
    return english_left(at, KEPT)


def chinese_dataset(settings, tmp_path: Path) -> Dataset:
    """Chinese news titles in three Chinese classes, stored."""
    return store(settings, zh_folder(tmp_path), "中文新闻")


@pytest.fixture
def runs(settings, tmp_path):
    """A Chinese dataset; a finished pair, a run training, a failed run whose failure and note were written by an
    English-speaking server."""
    dataset = chinese_dataset(settings, tmp_path)
    truth = datasets.load_split(settings, dataset, "test")["label"].to_numpy()
    probs = np.eye(3)[truth] * 0.7 + 0.1  # every test text right, at 80 %
    config, ids = TrainConfig(epochs=2, batch_size=8), {}
    with session_factory(settings.db_url)() as s:
        dataset = s.get(Dataset, dataset.id)
        done = {"test_metrics": evaluate.test_metrics(truth, probs, dataset.classes), "train_seconds": 12.5}
        done |= {"total_params": 22_000_000, "finished_at": utcnow()}
        for run in create_comparison(s, dataset, models.BUNDLED, config)[1]:
            trainable = 110_000 if run.method == "lora" else 22_000_000
            finish(s, run, RunStatus.COMPLETED, trainable_params=trainable, **done)
            ids[run.method] = run.id
        with i18n.speaking("en"):  # the training process writes in the server's language; each reader reads theirs
            oom = _("Out of memory: try batch size {batch} or LoRA.", batch=4)
            resumed = _("Resumed from the checkpoint at step {step}.", step=8)
        for status, error in ((RunStatus.RUNNING, None), (RunStatus.FAILED, oom)):
            run = create_run(s, dataset, models.BUNDLED, config)
            finish(s, run, status, error=error, notes=[resumed] if error else [])
            ids[status.value] = run.id
    return ids


def test_the_runs_page_in_chinese(settings, runs):
    at = open_in_chinese("runs")
    assert not at.exception
    assert not (left := english(at)), left

    for state in ("running", "full", "lora", "failed"):  # a run training (its live view), a finished pair, a failure
        at = open_in_chinese("runs", run=str(runs[state]))
        assert not at.exception
        assert not (left := english(at)), (state, left)
    assert "内存不足：请尝试批大小 4，或改用 LoRA 微调。" in at.error[0].value, "written in English, read in Chinese"
    assert "已从第 8 步的检查点继续。" in [c.value for c in at.caption]


def test_the_disk_question_before_deleting_is_chinese(settings, runs):
    at = open_in_chinese("runs")
    at.selectbox(key="runs_delete_choice").select_index(0).run()
    at.button(key="runs_delete").click().run()
    assert not at.exception
    assert not (left := english(at)), left
    assert "无法撤销" in " ".join(w.value for w in at.warning)
    at.button(key="runs_delete_yes").click().run()  # its callback writes what was deleted
    assert not at.exception
    assert not (left := english(at)), left
    assert "已删除" in at.success[0].value


def test_the_predict_page_answers_explains_and_labels_a_file_in_chinese(settings, tmp_path, tiny_model):
    fast = {"epochs": 2, "batch_size": 16, "evals_per_epoch": 1, "max_length": 32, "learning_rate": 5e-3}
    dataset = chinese_dataset(settings, tmp_path)
    run_id = train_now(settings, dataset, tiny_model, "lora", **fast)

    at = open_in_chinese("predict")
    assert not (left := english(at)), left
    at.text_area(key="predict_text").set_value("足球新闻：球队 比赛").run()
    assert not at.exception and not at.error
    assert [m.value for m in at.metric][:1] in ([c] for c in CLASSES), at.main
    assert not (left := english(at)), left
    assert any("百分点" in c.value for c in [*at.caption, *at.warning]), "the explanation's summary, in Chinese"

    rows = [(f"{i} 号", t) for i, (t, __) in enumerate(make_rows(12, 5, chinese=True))]
    path = write_csv(tmp_path / "新闻.csv", rows, header=("编号", "标题"))
    at.file_uploader(key="label_file").set_value((path.name, path.read_bytes(), "text/csv")).run()
    assert not at.exception and not at.error
    assert not (left := english(at)), left
    at.button(key="label_start").click().run()
    assert not (left := english(at)), ("waiting for the worker", left)
    assert "后台训练进程" in at.info[0].value, [at.multiselect(key="label_runs").value, at.main]
    with i18n.speaking("zh"):  # the labelling process writes its columns in the server's language
        labels.run_label_job(settings, claim_next_label_job(settings))
    at.run()
    assert not at.exception and not at.error
    assert not (left := english(at)), ("the labelled file's first rows and its download", left)
    assert [b.proto.label for b in at.get("download_button")] == ["下载 新闻-labelled.csv（12 行）"]
    columns = [c for d in at.dataframe for c in d.value.columns if str(c).startswith(f"#{run_id} ")]
    assert [str(c).endswith(" 标签") for c in columns] == [True, False], "its label and probability, in Chinese"


def test_the_checker_finds_english_left_by_this_part(settings, runs):
    """The checker finds the page's own words: an English page fails; its failure is read in English."""
    at = open_page("runs", run=str(runs["failed"]))
    assert any("All runs" in line for line in english(at))
    assert "Out of memory: try batch size 4 or LoRA." in at.error[0].value
