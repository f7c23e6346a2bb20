"""What a class sees on the projector: run labels that say what differs, one colour per run, one number format,
plain words; and the bugs a teacher hit (each test here failed before its fix)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import words
from core.data import datasets
from core.jobs.runs import create_comparison, create_run
from core.results import describe
from core.store.db import Dataset, Metric, Run, RunStatus, session_factory, utcnow
from core.training import models
from core.training.config import TrainConfig, preset_config
from core.training.train import train_run
from tests.english import open_in_chinese
from tests.helpers import store
from tests.test_pages import no_worker, open_page, texts  # noqa: F401 - no_worker: an autouse fixture

ROOT = Path(__file__).resolve().parent.parent


def a_run(run_id: int, method: str = "lora", preset: str = "quick demo", **config) -> Run:
    settings = {**preset_config(preset, method).to_dict(), **config}
    return Run(id=run_id, method=method, dataset_name="demo", model_source=models.BUNDLED, config=settings)


def test_a_label_carries_what_differs_and_no_internal_id():
    quick, article = a_run(1, "full"), a_run(3, "full", "as in the published experiment")
    alone = describe.run_label(quick)
    assert alone.startswith("#1 Full fine-tuning") and "1.5 epochs" in alone and "seed 42" in alone
    assert describe.run_label(article, [quick, article]) == "#3 Full fine-tuning · as in the published experiment"
    assert describe.run_label(quick, [quick, article]) == "#1 Full fine-tuning · quick demo"
    seeds = [a_run(5, seed=42), a_run(6, seed=43)]
    assert describe.run_label(seeds[1], seeds) == "#6 LoRA · seed 43"
    tuned = a_run(7, epochs=3)
    assert describe.run_label(tuned, [tuned, quick]) == "#7 LoRA · own settings · 3 epochs"
    assert (
        describe.preset_of(tuned.config) == "own settings"
        and describe.preset_of(article.config) == "as in the published experiment"
    )


def test_one_hue_per_method_and_a_shade_per_seed():
    """Issue 24 item 12: full #1 (orange) and LoRA #4 (dark orange) looked alike in the F1 bars and curves."""
    runs = [
        a_run(i, method, seed=seed)
        for i, (method, seed) in enumerate(
            [("full", 42), ("lora", 42), ("full", 43), ("lora", 43), ("full", 44), ("lora", 44)], start=1
        )
    ]
    colours = describe.run_colours(runs)
    assert len(set(colours.values())) == 6, "one colour per run"
    assert {colours[1], colours[3], colours[5]} == set(describe.METHOD_SHADES["full"][:3])
    assert {colours[2], colours[4], colours[6]} == set(describe.METHOD_SHADES["lora"][:3])
    assert not set(describe.METHOD_SHADES["full"]) & set(describe.METHOD_SHADES["lora"])
    assert describe.run_colours(runs[:2]) == {1: colours[1], 2: colours[2]}, "a seed's run keeps its shade alone"


def test_one_number_format_per_quantity():
    assert words.percent(0.73734) == "73.7 %" and words.percent(None) == "–"
    assert words.points(-0.0123) == "-1.2 points" and words.points(0.004) == "+0.4 points"
    assert words.plain_number(5e-5) == "0.00005" and words.plain_number(1.0) == "1"
    assert words.epochs_text(1.0) == "1 epoch" and words.epochs_text(5) == "5 epochs"
    assert words.count(22715141) == "22,715,141"


def test_the_glossary_has_one_plain_line_per_term():
    for term in ("dev set", "warmup", "evaluations per epoch", "LoRA rank", "LoRA alpha", "LoRA dropout"):
        assert describe.GLOSSARY[term].count(".") <= 2 and "\n" not in describe.GLOSSARY[term]
    assert "bert-base-chinese" in describe.GLOSSARY["published experiment"]


def test_the_first_page_imports_no_torch_or_transformers():
    """A cold start draws its navigation and first page without the training libraries (seconds to import)."""
    code = (
        "import sys, ui, core.results.tables, core.jobs.runs, core.data.reading; "
        "print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    app = (ROOT / "app.py").read_text()
    assert app.index("st.navigation(") < app.index("import ui")  # the real navigation is drawn before any heavy import


def test_the_start_page_imports_no_data_libraries():
    """The Start page (app.py's ui and pages/home.py's imports) needs no CSV reader and no array library: the pages
    that read or tabulate data import them where they use them."""
    code = (
        "import sys, ui, core.results.tables; "
        "print(sorted({'numpy', 'pandas', 'pyarrow', 'sklearn', 'charset_normalizer'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- The Runs page: a pair as a class follows it -------------------------------------------------------------------


@pytest.fixture
def pair(settings, csv_folder) -> dict[str, int]:
    """A stored dataset and a quick-demo pair: full fine-tuning completed, LoRA training at step 10 of 40."""
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        rates = {m: preset_config("quick demo", m).learning_rate for m in ("full", "lora")}  # as the Train page
        _, (full, lora) = create_comparison(
            s, s.get(Dataset, dataset.id), models.BUNDLED, preset_config("quick demo", "lora"), learning_rates=rates
        )
        full.status, full.step, full.total_steps, full.train_seconds = "completed", 40, 40, 12.0
        full.test_metrics = {"accuracy": 0.73734, "f1_macro": 0.7}
        full.started_at = full.finished_at = utcnow()
        lora.status, lora.step, lora.total_steps, lora.started_at = "running", 10, 40, utcnow()
        for run, steps in ((full, 40), (lora, 10)):
            s.add_all(Metric(run_id=run.id, step=k, epoch=k / 40, name="train_loss", value=1.0) for k in (2, steps))
        s.commit()
        return {"full": full.id, "lora": lora.id}


def set_status(settings, run_id: int, status: str) -> None:
    with session_factory(settings.db_url)() as s:
        s.get(Run, run_id).status = status
        s.commit()


def test_opening_the_pair_sets_the_url(settings, pair):
    """Bug 1: 'Its pair: run #4' showed #4 while the URL stayed on #3, so a refresh went back to #3."""
    at = open_page("runs", run=str(pair["full"]))
    at.button(key=f"runs_pair_{pair['lora']}").click().run()
    assert at.query_params["run"] == str(pair["lora"])
    assert f"#{pair['lora']} LoRA" in texts(at.subheader)


def test_compare_the_pair_is_offered_only_when_both_completed(settings, pair):
    """Bug 2: 'Compare the pair' showed while the partner trained, and opened Compare with one run."""
    at = open_page("runs", run=str(pair["full"]))
    assert not [link for link in at.get("page_link") if "Compare" in link.proto.label]
    assert "as soon as both runs have completed" in texts(at.caption)
    set_status(settings, pair["lora"], "cancelled")
    at = open_page("runs", run=str(pair["full"]))
    assert not [link for link in at.get("page_link") if "Compare" in link.proto.label]
    assert f"#{pair['lora']} cancelled" in texts(at.caption)
    set_status(settings, pair["lora"], "completed")
    at = open_page("runs", run=str(pair["full"]))
    [link] = [link for link in at.get("page_link") if "Compare" in link.proto.label]
    assert f"runs={pair['full']},{pair['lora']}" in link.proto.page or "runs" in str(link.proto)


def test_the_pair_view_shows_both_runs_on_one_fixed_axis_and_says_what_the_queued_run_waits_for(settings, pair):
    """Item 10: a queued run said only 'waiting'; the step axis rescaled at every poll; one run per chart."""
    set_status(settings, pair["lora"], "queued")
    with session_factory(settings.db_url)() as s:
        busy = create_run(s, s.get(Dataset, s.get(Run, pair["full"]).dataset_id), models.BUNDLED, TrainConfig())
        busy.status = "running"
        s.commit()
    at = open_page("runs", run=str(pair["lora"]))
    assert f"starts when run #{busy.id} has finished" in texts(at.info)
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {t["name"] for t in figure["data"]} == {f"#{pair['full']} Full fine-tuning", f"#{pair['lora']} LoRA"}
    assert figure["layout"]["xaxis"]["range"] == [0, 40 * 1.04], "fixed, with room after the last step"
    colours = {t["name"]: t["line"]["color"] for t in figure["data"]}
    assert colours[f"#{pair['full']} Full fine-tuning"] == describe.METHOD_SHADES["full"][0]
    assert colours[f"#{pair['lora']} LoRA"] == describe.METHOD_SHADES["lora"][0]


def test_a_live_view_follows_the_pair_to_the_run_that_trains_next(settings, pair):
    """Item 10: when full fine-tuning ended, the page stayed on it instead of following the pair to LoRA."""
    set_status(settings, pair["full"], "running")
    set_status(settings, pair["lora"], "queued")
    at = open_page("runs", run=str(pair["full"]))
    set_status(settings, pair["full"], "completed")
    set_status(settings, pair["lora"], "running")
    at.run()  # what the next poll does
    assert at.query_params["run"] == str(pair["lora"])


def test_cancel_asks_first(settings, pair, monkeypatch):
    """Bug 12: one click cancelled a run at step 35 of 160."""
    monkeypatch.setenv("LORALAB_CHECKPOINT_SECONDS", "30")
    at = open_page("runs", run=str(pair["lora"]))
    at.button(key="runs_cancel").click().run()
    assert not views_run(settings, pair["lora"]).cancel_requested
    assert "Stop run" in texts(at.warning)
    assert "(saved every 30 s)" in texts(at.warning), "how often checkpoints are saved, as the setting says"
    at.button(key="runs_cancel_no").click().run()
    assert not views_run(settings, pair["lora"]).cancel_requested and "runs_cancel_yes" not in keys(at)
    at.button(key="runs_cancel").click().run()
    at.button(key="runs_cancel_yes").click().run()
    assert views_run(settings, pair["lora"]).cancel_requested


def views_run(settings, run_id: int) -> Run:
    with session_factory(settings.db_url)() as s:
        return s.get(Run, run_id)


def keys(at: AppTest) -> set[str]:
    return {b.key for b in at.button}


def test_runs_speak_plainly(settings, pair):
    """Item 11: 73.73 % here and 0.737 there, the pair's internal id, settings as raw JSON with code names."""
    with session_factory(settings.db_url)() as s:
        full = s.get(Run, pair["full"])
        full.load_average, full.cpu_percent, full.cpu_count = 6.0, 100.0, 2
        s.commit()
    at = open_page("runs", run=str(pair["full"]))
    assert [m.value for m in at.metric][:2] == ["73.7 %", "70.0 %"]
    assert views_run(settings, pair["full"]).pair_id not in texts(at.caption)
    assert not at.json and "Warmup" in set(at.dataframe[0].value["setting"])
    assert "not a fair measure" in texts(at.warning) and "5.0 CPUs' worth of work, on 2 CPUs" in texts(at.warning)
    at.button(key="runs_back").click().run()
    table = at.dataframe[0].value
    row = table[table["run"] == pair["full"]].iloc[0]
    assert row["pair"] == f"with #{pair['lora']}" and row["test accuracy"] == "73.7 %"
    assert table[table["run"] == pair["lora"]].iloc[0]["test accuracy"] == "", "not 'None'"
    assert row["machine while training"].startswith("busy") and row["settings"] == "quick demo · 1.5 epochs · seed 42"

    at = open_in_chinese("runs")  # each number as the reader's language writes it, as on every other page
    table = at.dataframe[0].value
    assert table[table["运行"] == pair["full"]].iloc[0]["测试集准确率"] == "73.7%"


# --- Predict: what a model's answer is worth -----------------------------------------------------------------------


def test_predict_says_what_was_cut_what_is_unknown_and_what_guessing_gives(settings, csv_folder, tiny_model):
    """Bugs 4 and 14: numeric class names became a numeric axis (the winning bar unlabelled); a long text was cut
    without a note; a text in a language the model does not know got a confident answer; no chance level. Item 7:
    the run records how busy the machine was."""
    dataset = store(settings, csv_folder)  # labels 0, 1, 2: class names that are numbers
    with session_factory(settings.db_url)() as s:
        config = TrainConfig(method="lora", epochs=1, batch_size=16, evals_per_epoch=1, max_length=16)
        run = create_run(s, s.get(Dataset, dataset.id), tiny_model, config)
    assert train_run(settings, run.id) == RunStatus.COMPLETED

    at = open_page("predict")
    at.text_area(key="predict_text").set_value("goal match team coach " * 10).run()
    at.button(key="predict_button").click().run()
    assert not at.exception and not at.error
    assert at.metric[0].delta.endswith("probability · guessing: 33.3 %")
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert figure["layout"]["yaxis"]["type"] == "category" and list(figure["data"][0]["y"]) == ["0", "1", "2"]
    assert "the model reads only the first 14" in texts(at.warning) and "unknown" not in texts(at.warning)

    at.text_area(key="predict_text").set_value("zebra quantum xylophone violin goal").run()
    at.button(key="predict_button").click().run()
    assert "80.0 % of this text's tokens are unknown to this model" in texts(at.warning)
    assert "reads only" not in texts(at.warning)
    trained = views_run(settings, run.id)
    assert trained.load_average >= 0 and trained.cpu_percent > 0 and trained.cpu_count >= 1
    assert 0 < trained.cpu_share <= 1 or not sys.platform.startswith("linux")  # its threads' ready time, on a CPU


# --- Data: files in the wrong boxes, a name that follows them, delete asks ----------------------------------------


def upload(at: AppTest, files: dict[str, Path]) -> AppTest:
    for split, path in files.items():
        at.file_uploader(key=f"data_{split}_file").set_value((path.name, path.read_bytes(), "text/csv"))
    return at.run()


def named_csvs(folder: Path, prefix: str) -> dict[str, Path]:
    """The same small CSVs under other names, e.g. small_train.csv."""
    out = {}
    for split in ("train", "dev", "test"):
        out[split] = folder.parent / f"{prefix}_{split}.csv"
        out[split].write_bytes((folder / f"{split}.csv").read_bytes())
    return out


def test_the_dataset_name_follows_the_files(settings, csv_folder):
    """Bug 5: the name kept a stale default ('small' while the boxes held other files)."""
    at = upload(open_page("data"), named_csvs(csv_folder, "small"))
    assert at.text_input(key="data_name").value == "small"
    at = upload(at, named_csvs(csv_folder, "news"))
    assert at.text_input(key="data_name").value == "news"
    at.radio(key="data_source").set_value("Use the bundled demo set").run()
    assert at.text_input(key="data_name").value == datasets.DEMO_NAME


def test_files_in_the_wrong_boxes_are_said_plainly(settings, csv_folder):
    """Bug 13: the test file as train and the train file as test passed silently; one file in all three boxes got
    'texts in small_train.csv also appear in small_train.csv'."""
    files = named_csvs(csv_folder, "small")
    at = upload(open_page("data"), {"train": files["test"], "dev": files["dev"], "test": files["train"]})
    warnings = texts(at.warning)
    assert "small_test.csv was given for train, but its name says test" in warnings
    assert "The test file small_train.csv (96 rows) is larger than the train file small_test.csv (24 rows)" in warnings
    at = upload(open_page("data"), dict.fromkeys(("train", "dev", "test"), files["train"]))
    assert "The same file (small_train.csv) was given for train, dev and test" in texts(at.warning)
    assert "also appear in" not in texts(at.warning)


def test_delete_asks_first(settings, csv_folder):
    """Bug 12: 'Delete it' removed a dataset at once ('no undo' only in a tooltip)."""
    dataset = store(settings, csv_folder)
    at = open_page("data")
    at.selectbox(key="data_delete_choice").set_value(dataset.id).run()
    at.button(key="data_delete").click().run()
    assert "for good?" in texts(at.warning)
    at.button(key="data_delete_no").click().run()
    at.button(key="data_delete").click().run()
    at.button(key="data_delete_yes").click().run()
    assert f"Deleted '{dataset.name}'" in texts(at.success)
    with session_factory(settings.db_url)() as s:
        assert s.get(Dataset, dataset.id) is None


def test_train_speaks_plainly(settings, csv_folder, tiny_model):
    """Item 11: 'Dev checks per epoch', '5.0e-5', 'Epochs 1.00', and LoRA's share 'of 22,827,658' beside full's
    'of 22,715,141' (LoRA's model looked bigger)."""
    store(settings, csv_folder)
    at = open_page("train")
    at.radio(key="train_model_kind").set_value(at.radio(key="train_model_kind").options[2]).run()
    at.text_input(key="train_model_name").set_value(tiny_model).run()
    full, lora = at.metric[:2]
    assert full.delta.split(" of ")[1] == lora.delta.split(" of ")[1] and "the model's" in lora.delta
    assert lora.delta.split(" of ")[0].endswith(" %")
    labels = {w.key: w for w in at.number_input}
    assert labels["train_evals_per_epoch"].label == "Evaluations per epoch"
    assert labels["train_evals_per_epoch"].help == describe.GLOSSARY["evaluations per epoch"]
    assert labels["train_epochs"].proto.format == "%g" and labels["train_lr_full"].proto.format == "%g"
    assert "bert-base-chinese" in " ".join(at.radio(key="train_preset").proto.captions)  # which article
