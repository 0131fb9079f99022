"""Extra inputs for distillation: perturbed copies of the training pairs.

A student learns the teacher's function only where it sees inputs. The labelled training set is
small (MRPC: 3.6k pairs), so distillation also shows the student copies of those pairs with
words dropped at random (TinyBERT-style augmentation): the teacher scores them, the student is
taught to match the teacher's vectors and softened outputs there. The copies carry no label (a
dropped word can change a pair's meaning), so only the teacher-matching losses see them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pair_classifier.constants import LABEL, TEXT_A, TEXT_B

UNLABELLED = -100  # torch's cross-entropy ``ignore_index``


def drop_words(text: str, probability: float, rng: np.random.Generator) -> str:
    """``text`` with each word dropped with ``probability``; at least one word is kept."""
    words = text.split()
    if len(words) < 2:
        return text
    kept = [word for word, drop in zip(words, rng.random(len(words)) < probability) if not drop]
    return " ".join(kept) if kept else words[int(rng.integers(len(words)))]


def augmented_pairs(
    frame: pd.DataFrame, copies: int, word_dropout: float, seed: int
) -> pd.DataFrame:
    """``copies`` perturbed, unlabelled copies of every pair of ``frame`` (seeded)."""
    if copies <= 0:
        return frame.iloc[0:0][[TEXT_A, TEXT_B, LABEL]]
    rng = np.random.default_rng(seed)
    texts_a, texts_b = frame[TEXT_A].tolist(), frame[TEXT_B].tolist()
    rows = [
        (drop_words(a, word_dropout, rng), drop_words(b, word_dropout, rng))
        for _ in range(copies)
        for a, b in zip(texts_a, texts_b)
    ]
    augmented = pd.DataFrame(rows, columns=[TEXT_A, TEXT_B])
    augmented[LABEL] = UNLABELLED
    return augmented
