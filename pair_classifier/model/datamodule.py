"""LightningDataModule over the prepared parquet splits, tokenising per batch."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import PreTrainedTokenizerBase
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

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


class ResumableLengthGroupedSampler(LengthGroupedSampler):
    """transformers' ``LengthGroupedSampler`` that can restart an epoch part-way through.

    It draws each epoch's order exactly as its parent does (same random calls, so a run that
    is never interrupted sees the same batches), and keeps that order: ``state_dict`` hands it
    over and ``load_state_dict`` makes the next ``iter()`` continue it after the samples
    already consumed, instead of drawing a new one.
    """

    def __init__(self, batch_size: int, lengths: list[int]) -> None:
        super().__init__(batch_size, lengths=lengths)
        self.order: list[int] = []
        self._restored = False
        self._consumed = 0  # samples of the restored order already trained on

    def __iter__(self) -> Iterator[int]:
        if not self._restored:
            self.order = get_length_grouped_indices(
                self.lengths, self.batch_size, generator=self.generator
            )
        start, self._restored, self._consumed = self._consumed, False, 0
        return iter(self.order[start:])

    def state_dict(self) -> dict[str, Any]:
        """The current epoch's order (the loader adds how much of it was consumed)."""
        return {"order": list(self.order)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue ``state["order"]`` after its first ``state["consumed"]`` samples."""
        if sorted(state["order"]) != list(range(len(self.lengths))):
            raise ValueError(
                f"the saved sample order covers {len(state['order'])} rows, the training set has "
                f"{len(self.lengths)}: the checkpoint belongs to other data"
            )
        self.order, self._consumed, self._restored = list(state["order"]), state["consumed"], True


class ResumableDataLoader(DataLoader):
    """A DataLoader over a resumable sampler that Lightning can checkpoint mid-epoch.

    Lightning stores ``state_dict()`` of a train loader that has one in ``last.ckpt`` and hands
    it back to ``load_state_dict`` on resume. The state is the sampler's epoch order, the
    batches of it already trained on and the global torch random state at that point: the
    swap augmentation and dropout draw from it, so the resumed run continues the exact random
    stream (and weights) of a run never interrupted.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batches = 0  # batches of the current epoch handed out
        self._restore: dict[str, Any] | None = None
        self._loaded: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[Any]:
        restore, self._restore = self._restore, None
        epoch_done = restore is not None and restore["batches"] >= len(self)
        if restore is not None and epoch_done:
            _set_random_state(restore)  # the next epoch draws its order as it would have
        iterator = super().__iter__()
        self._batches = 0
        skipped = 0
        if restore is not None and not epoch_done:
            sampler = self._order_sampler()
            # Under DDP the wrapper needs the whole order: each rank skips its own batches.
            skipped = restore["batches"] if sampler is not self.sampler else 0
            consumed = (restore["batches"] - skipped) * self.batch_size
            sampler.load_state_dict(restore["sampler"] | {"consumed": consumed})
            self._batches = restore["batches"]
            _set_random_state(restore)  # after iter(), which draws a seed of its own
        return self._counted(itertools.islice(iterator, skipped, None))

    def _order_sampler(self) -> ResumableLengthGroupedSampler:
        """The sampler that draws the epoch's order. Under DDP Lightning wraps it (its
        ``DistributedSamplerWrapper`` lists the order, then deals it out to the ranks), so a
        resumed rank restores the whole order and skips the batches it had trained on."""
        inner = getattr(getattr(self.sampler, "dataset", None), "_sampler", None)
        return inner if isinstance(inner, ResumableLengthGroupedSampler) else self.sampler

    def _counted(self, iterator: Iterator[Any]) -> Iterator[Any]:
        for batch in iterator:
            self._batches += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """Where the epoch stands, for Lightning's ``last.ckpt``."""
        state = {
            "sampler": self._order_sampler().state_dict(),
            "batches": self._batches,
            "torch_rng": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next ``iter()`` continue the saved epoch where it stood (once: the same
        state may arrive twice, from the datamodule and from Lightning's loop)."""
        if self._loaded is not None and torch.equal(state["torch_rng"], self._loaded["torch_rng"]):
            return
        self._restore = self._loaded = state


def _set_random_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def train_sampler(dataset: PairDataset, batch_size: int, group_by_length: bool) -> Sampler | None:
    """Shuffled batches of similar length (less padding, faster epochs), or plain shuffling.

    transformers' ``LengthGroupedSampler``: a random permutation cut into mega-batches of 50
    batches, each sorted by length, so batches stay random but pad little; resumable
    mid-epoch when served by a ``ResumableDataLoader``.
    """
    if not group_by_length:
        return None
    return ResumableLengthGroupedSampler(batch_size, lengths=dataset.lengths())


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
        self.train_loader: DataLoader | None = None
        self._train_state: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        """The train loader's place in its epoch, saved in every checkpoint.

        Lightning also saves and restores a stateful train loader itself, but restores it only
        when it builds the loader after the checkpoint is read; the module's optimiser setup
        (``estimated_stepping_batches``) builds it before, so the datamodule hands the state
        over itself.
        """
        if isinstance(self.train_loader, ResumableDataLoader):
            return {"train_loader": self.train_loader.state_dict()}
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the saved train loader state for the loader ``train_dataloader`` builds next."""
        self._train_state = state_dict.get("train_loader")

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = PairDataset(
                load_split(self.prepared_dir, "train"), self.swap_probability
            )
            self.val_set = PairDataset(load_split(self.prepared_dir, "val"))

    def train_dataloader(self) -> DataLoader:
        sampler = train_sampler(self.train_set, self.batch_size, self.group_by_length)
        # Only a loader whose order can be restored says it is resumable: plain shuffling is not.
        loader = DataLoader if sampler is None else ResumableDataLoader
        self.train_loader = loader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            collate_fn=self.collate,
            num_workers=self.num_workers,
        )
        if self._train_state is not None and isinstance(self.train_loader, ResumableDataLoader):
            self.train_loader.load_state_dict(self._train_state)
        self._train_state = None
        return self.train_loader

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_set,
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=self.collate,
            num_workers=self.num_workers,
        )
