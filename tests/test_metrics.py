"""One macro-F1 for dev and test, and a warning at upload when a split lacks a class."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import EvalPrediction

from core.data import checking, reading
from core.training import evaluate
from core.training.trainer import dev_metrics
from tests.conftest import make_rows, write_csv

CLASSES = ["business", "entertainment", "politics", "sport", "tech"]


def test_perfect_predictions_on_a_split_lacking_a_class_score_the_same_on_dev_and_test():
    y_true = np.array([0, 1, 2, 3, 0, 1, 2, 3])  # no "tech" in this split
    probs = np.eye(5)[y_true]  # every prediction right
    test = evaluate.test_metrics(y_true, probs, CLASSES)
    dev = dev_metrics(EvalPrediction(predictions=probs, label_ids=y_true))
    assert test["f1_macro"] == pytest.approx(1.0)
    assert dev["f1_macro"] == pytest.approx(test["f1_macro"])
    assert test["report"]["macro avg"]["f1-score"] == pytest.approx(test["f1_macro"])  # the report agrees
    assert test["precision_weighted"] == test["recall_weighted"] == test["accuracy"] == 1.0
    assert np.array(test["confusion_matrix"]).shape == (5, 5)  # the matrix keeps every class


def test_a_predicted_class_absent_from_the_split_still_counts_as_a_mistake():
    y_true = np.array([0, 0, 1, 1])
    probs = np.eye(5)[[0, 4, 1, 1]]  # one "business" predicted as "tech", which the split lacks
    test = evaluate.test_metrics(y_true, probs, CLASSES)
    dev = dev_metrics(EvalPrediction(predictions=probs, label_ids=y_true))
    assert test["f1_macro"] == pytest.approx(dev["f1_macro"]) == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_upload_warns_when_dev_or_test_lacks_a_class(settings, tmp_path):
    rows = make_rows(30, 1)
    write_csv(tmp_path / "train.csv", rows)
    write_csv(tmp_path / "dev.csv", make_rows(9, 2))
    write_csv(tmp_path / "test.csv", [r for r in make_rows(12, 3) if r[1] != 2])  # no class 2
    check = checking.check_dataset(
        reading.files_from_folder(tmp_path), settings, class_names=["sport", "money", "tech"]
    )
    assert check.ok, check.errors
    lacking = [w for w in check.warnings if "no rows of class" in w]
    assert len(lacking) == 1 and lacking[0].startswith("test.csv has no rows of class 'tech'"), check.warnings


def test_macro_f1_is_scikit_learns_over_the_classes_present_in_the_labels_or_the_predictions():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for _ in range(50):
        y_true, y_pred = rng.integers(0, 6, size=(2, int(rng.integers(1, 30))))
        present = sorted(set(y_true) | set(y_pred))
        expected = f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
        assert evaluate.macro_f1(y_true, y_pred) == pytest.approx(expected)


@pytest.mark.parametrize("clash", ["accuracy", "macro avg", "weighted avg"])
def test_a_class_named_like_a_report_average_keeps_its_own_f1(clash, tmp_path):
    """Class names are data: a class called 'accuracy' or 'macro avg' is a class like any other."""
    from core.results.comparisons import per_class_f1
    from core.store.db import Run

    classes = ["sport", clash, "tech"]
    y_true = np.array([0, 0, 1, 1, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 1, 1, 2, 0])  # F1: sport 0.5, the clash 8/9, tech 2/3
    run = Run(id=7, method="lora", test_metrics=evaluate.test_metrics(y_true, np.eye(3)[preds], classes))
    table = per_class_f1([run])
    assert table.index.tolist() == classes
    assert table[7].tolist() == pytest.approx([0.5, 8 / 9, 2 / 3])


def test_runs_recorded_before_per_class_scores_show_a_clashing_class_as_unknown_not_as_an_average():
    from sklearn.metrics import classification_report

    from core.results.comparisons import per_class_f1
    from core.store.db import Run

    y_true, preds = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 0])
    runs = []
    for run_id, clash in ((1, "accuracy"), (2, "macro avg")):
        classes = ["sport", clash, "tech"]
        report = classification_report(y_true, preds, target_names=classes, output_dict=True, zero_division=0)
        runs.append(Run(id=run_id, method="lora", test_metrics={"classes": classes, "report": report}))
    for run in runs:  # the report's own keys overwrote the class: its F1 is not known
        f1 = per_class_f1([run])[run.id]
        assert f1.isna().tolist() == [False, True, False] and f1.tolist()[::2] == pytest.approx([0.5, 2 / 3])
