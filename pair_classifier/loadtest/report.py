"""The load test's record (metrics/serving.json) and its plot: throughput and tail latency of
every server at every client count, and the ratios the serving bars are read from."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from pair_classifier.io_utils import replacing_file, write_json
from pair_classifier.loadtest.run import Point

logger = logging.getLogger(__name__)

PLOT_DPI = 120
PLOT_DATA = "load.json"
PLOT_PNG = "load.png"
RATIO_DECIMALS = 2


def _ratio(numerator: float, denominator: float) -> float | None:
    if not denominator or math.isnan(numerator) or math.isnan(denominator):
        return None
    return round(numerator / denominator, RATIO_DECIMALS)


def serving_record(
    points: Sequence[Point],
    soak: Point | None,
    compared_at: int,
    reference: str,
    context: Mapping[str, Any],
) -> dict[str, Any]:
    """Per target and client count its figures; ``reference``'s throughput over each other
    target's, and its p99, at ``compared_at`` clients; the soak's errors."""
    targets: dict[str, dict[str, Any]] = {}
    for point in points:
        targets.setdefault(point.target, {})[str(point.clients)] = point.record()
    at = {name: figures.get(str(compared_at)) for name, figures in targets.items()}
    ours = at.get(reference)
    ratios = {
        f"{reference}_vs_{name}": _ratio(
            ours["throughput_req_per_s"], figures["throughput_req_per_s"]
        )
        for name, figures in at.items()
        if name != reference and ours and figures
    }
    return {
        **context,
        "targets": targets,
        f"at_{compared_at}_clients": {
            "throughput_ratios": ratios,
            f"{reference}_p99_ms": ours["p99_ms"] if ours else None,
        },
        "soak": None if soak is None else {"target": soak.target, **soak.record()},
    }


def write_serving_plots(points: Sequence[Point], plots_dir: Path) -> None:
    """Throughput and p99 latency against clients, one line per server (PNG and DVC data)."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        plots_dir / PLOT_DATA,
        [
            {
                "target": p.target,
                "clients": p.clients,
                "throughput_req_per_s": p.throughput_req_per_s,
                "p99_ms": p.p99_ms,
            }
            for p in points
        ],
    )
    figure = Figure(figsize=(10, 4))
    throughput, latency = figure.subplots(1, 2)
    for target in dict.fromkeys(p.target for p in points):
        mine = [p for p in points if p.target == target]
        clients = [p.clients for p in mine]
        throughput.plot(clients, [p.throughput_req_per_s for p in mine], marker="o", label=target)
        latency.plot(clients, [p.p99_ms for p in mine], marker="o", label=target)
    for axes, label in ((throughput, "requests/s"), (latency, "p99 latency (ms)")):
        axes.set_xscale("log", base=2)
        axes.set_xlabel("concurrent clients (one pair per request)")
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
    latency.set_yscale("log")
    throughput.legend()
    figure.tight_layout()
    with replacing_file(plots_dir / PLOT_PNG) as tmp:
        figure.savefig(tmp, dpi=PLOT_DPI, format="png")
    logger.info("Wrote %s and %s", plots_dir / PLOT_DATA, plots_dir / PLOT_PNG)
