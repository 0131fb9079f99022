"""Distillation inputs: augmented copies of the training pairs and the loss that skips them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from conftest import pairs_frame
from torch.utils.data import RandomSampler
from transformers.trainer_pt_utils import LengthGroupedSampler

from pair_classifier.compress.augmentation import UNLABELLED, augmented_pairs, drop_words
from pair_classifier.compress.distillation import distill_loaders, labelled_cross_entropy
from pair_classifier.config import DistillConfig
from pair_classifier.constants import BI_ENCODER_SUBDIR, LABEL, TEXT_A, TEXT_B
from pair_classifier.model.bi_encoder import BiEncoder

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


def test_loaders_group_training_batches_by_length_but_not_importance_batches(
    tiny_model_dir: Path,
) -> None:
    teacher = BiEncoder.load(tiny_model_dir / BI_ENCODER_SUBDIR)
    config = DistillConfig(keep_layers=[0], batch_size=8, augment_copies=1)
    train, val = pairs_frame(40, 1), pairs_frame(16, 2)
    training, validation, labelled = distill_loaders(
        teacher, train, val, config, swap_probability=0.5, group_by_length=True, seed=0
    )
    assert isinstance(training.sampler, LengthGroupedSampler)
    assert len(training.dataset) == 2 * len(train)  # one augmented copy
    assert isinstance(labelled.sampler, RandomSampler)  # plain shuffle: all lengths
    assert len(labelled.dataset) == len(train)
    batch = next(iter(validation))
    assert batch["teacher_u"].shape == (8, teacher.embedding_dim)
    assert torch.equal(batch["labels"], torch.tensor(val[LABEL].to_numpy()[:8]))
