"""Markdown tables of the committed metrics, one function per section of docs/results.md.

Each renderer takes the parsed metrics and returns lines. They tolerate keys that are absent
(a metrics file written by an older or newer stage) by writing ``n/a`` or leaving a row out, so a
page can always be rendered. Tables are laid out the way prettier formats them, so running
prettier over the generated page changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

logger = logging.getLogger(__name__)

MISSING = "n/a"
MIN_COLUMN_WIDTH = 3  # prettier's shortest delimiter cell: ---
SCORE_NAMES = {
    "accuracy": "accuracy",
    "f1": "F1",
    "precision": "precision",
    "recall": "recall",
    "roc_auc": "ROC-AUC",
}
SCORE_KEYS = tuple(SCORE_NAMES)


def number(value: Any, spec: str) -> str:
    """``value`` formatted with ``spec``, or ``n/a`` when it is absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return MISSING
    return format(value, spec)


def times(value: Any) -> str:
    """A speed-up such as ``4.66×``, or ``n/a``."""
    text = number(value, ".2f")
    return text if text == MISSING else f"{text}×"


def plain(value: Any) -> str:
    """A cell for a value of unknown meaning: integers as they are, floats to 4 significant
    digits, lists joined, anything absent as ``n/a``."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format(value, ".4g")
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(item) for item in value)
    return str(value)


def code(name: str) -> str:
    return f"`{name}`"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A markdown table padded as prettier pads it (left-aligned, pipes escaped)."""
    grid = [[str(cell).replace("|", "\\|") for cell in row] for row in [headers, *rows]]
    widths = [
        max(MIN_COLUMN_WIDTH, *(len(row[column]) for row in grid)) for column in range(len(headers))
    ]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + " |"

    return [line(grid[0]), line(["-" * width for width in widths]), *map(line, grid[1:])]


def scalar_table(record: Mapping[str, Any]) -> list[str]:
    """Every scalar or list entry of ``record`` as a key/value table, keys sorted."""
    rows = [
        [code(key), plain(value)]
        for key, value in sorted(record.items())
        if not isinstance(value, Mapping)
    ]
    return table(["key", "value"], rows) if rows else []


def scores_table(named_scores: Mapping[str, Mapping[str, Any]], first: str) -> list[str]:
    """One row per name: the scores any of them has (accuracy, F1, ...) to 4 decimals."""
    named = {name: scores for name, scores in named_scores.items() if isinstance(scores, Mapping)}
    keys = [key for key in SCORE_KEYS if any(key in scores for scores in named.values())]
    rows = [
        [code(name), *(number(scores.get(key), ".4f") for key in keys)]
        for name, scores in named.items()
    ]
    return table([first, *(SCORE_NAMES[key] for key in keys)], rows)


def data_section(data: Mapping[str, Any]) -> list[str]:
    splits = data.get("splits", {})
    classes = sorted(
        {name for split in splits.values() for name in split.get("label_fraction", {})}
    )
    extra = sorted(
        {
            key
            for split in splits.values()
            for key, value in split.items()
            if key not in ("rows_read", "pairs") and not isinstance(value, Mapping)
        }
    )
    rows = []
    for name, split in splits.items():
        tokens = split.get("tokens_per_text", {})
        fractions = split.get("label_fraction", {})
        rows.append(
            [name, plain(split.get("rows_read")), plain(split.get("pairs"))]
            + [number(fractions.get(label), ".4f") for label in classes]
            + [number(tokens.get(key), ".0f") for key in ("p50", "p95", "p100")]
            + [plain(split.get(key)) for key in extra]
        )
    headers = ["split", "rows read", "pairs"] + [f"share {label}" for label in classes]
    headers += ["tokens p50", "tokens p95", "tokens max"] + [code(key) for key in extra]
    invalid = data.get("invalid_rows", {})
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(invalid.get("by_reason", {}).items()))
    return [
        f"Data set {code(str(data.get('dataset', MISSING)))}, invalid rows handled by "
        f"{code(str(data.get('policy', MISSING)))}: {plain(invalid.get('total'))} invalid"
        + (f" ({reasons})." if reasons else "."),
        "",
        *table(headers, rows),
    ]


def classifier_section(classifier: Mapping[str, Any], title: str) -> list[str]:
    """The SVM's kind, the grid point chosen on validation and every grid point's scores."""
    lines = [
        f"{title}: {code(str(classifier.get('kind', MISSING)))} SVM, "
        f"{code(str(classifier.get('selected', MISSING)))} chosen on validation.",
        "",
    ]
    if isinstance(classifier.get("val"), Mapping):
        lines += [*scores_table({"validation": classifier["val"]}, "split"), ""]
    if isinstance(classifier.get("grid"), Mapping):
        lines += [*scores_table(dict(sorted(classifier["grid"].items())), "grid point"), ""]
    return lines


def evaluate_section(evaluate: Mapping[str, Any]) -> list[str]:
    lines = [
        f"Test split, {plain(evaluate.get('pairs'))} pairs:",
        "",
        *scores_table({"teacher": evaluate}, "model"),
        "",
    ]
    matrix = evaluate.get("confusion_matrix")
    if isinstance(matrix, Mapping) and matrix:
        predicted = sorted({name for row in matrix.values() for name in row})
        rows = [
            [code(actual), *(plain(row.get(name)) for name in predicted)]
            for actual, row in sorted(matrix.items())
        ]
        headers = ["actual \\ predicted", *(code(name) for name in predicted)]
        lines += ["Confusion matrix:", "", *table(headers, rows), ""]
    if reason := evaluate.get("roc_auc_undefined"):
        lines += [f"ROC-AUC undefined: {reason}", ""]
    return lines


def distill_section(distill: Mapping[str, Any]) -> list[str]:
    lines = ["Student shape and distillation:", "", *scalar_table(distill), ""]
    if isinstance(distill.get("classifier"), Mapping):
        lines += classifier_section(distill["classifier"], "Student classifier")
    return lines
