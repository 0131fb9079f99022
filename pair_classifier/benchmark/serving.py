"""Which of the deployed model's graphs the pipeline serves, chosen from the benchmark's
measurements on the machine it ran on rather than fixed in config: int8 beats fp32 only on some
CPUs (VNNI, AMX), and which int8 graph is fastest differs again between them.

The rule (``benchmark.serving_*``, ``benchmark.min_f1_kept``): the candidates are the student's
ONNX graphs the benchmark measured, i.e. the fp32 export, its ORT-optimised graph and the int8
graphs the quantize stage accepted. A candidate is eligible when

- it is batch-invariant: a pair's probabilities scored alone and in a batch differ by at most
  ``serving_batch_invariance_tolerance`` (a served answer must not depend on its neighbours);
- it keeps ``min_f1_kept`` of the F1 of ``serving_f1_reference`` (the student's fp32 graph, or
  the teacher), compared unrounded as ``report.fastest_keeping_f1`` does.

The fastest eligible graph by pairs/s is served, except that a simpler one (``SERVING_ORDER``)
stays chosen unless the fastest beats its pairs/s by more than ``serving_tie_margin``: two graphs
within the benchmark's run-to-run noise must not swap places from one run to the next. With more
than one eligible graph, the pairs/s compared are measured again with the eligible graphs taking
turns (``measure.head_to_head``): measured minutes apart, a busy machine can make any of them
look fastest.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from pair_classifier.benchmark.measure import BATCH_INVARIANCE, Variant, head_to_head
from pair_classifier.benchmark.report import F1_RATIO_DIGITS
from pair_classifier.benchmark.supervision import BenchmarkError, in_fresh_process
from pair_classifier.config import BenchmarkConfig
from pair_classifier.export.interface import OPTIMIZED
from pair_classifier.export.quantization import DYNAMIC, DYNAMIC_OPTIMIZED, STATIC
from pair_classifier.export.served import FP32, SERVED_VARIANT, benchmark_name

logger = logging.getLogger(__name__)

# The candidates, simplest first (the tie margin keeps the earlier): the graph as exported, its
# fused version, int8 with calibrated fixed scales, int8 with scales computed per batch.
SERVING_ORDER = (FP32, OPTIMIZED, STATIC, DYNAMIC, DYNAMIC_OPTIMIZED)
SPEED = "throughput_pairs_per_s"
HEAD_TO_HEAD = "head_to_head_pairs_per_s"  # a candidate's pairs/s taking turns with the others


def _left_out(
    figures: Mapping[str, Any], floor: float, reference: str, config: BenchmarkConfig
) -> str | None:
    """Why a measured candidate is not eligible, or None."""
    moved = figures[BATCH_INVARIANCE]
    if moved > config.serving_batch_invariance_tolerance:
        return (
            f"batch-dependent: a pair's probability moves by {moved:.1e} between batch 1 and "
            f"batch {config.batch_size}, more than serving_batch_invariance_tolerance "
            f"{config.serving_batch_invariance_tolerance:g}"
        )
    if figures["f1"] < floor:
        return (
            f"F1 {figures['f1']:.4f} is under min_f1_kept {config.min_f1_kept:.0%} of "
            f"{reference}'s"
        )
    return None


def candidate_figures(
    results: Mapping[str, Mapping[str, Any]], reference: str, config: BenchmarkConfig
) -> dict[str, dict[str, Any]]:
    """Each measured candidate's figures for the choice, in ``SERVING_ORDER``, with why it is
    left out (``None`` when eligible)."""
    measured = [variant for variant in SERVING_ORDER if benchmark_name(variant) in results]
    if measured and reference not in results:
        raise BenchmarkError(
            f"benchmark.serving_f1_reference: {reference} was not measured, so no served graph "
            "can be held to its F1"
        )
    figures: dict[str, dict[str, Any]] = {}
    reference_f1 = results[reference]["f1"] if measured else None
    for variant in measured:
        result = results[benchmark_name(variant)]
        floor = config.min_f1_kept * reference_f1
        figures[variant] = {
            "benchmark_name": benchmark_name(variant),
            SPEED: result[SPEED],
            "f1": result["f1"],
            # a share of the reference's F1; None when that is 0 (a model never right)
            "f1_kept": (
                round(result["f1"] / reference_f1, F1_RATIO_DIGITS) if reference_f1 else None
            ),
            BATCH_INVARIANCE: result[BATCH_INVARIANCE],
            "left_out": _left_out(result, floor, reference, config),
        }
    return figures


def _chosen(speeds: Mapping[str, float], margin: float, measured: str) -> tuple[str, str]:
    """The earliest eligible graph within ``margin`` of the fastest by ``speeds``, and why."""
    fastest = max(speeds, key=lambda variant: speeds[variant])
    top = speeds[fastest]
    chosen = next(v for v in speeds if speeds[v] * (1 + margin) >= top)
    if chosen == fastest:
        return chosen, f"the fastest eligible graph ({speeds[chosen]:.1f} pairs/s {measured})"
    return chosen, (
        f"{speeds[chosen]:.1f} pairs/s {measured}, within serving_tie_margin {margin:.0%} of "
        f"the fastest eligible graph {fastest} ({top:.1f} pairs/s), and simpler"
    )


def choose_served(
    results: Mapping[str, Mapping[str, Any]],
    graphs: Mapping[str, Path],
    reference: str,
    config: BenchmarkConfig,
    contest: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The benchmark's ``served`` record: the variant, its graph, the reason, the rule and each
    candidate's figures. ``graphs`` maps the measured variants' names to their files;
    ``reference`` is the name whose F1 ``min_f1_kept`` applies to; ``contest``, when given, is
    ``head_to_head``'s answer for the eligible graphs, whose pairs/s then decide. ``variant`` is
    None when no candidate is eligible (``check_served`` then fails the stage)."""
    candidates = candidate_figures(results, reference, config)
    for figures in candidates.values():
        if contest is not None and figures["benchmark_name"] in contest["pairs_per_s"]:
            figures[HEAD_TO_HEAD] = contest["pairs_per_s"][figures["benchmark_name"]]
    rule = {
        "batch_invariance_tolerance": config.serving_batch_invariance_tolerance,
        "batch_size": config.batch_size,
        "f1_reference": reference,
        "min_f1_kept": config.min_f1_kept,
        "tie_margin": config.serving_tie_margin,
    }
    left_out = [f"{v} ({c['left_out']})" for v, c in candidates.items() if c["left_out"]]
    eligible = {v: c for v, c in candidates.items() if not c["left_out"]}
    if not eligible:
        reason = (
            "no graph of the student is eligible: " + "; ".join(left_out)
            if left_out
            else "no graph of the student was measured"
        )
        logger.warning("No served graph: %s", reason)
        return {SERVED_VARIANT: None, "reason": reason, "rule": rule, "candidates": candidates}
    key, measured = (
        (
            HEAD_TO_HEAD,
            f"taking turns with the other eligible graphs over {contest['rounds']} rounds",
        )
        if contest is not None
        else (SPEED, "in the benchmark")
    )
    speeds = {variant: figures[key] for variant, figures in eligible.items()}
    chosen, why = _chosen(speeds, config.serving_tie_margin, measured)
    figures = candidates[chosen]
    reason = (
        f"{chosen}: {why}; batch-invariant (max |Δprobability| {figures[BATCH_INVARIANCE]:.1e} "
        f"≤ {config.serving_batch_invariance_tolerance:g}) and F1 {figures['f1']:.4f} ≥ "
        f"min_f1_kept {config.min_f1_kept:.0%} of {reference}'s {results[reference]['f1']:.4f}"
    )
    if left_out:
        reason += ". Left out: " + "; ".join(left_out)
    logger.info("Served graph: %s", reason)
    return {
        SERVED_VARIANT: chosen,
        "benchmark_name": benchmark_name(chosen),
        "graph": str(graphs[benchmark_name(chosen)]),
        "reason": reason,
        "rule": rule,
        "candidates": candidates,
        "head_to_head": contest,
    }


def serving_choice(
    results: Mapping[str, Mapping[str, Any]],
    variants: list[Variant],
    pairs: pd.DataFrame,
    max_length: int,
    reference: str,
    config: BenchmarkConfig,
) -> dict[str, Any]:
    """``choose_served`` on the benchmark's figures, the eligible graphs first measured again
    taking turns (in a fresh process, as every variant is) when there is more than one."""
    candidates = candidate_figures(results, reference, config)
    eligible = [c["benchmark_name"] for c in candidates.values() if not c["left_out"]]
    contest = None
    if len(eligible) > 1:
        by_name = {variant.name: variant for variant in variants}
        logger.info("measuring the eligible graphs %s taking turns", eligible)
        contest = in_fresh_process(
            head_to_head,
            [by_name[name] for name in eligible],
            pairs,
            max_length,
            config,
            timeout_s=config.variant_timeout_s,
            name="head_to_head",
        )
    graphs = {variant.name: variant.path for variant in variants}
    return choose_served(results, graphs, reference, config, contest)


def check_served(record: Mapping[str, Any]) -> None:
    """Fail the stage (after its figures are written) when nothing can be served."""
    if record[SERVED_VARIANT] is None:
        raise BenchmarkError(
            f"nothing to serve: {record['reason']}. See benchmark.serving_* and "
            "benchmark.min_f1_kept (configs/benchmark), or quantize's rejections"
        )
