"""What the drift checks compare: the window of served traffic (a traffic log, or a file of
pairs) and the reference, reduced to token counts, token ids, texts and model outputs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.errors import InputError
from pair_classifier.prediction_files import read_input_pairs, text_pairs
from pair_classifier.serving import traffic_log as log

logger = logging.getLogger(__name__)

SIDES = (TEXT_A, TEXT_B)
UNK_TOKENS = ("[UNK]", "<unk>")


@dataclass
class Window:
    """Pairs seen by the model: texts (None when a traffic log holds none), each side's token
    count before truncation (special tokens included, as the server counts them) and, once
    known, the model's probabilities (columns in ``class_names`` order)."""

    source: str
    texts: pd.DataFrame | None
    tokens: dict[str, np.ndarray] | None = None
    probabilities: np.ndarray | None = None
    labels: list[str] | None = None

    def __len__(self) -> int:
        if self.texts is not None:
            return len(self.texts)
        return len(next(iter(self.tokens.values())))


class TokenCounter:
    """The export's tokenizer without truncation: counts, ids, the [UNK] id."""

    def __init__(self, tokenizer: object) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.unk_id = next(
            (i for i in map(self.tokenizer.token_to_id, UNK_TOKENS) if i is not None), None
        )

    def counts(self, texts: pd.Series) -> np.ndarray:
        """Tokens per text, special tokens included (what ``max_length`` counts)."""
        return np.array([len(e.ids) for e in self.tokenizer.encode_batch(list(texts))])

    def ids(self, texts: pd.DataFrame) -> list[np.ndarray]:
        """Each pair's token ids (both texts, no special tokens)."""
        sides = [
            self.tokenizer.encode_batch(list(texts[side]), add_special_tokens=False)
            for side in SIDES
        ]
        return [np.array(a.ids + b.ids, dtype=np.int64) for a, b in zip(*sides)]

    def with_counts(self, window: Window) -> Window:
        if window.tokens is None:
            window.tokens = {side: self.counts(window.texts[side]) for side in SIDES}
        return window


def _probabilities(records: pd.DataFrame, class_names: list[str], source: str) -> np.ndarray:
    rows = records[log.PROBABILITIES].tolist()
    unknown = sorted({name for row in rows for name in row} - set(class_names))
    if unknown:
        raise InputError(
            f"{source}: the log's probabilities name classes {unknown} this model does not have "
            f"({class_names}); compare it with the model that served it (--model)"
        )
    return np.array([[row.get(name, 0.0) for name in class_names] for row in rows], dtype=float)


def log_window(
    path: Path,
    class_names: list[str],
    max_pairs: int,
    since: datetime | None,
    until: datetime | None,
) -> Window:
    """The newest ``max_pairs`` records of a traffic log in [since, until)."""
    records = log.read_traffic_log(path, since, until).tail(max_pairs)
    if records.empty:
        raise InputError(f"{path}: no traffic log records in the window {since} .. {until}")
    has_texts = all(side in records and records[side].notna().all() for side in SIDES)
    texts = records[list(SIDES)].reset_index(drop=True) if has_texts else None
    logger.info(
        "window: %d records of %s (%s .. %s)%s",
        len(records),
        path,
        records[log.TIME].min(),
        records[log.TIME].max(),
        "" if has_texts else ", without texts",
    )
    return Window(
        source=str(path),
        texts=texts,
        tokens={
            TEXT_A: records[log.TOKENS_A].to_numpy(dtype=int),
            TEXT_B: records[log.TOKENS_B].to_numpy(dtype=int),
        },
        probabilities=_probabilities(records, class_names, str(path)),
        labels=records[log.PREDICTED_LABEL].astype(str).tolist(),
    )


def pairs_window(path: Path, max_pairs: int, text_a: str, text_b: str) -> Window:
    """The first ``max_pairs`` pairs of a .csv, .tsv or .jsonl file (read like predict's)."""
    rows = read_input_pairs(path, text_a, text_b).head(max_pairs)
    logger.info("window: %d pairs of %s", len(rows), path)
    return Window(str(path), text_pairs(rows, text_a, text_b).reset_index(drop=True))


def reference_frame(path: Path) -> pd.DataFrame:
    """A reference split's pairs: a prepared .parquet split, or a pairs file."""
    if not path.is_file():
        raise InputError(
            f"{path}: reference not found; run the prepare stage (dvc repro prepare) or name "
            "another (--reference, --prediction-reference)"
        )
    if path.suffix.lower() == ".parquet":
        frame = pd.read_parquet(path)
        missing = [side for side in SIDES if side not in frame]
        if missing:
            raise InputError(f"{path}: no column(s) {missing}; expected a prepared split")
        return frame[list(SIDES)].reset_index(drop=True)
    return text_pairs(read_input_pairs(path), TEXT_A, TEXT_B).reset_index(drop=True)


def sample(frame: pd.DataFrame, count: int, seed: int) -> pd.DataFrame:
    """At most ``count`` rows, drawn without replacement (seeded)."""
    if len(frame) <= count:
        return frame
    return frame.sample(count, random_state=seed).reset_index(drop=True)
