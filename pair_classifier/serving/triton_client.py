"""`pair-classifier serve triton-predict`: score pairs on a running Triton server with
``tritonclient`` and write them as `pair-classifier predict` writes its predictions.

Pairs go in requests of at most the model's own limit (its ``max_batch_pairs`` parameter, read
from the server's model config, so client and server cannot disagree); the answer is read back
per request, with the model version that answered (the registered version, for ``lineage``)
and how many pairs were truncated to the model's ``max_length``.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.export.runtime import length_order
from pair_classifier.prediction_files import (
    check_output_path,
    read_input_pairs,
    text_pairs,
    write_predictions,
)
from pair_classifier.predictor import refuse_output_columns, with_predictions
from pair_classifier.serving.process import ServingError
from pair_classifier.serving.triton_backend import (
    INPUT_TEXT_A,
    INPUT_TEXT_B,
    OUTPUT_PROBABILITIES,
    OUTPUT_TRUNCATED,
    PARAM_CLASS_NAMES,
    PARAM_MAX_BATCH_PAIRS,
)

logger = logging.getLogger(__name__)

BYTES = "BYTES"
TIMEOUT_S = 120.0


def client_address(url: str) -> str:
    """``host:port`` as tritonclient takes it, from ``http://host:port``."""
    parsed = urllib.parse.urlsplit(url if "//" in url else f"http://{url}")
    if parsed.scheme != "http" or not parsed.hostname or parsed.port is None:
        raise ServingError(f"--url {url!r}: expected the server as http://HOST:PORT")
    return parsed.netloc


def _text_tensor(name: str, texts: pd.Series) -> object:
    import tritonclient.http as httpclient

    values = np.array([text.encode("utf-8") for text in texts], dtype=object).reshape(-1, 1)
    tensor = httpclient.InferInput(name, list(values.shape), BYTES)
    tensor.set_data_from_numpy(values)
    return tensor


@dataclass
class TritonPredictor:
    """A model on a Triton server as a ``Predictor`` (``class_names``, ``predict_proba``)."""

    url: str
    model: str
    versions: set[str] = field(default_factory=set)  # the model versions that answered
    truncated: int = 0  # pairs truncated to max_length, as the server flagged them

    def __post_init__(self) -> None:
        import tritonclient.http as httpclient

        self.client = httpclient.InferenceServerClient(
            client_address(self.url), connection_timeout=TIMEOUT_S, network_timeout=TIMEOUT_S
        )
        config = self._call(lambda: self.client.get_model_config(self.model))
        try:
            parameters = config["parameters"]
            self.class_names: list[str] = json.loads(parameters[PARAM_CLASS_NAMES]["string_value"])
            self.max_batch_pairs = int(parameters[PARAM_MAX_BATCH_PAIRS]["string_value"])
        except (KeyError, TypeError, ValueError) as error:
            raise ServingError(
                f"{self.url}: model {self.model!r} lacks the parameters {PARAM_CLASS_NAMES!r} "
                f"and {PARAM_MAX_BATCH_PAIRS!r}; is it a pair-classifier model?"
            ) from error

    def _call(self, request: object) -> object:
        from tritonclient.utils import InferenceServerException

        try:
            return request()
        except InferenceServerException as error:
            raise ServingError(f"{self.url}: {self.model}: {error.message()}") from error
        except OSError as error:
            raise ServingError(f"{self.url}: cannot reach the server: {error}") from error

    def predict_proba(self, pairs: pd.DataFrame) -> np.ndarray:
        """Class probabilities in input order, ``max_batch_pairs`` pairs per request.

        Requests carry pairs of similar lengths (by characters, as the server pads each
        request's texts to its longest): a file in its own order would pad far more.
        """
        import tritonclient.http as httpclient

        outputs = [
            httpclient.InferRequestedOutput(name)
            for name in (OUTPUT_PROBABILITIES, OUTPUT_TRUNCATED)
        ]
        order = length_order(pairs[TEXT_A].str.len().to_numpy(), pairs[TEXT_B].str.len().to_numpy())
        blocks = []
        for start in range(0, len(pairs), self.max_batch_pairs):
            chunk = pairs.iloc[order[start : start + self.max_batch_pairs]]
            inputs = [
                _text_tensor(INPUT_TEXT_A, chunk[TEXT_A]),
                _text_tensor(INPUT_TEXT_B, chunk[TEXT_B]),
            ]
            result = self._call(lambda: self.client.infer(self.model, inputs, outputs=outputs))
            blocks.append(result.as_numpy(OUTPUT_PROBABILITIES))
            self.truncated += int(result.as_numpy(OUTPUT_TRUNCATED).sum())
            self.versions.add(str(result.get_response()["model_version"]))
        probabilities = np.empty((len(pairs), len(self.class_names)), dtype=np.float32)
        if blocks:
            probabilities[order] = np.concatenate(blocks)
        return probabilities

    def close(self) -> None:
        self.client.close()


def predict_on_triton(
    predictor: TritonPredictor, input_path: Path, output_path: Path, text_a: str, text_b: str
) -> pd.DataFrame:
    """Score ``input_path`` on the server and write the rows with their predictions, as
    ``pair-classifier predict`` does (checked before any request: output path, input rows,
    column names)."""
    check_output_path(output_path)
    rows = read_input_pairs(input_path, text_a, text_b)
    refuse_output_columns(input_path, rows.columns, predictor.class_names)
    predictions = with_predictions(predictor, text_pairs(rows, text_a, text_b), rows)
    write_predictions(predictions, output_path)
    logger.info(
        "%s: %d pairs scored by %s version %s (%d truncated)",
        output_path,
        len(predictions),
        predictor.model,
        ", ".join(sorted(predictor.versions)),
        predictor.truncated,
    )
    return predictions


def predict_pair(predictor: TritonPredictor, first: str, second: str) -> dict[str, object]:
    """One pair given on the command line, answered as a JSON-ready record."""
    row = pd.DataFrame({TEXT_A: [first], TEXT_B: [second]})
    record = {
        key: value.item() if isinstance(value, np.generic) else value
        for key, value in with_predictions(predictor, row).iloc[0].items()
    }
    return record | {
        "model_version": ", ".join(sorted(predictor.versions)),
        "truncated": bool(predictor.truncated),
    }
