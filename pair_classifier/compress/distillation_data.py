"""What the student trains on: the training pairs plus their perturbed, unlabelled copies, each
batch carrying the teacher's targets for its texts (and the cross-encoder's logits for its
pairs, when that is the KL teacher)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader

from pair_classifier.compress.augmentation import augmented_pairs, word_neighbours
from pair_classifier.compress.cross_encoder import CrossEncoder, PairLogits
from pair_classifier.compress.teacher_targets import TeacherTargets
from pair_classifier.config import DistillConfig
from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.model.bi_encoder import BiEncoder
from pair_classifier.model.datamodule import PairCollator, PairDataset, train_sampler


class DistillCollator(PairCollator):
    """Adds the teacher's vectors (and token states, when distilling layer-wise) of both texts
    to each tokenised batch, and the cross-encoder's logits of the pair when it is the KL
    teacher."""

    def __init__(
        self,
        tokenizer: Any,
        max_length: int,
        teacher_targets: TeacherTargets,
        pair_logits: PairLogits | None = None,
    ) -> None:
        super().__init__(tokenizer, max_length)
        self.teacher_targets = teacher_targets
        self.pair_logits = pair_logits

    def __call__(self, examples: list[tuple[str, str, int]]) -> dict[str, torch.Tensor]:
        batch = super().__call__(examples)
        texts_a, texts_b = [a for a, _, _ in examples], [b for _, b, _ in examples]
        batch["teacher_u"] = self.teacher_targets.vectors_of(texts_a)
        batch["teacher_v"] = self.teacher_targets.vectors_of(texts_b)
        targets = self.teacher_targets
        for side, texts in (("a", texts_a), ("b", texts_b)):
            length = batch[f"input_ids_{side}"].shape[1]
            if targets.states is not None:
                batch[f"teacher_states_{side}"] = targets.states_of(texts, length)
            if targets.projections is not None:
                batch[f"teacher_projections_{side}"] = targets.projections_of(texts, length)
        if self.pair_logits is not None:
            batch["teacher_logits"] = self.pair_logits(texts_a, texts_b)
        return batch


def replacement_neighbours(
    teacher: BiEncoder, train: pd.DataFrame, config: DistillConfig
) -> dict[str, list[str]] | None:
    """Replacement candidates for the words of the training texts, from the teacher's input
    embeddings; None when the config replaces no words."""
    if config.augment_copies <= 0 or config.augment_replace_probability <= 0:
        return None
    words = (
        word.lower() for text in pd.concat([train[TEXT_A], train[TEXT_B]]) for word in text.split()
    )
    return word_neighbours(
        words,
        teacher.tokenizer,
        teacher.encoder.get_input_embeddings().weight,
        config.augment_neighbours,
    )


def distill_loaders(
    teacher: BiEncoder,
    train: pd.DataFrame,
    val: pd.DataFrame,
    config: DistillConfig,
    swap_probability: float,
    group_by_length: bool,
    seed: int,
    cross_encoder: CrossEncoder | None = None,
    symmetric: bool = False,
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Loaders whose batches carry the teacher's vectors (and, given a ``cross_encoder``, its
    logits): train (with the augmented copies), val, and the labelled training pairs alone (for
    head and channel importance)."""
    augmented = augmented_pairs(
        train,
        config.augment_copies,
        config.augment_word_dropout,
        seed,
        replacement_neighbours(teacher, train, config),
        config.augment_replace_probability,
    )
    every_pair = pd.concat([train, augmented, val], ignore_index=True)
    texts = every_pair[TEXT_A].tolist() + every_pair[TEXT_B].tolist()
    collate = DistillCollator(
        teacher.tokenizer,
        teacher.spec.max_length,
        TeacherTargets(
            teacher,
            texts,
            config.batch_size,
            list(config.hidden_layers),
            config.relation_layer if config.relation_weight > 0 else None,
        ),
        (
            None
            if cross_encoder is None
            else PairLogits(cross_encoder, every_pair, config.batch_size, symmetric)
        ),
    )

    def loader(frame: pd.DataFrame, swap: float, shuffle: bool, by_length: bool) -> DataLoader:
        dataset = PairDataset(frame, swap)
        sampler = train_sampler(dataset, config.batch_size, by_length) if shuffle else None
        return DataLoader(
            dataset,
            batch_size=config.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            collate_fn=collate,
        )

    # Importance is estimated on a few batches: plain shuffling keeps them representative of
    # all lengths (length-grouped batches would favour whichever lengths come first).
    return (
        loader(
            pd.concat([train, augmented], ignore_index=True),
            swap_probability,
            shuffle=True,
            by_length=group_by_length,
        ),
        loader(val, 0.0, shuffle=False, by_length=False),
        loader(train, 0.0, shuffle=True, by_length=False),
    )


def importance_batches(loader: DataLoader, count: int) -> list[dict[str, torch.Tensor]]:
    """The first ``count`` batches of ``loader``, to rank heads and channels on."""
    batches = []
    for batch in loader:
        if len(batches) >= count:
            break
        batches.append(batch)
    return batches
