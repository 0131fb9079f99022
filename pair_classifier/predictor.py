"""Scoring pairs with a trained model folder (PyTorch bi-encoder + SVM), and the columns every
predictor adds to the rows it scores; needs neither Lightning nor DVC.

A model folder holds ``bi_encoder/`` (encoder, tokenizer, head) and ``classifier/`` (the SVM).
The exported graph's predictor (``export/onnx_predictor.py``) follows the same ``Predictor``
protocol and writes the same columns.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from pair_classifier.constants import BI_ENCODER_SUBDIR, CLASSIFIER_SUBDIR, PROBABILITY_DECIMALS
from pair_classifier.errors import InputError

if TYPE_CHECKING:
    from pair_classifier.classifier import FittedClassifier
    from pair_classifier.model.bi_encoder import BiEncoder

logger = logging.getLogger(__name__)

PREDICTED_LABEL = "predicted_label"
PROBABILITY_PREFIX = "probability_"


class Predictor(Protocol):
    class_names: list[str]

    def predict_proba(self, pairs: pd.DataFrame) -> np.ndarray: ...


def output_columns(class_names: list[str]) -> list[str]:
    """The columns predictions add: the label, then one probability per class."""
    return [PREDICTED_LABEL, *(f"{PROBABILITY_PREFIX}{name}" for name in class_names)]


def refuse_output_columns(source: Path | str, columns: pd.Index, class_names: list[str]) -> None:
    """Stop before scoring if an input column has a prediction column's name: writing the
    predictions would silently replace the user's data."""
    clashing = [name for name in output_columns(class_names) if name in columns]
    if clashing:
        raise InputError(
            f"{source}: column(s) {clashing} have the names of prediction columns and would be "
            "overwritten; rename or drop them (is this an earlier output of predict?)"
        )


def with_predictions(
    predictor: Predictor, pairs: pd.DataFrame, rows: pd.DataFrame | None = None
) -> pd.DataFrame:
    """``rows`` (by default ``pairs`` itself, whose ``text_a`` and ``text_b`` are scored) with
    the predicted label and one probability column per class; refuses to overwrite a column."""
    result = (pairs if rows is None else rows).copy()
    refuse_output_columns("input", result.columns, predictor.class_names)
    probabilities = predictor.predict_proba(pairs)
    result[PREDICTED_LABEL] = [predictor.class_names[i] for i in probabilities.argmax(axis=1)]
    for index, name in enumerate(predictor.class_names):
        result[f"{PROBABILITY_PREFIX}{name}"] = probabilities[:, index].round(PROBABILITY_DECIMALS)
    return result


class PairPredictor:
    """Bi-encoder features + SVM, loaded from a model folder."""

    def __init__(
        self, bi_encoder: BiEncoder, classifier: FittedClassifier, batch_size: int
    ) -> None:
        self.bi_encoder = bi_encoder
        self.classifier = classifier
        self.batch_size = batch_size

    @classmethod
    def load(cls, model_dir: Path, batch_size: int) -> PairPredictor:
        """A model folder's bi-encoder and SVM; PyTorch is imported only on this path."""
        from pair_classifier.classifier import FittedClassifier
        from pair_classifier.model.bi_encoder import BiEncoder

        logger.debug("loading the model folder %s", model_dir)
        return cls(
            BiEncoder.load(model_dir / BI_ENCODER_SUBDIR),
            FittedClassifier.load(model_dir / CLASSIFIER_SUBDIR),
            batch_size,
        )

    @property
    def class_names(self) -> list[str]:
        return self.classifier.class_names

    def predict_proba(self, pairs: pd.DataFrame) -> np.ndarray:
        """Class probabilities, one row per pair (columns ``text_a``, ``text_b``)."""
        from pair_classifier.classifier import pair_feature_matrix

        features = pair_feature_matrix(self.bi_encoder, pairs, self.batch_size)
        return self.classifier.predict_proba(features)

    def predict(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """``pairs`` with the predicted label and one probability column per class."""
        return with_predictions(self, pairs)
