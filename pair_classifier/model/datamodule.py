"""LightningDataModule over the prepared parquet splits, tokenising per batch."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import PreTrainedTokenizerBase
from transformers.trainer_pt_utils import LengthGroupedSampler

from pair_classifier.constants import LABEL, TEXT_A, TEXT_B
from pair_classifier.data.preparation import load_split

Example = tuple[str, str, int]
Batch = dict[str, torch.Tensor]


class PairDataset(Dataset):
    """(text_a, text_b, label) rows; with ``swap_probability`` > 0 a row may come back as (b, a).

    Random swapping (seeded by Lightning's ``seed_everything``) teaches a symmetric task that
    order does not matter, without making epochs longer.
    """

    def __init__(self, frame: pd.DataFrame, swap_probability: float = 0.0) -> None:
        self.rows: list[Example] = list(zip(frame[TEXT_A], frame[TEXT_B], frame[LABEL].astype(int)))
        self.swap_probability = swap_probability

    def __len__(self) -> int:
        return len(self.rows)

    def lengths(self) -> list[int]:
        """Characters of both texts of each row: a cheap stand-in for its padded cost."""
        return [len(a) + len(b) for a, b, _ in self.rows]

    def __getitem__(self, index: int) -> Example:
        a, b, label = self.rows[index]
        if self.swap_probability and torch.rand(()).item() < self.swap_probability:
            return b, a, label
        return a, b, label


def train_sampler(dataset: PairDataset, batch_size: int, group_by_length: bool) -> Sampler | None:
    """Shuffled batches of similar length (less padding, faster epochs), or plain shuffling.

    transformers' ``LengthGroupedSampler``: a random permutation cut into mega-batches of 50
    batches, each sorted by length, so batches stay random but pad little.
    """
    if not group_by_length:
        return None
    return LengthGroupedSampler(batch_size, lengths=dataset.lengths())


class PairCollator:
    """Tokenises both texts of a batch, padding only to the longest text in it."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )

    def __call__(self, examples: list[Example]) -> Batch:
        texts_a, texts_b, labels = zip(*examples)
        a = self._tokenize(list(texts_a))
        b = self._tokenize(list(texts_b))
        return {
            "input_ids_a": a["input_ids"],
            "attention_mask_a": a["attention_mask"],
            "input_ids_b": b["input_ids"],
            "attention_mask_b": b["attention_mask"],
            "labels": torch.tensor(labels, dtype=torch.long),
        }


class PairDataModule(L.LightningDataModule):
    """Train/val loaders for the bi-encoder; the test split is left to the evaluate stage."""

    def __init__(
        self,
        prepared_dir: Path,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int,
        batch_size: int,
        swap_probability: float,
        num_workers: int = 0,
        group_by_length: bool = False,
    ) -> None:
        super().__init__()
        self.prepared_dir = prepared_dir
        self.collate = PairCollator(tokenizer, max_length)
        self.batch_size = batch_size
        self.swap_probability = swap_probability
        self.num_workers = num_workers
        self.group_by_length = group_by_length
        self.train_set: PairDataset | None = None
        self.val_set: PairDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = PairDataset(
                load_split(self.prepared_dir, "train"), self.swap_probability
            )
            self.val_set = PairDataset(load_split(self.prepared_dir, "val"))

    def train_dataloader(self) -> DataLoader:
        sampler = train_sampler(self.train_set, self.batch_size, self.group_by_length)
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            collate_fn=self.collate,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_set,
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=self.collate,
            num_workers=self.num_workers,
        )
