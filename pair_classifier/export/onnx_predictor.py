"""Scoring pairs with an exported graph: ONNX Runtime and ``tokenizers`` only, no PyTorch.

The graph (``artifacts/onnx/*.onnx``, ``artifacts/quantized/*.onnx``) finds its ``model.json``
and ``tokenizer/`` beside it, so one folder is all a server needs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pair_classifier.export.interface import TOKENIZER_SUBDIR, read_model_card
from pair_classifier.export.runtime import onnx_runner, run_length_sorted
from pair_classifier.export.tokenization import PairTokenizer
from pair_classifier.predictor import with_predictions

logger = logging.getLogger(__name__)


class OnnxPairPredictor:
    """An exported scoring graph run by ONNX Runtime, tokenised with ``tokenizers``."""

    def __init__(self, graph: Path, batch_size: int, threads: int = 0) -> None:
        card = read_model_card(graph)
        self.class_names: list[str] = card["class_names"]
        self.tokenize = PairTokenizer.load(graph.parent / TOKENIZER_SUBDIR, card["max_length"])
        self.run = onnx_runner(graph, threads)
        self.batch_size = batch_size
        logger.debug("loaded the graph %s (classes %s)", graph, self.class_names)

    def predict_proba(self, pairs: pd.DataFrame) -> np.ndarray:
        """Class probabilities in input order, scored in length-sorted batches.

        A graph pads each side of a batch to its longest text, so batching similar lengths
        together saves work (the PyTorch path, which encodes each text on its own, batches texts
        of similar character counts).
        """
        if pairs.empty:
            return np.empty((0, len(self.class_names)), dtype=np.float32)
        return run_length_sorted(self.run, self.tokenize, pairs, self.batch_size)[1]

    def predict(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """``pairs`` with the predicted label and one probability column per class."""
        return with_predictions(self, pairs)
