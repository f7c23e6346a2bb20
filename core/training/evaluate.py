"""Scoring: class probabilities for many texts, and the test metrics the seed article reports (and more)."""

from __future__ import annotations

import functools
import os
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    precision_score,
    recall_score,
)

from core.training.config import SCORING_BATCH, SCORING_TOKENS


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX-512 BF16). There, autocast to bf16 makes training and
    scoring faster and holds accuracy (see bench/); elsewhere bf16 is emulated and slower, so it stays float32.
    LORALAB_CPU_BF16=0 turns it off, =1 forces it on."""
    forced = os.environ.get("LORALAB_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_bf16()


def autocast(device: torch.device):
    """Mixed precision where the hardware has bf16: matrix products in bf16, sensitive ops stay float32."""
    if bf16_supported(device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def cast_linears(model, dtype: torch.dtype, frozen_only: bool = False) -> dict[str, torch.Tensor]:
    """Cast the weights and biases of the model's nn.Linear layers to dtype in place; return the originals by name.

    Under bf16 autocast a Linear casts its weight to bf16 at every call; cast once beforehand, the results are the
    same to the bit and the per-call copies are gone. frozen_only: only weights that do not train (LoRA's base)."""
    originals = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not (frozen_only and module.weight.requires_grad):
            for pname, param in module.named_parameters(recurse=False):
                if param.dtype != dtype and param.dtype.is_floating_point:
                    originals[f"{name}.{pname}"] = param.data
                    param.data = param.data.to(dtype)
    return originals


def restore_linears(model, originals: dict[str, torch.Tensor]) -> None:
    """Undo cast_linears (onto the device the model has moved to since)."""
    params = dict(model.named_parameters())
    for name, value in originals.items():
        params[name].data = value.to(params[name].device)


def merged(model):
    """For LoRA, fold the adapters into the weights: scoring then costs what the plain model costs."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


def length_batches(lengths: list[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Indices in batches of up to batch_size texts and max_tokens tokens (texts x the batch's longest), shortest
    texts first. A batch is cut where the length changes once it holds a quarter of batch_size: most batches then
    hold one length, with no padding at all (on the demo test set scoring is a fifth faster than in length-sorted
    batches of 64), and a length with few texts shares a batch with its neighbours rather than run alone."""
    batches, current = [], []
    for i in np.argsort(lengths, kind="stable").tolist():
        if current and (
            len(current) == batch_size
            or (max_tokens is not None and (len(current) + 1) * lengths[i] > max_tokens)
            or (lengths[i] != lengths[current[-1]] and len(current) >= batch_size // 4)
        ):
            batches.append(current)
            current = []
        current.append(i)
    return [*batches, current] if current else batches


def ready_to_score(model):
    """Put a model that will only predict from now on in eval mode and, where its device computes in bf16, cast its
    linear layers to bf16 in place, once: what autocast computes in predict_proba, without its per-batch copies.
    Called where such a model is loaded (predict.load_run, the test scoring after training); returns the model."""
    model.eval()
    if bf16_supported(next(model.parameters()).device):
        cast_linears(model, torch.bfloat16)
    return model


@torch.inference_mode()
def predict_proba(
    model,
    tokenizer,
    texts: list[str],
    max_length: int,
    batch_size: int = SCORING_BATCH,
    max_tokens: int = SCORING_TOKENS,
) -> np.ndarray:
    """Class probabilities, one row per text, in the order given. Texts are tokenized once and batched by length.
    The model is left as it was given (its mode, dtypes and device); ready_to_score makes repeated scoring faster."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        encoded = tokenizer(texts, truncation=True, max_length=max_length)
        out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
        for idx in length_batches([len(ids) for ids in encoded["input_ids"]], batch_size, max_tokens):
            batch = tokenizer.pad({k: [v[i] for i in idx] for k, v in encoded.items()}, return_tensors="pt")
            with autocast(device):
                logits = model(**batch.to(device)).logits.float()
            out[idx] = torch.softmax(logits, dim=-1).cpu().numpy()
    finally:
        model.train(was_training)
    return out


def present_labels(y_true, y_pred) -> list[int]:
    """The classes that occur in the true or the predicted labels: those a score can say something about."""
    return sorted(set(np.asarray(y_true).tolist()) | set(np.asarray(y_pred).tolist()))


def macro_f1(y_true, y_pred) -> float:
    """The macro-F1 of dev and test, as core.training.evaluate.macro_f1_of_counts defines it for the verdict too: the
    mean F1 over the classes present in y_true or y_pred (0.8 for perfect predictions on a split lacking one of 5
    classes otherwise). The Data page warns when a split lacks a class."""
    matrix = confusion_matrix(y_true, y_pred, labels=present_labels(y_true, y_pred))
    tp = np.diag(matrix)
    return float(macro_f1_of_counts(tp, matrix.sum(axis=0) - tp, matrix.sum(axis=1) - tp))


def test_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    y_pred = probs.argmax(axis=1)
    labels = list(range(len(classes)))
    present = present_labels(y_true, y_pred)
    # Over the present classes, so that its "macro avg" is f1_macro; keyed by class id, not name, so that a class
    # named "accuracy" or "macro avg" cannot meet the report's own keys. Each class's scores go to "per_class".
    report = classification_report(y_true, y_pred, labels=present, output_dict=True, zero_division=0)
    per_class = [report.pop(str(i), None) for i in labels]  # None: a class absent from the labels and predictions
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        # Weighted by each class's rows in y_true: a class absent from it weighs nothing, whichever labels are named.
        "precision_weighted": float(
            precision_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
        ),
        "recall_weighted": float(recall_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "f1_macro": macro_f1(y_true, y_pred),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "report": report,  # accuracy, macro avg, weighted avg
        "per_class": per_class,  # precision, recall, f1-score and support of classes[i]
        "classes": classes,
    }


def macro_f1_of_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """The one macro-F1 of the project (each run's dev and test scores, the verdict and its bootstrap), from true
    positives, false positives and false negatives per class (last axis): the mean F1 over the classes present in
    the true or the predicted labels, as scikit-learn computes it with those labels and zero_division=0. A class in
    neither has no F1; counting it as 0 would mark down perfect predictions on a test set that lacks a class."""
    denom = 2 * tp + fp + fn
    present = denom > 0  # tp + fn: rows of the class; tp + fp: predictions of it
    f1 = np.divide(2 * tp, denom, out=np.zeros(np.broadcast(tp, denom).shape), where=present)
    return f1.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)
