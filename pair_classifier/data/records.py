"""Numbered records of a text file: the one place that knows on which line a record starts.

Both readers of pairs, the training data's (``data.reading``, which quarantines bad rows) and
the scoring input's (``inference``, which stops at the first), split text here, so blank lines,
quoted fields spanning lines and long fields are counted the same way in every message.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pandas as pd

# The csv module's default limit (131,072 characters) would refuse long documents.
MAX_FIELD_CHARS = 2**31 - 1


class RecordSyntaxError(ValueError):
    """The text cannot be split into records; ``line`` is where the broken record starts."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def is_null(value: Any) -> bool:
    """None, NaN or pandas' NA: how a missing value arrives from JSON, parquet or pandas."""
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def is_blank(fields: list[str]) -> bool:
    """An empty or whitespace-only line; a row of empty fields is a (bad) row, not blank."""
    return len(fields) <= 1 and not "".join(fields).strip()


def delimited_records(
    text: str, separator: str, quoted: bool = True
) -> Iterator[tuple[int, list[str]]]:
    """Each non-blank row of CSV/TSV ``text`` with the line it starts on (a quoted field may
    span lines). ``quoted=False`` reads quote characters as ordinary text."""
    for line, fields, _ in delimited_records_as_written(text, separator, quoted):
        yield line, fields


def _without_line_end(record: str) -> str:
    """A record's text less its final line terminator (one of \\r\\n, \\n, \\r)."""
    for end in ("\r\n", "\n", "\r"):
        if record.endswith(end):
            return record[: -len(end)]
    return record


def delimited_records_as_written(
    text: str, separator: str, quoted: bool = True
) -> Iterator[tuple[int, list[str], str]]:
    """As ``delimited_records``, with each record's text exactly as written in the file (every
    column, quotes and separators as they were, less the final line break): what a quarantine
    file keeps so a rejected row can be restored as written."""
    csv.field_size_limit(MAX_FIELD_CHARS)
    # The lines the csv reader reads, split as it splits them, so its line count indexes them.
    lines = list(io.StringIO(text, newline=""))
    # strict: a quote left open fails instead of swallowing the rest of the file into one field
    reader = csv.reader(
        iter(lines),
        delimiter=separator,
        quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE,
        strict=True,
    )
    previous_end = 0
    try:
        for fields in reader:
            start, previous_end = previous_end, reader.line_num
            if not is_blank(fields):
                yield start + 1, fields, _without_line_end("".join(lines[start:previous_end]))
    except csv.Error as error:
        raise RecordSyntaxError(previous_end + 1, str(error)) from error


def json_lines(text: str) -> Iterator[tuple[int, str]]:
    """Each non-blank line of JSON-lines ``text`` with its number. Split on newlines only:
    ``str.splitlines`` would also split inside a JSON string at U+2028 and its kin."""
    for line, raw in enumerate(text.split("\n"), start=1):
        if raw.strip():
            yield line, raw
