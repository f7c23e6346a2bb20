"""Issue 24: what a projector shows. One duration format on every screen, tables whose headers fit, times in the
viewer's own time zone, and a hint when the settings give very few updates (each test failed before its fix)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
from streamlit.testing.v1 import AppTest

from core import i18n, words
from core.jobs import cost
from core.jobs.runs import create_comparison, create_run
from core.store.db import Dataset, Run, session_factory
from core.training import models
from core.training.config import TrainConfig
from tests.test_compare_page import frame_with
from tests.test_pages import no_worker, open_page, populated, store, texts  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parent.parent


def widths(at, column: str) -> dict[str, int | None]:
    """Each column's width on the first table with this column (None: sized by Streamlit)."""
    table = next(d for d in at.dataframe if column in d.value.columns)
    return {name: (c or {}).get("width") for name, c in json.loads(table.proto.columns or "{}").items()}


def test_one_run_reads_one_duration_on_every_screen(settings, populated):  # noqa: F811 - the fixture
    """Item 14: one run read 'completed in 4 min 23 s', 'it took 4 min 20 s' and '260.3 s' on three screens."""
    full, lora = populated["completed_full"], populated["completed_lora"]
    with session_factory(settings.db_url)() as s:
        s.get(Run, full).train_seconds = 263.2
        s.get(Run, full).estimate = {"train_seconds": 250.0, "peak_memory_mb": 900.0}
        s.commit()
    at = open_page("runs")
    table = at.dataframe[0].value
    assert table.loc[table["run"] == full, "train time"].item() == "4 min 20 s"
    assert table.loc[table["run"] == full, "estimated train"].item() == "4 min 10 s"
    at = open_page("runs", run=str(full))
    assert f"Run #{full} Full fine-tuning: completed in 4 min 20 s" in texts(at.success)
    assert {m.label: m.value for m in at.metric}["Training time"] == "4 min 20 s"
    assert "it took 4 min 20 s" in texts(at.caption)
    at = open_page("compare", runs=f"{full},{lora}")
    scores = frame_with(at, "").set_index("")
    assert scores.loc["training time"].iloc[0] == "4 min 20 s"


def test_table_headers_fit_their_columns_and_a_pending_verdict_is_blank(settings, csv_folder):
    """Item 14: the Runs list showed a literal 'None' verdict while a comparison was pending, and its estimate
    column was cut to 'es...' (Data's stored datasets to 'ac...')."""
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        create_comparison(s, s.get(Dataset, dataset.id), models.BUNDLED, TrainConfig(), repeats=2)
    at = open_page("runs")
    compared = next(d.value for d in at.dataframe if "verdict" in d.value.columns)
    assert list(compared["verdict"]) == [""]
    runs_widths = widths(at, "estimated train")
    for header in ("estimated train", "expected start", "macro-F1"):
        name = next(c for c in runs_widths if c.startswith(header))
        assert (runs_widths[name] or 0) >= 7 * len(name), (name, runs_widths[name])
    at = open_page("data")
    data_widths = widths(at, "active runs")
    assert data_widths["active runs"] >= 7 * len("active runs")


def test_stored_times_read_in_the_viewers_time_zone_or_say_utc():
    """Item 15: times were in UTC ('22:00 UTC'), 8 hours off for a class in China."""
    at = datetime(2026, 12, 6, 14, 0)
    assert words.clock_text(at, "Asia/Shanghai") == "22:00"
    assert words.clock_text(at, None) == "14:00 UTC", "unknown: UTC, and it says so"
    assert words.clock_text(at, "Not/A_Zone") == "14:00 UTC"
    assert words.clock_text(at, "Asia/Shanghai", with_date=True) == "Dec 6, 2026, 22:00", "the month in words"
    with i18n.speaking("zh"):  # each language writes a date its way (Babel's data), a time of day in 24 hours
        assert words.clock_text(at, "Asia/Shanghai", with_date=True) == "2026年12月6日 22:00"
        assert words.clock_text(at, None) == "14:00 UTC"
        assert words.table_time_format(with_date=True) == "YYYY年M月D日 HH:mm"
    assert words.table_time_format(with_date=True) == "MMM D, YYYY, HH:mm" and words.table_time_format() == "HH:mm"
    table = pd.DataFrame({"run": [1, 2], "created (UTC)": [at, at], "expected start (UTC)": [None, at]})
    shanghai = words.in_time_zone(table, "Asia/Shanghai")
    assert list(shanghai.columns) == ["run", "created", "expected start"]
    assert shanghai["created"].iloc[0] == datetime(2026, 12, 6, 22, 0) and pd.isna(shanghai["expected start"][0])
    assert words.in_time_zone(table, None) is table


def open_in(zone: str | None, page: str, **query) -> AppTest:
    """A page as a browser in this time zone opens it."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.context = {"timezone": zone}
    at.run().switch_page(f"pages/{page}.py")
    at.query_params.update(query)
    return at.run()


def test_the_runs_and_data_pages_show_the_browsers_local_time(settings, csv_folder):
    dataset = store(settings, csv_folder)
    with session_factory(settings.db_url)() as s:
        run = create_run(s, s.get(Dataset, dataset.id), models.BUNDLED, TrainConfig())
        run.created_at = datetime(2026, 12, 6, 21, 58)
        run_id = run.id
        s.commit()
    at = open_in("Asia/Shanghai", "runs", run=str(run_id))
    assert "created Dec 7, 2026, 05:58" in texts(at.caption) and "05:58 UTC" not in texts(at.caption)
    at = open_in("Asia/Shanghai", "runs")
    table = at.dataframe[0].value
    assert table["created"].iloc[0] == datetime(2026, 12, 7, 5, 58) and "created (UTC)" not in table.columns
    shown = json.loads(at.dataframe[0].proto.columns)["created"]["type_config"]["format"]
    assert shown == "MMM D, YYYY, HH:mm", "the table writes the date as the caption does"
    at = open_in(None, "runs", run=str(run_id))
    assert "created Dec 6, 2026, 21:58 UTC" in texts(at.caption), "no zone from the browser: UTC, said"
    at = open_in("Asia/Shanghai", "data")
    assert "created" in next(d.value for d in at.dataframe if "active runs" in d.value.columns).columns


def test_very_few_updates_are_said_with_a_batch_size_that_gives_enough():
    """Item 18: a batch size of 4,096 on 2,000 texts (one update an epoch) was accepted without a hint."""
    few = cost.few_updates_text(TrainConfig(batch_size=4096, epochs=1.5), 2000)
    assert few.startswith("Very few updates: batch size 4,096 on 2,000 training texts corrects the model once an")
    assert "2 in all over 1.5 epochs" in few and few.endswith("Batch size 32 gives 95 updates.")
    assert cost.few_updates_text(TrainConfig(batch_size=32, epochs=1.5), 2000) is None
    assert "More epochs or more training texts" in cost.few_updates_text(TrainConfig(batch_size=2, epochs=1), 6)


def test_the_train_page_says_when_the_batch_size_leaves_very_few_updates(settings, csv_folder):
    store(settings, csv_folder)
    at = open_page("train")
    at.number_input(key="train_batch_size").set_value(4096).run()
    assert not at.exception
    assert "batch size 4,096 on 96 training texts corrects the model once an epoch" in texts(at.warning)
    at.number_input(key="train_batch_size").set_value(4).run()
    assert "Very few updates" not in texts(at.warning)
