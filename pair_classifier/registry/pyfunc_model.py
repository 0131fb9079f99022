"""The registered model: the served ONNX graph with its tokenizer and model card, as an MLflow
pyfunc that scores raw text pairs.

It predicts through ``OnnxPairPredictor``, the predictor ``pair-classifier predict`` uses for a
graph, so its answers are predict's on the same graph by construction. The graph, ``model.json``
and ``tokenizer/`` travel as one artifact folder, laid out as the predictor expects them.

A request passes the serving rules (``pair_classifier.serving.requests``) first; a bad one is an
``MlflowException`` with ``INVALID_PARAMETER_VALUE``, which MLflow's scoring server answers with
a 400. Each answer row says whether a text was truncated to the model's ``max_length`` and which
registered version scored it: MLflow writes ``registered_model_meta`` (name and version) into
every model it downloads from a ``models:/`` URI, aliases resolved, so the version is the one
actually loaded, not one a launcher claims.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.store.artifact.models_artifact_repo import REGISTERED_MODEL_META_FILE_NAME
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType

from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.export.onnx_predictor import OnnxPairPredictor
from pair_classifier.predictor import output_columns
from pair_classifier.serving.requests import (
    LIST_TYPES,
    BadRequest,
    truncation_flags,
    validated_pairs,
)
from pair_classifier.serving.traffic_log import TrafficLog, open_traffic_log

logger = logging.getLogger(__name__)

SERVED_ARTIFACT = "served"  # the artifact key of the folder: graph, model.json, tokenizer/
INPUT_COLUMNS = (TEXT_A, TEXT_B)
# The answer's columns beyond predict's.
TRUNCATED = "truncated"  # either text had more tokens than the model reads
MODEL_NAME = "model_name"  # the registered model that scored the pair (null: not registered)
MODEL_VERSION = "model_version"  # its version, for `pair-classifier lineage`
# The most pairs one request may carry, read when the model loads: a serving setting, not a
# property of the model, so it comes from the server's environment (`pair-classifier serve
# mlflow` sets it from serving.max_batch_pairs); unset, requests are not limited.
ENV_MAX_BATCH_PAIRS = "PAIR_CLASSIFIER_MAX_BATCH_PAIRS"
MLMODEL_FILE = "MLmodel"
NO_BATCH_LIMIT = sys.maxsize
TRAFFIC_LOG_SERVER = "mlflow"  # the traffic log's ``server`` field


def registered_identity(served_folder: Path) -> tuple[str | None, str | None]:
    """(name, version) of the registered model this folder was downloaded as; (None, None)
    when it was loaded from a run or a path (no ``registered_model_meta`` beside ``MLmodel``)."""
    root = next((p for p in served_folder.parents if (p / MLMODEL_FILE).is_file()), None)
    meta = None if root is None else root / REGISTERED_MODEL_META_FILE_NAME
    if meta is None or not meta.is_file():
        return None, None
    found = yaml.safe_load(meta.read_text(encoding="utf-8")) or {}
    name, version = found.get("model_name"), found.get("model_version")
    return (None if name is None else str(name)), (None if version is None else str(version))


def request_signature(example: pd.DataFrame, answer: pd.DataFrame) -> ModelSignature:
    """The signature to log the pyfunc with: its inputs typed ``any``, since MLflow's request
    parser casts values to a typed signature before the model sees them (a JSON ``null`` or
    ``5`` would be scored as the text ``"None"`` or ``"5"``), so the serving rules can refuse
    them; its outputs predict's (``answer``) and this model's own columns."""
    inputs = Schema([ColSpec(AnyType(), column) for column in INPUT_COLUMNS])
    outputs = infer_signature(example, answer).outputs.inputs + [
        ColSpec("boolean", TRUNCATED),
        ColSpec("string", MODEL_NAME, required=False),
        ColSpec("string", MODEL_VERSION, required=False),
    ]
    return ModelSignature(inputs=inputs, outputs=Schema(outputs))


def request_fields(model_input: pd.DataFrame | Mapping[str, Any]) -> tuple[Any, Any]:
    """The request's two text fields. With ``any``-typed inputs, MLflow hands the columnar
    ``{"inputs": {"text_a": [...], "text_b": [...]}}`` over as one row holding both lists: those
    lists are the fields (a text must be a string, so no single pair looks like that)."""
    text_a, text_b = model_input.get(TEXT_A), model_input.get(TEXT_B)
    if isinstance(model_input, pd.DataFrame) and len(model_input) == 1 and text_a is not None:
        first_a, first_b = text_a.iloc[0], None if text_b is None else text_b.iloc[0]
        if isinstance(first_a, LIST_TYPES) and isinstance(first_b, LIST_TYPES):
            return first_a, first_b
    return text_a, text_b


def batch_limit(env: Mapping[str, str]) -> int:
    """The most pairs per request ``ENV_MAX_BATCH_PAIRS`` allows, or no limit when unset."""
    value = env.get(ENV_MAX_BATCH_PAIRS, "").strip()
    if not value:
        return NO_BATCH_LIMIT
    if not value.isdigit() or int(value) < 1:
        raise MlflowException(
            f"{ENV_MAX_BATCH_PAIRS}: expected a positive integer, got {value!r}",
            error_code=INVALID_PARAMETER_VALUE,
        )
    return int(value)


class PairClassifierPyfunc(mlflow.pyfunc.PythonModel):
    """Text pairs in (``text_a``, ``text_b``), predict's columns out (the pairs, the predicted
    label, one probability column per class), then ``truncated``, ``model_name`` and
    ``model_version``."""

    def __init__(self, graph_file: str, batch_size: int, threads: int) -> None:
        self.graph_file = graph_file  # the graph's name inside the served folder
        self.batch_size = batch_size
        self.threads = threads
        self.predictor: OnnxPairPredictor | None = None
        self.max_batch_pairs = NO_BATCH_LIMIT
        self.model_name: str | None = None
        self.model_version: str | None = None

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the graph, tokenizer and card from the model's artifacts; read the request
        limit from the environment and the registered version from the downloaded model."""
        folder = Path(context.artifacts[SERVED_ARTIFACT])
        self.predictor = OnnxPairPredictor(folder / self.graph_file, self.batch_size, self.threads)
        self.max_batch_pairs = batch_limit(os.environ)
        self.model_name, self.model_version = registered_identity(folder)
        # on when `serve mlflow` passed serving.traffic_log in the environment
        self.traffic_log: TrafficLog | None = open_traffic_log(
            os.environ,
            TRAFFIC_LOG_SERVER,
            self.model_name,
            self.model_version,
            self.predictor.class_names,
            self.predictor.tokenize.tokenizer,
        )
        logger.info(
            "loaded %s version %s (%s); at most %s pairs per request",
            self.model_name or "an unregistered model",
            self.model_version,
            self.graph_file,
            "any number of" if self.max_batch_pairs == NO_BATCH_LIMIT else self.max_batch_pairs,
        )

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """What ``OnnxPairPredictor.predict`` gives on the pairs, plus the truncation flags and
        the model's registered name and version; a bad request is refused (400 when served)."""
        if self.predictor is None:
            raise RuntimeError("the model's context is not loaded (load it with mlflow.pyfunc)")
        try:
            pairs = validated_pairs(*request_fields(model_input), self.max_batch_pairs)
        except BadRequest as error:
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from error
        started = time.perf_counter()
        predictions = self.predictor.predict(pairs)
        predictions[TRUNCATED] = truncation_flags(self.predictor.tokenize, pairs)
        if getattr(self, "traffic_log", None) is not None:
            probabilities = predictions[output_columns(self.predictor.class_names)[1:]]
            self.traffic_log.record(
                pairs, probabilities.to_numpy(), predictions[TRUNCATED].to_numpy(), started
            )
        predictions[MODEL_NAME] = self.model_name
        predictions[MODEL_VERSION] = self.model_version
        return predictions
