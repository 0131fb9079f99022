"""drift.json (one score, threshold and verdict per check, the overall verdict) and drift.html:
a self-contained page (matplotlib figures embedded as base64 PNG, no script, no network), so it
opens anywhere and can be attached to a ticket or mailed as one file."""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from pair_classifier.io_utils import replacing_file, write_json
from pair_classifier.monitoring.checks import DRIFT, NO_DRIFT
from pair_classifier.monitoring.drift import DriftResult

logger = logging.getLogger(__name__)

DRIFT_JSON = "drift.json"
DRIFT_HTML = "drift.html"
FIGURE_DPI = 100
FIGURE_SIZE = (9, 3)
HISTOGRAM_BINS = 30
MAX_INTEGER_BINS = 200  # counts spread wider than this are binned like real numbers
COLOURS = {"reference": "tab:blue", "window": "tab:orange"}
VERDICT_COLOURS = {DRIFT: "#c62828", NO_DRIFT: "#2e7d32"}


def drift_record(result: DriftResult) -> dict[str, Any]:
    inputs = result.inputs
    return {
        "verdict": DRIFT if result.drift else NO_DRIFT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "window": {
            "source": str(inputs.window),
            "pairs": result.window_pairs,
            "since": None if inputs.since is None else inputs.since.isoformat(),
            "until": None if inputs.until is None else inputs.until.isoformat(),
        },
        "reference": str(inputs.reference),
        "prediction_reference": str(inputs.prediction_reference),
        "graph": str(inputs.graph),
        "encoder_graph": str(inputs.encoder_graph),
        "checks": {check.name: check.record() for check in result.checks},
    }


def _png(figure: Figure) -> str:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _bins(values: np.ndarray) -> np.ndarray:
    """One bin per value for counts (token lengths), else HISTOGRAM_BINS equal bins."""
    if np.issubdtype(values.dtype, np.integer) and np.ptp(values) <= MAX_INTEGER_BINS:
        return np.arange(values.min(), values.max() + 2) - 0.5
    return np.histogram_bin_edges(values, bins=HISTOGRAM_BINS)


def _histograms(title: str, samples: dict[str, dict[str, np.ndarray]]) -> str:
    """One panel per key (e.g. text_a, text_b): reference and window as density histograms."""
    keys = list(next(iter(samples.values())))
    figure = Figure(figsize=FIGURE_SIZE)
    for axes, key in zip(np.atleast_1d(figure.subplots(1, len(keys))), keys):
        values = np.concatenate([samples[side][key] for side in samples])
        bins = _bins(values)
        for side, colour in COLOURS.items():
            axes.hist(
                samples[side][key], bins=bins, density=True, alpha=0.5, color=colour, label=side
            )
        axes.set_title(f"{title}: {key}")
        axes.legend()
    return _png(figure)


def _label_bars(labels: tuple[list[str], list[str]], class_names: list[str]) -> str:
    figure = Figure(figsize=FIGURE_SIZE)
    axes = figure.subplots()
    positions = np.arange(len(class_names))
    for offset, (side, values) in zip((-0.2, 0.2), zip(COLOURS, labels)):
        shares = [values.count(name) / max(len(values), 1) for name in class_names]
        axes.bar(positions + offset, shares, width=0.4, color=COLOURS[side], label=side)
    axes.set_xticks(positions, class_names)
    axes.set_ylabel("share of pairs")
    axes.set_title("predicted labels")
    axes.legend()
    return _png(figure)


def _figures(result: DriftResult) -> dict[str, str]:
    data = result.figures_data
    reference_tokens, window_tokens = data["tokens"]
    return {
        "token_lengths": _histograms(
            "tokens per text", {"reference": reference_tokens, "window": window_tokens}
        ),
        "label_mix": _label_bars(data["labels"], result.class_names),
        "confidence": _histograms(
            "confidence",
            {side: {"max probability": values} for side, values in data["confidence"].items()},
        ),
    }


def _row(name: str, check: dict[str, Any]) -> str:
    colour = VERDICT_COLOURS.get(check["verdict"], "#757575")
    shown = {k: v for k, v in check.items() if k not in ("score", "threshold", "verdict")}
    return (
        f"<tr><td>{html.escape(name)}</td><td>{check['score']}</td><td>{check['threshold']}</td>"
        f"<td style='color:{colour};font-weight:bold'>{check['verdict']}</td>"
        f"<td><code>{html.escape(json.dumps(shown, default=str))}</code></td></tr>"
    )


def drift_html(record: dict[str, Any], figures: dict[str, str]) -> str:
    rows = "\n".join(_row(name, check) for name, check in record["checks"].items())
    images = "\n".join(
        f"<h2>{html.escape(name)}</h2><img alt='{html.escape(name)}' "
        f"src='data:image/png;base64,{png}'>"
        for name, png in figures.items()
    )
    colour = VERDICT_COLOURS[record["verdict"]]
    window = record["window"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Drift report</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #ccc;padding:4px;
vertical-align:top}}table{{border-collapse:collapse}}code{{font-size:80%}}</style></head>
<body><h1>Drift report: <span style="color:{colour}">{record['verdict']}</span></h1>
<p>Window: {html.escape(window['source'])}, {window['pairs']} pairs (since {window['since']},
until {window['until']}). Reference: {html.escape(record['reference'])}; model outputs against
{html.escape(record['prediction_reference'])}. Created {record['created']}.
A check drifts when its score is above its threshold (docs/monitoring.md).</p>
<table><tr><th>check</th><th>score</th><th>threshold</th><th>verdict</th><th>details</th></tr>
{rows}
</table>
{images}
</body></html>
"""


def write_report(result: DriftResult, out_dir: Path) -> dict[str, Any]:
    """Write drift.json and drift.html into ``out_dir``; returns the JSON record."""
    record = drift_record(result)
    write_json(out_dir / DRIFT_JSON, record)
    page = drift_html(record, _figures(result))
    with replacing_file(out_dir / DRIFT_HTML) as staging:
        staging.write_text(page, encoding="utf-8")
    logger.info(
        "drift report: %s, %s (%s)", out_dir / DRIFT_JSON, out_dir / DRIFT_HTML, record["verdict"]
    )
    return record
