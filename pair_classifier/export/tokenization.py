"""Tokenising pairs for exported graphs with the ``tokenizers`` library alone (no torch).

The exported model folder carries ``tokenizer.json`` (the same fast tokenizer the encoder was
trained with); padding is to the longest text of each side of a batch, like training.
"""

from __future__ import annotations

from collections.abc import Sequence
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

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Ids and mask, padded to the longest text of ``texts``."""
        encodings = self.tokenizer.encode_batch(list(texts))
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        return ids, mask

    def __call__(self, pairs: pd.DataFrame) -> dict[str, np.ndarray]:
        ids_a, mask_a = self.encode(pairs[TEXT_A].tolist())
        ids_b, mask_b = self.encode(pairs[TEXT_B].tolist())
        return dict(zip(SCORING_INPUTS, (ids_a, mask_a, ids_b, mask_b)))
