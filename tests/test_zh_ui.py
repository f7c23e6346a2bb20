"""ui.py's words and charts, the glossary and run labels (core.results.describe) and the tables (core.results.tables)
in Chinese (#28): every glossary line and setting name has its Chinese, charts have Chinese titles, legends and hover
text in a font stack with CJK fonts, a run's settings table and the history table's headers follow the language while
code still finds its columns by their English names."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import ui
from core import i18n
from core.i18n import _
from core.jobs.runs import create_comparison, create_run
from core.results import describe, tables
from core.store.db import Dataset, Metric, Run, RunStatus, session_factory, utcnow
from core.training import evaluate, models
from core.training.config import TrainConfig
from tests.english import _figure_strings, open_in_chinese, texts, words_left
from tests.helpers import ZH, store, zh_folder

CJK = re.compile(r"[\u4e00-\u9fff]")
CLASSES = list(ZH)
# Names that stay as they are in the Chinese (the term table keeps LoRA alpha and dropout; BERT's layer names are code)
NAMES = {"alpha", "dropout", "query", "key", "value", "UTC"}


def left(strings: list[str], kept: set[str] = NAMES) -> list[str]:
    """The English words left in these strings, outside the names that stay."""
    return [word for text in strings for word in words_left(text, kept)]


@pytest.fixture(autouse=True)
def no_worker(monkeypatch):
    monkeypatch.setattr("core.jobs.worker.ensure_worker", lambda settings: False)


@pytest.fixture
def pair(settings, tmp_path) -> list[int]:
    """A completed full-vs-LoRA pair on Chinese news titles, with curves and a test confusion matrix."""
    dataset = store(settings, zh_folder(tmp_path), "新闻标题")
    with session_factory(settings.db_url)() as s:
        dataset = s.get(Dataset, dataset.id)
        _pair, runs = create_comparison(s, dataset, models.BUNDLED, TrainConfig(epochs=2, batch_size=8))
        truth = np.array([i % 3 for i in range(6)])
        for run, wrong in zip(runs, (1, 2)):
            probs = np.array(
                [[0.8 if c == (y + (i < wrong)) % 3 else 0.1 for c in range(3)] for i, y in enumerate(truth)]
            )
            run.test_metrics = evaluate.test_metrics(truth, probs, CLASSES)
            run.status, run.total_steps, run.step = RunStatus.COMPLETED.value, 40, 40
            run.started_at = run.finished_at = utcnow() - timedelta(seconds=30)
            run.train_seconds, run.trainable_params, run.peak_memory_mb = 12.5, 110_000, 900.0
            run.load_average, run.cpu_percent, run.cpu_count, run.device = 3.0, 100.0, 4, "cpu"
            for step in range(10, 41, 10):
                s.add(Metric(run_id=run.id, step=step, epoch=step / 20, name="train_loss", value=1.2 - step / 50))
                s.add(Metric(run_id=run.id, step=step, epoch=step / 20, name="eval_loss", value=1.1 - step / 60))
                s.add(Metric(run_id=run.id, step=step, epoch=step / 20, name="eval_accuracy", value=0.3 + step / 80))
                s.add(Metric(run_id=run.id, step=step, epoch=step / 20, name="eval_f1_macro", value=0.2 + step / 80))
        create_run(s, dataset, models.BUNDLED, TrainConfig(epochs=2, batch_size=8))  # one waiting behind the pair
        s.commit()
        return [r.id for r in runs]


def runs_of(settings, ids: list[int]):
    with session_factory(settings.db_url)() as s:
        return tables.runs_by_id(s, ids)


def fonts_have_cjk(fig) -> bool:
    return fig.layout.font.family == ui.TEXT_FONTS and "Noto Sans CJK SC" in fig.layout.font.family


def test_every_glossary_line_and_setting_name_has_its_chinese():
    with i18n.speaking("zh"):
        for term, line in describe.GLOSSARY.items():
            chinese = _(line)
            assert chinese != line and CJK.search(chinese), term
            assert re.match(r"^[^：]+：", chinese), f"{term}: a line starts with its term, as in English"
            assert not left([chinese], NAMES | {"r"}), (term, chinese)
            assert " %" not in chinese, "no space before % in Chinese"
        for field, (name, term) in describe.SETTINGS.items():
            assert _(name) != name and CJK.search(_(name)), field
        assert ui.glossary("dev set", "test set").startswith("验证集：")
    assert ui.glossary("dev set").startswith("Dev set: "), "English as it was"


def test_a_runs_settings_table_in_chinese(settings, pair):
    full, lora = runs_of(settings, pair)
    with i18n.speaking("zh"):
        table = describe.settings_frame(lora)
        assert list(table.columns) == ["设置", "值", "含义"]
        assert all(CJK.search(name) for name in table["设置"]), table
        assert all(CJK.search(meaning) and not meaning.startswith(("：", ":")) for meaning in table["含义"])
        assert "预热" in set(table["设置"]) and "LoRA 秩" in set(table["设置"])
        warmup = table.set_index("设置").loc["预热", "值"]
        assert warmup.endswith("%") and not warmup.endswith(" %"), warmup
        assert not left([str(c) for c in table.columns] + table.astype(str).to_numpy().ravel().tolist())
    english = describe.settings_frame(full)
    assert list(english.columns) == ["setting", "value", "what it means"]
    assert english["setting"].iloc[0] == "Epochs" and english["value"].str.endswith(" %").any()


def test_curves_and_confusion_matrices_in_chinese(settings, pair):
    runs = runs_of(settings, pair)
    with session_factory(settings.db_url)() as s, i18n.speaking("zh"):
        frame = tables.curves_frame(s, runs)
        curves = ui.curves_figure(frame)
        for x in ui.X_AXES:
            assert CJK.search(ui.curves_figure(frame, x).layout.xaxis.title.text), x
    spec = json.loads(curves.to_json())
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    assert titles[0].startswith("损失") and titles[1].startswith("验证集得分"), titles
    assert spec["layout"]["xaxis"]["title"]["text"] == "训练步数"
    hovers = [t["hovertemplate"] for t in spec["data"]]
    assert any("训练损失" in h for h in hovers) and any("验证集准确率" in h for h in hovers), hovers
    with i18n.speaking("zh"):
        assert {t["name"] for t in spec["data"]} == {describe.run_label(r, runs) for r in runs}, "legend: the runs"
    assert fonts_have_cjk(curves)
    assert not left(_figure_strings(curves.to_json()))

    with i18n.speaking("zh"):
        confusion = ui.confusion_figure(runs[1], normalised=False, among=runs, clickable=True)
        shares = ui.confusion_figure(runs[0], normalised=True)
        difference = ui.difference_figure(np.eye(3), CLASSES, ("#1 全量", "#2 LoRA"), mean=True)
        per_class = ui.per_class_f1_figure(pd.DataFrame({r.id: [0.5, 0.6, 0.7] for r in runs}, index=CLASSES), runs)
    for fig in (confusion, shares, difference):
        assert fig.layout.xaxis.title.text == "预测类别" and fig.layout.yaxis.title.text == "真实类别"
        assert list(fig.data[0].x) == CLASSES, "the class names as the data has them"
        assert fig.data[0].hovertemplate.startswith("真实 %{y}，预测 %{x}："), fig.data[0].hovertemplate
        assert fonts_have_cjk(fig)
    assert "点击列出这些文本" in confusion.data[1].hovertemplate
    assert "随机种子" in difference.layout.title.subtitle.text
    assert fonts_have_cjk(per_class) and CJK.search(per_class.layout.title.text)
    for fig in (confusion, shares, difference, per_class):
        assert not left(_figure_strings(fig.to_json())), fig.layout.title

    english = ui.confusion_figure(runs[1], normalised=False)
    assert english.data[0].hovertemplate == "true %{y}, predicted %{x}: %{text}<extra></extra>"
    assert english.layout.xaxis.title.text == "predicted" and fonts_have_cjk(english), "Chinese class names too"


def test_study_charts_in_chinese():
    def point(method, value, accuracy, **more):
        score = {"accuracy": accuracy}
        return {
            "method": method,
            "value": value,
            "dev": score,
            "test": score,
            "dev_band": (accuracy - 0.02, accuracy + 0.02),
            "test_band": (accuracy - 0.02, accuracy + 0.02),
            "completed": 3,
            "default": value == 1e-4,
            "stopped_early": value == 1e-3,
            "trainable_params": 1000 * value if method == "lora" else 22_000_000,
            **more,
        }

    rates = [point(m, v, a) for m in ("full", "lora") for v, a in ((1e-5, 0.8), (1e-4, 0.85), (1e-3, 0.6))]
    sizes = [point(m, v, a) for m in ("full", "lora") for v, a in ((100, 0.6), (1000, 0.8))]
    ranks = [point("full", 0, 0.9)] + [point("lora", r, 0.8 + r / 100) for r in (4, 8)]
    chosen = {"lora": {**point("lora", 1e-4, 0.85), "dev_band": (0.83, 0.87)}}
    with i18n.speaking("zh"):
        figures = [
            ui.study_lr_figure(rates, {"lora": {"value": 1e-4}}, chosen),
            ui.study_size_figure(sizes, [(1000, "LoRA ahead")]),
            ui.study_rank_figure(ranks),
        ]
    for fig in figures:
        assert CJK.search(fig.layout.title.text) and CJK.search(fig.layout.xaxis.title.text), fig.layout.title
        assert fonts_have_cjk(fig)
        assert not left(_figure_strings(fig.to_json()), NAMES), fig.layout.title.text


def test_tables_headers_and_words_follow_the_language(settings, pair):
    with session_factory(settings.db_url)() as s, i18n.speaking("zh"):
        history = tables.history_frame(s)
        assert list(history.columns) == tables.HISTORY_COLUMNS, "code finds the columns by their English names"
        assert set(history["status"]) == {"已完成", "排队中"}
        assert any(p.startswith("与 #") for p in history["pair"])
        shown = tables.headers(history)
        assert "状态" in shown.columns and "测试集准确率" in shown.columns and "创建时间 (UTC)" in shown.columns
        assert shown.to_csv(index=False).splitlines()[0].startswith("运行,状态,方法"), "downloads: the same headers"
        datasets = tables.headers(tables.datasets_frame(s))
        waiting = tables.queue_text(s, s.get(Run, max(history["run"])))
        machine = describe.machine_text(s.get(Run, pair[0]))
        note = describe.times_note(tables.runs_by_id(s, pair))
        labels = [describe.run_label(r) for r in tables.runs_by_id(s, pair)]
    assert not left([str(c) for c in shown.columns] + [str(c) for c in datasets.columns])
    assert waiting.startswith("正在等待") and not left([waiting])
    assert machine.startswith("繁忙") and not left([machine], NAMES | {"CPU"})
    assert note.startswith("这些时间") and not left([note], NAMES | {"CPU", "CPUs", "cpu"})
    assert all("随机种子" in label and "轮" in label for label in labels), labels
    assert not left(labels), labels
    with session_factory(settings.db_url)() as s:
        english = tables.headers(tables.history_frame(s))
    assert list(english.columns) == tables.HISTORY_COLUMNS and "completed" in set(english["status"])


def test_the_runs_page_in_chinese_draws_these_charts_and_tables_in_chinese(settings, pair):
    at = open_in_chinese("runs", run=str(pair[1]))
    assert not at.exception
    charts = at.get("plotly_chart")
    assert charts, "the pair's curves"
    mine = [s for chart in charts for s in _figure_strings(chart.proto.spec)]
    assert any("训练损失" in s for s in mine)
    assert all(json.loads(c.proto.spec)["layout"]["font"]["family"] == ui.TEXT_FONTS for c in charts)
    assert not left(mine)
    settings_table = next(t.value for t in at.dataframe if "含义" in t.value.columns)
    assert not left(settings_table.astype(str).to_numpy().ravel().tolist())
    glossary = [t for t in texts(at) if t.startswith("验证集：")]
    assert glossary and not left(glossary)


def test_a_table_is_shown_with_its_headers_in_chinese_and_its_column_settings_kept():
    def page():
        import pandas as pd
        import streamlit as st

        import ui
        from core import i18n

        i18n.set_language("zh")
        frame = pd.DataFrame({"status": ["queued"], "machine while training": ["quiet"], "run 7": [1]})
        ui.dataframe(frame, {"status": st.column_config.TextColumn(help="说明")}, key="zh_ui_table")

    at = AppTest.from_function(page, default_timeout=60).run()
    assert not at.exception
    shown = at.dataframe[0]
    assert list(shown.value.columns) == ["状态", "训练时的机器", "run 7"], "a name no table marks stays as it is"
    config = json.loads(shown.proto.columns)
    assert config["状态"]["help"] == "说明" and config["训练时的机器"]["width"] > 7 * len("训练时的机器") + 32
