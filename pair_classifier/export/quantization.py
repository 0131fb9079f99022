"""int8 variants of an exported graph with ONNX Runtime's quantiser, and their checks.

- dynamic: int8 weights, activation scales computed per batch at run time (CPU). Fast, but a
  pair's score depends slightly on what else is in its batch.
- dynamic of the ORT-optimised graph: the same, after ONNX Runtime's transformer fusions
  (SkipLayerNormalization, BiasGelu); the fastest CPU graph measured here, though the fused fp32
  graph alone is not faster than the plain one.
- static (QDQ): activation scales calibrated once on a sample of training pairs and stored in
  the graph as QuantizeLinear/DequantizeLinear pairs: the explicit-quantisation format both
  ONNX Runtime and TensorRT execute. Scores do not depend on the batch.

Every CPU graph is gated on accuracy against the fp32 graph and measured for batch invariance;
which graph is served is not decided here but by the benchmark stage, on the machine it
measures (``pair_classifier.benchmark.serving``).

Each graph is quantised from a copy pre-processed as ONNX Runtime asks ("Please consider to run
pre-processing before quantization"), in the part of it that leaves the quantised graphs as
they were: ONNX shape inference, which the quantiser runs anyway. Its symbolic shape inference
stops at the position ids' ``Min(max_length, sequence)`` slice, and its basic graph
optimisation (constant folding) changes the quantised graphs and their scores; the ORT-optimised
variant is the graph that deliberately takes ONNX Runtime's optimisations.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pair_classifier.config import ConfigError, QuantizeConfig
from pair_classifier.constants import LABEL, MEBIBYTE
from pair_classifier.errors import PairClassifierError
from pair_classifier.evaluation import score_predictions
from pair_classifier.export.accuracy_gate import paired_drop, rejection_hint, rejection_reason
from pair_classifier.export.interface import (
    MODEL_CARD,
    OPTIMIZED,
    SCORING_INPUTS,
    TOKENIZER_SUBDIR,
    read_model_card,
    variant_file,
)
from pair_classifier.export.runtime import Runner, onnx_runner, run_batches, run_length_sorted
from pair_classifier.export.tokenization import PairTokenizer
from pair_classifier.io_utils import write_json
from pair_classifier.logs import Progress

QUANTIZED_OPS = ("MatMul", "Gemm")
DYNAMIC = "int8_dynamic"
DYNAMIC_OPTIMIZED = "int8_dynamic_optimized"  # dynamic int8 of the ORT-optimised graph
STATIC = "int8_static"
STATIC_SYMMETRIC = "int8_static_symmetric"  # signed, zero-point 0: what TensorRT accepts
# Graphs ONNX Runtime serves on the CPU, gated here (``accuracy_gate``). The symmetric graph
# is TensorRT's input: ONNX Runtime's int8 kernels on a CPU are not what runs it, so its
# accuracy here is recorded, and the trt stage holds the engine built from it to
# ``trt.min_prediction_agreement`` with the fp32 graph on a GPU.
CPU_GRAPHS = (DYNAMIC, DYNAMIC_OPTIMIZED, STATIC)
REJECTED = "rejected"  # metrics key: variants left out of serving and of the benchmark's pick

logger = logging.getLogger(__name__)


class QuantizationError(PairClassifierError):
    """Every CPU graph lost more accuracy than the config allows: nothing int8 to serve."""


class _QuantiserChatter(logging.Filter):
    """ONNX Runtime's quantiser logs every tensor and node it passes over at INFO on the root
    logger (hundreds of lines for a 12-layer encoder), which the stages log at: those are left
    out; its warnings are not."""

    def filter(self, record: logging.LogRecord) -> bool:
        from_onnxruntime = record.name == "root" and "onnxruntime" in Path(record.pathname).parts
        return record.levelno >= logging.WARNING or not from_onnxruntime


@contextmanager
def prepared_for_quantiser(source: Path) -> Iterator[Path]:
    """A copy of ``source`` through ONNX Runtime's quantisation pre-processing, limited to ONNX
    shape inference (see the module's docstring): tagged as pre-processed, the quantiser's own
    shape inference then gives the graph it gave before, without asking for pre-processing.
    While the quantiser runs, its INFO lines are left out of the log."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    chatter = _QuantiserChatter()
    root = logging.getLogger()
    with tempfile.TemporaryDirectory(prefix="quantize-") as scratch:
        prepared = Path(scratch) / source.name
        quant_pre_process(source, prepared, skip_optimization=True, skip_symbolic_shape=True)
        root.addFilter(chatter)
        try:
            yield prepared
        finally:
            root.removeFilter(chatter)


def calibration_batches(
    tokenize: PairTokenizer, train: pd.DataFrame, size: int, batch_size: int, seed: int
) -> list[dict[str, np.ndarray]]:
    """Tokenised batches of ``size`` training pairs drawn at random (seeded)."""
    sample = train.sample(n=min(size, len(train)), random_state=seed)
    return [tokenize(sample.iloc[i : i + batch_size]) for i in range(0, len(sample), batch_size)]


def quantizable_nodes(graph: Path, include: str, exclude: str | None = None) -> list[str]:
    """Names of the MatMul/Gemm nodes matching ``include`` (regex) and not ``exclude``.

    Never empty: ONNX Runtime reads an empty list as "quantise every node", the classifier too.
    """
    import onnx

    nodes = list(onnx.load(str(graph), load_external_data=False).graph.node)
    chosen = [
        node.name
        for node in nodes
        if node.op_type in QUANTIZED_OPS
        and re.search(include, node.name)
        and not (exclude and re.search(exclude, node.name))
    ]
    if not chosen:
        candidates = [node.name for node in nodes if node.op_type in QUANTIZED_OPS]
        raise ConfigError(
            f"quantize.include_nodes {include!r} (minus static_exclude_nodes {exclude!r}) "
            f"matches none of the {len(candidates)} MatMul/Gemm nodes of {graph}, "
            f"e.g. {candidates[:3]}"
        )
    return chosen


def _quant_type(name: str) -> Any:
    """ONNX Runtime's ``QuantType`` for a config name (``quint8`` or ``qint8``)."""
    from onnxruntime.quantization import QuantType

    return {"quint8": QuantType.QUInt8, "qint8": QuantType.QInt8}[name]


def quantize_dynamic_int8(
    source: Path, target: Path, config: QuantizeConfig, nodes: list[str] | None = None
) -> None:
    """int8 weights, activations scaled per batch: the CPU fast path, not batch-invariant.

    ``nodes`` (default: those ``config.include_nodes`` matches) are the products quantised."""
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    if nodes is not None and not nodes:
        # ONNX Runtime reads an empty list as every node.
        raise ValueError(f"{source}: an empty list of nodes to quantise")

    chosen = quantizable_nodes(source, config.include_nodes) if nodes is None else nodes
    with prepared_for_quantiser(source) as prepared:
        quantize_dynamic(
            str(prepared),
            str(target),
            per_channel=config.per_channel,
            weight_type=_quant_type(config.weight_type),
            nodes_to_quantize=chosen,
            reduce_range=config.reduce_range,
            # The fused contrib ops of an optimised graph have no inferred output types: float.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


def quantize_static_int8(
    source: Path,
    target: Path,
    batches: list[dict[str, np.ndarray]],
    config: QuantizeConfig,
    symmetric: bool = False,
) -> None:
    """QDQ int8 with activation ranges calibrated on ``batches``.

    ``symmetric`` makes activations signed int8 with zero-point 0, as TensorRT requires; the
    default follows the config (unsigned activations are ONNX Runtime's fast path on x86).
    One fixed activation range suits zero-centred, narrow activations only, so in both static
    graphs the nodes matching ``static_exclude_nodes`` (one-sided or wide-range inputs) stay in
    float.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        quantize_static,
    )

    progress = Progress(
        f"calibrating {STATIC_SYMMETRIC if symmetric else STATIC}", len(batches), logger
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.remaining = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.remaining, None)
            if batch is not None:
                progress.step()
            return batch

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
    }
    nodes = quantizable_nodes(source, config.include_nodes, config.static_exclude_nodes)
    with prepared_for_quantiser(source) as prepared:
        quantize_static(
            str(prepared),
            str(target),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=config.per_channel,
            activation_type=_quant_type("qint8" if symmetric else config.activation_type),
            weight_type=_quant_type("qint8" if symmetric else config.weight_type),
            nodes_to_quantize=nodes,
            calibrate_method=methods[config.calibration_method],
            # The symmetric graph too: its accuracy is checked by ONNX Runtime on this CPU, whose
            # int8 kernels saturate without VNNI; TensorRT reads the 7-bit weights as plain int8.
            reduce_range=config.reduce_range,
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
        )
    logger.info(
        "%s: calibrated on %d batches and quantised in %.0f s; wrote %s",
        STATIC_SYMMETRIC if symmetric else STATIC,
        progress.done,
        progress.elapsed,
        target,
    )


def graph_scores(
    graph: Path,
    tokenize: PairTokenizer,
    pairs: pd.DataFrame,
    labels: np.ndarray,
    class_names: list[str],
    positive_index: int,
    batch_size: int,
    threads: int,
) -> tuple[dict[str, float], np.ndarray]:
    """Accuracy, F1 ... of a graph on labelled pairs, and its probabilities; batched as
    ``predict`` batches, which matters for the dynamic graphs (scales per batch)."""
    progress = Progress(
        f"scoring {graph.name} on {len(pairs)} pairs", _batches(pairs, batch_size), logger
    )
    run = counted(progress, onnx_runner(graph, threads))
    _, probabilities = run_length_sorted(run, tokenize, pairs, batch_size)
    scores = score_predictions(
        labels, probabilities.argmax(axis=1), probabilities, class_names, positive_index
    )
    logger.info("%s: accuracy %.4f in %.0f s", graph.name, scores["accuracy"], progress.elapsed)
    return scores, probabilities


def counted(progress: Progress, run: Runner) -> Runner:
    """``run``, stepping ``progress`` at every batch it scores."""

    def run_and_count(inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        answer = run(inputs)
        progress.step()
        return answer

    return run_and_count


def _batches(pairs: pd.DataFrame, batch_size: int) -> int:
    return math.ceil(len(pairs) / batch_size)


def batch_invariance(
    graph: Path, tokenize: PairTokenizer, pairs: pd.DataFrame, batch_size: int, threads: int
) -> float:
    """Max |Δprobability| of each pair scored alone versus in ``predict``'s batches of
    ``batch_size``."""
    runner = onnx_runner(graph, threads)
    progress = Progress(
        f"{graph.name}: batch invariance on {len(pairs)} pairs", len(pairs), logger, "pairs"
    )
    _, alone = run_batches(counted(progress, runner), tokenize, pairs, 1)
    _, batched = run_length_sorted(runner, tokenize, pairs, batch_size)
    invariance = float(np.abs(alone - batched).max())
    logger.info(
        "%s: max |Δprobability| %.2e between batch 1 and batch %d, in %.0f s",
        graph.name,
        invariance,
        batch_size,
        progress.elapsed,
    )
    return invariance


def quantize_bundle(
    onnx_dir: Path,
    out_dir: Path,
    model: str,
    splits: dict[str, pd.DataFrame],
    config: QuantizeConfig,
    batch_size: int,
    threads: int,
    seed: int,
) -> dict[str, Any]:
    """Write the int8 variants of ``model`` with tokenizer and card; gate them; metrics.

    Each variant's validation predictions are compared with the fp32 graph's on the same pairs
    (``accuracy_gate``). A CPU graph beyond ``max_accuracy_drop`` at ``gate_confidence`` is
    recorded under ``rejected``, with its figures, to be left out of serving and of the
    benchmark; the stage stops only when every CPU graph is rejected (a setting is wrong: the
    fp32 graphs would still serve, but nothing quantised would). Batch invariance is measured on
    the test split and recorded; the benchmark stage measures it again as it chooses.
    """
    fp32 = onnx_dir / variant_file(model)
    card = read_model_card(fp32)
    tokenize = PairTokenizer.load(onnx_dir / TOKENIZER_SUBDIR, card["max_length"])
    shutil.copytree(onnx_dir / TOKENIZER_SUBDIR, out_dir / TOKENIZER_SUBDIR)
    calibration = calibration_batches(
        tokenize, splits["train"], config.calibration_size, config.calibration_batch_size, seed
    )
    graphs = {
        name: out_dir / variant_file(model, name)
        for name in (DYNAMIC, DYNAMIC_OPTIMIZED, STATIC, STATIC_SYMMETRIC)
    }
    quantize_dynamic_int8(fp32, graphs[DYNAMIC], config)
    quantize_dynamic_int8(
        onnx_dir / variant_file(model, OPTIMIZED), graphs[DYNAMIC_OPTIMIZED], config
    )
    quantize_static_int8(fp32, graphs[STATIC], calibration, config)
    quantize_static_int8(fp32, graphs[STATIC_SYMMETRIC], calibration, config, symmetric=True)
    val = splits["val"]
    labels = val[LABEL].to_numpy()
    positive = card["class_names"].index(card["positive_label"])

    def score(graph: Path) -> tuple[dict[str, float], np.ndarray]:
        scores, probabilities = graph_scores(
            graph, tokenize, val, labels, card["class_names"], positive, batch_size, threads
        )
        return scores, probabilities.argmax(axis=1)

    reference, fp32_predictions = score(fp32)
    calibration_pairs = sum(len(batch[SCORING_INPUTS[0]]) for batch in calibration)
    metrics: dict[str, Any] = {
        "val_fp32": reference,
        "calibration_pairs": calibration_pairs,
    }
    rejected: dict[str, dict[str, Any]] = {}
    for name, graph in graphs.items():
        scores, predictions = score(graph)
        gate = paired_drop(labels, fp32_predictions, predictions, config.gate_confidence)
        invariance = batch_invariance(graph, tokenize, splits["test"], batch_size, threads)
        metrics[name] = {
            "val": scores,
            **gate.figures(),
            "max_abs_probability_diff_batch1_vs_batched": invariance,
            "megabytes": round(graph.stat().st_size / MEBIBYTE, 2),
        }
        if name in CPU_GRAPHS and gate.exceeds(config.max_accuracy_drop):
            reason = rejection_reason(name, gate, config.max_accuracy_drop)
            logger.warning("Rejected (left out of serving and of the benchmark): %s", reason)
            rejected[name] = {"reason": reason, "val": scores, **gate.figures()}
    metrics[REJECTED] = rejected
    if set(CPU_GRAPHS) <= rejected.keys():
        reasons = "; ".join(rejected[name]["reason"] for name in CPU_GRAPHS)
        raise QuantizationError(f"every CPU int8 graph is rejected: {reasons}. {rejection_hint()}")
    write_json(
        out_dir / MODEL_CARD,
        card
        | {
            "graphs": sorted(p.name for p in graphs.values()),
            REJECTED: sorted(graphs[name].name for name in rejected),
        },
    )
    return metrics
