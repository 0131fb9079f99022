"""The rules every server applies to a request before scoring it.

Triton's Python backend and the MLflow pyfunc both call these, so a bad request gets the same
answer from either: a ``BadRequest`` naming the field, the row and what was expected, which each
server turns into its own 4xx. Only light imports (numpy, pandas, tokenizers): the module runs
inside Triton's separate environment, which pins numpy<2 and has no torch or MLflow.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.errors import InputError
from pair_classifier.export.tokenization import PairTokenizer

logger = logging.getLogger(__name__)

REQUEST_FIELDS = (TEXT_A, TEXT_B)
TEXT_PREVIEW_CHARS = 40  # of a bad value quoted in an error message
# What a request field may hold: a JSON list, a numpy array (Triton), a pandas column (MLflow).
LIST_TYPES = (list, tuple, np.ndarray, pd.Series)


class BadRequest(InputError):
    """A request a server refuses with a 4xx; the message names the request field, the row and
    what was expected."""


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= TEXT_PREVIEW_CHARS else f"{text[:TEXT_PREVIEW_CHARS]}..."


def _field_list(field: str, values: object, max_batch_pairs: int) -> Sequence[object]:
    """``values`` if it is a list of at most ``max_batch_pairs`` items, else a ``BadRequest``."""
    if values is None:
        raise BadRequest(f"missing field {field!r}: expected a list of texts")
    if isinstance(values, (str, bytes)) or not isinstance(values, LIST_TYPES):
        raise BadRequest(
            f"field {field!r}: expected a list of texts, got {type(values).__name__} "
            f"{_preview(values)}"
        )
    if len(values) > max_batch_pairs:
        raise BadRequest(
            f"field {field!r}: {len(values)} texts, over the limit of {max_batch_pairs} "
            "pairs per request; split the batch"
        )
    return values


def _texts(field: str, values: Sequence[object]) -> list[str]:
    """``values`` as non-blank strings, or a ``BadRequest`` naming the first bad row."""
    texts = []
    for row, value in enumerate(values):
        if not isinstance(value, str):
            raise BadRequest(
                f"field {field!r}, row {row}: expected a string, got {type(value).__name__} "
                f"{_preview(value)}"
            )
        if not value.strip():
            raise BadRequest(f"field {field!r}, row {row}: expected a non-empty text")
        texts.append(value)
    return texts


def validated_pairs(
    text_a: Sequence[object] | None, text_b: Sequence[object] | None, max_batch_pairs: int
) -> pd.DataFrame:
    """The request's pairs as ``text_a``/``text_b`` columns; ``BadRequest`` on a missing field,
    a field that is not a list, more than ``max_batch_pairs`` pairs (checked before any text,
    so an oversized batch costs nothing), a non-string or blank text, sides of different
    lengths, or no pairs."""
    lists = [
        _field_list(field, values, max_batch_pairs)
        for field, values in zip(REQUEST_FIELDS, (text_a, text_b))
    ]
    texts_a, texts_b = (_texts(field, values) for field, values in zip(REQUEST_FIELDS, lists))
    if len(texts_a) != len(texts_b):
        raise BadRequest(
            f"fields {TEXT_A!r} and {TEXT_B!r}: expected as many texts in each, got "
            f"{len(texts_a)} and {len(texts_b)}"
        )
    if not texts_a:
        raise BadRequest(f"fields {TEXT_A!r} and {TEXT_B!r}: expected at least one pair")
    return pd.DataFrame({TEXT_A: texts_a, TEXT_B: texts_b})


def decode_text(value: bytes, field: str, row: int) -> str:
    """A text sent as bytes (Triton's BYTES tensors), decoded as UTF-8 or refused by name."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest(
            f"field {field!r}, row {row}: expected UTF-8 text, got a byte "
            f"0x{value[error.start]:02x} at offset {error.start} that is not UTF-8"
        ) from error


def truncation_flags(tokenizer: PairTokenizer, pairs: pd.DataFrame) -> np.ndarray:
    """True for each pair where either text has more tokens than the model reads
    (``max_length``, special tokens included): it was scored on its first tokens only."""
    flags = np.zeros(len(pairs), dtype=bool)
    for field in REQUEST_FIELDS:
        encodings = tokenizer.tokenizer.encode_batch(list(pairs[field]))
        flags |= np.array([bool(encoding.overflowing) for encoding in encodings], dtype=bool)
    if flags.any():
        logger.debug(
            "%d of %d pairs truncated to %d tokens", flags.sum(), len(flags), tokenizer.max_length
        )
    return flags
