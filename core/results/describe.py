"""A run in words: its name, label and colour on screen, its settings and the glossary that explains them, and how busy
the machine was while it trained."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from core.i18n import N_, _
from core.store.db import Run
from core.training import models
from core.training.config import METHOD_NAMES, PRESETS, TrainConfig, preset_config
from core.words import epochs_text, plain_number

if TYPE_CHECKING:  # pandas is imported where a table is made: the Start page, the first a cold start draws, needs none
    import pandas as pd

# One hue per method on every chart, one shade per seed (ColorBrewer's Blues and Oranges): blue and orange are told
# apart by colour-blind viewers and on a projector; the faintest shades are left out, unreadable on white.
METHOD_SHADES = {
    "full": ("#08519C", "#3182BD", "#6BAED6", "#08306B"),
    "lora": ("#A63603", "#E6550D", "#FD8D3C", "#7F2704"),
}
OTHER_SHADES = ("#252525", "#737373", "#A0A0A0")  # a method without a hue of its own

# One plain line per term, for help texts and captions: a teacher can read each aloud.
GLOSSARY = {
    "train set": N_("Train set: the examples the model learns from, one text and its label each."),
    "dev set": N_(
        "Dev set: examples kept out of training; the model is checked on them while it learns, "
        "and the version that does best on them is kept."
    ),
    "test set": N_("Test set: examples kept apart until the end, to score the finished model fairly."),
    "epochs": N_("Epochs: how many times the model reads the whole train set."),
    "batch size": N_(
        "Batch size: how many texts the model reads before each correction; lower it if memory runs out."
    ),
    "learning rate": N_(
        "Learning rate: how big each correction is; too big and training goes wild, too small and it learns slowly."
    ),
    "warmup": N_(
        "Warmup: the share of training during which the learning rate rises slowly from zero, so the first "
        "corrections do not spoil what the model already knows."
    ),
    "evaluations per epoch": N_(
        "Evaluations per epoch: how often, during each pass over the train set, the model is checked on the dev set."
    ),
    "weight decay": N_("Weight decay: keeps the weights small, so the model learns less by heart."),
    "max length": N_("Max length: texts longer than this many tokens (word pieces) are cut."),
    "seed": N_(
        "Seed: a number that fixes every random choice (order of the texts, starting weights); the same seed "
        "gives the same run again."
    ),
    "full fine-tuning": N_("Full fine-tuning: every one of the model's weights is adjusted to the new task."),
    "LoRA": N_("LoRA: the model's weights stay frozen; small add-on weights beside them are trained instead."),
    "LoRA rank": N_("LoRA rank (r): the size of LoRA's add-on matrices; a larger rank trains more weights."),
    "LoRA alpha": N_(
        "LoRA alpha: how strongly the add-ons change the model (their effect is scaled by alpha / rank)."
    ),
    "LoRA dropout": N_(
        "LoRA dropout: the share of the add-ons' inputs switched off at random while training, "
        "so they do not learn the train set by heart."
    ),
    "LoRA target layers": N_(
        "LoRA target layers: the layers of the model that get add-ons (in BERT: query, key, value)."
    ),
    "published experiment": N_(
        "Published experiment: the article this project started from, which fine-tuned "
        "bert-base-chinese to sort Chinese news titles (THUCNews) into 10 classes: 93.7 % with full fine-tuning, "
        "93.25 % with LoRA (r 8, alpha 32, 5 epochs)."
    ),
    "accuracy": N_("Accuracy: the share of test texts given the right label."),
    "macro-F1": N_(
        "Macro-F1: each class's balance of missed and wrong answers, averaged so that small classes count "
        "as much as big ones (100 % is perfect)."
    ),
    "trainable weights": N_(
        "Trainable weights: the numbers training may change; the rest of the model stays as it was."
    ),
}


SETTINGS = {  # TrainConfig field -> (name on screen, glossary term)
    "epochs": (N_("Epochs"), "epochs"),
    "batch_size": (N_("Batch size"), "batch size"),
    "learning_rate": (N_("Learning rate"), "learning rate"),
    "warmup_ratio": (N_("Warmup"), "warmup"),
    "evals_per_epoch": (N_("Evaluations per epoch"), "evaluations per epoch"),
    "weight_decay": (N_("Weight decay"), "weight decay"),
    "max_length": (N_("Max length (tokens)"), "max length"),
    "seed": (N_("Seed"), "seed"),
    "lora_r": (N_("LoRA rank"), "LoRA rank"),
    "lora_alpha": (N_("LoRA alpha"), "LoRA alpha"),
    "lora_dropout": (N_("LoRA dropout"), "LoRA dropout"),
    "lora_targets": (N_("LoRA target layers"), "LoRA target layers"),
}


def settings_frame(run: Run) -> pd.DataFrame:
    """A run's settings in words, one per row with what it means (LoRA's only for a LoRA run)."""
    import pandas as pd

    rows = []
    for field, (name, term) in SETTINGS.items():
        value = (run.config or {}).get(field)
        if value is None or (field.startswith("lora_") and run.method != "lora"):
            continue
        if field in ("warmup_ratio", "lora_dropout"):
            value = _("{number} %", number=plain_number(100 * value))
        elif isinstance(value, float):
            value = plain_number(value)
        meaning = re.split(r": |：", _(GLOSSARY[term]), maxsplit=1)[1]  # the line without its term
        rows.append({_("setting"): _(name), _("value"): str(value), _("what it means"): meaning})
    return pd.DataFrame(rows)


OWN_SETTINGS = N_("own settings")  # a run whose settings are no preset's


def preset_of(config: dict | None) -> str:
    """The dashboard preset whose settings a run has (its seed aside), else 'own settings': a name in English, as
    PRESETS keys it (run_facts writes it in the reader's language)."""
    if config:
        settings = {**TrainConfig.from_dict(config).to_dict(), "seed": None}
        for name in PRESETS:
            if {**preset_config(name, settings["method"]).to_dict(), "seed": None} == settings:
                return name
    return OWN_SETTINGS


def run_facts(run: Run) -> dict[str, str]:
    """What tells runs apart, in words (the reader's language), in the order a label lists them."""
    config = run.config or {}
    return {
        "method": _(METHOD_NAMES[run.method]) if run.method in METHOD_NAMES else run.method,
        "preset": _(preset_of(config)),
        "epochs": epochs_text(config.get("epochs")),
        "seed": _("seed {seed}", seed=config.get("seed", "?")),
        "dataset": run.dataset_name,
        "model": "" if run.model_source == models.BUNDLED else models.describe(run.model_source),
    }


def settings_text(run: Run) -> str:
    """Preset, epochs and seed in words: 'quick demo · 1 epoch · seed 42'."""
    facts = run_facts(run)
    return " · ".join(facts[k] for k in ("preset", "epochs", "seed"))


def run_label(run: Run, among: list[Run] | None = None) -> str:
    """How a run is named across the dashboard: its number, its method and what tells it apart.

    Alone: '#12 LoRA · 5 epochs · seed 42 · BBC News titles (demo)'. Shown with others (`among`, e.g. the runs on
    one chart): only what differs between them, e.g. '#12 LoRA · seed 43', so legends and titles stay short.
    """
    facts = run_facts(run)
    if among and len(among) > 1:
        every = [run_facts(r) for r in among]
        keep = {"method"} | {k for k in facts if len({f[k] for f in every}) > 1}
        if {"preset", "epochs"} <= keep and preset_of(run.config) != OWN_SETTINGS:
            keep.discard("epochs")  # the preset's name says the epochs
    else:
        keep = {"method", "epochs", "seed", "dataset", "model"}
    return " · ".join([f"#{run.id} {facts['method']}"] + [v for k, v in facts.items() if k in keep - {"method"} and v])


def column_label(run: Run, among: list[Run]) -> str:
    """A run as a table column's header, short enough for six side by side and their texts on a 1024 px screen: its
    number, its method, and its seed where the seeds differ ('#4 LoRA · 43'). The whole run_label goes in the help."""
    seeds = {(r.config or {}).get("seed") for r in among}
    seed = f" · {(run.config or {}).get('seed', '?')}" if len(seeds) > 1 else ""
    method = _("full") if run.method == "full" else run_facts(run)["method"]  # 'full': short for full fine-tuning
    return f"#{run.id} {method}{seed}"


def run_colours(runs: list[Run]) -> dict[int, str]:
    """One colour per run: its method's hue (full fine-tuning blue, LoRA orange), in a shade by its seed among the
    runs of that method shown together (the lowest seed darkest), so the two methods never look alike."""
    out: dict[int, str] = {}
    for method in dict.fromkeys(r.method for r in runs):
        shades = METHOD_SHADES.get(method, OTHER_SHADES)
        same = sorted({(int((r.config or {}).get("seed") or 0), r.id) for r in runs if r.method == method})
        out |= {run_id: shades[k % len(shades)] for k, (__, run_id) in enumerate(same)}
    return out


BUSY_SHARE = 0.25  # other work used more than a quarter of the machine's CPUs: a run's times are not its own


def machine_busy(run: Run) -> float | None:
    """The share of the machine's CPUs that other work used while the run trained (0: none, 1: all of them): its
    mean load average less its own CPU use; None when not recorded (older runs)."""
    if run.load_average is None or not run.cpu_count:
        return None
    return max(0.0, run.load_average - (run.cpu_percent or 0.0) / 100) / run.cpu_count


def machine_text(run: Run) -> str:
    """How busy the machine was while the run trained, in words for a table."""
    busy = machine_busy(run)
    if busy is None:
        return _("not measured")
    if busy <= BUSY_SHARE:
        return _("quiet")
    return _("busy: others' work {cpus:.1f} CPUs, on {count}", cpus=busy * run.cpu_count, count=run.cpu_count)


def times_note(runs: list[Run]) -> str | None:
    """Why the training times of these runs are not a fair measure (or not comparable), in plain words; None when
    nothing speaks against them."""
    reasons = []
    devices = sorted({r.device for r in runs if r.device})
    if len(devices) > 1:
        reasons.append(_("they trained on different devices ({devices})", devices=", ".join(devices)))
    for run in runs:
        busy = machine_busy(run)
        if busy is not None and busy > BUSY_SHARE:
            reasons.append(
                _(
                    "while run #{run} trained, other programs kept the machine busy "
                    "(about {cpus:.1f} CPUs' worth of work, on {count} CPUs)",
                    run=run.id,
                    cpus=busy * run.cpu_count,
                    count=run.cpu_count,
                )
            )
    if not reasons:
        return None
    reasons_text = _("; ").join(reasons)
    if len(runs) > 1:
        return _(
            "These times are not comparable: {reasons}. Accuracy, weights and memory are not affected; to compare "
            "times, train again when the machine is quiet.",
            reasons=reasons_text,
        )
    return _(
        "This time is not a fair measure: {reasons}. Accuracy, weights and memory are not affected; to compare "
        "times, train again when the machine is quiet.",
        reasons=reasons_text,
    )
