"""The Start and Data pages, and the data problems core.data reports, in Chinese: no English word of theirs left on
screen (tests.english), at each state that matters: no data, a Chinese CSV with a problem in it, the same CSV fixed,
a stored dataset and its deletion."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import i18n
from core.data import checking, reading
from core.jobs.runs import create_comparison
from core.results import tables
from core.store.db import Run, RunStatus, session_factory
from core.training import models
from core.training.config import TrainConfig
from tests.english import english_left, open_in_chinese

# The switch names itself in both languages on purpose: whoever cannot read the page still finds it. BBC: a name.
KEPT = {"Language", "English", "BBC"}
CLASSES = ("体育", "财经", "科技")
WORDS = {
    "体育": ["足球", "比赛", "球队", "冠军"],
    "财经": ["银行", "股票", "市场", "利率"],
    "科技": ["手机", "软件", "芯片", "网络"],
}


def english(at: AppTest) -> list[str]:
    """English left on the page, less the names kept here."""
    return english_left(at, kept=KEPT)


def rows(n: int, start: int = 0) -> list[tuple[str, str]]:
    out = []
    for i in range(start, start + n):
        label = CLASSES[i % 3]
        a, b = WORDS[label][i % 4], WORDS[label][(i + 1) % 4]
        out.append((f"{a}{b}新闻第{i}条", label))
    return out


def write(path: Path, data, header=("标题", "类别")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(data)
    return path


@pytest.fixture(autouse=True)
def no_worker(monkeypatch):
    monkeypatch.setattr("core.jobs.worker.ensure_worker", lambda settings: False)


@pytest.fixture
def chinese_csvs(tmp_path) -> Path:
    folder = tmp_path / "新闻"
    folder.mkdir()
    write(folder / "train.csv", rows(60))
    write(folder / "dev.csv", rows(15, 60))
    write(folder / "test.csv", rows(15, 75))
    return folder


def upload(at: AppTest, folder: Path) -> AppTest:
    for split in reading.SPLITS:
        path = folder / f"{split}.csv"
        at.file_uploader(key=f"data_{split}_file").set_value((path.name, path.read_bytes(), "text/csv"))
    return at.run()


def shown(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_start_in_chinese_with_no_data_and_with_a_dataset(settings):
    at = open_in_chinese("home")
    assert not at.exception
    assert "添加一个数据集" in shown(at.info)
    assert english(at) == []
    at.button(key="home_add_demo").click().run()
    assert not at.exception
    assert "快速演示" in shown(at.info), "with a dataset stored, the next step is training"
    assert english(at) == []
    with session_factory(settings.db_url)() as s:
        assert [d.name for d in tables.list_datasets(s)] == ["BBC 新闻标题（示例）"], "named in its adder's language"
        __, pair = create_comparison(s, tables.list_datasets(s)[0], models.BUNDLED, TrainConfig(epochs=1))
    at.run()
    assert "有 2 个运行正在训练或排队" in shown(at.info)
    assert english(at) == []
    with session_factory(settings.db_url)() as s:
        for run in pair:
            s.get(Run, run.id).status = RunStatus.COMPLETED.value
        s.commit()
    at.run()
    assert "已有 2 个运行完成" in shown(at.success)
    assert english(at) == []


def test_data_in_chinese_no_data_a_problem_then_fixed_stored_and_deleted(settings, chinese_csvs):
    at = open_in_chinese("data")
    assert not at.exception
    assert "还没有保存任何数据集" in shown(at.info)
    assert english(at) == []
    # The radio's value stays English while its options are shown in Chinese: AppTest formats the value with the
    # page's format_func in this thread, so this thread reads Chinese too
    with i18n.speaking("zh"):
        at.radio(key="data_source").set_value("Upload one file, split for me").run()
        assert not at.exception
        assert at.radio(key="data_source").options[1] == "上传一个文件，帮我划分"
        assert english(at) == []
        at.radio(key="data_source").set_value("Upload my CSV files").run()
        chinese_upload_check_save_and_delete(at, settings, chinese_csvs)


def chinese_upload_check_save_and_delete(at: AppTest, settings, chinese_csvs: Path) -> None:

    broken = chinese_csvs.parent / "坏"
    broken.mkdir()
    write(broken / "train.csv", [*rows(59), ("", "体育")])  # row 61 (the header is row 1): an empty text
    for split in ("dev", "test"):
        (broken / f"{split}.csv").write_bytes((chinese_csvs / f"{split}.csv").read_bytes())
    upload(at, broken)
    assert not at.exception
    errors = shown(at.error)
    assert "train.csv 第 61 行，“标题”列：文本为空" in errors, errors
    assert english(at) == []

    upload(at, chinese_csvs)
    assert not at.exception and not at.error
    assert at.selectbox(key="data_text_column").value == "标题"
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [trace["name"] for trace in chart["data"]] == ["训练集", "验证集", "测试集"]
    assert english(at) == []
    at.button(key="data_save").click().run()
    assert "已保存" in shown(at.success)
    assert english(at) == []

    with session_factory(settings.db_url)() as s:
        stored = tables.list_datasets(s)[0]
    assert stored.name == "我的数据集", "the name suggested for train.csv, in the reader's language"
    at.selectbox(key="data_delete_choice").set_value(stored.id).run()
    assert english(at) == []
    at.button(key="data_delete").click().run()
    assert "永久删除" in shown(at.warning)
    assert english(at) == []
    at.button(key="data_delete_yes").click().run()
    assert not at.exception
    assert "已删除" in shown(at.success)
    assert english(at) == []


def test_a_data_problem_names_file_row_and_column_in_chinese(settings, tmp_path):
    write(tmp_path / "train.csv", [*rows(30), ("股票新闻", "")])
    write(tmp_path / "dev.csv", [*rows(9), ("", "体育")])
    write(tmp_path / "test.csv", [*rows(9), ("手机新闻", "天气")])
    with i18n.speaking("zh"):
        check = checking.check_dataset(reading.files_from_folder(tmp_path), settings)
        split = checking.check_one_file(reading.SplitFile("全部.csv", b"0,1\n"), settings, shares=(100, 0, 0))
    assert "train.csv 第 32 行，“类别”列：缺少标签。请给每一行填上标签，或删除这一行。" in check.errors
    assert "dev.csv 第 11 行，“标题”列：文本为空。请填写文本或删除这一行。" in check.errors
    assert split.errors == ["请给训练集、验证集和测试集各设一个 1% 到 99% 之间的比例。"]
    with i18n.speaking("en"):  # the same check in English, word for word as before
        check = checking.check_dataset(reading.files_from_folder(tmp_path), settings)
    assert "train.csv row 32, column '类别': the label is missing. Give every row a label or delete the row." in (
        check.errors
    )


def test_row_lists_splits_and_file_errors_read_as_chinese_sentences(settings, tmp_path):
    import pandas as pd

    with i18n.speaking("zh"):
        assert checking.rows_of(pd.Index(range(8))) == "第 2、3、4、5、6 行等（另有 3 行）"
        assert checking.rows_of(pd.Index([0]), plain=True) == "第 1 行"
        assert checking.splits_text(["train", "dev", "test"]) == "训练集、验证集和测试集"
        with pytest.raises(reading.DataError) as e:
            reading.read_table(reading.SplitFile("一列.csv", "标题\n你好\n".encode()), settings)
    assert e.value.problems == ["一列.csv 只有一列（标题）。数据集需要一列文本和一列标签，用英文逗号分隔。"]
    assert checking.rows_of(pd.Index(range(8))) == "rows 2, 3, 4, 5, 6 and 3 more"
