"""Running exported graphs (ONNX Runtime on the CPU, or any runner) and checking parity."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.errors import reading_artifact
from pair_classifier.export.interface import SCORING_INPUTS, SCORING_OUTPUTS, ExportError
from pair_classifier.export.tokenization import PairTokenizer

Runner = Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class ParityReport:
    """How far a graph's outputs are from the reference on the same pairs.

    ``near_tie_flips`` counts the changed predictions on pairs the reference itself scores as a
    near-tie (its two likeliest classes within ``tie_margin`` of each other): rounding alone can
    flip those, so they are reported but not held against the graph.
    """

    pairs: int
    max_abs_score_diff: float
    max_abs_probability_diff: float
    flips: int  # pairs whose predicted class changed
    near_tie_flips: int = 0

    @property
    def prediction_agreement(self) -> float:
        return 1.0 - self.flips / self.pairs

    @property
    def agreement_beyond_ties(self) -> float:
        """Prediction agreement with the near-tie flips excused."""
        return 1.0 - (self.flips - self.near_tie_flips) / self.pairs

    def as_dict(self) -> dict[str, Any]:
        """The report as the stage's metrics file records it."""
        return {
            "pairs": self.pairs,
            "max_abs_score_diff": self.max_abs_score_diff,
            "max_abs_probability_diff": self.max_abs_probability_diff,
            "prediction_agreement": self.prediction_agreement,
            "near_tie_flips": self.near_tie_flips,
        }


class ParityError(ExportError):
    """An exported graph disagrees with its reference beyond the configured thresholds."""


def session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (0: all cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with reading_artifact(path, "an ONNX graph"):
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_batches(
    run: Runner, tokenize: PairTokenizer, pairs: pd.DataFrame, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and probabilities of every pair, in batches of ``batch_size``, input order kept.

    ``run`` maps the four input arrays to (scores, probabilities): an ONNX Runtime session's
    ``run``, a TensorRT engine, or the PyTorch module.
    """
    starts = range(0, len(pairs), batch_size)
    return _run_each(run, (tokenize(pairs.iloc[start : start + batch_size]) for start in starts))


def length_order(tokens_a: np.ndarray, tokens_b: np.ndarray) -> np.ndarray:
    """Row positions by the pair's longer text in tokens, then its shorter one.

    A batch costs its two sides' widths (each padded to its longest text). Ordering by the
    longer text keeps both widths close to the rows' own lengths: on MRPC test, batches of 32
    pad to 101,733 token positions this way, 111,237 by the two texts' total tokens and
    130,161 by their total characters (93,113 real tokens).
    """
    return np.lexsort((np.minimum(tokens_a, tokens_b), np.maximum(tokens_a, tokens_b)))


def run_length_sorted(
    run: Runner, tokenize: PairTokenizer, pairs: pd.DataFrame, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Like ``run_batches``, but over length-sorted batches, answers back in input order: how
    ``predict`` serves a graph, so checks made this way see the batches serving makes.

    Every text is tokenised once; the token counts order the pairs, and each batch is padded
    from the ids already made.
    """
    ids_a, ids_b = tokenize.token_ids(pairs[TEXT_A]), tokenize.token_ids(pairs[TEXT_B])
    order = length_order(np.array(list(map(len, ids_a))), np.array(list(map(len, ids_b))))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    inputs = (
        tokenize.inputs([ids_a[i] for i in rows], [ids_b[i] for i in rows]) for rows in batches
    )
    scores, probabilities = _run_each(run, inputs)
    return _to_input_order(scores, order), _to_input_order(probabilities, order)


def _run_each(
    run: Runner, batches: Iterable[dict[str, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and probabilities of every batch, stacked in the batches' order."""
    scores, probabilities = [], []
    for inputs in batches:
        batch_scores, batch_probabilities = run(inputs)
        scores.append(np.asarray(batch_scores, dtype=np.float32))
        probabilities.append(np.asarray(batch_probabilities, dtype=np.float32))
    return np.concatenate(scores), np.concatenate(probabilities)


def _to_input_order(sorted_rows: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Rows computed in ``order`` put back where their pairs came in."""
    rows = np.empty_like(sorted_rows)
    rows[order] = sorted_rows
    return rows


def onnx_runner(path: Path, threads: int) -> Runner:
    """An ONNX Runtime CPU session of the scoring graph at ``path``, as a runner."""
    onnx_session = session(path, threads)

    def run(inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        scores, probabilities = onnx_session.run(list(SCORING_OUTPUTS), inputs)
        return scores, probabilities

    return run


def torch_runner(model: Any) -> Runner:
    """The PyTorch ``ScoringModel`` as a runner (the reference the graphs are checked against)."""
    import torch

    model = model.eval()

    @torch.inference_mode()
    def run(inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        scores, probabilities = model(*(torch.from_numpy(inputs[name]) for name in SCORING_INPUTS))
        return scores.numpy(), probabilities.numpy()

    return run


def parity(
    reference: tuple[np.ndarray, np.ndarray],
    candidate: tuple[np.ndarray, np.ndarray],
    tie_margin: float = 0.0,
) -> ParityReport:
    """How far ``candidate`` strays from ``reference`` (scores, probabilities) of the same pairs."""
    ref_scores, ref_probabilities = reference
    scores, probabilities = candidate
    flipped = probabilities.argmax(axis=1) != ref_probabilities.argmax(axis=1)
    top_two = np.sort(ref_probabilities, axis=1)[:, -2:]
    near_tie = top_two[:, 1] - top_two[:, 0] <= tie_margin
    return ParityReport(
        pairs=int(len(scores)),
        max_abs_score_diff=float(np.abs(scores - ref_scores).max()),
        max_abs_probability_diff=float(np.abs(probabilities - ref_probabilities).max()),
        flips=int(flipped.sum()),
        near_tie_flips=int((flipped & near_tie).sum()),
    )


def check_parity(
    report: ParityReport, name: str, max_score_diff: float, min_agreement: float
) -> None:
    """Fail loudly when a graph's scores or predictions drift from the reference."""
    problems = []
    if not report.max_abs_score_diff <= max_score_diff:
        problems.append(f"max |Δscore| {report.max_abs_score_diff:.3g} > {max_score_diff:.3g}")
    if report.agreement_beyond_ties < min_agreement:
        problems.append(
            f"prediction agreement {report.agreement_beyond_ties:.4f} < {min_agreement:.4f}"
            f" ({report.near_tie_flips} near-tie flips excused)"
        )
    if problems:
        raise ParityError(
            f"{name}: parity check failed on {report.pairs} pairs: {'; '.join(problems)}"
        )
