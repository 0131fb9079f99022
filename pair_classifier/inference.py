"""The front door of ``pair-classifier predict``: load a model, score a file, write the answers.

Two kinds of model:
- a model folder with ``bi_encoder/`` (encoder, tokenizer, head) and ``classifier/`` (the SVM),
  run with PyTorch and scikit-learn (``predictor.PairPredictor``);
- an exported graph (``artifacts/onnx/*.onnx``, ``artifacts/quantized/*.onnx``) with its
  ``model.json`` and ``tokenizer/`` beside it, run with ONNX Runtime and ``tokenizers`` only
  (``export.onnx_predictor.OnnxPairPredictor``).

The file formats are ``prediction_files``'; neither Lightning nor DVC is needed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from pair_classifier.errors import InputError
from pair_classifier.export.interface import ONNX_SUFFIX
from pair_classifier.export.onnx_predictor import OnnxPairPredictor
from pair_classifier.prediction_files import (
    check_output_path,
    read_input_pairs,
    text_pairs,
    write_predictions,
)
from pair_classifier.predictor import PairPredictor, refuse_output_columns, with_predictions

logger = logging.getLogger(__name__)


def load_predictor(model: Path, batch_size: int) -> PairPredictor | OnnxPairPredictor:
    """An ``.onnx`` graph runs on ONNX Runtime; a folder is a PyTorch model folder."""
    logger.debug("loading %s", model)
    if model.suffix == ONNX_SUFFIX:
        if not model.is_file():
            raise InputError(f"{model}: file not found")
        return OnnxPairPredictor(model, batch_size)
    if not model.is_dir():
        raise InputError(f"{model}: not a model folder nor an .onnx graph")
    return PairPredictor.load(model, batch_size)


def predict_file(
    model: Path, input_path: Path, output_path: Path, batch_size: int, text_a: str, text_b: str
) -> pd.DataFrame:
    """Score every pair of ``input_path`` and write them with labels and probabilities.

    Checked before any scoring, so that a mistake does not cost a scoring run: the output's
    suffix (and that it is not a folder), the input, and that no input column has a prediction
    column's name. The texts are the columns ``text_a`` and ``text_b`` name; every input
    column, whatever its name (a ``text_a`` beside ``--text-a q1`` too), is written back as is.
    """
    check_output_path(output_path)
    rows = read_input_pairs(input_path, text_a, text_b)
    predictor = load_predictor(model, batch_size)
    refuse_output_columns(input_path, rows.columns, predictor.class_names)
    predictions = with_predictions(predictor, text_pairs(rows, text_a, text_b), rows)
    write_predictions(predictions, output_path)
    return predictions
