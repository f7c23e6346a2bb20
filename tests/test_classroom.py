"""What a class sees on the projector: run labels that say what differs, one colour per run, one number format,
plain words; and the bugs a teacher hit (each test here failed before its fix)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core import models, views
from core.config import preset_config
from core.db import Run

ROOT = Path(__file__).resolve().parent.parent


def a_run(run_id: int, method: str = "lora", preset: str = "quick demo", **config) -> Run:
    settings = {**preset_config(preset, method).to_dict(), **config}
    return Run(id=run_id, method=method, dataset_name="demo", model_source=models.BUNDLED, config=settings)


def test_a_label_carries_what_differs_and_no_internal_id():
    quick, article = a_run(1, "full"), a_run(3, "full", "seed article")
    alone = views.run_label(quick)
    assert alone.startswith("#1 Full fine-tuning") and "1 epoch" in alone and "seed 42" in alone
    assert views.run_label(article, [quick, article]) == "#3 Full fine-tuning · seed article"
    assert views.run_label(quick, [quick, article]) == "#1 Full fine-tuning · quick demo"
    seeds = [a_run(5, seed=42), a_run(6, seed=43)]
    assert views.run_label(seeds[1], seeds) == "#6 LoRA · seed 43"
    tuned = a_run(7, epochs=2)
    assert views.run_label(tuned, [tuned, quick]) == "#7 LoRA · own settings · 2 epochs"
    assert views.preset_of(tuned.config) == "own settings" and views.preset_of(article.config) == "seed article"


def test_one_colour_per_run_stable_and_distinct():
    assert views.run_colours([3, 4])[3] == views.run_colours([1, 3, 9])[3]
    colours = views.run_colours(list(range(1, 8)))
    assert len(set(colours.values())) == 7
    clash = views.run_colours([1, 1 + len(views.RUN_COLOURS)])
    assert len(set(clash.values())) == 2


def test_one_number_format_per_quantity():
    assert views.percent(0.73734) == "73.7 %" and views.percent(None) == "–"
    assert views.points(-0.0123) == "-1.2 points" and views.points(0.004) == "+0.4 points"
    assert views.plain_number(5e-5) == "0.00005" and views.plain_number(1.0) == "1"
    assert views.epochs_text(1.0) == "1 epoch" and views.epochs_text(5) == "5 epochs"
    assert views.count(22715141) == "22,715,141"


def test_the_glossary_has_one_plain_line_per_term():
    for term in ("dev set", "warmup", "evaluations per epoch", "LoRA rank", "LoRA alpha", "LoRA dropout"):
        assert views.GLOSSARY[term].count(".") <= 2 and "\n" not in views.GLOSSARY[term]
    assert "bert-base-chinese" in views.GLOSSARY["seed article"]


def test_the_first_page_imports_no_torch_or_transformers():
    """A cold start draws its navigation and first page without the training libraries (seconds to import)."""
    code = (
        "import sys, ui, core.views, core.runs, core.data; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    app = (ROOT / "app.py").read_text()
    assert app.index("st.navigation(") < app.index("import ui")  # the real navigation is drawn before any heavy import
