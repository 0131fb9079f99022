"""Distillation inputs: augmented copies of the training pairs and the loss that skips them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from pair_classifier.compress.augmentation import UNLABELLED, augmented_pairs, drop_words
from pair_classifier.compress.distillation import labelled_cross_entropy
from pair_classifier.constants import LABEL, TEXT_A, TEXT_B

PAIRS = pd.DataFrame(
    {
        TEXT_A: ["the company said profits rose sharply", "shares fell", "word"],
        TEXT_B: ["profits rose sharply the company said", "stocks dropped today", "other"],
        LABEL: [1, 0, 1],
    }
)


def test_drop_words_keeps_order_and_at_least_one_word() -> None:
    rng = np.random.default_rng(0)
    text = "one two three four five six"
    for _ in range(50):
        kept = drop_words(text, 0.5, rng).split()
        assert 1 <= len(kept) <= 6
        assert kept == [word for word in text.split() if word in kept]
    assert drop_words("single", 1.0, rng) == "single"
    assert len(drop_words(text, 1.0, rng).split()) == 1


def test_augmented_pairs_are_unlabelled_seeded_copies() -> None:
    augmented = augmented_pairs(PAIRS, copies=2, word_dropout=0.3, seed=1)
    assert len(augmented) == 2 * len(PAIRS)
    assert (augmented[LABEL] == UNLABELLED).all()
    assert augmented.equals(augmented_pairs(PAIRS, copies=2, word_dropout=0.3, seed=1))
    assert not augmented.equals(augmented_pairs(PAIRS, copies=2, word_dropout=0.3, seed=2))
    assert augmented_pairs(PAIRS, copies=0, word_dropout=0.3, seed=1).empty


def test_cross_entropy_skips_unlabelled_rows() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]], requires_grad=True)
    labels = torch.tensor([0, UNLABELLED, 1])
    expected = F.cross_entropy(logits[[0, 2]], labels[[0, 2]])
    torch.testing.assert_close(labelled_cross_entropy(logits, labels), expected)
    none = labelled_cross_entropy(logits, torch.full((3,), UNLABELLED))
    assert none.item() == 0.0
    none.backward()
    assert logits.grad is not None and not logits.grad.any()
