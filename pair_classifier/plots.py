"""Every figure the pipeline draws, for humans (DVC draws the JSON plot data itself), and the
evaluate stage's plot folder. matplotlib is imported here alone, through its object API, which
needs no GUI backend: scoring (``evaluation``) runs without it.
"""

from __future__ import annotations

import logging
from itertools import cycle
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from pair_classifier.evaluation import (
    CURVES_SKIPPED,
    confusion_rows,
    curve_data,
    curves_undefined,
    evaluation_report,
)
from pair_classifier.io_utils import replace_dir_atomically, replacing_file, write_json

logger = logging.getLogger(__name__)

PLOT_DPI = 120
CONFUSION_DATA = "confusion.json"
ROC_DATA = "roc.json"
PR_DATA = "precision_recall.json"
CONFUSION_PNG = "confusion_matrix.png"
ROC_PNG = "roc.png"
PR_PNG = "precision_recall.png"
# Pareto plot: variants crowd together (the fp32 students share one F1), so each gets its own
# colour and marker, a number beside its point and a legend line; names never touch the points.
PARETO_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
PARETO_COLORS = "tab10"
PARETO_MARKER_SIZE = 60
PARETO_NUMBER_OFFSET = (5, 5)  # points to the upper right of the marker
PARETO_FONT_SIZE = 8
PARETO_FIGSIZE = (9, 4.5)


def save_figure(figure: Figure, path: Path) -> None:
    """Write a matplotlib figure through a temporary file and an atomic rename, so a failed
    save never leaves a truncated PNG behind; the folder is created if needed."""
    figure.tight_layout()
    with replacing_file(path) as staging:
        figure.savefig(staging, dpi=PLOT_DPI)


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


def save_pareto_png(results: dict[str, dict[str, Any]], path: Path, batch_size: int) -> None:
    """F1 against throughput of every variant, for humans (DVC draws pareto.json itself).

    Each variant has its own colour and marker and a number beside its point, both repeated in
    the legend outside the axes, so variants with the same F1 and close speeds stay readable."""
    figure = Figure(figsize=PARETO_FIGSIZE)
    axes = figure.subplots()
    palette = cycle(colormaps[PARETO_COLORS].colors)
    for number, ((name, result), marker, color) in enumerate(
        zip(results.items(), cycle(PARETO_MARKERS), palette), start=1
    ):
        point = (result["throughput_pairs_per_s"], result["f1"])
        axes.scatter(
            *point, marker=marker, color=color, s=PARETO_MARKER_SIZE, label=f"{number}  {name}"
        )
        axes.annotate(
            str(number),
            point,
            xytext=PARETO_NUMBER_OFFSET,
            textcoords="offset points",
            fontsize=PARETO_FONT_SIZE,
        )
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(LogFormatter())  # 100, not 10^2
    axes.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
    axes.set_xlabel(f"throughput (pairs/s, batch {batch_size}, log scale)")
    axes.set_ylabel("test F1")
    axes.grid(alpha=0.3)
    axes.legend(
        title="variant",
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=PARETO_FONT_SIZE,
        title_fontsize=PARETO_FONT_SIZE,
        borderaxespad=0.0,
    )
    save_figure(figure, path)


def write_evaluation(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    class_names: list[str],
    positive_index: int,
    roc_points: int,
    plots_dir: Path,
) -> dict[str, Any]:
    """Metrics report (``evaluation``), DVC plot data (JSON) and PNG copies of one split.

    ``plots_dir`` (the evaluate stage's own DVC output) is filled in a staging folder and
    swapped in whole, so a failure part-way leaves the previous plots, not a mix. Curves that
    do not exist (see ``curves_undefined``) are left out, their reason put in the report:
    ``dvc plots show`` reports a missing file as missing, while an empty list trips its
    converter into an opaque 'NoneType' warning.
    """
    y_pred = probabilities.argmax(axis=1)
    report = evaluation_report(y_true, y_pred, probabilities, class_names, positive_index)
    skipped = curves_undefined(y_true, class_names, positive_index)
    if skipped is not None:
        report[CURVES_SKIPPED] = f"ROC and precision-recall curves not written: {skipped}"

    def write(staging: Path) -> None:
        write_json(staging / CONFUSION_DATA, confusion_rows(y_true, y_pred, class_names))
        save_confusion_png(report, class_names, staging / CONFUSION_PNG)
        if skipped is not None:
            return
        curves = curve_data(y_true, probabilities, positive_index, roc_points)
        write_json(staging / ROC_DATA, curves["roc"])
        write_json(staging / PR_DATA, curves["precision_recall"])
        # None in one-vs-rest when a class other than the positive one is absent.
        auc = report["roc_auc"]
        auc_text = "undefined" if auc is None else f"{auc:.3f}"
        save_curve_png(curves["roc"], "fpr", "tpr", f"ROC (AUC {auc_text})", staging / ROC_PNG)
        save_curve_png(
            curves["precision_recall"],
            "recall",
            "precision",
            "Precision-recall",
            staging / PR_PNG,
        )

    replace_dir_atomically(plots_dir, write)
    return report
