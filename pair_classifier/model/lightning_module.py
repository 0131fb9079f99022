"""LightningModule that fine-tunes the bi-encoder with a softmax (cross-entropy) objective."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from pair_classifier.config import TrainConfig
from pair_classifier.model.bi_encoder import BiEncoder
from pair_classifier.model.encoder import freeze_bottom
from pair_classifier.model.optim import adamw_with_linear_warmup


class BiEncoderModule(L.LightningModule):
    """Cross-entropy on the head's logits, optionally plus a cosine loss on (u, v).

    The encoder and the freshly initialised head get separate learning rates (the head needs a
    much larger one); both follow a linear warm-up then linear decay.
    """

    def __init__(self, model: BiEncoder, train: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.train_config = train
        if train.freeze_word_embeddings:
            # A small labelled set moves only the rows of its own words; freezing the table keeps
            # unseen words consistent with seen ones and skips a dense 30k-row update every step.
            model.encoder.get_input_embeddings().requires_grad_(False)
        freeze_bottom(model.encoder, train.freeze_bottom_layers)
        # Recorded in checkpoints; the tracking run already holds the params (logger=False).
        self.save_hyperparameters(
            {"train": asdict(train), "spec": asdict(model.spec)}, logger=False
        )
        classes = len(model.spec.class_names)
        self.positive_index = model.spec.class_names.index(model.spec.positive_label)
        self.val_accuracy = MulticlassAccuracy(num_classes=classes, average="micro")
        self.val_f1 = MulticlassF1Score(
            num_classes=classes, average=None if classes == 2 else "macro"
        )

    def _losses(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits, u, v = self.model(
            batch["input_ids_a"],
            batch["attention_mask_a"],
            batch["input_ids_b"],
            batch["attention_mask_b"],
        )
        loss = F.cross_entropy(logits.float(), batch["labels"])
        weight = self.train_config.cosine_loss_weight
        if weight > 0:
            target = (batch["labels"] == self.positive_index).float()
            cosine = F.cosine_similarity(u.float(), v.float())
            loss = loss + weight * F.mse_loss(cosine, target)
        return loss, logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self._losses(batch)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, logits = self._losses(batch)
        predictions = logits.argmax(dim=-1)
        self.val_accuracy.update(predictions, batch["labels"])
        self.val_f1.update(predictions, batch["labels"])
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        f1 = self.val_f1.compute()
        f1 = f1[self.positive_index] if f1.ndim else f1
        self.log("val_acc", self.val_accuracy.compute(), prog_bar=True)
        self.log("val_f1", f1, prog_bar=True)
        self.val_accuracy.reset()
        self.val_f1.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        config = self.train_config
        return adamw_with_linear_warmup(
            [(self.model.encoder, config.lr), (self.model.head, config.head_lr)],
            config.weight_decay,
            config.warmup_fraction,
            self.trainer.estimated_stepping_batches,
        )
