"""A run in words: its name, label and colour on screen, its settings and the glossary that explains them, and how busy
the machine was while it trained."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
    "train set": "Train set: the examples the model learns from, one text and its label each.",
    "dev set": "Dev set: examples kept out of training; the model is checked on them while it learns, "
    "and the version that does best on them is kept.",
    "test set": "Test set: examples kept apart until the end, to score the finished model fairly.",
    "epochs": "Epochs: how many times the model reads the whole train set.",
    "batch size": "Batch size: how many texts the model reads before each correction; lower it if memory runs out.",
    "learning rate": "Learning rate: how big each correction is; too big and training goes wild, too small and "
    "it learns slowly.",
    "warmup": "Warmup: the share of training during which the learning rate rises slowly from zero, so the first "
    "corrections do not spoil what the model already knows.",
    "evaluations per epoch": "Evaluations per epoch: how often, during each pass over the train set, the model is "
    "checked on the dev set.",
    "weight decay": "Weight decay: keeps the weights small, so the model learns less by heart.",
    "max length": "Max length: texts longer than this many tokens (word pieces) are cut.",
    "seed": "Seed: a number that fixes every random choice (order of the texts, starting weights); the same seed "
    "gives the same run again.",
    "full fine-tuning": "Full fine-tuning: every one of the model's weights is adjusted to the new task.",
    "LoRA": "LoRA: the model's weights stay frozen; small add-on weights beside them are trained instead.",
    "LoRA rank": "LoRA rank (r): the size of LoRA's add-on matrices; a larger rank trains more weights.",
    "LoRA alpha": "LoRA alpha: how strongly the add-ons change the model (their effect is scaled by alpha / rank).",
    "LoRA dropout": "LoRA dropout: the share of the add-ons' inputs switched off at random while training, "
    "so they do not learn the train set by heart.",
    "LoRA target layers": "LoRA target layers: the layers of the model that get add-ons (in BERT: query, key, value).",
    "published experiment": "Published experiment: the article this project started from, which fine-tuned "
    "bert-base-chinese to sort Chinese news titles (THUCNews) into 10 classes: 93.7 % with full fine-tuning, "
    "93.25 % with LoRA (r 8, alpha 32, 5 epochs).",
    "accuracy": "Accuracy: the share of test texts given the right label.",
    "macro-F1": "Macro-F1: each class's balance of missed and wrong answers, averaged so that small classes count "
    "as much as big ones (100 % is perfect).",
    "trainable weights": "Trainable weights: the numbers training may change; the rest of the model stays as it was.",
}


SETTINGS = {  # TrainConfig field -> (name on screen, glossary term)
    "epochs": ("Epochs", "epochs"),
    "batch_size": ("Batch size", "batch size"),
    "learning_rate": ("Learning rate", "learning rate"),
    "warmup_ratio": ("Warmup", "warmup"),
    "evals_per_epoch": ("Evaluations per epoch", "evaluations per epoch"),
    "weight_decay": ("Weight decay", "weight decay"),
    "max_length": ("Max length (tokens)", "max length"),
    "seed": ("Seed", "seed"),
    "lora_r": ("LoRA rank", "LoRA rank"),
    "lora_alpha": ("LoRA alpha", "LoRA alpha"),
    "lora_dropout": ("LoRA dropout", "LoRA dropout"),
    "lora_targets": ("LoRA target layers", "LoRA target layers"),
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
            value = f"{plain_number(100 * value)} %"
        elif isinstance(value, float):
            value = plain_number(value)
        rows.append({"setting": name, "value": str(value), "what it means": GLOSSARY[term].split(": ", 1)[1]})
    return pd.DataFrame(rows)


def preset_of(config: dict | None) -> str:
    """The dashboard preset whose settings a run has (its seed aside), else 'own settings'."""
    if config:
        settings = {**TrainConfig.from_dict(config).to_dict(), "seed": None}
        for name in PRESETS:
            if {**preset_config(name, settings["method"]).to_dict(), "seed": None} == settings:
                return name
    return "own settings"


def run_facts(run: Run) -> dict[str, str]:
    """What tells runs apart, in words, in the order a label lists them."""
    config = run.config or {}
    return {
        "method": METHOD_NAMES.get(run.method, run.method),
        "preset": preset_of(config),
        "epochs": epochs_text(config.get("epochs")),
        "seed": f"seed {config.get('seed', '?')}",
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
        if {"preset", "epochs"} <= keep and facts["preset"] != "own settings":
            keep.discard("epochs")  # the preset's name says the epochs
    else:
        keep = {"method", "epochs", "seed", "dataset", "model"}
    return " · ".join([f"#{run.id} {facts['method']}"] + [v for k, v in facts.items() if k in keep - {"method"} and v])


def column_label(run: Run, among: list[Run]) -> str:
    """A run as a table column's header, short enough for six side by side and their texts on a 1024 px screen: its
    number, its method, and its seed where the seeds differ ('#4 LoRA · 43'). The whole run_label goes in the help."""
    seeds = {(r.config or {}).get("seed") for r in among}
    seed = f" · {(run.config or {}).get('seed', '?')}" if len(seeds) > 1 else ""
    return f"#{run.id} {'full' if run.method == 'full' else METHOD_NAMES.get(run.method, run.method)}{seed}"


def run_colours(runs: list[Run]) -> dict[int, str]:
    """One colour per run: its method's hue (full fine-tuning blue, LoRA orange), in a shade by its seed among the
    runs of that method shown together (the lowest seed darkest), so the two methods never look alike."""
    out: dict[int, str] = {}
    for method in dict.fromkeys(r.method for r in runs):
        shades = METHOD_SHADES.get(method, OTHER_SHADES)
        same = sorted({(int((r.config or {}).get("seed") or 0), r.id) for r in runs if r.method == method})
        out |= {run_id: shades[k % len(shades)] for k, (_, run_id) in enumerate(same)}
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
        return "not measured"
    if busy <= BUSY_SHARE:
        return "quiet"
    return f"busy: others' work {busy * run.cpu_count:.1f} CPUs, on {run.cpu_count}"


def times_note(runs: list[Run]) -> str | None:
    """Why the training times of these runs are not a fair measure (or not comparable), in plain words; None when
    nothing speaks against them."""
    reasons = []
    devices = sorted({r.device for r in runs if r.device})
    if len(devices) > 1:
        reasons.append(f"they trained on different devices ({', '.join(devices)})")
    for run in runs:
        busy = machine_busy(run)
        if busy is not None and busy > BUSY_SHARE:
            reasons.append(
                f"while run #{run.id} trained, other programs kept the machine busy "
                f"(about {busy * run.cpu_count:.1f} CPUs' worth of work, on {run.cpu_count} CPUs)"
            )
    if not reasons:
        return None
    what = "These times are not comparable" if len(runs) > 1 else "This time is not a fair measure"
    after = "Accuracy, weights and memory are not affected; to compare times, train again when the machine is quiet."
    return f"{what}: {'; '.join(reasons)}. {after}"
