"""Studies on the dashboard: each kind's chart on Compare, the two learning-rate verdicts and the sentence when they
disagree, a study as one row on Runs (and deleted whole), and the Train page's study form. Runs are inserted as rows
with made-up dev scores and test predictions (tests/comparing.py), never trained."""

from __future__ import annotations

import json

import pytest

from core.jobs import studies
from core.results import studies as found
from core.store.db import Dataset, Metric, Run, Study, session_factory
from core.training import models
from core.training.config import METHOD_NAMES, TrainConfig
from tests.comparing import complete, single, store_dataset
from tests.test_pages import no_worker, open_page, store, texts  # noqa: F401 - no_worker: an autouse fixture


def _dev(s, run: Run, accuracy: float) -> None:
    """The dev evaluation the run kept (the lowest loss), as training writes it."""
    s.add_all(
        [
            Metric(run_id=run.id, step=10, epoch=1, name="eval_loss", value=0.5),
            Metric(run_id=run.id, step=10, epoch=1, name="eval_accuracy", value=accuracy),
        ]
    )
    s.commit()


def _study(settings, dataset, vary: str, **kwargs) -> tuple[int, list[int]]:
    with session_factory(settings.db_url)() as s:
        study, runs = studies.create_study(
            s, s.get(Dataset, dataset.id), models.BUNDLED, TrainConfig(), vary, **kwargs
        )
        return study.id, [r.id for r in runs]


# Dev accuracy of each rate tried; LoRA's lowest rate is stopped early. Both methods' best rate is the highest tried.
DEV = {("full", 1e-5): 0.60, ("full", 5e-5): 0.70, ("full", 1e-4): 0.80}
DEV |= {("lora", 1e-4): 0.40, ("lora", 1e-3): 0.70, ("lora", 3e-3): 0.75}
WRONG = {  # test rows each got wrong, of 600: at the default rates full fine-tuning wins; each at its best, a tie
    "default": {"full": set(range(5)), "lora": set(range(60))},
    "final": {"full": set(range(10)), "lora": set(range(5, 15))},
}


@pytest.fixture
def lr_study(settings, tmp_path) -> int:
    """A finished learning-rate study of 2 fresh seeds whose two verdicts disagree."""
    return finished_lr_study(settings, store_dataset(settings, tmp_path / "d", 600))


def finished_lr_study(settings, dataset) -> int:
    """The lr_study fixture's study on a dataset of 600 test texts."""
    study_id, _ = _study(
        settings,
        dataset,
        "lr",
        seeds=2,
        grids={"full": [1e-5, 1e-4], "lora": [1e-4, 3e-3]},
        default_rates={"full": 5e-5, "lora": 1e-3},
    )
    with session_factory(settings.db_url)() as s:
        for run in found.study_runs(s, study_id):
            rate = run.config["learning_rate"]
            complete(s, settings, run, WRONG["default"][run.method] if run.study_role == "default" else set())
            run.stopped_early = (run.method, rate) == ("lora", 1e-4)
            _dev(s, run, DEV[run.method, rate])
        finals = studies.advance(s, s.get(Study, study_id))
        assert len(finals) == 4
        for k, run in enumerate(finals):
            complete(s, settings, run, WRONG["final"][run.method])
            _dev(s, run, DEV[run.method, run.config["learning_rate"]] - 0.02 * k)
    return study_id


def _chart(at) -> dict:
    return json.loads(next(c for c in at.get("plotly_chart") if c.key == "compare_study_chart").proto.spec)


def _lines(chart: dict) -> dict[str, dict]:
    """The chart's line of each method, by its name (bands, markers and the chosen rates are other traces)."""
    lines = [t for t in chart["data"] if t.get("mode", "").startswith("lines+markers")]
    assert len(lines) == len({t["name"] for t in lines}), "one line per method"
    return {t["name"]: t for t in lines}


def test_a_learning_rate_study_shows_its_chart_both_verdicts_and_that_they_disagree(settings, lr_study):
    at = open_page("compare", study=str(lr_study))
    assert not at.exception and not at.error
    chart = _chart(at)
    assert chart["layout"]["xaxis"]["type"] == "log"
    lines = _lines(chart)
    assert set(lines) == {METHOD_NAMES["full"], METHOD_NAMES["lora"]}
    lora = lines["LoRA"]
    assert lora["x"] == [1e-4, 1e-3, 3e-3] and lora["y"] == pytest.approx([0.40, 0.70, 0.75])
    assert lora["marker"]["symbol"] == ["circle-open", "diamond", "circle"], "stopped early hollow, the default ◆"
    assert "stopped early" in lora["hovertext"][0] and "default rate" in lora["hovertext"][1]
    assert lines["Full fine-tuning"]["line"]["color"] != lora["line"]["color"], "each method in its colour"
    stars = [t for t in chart["data"] if t.get("marker", {}).get("symbol") == "star"]
    assert sorted(t["x"][0] for t in stars) == [1e-4, 3e-3], "the rate chosen on dev, marked for each method"
    fresh = next(t for t in chart["data"] if t["name"] == "LoRA: chosen rate on the fresh seeds")
    assert fresh["x"] == [3e-3] and fresh["y"] == [pytest.approx(0.70)], "the chosen rate's mean on the fresh seeds"
    assert fresh["error_y"]["arrayminus"] == fresh["error_y"]["array"] == [pytest.approx(0.01)], "and their range"

    sentence = "The two verdicts disagree: at the default rates full fine-tuning wins by 9.2 points; each at its best"
    assert sentence in texts(at.warning)
    assert "(full fine-tuning 0.0001, LoRA 0.003), no difference" in texts(at.warning)
    cards = texts(at.markdown)
    assert "badge[full fine-tuning wins]" in cards and "badge[no difference]" in cards, "both verdicts, side by side"
    assert "Full fine-tuning 0.0001, LoRA 0.003; fresh seeds 43-44." in texts(at.caption)
    notes = texts(at.info)
    assert "Full fine-tuning's best learning rate, 0.0001, is the highest it tried" in notes
    assert "All 10 runs completed." in texts(at.caption)

    at.button(key="compare_study_add_full").click().run()  # the next rate beyond the edge
    assert not at.exception
    with session_factory(settings.db_url)() as s:
        added = found.study_runs(s, lr_study)[-1]
        assert (added.method, added.study_role, added.status) == ("full", "grid", "queued")
        assert added.config["learning_rate"] == pytest.approx(2e-4)
    assert "Queued run #" in texts(at.success)
    assert "10 of 11 runs completed" in at.get("progress")[0].proto.text, "while it trains: how far the study is"


def _size_study(settings, tmp_path) -> int:
    """Two sizes, two seeds: LoRA ahead on 12 rows, full fine-tuning on all 30."""
    dataset = store_dataset(settings, tmp_path / "d", 90)
    study_id, _ = _study(settings, dataset, "train_size", seeds=2, values=[12, 30])
    with session_factory(settings.db_url)() as s:
        for run in found.study_runs(s, study_id):
            small, seed = run.config["train_rows"] == 12, run.config["seed"] - 42
            wrong = (30 if small else 2) if run.method == "full" else (2 if small else 30)
            complete(s, settings, run, set(range(wrong + 3 * seed)))
    return study_id


def test_a_size_study_shows_each_method_by_training_rows_with_its_band_and_where_the_verdict_changes(
    settings, tmp_path
):
    study_id = _size_study(settings, tmp_path)
    at = open_page("compare", study=str(study_id))
    assert not at.exception and not at.error
    chart = _chart(at)
    assert chart["layout"]["xaxis"]["type"] == "log"
    lines = _lines(chart)
    assert set(lines) == {"Full fine-tuning", "LoRA"}
    assert lines["LoRA"]["x"] == [12, 30]
    bands = [t for t in chart["data"] if t.get("fill") == "toself"]
    assert len(bands) == 2, "each method's seeds as a band"
    highs, lows = bands[0]["y"][:2], bands[0]["y"][2:][::-1]  # along the sizes, then back along the lows
    assert [h - lo for h, lo in zip(highs, lows)] == [pytest.approx(3 / 90)] * 2, "the lowest to the highest seed"
    assert [s["x0"] for s in chart["layout"]["shapes"]] == [30], "the size where the verdict changes, marked"
    assert "full fine-tuning ahead from 30 rows" in chart["layout"]["annotations"][0]["text"]
    assert "LoRA ahead at 12 rows; full fine-tuning ahead at 30 rows. The verdict changes at 30 rows." in texts(
        at.info
    )
    table = next(d.value for d in at.dataframe if "verdict" in d.value.columns)
    assert list(table["training rows"]) == ["12", "30"]
    assert list(table["verdict"]) == ["LoRA wins by 31.1 points", "full fine-tuning wins by 31.1 points"]


def test_a_rank_study_shows_lora_by_its_weights_against_full_fine_tunings_line(settings, tmp_path):
    dataset = store_dataset(settings, tmp_path / "d", 90)
    study_id, _ = _study(settings, dataset, "lora_rank", seeds=2, values=[2, 8])
    with session_factory(settings.db_url)() as s:
        for run in found.study_runs(s, study_id):
            seed = run.config["seed"] - 42
            wrong = 10 + seed if run.method == "full" else {2: 20, 8: 12}[run.config["lora_r"]]
            complete(s, settings, run, set(range(wrong)))
            if run.method == "lora":
                run.trainable_params = 10_000 * run.config["lora_r"]
            s.commit()
    at = open_page("compare", study=str(study_id))
    assert not at.exception and not at.error
    chart = _chart(at)
    assert chart["layout"]["xaxis"]["type"] == "log"
    lines = _lines(chart)
    lora, full = lines["LoRA"], lines["Full fine-tuning"]
    assert lora["x"] == [20_000, 80_000] and lora["text"] == ["r = 2", "r = 8"]
    assert full["y"][0] == full["y"][1] == pytest.approx(1 - 10.5 / 90), "full fine-tuning: a horizontal line"
    assert full["x"] == [20_000, 22_000_000], "reaching to the weights full fine-tuning trains"
    band = next(t for t in chart["data"] if t.get("fill") == "toself" and "Full" in t["name"])
    assert min(band["y"]) == pytest.approx(1 - 11 / 90) and max(band["y"]) == pytest.approx(1 - 10 / 90)
    assert "LoRA's best rank, r = 8, is 1.7 points behind full fine-tuning" in texts(at.info)
    low, high = chart["layout"]["yaxis"]["range"]
    assert 0 <= low < 1 - 20 / 90 and 1 - 10 / 90 < high <= 1.02, "the accuracies, with room, never below 0 %"


def test_a_rank_level_with_full_fine_tuning_is_said_so():
    def point(method, value, accuracy):
        return {"method": method, "value": value, "test": {"accuracy": accuracy}, "trainable_params": None}

    pts = [point("full", None, 0.30), point("lora", 2, 0.30), point("lora", 8, 0.25)]
    assert found.rank_sentence(pts) == "LoRA's best rank, r = 2, is level with full fine-tuning on the test set."


def test_a_study_is_one_row_on_runs_its_runs_say_their_study_and_it_is_deleted_whole(settings, tmp_path):
    study_id = _size_study(settings, tmp_path)
    with session_factory(settings.db_url)() as s:
        dataset = s.query(Dataset).one()
    other = single(settings, dataset, set())  # a run outside the study, kept
    at = open_page("runs")
    assert not at.exception and not at.error
    row = next(d.value for d in at.dataframe if "varies" in d.value.columns)  # AppTest keeps no table's key
    assert list(row["open"]) == [f"/compare?study={study_id}"]
    assert row["runs completed"][0] == "8 of 8" and row["varies"][0] == "training rows"
    history = at.dataframe[0].value
    assert set(history["study"]) == {f"#{study_id} · 12 rows", f"#{study_id} · 30 rows", ""}

    with session_factory(settings.db_url)() as s:
        first = found.study_runs(s, study_id)[0].id
    links = [link.proto.label for link in open_page("runs", run=str(first)).get("page_link")]
    assert f"Study #{study_id}: this run is one of its points (12 rows). See its chart" in links

    at.selectbox(key="runs_delete_choice").set_value(f"study-{study_id}").run()
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_yes").click().run()
    assert not at.exception and "Deleted runs #" in texts(at.success)
    with session_factory(settings.db_url)() as s:
        assert [r.id for r in s.query(Run)] == [other]
    assert not [d for d in at.dataframe if "varies" in d.value.columns], "the study went with its runs"


def test_compare_offers_the_studies_and_opens_one(settings, tmp_path):
    study_id = _size_study(settings, tmp_path)
    at = open_page("compare")
    assert not at.exception
    at.selectbox(key="compare_study").set_value(study_id).run()
    assert not at.exception and at.query_params["study"] == str(study_id)
    assert _chart(at)
    at.button(key="compare_study_back").click().run()
    assert "study" not in at.query_params and at.selectbox(key="compare_what")
    at = open_page("compare", study="99")
    assert "There is no study 99" in texts(at.error)


def test_a_study_still_training_shows_how_far_it_is(settings, tmp_path):
    dataset = store_dataset(settings, tmp_path / "d", 90)
    study_id, ids = _study(settings, dataset, "lora_rank", seeds=1, values=[2, 8])
    at = open_page("compare", study=str(study_id))
    assert not at.exception
    assert "0 of 3 runs completed" in at.get("progress")[0].proto.text
    assert "The chart appears once the first runs have completed." in texts(at.info)


def _train_page(settings, csv_folder, tiny_model):
    store(settings, csv_folder)
    at = open_page("train")
    at.radio(key="train_model_kind").set_value(at.radio(key="train_model_kind").options[2]).run()
    at.text_input(key="train_model_name").set_value(tiny_model).run()
    return at.radio(key="train_what").set_value("study").run()


def test_the_train_page_queues_a_study_after_its_estimate(settings, csv_folder, tiny_model):
    at = _train_page(settings, csv_folder, tiny_model)
    assert not at.exception and not at.error
    assert at.radio(key="train_study_vary").value == "lr"
    for kind in ("button", "radio", "text_input", "number_input"):
        for widget in getattr(at, kind):
            assert widget.help and widget.key.startswith("train_"), f"{kind} {widget.key} needs help and a page key"
    # The grid, with the preset's rate (quick demo: 1.5e-4) among its rates
    assert at.text_input(key="train_study_lr_full").value == "1e-05, 5e-05, 0.0001, 0.00015, 0.0002, 0.0005"
    estimate = texts(at.caption)
    assert "The study trains 18 runs, one after another: at most" in estimate, "6 + 6 rates, 3 fresh seeds each"
    assert "with the hopeless rates stopped early" in estimate
    assert "Smaller: 1 seed, 14 runs" in estimate and "3 rates a method, 12 runs" in estimate

    at.radio(key="train_study_vary").set_value("lora_rank").run()
    at.text_input(key="train_study_ranks").set_value("1, 4").run()
    at.number_input(key="train_study_seeds_lora_rank").set_value(1).run()
    assert "The study trains 3 runs, one after another: about" in texts(at.caption)
    at.button(key="train_study").click().run()
    assert not at.exception and not at.error
    with session_factory(settings.db_url)() as s:
        (study,) = s.query(Study).all()
        queued = found.study_runs(s, study.id)
    assert [(r.method, r.config["lora_r"]) for r in queued] == [("full", 8), ("lora", 1), ("lora", 4)]
    assert all(r.estimate for r in queued), "each run keeps its estimate"
    assert f"Queued Study #{study.id}" in texts(at.success)
    assert f"Open study #{study.id} on Compare" in [link.proto.label for link in at.get("page_link")]


def test_the_train_page_refuses_a_study_with_values_it_cannot_use(settings, csv_folder, tiny_model):
    at = _train_page(settings, csv_folder, tiny_model)
    at.text_input(key="train_study_lr_lora").set_value("1e-4, fast").run()
    assert "'fast' is not a number" in texts(at.error)
    assert at.button(key="train_study").disabled

    at.radio(key="train_study_vary").set_value("train_size").run()
    sizes = next(t for t in at.text_input if t.key.startswith("train_study_sizes_"))
    assert sizes.value == "96", "below 100 rows: all of them"
    sizes.set_value("2, 50").run()
    at.button(key="train_study").click().run()
    assert not at.exception
    assert "Nothing was queued:" in texts(at.error) and "between 3 (one row for each class) and 96" in texts(at.error)
    with session_factory(settings.db_url)() as s:
        assert s.query(Run).count() == 0 and s.query(Study).count() == 0
