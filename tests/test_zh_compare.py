"""Compare in Chinese (#28): a finished pair and its verdict, a comparison of three seeds, a learning-rate study's
chart and its two verdicts, drawn by AppTest with no English left of this page's own words; and a verdict's
sentences in Chinese with their numbers in place. Runs are inserted as rows (tests/comparing.py), never trained."""

from __future__ import annotations

import numpy as np
import pytest

from core import i18n
from core.data import checking, datasets, reading
from core.results import verdict
from core.store.db import session_factory
from tests.comparing import comparison
from tests.conftest import write_csv
from tests.english import english_left, open_in_chinese
from tests.test_pages import no_worker, texts  # noqa: F401 - no_worker: an autouse fixture (no worker started)
from tests.test_study_pages import finished_lr_study

CLASSES = ["体育", "财经", "科技"]


def store_chinese(settings, folder, n_test: int):
    """A dataset of Chinese texts and class names whose test split has n_test texts (labels 0, 1, 2 in turn)."""
    folder.mkdir(exist_ok=True)
    for split, n in (("train", 30), ("dev", 9), ("test", n_test)):
        write_csv(folder / f"{split}.csv", [(f"第{i}条{split}新闻标题", i % 3) for i in range(n)])
    check = checking.check_dataset(reading.files_from_folder(folder), settings, class_names=CLASSES)
    assert check.ok, check.errors
    with session_factory(settings.db_url)() as s:
        return datasets.save_dataset(s, settings, check, "新闻标题")


def left(at) -> list[str]:
    """English left on the page, less the data's split names and Streamlit's badge markup (":green-badge[...]")."""
    return english_left(at, kept={"train", "dev", "test", "green", "blue", "orange", "badge"})


def test_a_finished_pair_and_its_verdict_in_chinese(settings, tmp_path):
    dataset = store_chinese(settings, tmp_path / "d", 90)
    group, ids = comparison(settings, dataset, [(set(range(30)), set(range(5)))])
    at = open_in_chinese("compare")
    assert not at.exception and not at.error
    assert at.selectbox(key="compare_what").value == group
    card = at.markdown[0].value
    assert "badge[LoRA胜出]" in card
    assert "**测试集准确率：全量微调 66.7%，LoRA 94.4%。**" in card, "both accuracies, their numbers in place"
    assert "LoRA更好，高出 27.8 个百分点（95% 置信区间" in at.markdown[1].value
    assert "与全量微调相比，LoRA的训练时间是它的 0.50 倍" in texts(at.markdown)
    assert left(at) == [], "\n".join(left(at))
    at.session_state["compare_cell"] = (ids[0], 0, 1)  # a click on a confusion-matrix cell: its texts listed
    with i18n.speaking("zh"):  # AppTest writes the choices back by their labels, in the test's own thread
        at.run()
    assert not at.exception
    assert "真实为 体育，预测为 财经" in texts(at.markdown)
    assert left(at) == [], "\n".join(left(at))


def test_a_comparison_of_three_seeds_in_chinese(settings, tmp_path):
    dataset = store_chinese(settings, tmp_path / "d", 90)
    wrong = [(set(range(20)), set(range(10))), (set(range(15)), set(range(14))), (set(range(12)), set(range(18)))]
    group, _ids = comparison(settings, dataset, wrong)
    at = open_in_chinese("compare", group=str(group))
    assert not at.exception and not at.error
    assert "3 个随机种子中，LoRA在 2 个上更好，全量微调在 1 个上更好" in texts(at.markdown)
    seeds = next(d.value for d in at.dataframe if "随机种子" in d.value.columns)
    assert list(seeds.columns) == ["随机种子", "运行数", "全量微调", "LoRA", "差值", "宏平均 F1 差值"]
    assert left(at) == [], "\n".join(left(at))


@pytest.fixture
def lr_study(settings, tmp_path) -> int:
    """tests/test_study_pages.py's learning-rate study (its two verdicts disagree), on Chinese news titles."""
    return finished_lr_study(settings, store_chinese(settings, tmp_path / "d", 600))


def test_a_learning_rate_study_its_chart_and_its_two_verdicts_in_chinese(settings, lr_study):
    at = open_in_chinese("compare", study=str(lr_study))
    assert not at.exception and not at.error
    assert "两个结论不一致：用默认学习率时，全量微调高出 9.2 个百分点胜出" in texts(at.warning)
    cards = texts(at.markdown)
    assert "badge[全量微调胜出]" in cards and "badge[没有差别]" in cards, "both verdicts, side by side"
    assert "全部 10 次运行都已完成。" in texts(at.caption)
    assert "全量微调最好的学习率 0.0001 是试过的最高值" in texts(at.info)
    assert left(at) == [], "\n".join(left(at))


def test_a_verdict_read_aloud_in_chinese_keeps_its_numbers():
    y = np.arange(90) % 3
    full = np.where(np.arange(90) < 30, (y + 1) % 3, y)
    lora = np.where(np.arange(90) < 5, (y + 1) % 3, y)
    result = verdict.compare_predictions(y, full, lora, 3, resamples=2000)
    english = result.lines()
    with i18n.speaking("zh"):
        lines = result.lines()
        sentence = result.sentence()
    m = result.accuracy
    assert lines[0] == "测试集准确率：全量微调 66.7%，LoRA 94.4%。"
    assert lines[1] == f"LoRA更好，高出 27.8 个百分点（95% 置信区间：{m.low:.1f} 到 {m.high:.1f} 个百分点）。"
    assert lines[2].startswith("可以下结论：整个置信区间都在 0 的LoRA这一边")
    assert lines[3].startswith("宏平均 F1：")
    assert sentence == "".join(lines[:3])
    assert english[0] == "Test accuracy: full fine-tuning 66.7 %, LoRA 94.4 %.", "English as before"
