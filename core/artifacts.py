"""A finished run's model folder: weights as safetensors, tokenizer, and what a reload needs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from core.config import TrainConfig
from core.db import Run
from core.settings import Settings

CHECKPOINT_STATE = "lora_lab_state.json"  # written last into a checkpoint folder: without it, the folder is partial


def latest_checkpoint(folder: Path) -> tuple[Path, int] | None:
    """The newest complete checkpoint in a run's trainer folder, and its step; None if there is none."""
    found = [
        (int(path.name.removeprefix("checkpoint-")), path)
        for path in folder.glob("checkpoint-*")
        if path.name.removeprefix("checkpoint-").isdigit() and (path / CHECKPOINT_STATE).is_file()
    ]
    if not found:
        return None
    step, path = max(found)
    return path, step


def checkpoints_dir(settings: Settings, run_id: int) -> Path:
    return settings.runs_dir / str(run_id) / "trainer"


def artifact_dir(settings: Settings, run_id: int) -> Path:
    return settings.runs_dir / str(run_id) / "model"


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
            "method": config.method,
            "model_source": run.model_source,
            "classes": classes,
            "max_length": config.max_length,
        }
        (tmp / "lora_lab.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a write that failed (disk full, say) leaves nothing behind
        raise
    weights = sum(f.stat().st_size for f in folder.rglob("*.safetensors"))
    tokenizer_bytes = sum(f.stat().st_size for f in folder.iterdir() if f.name in tokenizer_files)
    return weights, tokenizer_bytes
