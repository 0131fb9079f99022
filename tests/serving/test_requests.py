"""The request rules both servers apply: each bad request is refused naming the field, the row
and what was expected; a text beyond the model's max_length is flagged as truncated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import composed

from pair_classifier.config import ConfigError
from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.errors import InputError
from pair_classifier.export.tokenization import PairTokenizer
from pair_classifier.serving.requests import (
    BadRequest,
    decode_text,
    truncation_flags,
    validated_pairs,
)
from pair_classifier.serving.settings import ServingConfig

MAX_PAIRS = 4
MAX_LENGTH = 8  # tokens, special tokens included


def test_good_pairs_become_the_two_text_columns() -> None:
    pairs = validated_pairs(["a dog", "rain"], np.array(["a hound", "sun"]), MAX_PAIRS)
    expected = pd.DataFrame({TEXT_A: ["a dog", "rain"], TEXT_B: ["a hound", "sun"]})
    pd.testing.assert_frame_equal(pairs, expected)
    from_columns = validated_pairs(expected[TEXT_A], expected[TEXT_B], MAX_PAIRS)
    pd.testing.assert_frame_equal(from_columns, expected)


@pytest.mark.parametrize(
    ("text_a", "text_b", "message"),
    [
        (None, ["b"], f"missing field '{TEXT_A}': expected a list of texts"),
        (["a"], None, f"missing field '{TEXT_B}': expected a list of texts"),
        ("a", ["b"], f"field '{TEXT_A}': expected a list of texts, got str 'a'"),
        ({"x": 1}, ["b"], f"field '{TEXT_A}': expected a list of texts, got dict"),
        (["a", 7], ["b", "c"], f"field '{TEXT_A}', row 1: expected a string, got int 7"),
        (["a"], [None], f"field '{TEXT_B}', row 0: expected a string, got NoneType None"),
        (["a", "b"], ["c", b"d"], f"field '{TEXT_B}', row 1: expected a string, got bytes"),
        (["a", ""], ["b", "c"], f"field '{TEXT_A}', row 1: expected a non-empty text"),
        (["a"], [" \t\n"], f"field '{TEXT_B}', row 0: expected a non-empty text"),
        (["a", "b"], ["c"], "expected as many texts in each, got 2 and 1"),
        ([], [], "expected at least one pair"),
        (["a"] * 5, ["b"] * 5, f"field '{TEXT_A}': 5 texts, over the limit of {MAX_PAIRS} pairs"),
    ],
)
def test_a_bad_request_is_refused_by_field_and_row(
    text_a: object, text_b: object, message: str
) -> None:
    with pytest.raises(BadRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        validated_pairs(text_a, text_b, MAX_PAIRS)


def test_the_batch_limit_is_checked_before_the_texts() -> None:
    """An oversized batch costs no per-text work: its bad rows are never looked at."""
    with pytest.raises(BadRequest, match="over the limit"):
        validated_pairs([1] * (MAX_PAIRS + 1), ["b"] * (MAX_PAIRS + 1), MAX_PAIRS)


def test_a_bad_request_is_an_input_error() -> None:
    """The CLI and the pyfunc's Python callers treat it as the user's error."""
    assert issubclass(BadRequest, InputError)


def test_text_bytes_are_decoded_or_refused_by_field_and_row() -> None:
    assert decode_text("naïve café".encode(), TEXT_A, 0) == "naïve café"
    with pytest.raises(BadRequest, match=f"field '{TEXT_B}', row 3: expected UTF-8 text, got a"):
        decode_text(b"ok \xff\xfe", TEXT_B, 3)


def test_a_text_beyond_max_length_is_flagged_truncated(tiny_bert_dir: Path) -> None:
    tokenizer = PairTokenizer.load(tiny_bert_dir, MAX_LENGTH)
    fits = "the company said"  # 3 words + [CLS], [SEP]
    exactly = " ".join(["the"] * (MAX_LENGTH - 2))
    beyond = " ".join(["the"] * (MAX_LENGTH - 1))
    pairs = pd.DataFrame(
        {TEXT_A: [fits, exactly, beyond, fits], TEXT_B: [fits, fits, fits, beyond * 100]}
    )
    assert truncation_flags(tokenizer, pairs).tolist() == [False, False, True, True]
    assert [len(ids) for ids in tokenizer.token_ids(pairs[TEXT_A])] == [5, 8, 8, 5]


def test_serving_section_composes_and_refuses_a_public_bind() -> None:
    config = composed("serving", ServingConfig)
    assert config.host == "127.0.0.1"
    with pytest.raises(ConfigError, match="serving.host: the servers answer without a token"):
        composed("serving", ServingConfig, host="0.0.0.0")
    with pytest.raises(ConfigError, match=r"serving.proxy_port: expected a TCP port"):
        composed("serving", ServingConfig, proxy_port=70000)
    with pytest.raises(ConfigError, match="serving.max_batch_pairs: expected a positive number"):
        composed("serving", ServingConfig, max_batch_pairs=0)
