"""Scoring predictions: the scores, confusion matrix and curve points the metrics and plot data
files hold. Drawing them is ``plots``'s job, so scoring needs no matplotlib."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

logger = logging.getLogger(__name__)

DECIMALS = 4
# Metrics-file keys that say why a score or the curves are missing (the score itself is null).
ROC_AUC_UNDEFINED = "roc_auc_undefined"
CURVES_SKIPPED = "curves_skipped"


def _average(class_names: list[str]) -> str:
    return "binary" if len(class_names) == 2 else "macro"


def absent_classes(labels: np.ndarray, class_names: list[str]) -> list[str]:
    """The classes (by name) that no label in ``labels`` (class indices) belongs to."""
    return [name for index, name in enumerate(class_names) if not np.any(labels == index)]


def roc_auc_undefined(y_true: np.ndarray, class_names: list[str]) -> str | None:
    """Why ROC-AUC cannot be computed on these labels, or ``None`` when it can.

    Binary ROC-AUC needs both classes and one-vs-rest needs every class: scikit-learn
    answers NaN otherwise, which is neither a score nor valid JSON."""
    absent = absent_classes(y_true, class_names)
    if not absent:
        return None
    return f"no pair of class {', '.join(map(repr, absent))} among the {len(y_true)} scored"


def curves_undefined(y_true: np.ndarray, class_names: list[str], positive_index: int) -> str | None:
    """Why the positive class's ROC and precision-recall curves do not exist, or ``None``.

    They need pairs of the positive class and pairs of another one: with one side missing
    scikit-learn returns NaN rates (ROC) or a made-up recall of one (precision-recall)."""
    positives = int(np.sum(y_true == positive_index))
    name = class_names[positive_index]
    if positives == 0:
        return f"no pair of the positive class {name!r} among the {len(y_true)} scored"
    if positives == len(y_true):
        return f"all {len(y_true)} pairs scored are of the positive class {name!r}"
    return None


def score_predictions(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    probabilities: np.ndarray | None,
    class_names: list[str],
    positive_index: int,
) -> dict[str, float]:
    """Accuracy, F1, precision, recall (positive class if binary, else macro), and ROC-AUC
    when ``probabilities`` are given and it is defined (see ``roc_auc_undefined``)."""
    average = _average(class_names)
    kwargs: dict[str, Any] = {"average": average, "zero_division": 0}
    if average == "binary":
        kwargs["pos_label"] = positive_index
    scores = {
        "accuracy": accuracy_score(y_true, y_pred),
        "f1": f1_score(y_true, y_pred, **kwargs),
        "precision": precision_score(y_true, y_pred, **kwargs),
        "recall": recall_score(y_true, y_pred, **kwargs),
    }
    if probabilities is not None and roc_auc_undefined(y_true, class_names) is None:
        if average == "binary":
            scores["roc_auc"] = roc_auc_score(
                y_true == positive_index, probabilities[:, positive_index]
            )
        else:
            scores["roc_auc"] = roc_auc_score(
                y_true, probabilities, multi_class="ovr", labels=list(range(len(class_names)))
            )
    return {key: round(float(value), DECIMALS) for key, value in scores.items()}


def evaluation_report(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    probabilities: np.ndarray,
    class_names: list[str],
    positive_index: int,
) -> dict[str, Any]:
    """Scores plus confusion matrix and per-class report: the evaluate stage's metrics file.

    An undefined ROC-AUC is written as null with the reason beside it, so the file stays valid
    JSON and ``dvc metrics diff`` shows why the score is missing."""
    labels = list(range(len(class_names)))
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    per_class = classification_report(
        y_true, y_pred, labels=labels, target_names=class_names, output_dict=True, zero_division=0
    )
    scores: dict[str, Any] = dict(
        score_predictions(y_true, y_pred, probabilities, class_names, positive_index)
    )
    if (reason := roc_auc_undefined(y_true, class_names)) is not None:
        scores |= {"roc_auc": None, ROC_AUC_UNDEFINED: reason}
    return scores | {
        "pairs": int(len(y_true)),
        "confusion_matrix": {
            actual: {predicted: int(matrix[i, j]) for j, predicted in enumerate(class_names)}
            for i, actual in enumerate(class_names)
        },
        "per_class": {
            name: {key: round(float(value), DECIMALS) for key, value in per_class[name].items()}
            for name in class_names
        },
    }


def _downsample(points: dict[str, np.ndarray], keep: int) -> list[dict[str, float]]:
    """At most ``keep`` evenly spaced points of a curve, rounded, for DVC plots."""
    size = len(next(iter(points.values())))
    index = np.unique(np.linspace(0, size - 1, num=min(keep, size)).round().astype(int))
    return [
        {name: round(float(values[i]), DECIMALS) for name, values in points.items()} for i in index
    ]


def curve_data(
    y_true: np.ndarray, probabilities: np.ndarray, positive_index: int, keep: int
) -> dict[str, list[dict[str, float]]]:
    """ROC and precision-recall points of the positive class, thinned to ``keep`` points."""
    positive = y_true == positive_index
    scores = probabilities[:, positive_index]
    fpr, tpr, _ = roc_curve(positive, scores)
    precision, recall, _ = precision_recall_curve(positive, scores)
    return {
        "roc": _downsample({"fpr": fpr, "tpr": tpr}, keep),
        "precision_recall": _downsample({"recall": recall, "precision": precision}, keep),
    }


def confusion_rows(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]
) -> list[dict[str, str]]:
    """One row per pair, the shape DVC's confusion template reads."""
    return [{"actual": class_names[a], "predicted": class_names[p]} for a, p in zip(y_true, y_pred)]
