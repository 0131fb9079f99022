"""The benchmark stage's work: find the variants the pipeline produced, measure each in its own
process, and summarise them (speed-ups, F1 kept, the pick, the served graph, this CPU's
matrix-product rates)."""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pandas as pd

from pair_classifier.benchmark.machine import machine_record
from pair_classifier.benchmark.measure import Variant, measure
from pair_classifier.benchmark.report import (
    F1_RATIO_DIGITS,
    SPEEDUP_DIGITS,
    fastest_keeping_f1,
    relative_to,
)
from pair_classifier.benchmark.serving import serving_choice
from pair_classifier.benchmark.supervision import BenchmarkError, in_fresh_process
from pair_classifier.config import BenchmarkConfig, QuantizeConfig
from pair_classifier.constants import TEACHER_MODEL
from pair_classifier.export.interface import OPTIMIZED, TOKENIZER_SUBDIR, variant_file
from pair_classifier.export.quantization import CPU_GRAPHS
from pair_classifier.export.served import FP32, SERVED, benchmark_name, served_graph
from pair_classifier.export.tensorrt_engine import ENGINE_SUFFIX, engine_precision
from pair_classifier.io_utils import read_json
from pair_classifier.matmul_rates import matmul_rates

logger = logging.getLogger(__name__)

# The two baselines every variant's speed is divided by.
PYTORCH_TEACHER = "pytorch_fp32_teacher"
ONNX_TEACHER = "onnx_fp32_teacher"
# The quantize stage's metrics key naming the int8 variants it left out of serving.
REJECTED = "rejected"
# benchmark.serving_f1_reference: whose F1 a served graph keeps min_f1_kept of
F1_REFERENCES = {"student_fp32": benchmark_name(FP32), "teacher": PYTORCH_TEACHER}


def rejected_variants(quantize_metrics: Path) -> dict[str, Any]:
    """The quantize stage's rejected int8 variants (name -> why), none when it rejected none."""
    if not quantize_metrics.is_file():
        raise BenchmarkError(f"{quantize_metrics}: not found; run the quantize stage first")
    rejected = read_json(quantize_metrics).get(REJECTED, {})
    if not isinstance(rejected, dict):
        raise BenchmarkError(
            f"{quantize_metrics}: {REJECTED!r} must map each rejected variant to why, "
            f"found {type(rejected).__name__}"
        )
    return rejected


def pipeline_variants(
    teacher_dir: Path,
    student_dir: Path,
    onnx_dir: Path,
    quantized_dir: Path,
    trt_dir: Path,
    rejected: Collection[str] = (),
) -> list[Variant]:
    """Every variant the pipeline's stages produced, named as the metrics report them, less the
    int8 graphs the quantize stage ``rejected`` (outside its accuracy bound): they are neither
    served nor measured, so the benchmark never picks one."""
    tokenizer = onnx_dir / TOKENIZER_SUBDIR
    onnx_graphs = {ONNX_TEACHER: onnx_dir / variant_file(TEACHER_MODEL)}
    for graph in (FP32, OPTIMIZED, *CPU_GRAPHS):
        if graph in rejected:
            logger.info("%s left out: the quantize stage rejected it", graph)
            continue
        onnx_graphs[benchmark_name(graph)] = served_graph(graph, onnx_dir, quantized_dir)
    found = [
        Variant(PYTORCH_TEACHER, "pytorch", teacher_dir, tokenizer),
        Variant("pytorch_fp32_student", "pytorch", student_dir, tokenizer),
    ]
    found += [Variant(name, "onnx", path, tokenizer) for name, path in onnx_graphs.items()]
    found += [
        Variant(f"tensorrt_{engine_precision(engine)}_student", "tensorrt", engine, tokenizer)
        for engine in sorted(trt_dir.glob(f"*{ENGINE_SUFFIX}"))
    ]
    return found


def run_benchmark(
    variants: list[Variant],
    pairs: pd.DataFrame,
    card: dict[str, Any],
    config: BenchmarkConfig,
    seed: int,
    quantize: QuantizeConfig,
    opset: int,
) -> dict[str, Any]:
    """Measure every variant; add speed-ups against both teachers, F1 relative to the teacher,
    the graph to serve (``serving``) and the rates this CPU's matrix products reach (int8
    quantised as ``quantize`` does it).

    ``seed`` draws the pairs whose batch-1 latency is measured."""
    class_names = card["class_names"]
    positive = class_names.index(card["positive_label"])
    results: dict[str, dict[str, Any]] = {}
    for number, variant in enumerate(variants, start=1):
        logger.info("measuring %s (%d/%d): %s", variant.name, number, len(variants), variant.path)
        results[variant.name] = result = in_fresh_process(
            measure,
            variant,
            pairs,
            class_names,
            positive,
            card["max_length"],
            config,
            seed,
            timeout_s=config.variant_timeout_s,
            name=variant.name,
        )
        logger.info(
            "%s: %.1f pairs/s, latency p50 %.2f ms, F1 %.4f, peak memory %.0f MB",
            variant.name,
            result["throughput_pairs_per_s"],
            result["latency_p50_ms"],
            result["f1"],
            result["peak_memory_mb"],
        )
    logger.info("measuring this CPU's matrix-product rates")
    rates = in_fresh_process(
        matmul_rates,
        quantize,
        opset,
        config.threads,
        seed,
        config.throughput_passes,
        timeout_s=config.variant_timeout_s,
    )
    logger.info("matrix-product rates (GMAC/s): %s", rates["gmac_per_s"])
    return {
        "variants": results,
        "speedup_vs_pytorch_fp32_teacher": relative_to(
            results, PYTORCH_TEACHER, "throughput_pairs_per_s", SPEEDUP_DIGITS
        ),
        "speedup_vs_onnx_fp32_teacher": relative_to(
            results, ONNX_TEACHER, "throughput_pairs_per_s", SPEEDUP_DIGITS
        ),
        "f1_relative_to_teacher": relative_to(results, PYTORCH_TEACHER, "f1", F1_RATIO_DIGITS),
        "min_f1_kept": config.min_f1_kept,
        "fastest_keeping_f1": fastest_keeping_f1(results, PYTORCH_TEACHER, config.min_f1_kept),
        SERVED: serving_choice(
            results,
            variants,
            pairs,
            card["max_length"],
            F1_REFERENCES[config.serving_f1_reference],
            config,
        ),
        "pairs": len(pairs),
        "threads": config.threads or os.cpu_count(),
        "matmul_rates": rates,
        "machine": machine_record(),
    }
