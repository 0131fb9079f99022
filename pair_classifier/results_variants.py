"""Markdown tables of the exported variants and of the benchmark, for docs/results.md.

Quantize may record variants it rejected (outside the accuracy bound) beside the accepted ones:
in their own entry with a ``rejected`` reason, or under a ``rejected`` mapping or list. Every
variant present is rendered, and the rejected ones are marked.
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
SERVING_KEYS = ("serving_variant", "serving")
REJECTED_KEY = "rejected"
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


def serving_variant(quantize: Mapping[str, Any]) -> str | None:
    """The variant quantize names as the served one, if its record says."""
    for key in SERVING_KEYS:
        if isinstance(quantize.get(key), str):
            return quantize[key]
    return None


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


def quantize_section(quantize: Mapping[str, Any]) -> list[str]:
    serving = serving_variant(quantize)
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
        status = "rejected" if reason else ("serving" if name == serving else "kept")
        val = figures.get("val", {}) if isinstance(figures.get("val"), Mapping) else {}
        rows.append(
            [code(name), status, number(val.get("accuracy"), ".4f"), number(val.get("f1"), ".4f")]
            + [number(figures.get("accuracy_drop"), "+.4f")]
            + [number(figures.get("max_abs_probability_diff_batch1_vs_batched"), ".1e")]
            + [number(figures.get("megabytes"), ".2f")]
            + [plain(figures.get(key)) for key in extra]
        )
    headers = ["variant", "status", "val accuracy", "val F1", "accuracy drop"]
    headers += ["max abs Δprob batch 1 vs 32", "MB", *(code(key) for key in extra)]
    lines = [
        f"int8 graphs of the student (validation split; calibrated on "
        f"{plain(quantize.get('calibration_pairs'))} training pairs). Served variant: "
        f"{code(serving) if serving else 'not recorded'}.",
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
