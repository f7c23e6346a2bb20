"""The Compare page: the verdict card for each of the four outcomes, a group of three seeds, the costs as ratios,
and a click on a confusion-matrix cell listing its texts. Runs are inserted as rows with made-up predictions."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetStates

from core.jobs.runs import create_comparison
from core.store.db import Dataset, Metric, session_factory
from core.training import models
from core.training.config import TrainConfig
from tests.comparing import comparison, single, store_dataset
from tests.test_pages import no_worker, open_page, texts  # noqa: F401 - no_worker: an autouse fixture (no worker started)

OUTCOMES = {  # outcome -> (test texts, full's wrong rows, LoRA's wrong rows, words of the verdict)
    "lora_better": (90, set(range(30)), set(range(5)), "LoRA is better by 27.8 points (95 % interval"),
    "full_better": (90, set(range(5)), set(range(30)), "Full fine-tuning is better by 27.8 points"),
    "no_difference": (600, set(range(10)), set(range(5, 15)), "No winner: the interval holds 0"),
    "too_few": (30, {0, 1, 2}, {1, 2, 3, 4}, "Not sure: the interval holds 0"),
}
BADGES = {"lora_better": "LoRA wins", "full_better": "full fine-tuning wins", "no_difference": "no difference"}


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_the_verdict_card_says_each_of_the_four_outcomes(settings, tmp_path, outcome):
    n, wrong_full, wrong_lora, words = OUTCOMES[outcome]
    group, _ = comparison(settings, store_dataset(settings, tmp_path / "d", n), [(wrong_full, wrong_lora)])
    at = open_page("compare")
    assert not at.exception and not at.error
    assert at.selectbox(key="compare_what").value == group, "the newest comparison is chosen"
    assert at.query_params["group"] == str(group)
    card = texts(at.markdown)
    assert words in card
    assert at.markdown[0].value.startswith(":"), "the verdict comes first on the page"
    full, lora = (100 * (n - len(wrong)) / n for wrong in (wrong_full, wrong_lora))
    assert f"**Test accuracy: full fine-tuning {full:.1f} %, LoRA {lora:.1f} %.**" in at.markdown[0].value, (
        "both accuracies lead, full fine-tuning's first"
    )
    assert f"-badge[{BADGES.get(outcome, 'too few test texts')}]" in at.markdown[0].value
    assert "minus" not in at.markdown[1].value, "the difference in the winner's favour, not LoRA minus full"
    assert at.markdown[2].value.startswith("Macro-F1: "), "macro-F1 on a line of its own, below"
    metrics = {m.label: m.value for m in at.metric}
    assert (
        metrics["Full fine-tuning, test accuracy"] == f"{full:.1f} %"
        and metrics["LoRA, test accuracy"] == f"{lora:.1f} %"
    )
    assert metrics["Test texts"] == str(n)
    assert "McNemar's p" in metrics, "one pair: McNemar's exact test beside the interval"
    assert metrics["Training time"] == "0.50x" and metrics["Trainable weights"] == "1/200"
    assert metrics["Size on disk"] == "1/40" and metrics["Texts per second"] == "2.00x"
    assert (
        "Against full fine-tuning, LoRA took 0.50x the training time, trained 2.00x as many texts per second, used "
        "0.67x the memory, trained 1/200 of the weights and saved 1/40 the disk space." in card
    ), "every ratio in one form, said in words"


def test_a_group_of_three_seeds_shows_each_seed_and_the_group_interval(settings, tmp_path):
    dataset = store_dataset(settings, tmp_path / "d", 90)
    wrong = [(set(range(20)), set(range(10))), (set(range(15)), set(range(14))), (set(range(12)), set(range(18)))]
    group, ids = comparison(settings, dataset, wrong)
    single(settings, dataset, set(range(40)))  # a newer run outside the group changes nothing
    at = open_page("compare", group=str(group))
    assert not at.exception and not at.error
    seeds = frame_with(at, "seed")
    assert list(seeds["seed"]) == [42, 43, 44]
    assert list(seeds["difference"].round(2)) == [11.11, 1.11, -6.67]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Seeds"] == "3" and "McNemar's p" not in metrics
    assert metrics["LoRA, test accuracy"] == "84.4 %" and metrics["Full fine-tuning, test accuracy"] == "82.6 %"
    assert (
        "Test accuracy: full fine-tuning 82.6 %, LoRA 84.4 %; LoRA was better on 2 of 3 seeds, full fine-tuning on 1."
        in texts(at.markdown)
    )
    assert "Means over 3 seeds, each with its range: training time 0.50x;" in texts(at.caption)
    table = frame_with(at, "")
    assert len(table.columns) == 1 + 6, "one column per run: no sideways scrolling for the figures"
    charts = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    colours = {bar["name"].split()[0]: bar["marker"]["color"] for bar in charts["compare_f1"]["data"]}
    assert len(set(colours.values())) == 6, "one colour per run"
    assert (
        charts["compare_difference"]["data"][0][
            "zmid" if "zmid" in charts["compare_difference"]["data"][0] else "zmin"
        ]
        is not None
    )


def frame_with(at, *columns: str):
    """The first table on the page that has these columns (tables without selections carry no key in AppTest); with
    more than one column given, exactly these."""
    return next(
        (
            d.value
            for d in at.dataframe
            if (list(d.value.columns) == list(columns) if len(columns) > 1 else columns[0] in d.value.columns)
        ),
        None,
    )


def click_cell(at, key: str, true: int, pred: int):
    """What the browser sends when a cell's marker is clicked: the chart's selection, as a widget state."""
    chart = next(c for c in at.get("plotly_chart") if c.key == key)
    states = WidgetStates()
    states.CopyFrom(at._tree.get_widget_states())
    state = states.widgets.add()
    state.id = chart.proto.id
    point = {"customdata": [true, pred], "point_index": 3 * true + pred, "curve_number": 1}
    state.string_value = json.dumps({"selection": {"points": [point], "point_indices": [3 * true + pred]}})
    return at._run(states)


def test_clicking_a_confusion_matrix_cell_lists_its_texts(settings, tmp_path):
    dataset = store_dataset(settings, tmp_path / "d", 30)
    group, (full, lora) = comparison(settings, dataset, [({0, 3, 4}, {0})])
    at = open_page("compare")
    assert frame_with(at, "test row", "text") is None
    at = click_cell(at, f"compare_cm_{full}", true=0, pred=1)  # sport texts full fine-tuning called business
    assert not at.exception
    listed = frame_with(at, "test row", "text")
    assert list(listed["text"]) == ["test text number 0", "test text number 3"]
    assert list(listed["test row"]) == [2, 5]
    assert "true sport, predicted business: 2 test texts" in texts(at.markdown)
    at = click_cell(at, f"compare_cm_{lora}", true=1, pred=1)
    assert len(frame_with(at, "test row", "text")) == 10


def test_picked_runs_the_url_and_the_rest_of_the_page(settings, tmp_path):
    dataset = store_dataset(settings, tmp_path / "d", 30)
    _, (full, lora) = comparison(settings, dataset, [({0, 3, 4}, {0})])
    other = single(settings, dataset, {5, 6})
    at = open_page("compare", runs=f"{full},{other}")
    assert not at.exception and not at.error
    assert at.selectbox(key="compare_what").value == 0 and at.multiselect(key="compare_runs").value == [full, other]
    assert "group" not in at.query_params and at.query_params["runs"] == f"{full},{other}"
    assert "Test accuracy: full fine-tuning 90.0 %, LoRA 93.3 %." in texts(at.markdown)
    at.toggle(key="compare_normalised").set_value(True).run()
    matrix = json.loads(next(c for c in at.get("plotly_chart") if c.key == f"compare_cm_{full}").proto.spec)
    assert "%" in matrix["data"][0]["text"][0][0]
    at.radio(key="compare_x").set_value("examples").run()
    assert "Examples seen" in next(c for c in at.get("plotly_chart") if c.key == "compare_curves").proto.spec
    at.multiselect(key="compare_runs").set_value([full, lora, other]).run()
    assert "A verdict needs full fine-tuning and LoRA pairs" in texts(at.info)
    assert frame_with(at, "").shape[1] == 4
    at.multiselect(key="compare_runs").set_value([full]).run()
    assert "Pick at least two runs." in texts(at.info)


@pytest.mark.parametrize("asked", ["7", "abc"])
def test_an_unknown_comparison_in_the_url_is_said_as_an_unknown_run_is(settings, tmp_path, asked):
    group, _ = comparison(settings, store_dataset(settings, tmp_path / "d", 30), [({0}, {1})])
    at = open_page("compare", group=asked)
    assert not at.exception
    assert f"There is no comparison {asked} (it may have been deleted)" in texts(at.error)
    assert at.query_params["group"] == asked, "the address is not silently made another comparison's"
    assert at.selectbox(key="compare_what").value == group, "the newest comparison is shown below the message"
    at.selectbox(key="compare_what").set_value(0).run()
    assert not at.error and "group" not in at.query_params, "a choice made writes the address anew"


def test_the_disagreement_table_has_short_run_headers_that_fit_a_projector(settings, tmp_path):
    dataset = store_dataset(settings, tmp_path / "d", 30)
    wrong = [({0, 1}, {2}), ({3}, {4, 5}), ({6}, {7})]
    group, ids = comparison(settings, dataset, wrong)
    at = open_page("compare", group=str(group))
    assert not at.exception
    table = frame_with(at, "true label")
    methods = ["full", "LoRA"] * 3
    seeds = [42, 42, 43, 43, 44, 44]
    assert list(table.columns[3:]) == [f"#{i} {m} · {s}" for i, m, s in zip(ids, methods, seeds)]
    assert max(len(c) for c in table.columns[3:]) <= 12, "six run columns and the texts fit 1024 px"


def test_the_difference_matrix_and_curves_are_whole_on_a_projector(settings, tmp_path):
    """Issue 24 item 11: the matrix's title was cut at half a 1024 px screen and its numbers were 7 px high; the
    dev-score curves cut their last point at the right edge."""
    dataset = store_dataset(settings, tmp_path / "d", 30)
    group, ids = comparison(settings, dataset, [({0, 1}, {2}), ({3}, {4, 5})])
    with session_factory(settings.db_url)() as s:
        s.add_all(
            Metric(run_id=i, step=step, epoch=step / 10, name="eval_accuracy", value=0.9)
            for i in ids
            for step in (10, 20)
        )
        s.commit()
    at = open_page("compare", group=str(group))
    charts = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    layout = charts["compare_difference"]["layout"]
    lines = [layout["title"]["text"], layout["title"]["subtitle"]["text"]]
    assert max(len(line) for line in lines) <= 40, lines
    assert charts["compare_difference"]["data"][0]["textfont"]["size"] >= 12
    curves = charts["compare_curves"]
    assert curves["layout"]["xaxis2"]["range"][1] > 20, "room after the last point"
    assert all(trace["cliponaxis"] is False for trace in curves["data"])


def test_a_clicked_cell_lists_its_texts_under_its_own_row_of_matrices_and_scrolls_to_them(settings, tmp_path):
    """Issue 24 item 13: a first-row click listed the texts under every matrix, some 800 px below, out of sight."""
    dataset = store_dataset(settings, tmp_path / "d", 30)
    group, ids = comparison(settings, dataset, [({0, 3}, {0}), ({3}, {4}), ({6}, {7})])
    at = click_cell(open_page("compare", group=str(group)), f"compare_cm_{ids[0]}", true=0, pred=1)
    assert not at.exception
    elements = list(at.main)
    order = [getattr(e, "key", None) or str(getattr(e, "value", "")) for e in elements]
    listed = next(i for i, e in enumerate(order) if "true sport, predicted business: 2 test texts" in e)
    assert order.index(f"compare_cm_{ids[1]}") < listed < order.index(f"compare_cm_{ids[2]}"), "under its row"
    assert isinstance(elements[listed + 1].value, pd.DataFrame), "the texts themselves right under their title"
    [scroll] = [h for h in at.get("html") if "scrollIntoView" in h.proto.body]
    assert f"compare-cell-{ids[0]}-0-1" in scroll.proto.body


def test_a_comparison_still_training_in_the_url_says_its_verdict_is_to_come(settings, tmp_path):
    dataset = store_dataset(settings, tmp_path / "d", 30)
    group, _ = comparison(settings, dataset, [({0}, {1})])
    with session_factory(settings.db_url)() as s:
        pending, _ = create_comparison(s, s.get(Dataset, dataset.id), models.BUNDLED, TrainConfig(), repeats=1)
    at = open_page("compare", group=str(pending.id))
    assert not at.exception and not at.error
    assert f"Comparison #{pending.id} has no completed pair yet" in texts(at.warning)
    assert at.selectbox(key="compare_what").value == group
