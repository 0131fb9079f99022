"""Markdown tables of the exported variants, of the benchmark and of its served choice, for
docs/results.md.

Quantize may record variants it rejected (outside the accuracy bound) beside the accepted ones:
in their own entry with a ``rejected`` reason, or under a ``rejected`` mapping or list. Every
variant present is rendered, and the rejected ones are marked. The served graph is the
benchmark's ``served`` record: the variant, its graph, why, and each candidate's figures.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pair_classifier.results_tables import (
    MISSING,
    code,
    number,
    plain,
    scalar_table,
    table,
    times,
)

logger = logging.getLogger(__name__)

QUANTIZE_KNOWN = {"val", "accuracy_drop", "max_abs_probability_diff_batch1_vs_batched", "megabytes"}
QUANTIZE_STATUS_KEYS = ("rejected", "reason", "status", "name", "variant")
SERVED_KEY = "served"  # metrics/benchmark.json: the graph chosen for serving, and why
REJECTED_KEY = "rejected"
INVARIANCE_KEY = "max_abs_probability_diff_batch1_vs_batched"
HEAD_TO_HEAD_KEY = "head_to_head_pairs_per_s"  # the eligible graphs' pairs/s, taking turns
PYTORCH_TEACHER = "pytorch_fp32_teacher"
ONNX_TEACHER = "onnx_fp32_teacher"


def records_table(records: Mapping[str, Any], first: str) -> list[str]:
    """Rows = the names of ``records``, columns = the union of their scalar keys, sorted."""
    named = {name: r for name, r in sorted(records.items()) if isinstance(r, Mapping)}
    keys = sorted({k for r in named.values() for k, v in r.items() if not isinstance(v, Mapping)})
    rows = [
        [code(name), *(plain(record.get(key)) for key in keys)] for name, record in named.items()
    ]
    return table([first, *(code(key) for key in keys)], rows) if rows else []


def served_record(benchmark: Mapping[str, Any]) -> Mapping[str, Any]:
    """The benchmark's ``served`` record, ``{}`` when it has none."""
    record = benchmark.get(SERVED_KEY)
    return record if isinstance(record, Mapping) else {}


def served_variant(benchmark: Mapping[str, Any]) -> str | None:
    """The student graph the benchmark chose to serve (``fp32``, ``int8_static`` ...), if any."""
    variant = served_record(benchmark).get("variant")
    return variant if isinstance(variant, str) else None


def quantized_variants(quantize: Mapping[str, Any]) -> dict[str, tuple[dict, str | None]]:
    """Every quantised variant: its figures and, for a rejected one, why (else ``None``)."""
    found: dict[str, tuple[dict, str | None]] = {}
    for name, record in quantize.items():
        if isinstance(record, Mapping) and "val" in record:
            reason = record.get(REJECTED_KEY) or (
                record.get("reason") if record.get("status") == REJECTED_KEY else None
            )
            found[name] = (dict(record), None if reason is None else str(reason))
    rejected = quantize.get(REJECTED_KEY)
    if isinstance(rejected, Mapping):
        rejected = [{"name": name} | dict(rec) for name, rec in rejected.items()]
    for entry in rejected if isinstance(rejected, list) else []:
        entry = {"name": entry} if isinstance(entry, str) else dict(entry)
        name = str(entry.get("name") or entry.get("variant") or MISSING)
        figures = found.get(name, ({}, None))[0] | entry
        found[name] = (figures, str(entry.get("reason") or entry.get(REJECTED_KEY) or "rejected"))
    return dict(sorted(found.items()))


def quantize_section(quantize: Mapping[str, Any], served: str | None) -> list[str]:
    """quantize's graphs; ``served`` (the benchmark's choice) is marked when it is one."""
    variants = quantized_variants(quantize)
    extra = sorted(
        {
            key
            for figures, _ in variants.values()
            for key, value in figures.items()
            if key not in QUANTIZE_KNOWN | set(QUANTIZE_STATUS_KEYS)
            and not isinstance(value, Mapping)
        }
    )
    fp32 = quantize.get("val_fp32", {})
    rows = [
        ["`fp32` (reference)", "reference", number(fp32.get("accuracy"), ".4f")]
        + [number(fp32.get("f1"), ".4f"), "", "", ""]
        + [""] * len(extra)
    ]
    for name, (figures, reason) in variants.items():
        status = "rejected" if reason else ("served" if name == served else "kept")
        val = figures.get("val", {}) if isinstance(figures.get("val"), Mapping) else {}
        rows.append(
            [code(name), status, number(val.get("accuracy"), ".4f"), number(val.get("f1"), ".4f")]
            + [number(figures.get("accuracy_drop"), "+.4f")]
            + [number(figures.get(INVARIANCE_KEY), ".1e")]
            + [number(figures.get("megabytes"), ".2f")]
            + [plain(figures.get(key)) for key in extra]
        )
    headers = ["variant", "status", "val accuracy", "val F1", "accuracy drop"]
    headers += ["max abs Δprob batch 1 vs 32", "MB", *(code(key) for key in extra)]
    lines = [
        f"int8 graphs of the student (validation split; calibrated on "
        f"{plain(quantize.get('calibration_pairs'))} training pairs). Served graph (the "
        f"benchmark's choice, below): {code(served) if served else 'not recorded'}.",
        "",
        *table(headers, rows),
        "",
    ]
    reasons = [f"- {code(name)}: {reason}" for name, (_, reason) in variants.items() if reason]
    return lines + (["Rejected:", "", *reasons, ""] if reasons else [])


def trt_section(trt: Mapping[str, Any]) -> list[str]:
    if "skipped" in trt:
        return [f"TensorRT skipped: {trt['skipped']}.", ""]
    return [*(records_table(trt, "engine") or scalar_table(trt)), ""]


def machine_section(benchmark: Mapping[str, Any]) -> list[str]:
    """The machine as the benchmark recorded it; the page invents nothing about it."""
    machine = benchmark.get("machine")
    described = (
        scalar_table(machine)
        if isinstance(machine, Mapping)
        else ["The benchmark did not record the machine's description."]
    )
    return [
        *described,
        "",
        f"Benchmark threads: {plain(benchmark.get('threads'))}; test pairs: "
        f"{plain(benchmark.get('pairs'))}.",
        "",
    ]


def benchmark_section(benchmark: Mapping[str, Any]) -> list[str]:
    variants = benchmark.get("variants", {})
    vs_pytorch = benchmark.get(f"speedup_vs_{PYTORCH_TEACHER}", {})
    vs_onnx = benchmark.get(f"speedup_vs_{ONNX_TEACHER}", {})
    kept = benchmark.get("f1_relative_to_teacher", {})
    rows = []
    for name, v in sorted(
        variants.items(), key=lambda item: (-item[1].get("throughput_pairs_per_s", 0), item[0])
    ):
        rows.append(
            [code(name), number(v.get("throughput_pairs_per_s"), ".1f")]
            + [number(v.get("throughput_spread"), ".1%")]
            + [times(vs_pytorch.get(name)), times(vs_onnx.get(name))]
            + [number(v.get("latency_p50_ms"), ".2f"), number(v.get("latency_p95_ms"), ".2f")]
            + [number(v.get("accuracy"), ".4f"), number(v.get("f1"), ".4f")]
            + [number(kept.get(name), ".2%"), number(v.get("megabytes"), ".1f")]
            + [number(v.get("peak_memory_mb"), ".0f")]
        )
    headers = ["variant", "pairs/s", "spread", "vs PyTorch teacher", "vs ORT teacher"]
    headers += ["p50 ms (batch 1)", "p95 ms", "accuracy", "F1", "F1 / teacher", "MB", "peak MB"]
    pick = benchmark.get("fastest_keeping_f1")
    return [
        "Test split, batches of length-sorted pairs, tokenisation included; pairs/s is the median "
        "pass and spread (slowest - fastest) / median; fastest first.",
        "",
        *table(headers, rows),
        "",
        f"Fastest variant keeping at least {number(benchmark.get('min_f1_kept'), '.0%')} of the "
        f"teacher's F1: {code(pick) if pick else 'none'}.",
        "",
    ]


def matmul_section(benchmark: Mapping[str, Any]) -> list[str]:
    rates = benchmark.get("matmul_rates", {})
    gmacs, spread = rates.get("gmac_per_s", {}), rates.get("spread", {})
    if not gmacs:
        return ["Matrix-product rates not recorded.", ""]
    rows = [
        [code(name), number(rate, ".1f"), number(spread.get(name), ".1%")]
        for name, rate in sorted(gmacs.items())
    ]
    return [
        "One large matrix product in each runtime (GMAC/s, median of the passes):",
        "",
        *table(["runtime", "GMAC/s", "spread"], rows),
        "",
    ]


def served_section(benchmark: Mapping[str, Any]) -> list[str]:
    """The benchmark's choice of the served graph: which, why, the rule, each candidate."""
    record = served_record(benchmark)
    if not record:
        return ["The benchmark did not record a served graph.", ""]
    rule = record.get("rule", {}) if isinstance(record.get("rule"), Mapping) else {}
    candidates = record.get("candidates", {})
    variant = served_variant(benchmark)
    rows = []
    for name, figures in candidates.items() if isinstance(candidates, Mapping) else []:
        status = (
            "served" if name == variant else ("left out" if figures.get("left_out") else "eligible")
        )
        rows.append(
            [code(name), status, number(figures.get("throughput_pairs_per_s"), ".1f")]
            + [number(figures.get(HEAD_TO_HEAD_KEY), ".1f")]
            + [number(figures.get("f1"), ".4f"), number(figures.get("f1_kept"), ".2%")]
            + [number(figures.get(INVARIANCE_KEY), ".1e")]
        )
    reference = rule.get("f1_reference")
    headers = [
        "graph",
        "status",
        "pairs/s",
        "pairs/s taking turns",
        "F1",
        f"F1 / {code(reference) if reference else MISSING}",
    ]
    headers += [f"max abs Δprob batch 1 vs {plain(rule.get('batch_size'))}"]
    chosen = f"{code(variant)} (`{record.get('graph', MISSING)}`)" if variant else "none"
    return [
        "Chosen by the benchmark stage from its own figures on the machine above, among the "
        "student's ONNX graphs: batch-invariant (max |Δprobability| at most "
        f"{number(rule.get('batch_invariance_tolerance'), 'g')}), keeping "
        f"{number(rule.get('min_f1_kept'), '.0%')} of the F1 of "
        f"{code(reference) if reference else MISSING}, then the fastest; a simpler graph stays "
        f"chosen unless a faster one beats it by more than "
        f"{number(rule.get('tie_margin'), '.0%')}. With several eligible, their pairs/s are "
        "measured again taking turns, so that they see the same load.",
        "",
        f"Served graph: {chosen}. Why: {plain(record.get('reason'))}.",
        "",
        *table(headers, rows),
        "",
    ]
