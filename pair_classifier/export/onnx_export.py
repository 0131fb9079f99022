"""Exporting the scoring path to ONNX, optimising it, and checking it against PyTorch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import torch

from pair_classifier.config import ExportConfig
from pair_classifier.export.scoring import SCORING_OUTPUTS, ExportError, ScoringModel
from pair_classifier.export.tokenization import SCORING_INPUTS, PairTokenizer

EAGER_ATTENTION = "eager"  # traceable attention; SDPA kernels do not export with the legacy path


@dataclass(frozen=True)
class ParityReport:
    """How far a graph's outputs are from the reference on the same pairs."""

    pairs: int
    max_abs_score_diff: float
    max_abs_probability_diff: float
    prediction_agreement: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "max_abs_score_diff": self.max_abs_score_diff,
            "max_abs_probability_diff": self.max_abs_probability_diff,
            "prediction_agreement": self.prediction_agreement,
        }


class ParityError(ExportError):
    """An exported graph disagrees with its reference beyond the configured thresholds."""


def export_onnx(
    model: ScoringModel, example: dict[str, np.ndarray], path: Path, opset: int
) -> None:
    """Write ``model`` as one ONNX graph with dynamic batch and sequence axes."""
    model = model.eval()
    model.bi_encoder.encoder.config._attn_implementation = EAGER_ATTENTION
    dynamic_axes = {name: {0: "batch", 1: f"sequence_{name[-1]}"} for name in SCORING_INPUTS}
    dynamic_axes |= {name: {0: "batch"} for name in SCORING_OUTPUTS}
    args = tuple(torch.from_numpy(example[name]) for name in SCORING_INPUTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        torch.onnx.export(
            model,
            args,
            str(path),
            input_names=list(SCORING_INPUTS),
            output_names=list(SCORING_OUTPUTS),
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))


def optimize_onnx(
    source: Path, target: Path, num_heads: int, hidden_size: int, opt_level: int
) -> None:
    """ONNX Runtime's transformer optimiser: fused attention, LayerNorm, GELU."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        str(source),
        model_type="bert",
        num_heads=num_heads,
        hidden_size=hidden_size,
        opt_level=opt_level,
    )
    optimized.save_model_to_file(str(target))


def session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (0: all cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_batches(
    run: Any, tokenize: PairTokenizer, pairs: pd.DataFrame, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and probabilities of every pair, in batches of ``batch_size``, input order kept.

    ``run`` maps the four input arrays to (scores, probabilities): an ONNX Runtime session's
    ``run``, a TensorRT engine, or the PyTorch module.
    """
    scores, probabilities = [], []
    for start in range(0, len(pairs), batch_size):
        inputs = tokenize(pairs.iloc[start : start + batch_size])
        batch_scores, batch_probabilities = run(inputs)
        scores.append(np.asarray(batch_scores, dtype=np.float32))
        probabilities.append(np.asarray(batch_probabilities, dtype=np.float32))
    return np.concatenate(scores), np.concatenate(probabilities)


def onnx_runner(path: Path, threads: int) -> Any:
    onnx_session = session(path, threads)

    def run(inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        scores, probabilities = onnx_session.run(list(SCORING_OUTPUTS), inputs)
        return scores, probabilities

    return run


def torch_runner(model: ScoringModel) -> Any:
    model = model.eval()

    @torch.inference_mode()
    def run(inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        scores, probabilities = model(*(torch.from_numpy(inputs[name]) for name in SCORING_INPUTS))
        return scores.numpy(), probabilities.numpy()

    return run


def parity(
    reference: tuple[np.ndarray, np.ndarray], candidate: tuple[np.ndarray, np.ndarray]
) -> ParityReport:
    ref_scores, ref_probabilities = reference
    scores, probabilities = candidate
    return ParityReport(
        pairs=int(len(scores)),
        max_abs_score_diff=float(np.abs(scores - ref_scores).max()),
        max_abs_probability_diff=float(np.abs(probabilities - ref_probabilities).max()),
        prediction_agreement=float(
            (probabilities.argmax(axis=1) == ref_probabilities.argmax(axis=1)).mean()
        ),
    )


def check_parity(
    report: ParityReport, name: str, max_score_diff: float, min_agreement: float
) -> None:
    """Fail loudly when a graph's scores or predictions drift from the reference."""
    problems = []
    if not report.max_abs_score_diff <= max_score_diff:
        problems.append(f"max |Δscore| {report.max_abs_score_diff:.3g} > {max_score_diff:.3g}")
    if report.prediction_agreement < min_agreement:
        problems.append(
            f"prediction agreement {report.prediction_agreement:.4f} < {min_agreement:.4f}"
        )
    if problems:
        raise ParityError(
            f"{name}: parity check failed on {report.pairs} pairs: {'; '.join(problems)}"
        )


def export_scoring_model(
    name: str,
    model: ScoringModel,
    tokenize: PairTokenizer,
    pairs: pd.DataFrame,
    path: Path,
    config: ExportConfig,
) -> dict[str, Any]:
    """Export one model, check the graph against PyTorch on ``pairs``, return the parity report."""
    export_onnx(model, tokenize(pairs.head(2)), path, config.opset)
    reference = run_batches(torch_runner(model), tokenize, pairs, config.parity_batch_size)
    candidate = run_batches(
        onnx_runner(path, config.threads), tokenize, pairs, config.parity_batch_size
    )
    report = parity(reference, candidate)
    check_parity(report, name, config.max_abs_score_diff, config.min_prediction_agreement)
    return report.as_dict() | {"megabytes": round(path.stat().st_size / 2**20, 2)}


def check_onnx_against(
    name: str,
    reference: Path,
    candidate: Path,
    tokenize: PairTokenizer,
    pairs: pd.DataFrame,
    config: ExportConfig,
) -> dict[str, Any]:
    """Parity of one graph with another (e.g. the optimised graph with the plain export)."""
    batch = config.parity_batch_size
    report = parity(
        run_batches(onnx_runner(reference, config.threads), tokenize, pairs, batch),
        run_batches(onnx_runner(candidate, config.threads), tokenize, pairs, batch),
    )
    check_parity(report, name, config.max_abs_score_diff, config.min_prediction_agreement)
    return report.as_dict() | {"megabytes": round(candidate.stat().st_size / 2**20, 2)}
