"""Tokenising pairs for exported graphs with the ``tokenizers`` library alone (no torch).

The exported model folder carries ``tokenizer.json`` (the same fast tokenizer the encoder was
trained with); padding is to the longest text of each side of a batch, like training.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tokenizers import Tokenizer

from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.errors import ArtifactError, reading_artifact
from pair_classifier.export.interface import SCORING_INPUTS

TOKENIZER_FILE = "tokenizer.json"
PAD_TOKENS = ("[PAD]", "<pad>")
DEFAULT_PAD_ID = 0


class PairTokenizer:
    """Token ids and attention masks of both texts of a batch of pairs, as int64 arrays."""

    def __init__(self, tokenizer: Tokenizer, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.no_padding()
        # Padded positions are masked out of attention and pooling, so the id only needs to exist.
        self.pad_id = next(
            (i for i in map(tokenizer.token_to_id, PAD_TOKENS) if i is not None), DEFAULT_PAD_ID
        )
        self.max_length = max_length

    @classmethod
    def load(cls, directory: Path, max_length: int) -> PairTokenizer:
        """The export folder's tokenizer; missing or unreadable, an ``ArtifactError``."""
        path = directory / TOKENIZER_FILE
        if not path.is_file():
            raise ArtifactError(f"{path}: not found; the export folder needs its tokenizer")
        with reading_artifact(path, "a tokenizers tokenizer.json"):
            tokenizer = Tokenizer.from_file(str(path))
        return cls(tokenizer, max_length)

    def token_ids(self, texts: Iterable[str]) -> list[list[int]]:
        """Each text's token ids, truncated to ``max_length``, unpadded."""
        return [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts))]

    def pad(self, rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Ids and mask of token-id rows, padded to the longest row."""
        width = max(len(row) for row in rows)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for position, row in enumerate(rows):
            ids[position, : len(row)] = row
            mask[position, : len(row)] = 1
        return ids, mask

    def inputs(
        self, rows_a: Sequence[Sequence[int]], rows_b: Sequence[Sequence[int]]
    ) -> dict[str, np.ndarray]:
        """The graph's four inputs from both texts' token ids, each side padded on its own."""
        if len(rows_a) != len(rows_b):
            raise ValueError(f"{len(rows_a)} first texts but {len(rows_b)} second texts")
        return dict(zip(SCORING_INPUTS, (*self.pad(rows_a), *self.pad(rows_b))))

    def __call__(self, pairs: pd.DataFrame) -> dict[str, np.ndarray]:
        return self.inputs(self.token_ids(pairs[TEXT_A]), self.token_ids(pairs[TEXT_B]))
