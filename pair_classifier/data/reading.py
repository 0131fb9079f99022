"""Reading raw pair files (CSV, TSV, JSONL, parquet) as the data config describes them.

Reading never drops a row: every row comes back either as a ``RawPair`` or as a ``Problem``
that names the file, the line and the reason, so the caller can fail or quarantine it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pair_classifier.config import DataConfig
from pair_classifier.data.records import (
    RecordSyntaxError,
    delimited_records_as_written,
    is_null,
    json_lines,
)
from pair_classifier.errors import DataError

# Lone surrogates are what `errors="surrogateescape"` turns undecodable bytes into.
_UNDECODABLE = re.compile("[\udc80-\udcff]")


@dataclass(frozen=True)
class RawPair:
    """One well-formed row as read from disk; the label is still the raw value as text, and
    ``raw`` the row as written (every column), kept should a later check reject it."""

    line: int
    text_a: str
    text_b: str
    raw_label: str
    raw: str


@dataclass(frozen=True)
class Problem:
    """A row that breaks the data contract, with where and why."""

    file: str
    line: int
    reason: str
    detail: str
    raw: str

    def describe(self) -> str:
        """``file:line: reason: detail``, the form every data error quotes."""
        return f"{self.file}:{self.line}: {self.reason}: {self.detail}"


@dataclass
class ReadResult:
    pairs: list[RawPair]
    problems: list[Problem]


def _undecodable(value: str) -> bool:
    return bool(_UNDECODABLE.search(value))


def _shown(value: str) -> str:
    """A raw value made safe to write as UTF-8 (undecodable bytes shown as \\xNN)."""
    return value.encode("utf-8", errors="surrogateescape").decode(
        "utf-8", errors="backslashreplace"
    )


def _label_text(value: Any) -> str:
    """The raw label as the data config's mapping spells it. An integer label column with a
    missing value arrives from parquet as floats; ``1.0`` is the label ``1``, not ``"1.0"``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _check_columns(path: Path, found: list[str], config: DataConfig) -> None:
    wanted = [config.columns.text_a, config.columns.text_b, config.columns.label]
    missing = [column for column in wanted if column not in found]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; found {found}. "
            f"Set data.columns in the data config to this file's column names."
        )


def _row_to_pair(
    path: Path, line: int, record: dict[str, Any], raw: str, config: DataConfig
) -> RawPair | Problem:
    columns = config.columns
    missing = [c for c in (columns.text_a, columns.text_b, columns.label) if c not in record]
    if missing:
        return Problem(str(path), line, "malformed_row", f"missing field(s) {missing}", raw)
    nulls = [c for c in (columns.text_a, columns.text_b, columns.label) if is_null(record[c])]
    if nulls:
        return Problem(str(path), line, "malformed_row", f"null value in field(s) {nulls}", raw)
    not_text = {
        c: type(record[c]).__name__
        for c in (columns.text_a, columns.text_b)
        if not isinstance(record[c], str)
    }
    if not_text:
        return Problem(
            str(path), line, "malformed_row", f"expected text in field(s), got {not_text}", raw
        )
    text_a, text_b = record[columns.text_a], record[columns.text_b]
    label = _label_text(record[columns.label])
    if any(_undecodable(value) for value in (text_a, text_b, label)):
        return Problem(
            str(path),
            line,
            "undecodable_bytes",
            f"bytes that are not valid {config.encoding}",
            _shown(raw),
        )
    return RawPair(
        line=line, text_a=text_a, text_b=text_b, raw_label=label.strip(), raw=_shown(raw)
    )


def _read_text(path: Path, config: DataConfig) -> str:
    try:
        return path.read_bytes().decode(config.encoding, errors="surrogateescape")
    except LookupError as error:
        raise DataError(f"{path}: unknown encoding {config.encoding!r} in data.encoding") from error


def _read_delimited(path: Path, config: DataConfig) -> ReadResult:
    pairs: list[RawPair] = []
    problems: list[Problem] = []
    header: list[str] | None = None
    records = delimited_records_as_written(
        _read_text(path, config), config.separator, quoted=config.quoting != "none"
    )
    try:
        for line, row, raw in records:
            if header is None:
                header = [field.strip() for field in row]
                _check_columns(path, header, config)
                continue
            if len(row) != len(header):
                problems.append(
                    Problem(
                        str(path),
                        line,
                        "malformed_row",
                        f"expected {len(header)} fields separated by {config.separator!r}, "
                        f"found {len(row)}",
                        _shown(raw),
                    )
                )
                continue
            result = _row_to_pair(path, line, dict(zip(header, row)), raw, config)
            (problems if isinstance(result, Problem) else pairs).append(result)
    except RecordSyntaxError as error:
        raise DataError(f"{path}:{error.line}: cannot parse as {config.format}: {error}") from error
    if header is None:
        raise DataError(f"{path}: empty file, expected a header row")
    return ReadResult(pairs, problems)


def _read_jsonl(path: Path, config: DataConfig) -> ReadResult:
    pairs: list[RawPair] = []
    problems: list[Problem] = []
    for line, raw in json_lines(_read_text(path, config)):
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as error:
            reason = "undecodable_bytes" if _undecodable(raw) else "malformed_row"
            problems.append(Problem(str(path), line, reason, f"not JSON: {error}", _shown(raw)))
            continue
        if not isinstance(record, dict):
            problems.append(
                Problem(str(path), line, "malformed_row", "expected a JSON object", _shown(raw))
            )
            continue
        result = _row_to_pair(path, line, record, raw, config)
        (problems if isinstance(result, Problem) else pairs).append(result)
    if not pairs and problems and all(p.reason == "malformed_row" for p in problems):
        first = problems[0]
        raise DataError(f"{path}: no usable row; first problem: {first.describe()}")
    return ReadResult(pairs, problems)


def _read_parquet(path: Path, config: DataConfig) -> ReadResult:
    try:
        frame = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several unrelated types
        raise DataError(f"{path}: cannot read as parquet: {error}") from error
    _check_columns(path, [str(c) for c in frame.columns], config)
    pairs: list[RawPair] = []
    problems: list[Problem] = []
    for row_number, record in enumerate(frame.to_dict(orient="records"), start=1):
        raw = json.dumps(record, default=str, ensure_ascii=False)
        result = _row_to_pair(path, row_number, record, raw, config)
        (problems if isinstance(result, Problem) else pairs).append(result)
    return ReadResult(pairs, problems)


def read_pairs(path: Path, config: DataConfig) -> ReadResult:
    """Read one raw pair file; rows that cannot be read come back as problems."""
    if not path.is_file():
        raise DataError(f"{path}: file not found (data.files in the data config names it)")
    if config.format in ("csv", "tsv"):
        return _read_delimited(path, config)
    if config.format == "jsonl":
        return _read_jsonl(path, config)
    return _read_parquet(path, config)
