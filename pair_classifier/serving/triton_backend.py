"""The Python-backend models Triton runs: imported by the ``model.py`` files of the generated
repository (``triton_repository``), inside the Triton server's own environment (numpy<2, no
torch): only the export chain's light modules and ``serving.requests`` are imported.

- ``PairClassifierModel`` (CPU): two texts in, label, class probabilities and a truncated flag
  out; it scores with ``OnnxPairPredictor``, the class ``pair-classifier predict`` scores a
  graph with, so its answers are predict's by construction.
- ``TokenizerModel`` and ``LabelModel`` (GPU ensemble): the steps before and after the scoring
  graph, which the onnxruntime or TensorRT backend runs.

Every request of a dynamic batch is checked on its own (``serving.requests``): a bad one gets a
``TritonError`` (HTTP 400) and the others of the batch are still scored together.
``triton_python_backend_utils`` exists only inside Triton's stub, so it is imported lazily.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.export.interface import SCORING_INPUTS
from pair_classifier.serving.requests import BadRequest, decode_text, validated_pairs
from pair_classifier.serving.traffic_log import open_traffic_log

logger = logging.getLogger(__name__)

TRAFFIC_LOG_SERVER = "triton"  # the traffic log's ``server`` field
# The project root the generated model.py files import pair_classifier from (set by the server).
ENV_SOURCE_ROOT = "PAIR_CLASSIFIER_SOURCE_ROOT"
# Tensor names of the served interface (the ensemble's and the CPU model's alike).
INPUT_TEXT_A = "TEXT_A"
INPUT_TEXT_B = "TEXT_B"
OUTPUT_LABEL = "LABEL"
OUTPUT_PROBABILITIES = "PROBABILITIES"
OUTPUT_TRUNCATED = "TRUNCATED"
REQUEST_INPUTS = {INPUT_TEXT_A: TEXT_A, INPUT_TEXT_B: TEXT_B}
# The scoring graph's probabilities output, as the label step of the ensemble reads it.
GRAPH_PROBABILITIES = "probabilities"
# config.pbtxt parameters the models read (written by triton_repository).
PARAM_GRAPH = "graph"
PARAM_BATCH_SIZE = "batch_size"
PARAM_THREADS = "threads"
PARAM_MAX_BATCH_PAIRS = "max_batch_pairs"
PARAM_CLASS_NAMES = "class_names"
PARAM_MAX_LENGTH = "max_length"
PARAM_SEQUENCE_BUCKET = "sequence_bucket"
TOKENIZER_FOLDER = "tokenizer"


def parameters(model_config: dict[str, Any]) -> dict[str, str]:
    """The ``parameters`` of a model's config.pbtxt, as Triton hands them to ``initialize``."""
    return {key: value["string_value"] for key, value in model_config["parameters"].items()}


def model_folder(args: dict[str, str]) -> Path:
    """The version folder Triton loaded the model from: the graph and tokenizer lie there."""
    return Path(args["model_repository"]) / args["model_version"]


def request_pairs(texts_a: np.ndarray, texts_b: np.ndarray, max_batch_pairs: int) -> pd.DataFrame:
    """One request's pairs from its two BYTES tensors ([n, 1] arrays of bytes), decoded and
    checked as every server checks them; a ``BadRequest`` names the first bad row."""
    decoded = [
        [decode_text(value, field, row) for row, value in enumerate(np.ravel(values))]
        for field, values in ((TEXT_A, texts_a), (TEXT_B, texts_b))
    ]
    return validated_pairs(*decoded, max_batch_pairs)


def labels(probabilities: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """Each row's likeliest class name as a BYTES column ([n, 1]), as predict names it."""
    names = np.array([name.encode("utf-8") for name in class_names], dtype=object)
    return names[probabilities.argmax(axis=1)].reshape(-1, 1)


def split_rows(rows: np.ndarray, counts: Sequence[int]) -> list[np.ndarray]:
    """Rows stacked for the whole batch, cut back into one block per request."""
    return np.split(rows, np.cumsum(counts)[:-1]) if counts else []


def bad_request_error(pb_utils: Any, error: BadRequest) -> Any:
    """A Triton error the HTTP frontend answers with 400 (INVALID_ARG)."""
    return pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG)


def _texts(pb_utils: Any, request: Any) -> tuple[np.ndarray, np.ndarray]:
    return tuple(
        pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in REQUEST_INPUTS
    )


def _checked(pb_utils: Any, requests: Sequence[Any], max_batch_pairs: int) -> tuple:
    """The good requests' pairs and, per request, either its pair count or its error."""
    frames, outcomes = [], []
    for request in requests:
        try:
            pairs = request_pairs(*_texts(pb_utils, request), max_batch_pairs)
        except BadRequest as error:
            outcomes.append(bad_request_error(pb_utils, error))
            continue
        frames.append(pairs)
        outcomes.append(len(pairs))
    return frames, outcomes


class PairClassifierModel:
    """The CPU model: tokenise, score with ONNX Runtime, answer each request of the batch."""

    def initialize(self, args: dict[str, str]) -> None:
        from pair_classifier.export.onnx_predictor import OnnxPairPredictor

        settings = parameters(json.loads(args["model_config"]))
        graph = model_folder(args) / settings[PARAM_GRAPH]
        self.max_batch_pairs = int(settings[PARAM_MAX_BATCH_PAIRS])
        self.predictor = OnnxPairPredictor(
            graph, int(settings[PARAM_BATCH_SIZE]), int(settings[PARAM_THREADS])
        )
        logger.info(
            "Triton model %s version %s: %s", args["model_name"], args["model_version"], graph
        )
        # on when `serve triton` passed serving.traffic_log in the environment
        self.traffic_log = open_traffic_log(
            os.environ,
            TRAFFIC_LOG_SERVER,
            args["model_name"],
            args["model_version"],
            self.predictor.class_names,
            self.predictor.tokenize.tokenizer,
        )

    def finalize(self) -> None:
        if self.traffic_log is not None:
            self.traffic_log.close()

    def execute(self, requests: Sequence[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        from pair_classifier.serving.requests import truncation_flags

        started = time.perf_counter()
        frames, outcomes = _checked(pb_utils, requests, self.max_batch_pairs)
        counts = [outcome for outcome in outcomes if isinstance(outcome, int)]
        if frames:
            pairs = pd.concat(frames, ignore_index=True)
            probabilities = self.predictor.predict_proba(pairs)
            truncated = truncation_flags(self.predictor.tokenize, pairs).reshape(-1, 1)
            if self.traffic_log is not None:
                self.traffic_log.record(pairs, probabilities, truncated, started)
            answers = iter(
                zip(
                    split_rows(labels(probabilities, self.predictor.class_names), counts),
                    split_rows(probabilities, counts),
                    split_rows(truncated, counts),
                )
            )
        responses = []
        for outcome in outcomes:
            if not isinstance(outcome, int):
                responses.append(pb_utils.InferenceResponse(error=outcome))
                continue
            label, probability, flag = next(answers)
            tensors = [
                pb_utils.Tensor(OUTPUT_LABEL, label),
                pb_utils.Tensor(OUTPUT_PROBABILITIES, probability.astype(np.float32)),
                pb_utils.Tensor(OUTPUT_TRUNCATED, flag),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses


def bucketed_inputs(tokenizer: Any, pairs: pd.DataFrame, bucket: int) -> dict[str, np.ndarray]:
    """The graph's four inputs, each side's width padded up to a multiple of ``bucket`` so that
    the next model's dynamic batcher finds requests of equal shapes to batch together; padded
    positions are masked out of attention and pooling."""
    inputs = tokenizer(pairs)
    for ids, mask in zip(SCORING_INPUTS[::2], SCORING_INPUTS[1::2]):
        width = inputs[ids].shape[1]
        extra = -width % bucket
        if extra:
            inputs[ids] = np.pad(
                inputs[ids], ((0, 0), (0, extra)), constant_values=tokenizer.pad_id
            )
            inputs[mask] = np.pad(inputs[mask], ((0, 0), (0, extra)))
    return inputs


class TokenizerModel:
    """The ensemble's first step: texts in, the scoring graph's token ids and masks out."""

    def initialize(self, args: dict[str, str]) -> None:
        from pair_classifier.export.tokenization import PairTokenizer

        settings = parameters(json.loads(args["model_config"]))
        self.max_batch_pairs = int(settings[PARAM_MAX_BATCH_PAIRS])
        self.bucket = int(settings[PARAM_SEQUENCE_BUCKET])
        self.tokenizer = PairTokenizer.load(
            model_folder(args) / TOKENIZER_FOLDER, int(settings[PARAM_MAX_LENGTH])
        )

    def execute(self, requests: Sequence[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        from pair_classifier.serving.requests import truncation_flags

        responses = []
        for request in requests:
            try:
                pairs = request_pairs(*_texts(pb_utils, request), self.max_batch_pairs)
            except BadRequest as error:
                responses.append(
                    pb_utils.InferenceResponse(error=bad_request_error(pb_utils, error))
                )
                continue
            inputs = bucketed_inputs(self.tokenizer, pairs, self.bucket)
            flags = truncation_flags(self.tokenizer, pairs).reshape(-1, 1)
            tensors = [pb_utils.Tensor(name, inputs[name]) for name in SCORING_INPUTS]
            tensors.append(pb_utils.Tensor(OUTPUT_TRUNCATED, flags))
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses


class LabelModel:
    """The ensemble's last step: the graph's probabilities in, the class name out."""

    def initialize(self, args: dict[str, str]) -> None:
        settings = parameters(json.loads(args["model_config"]))
        self.class_names: list[str] = json.loads(settings[PARAM_CLASS_NAMES])

    def execute(self, requests: Sequence[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            probabilities = pb_utils.get_input_tensor_by_name(request, GRAPH_PROBABILITIES)
            label = labels(probabilities.as_numpy(), self.class_names)
            responses.append(
                pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(OUTPUT_LABEL, label)])
            )
        return responses
