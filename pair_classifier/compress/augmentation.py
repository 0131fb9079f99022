"""Extra inputs for distillation: perturbed copies of the training pairs.

A student learns the teacher's function only where it sees inputs. The labelled training set is
small (MRPC: 3.6k pairs), so distillation also shows the student copies of those pairs
(TinyBERT-style augmentation): words replaced by their nearest neighbours in the teacher's input
embeddings (TinyBERT draws them from GloVe or a masked language model; the teacher's own
embeddings need no second model) and/or dropped at random. The teacher scores the copies and the
student is taught to match its vectors and softened outputs there. The copies carry no label (a
replaced or dropped word can change a pair's meaning), so only the teacher-matching losses see
them.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from pair_classifier.constants import LABEL, TEXT_A, TEXT_B

UNLABELLED = -100  # torch's cross-entropy ``ignore_index``
# Words of one or two letters (a, of, to) carry the syntax; only longer ones are replaced.
MIN_REPLACED_WORD_CHARS = 3
NEIGHBOUR_SEARCH_ROWS = 2048  # words compared with the whole vocabulary at once (memory bound)


def drop_words(text: str, probability: float, rng: np.random.Generator) -> str:
    """``text`` with each word dropped with ``probability``; at least one word is kept."""
    words = text.split()
    if len(words) < 2:
        return text
    kept = [word for word, drop in zip(words, rng.random(len(words)) < probability) if not drop]
    return " ".join(kept) if kept else words[int(rng.integers(len(words)))]


def word_neighbours(
    words: Iterable[str],
    tokenizer: PreTrainedTokenizerBase,
    embeddings: torch.Tensor,
    count: int,
) -> dict[str, list[str]]:
    """For each of ``words`` that ``tokenizer`` reads as one alphabetic piece of at least
    ``MIN_REPLACED_WORD_CHARS`` letters: the ``count`` alphabetic whole-word pieces nearest it by
    cosine in ``embeddings`` (the teacher's input embeddings, one row per vocabulary id). Fewer
    than ``count`` when the vocabulary has fewer whole-word pieces; never a special token or a
    word-piece continuation."""
    vocabulary = tokenizer.convert_ids_to_tokens(list(range(embeddings.shape[0])))
    # Rows past the tokenizer's vocabulary (padded embeddings) have no piece: None.
    candidate = torch.tensor([piece is not None and piece.isalpha() for piece in vocabulary])
    available = int(candidate.sum()) - 1  # every other candidate than the word itself
    ids: dict[str, int] = {}
    for word in sorted(set(words)):
        pieces = tokenizer.tokenize(word)
        if len(pieces) == 1 and pieces[0].isalpha() and len(pieces[0]) >= MIN_REPLACED_WORD_CHARS:
            ids[word] = tokenizer.convert_tokens_to_ids(pieces[0])
    unit = torch.nn.functional.normalize(embeddings.detach().float(), dim=1)
    keys = list(ids) if available > 0 else []
    neighbours: dict[str, list[str]] = {}
    for start in range(0, len(keys), NEIGHBOUR_SEARCH_ROWS):
        chunk = keys[start : start + NEIGHBOUR_SEARCH_ROWS]
        rows = torch.tensor([ids[word] for word in chunk])
        similarity = unit[rows] @ unit.T
        similarity[:, ~candidate] = -torch.inf
        similarity[torch.arange(len(chunk)), rows] = -torch.inf  # not the word itself
        nearest = similarity.topk(min(count, available), dim=1).indices.tolist()
        neighbours |= {word: [vocabulary[i] for i in row] for word, row in zip(chunk, nearest)}
    return neighbours


def replace_words(
    text: str, neighbours: dict[str, list[str]], probability: float, rng: np.random.Generator
) -> str:
    """``text`` with each word that has neighbours (looked up lower-cased) replaced by a random
    one of them with ``probability``."""
    replaced = []
    for word in text.split():
        candidates = neighbours.get(word.lower())
        if candidates and rng.random() < probability:
            replaced.append(candidates[int(rng.integers(len(candidates)))])
        else:
            replaced.append(word)
    return " ".join(replaced)


def augmented_pairs(
    frame: pd.DataFrame,
    copies: int,
    word_dropout: float,
    seed: int,
    neighbours: dict[str, list[str]] | None = None,
    replace_probability: float = 0.0,
) -> pd.DataFrame:
    """``copies`` perturbed, unlabelled copies of every pair of ``frame`` (seeded): words
    replaced by ``neighbours`` with ``replace_probability``, then dropped with
    ``word_dropout``."""
    if copies <= 0:
        return frame.iloc[0:0][[TEXT_A, TEXT_B, LABEL]]
    rng = np.random.default_rng(seed)

    def perturbed(text: str) -> str:
        if neighbours and replace_probability > 0:
            text = replace_words(text, neighbours, replace_probability, rng)
        return drop_words(text, word_dropout, rng) if word_dropout > 0 else text

    texts_a, texts_b = frame[TEXT_A].tolist(), frame[TEXT_B].tolist()
    rows = [(perturbed(a), perturbed(b)) for _ in range(copies) for a, b in zip(texts_a, texts_b)]
    augmented = pd.DataFrame(rows, columns=[TEXT_A, TEXT_B])
    augmented[LABEL] = UNLABELLED
    return augmented
