"""The registered model: the served ONNX graph with its tokenizer and model card, as an MLflow
pyfunc that scores raw text pairs.

It predicts through ``OnnxPairPredictor``, the predictor ``pair-classifier predict`` uses for a
graph, so its answers are predict's on the same graph by construction. The graph, ``model.json``
and ``tokenizer/`` travel as one artifact folder, laid out as the predictor expects them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.errors import InputError
from pair_classifier.export.onnx_predictor import OnnxPairPredictor

SERVED_ARTIFACT = "served"  # the artifact key of the folder: graph, model.json, tokenizer/
INPUT_COLUMNS = (TEXT_A, TEXT_B)


class PairClassifierPyfunc(mlflow.pyfunc.PythonModel):
    """Text pairs in (``text_a``, ``text_b``), predict's columns out: the pairs, the predicted
    label and one probability column per class."""

    def __init__(self, graph_file: str, batch_size: int, threads: int) -> None:
        self.graph_file = graph_file  # the graph's name inside the served folder
        self.batch_size = batch_size
        self.threads = threads
        self.predictor: OnnxPairPredictor | None = None

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the graph, tokenizer and card from the model's artifacts."""
        graph = Path(context.artifacts[SERVED_ARTIFACT]) / self.graph_file
        self.predictor = OnnxPairPredictor(graph, self.batch_size, self.threads)

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """What ``OnnxPairPredictor.predict`` gives on the pairs' two text columns."""
        if self.predictor is None:
            raise RuntimeError("the model's context is not loaded (load it with mlflow.pyfunc)")
        missing = [column for column in INPUT_COLUMNS if column not in model_input.columns]
        if missing:
            raise InputError(f"the pairs need the columns {list(INPUT_COLUMNS)}; missing {missing}")
        pairs = model_input[list(INPUT_COLUMNS)].reset_index(drop=True)
        return self.predictor.predict(pairs)
