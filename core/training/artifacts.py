"""A run's folder: its checkpoints, and once finished its model (weights as safetensors, tokenizer, and what a
reload needs).

A run's folder is named by its id and its uid: ids start again at 1 when a data folder outlives its database (runs.db
deleted, a move to PostgreSQL, two databases on one data folder), and a new run must never find another run's
checkpoint or model there. Checkpoints and models also record the uid, and are used only by the run that wrote them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from core.store.db import Run
from core.store.settings import Settings
from core.store.storage import run_dir
from core.training.config import TrainConfig

CHECKPOINT_STATE = "lora_lab_state.json"  # written last into a checkpoint folder: without it, the folder is partial


def _written_by(state_file: Path) -> str | None:
    """The uid of the run that wrote a checkpoint state or model description (None: written before uids)."""
    try:
        return json.loads(state_file.read_text(encoding="utf-8")).get("run_uid")
    except (OSError, ValueError, AttributeError):
        return "unreadable"


def latest_checkpoint(folder: Path, run_uid: str | None) -> tuple[Path, int] | None:
    """The newest complete checkpoint that the run `run_uid` wrote in its trainer folder, and its step; None if
    there is none. A checkpoint written by another run is never returned, whatever folder it lies in."""
    found = [
        (int(path.name.removeprefix("checkpoint-")), path)
        for path in folder.glob("checkpoint-*")
        if path.name.removeprefix("checkpoint-").isdigit()
        and (path / CHECKPOINT_STATE).is_file()
        and _written_by(path / CHECKPOINT_STATE) == run_uid
    ]
    if not found:
        return None
    step, path = max(found)
    return path, step


def checkpoints_dir(settings: Settings, run: Run) -> Path:
    return run_dir(settings, run) / "trainer"


def artifact_dir(settings: Settings, run: Run) -> Path:
    return run_dir(settings, run) / "model"


def trained_model(settings: Settings, run: Run) -> Path | None:
    """The model this run saved when its training finished, once the run has recorded it (artifact_path) and the
    folder holds that run's complete model (written whole, see save_artifact); None otherwise. A run that has one
    needs no more training: a resume only scores the test set."""
    if not run.artifact_path:
        return None
    folder = settings.data_dir / run.artifact_path
    meta = folder / "lora_lab.json"
    return folder if meta.is_file() and _written_by(meta) == run.uid else None


def save_artifact(
    model, tokenizer, run: Run, config: TrainConfig, classes: list[str], folder: Path
) -> tuple[int, int]:
    """Weights as safetensors (for LoRA: adapters plus the classification head), tokenizer, and what a reload
    needs. Written to a temporary folder first, so a half-written artifact never stands in place.

    Returns the bytes of the weight files and of the tokenizer's files apart: the model size compared between
    methods is the weights' (a LoRA adapter can be smaller than the tokenizer saved beside it)."""
    tmp = folder.with_name(folder.name + ".partial")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer_files = {Path(f).name for f in tokenizer.save_pretrained(tmp)}
        meta = {
            "run_uid": run.uid,
            "method": config.method,
            "model_source": run.model_source,
            "base_revision": run.base_revision,
            "classes": classes,
            "max_length": config.max_length,
        }
        (tmp / "lora_lab.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        if folder.exists():
            # Only a model this very run saved before (it stopped before recording that) is replaced.
            if _written_by(folder / "lora_lab.json") != run.uid:
                raise FileExistsError(f"{folder} holds another run's model; it was left as it is.")
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a write that failed (disk full, say) leaves nothing behind
        raise
    weights = sum(f.stat().st_size for f in folder.rglob("*.safetensors"))
    tokenizer_bytes = sum(f.stat().st_size for f in folder.iterdir() if f.name in tokenizer_files)
    return weights, tokenizer_bytes
