"""What answers the demo page: the Triton server through ``TritonPredictor``, or, when no server
runs, the export folder's served graph through ``OnnxPairPredictor`` (what `predict` runs).

Either way a pair is checked by the servers' own request rules, scored one pair per call, and
answered with the label, every class's probability as `predict` writes it, the truncation flag
and the registered model version that `pair-classifier lineage` traces.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd

from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.errors import reading_artifact
from pair_classifier.export.onnx_predictor import OnnxPairPredictor
from pair_classifier.export.served import served_model
from pair_classifier.io_utils import read_json
from pair_classifier.predictor import PREDICTED_LABEL, PROBABILITY_PREFIX, with_predictions
from pair_classifier.serving.requests import BadRequest, truncation_flags, validated_pairs
from pair_classifier.serving.triton_client import TritonPredictor

logger = logging.getLogger(__name__)

PAIRS_PER_CALL = 1  # the page sends one pair
READY_PATH = "/v2/health/ready"  # Triton's readiness, 200 once every model is loaded
HTTP_OK = 200
HTTP_SCHEMES = ("http://", "https://")
LINEAGE_COMMAND = "pair-classifier lineage"


@dataclass(frozen=True)
class Answer:
    """One scored pair as the page shows it."""

    label: str
    probabilities: dict[str, float]  # class name -> probability, in the model's class order
    truncated: bool  # a text had more tokens than the model reads; scored on its first ones
    model_name: str | None  # the registered model, None when the graph is not the registered one
    model_version: str | None

    @property
    def reference(self) -> str | None:
        """``models:/NAME/VERSION``, what `pair-classifier lineage` takes."""
        if self.model_name is None or self.model_version is None:
            return None
        return f"models:/{self.model_name}/{self.model_version}"


class Scorer(Protocol):
    source: str  # what answers, in words (Triton's URL, or the graph's path)

    def score(self, text_a: object, text_b: object) -> Answer: ...


def checked_pair(text_a: object, text_b: object, max_text_chars: int) -> pd.DataFrame:
    """The pair as one row, refused (``BadRequest``) as a server refuses it, or when a text is
    longer than the page accepts."""
    pairs = validated_pairs([text_a], [text_b], PAIRS_PER_CALL)
    for field in (TEXT_A, TEXT_B):
        length = len(pairs[field].iloc[0])
        if length > max_text_chars:
            raise BadRequest(
                f"field {field!r}: {length} characters, over the page's limit of "
                f"{max_text_chars} (demo.max_text_chars)"
            )
    return pairs


def _answer(
    row: pd.Series, class_names: list[str], truncated: bool, name: str | None, version: str | None
) -> Answer:
    return Answer(
        label=str(row[PREDICTED_LABEL]),
        probabilities={c: float(row[f"{PROBABILITY_PREFIX}{c}"]) for c in class_names},
        truncated=truncated,
        model_name=name,
        model_version=version,
    )


def registered_identity(register_metrics: Path, variant: str) -> tuple[str | None, str | None]:
    """(name, version) of the registered model when ``register_metrics`` records that the
    graph of ``variant`` was registered; (None, None) otherwise, as the graph then has no
    version to trace."""
    if not register_metrics.is_file():
        logger.warning("%s: not found; the answers carry no model version", register_metrics)
        return None, None
    with reading_artifact(register_metrics, "the register stage's record (JSON)"):
        record = read_json(register_metrics)
        name, version = str(record["model_name"]), str(record["version"])
        registered_variant = record["served_variant"]
    if registered_variant != variant:
        logger.warning(
            "%s: version %s holds the %s graph, not the served %s; the answers carry no version",
            register_metrics,
            version,
            registered_variant,
            variant,
        )
        return None, None
    return name, version


class ExportScorer:
    """The served graph of the export folder, scored in this process."""

    def __init__(
        self,
        graph: Path,
        identity: tuple[str | None, str | None],
        threads: int,
        max_text_chars: int,
    ) -> None:
        self.predictor = OnnxPairPredictor(graph, PAIRS_PER_CALL, threads)
        self.name, self.version = identity
        self.max_text_chars = max_text_chars
        self.source = f"the export folder's graph {graph}"
        self.lock = threading.Lock()

    @classmethod
    def from_folders(
        cls,
        benchmark_metrics: Path,
        onnx_dir: Path,
        quantized_dir: Path,
        register_metrics: Path,
        threads: int,
        max_text_chars: int,
    ) -> ExportScorer:
        """The graph the benchmark chose to serve, named by the register stage's record."""
        served = served_model(benchmark_metrics, onnx_dir, quantized_dir)
        identity = registered_identity(register_metrics, served.variant)
        return cls(served.graph, identity, threads, max_text_chars)

    def score(self, text_a: object, text_b: object) -> Answer:
        pairs = checked_pair(text_a, text_b, self.max_text_chars)
        with self.lock:
            row = with_predictions(self.predictor, pairs).iloc[0]
            truncated = bool(truncation_flags(self.predictor.tokenize, pairs)[0])
        return _answer(row, self.predictor.class_names, truncated, self.name, self.version)


class TritonScorer:
    """A model on a running Triton server; the version is the one each answer names.

    ``tritonclient.http`` runs on gevent, whose connections belong to the thread that made
    them, while Gradio calls from a pool of threads: the client lives in one thread of its own
    and every call goes through it.
    """

    def __init__(self, url: str, model: str, registered_name: str, max_text_chars: int) -> None:
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="triton-client")
        self.predictor = self.thread.submit(TritonPredictor, url, model).result()
        self.registered_name = registered_name
        self.max_text_chars = max_text_chars
        self.source = f"Triton at {url} (model {model})"

    def _score(self, pairs: pd.DataFrame) -> Answer:
        """In the client's thread: one request, with the version and truncations it names."""
        self.predictor.versions.clear()
        self.predictor.truncated = 0
        row = with_predictions(self.predictor, pairs).iloc[0]
        return _answer(
            row,
            self.predictor.class_names,
            bool(self.predictor.truncated),
            self.registered_name,
            min(self.predictor.versions),
        )

    def score(self, text_a: object, text_b: object) -> Answer:
        pairs = checked_pair(text_a, text_b, self.max_text_chars)
        return self.thread.submit(self._score, pairs).result()


def triton_ready(url: str, timeout_s: float) -> bool:
    """Whether a Triton server at ``url`` answers its readiness check within ``timeout_s``."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + READY_PATH, timeout=timeout_s) as reply:
            return reply.status == HTTP_OK
    except (OSError, ValueError) as error:  # refused, timed out, an HTTP error, a bad URL
        logger.info("%s: no Triton server ready (%s)", url, error)
        return False


def mlflow_model_link(tracking_uri: str | None, reference: str | None) -> str | None:
    """The registered version's page in the MLflow UI, when the registry is an MLflow server
    (an http(s) tracking URI); a sqlite store has no page to link to."""
    if not tracking_uri or not reference or not tracking_uri.startswith(HTTP_SCHEMES):
        return None
    name, version = reference.removeprefix("models:/").rsplit("/", 1)
    return (
        f"{tracking_uri.rstrip('/')}/#/models/{urllib.parse.quote(name, safe='')}"
        f"/versions/{urllib.parse.quote(version, safe='')}"
    )
