"""Scoring predictions and drawing the plots DVC and humans read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure  # the object API needs no GUI backend
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

from pair_classifier.io_utils import write_json

DECIMALS = 4
PLOT_DPI = 120
CONFUSION_DATA = "confusion.json"
ROC_DATA = "roc.json"
PR_DATA = "precision_recall.json"
CONFUSION_PNG = "confusion_matrix.png"
ROC_PNG = "roc.png"
PR_PNG = "precision_recall.png"


def _average(class_names: list[str]) -> str:
    return "binary" if len(class_names) == 2 else "macro"


def score_predictions(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    probabilities: np.ndarray | None,
    class_names: list[str],
    positive_index: int,
) -> dict[str, float]:
    """Accuracy, F1, precision, recall (positive class if binary, else macro), ROC-AUC."""
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
    if probabilities is not None and len(np.unique(y_true)) > 1:
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
    """Scores plus confusion matrix and per-class report: the evaluate stage's metrics file."""
    labels = list(range(len(class_names)))
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    per_class = classification_report(
        y_true, y_pred, labels=labels, target_names=class_names, output_dict=True, zero_division=0
    )
    return score_predictions(y_true, y_pred, probabilities, class_names, positive_index) | {
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


def save_confusion_png(report: dict[str, Any], class_names: list[str], path: Path) -> None:
    """The confusion matrix as a PNG, counts written in the cells."""
    matrix = np.array(
        [[report["confusion_matrix"][a][p] for p in class_names] for a in class_names]
    )
    figure = Figure(figsize=(4.5, 4))
    axes = figure.subplots()
    axes.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        axes.text(j, i, str(value), ha="center", va="center")
    axes.set_xticks(range(len(class_names)), class_names, rotation=30, ha="right")
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title(f"accuracy {report['accuracy']:.3f}, F1 {report['f1']:.3f}")
    save_figure(figure, path)


def save_curve_png(points: list[dict[str, float]], x: str, y: str, title: str, path: Path) -> None:
    """One curve (ROC, precision-recall) as a PNG beside its DVC plot data."""
    figure = Figure(figsize=(4.5, 4))
    axes = figure.subplots()
    axes.plot([p[x] for p in points], [p[y] for p in points])
    axes.set_xlabel(x)
    axes.set_ylabel(y)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    save_figure(figure, path)


def save_loss_png(curves: dict[str, list[tuple[float, float]]], path: Path) -> None:
    """Loss curves (step, value) of training and validation."""
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    for name, points in curves.items():
        if points:
            steps, values = zip(*points)
            axes.plot(steps, values, label=name, marker="o" if len(points) < 20 else None)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.legend()
    axes.grid(alpha=0.3)
    save_figure(figure, path)


def save_figure(figure: Figure, path: Path) -> None:
    """Write a matplotlib figure; the folder is created if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=PLOT_DPI)


def write_evaluation(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    class_names: list[str],
    positive_index: int,
    roc_points: int,
    plots_dir: Path,
) -> dict[str, Any]:
    """Metrics report, DVC plot data (JSON) and PNG copies for one evaluated split."""
    y_pred = probabilities.argmax(axis=1)
    report = evaluation_report(y_true, y_pred, probabilities, class_names, positive_index)
    curves = curve_data(y_true, probabilities, positive_index, roc_points)
    plots_dir.mkdir(parents=True, exist_ok=True)
    write_json(plots_dir / CONFUSION_DATA, confusion_rows(y_true, y_pred, class_names))
    write_json(plots_dir / ROC_DATA, curves["roc"])
    write_json(plots_dir / PR_DATA, curves["precision_recall"])
    save_confusion_png(report, class_names, plots_dir / CONFUSION_PNG)
    save_curve_png(
        curves["roc"],
        "fpr",
        "tpr",
        f"ROC (AUC {report.get('roc_auc', float('nan')):.3f})",
        plots_dir / ROC_PNG,
    )
    save_curve_png(
        curves["precision_recall"],
        "recall",
        "precision",
        "Precision-recall",
        plots_dir / PR_PNG,
    )
    return report
