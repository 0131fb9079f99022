"""Scoring pairs with a trained model; needs neither Lightning nor DVC.

Two kinds of model:
- a model folder with ``bi_encoder/`` (encoder, tokenizer, head) and ``classifier/`` (the SVM),
  run with PyTorch and scikit-learn;
- an exported graph (``artifacts/onnx/*.onnx``, ``artifacts/quantized/*.onnx``) with its
  ``model.json`` and ``tokenizer/`` beside it, run with ONNX Runtime and ``tokenizers`` only.

Input files: CSV (``.csv``), TSV (``.tsv``) or JSON lines (``.jsonl``) with a header / keys
``text_a`` and ``text_b`` (other names by option). Every input column is carried to the output
under its own name, so a ``text_a`` column beside ``--text-a q1`` is kept as ordinary data.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from pair_classifier.constants import (
    BI_ENCODER_SUBDIR,
    CLASSIFIER_SUBDIR,
    PROBABILITY_DECIMALS,
    QUOTED_VALUE_CHARS,
    TEXT_A,
    TEXT_B,
)
from pair_classifier.data.records import (
    RecordSyntaxError,
    delimited_records,
    is_null,
    json_lines,
)
from pair_classifier.errors import PairClassifierError
from pair_classifier.io_utils import replacing_file

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
# how a value that is not a text is named in a message, in JSON's words (the input's language)
JSON_TYPE_NAMES = {
    bool: "a boolean",
    int: "a number",
    float: "a number",
    list: "an array",
    dict: "an object",
}


class InputError(PairClassifierError, ValueError):
    """A file given to ``predict`` (the input, or the output path) is unusable; the message
    names the file and, for the input, the line and field."""


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
        """``pairs`` with the predicted label and one probability column per class."""
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


def _os_reason(path: Path, error: OSError) -> str:
    """The OS's message, and the file it concerns when that is not ``path`` itself."""
    reason = error.strerror or str(error)
    if error.filename is not None and Path(error.filename) != path:
        reason = f"{reason} ({error.filename})"
    return reason


def _decoded(path: Path) -> str:
    """The file's text; bytes that are not UTF-8 are named by line. A byte-order mark, as
    spreadsheet exports write it, is dropped."""
    try:
        data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    except OSError as error:
        raise InputError(f"{path}: cannot read: {_os_reason(path, error)}") from error
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


def _text_problem(value: object) -> str | None:
    """What is wrong with a field that should hold a text, or None. A null or a missing JSON
    key counts as empty. CSV/TSV fields are always text (a number is kept as written); a JSON
    number, boolean, array or object is refused rather than scored as its Python spelling."""
    if isinstance(value, str):
        return None if value.strip() else "is empty; every pair needs two texts"
    if is_null(value):
        return "is empty; every pair needs two texts"
    kind = JSON_TYPE_NAMES.get(type(value), type(value).__name__)
    shown = json.dumps(value, ensure_ascii=False, default=str)
    if len(shown) > QUOTED_VALUE_CHARS:
        shown = f"{shown[:QUOTED_VALUE_CHARS]}..."
    return f"must be a string, found {kind}: {shown}"


def read_input_pairs(path: Path, text_a: str = TEXT_A, text_b: str = TEXT_B) -> pd.DataFrame:
    """Read the rows to score, columns named as in the file. ``text_a`` and ``text_b`` must
    hold a non-empty string in every row; the first row that does not is named by line."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    suffix = _suffix(path)
    frame, lines = (
        _read_jsonl(path) if suffix == ".jsonl" else _read_delimited(path, SEPARATORS[suffix])
    )
    if not lines:
        raise InputError(f"{path}: no pairs to score")
    missing = [column for column in (text_a, text_b) if column not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
    columns = (text_a, text_b)
    for line, *texts in zip(lines, *(frame[column] for column in columns)):
        for column, text in zip(columns, texts):
            problem = _text_problem(text)
            if problem is not None:
                raise InputError(f"{path}:{line}: field {column!r} {problem}")
    return frame


def text_pairs(rows: pd.DataFrame, text_a: str, text_b: str) -> pd.DataFrame:
    """The two texts of each row under the names the predictors read. Built apart from the
    rows, so an input column that is itself called ``text_a`` or ``text_b`` cannot collide."""
    return pd.DataFrame(
        {TEXT_A: rows[text_a].to_numpy(), TEXT_B: rows[text_b].to_numpy()}, index=rows.index
    )


def _check_output_path(path: Path) -> str:
    """The output's suffix, checked before any work: a bad path must not cost a scoring run."""
    suffix = _suffix(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected a .csv, .tsv or .jsonl file to write")
    return suffix


def write_predictions(frame: pd.DataFrame, path: Path) -> None:
    """Write predictions in the format the suffix names, through a temporary file renamed over
    ``path``, so a failure leaves any earlier output whole. A value missing from some JSON
    lines' input is written as ``null`` (JSON has no NaN)."""
    suffix = _check_output_path(path)
    try:
        with replacing_file(path) as staging:
            if suffix == ".jsonl":
                present = frame.astype(object).where(frame.notna(), None)
                with staging.open("w", encoding="utf-8") as handle:
                    for record in present.to_dict(orient="records"):
                        line = json.dumps(record, ensure_ascii=False, allow_nan=False)
                        handle.write(line + "\n")
            else:
                frame.to_csv(staging, sep=SEPARATORS[suffix], index=False)
    except OSError as error:
        raise InputError(f"{path}: cannot write: {_os_reason(path, error)}") from error


def predict_file(
    model: Path, input_path: Path, output_path: Path, batch_size: int, text_a: str, text_b: str
) -> pd.DataFrame:
    """Score every pair of ``input_path`` and write them with labels and probabilities.

    Checked before any scoring, so that a mistake does not cost a scoring run: the output's
    suffix (and that it is not a folder), the input, and that no input column has a prediction
    column's name. The texts are the columns ``text_a`` and ``text_b`` name; every input
    column, whatever its name (a ``text_a`` beside ``--text-a q1`` too), is written back as is.
    """
    _check_output_path(output_path)
    rows = read_input_pairs(input_path, text_a, text_b)
    predictor = load_predictor(model, batch_size)
    refuse_output_columns(input_path, rows.columns, predictor.class_names)
    predictions = with_predictions(predictor, text_pairs(rows, text_a, text_b), rows)
    write_predictions(predictions, output_path)
    return predictions
