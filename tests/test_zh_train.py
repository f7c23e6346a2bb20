"""The Train page in Chinese (#28): drawn by AppTest at each state that matters, with no English word left but the
names that stay (tests.english) and the words of model ids."""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest

from core import i18n
from core.jobs import cost
from core.training import coverage, models
from core.training.config import TrainConfig, problems_of
from tests.english import english_left, open_in_chinese, words_left
from tests.helpers import store, zh_folder
from tests.test_pages import no_worker  # noqa: F401 - an autouse fixture: no background worker from a test

# Names that stay, which tests.english.KEPT does not know yet: the term table's "LoRA alpha（缩放系数）" and
# "LoRA dropout（随机丢弃比例）", and the words of model ids without an owner/ (the checker skips those with one).
MODEL_IDS = (models.BUNDLED, *coverage.READS_CHINESE, *coverage.READS_MANY)
KEPT_HERE = {"alpha", "dropout", *(w for m in MODEL_IDS for w in re.findall(r"[A-Za-z]+", m.split("/")[-1]))}


def left(at: AppTest) -> list[str]:
    """English on the page, the settings' help (the glossary's lines) included."""
    return english_left(at, kept=KEPT_HERE)


@pytest.fixture
def chinese():
    """The test's own thread speaks Chinese too: AppTest formats a chosen option with the widget's format_func (the
    catalogue) in the test's thread to find it among the options shown."""
    with i18n.speaking("zh"):
        yield


def captions_left(at: AppTest, key: str) -> list[str]:
    """English in a radio's captions (each choice's line under it, with its time here), on their own."""
    return [w for c in at.radio(key=key).proto.captions for w in words_left(c, KEPT_HERE)]


def train_page(folder: str | None = None) -> AppTest:
    at = open_in_chinese("train", timeout=120)
    if folder:
        at.radio(key="train_model_kind").set_value("A model folder on this machine").run()
        at.text_input(key="train_model_name").set_value(folder).run()
    return at


def test_the_train_page_with_no_dataset_is_chinese(settings, chinese):
    at = train_page()
    assert not at.exception
    assert at.title[0].value == "训练"
    assert "还没有数据集" in at.info[0].value
    assert left(at) == []


def test_the_train_page_of_a_chinese_dataset_with_its_estimate_is_chinese(settings, chinese, tmp_path, tiny_model):
    store(settings, zh_folder(tmp_path), name="新闻标题")
    at = train_page(tiny_model)
    assert not at.exception and not at.error
    assert at.radio(key="train_model_kind").value == "A model folder on this machine", "the value stays English"
    assert at.radio(key="train_preset").options == ["快速演示", "同原文实验"]
    assert at.metric[0].label == "全量微调训练" and at.metric[1].label == "LoRA 微调训练"
    assert "个参数" in at.metric[0].value
    assert any("不认识你的文本中的" in w.value for w in at.warning), "the tiny model knows no Chinese character"
    assert left(at) == []
    assert captions_left(at, "train_preset") == []

    at.number_input(key="train_batch_size").set_value(4096).run()  # 24 texts: one update an epoch
    assert any("更新次数太少" in w.value for w in at.warning)
    assert left(at) == []


def test_a_refused_setting_is_said_in_chinese(settings, chinese, tmp_path, tiny_model):
    store(settings, zh_folder(tmp_path), name="新闻标题")
    at = train_page(tiny_model)
    at.number_input(key="train_lr_lora").set_value(5.0).run()
    assert "LoRA 微调：学习率必须大于 0 且小于 1" in at.error[0].value
    assert at.button(key="train_pair").disabled
    assert left(at) == []


def test_the_study_form_with_its_estimate_is_chinese(settings, chinese, tmp_path, tiny_model):
    store(settings, zh_folder(tmp_path), name="新闻标题")
    at = train_page(tiny_model)
    at.radio(key="train_what").set_value("study").run()
    assert not at.exception and not at.error
    assert any("这个实验研究依次训练" in c.value for c in at.caption), "the study's time, in Chinese"
    assert left(at) == []
    assert captions_left(at, "train_study_vary") == []
    at.radio(key="train_study_vary").set_value("lora_rank").run()
    assert left(at) == []


def test_english_stays_as_it_was():
    """The messages of core this part owns read as before in English, and in Chinese through the catalogue."""
    bad = TrainConfig(method="lora", learning_rate=5.0)
    few = TrainConfig(batch_size=4096, epochs=1)
    assert problems_of([bad]) == [
        "Learning rate must be more than 0 and less than 1 (try 5e-05 for full, 0.001 for LoRA)."
    ]
    assert cost.few_updates_text(few, 24) == (
        "Very few updates: batch size 4,096 on 24 training texts corrects the model once an epoch, 1 in all over 1 "
        "epoch, too few for it to learn much. Batch size 2 gives 12 updates."
    )
    with i18n.speaking("zh"):
        assert problems_of([bad, TrainConfig(method="full", learning_rate=5.0)])[0].startswith("学习率必须")
        assert cost.few_updates_text(few, 24).startswith(
            "更新次数太少：批大小 4,096、24 条训练文本，每轮只更新模型 1 次"
        )
