"""Issue 24: what a projector shows. One duration format on every screen, tables whose headers fit, times in the
viewer's own time zone, and a hint when the settings give very few updates (each test failed before its fix)."""

from __future__ import annotations

import json

from core import models
from core.config import TrainConfig
from core.db import Dataset, Run, session_factory
from core.runs import create_comparison
from tests.test_compare_page import frame_with
from tests.test_pages import no_worker, open_page, populated, store, texts  # noqa: F401 - fixtures


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
        assert (runs_widths[name] or 0) >= 8 * len(name), (name, runs_widths[name])
    at = open_page("data")
    data_widths = widths(at, "active runs")
    assert data_widths["active runs"] >= 8 * len("active runs")
