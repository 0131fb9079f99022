"""From the variants' measurements to what the benchmark reports: ratios against a baseline,
the fastest variant that keeps the teacher's F1, and the Pareto plot (data and PNG)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pair_classifier.constants import BENCHMARK_PARETO_DATA, BENCHMARK_PARETO_PNG
from pair_classifier.io_utils import replace_dir_atomically, write_json
from pair_classifier.plots import save_pareto_png

logger = logging.getLogger(__name__)

SPEEDUP_DIGITS = 2
F1_RATIO_DIGITS = 4  # 0.9891 and 0.9902 must read differently


def relative_to(
    results: dict[str, dict[str, Any]], baseline: str, key: str, digits: int
) -> dict[str, float]:
    """Each variant's ``key`` divided by the baseline's, rounded for the metrics file."""
    base = results[baseline][key]
    return {name: round(result[key] / base, digits) for name, result in results.items()}


def fastest_keeping_f1(results: dict[str, dict[str, Any]], teacher: str, kept: float) -> str | None:
    """The fastest variant other than ``teacher`` whose F1 is at least ``kept`` of the teacher's
    (variants the quantize stage rejected are not measured: ``run.pipeline_variants``).
    The F1s are compared as recorded (4 decimals), their ratio unrounded: 98.9 % must not pass
    as 99 %, though an F1 within 1e-4 of the bound can fall either side of it."""
    floor = kept * results[teacher]["f1"]
    accurate = [name for name, r in results.items() if name != teacher and r["f1"] >= floor]
    return max(accurate, key=lambda name: results[name]["throughput_pairs_per_s"], default=None)


def pareto_points(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy-vs-throughput points for DVC's scatter plot."""
    return [
        {
            "variant": name,
            "throughput_pairs_per_s": r["throughput_pairs_per_s"],
            "f1": r["f1"],
            "accuracy": r["accuracy"],
        }
        for name, r in results.items()
    ]


def write_pareto_plots(
    results: dict[str, dict[str, Any]], plots_dir: Path, batch_size: int
) -> None:
    """``pareto.json`` (DVC's scatter plot) and ``pareto.png`` into ``plots_dir``, the benchmark
    stage's own DVC output: filled in a staging folder and swapped in whole, so a failure
    part-way leaves the previous pair, never a new JSON beside an old PNG."""

    def write(staging: Path) -> None:
        write_json(staging / BENCHMARK_PARETO_DATA.name, pareto_points(results))
        save_pareto_png(results, staging / BENCHMARK_PARETO_PNG.name, batch_size)

    replace_dir_atomically(plots_dir, write)
    logger.info("Pareto plot of %d variants written to %s", len(results), plots_dir)
