"""Loading a finished run's model in any process, and predicting labels for new texts."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.i18n import N_, _
from core.store.db import Run, RunStatus
from core.store.settings import Settings
from core.training import coverage, evaluate, models


class RunNotReady(Exception):
    """A run that has no model to predict with, in plain words."""


NOT_COMPLETED = {  # a run's status -> why it cannot predict, whole, so that the status reads in the reader's words
    RunStatus.QUEUED.value: N_("Run {run} is queued; only completed runs can predict."),
    RunStatus.RUNNING.value: N_("Run {run} is running; only completed runs can predict."),
    RunStatus.FAILED.value: N_("Run {run} is failed; only completed runs can predict."),
    RunStatus.CANCELLED.value: N_("Run {run} is cancelled; only completed runs can predict."),
    RunStatus.CRASHED.value: N_("Run {run} is crashed; only completed runs can predict."),
}


def sure_from(classes: int) -> float:
    """The top probability from which an answer is drawn as sure: halfway from a blind guess (1 / classes) to
    certain. With 10 classes, 55 %; with 2, 75 %. Below it the model leans to a class more than it knows it."""
    return (1 + 1 / classes) / 2


@dataclass
class Predictor:
    model: object
    tokenizer: object
    classes: list[str]
    max_length: int
    # One text at a time through the model: an explanation hooks its embedding layer while it runs (explain.py), and
    # a page's loaded model is shared by every browser tab.
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        with self.lock:
            return evaluate.predict_proba(self.model, self.tokenizer, texts, self.max_length)

    def reading(self, text: str) -> dict[str, float | int]:
        """How the model reads a text: its tokens, how many fit in max_length (the rest is cut), and the share of
        tokens unknown to the model's vocabulary (high for a language the model never learnt)."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        unknown, __ = coverage.unknown_in(self.tokenizer, [ids])
        room = self.max_length - self.tokenizer.num_special_tokens_to_add()
        return {"tokens": len(ids), "read": min(len(ids), room), "unknown_share": unknown / len(ids) if ids else 0.0}

    def predict(self, text: str) -> tuple[str, dict[str, float]]:
        """The predicted class name and every class's probability for one text."""
        probs = self.predict_proba([text])[0]
        return self.classes[int(probs.argmax())], {c: float(p) for c, p in zip(self.classes, probs)}


def load_artifact(folder: Path, settings: Settings) -> Predictor:
    """Full fine-tuning: the saved model. LoRA: the base model, the saved adapters and head, merged."""
    from transformers import AutoTokenizer

    meta = json.loads((folder / "lora_lab.json").read_text(encoding="utf-8"))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))  # saved beside the weights by the run
    if meta["method"] == "lora":
        from peft import PeftModel

        trained_on, now = meta.get("base_revision"), models.revision(meta["model_source"], settings)
        if trained_on and now and trained_on != now:
            raise RunNotReady(
                _(
                    "The base model {model} has changed since this run was trained ({then} then, {now} now): its LoRA "
                    "adapters fit only the old weights. Restore that model, or train the run again.",
                    model=models.describe(meta["model_source"]),
                    then=trained_on[:19],
                    now=now[:19],
                )
            )
        base = models.load_classifier(meta["model_source"], meta["classes"], settings)
        model = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    else:
        model = models.load_classifier(str(folder), meta["classes"], settings)
    model.eval()
    return Predictor(model, tokenizer, meta["classes"], meta["max_length"])


def artifact_folder(settings: Settings, run: Run) -> Path:
    """The run's model folder, or RunNotReady saying why there is none."""
    if run.status != RunStatus.COMPLETED.value:
        why = NOT_COMPLETED.get(run.status, N_("Run {run} is {status}; only completed runs can predict."))
        raise RunNotReady(_(why, run=run.id, status=run.status))
    if not run.artifact_path:
        raise RunNotReady(_("Run {run} finished without saving a model, so it cannot predict.", run=run.id))
    folder = settings.data_dir / run.artifact_path
    if not (folder / "lora_lab.json").is_file():
        raise RunNotReady(_("Run {run}'s model files are missing from {folder}.", run=run.id, folder=folder))
    return folder


def load_run(settings: Settings, run: Run) -> Predictor:
    """A finished run's model, ready to predict (evaluate.ready_to_score)."""
    predictor = load_artifact(artifact_folder(settings, run), settings)
    evaluate.ready_to_score(predictor.model)
    return predictor
