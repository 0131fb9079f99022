"""The optional cross-encoder teacher for distillation.

The same pretrained weights read both texts as one sequence (``[CLS] a [SEP] b [SEP]``), so every
layer attends across the pair; a linear head on the mean-pooled tokens gives the logits. Such a
model is usually the more accurate one (not measurably here, with all-MiniLM-L6-v2: see the
README) but cannot cache one vector per text, so it is never served: it is fine-tuned inside the
distill stage and its softened logits replace the bi-encoder head's as the student's KL target.
For a symmetric task the logits of both text orders are averaged.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassAccuracy
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from pair_classifier.config import CrossEncoderConfig, ModelConfig, TrainConfig
from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.model.datamodule import Example, PairDataset, train_sampler
from pair_classifier.model.encoder import load_encoder, load_tokenizer
from pair_classifier.model.optim import adamw_with_linear_warmup
from pair_classifier.model.pooling import mean_pooling
from pair_classifier.training import load_best_weights, make_trainer

CROSS_MONITOR = "cross_val_acc"


class CrossEncoder(nn.Module):
    """Encoder over the joint pair input, mean pooling, linear head."""

    def __init__(
        self,
        encoder: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        classes: int,
        max_length: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, classes)

    def tokenize(self, texts_a: list[str], texts_b: list[str]) -> dict[str, torch.Tensor]:
        """Both texts as one sequence; truncation takes tokens from the longer text first."""
        return self.tokenizer(
            texts_a,
            texts_b,
            padding=True,
            truncation="longest_first",
            max_length=self.max_length,
            return_tensors="pt",
        )

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.encoder(**inputs).last_hidden_state
        return self.head(self.dropout(mean_pooling(hidden, inputs["attention_mask"])))

    @torch.inference_mode()
    def logits(self, texts_a: list[str], texts_b: list[str], batch_size: int) -> np.ndarray:
        """Logits of every pair, in length-sorted batches (little padding), input order kept."""
        was_training = self.training
        self.eval()
        order = np.argsort([len(a) + len(b) for a, b in zip(texts_a, texts_b)], kind="stable")
        out = np.zeros((len(texts_a), self.head.out_features), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            inputs = self.tokenize([texts_a[i] for i in index], [texts_b[i] for i in index])
            out[index] = self(inputs).float().numpy()
        self.train(was_training)
        return out


class CrossCollator:
    """Tokenises each batch of (a, b, label) rows as joint pair inputs."""

    def __init__(self, model: CrossEncoder) -> None:
        self.model = model

    def __call__(self, examples: list[Example]) -> dict[str, Any]:
        texts_a, texts_b, labels = zip(*examples)
        return {
            "inputs": dict(self.model.tokenize(list(texts_a), list(texts_b))),
            "labels": torch.tensor(labels, dtype=torch.long),
        }


class CrossEncoderModule(L.LightningModule):
    """Cross-entropy fine-tuning; metrics are prefixed ``cross_`` beside the student's."""

    def __init__(self, model: CrossEncoder, config: CrossEncoderConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.save_hyperparameters({"cross_encoder": asdict(config)}, logger=False)
        self.val_accuracy = MulticlassAccuracy(num_classes=model.head.out_features, average="micro")

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = F.cross_entropy(self.model(batch["inputs"]).float(), batch["labels"])
        self.log(
            "cross_train_loss",
            loss,
            on_step=True,
            on_epoch=True,
            batch_size=len(batch["labels"]),
        )
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self.model(batch["inputs"]).float()
        self.val_accuracy.update(logits.argmax(dim=-1), batch["labels"])
        self.log(
            "cross_val_loss",
            F.cross_entropy(logits, batch["labels"]),
            on_epoch=True,
            batch_size=len(batch["labels"]),
        )

    def on_validation_epoch_end(self) -> None:
        self.log(CROSS_MONITOR, self.val_accuracy.compute(), prog_bar=True)
        self.val_accuracy.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_with_linear_warmup(
            [(self.model.encoder, self.config.lr), (self.model.head, self.config.head_lr)],
            self.config.weight_decay,
            self.config.warmup_fraction,
            self.trainer.estimated_stepping_batches,
        )


def cross_loaders(
    model: CrossEncoder,
    train: pd.DataFrame,
    val: pd.DataFrame,
    config: CrossEncoderConfig,
    swap_probability: float,
    group_by_length: bool,
) -> tuple[DataLoader, DataLoader]:
    """Training (optionally length-grouped, randomly swapped) and validation loaders."""
    collate = CrossCollator(model)
    train_set = PairDataset(train, swap_probability)
    sampler = train_sampler(train_set, config.batch_size, group_by_length)
    return (
        DataLoader(
            train_set,
            batch_size=config.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            collate_fn=collate,
        ),
        DataLoader(PairDataset(val), batch_size=config.batch_size, collate_fn=collate),
    )


class PairLogits:
    """The cross-encoder's logits of every pair the student trains on, looked up by text pair."""

    def __init__(
        self, model: CrossEncoder, frame: pd.DataFrame, batch_size: int, symmetric: bool
    ) -> None:
        pairs = list(dict.fromkeys(zip(frame[TEXT_A], frame[TEXT_B])))
        texts_a, texts_b = [a for a, _ in pairs], [b for _, b in pairs]
        logits = model.logits(texts_a, texts_b, batch_size)
        if symmetric:
            logits = (logits + model.logits(texts_b, texts_a, batch_size)) / 2
        self.logits = torch.from_numpy(logits)
        self.row = {pair: i for i, pair in enumerate(pairs)}
        if symmetric:  # a swapped pair (b, a) finds the same averaged logits
            self.row |= {(b, a): i for (a, b), i in self.row.items() if (b, a) not in self.row}

    def __call__(self, texts_a: list[str], texts_b: list[str]) -> torch.Tensor:
        return self.logits[[self.row[pair] for pair in zip(texts_a, texts_b)]]


def train_cross_encoder(
    model_config: ModelConfig,
    config: CrossEncoderConfig,
    train_config: TrainConfig,
    train: pd.DataFrame,
    val: pd.DataFrame,
    classes: int,
    swap_probability: float,
    checkpoint_dir: Path,
    loggers: list[Logger],
) -> tuple[CrossEncoder, dict[str, Any]]:
    """Fine-tune ``model.pretrained`` as a cross-encoder; its best epoch and metrics."""
    model = CrossEncoder(
        load_encoder(model_config),
        load_tokenizer(model_config),
        classes,
        config.max_length,
        model_config.dropout,
    ).train()  # from_pretrained hands the encoder back in eval mode (dropout off)
    module = CrossEncoderModule(model, config)
    trainer, best = make_trainer(
        train_config, config.epochs, checkpoint_dir, CROSS_MONITOR, "max", loggers
    )
    started = time.perf_counter()
    trainer.fit(
        module,
        *cross_loaders(model, train, val, config, swap_probability, train_config.group_by_length),
    )
    seconds = time.perf_counter() - started
    load_best_weights(module, best)
    metrics = {
        f"best_{CROSS_MONITOR}": float(best.best_model_score),
        "epochs": trainer.current_epoch,
        "fit_seconds": round(seconds, 1),
    }
    return module.model.cpu().eval(), metrics
