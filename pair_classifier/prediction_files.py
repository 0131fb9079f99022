"""Reading the pairs ``predict`` scores and writing its predictions; pandas only, no model.

Input files: CSV (``.csv``), TSV (``.tsv``) or JSON lines (``.jsonl``) with a header / keys
``text_a`` and ``text_b`` (other names by option). Every input column is carried to the output
under its own name, so a ``text_a`` column beside ``--text-a q1`` is kept as ordinary data.
Every problem is an ``InputError`` naming the file and, for the input, the line and field.
"""

from __future__ import annotations

import codecs
import json
import logging
from pathlib import Path

import pandas as pd

from pair_classifier.constants import QUOTED_VALUE_CHARS, TEXT_A, TEXT_B
from pair_classifier.data.records import (
    RecordSyntaxError,
    delimited_records,
    is_null,
    json_lines,
)
from pair_classifier.errors import InputError
from pair_classifier.io_utils import replacing_file

logger = logging.getLogger(__name__)

SEPARATORS = {".csv": ",", ".tsv": "\t"}
SUPPORTED_SUFFIXES = (*SEPARATORS, ".jsonl")
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


def check_output_path(path: Path) -> str:
    """The output's suffix, checked before any work: a bad path must not cost a scoring run."""
    suffix = _suffix(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected a .csv, .tsv or .jsonl file to write")
    return suffix


def write_predictions(frame: pd.DataFrame, path: Path) -> None:
    """Write predictions in the format the suffix names, through a temporary file renamed over
    ``path``, so a failure leaves any earlier output whole. A value missing from some JSON
    lines' input is written as ``null`` (JSON has no NaN)."""
    suffix = check_output_path(path)
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
