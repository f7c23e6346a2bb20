"""Word-level explanations (core.training.explain): completeness, words as typed, faithfulness on the demo set (the
ERASER comprehensiveness check), full and LoRA runs alike; the command line; Predict and Compare side by side.

One database for the module: a tiny BERT trained on the demo set (the bundled model's tokenizer, cut to the word
pieces the demo texts use: the bundled model itself trains too slowly for CI), and a full and a LoRA run of the tiny
test model on short keyword texts, Chinese and English."""

from __future__ import annotations

import csv
import html
import json
import os
import random
import re
import shutil
import signal
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from core import cli
from core.data import checking, datasets, reading
from core.jobs.explainer import Explainer
from core.store.db import Prediction, open_database, session_factory
from core.store.settings import get_settings
from core.training import models
from core.training.explain import (
    APPROXIMATE_SHARE,
    MAX_STEPS,
    STEPS,
    CannotExplain,
    Explanation,
    Word,
    explain,
    merge,
    words_of,
)
from core.training.predict import load_run
from tests.conftest import make_rows, write_csv
from tests.helpers import get_run, save_bert, store, train_now
from tests.test_bench import run_bench
from tests.test_compare_page import click_cell

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "assets" / "demo"
KEYWORD_CLASSES = ["体育", "财经", "科技"]


def demo_texts(split: str) -> list[str]:
    return [row[0] for row in csv.reader(open(DEMO / f"{split}.csv", encoding="utf-8"))][1:]


def demo_tokenizer(settings):
    """The bundled model's tokenizer with only the word pieces the demo texts use: the same tokens for them, and an
    embedding table of 4,000 rows instead of 30,522."""
    from transformers import BertTokenizer

    bundled = models.load_tokenizer(models.BUNDLED, settings)
    texts = [t for split in ("train", "dev", "test") for t in demo_texts(split)]
    used = {
        t for ids in bundled(texts, add_special_tokens=False)["input_ids"] for t in bundled.convert_ids_to_tokens(ids)
    }
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(used - {"[UNK]"})]
    return BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, tiny_model):
    folder = tmp_path_factory.mktemp("explain")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LORALAB_DB_URL", f"sqlite:///{folder / 'runs.db'}")
        env.delenv("LORALAB_DATA_DIR", raising=False)
        env.setenv("LORALAB_MODEL_ROOTS", str(tmp_path_factory.getbasetemp()))
        settings = get_settings()
        open_database(settings.db_url)
        # 8 passes over the 1,465 demo titles: about 60 % test accuracy (5 classes), in seconds.
        demo_model = save_bert(folder / "demo-bert", demo_tokenizer(settings), hidden=32, layers=2, intermediate=64)
        fast = {"batch_size": 32, "evals_per_epoch": 1, "max_length": 32, "learning_rate": 5e-3}
        demo_run = train_now(settings, store(settings, DEMO, "demo"), demo_model, "full", epochs=8, **fast)
        keywords = folder / "keywords"
        keywords.mkdir()
        for split, n, seed in (("train", 60, 1), ("dev", 12, 2), ("test", 12, 3)):
            write_csv(keywords / f"{split}.csv", make_rows(n, seed, chinese=True))
        check = checking.check_dataset(reading.files_from_folder(keywords), settings, class_names=KEYWORD_CLASSES)
        with session_factory(settings.db_url)() as s:
            dataset = datasets.save_dataset(s, settings, check, "keywords")
        keyword_runs = {**fast, "batch_size": 8, "epochs": 15}  # 120 steps: the keywords are learnt, at these rates
        runs = {
            m: train_now(settings, dataset, tiny_model, m, **keyword_runs | {"learning_rate": rate})
            for m, rate in (("full", 2e-3), ("lora", 1e-2))
        }
        with session_factory(settings.db_url)() as s:  # a text the two runs disagree on, for Compare to explain
            first = s.query(Prediction).filter_by(run_id=runs["lora"], idx=0).one()
            other = s.query(Prediction).filter_by(run_id=runs["full"], idx=0).one().pred_label
            first.pred_label = (other + 1) % 3
            s.commit()
        return SimpleNamespace(
            settings=settings,
            demo_run=demo_run,
            runs=runs,
            demo=load_run(settings, get_run(settings, demo_run)),
            full=load_run(settings, get_run(settings, runs["full"])),
            lora=load_run(settings, get_run(settings, runs["lora"])),
        )


@pytest.fixture
def lab_env(lab, monkeypatch):
    """The lab's database for what reads the environment: the pages, the command line."""
    monkeypatch.setenv("LORALAB_DB_URL", lab.settings.db_url)
    monkeypatch.delenv("LORALAB_DATA_DIR", raising=False)
    return lab


def padded(predictor, text: str) -> str:
    """The text's baseline as a text: one padding token for each token the model reads."""
    pad = predictor.tokenizer.pad_token
    return " ".join([pad] * predictor.reading(text)["read"])


# --- the method ---------------------------------------------------------------------------------------------------


def test_words_are_as_typed_and_each_chinese_character_is_one():
    text = "Chelsea's striker 进球了! iPhone手机，  new"
    assert [text[s:e] for s, e in words_of(text)] == [
        "Chelsea's", "striker", "进", "球", "了", "!", "iPhone", "手", "机", "，", "new",
    ]  # fmt: skip


def test_merge_sums_each_words_pieces_and_splits_a_token_over_two_characters():
    text = "unbelievable 足球"
    spans = [(0, 2), (2, 5), (5, 12), (13, 15)]  # un ##bel ##ievable, then one token over both characters
    merged = merge(text, spans, [0.1, 0.2, 0.3, 0.4], None)
    assert [(w.text, round(w.score, 6)) for w in merged] == [("unbelievable", 0.6), ("足", 0.2), ("球", 0.2)]
    cut = merge(text, spans[:3], [0.1, 0.2, 0.3], read_until=12)
    assert [w.score for w in cut][1:] == [None, None], "words past the max length were not read"


@pytest.mark.parametrize(
    "which, text",
    [
        ("demo", "Chelsea clinch cup in extra-time after a late goal"),
        ("full", "足球新闻：球队 比赛 goal match"),
        ("lora", "银行新闻：市场 stocks bank profit"),
        ("lora", "a new phone chip 芯片"),
    ],
)
def test_the_scores_add_up_to_the_change_from_the_baseline_within_the_delta(lab, which, text):
    predictor = getattr(lab, which)
    found = explain(predictor, text)
    p_text, p_baseline = predictor.predict_proba([text, padded(predictor, text)])[
        :, predictor.classes.index(found.label)
    ]
    assert found.target == found.label and found.probability == pytest.approx(p_text, abs=1e-3)
    assert found.baseline_probability == pytest.approx(p_baseline, abs=1e-3)
    total = sum(w.score for w in found.words)
    assert abs(total - (p_text - p_baseline)) <= abs(found.delta) + 2e-3, "completeness"
    assert 0 < found.seconds < 30 and found.steps >= STEPS
    if which == "demo":  # a model trained as a real one is (the keyword runs learn their keywords very sharply)
        assert abs(found.delta) <= APPROXIMATE_SHARE * abs(found.change) and found.steps == STEPS


def test_an_approximate_explanation_is_tried_again_with_more_steps(lab):
    text = "UK economy facing 'major risks'"
    once = explain(lab.demo, text, steps=2, budget_s=0)
    assert once.approximate and once.steps == 2
    found = explain(lab.demo, text, steps=2, budget_s=60)  # time enough for every doubling, on a busy machine too
    assert found.steps > 2 and abs(found.delta) < abs(once.delta)
    assert not found.approximate or found.steps == MAX_STEPS
    assert explain(lab.demo, text, steps=2, budget_s=1e-6).steps == 2, "no second try beyond the time budget"


def test_english_word_pieces_are_merged_into_the_words_typed(lab):
    tokenizer = lab.demo.tokenizer
    pieces = 0
    for text in demo_texts("test")[:40]:
        found = explain(lab.demo, text)
        assert [w.text for w in found.words] == text.split()
        assert all(w.score is not None for w in found.words)
        pieces += sum(len(tokenizer.tokenize(word)) > 1 for word in text.split())
    assert pieces >= 5, "the texts hold words of several pieces"


def test_chinese_is_explained_per_character_and_an_unknown_character_still_shows(lab):
    tokenizer = lab.full.tokenizer
    assert tokenizer.convert_tokens_to_ids(tokenizer.tokenize("鑫")) == [tokenizer.unk_token_id]
    found = explain(lab.full, "足球新闻：鑫 goal")
    assert [w.text for w in found.words] == ["足", "球", "新", "闻", "：", "鑫", "goal"]
    unknown = found.words[5]
    assert unknown.score is not None and unknown.score != 0.0, "an [UNK] character gets a score of its own"


def test_words_past_the_max_length_are_shown_unread(lab):
    text = " ".join(["goal match team"] * 20)  # 60 words; the runs read 30 tokens
    found = explain(lab.full, text)
    scores = [w.score for w in found.words]
    assert scores[:30] == [s for s in scores[:30] if s is not None] and scores[30:] == [None] * 30
    assert abs(sum(scores[:30]) - found.change - found.delta) < 1e-4


def test_full_and_lora_runs_are_explained_alike(lab):
    """A LoRA run's model is loaded merged (predict.load_artifact): the same class of model as full fine-tuning's,
    with no adapter left, explained by the same code."""
    assert type(lab.full.model) is type(lab.lora.model)
    assert not any("lora" in name for name, _ in lab.lora.model.named_parameters())
    for predictor in (lab.full, lab.lora):
        found = explain(predictor, "足球新闻：球队 比赛 goal")
        assert len(found.words) == 10 and abs(sum(w.score for w in found.words) - found.change - found.delta) < 1e-4


def test_another_class_can_be_explained_and_bad_input_is_refused_in_plain_words(lab):
    label, _ = lab.full.predict("足球新闻：球队 比赛")
    other = next(c for c in KEYWORD_CLASSES if c != label)
    found = explain(lab.full, "足球新闻：球队 比赛", target=other)
    assert found.label == label and found.target == other
    assert abs(sum(w.score for w in found.words) - found.change - found.delta) < 1e-4
    with pytest.raises(CannotExplain, match="empty"):
        explain(lab.full, "  \n ")
    with pytest.raises(CannotExplain, match="no class 'weather'.*体育, 财经, 科技"):
        explain(lab.full, "goal", target="weather")


def test_approximate_is_said_where_the_delta_is_large_beside_the_change():
    def made(delta: float) -> Explanation:
        return Explanation(
            "a b", "x", 0.9, "x", 0.9, 0.3, [Word("a", 0, 1, 0.5), Word("b", 2, 3, 0.1)], delta, 24, 0.1
        )

    assert not made(0.05).approximate and made(0.07).approximate  # a tenth of the 60 points explained
    assert "Together the words add 60.0 points to 'x': 30.0 % with every word blanked out" in made(0).summary()
    assert "Approximate" in made(0.07).summary()


def test_deleting_the_top_3_words_lowers_the_probability_more_than_3_random_words(lab):
    """ERASER's comprehensiveness: the words the explanation ranks highest matter more to the model than any 3."""
    texts = [t for t in demo_texts("test") if len(t.split()) >= 5][:50]
    assert len(texts) == 50
    rng = random.Random(0)
    top_drops, random_drops = [], []
    for text in texts:
        found = explain(lab.demo, text)
        ranked = sorted(range(len(found.words)), key=lambda i: found.words[i].score, reverse=True)

        def without(drop, words=found.words) -> str:
            return " ".join(w.text for i, w in enumerate(words) if i not in drop)

        probs = lab.demo.predict_proba([text, without(set(ranked[:3])), without(set(rng.sample(ranked, 3)))])
        p = probs[:, lab.demo.classes.index(found.label)]
        top_drops.append(p[0] - p[1])
        random_drops.append(p[0] - p[2])
    top, rand = statistics.mean(top_drops), statistics.mean(random_drops)
    assert top > rand, f"top-3 words: {top:.3f} lower, 3 random words: {rand:.3f} lower"


# --- the command line ---------------------------------------------------------------------------------------------


def test_explain_command_prints_json_with_exactly_its_keys(lab_env, capsys):
    run_id = lab_env.runs["full"]
    assert cli.main(["explain", "--run", str(run_id), "--text", "足球新闻：球队 goal", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["label", "probability", "target", "tokens", "delta", "seconds"]
    assert out["label"] == out["target"] and out["label"] in KEYWORD_CLASSES and 0 < out["probability"] <= 1
    assert [t["text"] for t in out["tokens"]] == ["足", "球", "新", "闻", "：", "球", "队", "goal"]
    assert all(set(t) == {"text", "score"} and isinstance(t["score"], float) for t in out["tokens"])
    assert isinstance(out["delta"], float) and out["seconds"] > 0

    assert cli.main(["explain", "--run", str(run_id), "--text", "goal", "--target", "财经", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["target"] == "财经"
    assert cli.main(["explain", "--run", str(run_id), "--text", "goal match"]) == 0
    plain = capsys.readouterr().out
    assert re.search(r"[+-]\d+\.\d  goal", plain) and "Together the words" in plain


@pytest.mark.parametrize(
    "args, message",
    [
        (["--text", "   "], "error: The text is empty: give --text with the words to explain."),
        (["--text", "goal", "--target", "weather"], "error: There is no class 'weather' in this run; its classes: "),
    ],
)
def test_explain_command_refuses_an_empty_text_and_an_unknown_class(lab_env, capsys, args, message):
    assert cli.main(["explain", "--run", str(lab_env.runs["full"]), *args]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(message), "one plain line, after the model's loading"


def test_explain_command_says_when_the_runs_model_is_gone(settings, csv_folder, tiny_model, capsys):
    run_id = train_now(settings, store(settings, csv_folder), tiny_model, "lora", epochs=1, max_length=16)
    shutil.rmtree(settings.data_dir / get_run(settings, run_id).artifact_path)
    capsys.readouterr()  # the training's output
    assert cli.main(["explain", "--run", str(run_id), "--text", "goal", "--db", settings.db_url]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: Run {run_id}'s model files are missing from ") and err.count("\n") == 1


# --- the explaining process --------------------------------------------------------------------------------------


def test_explanations_are_worked_out_in_a_process_of_their_own(lab):
    """The dashboard's explanations come from one process beside it (core.jobs.explainer): the same answer as
    explaining in this process, plain refusals, and a process that died started again at the next question."""
    text = "足球新闻：球队 比赛 goal"
    process = Explainer(lab.settings)
    try:
        found = process.explain(lab.runs["full"], text)
        first = process.pid()
        assert first is not None and first != os.getpid()
        here = explain(lab.full, text)
        assert (found.label, found.target, [w.text for w in found.words]) == (
            here.label,
            here.target,
            [w.text for w in here.words],
        )
        assert [w.score for w in found.words] == pytest.approx([w.score for w in here.words], abs=1e-4)
        with pytest.raises(CannotExplain, match="empty"):
            process.explain(lab.runs["lora"], " ")
        with pytest.raises(CannotExplain, match="Run 99999 no longer exists"):
            process.explain(99999, text)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while process.pid() == first and time.monotonic() < deadline:  # until it is seen gone
            time.sleep(0.05)
        again = process.explain(lab.runs["lora"], text, target=KEYWORD_CLASSES[1])
        assert again.target == KEYWORD_CLASSES[1] and process.pid() not in (None, first)
    finally:
        process.close()
    assert process.pid() is None


def test_the_explaining_process_never_runs_the_page_that_started_it(settings, tmp_path, monkeypatch):
    """Streamlit runs a page as the module __main__: a process started as multiprocessing's spawn starts one runs
    __main__ again, so the explaining process ran the Predict page (which started a worker from it). Here __main__ is
    a script that leaves a mark when run; the explaining process answers, and the script never ran."""
    import sys
    import types

    mark = tmp_path / "ran"
    script = tmp_path / "page.py"
    script.write_text(f"open({str(mark)!r}, 'w').close()\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", page)
    open_database(settings.db_url)
    process = Explainer(settings)
    try:
        with pytest.raises(CannotExplain, match="Run 99999 no longer exists"):
            process.explain(99999, "a text")
    finally:
        process.close()
    assert not mark.exists(), "the explaining process ran the page"


# --- the pages ----------------------------------------------------------------------------------------------------

SPAN = re.compile(r'<span style="background:rgba\(\d+, \d+, \d+, ([\d.]+)\);[^"]*" title="[^"]*" data-score="([^"]+)"')


def shades(body: str) -> list[tuple[float, float]]:
    """(shade, score) of every word of an explanation's HTML."""
    return [(float(alpha), float(score)) for alpha, score in SPAN.findall(body)]


def open_page(page: str, **query) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90).run()
    at.switch_page(f"pages/{page}.py")
    at.query_params.update(query)
    return at.run()


@pytest.fixture
def no_worker(monkeypatch):
    monkeypatch.setattr("core.jobs.worker.ensure_worker", lambda settings: False)


def test_predict_shades_each_runs_words_side_by_side_on_one_scale(lab_env, no_worker, monkeypatch):
    full, lora = lab_env.runs["full"], lab_env.runs["lora"]
    # Not in the page's thread: here, an explanation fails; the explaining process has its own, untouched.
    monkeypatch.setattr("core.training.explain.explain", lambda *a, **k: pytest.fail("explained in the page"))
    at = open_page("predict")
    at.multiselect(key="predict_runs").set_value([full, lora]).run()
    text = "足球新闻：球队 <b>goal</b> match"
    at.text_area(key="predict_text").set_value(text).run()
    assert not at.exception and not at.error
    bodies = [h.proto.body for h in at.get("html")]
    assert len(bodies) == 2, "one shaded text under each run's probabilities"
    for body in bodies:
        assert "&lt;b&gt;goal&lt;/b&gt;" in body and "<b>" not in body, "the typed text is escaped"
        assert "Noto Sans CJK SC" in body and "pushed toward" in body and "pushed away from" in body
        assert ">足</span>" in body and ">球</span>" in body, "one shade per Chinese character"
    words = [shades(body) for body in bodies]
    assert all(len(w) == 9 for w in words)
    largest = max(abs(score) for column in words for _, score in column)
    for column in words:  # one scale for both: the deepest shade is the larger of the two runs' top scores
        assert [alpha for alpha, _ in column] == pytest.approx([0.85 * abs(s) / largest for _, s in column], abs=1e-3)
    # The check above tells one scale from two only where the runs' top scores differ by more than its tolerance:
    # two scales would give the smaller column a deepest shade of 0.85, one gives 0.85 * its top / largest. A 2 %
    # difference is 0.017 of shade, seventeen times the tolerance; how much more depends on the two trained models.
    tops = [max(abs(score) for _, score in column) for column in words]
    assert abs(tops[0] - tops[1]) > 0.02 * largest, "the runs' top scores differ: one scale is not two"
    assert "One scale in every column: the deepest shade is" in " ".join(c.value for c in at.caption)

    label = at.metric[0].value
    other = next(c for c in KEYWORD_CLASSES if c != label)
    at.selectbox(key=f"predict_explain_{full}").set_value(other).run()
    assert not at.exception and html.escape(f"pushed toward '{other}'") in at.get("html")[0].proto.body


def test_compare_explains_a_disagreement_and_a_confusion_cells_text_for_both_runs(lab_env, no_worker):
    full, lora = lab_env.runs["full"], lab_env.runs["lora"]
    at = open_page("compare", runs=f"{full},{lora}")
    assert not at.exception and not at.error and not at.get("html")
    at.selectbox(key="compare_explain").set_value(0).run()
    assert not at.exception and not at.error
    bodies = [h.proto.body for h in at.get("html")]
    assert len(bodies) == 2 and all("pushed toward" in b and "新</span>" in b for b in bodies)

    true = get_run(lab_env.settings, full).test_metrics["confusion_matrix"]
    cell = next((t, p) for t, row in enumerate(true) for p, n in enumerate(row) if n)
    at = click_cell(at, f"compare_cm_{full}", *cell)
    at.selectbox(key="compare_cell_explain").set_value(0).run()
    assert not at.exception and not at.error
    assert sum("pushed toward" in h.proto.body for h in at.get("html")) == 4, "the cell's text, by both runs"


# --- the benchmark ------------------------------------------------------------------------------------------------


def test_the_benchmarks_smoke_mode_times_steps_and_prints_a_table():
    done, rows = run_bench(["bench/explain_bench.py", "--smoke"])
    assert [r["steps"] for r in rows] == [4, 8] and all(r["median_s"] > 0 and r["tokens"] == 64 for r in rows)
    assert "| steps | median s | fastest s | largest delta | change explained | within budget |" in done.stdout
    assert "The most steps within 1 s:" in done.stdout
