"""Exporting the scoring path to ONNX and optimising it; both checked against the original."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pair_classifier.config import ExportConfig
from pair_classifier.constants import MEBIBYTE
from pair_classifier.export.interface import SCORING_INPUTS, SCORING_OUTPUTS, ExportError
from pair_classifier.export.runtime import (
    check_parity,
    onnx_runner,
    parity,
    run_batches,
    torch_runner,
)
from pair_classifier.export.scoring import ScoringModel
from pair_classifier.export.tokenization import PairTokenizer

EAGER_ATTENTION = "eager"  # traceable attention; SDPA kernels do not export with the legacy path
FUSION_FLAG = "enable_"  # FusionOptions' switches are enable_<fusion>


def export_onnx(
    model: ScoringModel, example: dict[str, np.ndarray], path: Path, opset: int
) -> None:
    """Write ``model`` as one ONNX graph with dynamic batch and sequence axes."""
    import onnx
    import torch

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
    source: Path,
    target: Path,
    num_heads: int,
    attention_width: int,
    opt_level: int,
    fusions_off: Sequence[str] = (),
) -> None:
    """ONNX Runtime's transformer optimiser: fused attention, LayerNorm, GELU.

    ``attention_width`` is heads x head size, which pruned heads make smaller than the hidden
    size; ``fusions_off`` names the fusions to leave out (`export.optimizer_fusions_off`).
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    known = sorted(n.removeprefix(FUSION_FLAG) for n in vars(options) if n.startswith(FUSION_FLAG))
    for name in fusions_off:
        if name not in known:
            raise ExportError(
                f"export.optimizer_fusions_off: unknown fusion {name!r}; expected one of {known}"
            )
        setattr(options, FUSION_FLAG + name, False)
    optimized = optimize_model(
        str(source),
        model_type="bert",
        num_heads=num_heads,
        hidden_size=attention_width,
        opt_level=opt_level,
        optimization_options=options,
    )
    optimized.save_model_to_file(str(target))


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
    report = parity(reference, candidate, config.tie_margin)
    check_parity(report, name, config.max_abs_score_diff, config.min_prediction_agreement)
    return report.as_dict() | {"megabytes": round(path.stat().st_size / MEBIBYTE, 2)}


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
        config.tie_margin,
    )
    check_parity(report, name, config.max_abs_score_diff, config.min_prediction_agreement)
    return report.as_dict() | {"megabytes": round(candidate.stat().st_size / MEBIBYTE, 2)}
