"""The export folder: ONNX graphs of teacher and student, tokenizer and a model card.

Everything inference needs travels in one folder: ``pair-classifier predict artifacts/onnx/
student.onnx ...`` reads the tokenizer and class names beside the graph.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from pair_classifier.config import ExportConfig
from pair_classifier.constants import DEPLOYED_MODEL
from pair_classifier.export.interface import (
    MODEL_CARD,
    ONNX_SUFFIX,
    OPTIMIZED,
    SCORING_INPUTS,
    SCORING_OUTPUTS,
    TOKENIZER_SUBDIR,
    ExportError,
    variant_file,
)
from pair_classifier.export.onnx_export import (
    check_onnx_against,
    export_scoring_model,
    optimize_onnx,
)
from pair_classifier.export.scoring import ScoringModel
from pair_classifier.export.tokenization import PairTokenizer
from pair_classifier.io_utils import write_json
from pair_classifier.predictor import PairPredictor

logger = logging.getLogger(__name__)


def export_bundle(
    models: dict[str, Path],
    out_dir: Path,
    pairs: pd.DataFrame,
    config: ExportConfig,
    deployed: str = DEPLOYED_MODEL,
) -> dict[str, Any]:
    """Export every model folder of ``models`` (name -> folder) into ``out_dir``; parity metrics.

    ``deployed`` names the deployment model, whatever its place in ``models``: it also gets an
    ORT-optimised graph, its tokenizer is the one saved beside the graphs, and the model card
    (class names, max length) describes it.
    """
    if deployed not in models:
        raise ExportError(
            f"the deployed model {deployed!r} is not among the models to export {sorted(models)}"
        )
    metrics: dict[str, Any] = {}
    serving: PairPredictor | None = None
    for name, model_dir in models.items():
        predictor = PairPredictor.load(model_dir, config.parity_batch_size)
        logger.info("exporting %s (%s)", name, model_dir)
        predictor.bi_encoder.tokenizer.save_pretrained(out_dir / TOKENIZER_SUBDIR)
        max_length = predictor.bi_encoder.spec.max_length
        tokenize = PairTokenizer.load(out_dir / TOKENIZER_SUBDIR, max_length)
        scoring = ScoringModel(predictor.bi_encoder, predictor.classifier)
        path = out_dir / variant_file(name)
        metrics[name] = export_scoring_model(name, scoring, tokenize, pairs, path, config)
        if name == deployed:
            serving = predictor
    assert serving is not None  # deployed is among models, checked above
    # the models share the teacher's tokenizer; the deployed one's is saved last all the same
    serving.bi_encoder.tokenizer.save_pretrained(out_dir / TOKENIZER_SUBDIR)
    spec = serving.bi_encoder.spec
    tokenize = PairTokenizer.load(out_dir / TOKENIZER_SUBDIR, spec.max_length)
    encoder_config = serving.bi_encoder.encoder.config
    heads = spec.pruned_heads[0] if spec.pruned_heads else encoder_config.num_attention_heads
    head_size = encoder_config.hidden_size // encoder_config.num_attention_heads
    optimized = out_dir / variant_file(deployed, OPTIMIZED)
    optimize_onnx(
        out_dir / variant_file(deployed),
        optimized,
        heads,
        heads * head_size,
        config.optimize_level,
        config.optimizer_fusions_off,
    )
    metrics[f"{deployed}_{OPTIMIZED}"] = check_onnx_against(
        f"{deployed} {OPTIMIZED}",
        out_dir / variant_file(deployed),
        optimized,
        tokenize,
        pairs,
        config,
    )
    write_json(
        out_dir / MODEL_CARD,
        {
            "class_names": spec.class_names,
            "positive_label": spec.positive_label,
            "max_length": spec.max_length,
            "inputs": list(SCORING_INPUTS),
            "outputs": list(SCORING_OUTPUTS),
            "graphs": sorted(p.name for p in out_dir.glob(f"*{ONNX_SUFFIX}")),
            "deployed": deployed,
        },
    )
    logger.info("exported %s into %s; %s is deployed", sorted(models), out_dir, deployed)
    return metrics
