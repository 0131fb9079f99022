"""Scoring pairs with a trained model; needs neither Lightning nor DVC.

Two kinds of model:
- a model folder with ``bi_encoder/`` (encoder, tokenizer, head) and ``classifier/`` (the SVM),
  run with PyTorch and scikit-learn;
- an exported graph (``artifacts/onnx/*.onnx``, ``artifacts/quantized/*.onnx``) with its
  ``model.json`` and ``tokenizer/`` beside it, run with ONNX Runtime and ``tokenizers`` only.

Input files: CSV (``.csv``), TSV (``.tsv``) or JSON lines (``.jsonl``) with a header / keys
``text_a`` and ``text_b`` (other names by option). Other columns are carried to the output.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from pair_classifier.constants import BI_ENCODER_SUBDIR, CLASSIFIER_SUBDIR, TEXT_A, TEXT_B
from pair_classifier.data.records import RecordSyntaxError, delimited_records, json_lines
from pair_classifier.errors import PairClassifierError

if TYPE_CHECKING:
    from pair_classifier.classifier import FittedClassifier
    from pair_classifier.model.bi_encoder import BiEncoder

PREDICTED_LABEL = "predicted_label"
PROBABILITY_PREFIX = "probability_"
SEPARATORS = {".csv": ",", ".tsv": "\t"}
SUPPORTED_SUFFIXES = (*SEPARATORS, ".jsonl")
ONNX_SUFFIX = ".onnx"
INPUT_ENCODING = "utf-8"
UNNAMED_COLUMN = "Unnamed: "


class InputError(PairClassifierError, ValueError):
    """An input file for inference is unusable; the message names file, line and field."""


class Predictor(Protocol):
    class_names: list[str]

    def predict_proba(self, pairs: pd.DataFrame) -> np.ndarray: ...


def with_predictions(predictor: Predictor, pairs: pd.DataFrame) -> pd.DataFrame:
    """The input rows with the predicted label and one probability column per class."""
    probabilities = predictor.predict_proba(pairs)
    result = pairs.copy()
    result[PREDICTED_LABEL] = [predictor.class_names[i] for i in probabilities.argmax(axis=1)]
    for index, name in enumerate(predictor.class_names):
        result[f"{PROBABILITY_PREFIX}{name}"] = probabilities[:, index].round(6)
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
        from pair_classifier.classifier import FittedClassifier
        from pair_classifier.model.bi_encoder import BiEncoder

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
        return with_predictions(self, pairs)


class OnnxPairPredictor:
    """An exported scoring graph run by ONNX Runtime, tokenised with ``tokenizers``."""

    def __init__(self, graph: Path, batch_size: int, threads: int = 0) -> None:
        from pair_classifier.export.interface import TOKENIZER_SUBDIR, read_model_card
        from pair_classifier.export.runtime import onnx_runner
        from pair_classifier.export.tokenization import PairTokenizer

        card = read_model_card(graph)
        self.class_names: list[str] = card["class_names"]
        self.tokenize = PairTokenizer.load(graph.parent / TOKENIZER_SUBDIR, card["max_length"])
        self.run = onnx_runner(graph, threads)
        self.batch_size = batch_size

    def predict_proba(self, pairs: pd.DataFrame) -> np.ndarray:
        """Class probabilities in input order, scored in length-sorted batches.

        A graph pads each side of a batch to its longest text, so batching similar lengths
        together saves work (the PyTorch path, which encodes each text on its own, batches texts
        of similar character counts).
        """
        from pair_classifier.export.runtime import run_length_sorted

        if pairs.empty:
            return np.empty((0, len(self.class_names)), dtype=np.float32)
        return run_length_sorted(self.run, self.tokenize, pairs, self.batch_size)[1]

    def predict(self, pairs: pd.DataFrame) -> pd.DataFrame:
        return with_predictions(self, pairs)


def load_predictor(model: Path, batch_size: int) -> PairPredictor | OnnxPairPredictor:
    """An ``.onnx`` graph runs on ONNX Runtime; a folder is a PyTorch model folder."""
    if model.suffix == ONNX_SUFFIX:
        if not model.is_file():
            raise InputError(f"{model}: file not found")
        return OnnxPairPredictor(model, batch_size)
    if not model.is_dir():
        raise InputError(f"{model}: not a model folder nor an .onnx graph")
    return PairPredictor.load(model, batch_size)


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputError(
            f"{path}: unsupported file type {suffix!r}; expected one of {SUPPORTED_SUFFIXES}"
        )
    return suffix


def _decoded(path: Path) -> str:
    """The file's text; bytes that are not UTF-8 are named by line. A byte-order mark, as
    spreadsheet exports write it, is dropped."""
    data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode(INPUT_ENCODING)
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not valid UTF-8 ({error.reason})") from error


def _column_names(path: Path, line: int, header: list[str]) -> list[str]:
    """Header names, stripped; unnamed columns (spreadsheet exports) named as pandas does."""
    names = [name.strip() or f"{UNNAMED_COLUMN}{i}" for i, name in enumerate(header)]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"{path}:{line}: column name(s) {repeated} repeated in the header")
    return names


def _read_delimited(path: Path, separator: str) -> tuple[pd.DataFrame, list[int]]:
    """Rows of a CSV/TSV file with a header, and the line each row starts on."""
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for line, row in delimited_records(_decoded(path), separator):
            if header is None:
                header = _column_names(path, line, row)
                continue
            if len(row) != len(header):
                raise InputError(
                    f"{path}:{line}: expected {len(header)} fields separated by {separator!r} "
                    f"as in the header, found {len(row)}"
                )
            rows.append(row)
            lines.append(line)
    except RecordSyntaxError as error:
        raise InputError(f"{path}:{error.line}: cannot parse: {error}") from error
    if header is None:
        raise InputError(f"{path}: empty file, expected a header row naming the columns")
    return pd.DataFrame(rows, columns=header, dtype=str), lines


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """One JSON object per line (blank lines skipped), and the line of each."""
    records: list[dict[str, object]] = []
    lines: list[int] = []
    for line, raw in json_lines(_decoded(path)):
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as error:
            raise InputError(f"{path}:{line}: not JSON: {error}") from error
        if not isinstance(record, dict):
            raise InputError(
                f"{path}:{line}: expected a JSON object, found {type(record).__name__}"
            )
        records.append(record)
        lines.append(line)
    # object columns keep each value as JSON gave it: a key missing on some lines must not turn
    # the integers of the others into floats
    return pd.DataFrame(records, dtype=object), lines


def read_input_pairs(path: Path, text_a: str = TEXT_A, text_b: str = TEXT_B) -> pd.DataFrame:
    """Read pairs to score; every text must be non-empty. Errors name the file's line."""
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    suffix = _suffix(path)
    frame, lines = (
        _read_jsonl(path) if suffix == ".jsonl" else _read_delimited(path, SEPARATORS[suffix])
    )
    if not lines:
        raise InputError(f"{path}: no pairs to score")
    missing = [column for column in (text_a, text_b) if column not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
    for column in (text_a, text_b):
        values = frame[column]
        empty = values.isna() | values.astype(str).str.strip().eq("")
        if empty.any():
            line = lines[int(np.flatnonzero(empty.to_numpy())[0])]
            raise InputError(
                f"{path}:{line}: field {column!r} is empty; every pair needs two texts"
            )
    return frame.rename(columns={text_a: TEXT_A, text_b: TEXT_B}).astype({TEXT_A: str, TEXT_B: str})


def write_predictions(frame: pd.DataFrame, path: Path) -> None:
    """Write predictions in the format the suffix names, through a temporary file. A value
    missing from some JSON lines' input is written as ``null`` (JSON has no NaN)."""
    suffix = _suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    try:
        if suffix == ".jsonl":
            present = frame.astype(object).where(frame.notna(), None)
            with staging.open("w", encoding="utf-8") as handle:
                for record in present.to_dict(orient="records"):
                    handle.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
        else:
            frame.to_csv(staging, sep=SEPARATORS[suffix], index=False)
        staging.replace(path)
    finally:
        staging.unlink(missing_ok=True)


def predict_file(
    model: Path, input_path: Path, output_path: Path, batch_size: int, text_a: str, text_b: str
) -> pd.DataFrame:
    """Score every pair of ``input_path`` and write them with labels and probabilities."""
    pairs = read_input_pairs(input_path, text_a, text_b)
    predictions = load_predictor(model, batch_size).predict(pairs)
    predictions = predictions.rename(columns={TEXT_A: text_a, TEXT_B: text_b})
    write_predictions(predictions, output_path)
    return predictions
