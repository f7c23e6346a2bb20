"""How much of a dataset the model knows, said before training (Data, Train, the command line); and a typed text in
another script, or a weak answer, said on Predict."""

from __future__ import annotations

import dataclasses
import json
import random

import pandas as pd
import pytest

from core import words
from core.data import checking, datasets, reading
from core.training import coverage, models, predict
from tests.conftest import CHINESE, write_csv
from tests.helpers import ZH, save_bert, train_now, zh_folder
from tests.test_cli import cli, split_args
from tests.test_pages import open_page, store, texts, upload


@pytest.fixture(scope="module")
def bundled():
    from core.store.settings import get_settings

    return models.load_tokenizer(models.BUNDLED, get_settings())


def demo_texts(split: str) -> pd.Series:
    return pd.read_csv(datasets.DEMO_DIR / f"{split}.csv", dtype=str, keep_default_na=False)["0"]


def test_the_bundled_model_does_not_know_most_of_a_chinese_text(settings, bundled):
    splits = {split: pd.Series([t for ts in ZH.values() for t in ts]) for split in reading.SPLITS}
    zh = coverage.measure(bundled, splits, models.BUNDLED, settings)
    tokens = [token for texts in ZH.values() for t in texts for token in bundled.tokenize(t)]  # no [CLS] / [SEP]
    assert zh.unknown_token_share == pytest.approx(tokens.count("[UNK]") / len(tokens))
    assert 0.5 < zh.unknown_token_share < 0.9, "most Chinese characters are unknown to the English model"
    assert zh.poor and zh.script == "Chinese characters"
    warning = zh.warning()
    assert f"does not know {words.percent(zh.unknown_token_share)} of your text" in warning
    assert "results will be poor" in warning.lower() and "Chinese or multilingual model" in warning
    assert "Needs the internet once" in warning and "bert-base-chinese" in warning
    assert "No model on this machine reads it better" in warning

    english = coverage.measure(bundled, {s: demo_texts(s) for s in reading.SPLITS}, models.BUNDLED, settings)
    assert english.unknown_token_share < 0.01 and not english.poor and english.warning() is None
    assert english.looked["train"] == checking.LENGTH_SAMPLE, "a large split is measured on an evenly spread sample"


def test_a_model_on_this_machine_that_reads_the_text_is_named(settings, bundled, tmp_path):
    from transformers import BertTokenizer

    chars = sorted({ch for ts in ZH.values() for t in ts for ch in t})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]
    root = tmp_path / "models"
    save_bert(root / "tiny-chinese", BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}))
    here = dataclasses.replace(settings, model_roots=(root,))
    assert coverage.local_models(here)[:2] == [models.BUNDLED, str(root / "tiny-chinese")]
    splits = {split: pd.Series(ZH["体育"]) for split in reading.SPLITS}
    warning = coverage.measure(bundled, splits, models.BUNDLED, here).warning()
    assert f"On this machine (no internet needed): {root / 'tiny-chinese'} (0.0 % unknown)" in warning
    # The folder's own coverage is fine, and the bundled model, which does not read it, is not offered.
    tiny = models.load_tokenizer(str(root / "tiny-chinese"), here)
    assert coverage.measure(tiny, splits, str(root / "tiny-chinese"), here).warning() is None


def test_models_in_the_local_hugging_face_cache_are_offered_and_never_downloaded(settings, monkeypatch):
    import huggingface_hub

    repos = [
        dataclasses.make_dataclass("Repo", ["repo_id", "repo_type"])(name, kind)
        for name, kind in (("someone/chinese-bert", "model"), ("someone/news", "dataset"))
    ]
    monkeypatch.setattr(huggingface_hub, "scan_cache_dir", lambda: type("Cache", (), {"repos": repos})())
    here = dataclasses.replace(settings, model_roots=())
    assert coverage.local_models(here) == [models.BUNDLED, "someone/chinese-bert"], "models only, not data sets"
    monkeypatch.setattr(models, "check_hub_model", lambda *a: pytest.fail("asked the hub"))
    # Its files are not really in the cache: it is skipped, and nothing is asked online.
    assert coverage.on_this_machine(here, ["国足"], but=models.BUNDLED) == {}


def test_a_text_in_another_script_than_the_training_data_is_told():
    chinese, english = coverage.scripts(t for ts in ZH.values() for t in ts), coverage.scripts(demo_texts("train"))
    assert coverage.main_script(chinese) == "Chinese characters" and coverage.main_script(english) == "Latin letters"
    warning = coverage.other_script("Chelsea win the cup final", chinese)
    assert "written in Latin letters" in warning and "0.0 %" in warning and "mostly Chinese characters" in warning
    assert "Chinese characters" in coverage.other_script("央行宣布下调利率", english)
    assert coverage.other_script("国足主帅谈备战 NBA", chinese) is None, "mostly the training data's script"
    assert coverage.other_script("ＮＢＡ ｆｉｎａｌ", english) is None, "full-width letters are Latin letters"
    assert coverage.other_script("2024: 3-1", chinese) is None, "no letters: nothing to tell"


def test_a_weak_answer_is_uncertain_relative_to_chance():
    assert predict.sure_from(10) == pytest.approx(0.55)  # the 17.8 % on 10 classes is far below
    assert predict.sure_from(2) == pytest.approx(0.75)


def test_data_and_train_pages_say_the_coverage_before_anything_is_queued(settings, tmp_path, csv_folder):
    folder = zh_folder(tmp_path)
    at = upload(open_page("data"), folder)
    assert not at.exception and not at.error
    warning = next(w.value for w in at.warning if "does not know" in w.value)
    assert "all-MiniLM-L6-v2 (bundled, offline) does not know" in warning and "bert-base-chinese" in warning
    at.button(key="data_save").click().run()  # a warning, not a refusal
    assert "Saved '" in texts(at.success)

    at = open_page("train")
    assert not at.exception
    assert "does not know" in texts(at.warning) and "Needs the internet once" in texts(at.warning)
    assert not at.button(key="train_pair").disabled, "said before queuing; the choice stays the user's"

    english = store(settings, csv_folder, "english")
    at = open_page("train")
    at.selectbox(key="train_dataset").set_value(english.id).run()
    assert not at.exception and "does not know" not in texts(at.warning)


def test_cli_estimate_carries_the_unknown_token_share_and_says_it_first(settings, tmp_path):
    out = cli("estimate", *split_args(zh_folder(tmp_path)), "--pair", "--json", settings=settings)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert {m: 0.5 < e["unknown_token_share"] < 0.9 for m, e in result.items()} == {"full": True, "lora": True}
    assert "does not know" in out.stderr and "bert-base-chinese" in out.stderr


def test_predict_warns_on_a_text_in_another_script_and_draws_a_weak_answer_as_uncertain(
    settings, tmp_path, tiny_model
):
    rng, folder = random.Random(0), tmp_path / "zh-tiny"
    folder.mkdir()
    for split, first, n in (("train", 0, 48), ("dev", 100, 12), ("test", 200, 12)):  # in the tiny model's vocabulary
        rows = [("".join(rng.sample(CHINESE[i % 3], 2)) + f"新闻{i}", i % 3) for i in range(first, first + n)]
        write_csv(folder / f"{split}.csv", rows)
    dataset = store(settings, folder, "中文", class_names=["体育", "财经", "科技"])
    train_now(settings, dataset, tiny_model, "full", epochs=1, batch_size=16, evals_per_epoch=1, max_length=32)

    at = open_page("predict")
    at.text_area(key="predict_text").set_value("the new team cup match").run()
    assert not at.exception
    assert "written in Latin letters" in texts(at.warning), "the tiny model knows these words: only the script tells"
    (metric,) = at.metric
    bars = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    top = float(metric.delta.split(" %")[0]) / 100  # "34.1 % probability · guessing: 33.3 %"
    assert top < predict.sure_from(3), f"one epoch of a tiny model is not sure ({top:.2f})"
    assert metric.label == "Uncertain: its best guess", "said once, as the answer's label"
    assert "Uncertain" not in texts(at.caption) and "halfway from a blind guess" in texts(at.caption)
    assert bars["marker"]["color"] == "lightgrey"


FRENCH = "Le gouvernement annonce une baisse des impôts pour les familles"


def test_a_text_in_another_language_of_the_same_script_is_told(monkeypatch):
    english = coverage.languages(demo_texts("train"))
    assert english.most_common(1)[0][0] == "en"
    warning = coverage.other_language(FRENCH, english)
    assert "looks like French, but the run was trained on English texts" in warning and "means little" in warning
    assert "looks like German" in coverage.other_language("Die Regierung plant neue Steuern für Unternehmen", english)
    assert coverage.other_language("Stocks rally as the central bank cuts interest rates", english) is None
    assert coverage.other_language("Le PSG bat Lyon", english) is None, "too short to tell its language"
    assert coverage.other_language(FRENCH, coverage.Counter()) is None, "a run with no texts: nothing to compare"
    false_alarms = [t for t in demo_texts("test") if coverage.other_language(t, english)]
    assert false_alarms == [], "English news titles are never told as another language"
    monkeypatch.setattr(coverage, "_identifier", lambda: 1 / 0)
    assert coverage.other_language(FRENCH, english) is None, "a detector that fails tells nothing"
    assert coverage.languages(["a text"]) == coverage.Counter()


def test_predict_warns_on_a_text_in_another_language_of_the_same_script(settings, csv_folder, tiny_model):
    dataset = store(settings, csv_folder, "english")
    train_now(settings, dataset, tiny_model, "full", epochs=1, batch_size=16, evals_per_epoch=1, max_length=32)

    at = open_page("predict")
    at.text_area(key="predict_text").set_value(FRENCH).run()
    assert not at.exception
    assert "looks like French, but the run was trained on English texts" in texts(at.warning)
    at.text_area(key="predict_text").set_value("the new team wins the cup match after a big week").run()
    assert not at.exception and "looks like" not in texts(at.warning) and "means little" not in texts(at.warning)
    at.text_area(key="predict_text").set_value("央行宣布下调利率，股票市场大涨").run()
    warnings = [w.value for w in at.warning if "means little" in w.value]
    assert len(warnings) == 1 and "written in Chinese characters" in warnings[0], "one warning, of the script"
