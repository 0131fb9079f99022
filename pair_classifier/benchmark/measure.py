"""Measuring one variant: throughput, latency, accuracy, size and peak memory, in the process it
runs in (``supervision.in_fresh_process`` gives each variant its own).

Every variant scores the same split, tokenisation included: throughput on length-sorted batches
(pairs/s), latency p50/p95 of single pairs, accuracy and F1, size on disk, and peak memory. The
single pairs' probabilities, against the same pairs' in the batches, give batch invariance: how
far a served pair's answer depends on what else is in its batch (dynamic int8 scales, padding).
Throughput is the median of several passes over the split: on a shared 2-core machine one pass
of a few seconds varies by ±20 % from run to run, the median of three by far less.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pair_classifier.config import BenchmarkConfig
from pair_classifier.constants import LABEL, MEBIBYTE
from pair_classifier.evaluation import score_predictions
from pair_classifier.export.runtime import onnx_runner, run_length_sorted, torch_runner
from pair_classifier.export.tokenization import PairTokenizer
from pair_classifier.predictor import PairPredictor

logger = logging.getLogger(__name__)

KIBIBYTE = 1024
MILLISECONDS = 1000.0
MILLISECOND_DIGITS = 2
LATENCY_PERCENTILES = (50, 95)  # typical and tail latency of a single pair
BATCH_INVARIANCE = "max_abs_probability_diff_batch1_vs_batched"


@dataclass(frozen=True)
class Variant:
    """One way to score pairs: a PyTorch model folder, an ONNX graph or a TensorRT engine."""

    name: str
    kind: str  # pytorch | onnx | tensorrt
    path: Path
    tokenizer_dir: Path


def size_on_disk(path: Path) -> int:
    """Bytes of a file, or of every file under a model folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _runner(variant: Variant, threads: int) -> Callable:
    """A callable from the four input arrays to (scores, probabilities) for a variant."""
    if variant.kind == "onnx":
        return onnx_runner(variant.path, threads)
    if variant.kind == "tensorrt":
        from pair_classifier.export.tensorrt_engine import EngineRunner

        return EngineRunner(variant.path)
    import torch

    from pair_classifier.export.scoring import ScoringModel

    torch.set_num_threads(threads or os.cpu_count() or 1)
    predictor = PairPredictor.load(variant.path, batch_size=1)
    return torch_runner(ScoringModel(predictor.bi_encoder, predictor.classifier))


def measure(
    variant: Variant,
    pairs: pd.DataFrame,
    class_names: list[str],
    positive_index: int,
    max_length: int,
    config: BenchmarkConfig,
    seed: int,
) -> dict[str, Any]:
    """Throughput, latency, batch invariance, accuracy, size and peak memory of one variant
    (run in a child). Logs each throughput pass and the latency pass with its figure as it ends."""
    tokenize = PairTokenizer.load(variant.tokenizer_dir, max_length)
    run = _runner(variant, config.threads)
    if config.warmup_batches:
        warmup = pairs.iloc[: config.batch_size * config.warmup_batches]
        run_length_sorted(run, tokenize, warmup, config.batch_size)
    pass_seconds = []
    for number in range(1, config.throughput_passes + 1):
        started = time.perf_counter()
        _, probabilities = run_length_sorted(run, tokenize, pairs, config.batch_size)
        pass_seconds.append(time.perf_counter() - started)
        logger.info(
            "%s: throughput pass %d/%d: %.1f pairs/s (%.1f s)",
            variant.name,
            number,
            config.throughput_passes,
            len(pairs) / pass_seconds[-1],
            pass_seconds[-1],
        )
    seconds = float(np.median(pass_seconds))
    # positions in ``pairs`` (pandas samples by position), to find the pairs' batched answers
    positions = (
        pairs.reset_index(drop=True)
        .sample(n=min(config.latency_pairs, len(pairs)), random_state=seed)
        .index.to_numpy()
    )
    latencies, alone = [], []
    for position in positions:
        one = pairs.iloc[position : position + 1]
        tick = time.perf_counter()
        _, answer = run(tokenize(one))
        latencies.append((time.perf_counter() - tick) * MILLISECONDS)
        alone.append(answer)
    latency = {
        f"latency_p{percentile}_ms": round(
            float(np.percentile(latencies, percentile)), MILLISECOND_DIGITS
        )
        for percentile in LATENCY_PERCENTILES
    }
    invariance = float(np.abs(np.concatenate(alone) - probabilities[positions]).max())
    logger.info(
        "%s: latency pass over %d single pairs: %s; max |Δprobability| vs batch %d: %.2e",
        variant.name,
        len(positions),
        latency,
        config.batch_size,
        invariance,
    )
    labels = pairs[LABEL].to_numpy()
    scores = score_predictions(
        labels, probabilities.argmax(axis=1), probabilities, class_names, positive_index
    )
    return {
        "throughput_pairs_per_s": round(len(pairs) / seconds, 1),
        "throughput_spread": round((max(pass_seconds) - min(pass_seconds)) / seconds, 3),
        **latency,
        BATCH_INVARIANCE: invariance,
        "accuracy": scores["accuracy"],
        "f1": scores["f1"],
        "megabytes": round(size_on_disk(variant.path) / MEBIBYTE, 2),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIBIBYTE, 1),
    }


def head_to_head(
    variants: list[Variant], pairs: pd.DataFrame, max_length: int, config: BenchmarkConfig
) -> dict[str, Any]:
    """Throughput of ``variants`` taking turns in one process (run in a child): one pass over
    ``pairs`` each per round, ``config.throughput_passes`` rounds, the order rotated each round,
    median pairs/s per variant. Measured one after another, minutes apart, two variants see
    whatever else loads the machine at the time; taking turns, they see the same load, so the
    comparison that chooses the served graph holds on a busy machine too."""
    tokenizers = {
        v.tokenizer_dir: PairTokenizer.load(v.tokenizer_dir, max_length) for v in variants
    }
    runners = {v.name: (_runner(v, config.threads), tokenizers[v.tokenizer_dir]) for v in variants}
    if config.warmup_batches:
        warmup = pairs.iloc[: config.batch_size * config.warmup_batches]
        for run, tokenize in runners.values():
            run_length_sorted(run, tokenize, warmup, config.batch_size)
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for number in range(config.throughput_passes):
        order = names[number % len(names) :] + names[: number % len(names)]
        for name in order:
            run, tokenize = runners[name]
            started = time.perf_counter()
            run_length_sorted(run, tokenize, pairs, config.batch_size)
            seconds[name].append(time.perf_counter() - started)
        logger.info(
            "head to head, round %d/%d: %s",
            number + 1,
            config.throughput_passes,
            ", ".join(f"{name} {len(pairs) / seconds[name][-1]:.1f} pairs/s" for name in order),
        )
    medians = {name: float(np.median(passes)) for name, passes in seconds.items()}
    return {
        "pairs_per_s": {name: round(len(pairs) / medians[name], 1) for name in names},
        "spread": {
            name: round((max(passes) - min(passes)) / medians[name], 3)
            for name, passes in seconds.items()
        },
        "rounds": config.throughput_passes,
    }
