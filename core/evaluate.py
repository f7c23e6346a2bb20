"""Scoring: class probabilities for many texts, and the test metrics the seed article reports (and more)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)


def merged(model):
    """For LoRA, fold the adapters into the weights: scoring then costs what the plain model costs."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


@torch.inference_mode()
def predict_proba(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    """Class probabilities, one row per text, in the order given. Texts are batched by length to pad less."""
    model.eval()
    device = next(model.parameters()).device
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer(
            [texts[i] for i in idx], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
        ).to(device)
        logits = model(**batch).logits.float()
        out[idx] = torch.softmax(logits, dim=-1).cpu().numpy()
    return out


def test_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    y_pred = probs.argmax(axis=1)
    labels = list(range(len(classes)))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision_weighted": float(
            precision_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
        ),
        "recall_weighted": float(recall_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "f1_macro": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "report": classification_report(
            y_true, y_pred, labels=labels, target_names=classes, output_dict=True, zero_division=0
        ),
        "classes": classes,
    }
