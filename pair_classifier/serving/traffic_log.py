"""The served traffic log: one JSON line per sampled pair a server scored, for the drift check
(``pair-classifier drift``) and the Prometheus exporter to read.

Off by default (``serving.traffic_log``). The serve commands pass the settings to the model as
environment variables (``TrafficLogSettings.environment``), which Triton's Python-backend stubs
and MLflow's uvicorn workers inherit; nothing is written into the model repository or the
registered model, so turning the log on or off rebuilds nothing.

Cost on the request path: one vector of random draws and, for a sampled request, one
``SimpleQueue.put`` of references to arrays the server already holds. Counting tokens (with a
non-truncating copy of the model's tokenizer), building the JSON and writing happen on a
``QueueListener`` thread of the same process.

Safe across processes: each process (a Triton model instance's stub, an MLflow worker) writes
and rotates its own file, ``<dir>/<server>-<pid>.jsonl`` (``RotatingFileHandler``: at
``rotate_bytes`` it becomes ``.jsonl.1`` and older ones shift up to ``rotate_count``), so no two
processes ever write or rename the same file; a reader takes every ``*.jsonl*`` of the folder.

Light imports only (numpy, pandas, tokenizers, the standard library): it runs inside Triton's
own environment (numpy<2, no torch or MLflow).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from logging.handlers import QueueListener, RotatingFileHandler
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.errors import InputError

logger = logging.getLogger(__name__)

# The environment variables the serve commands set; the log is on when the folder is set.
ENV_DIR = "PAIR_CLASSIFIER_TRAFFIC_LOG_DIR"
ENV_SAMPLE_RATE = "PAIR_CLASSIFIER_TRAFFIC_LOG_SAMPLE_RATE"
ENV_ROTATE_BYTES = "PAIR_CLASSIFIER_TRAFFIC_LOG_ROTATE_BYTES"
ENV_ROTATE_COUNT = "PAIR_CLASSIFIER_TRAFFIC_LOG_ROTATE_COUNT"
ENV_TEXTS = "PAIR_CLASSIFIER_TRAFFIC_LOG_TEXTS"
TRUE_VALUES = ("1", "true", "yes")

# The record's fields, in the order they are written (texts only with log_texts).
TIME = "time"
SERVER = "server"
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
TOKENS_A = "tokens_a"
TOKENS_B = "tokens_b"
TRUNCATED = "truncated"
PREDICTED_LABEL = "predicted_label"
PROBABILITIES = "probabilities"
LATENCY_MS = "latency_ms"
RECORD_FIELDS = (
    TIME,
    SERVER,
    MODEL_NAME,
    MODEL_VERSION,
    TOKENS_A,
    TOKENS_B,
    TRUNCATED,
    PREDICTED_LABEL,
    PROBABILITIES,
    LATENCY_MS,
)
TEXT_FIELDS = (TEXT_A, TEXT_B)
SERVERS = ("triton", "mlflow")
LOG_SUFFIX = ".jsonl"
LOG_GLOB = f"*{LOG_SUFFIX}*"  # the live file and its rotated ones (.jsonl.1, .jsonl.2, ...)
PROBABILITY_DECIMALS = 6
LATENCY_DECIMALS = 3
ENCODING = "utf-8"


@dataclass(frozen=True)
class TrafficLogSettings:
    """What a server process needs to write the log (from ``serving.traffic_log``)."""

    directory: Path
    sample_rate: float  # share of pairs written, drawn per pair
    rotate_bytes: int  # a file is rotated before it grows past this
    rotate_count: int  # rotated files kept per process
    log_texts: bool  # write text_a and text_b too

    def environment(self) -> dict[str, str]:
        """The variables a serve command sets so that its model processes write the log."""
        return {
            ENV_DIR: str(self.directory.resolve()),
            ENV_SAMPLE_RATE: repr(self.sample_rate),
            ENV_ROTATE_BYTES: str(self.rotate_bytes),
            ENV_ROTATE_COUNT: str(self.rotate_count),
            ENV_TEXTS: "1" if self.log_texts else "0",
        }

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> TrafficLogSettings | None:
        """The settings the serve command passed, or None when the log is off (no folder)."""
        directory = env.get(ENV_DIR, "").strip()
        if not directory:
            return None
        try:
            settings = cls(
                directory=Path(directory),
                sample_rate=float(env.get(ENV_SAMPLE_RATE, "1")),
                rotate_bytes=int(env.get(ENV_ROTATE_BYTES, "0")),
                rotate_count=int(env.get(ENV_ROTATE_COUNT, "0")),
                log_texts=env.get(ENV_TEXTS, "0").strip().lower() in TRUE_VALUES,
            )
        except ValueError as error:
            raise InputError(f"the traffic log's environment ({ENV_DIR}...): {error}") from error
        if not 0 <= settings.sample_rate <= 1 or settings.rotate_bytes < 1:
            raise InputError(
                f"{ENV_SAMPLE_RATE} must be in [0, 1] and {ENV_ROTATE_BYTES} positive, got "
                f"{settings.sample_rate} and {settings.rotate_bytes}"
            )
        return settings


def log_file(directory: Path, server: str, pid: int) -> Path:
    """This process's own file: no other process writes or rotates it."""
    return directory / f"{server}-{pid}{LOG_SUFFIX}"


def iso_time(epoch_s: float) -> str:
    """An ISO 8601 UTC time with milliseconds: ``2026-12-02T08:41:07.123+00:00``."""
    return datetime.fromtimestamp(epoch_s, timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ScoredRequest:
    """What the request thread hands over: references to arrays it already holds."""

    epoch_s: float
    latency_ms: float
    texts_a: list[str]
    texts_b: list[str]
    probabilities: np.ndarray
    truncated: np.ndarray


class _RecordWriter(QueueListener):
    """Turns a request's sampled pairs into JSON lines on the listener's thread."""

    def __init__(self, log: TrafficLog, handler: logging.Handler) -> None:
        super().__init__(log.queue, handler)
        self.log = log

    def prepare(self, record: Any) -> logging.LogRecord:
        return logging.makeLogRecord({"msg": self.log.lines(record), "levelno": logging.INFO})


class TrafficLog:
    """A server process's traffic log: ``record`` on the request path, the rest off it."""

    def __init__(
        self,
        settings: TrafficLogSettings,
        server: str,
        model_name: str | None,
        model_version: str | None,
        class_names: Sequence[str],
        tokenizer: Any,
    ) -> None:
        from tokenizers import Tokenizer

        self.settings = settings
        self.identity = {SERVER: server, MODEL_NAME: model_name, MODEL_VERSION: model_version}
        self.class_names = list(class_names)
        # Token counts before truncation: a copy of the model's tokenizer that does not cut,
        # used on the listener's thread only.
        self.counter = Tokenizer.from_str(tokenizer.to_str())
        self.counter.no_truncation()
        self.counter.no_padding()
        self.random = np.random.default_rng()
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        settings.directory.mkdir(parents=True, exist_ok=True)
        self.path = log_file(settings.directory, server, os.getpid())
        handler = RotatingFileHandler(
            self.path,
            maxBytes=settings.rotate_bytes,
            backupCount=settings.rotate_count,
            encoding=ENCODING,
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        self.listener = _RecordWriter(self, handler)
        self.listener.start()
        self.closed = False
        atexit.register(self.close)
        logger.info(
            "traffic log: %s, %.3g of the pairs%s",
            self.path,
            settings.sample_rate,
            " with their texts" if settings.log_texts else "",
        )

    def record(
        self,
        pairs: pd.DataFrame,
        probabilities: np.ndarray,
        truncated: np.ndarray,
        started_s: float,
    ) -> None:
        """Queue the sampled pairs of one request (``started_s``: ``time.perf_counter()`` when
        the model began scoring it); returns at once."""
        now, latency_ms = time.time(), (time.perf_counter() - started_s) * 1000
        keep = np.flatnonzero(self.random.random(len(pairs)) < self.settings.sample_rate)
        if not len(keep):
            return
        texts_a, texts_b = pairs[TEXT_A].to_numpy(), pairs[TEXT_B].to_numpy()
        self.queue.put_nowait(
            ScoredRequest(
                now,
                latency_ms,
                list(texts_a[keep]),
                list(texts_b[keep]),
                probabilities[keep],
                np.ravel(truncated)[keep],
            )
        )

    def lines(self, scored: ScoredRequest) -> str:
        """The JSON lines of one request's sampled pairs (on the listener's thread)."""
        tokens = [
            [len(encoding.ids) for encoding in self.counter.encode_batch(texts)]
            for texts in (scored.texts_a, scored.texts_b)
        ]
        common = {TIME: iso_time(scored.epoch_s), **self.identity}
        latency = round(scored.latency_ms, LATENCY_DECIMALS)
        rows = []
        for row, probabilities in enumerate(scored.probabilities.tolist()):
            record = common | {
                TOKENS_A: tokens[0][row],
                TOKENS_B: tokens[1][row],
                TRUNCATED: bool(scored.truncated[row]),
                PREDICTED_LABEL: self.class_names[int(np.argmax(probabilities))],
                PROBABILITIES: {
                    name: round(value, PROBABILITY_DECIMALS)
                    for name, value in zip(self.class_names, probabilities)
                },
                LATENCY_MS: latency,
            }
            if self.settings.log_texts:
                record |= {TEXT_A: scored.texts_a[row], TEXT_B: scored.texts_b[row]}
            rows.append(json.dumps(record, ensure_ascii=False))
        return "\n".join(rows)

    def close(self) -> None:
        """Write what is queued and close the file (Triton's ``finalize``, or at exit)."""
        if self.closed:
            return
        self.closed = True
        self.listener.stop()
        for handler in self.listener.handlers:
            handler.close()


def open_traffic_log(
    env: Mapping[str, str],
    server: str,
    model_name: str | None,
    model_version: str | None,
    class_names: Sequence[str],
    tokenizer: Any,
) -> TrafficLog | None:
    """The process's traffic log when the serve command turned it on, else None."""
    settings = TrafficLogSettings.from_environment(env)
    if settings is None:
        return None
    return TrafficLog(settings, server, model_name, model_version, class_names, tokenizer)


def log_files(path: Path) -> list[Path]:
    """The files of a traffic log: a folder's ``*.jsonl*`` (every process, rotated ones
    included), or one file."""
    if path.is_dir():
        files = sorted(p for p in path.glob(LOG_GLOB) if p.is_file())
        if not files:
            raise InputError(f"{path}: no traffic log files ({LOG_GLOB}) in this folder")
        return files
    if not path.is_file():
        raise InputError(f"{path}: no such file or folder")
    return [path]


def _records(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding=ENCODING, errors="replace").split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):  # the line a server is writing now
                continue
            raise InputError(f"{path}:{number}: not a traffic log record: {error}") from error
        missing = [field for field in RECORD_FIELDS if field not in record]
        if missing:
            raise InputError(f"{path}:{number}: not a traffic log record: no {missing}")
        records.append(record)
    return records


def read_traffic_log(
    path: Path, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """The records of a traffic log folder or file in time order, those in [since, until)
    only; ``time`` as UTC timestamps."""
    records = [record for file in log_files(path) for record in _records(file)]
    frame = pd.DataFrame(
        records,
        columns=list(RECORD_FIELDS)
        + [field for field in TEXT_FIELDS if any(field in record for record in records)],
    )
    frame[TIME] = pd.to_datetime(frame[TIME], utc=True, format="ISO8601")
    if since is not None:
        frame = frame[frame[TIME] >= pd.Timestamp(since)]
    if until is not None:
        frame = frame[frame[TIME] < pd.Timestamp(until)]
    return frame.sort_values(TIME, kind="stable").reset_index(drop=True)


def is_traffic_log(path: Path) -> bool:
    """Whether ``path`` is a traffic log (a folder, or a JSON-lines file whose first record
    has the log's fields) rather than a file of pairs."""
    if path.is_dir():
        return True
    if path.suffix.lower() != LOG_SUFFIX or not path.is_file():
        return False
    with path.open(encoding=ENCODING, errors="replace") as handle:
        first = next((line for line in handle if line.strip()), "")
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(record, dict) and all(field in record for field in RECORD_FIELDS)
