"""Side-by-side speed, accuracy, size and memory of every model variant, on one machine.

Every variant scores the same split, tokenisation included: throughput on length-sorted batches
(pairs/s), latency p50/p95 of single pairs, accuracy and F1, size on disk, and peak memory.
Each variant runs in its own fresh process, so its peak memory is its own. Throughput is the
median of several passes over the split: on a shared 2-core machine one pass of a few seconds
varies by ±20 % from run to run, the median of three by far less.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pair_classifier.config import BenchmarkConfig, QuantizeConfig
from pair_classifier.constants import (
    BENCHMARK_PARETO_DATA,
    BENCHMARK_PARETO_PNG,
    DEPLOYED_MODEL,
    LABEL,
    MEBIBYTE,
    TEACHER_MODEL,
)
from pair_classifier.errors import PairClassifierError
from pair_classifier.evaluation import score_predictions
from pair_classifier.export.interface import OPTIMIZED, TOKENIZER_SUBDIR, variant_file
from pair_classifier.export.quantization import DYNAMIC, DYNAMIC_OPTIMIZED, STATIC
from pair_classifier.export.runtime import onnx_runner, run_length_sorted, torch_runner
from pair_classifier.export.tensorrt_engine import ENGINE_SUFFIX, engine_precision
from pair_classifier.export.tokenization import PairTokenizer
from pair_classifier.inference import PairPredictor
from pair_classifier.io_utils import replace_dir_atomically, write_json
from pair_classifier.matmul_rates import matmul_rates

KIBIBYTE = 1024
MILLISECONDS = 1000.0
MILLISECOND_DIGITS = 2
LATENCY_PERCENTILES = (50, 95)  # typical and tail latency of a single pair
SPEEDUP_DIGITS = 2
# The two baselines every variant's speed is divided by.
PYTORCH_TEACHER = "pytorch_fp32_teacher"
ONNX_TEACHER = "onnx_fp32_teacher"
F1_RATIO_DIGITS = 4  # 0.9891 and 0.9902 must read differently
# Seconds a variant's process may take to exit after answering (its exit handlers usually take
# well under one) before it is killed.
CHILD_EXIT_GRACE_S = 60.0
# A variant's process that outlives the benchmark ends itself with this code.
ORPHANED_EXIT_CODE = 70


class BenchmarkError(PairClassifierError):
    """A variant could not be measured."""


@dataclass(frozen=True)
class Variant:
    """One way to score pairs: a PyTorch model folder, an ONNX graph or a TensorRT engine."""

    name: str
    kind: str  # pytorch | onnx | tensorrt
    path: Path
    tokenizer_dir: Path


def pipeline_variants(
    teacher_dir: Path, student_dir: Path, onnx_dir: Path, quantized_dir: Path, trt_dir: Path
) -> list[Variant]:
    """Every variant the pipeline's stages produced, named as the metrics report them."""
    tokenizer = onnx_dir / TOKENIZER_SUBDIR
    onnx_graphs = {
        ONNX_TEACHER: onnx_dir / variant_file(TEACHER_MODEL),
        "onnx_fp32_student": onnx_dir / variant_file(DEPLOYED_MODEL),
        "onnx_optimized_student": onnx_dir / variant_file(DEPLOYED_MODEL, OPTIMIZED),
        "onnx_int8_dynamic_student": quantized_dir / variant_file(DEPLOYED_MODEL, DYNAMIC),
        "onnx_int8_dynamic_optimized_student": quantized_dir
        / variant_file(DEPLOYED_MODEL, DYNAMIC_OPTIMIZED),
        "onnx_int8_static_student": quantized_dir / variant_file(DEPLOYED_MODEL, STATIC),
    }
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
    """Throughput, latency, accuracy, size and peak memory of one variant (run in a child)."""
    tokenize = PairTokenizer.load(variant.tokenizer_dir, max_length)
    run = _runner(variant, config.threads)
    if config.warmup_batches:
        warmup = pairs.iloc[: config.batch_size * config.warmup_batches]
        run_length_sorted(run, tokenize, warmup, config.batch_size)
    pass_seconds = []
    for _ in range(config.throughput_passes):
        started = time.perf_counter()
        _, probabilities = run_length_sorted(run, tokenize, pairs, config.batch_size)
        pass_seconds.append(time.perf_counter() - started)
    seconds = float(np.median(pass_seconds))
    sample = pairs.sample(n=min(config.latency_pairs, len(pairs)), random_state=seed)
    latencies = []
    for index in range(len(sample)):
        one = sample.iloc[index : index + 1]
        tick = time.perf_counter()
        run(tokenize(one))
        latencies.append((time.perf_counter() - tick) * MILLISECONDS)
    labels = pairs[LABEL].to_numpy()
    scores = score_predictions(
        labels, probabilities.argmax(axis=1), probabilities, class_names, positive_index
    )
    return {
        "throughput_pairs_per_s": round(len(pairs) / seconds, 1),
        "throughput_spread": round((max(pass_seconds) - min(pass_seconds)) / seconds, 3),
        **{
            f"latency_p{percentile}_ms": round(
                float(np.percentile(latencies, percentile)), MILLISECOND_DIGITS
            )
            for percentile in LATENCY_PERCENTILES
        },
        "accuracy": scores["accuracy"],
        "f1": scores["f1"],
        "megabytes": round(size_on_disk(variant.path) / MEBIBYTE, 2),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIBIBYTE, 1),
    }


def in_fresh_process(
    function: Callable[..., dict[str, Any]],
    *args: Any,
    timeout_s: float,
    name: str | None = None,
    exit_grace_s: float = CHILD_EXIT_GRACE_S,
) -> dict[str, Any]:
    """``function(*args)`` in a fresh spawned process, so peak memory and threads are its own.

    The process exits on its own once it has answered, so its exit handlers run and locks it
    made (tqdm's, say) are released rather than reported as leaked semaphores. It is killed only
    when it does not answer within ``timeout_s`` (an error: nothing was measured) or does not
    exit within ``exit_grace_s`` of answering (a warning: a GPU driver hanging at teardown
    should not hang the stage, and the answer stands). It ends itself when this process dies
    first, killed by a signal that leaves no time to kill it. Errors and warnings start with
    ``name``, by default the function's.
    """
    name = name or function.__name__
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_answer, args=(sender, function, args), daemon=True)
    child.start()
    sender.close()  # the child now holds the only writer, so its death ends the pipe
    with receiver:
        if not receiver.poll(timeout_s):
            child.kill()
            child.join()
            raise BenchmarkError(
                f"{name}: no answer within {timeout_s:g} s "
                "(benchmark.variant_timeout_s); its process was killed"
            )
        try:
            failed, answer = receiver.recv()
        except EOFError:
            child.join()
            raise BenchmarkError(
                f"{name}: its process died before answering (exit code {child.exitcode})"
            ) from None
    child.join(exit_grace_s)
    if child.is_alive():
        warnings.warn(
            f"{name}: its process answered but had not exited {exit_grace_s:g} s "
            "later; killed it",
            RuntimeWarning,
            stacklevel=2,
        )
        child.kill()
        child.join()
    if failed:
        raise answer
    return answer


def _answer(sender: Connection, function: Callable[..., Any], args: tuple) -> None:
    """Run ``function`` in the child and send back (failed, result or exception)."""
    threading.Thread(target=_exit_with_parent, name="exit-with-parent", daemon=True).start()
    try:
        outcome = (False, function(*args))
    except Exception as error:  # sent to the parent, which raises it there
        error.add_note(f"raised in the benchmark's child process:\n{traceback.format_exc()}")
        outcome = (True, error)
    try:
        sender.send(outcome)
    except Exception:  # an exception that does not pickle: send its text instead
        sender.send((True, RuntimeError(traceback.format_exc())))
    sender.close()


def _exit_with_parent() -> None:
    """In the child: end it as soon as the benchmark's process is gone. A stage killed by SIGTERM
    (``kill``, a CI job's time limit) or SIGKILL runs no exit handlers, so nothing else would stop
    its child, which would go on loading the cores for up to ``benchmark.variant_timeout_s``."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        wait([parent.sentinel])
        os._exit(ORPHANED_EXIT_CODE)


def relative_to(
    results: dict[str, dict[str, Any]], baseline: str, key: str, digits: int
) -> dict[str, float]:
    """Each variant's ``key`` divided by the baseline's, rounded for the metrics file."""
    base = results[baseline][key]
    return {name: round(result[key] / base, digits) for name, result in results.items()}


def fastest_keeping_f1(results: dict[str, dict[str, Any]], teacher: str, kept: float) -> str | None:
    """The fastest variant other than ``teacher`` whose F1 is at least ``kept`` of the teacher's.
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


def save_pareto_png(results: dict[str, dict[str, Any]], path: Path, batch_size: int) -> None:
    """F1 against throughput of every variant, for humans (DVC draws pareto.json itself)."""
    from matplotlib.figure import Figure

    from pair_classifier.evaluation import save_figure

    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    for name, result in results.items():
        axes.scatter(result["throughput_pairs_per_s"], result["f1"])
        axes.annotate(name, (result["throughput_pairs_per_s"], result["f1"]), fontsize=7)
    axes.set_xscale("log")
    axes.set_xlabel(f"throughput (pairs/s, batch {batch_size}, log scale)")
    axes.set_ylabel("test F1")
    axes.grid(alpha=0.3)
    save_figure(figure, path)


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
    and the rates this CPU's matrix products reach (int8 quantised as ``quantize`` does it).

    ``seed`` draws the pairs whose batch-1 latency is measured."""
    class_names = card["class_names"]
    positive = class_names.index(card["positive_label"])
    results = {
        v.name: in_fresh_process(
            measure,
            v,
            pairs,
            class_names,
            positive,
            card["max_length"],
            config,
            seed,
            timeout_s=config.variant_timeout_s,
            name=v.name,
        )
        for v in variants
    }
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
        "pairs": len(pairs),
        "threads": config.threads or os.cpu_count(),
        "matmul_rates": in_fresh_process(
            matmul_rates,
            quantize,
            opset,
            config.threads,
            seed,
            config.throughput_passes,
            timeout_s=config.variant_timeout_s,
        ),
    }
