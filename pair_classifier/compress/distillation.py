"""Distilling the teacher into the student (Lightning), and checking the settings first.

Loss: MSE between student and teacher sentence vectors, KL between their softened head
distributions (temperature T, scaled by T^2), plus cross-entropy on the labels; weights from
config. Optionally layer-wise (as in TinyBERT and Patient KD): MSE between each student block's
token states and those of a chosen teacher block (``hidden_layers``), which guides the blocks in
between, not only the output; and relation distillation (MiniLMv2, ``relations.py``). The
teacher's targets come precomputed with each batch (``teacher_targets.py``,
``distillation_data.py``). Perturbed, unlabelled copies of the training pairs widen what the
student sees of the teacher; cross-entropy skips them.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from pair_classifier.compress.augmentation import UNLABELLED
from pair_classifier.compress.relations import (
    captured_projections,
    check_relation_heads,
    check_relation_layer,
    check_relation_width,
    relation_kl,
    stacked_projections,
)
from pair_classifier.config import ConfigError, DistillConfig
from pair_classifier.model.bi_encoder import BiEncoder
from pair_classifier.model.encoder import encoder_layers
from pair_classifier.model.encoder_shape import head_size
from pair_classifier.model.features import pair_features
from pair_classifier.model.optim import adamw_with_linear_warmup


def check_distill_config(teacher: BiEncoder, config: DistillConfig) -> None:
    """Fail at once, not after a teacher pass or a cross-encoder's training, when the student's
    blocks, heads or FFN channels, or the blocks it learns from, are not in the teacher."""
    blocks = teacher.encoder.config.num_hidden_layers
    for name in ("keep_layers", "hidden_layers"):
        outside = [block for block in getattr(config, name) if not 0 <= block < blocks]
        if outside:
            raise ConfigError(
                f"distill.{name}: {outside} not among the teacher's blocks 0..{blocks - 1}"
            )
    for name, available in (
        ("heads_per_layer", teacher.encoder.config.num_attention_heads),
        ("ffn_channels_per_layer", teacher.encoder.config.intermediate_size),
    ):
        if not 0 <= getattr(config, name) <= available:
            raise ConfigError(
                f"distill.{name}: expected 0 (keep all) to {available} (the teacher's), "
                f"got {getattr(config, name)}"
            )
    check_relation_config(teacher, config)


def check_relation_config(teacher: BiEncoder, config: DistillConfig) -> None:
    """With relation distillation on, fail at once when its teacher block does not exist or its
    heads cannot split the teacher's or the student's projections."""
    if config.relation_weight <= 0:
        return
    layers = encoder_layers(teacher.encoder)
    check_relation_layer(config.relation_layer, len(layers))
    check_relation_heads(layers[config.relation_layer], config.relation_heads, "teacher")
    student_heads = config.heads_per_layer or teacher.encoder.config.num_attention_heads
    check_relation_width(
        student_heads * head_size(teacher.encoder), config.relation_heads, "student"
    )


def masked_state_mse(
    student: tuple[torch.Tensor, ...], teacher: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Mean squared difference over real tokens between each student block's output
    (``student[i + 1]``; ``student[0]`` is the embeddings) and its teacher target."""
    mask = attention_mask.unsqueeze(-1).float()
    tokens = mask.sum() * teacher.shape[-1]
    return sum(
        (((state.float() - target) ** 2) * mask).sum() / tokens
        for state, target in zip(student[1:], teacher)
    ) / len(teacher)


def labelled_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the labelled rows only; zero (with a gradient) when there are none."""
    labelled = labels != UNLABELLED
    if not labelled.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[labelled], labels[labelled])


class DistillationModule(L.LightningModule):
    """Trains the student against the teacher's vectors and softened head outputs."""

    def __init__(
        self, student: BiEncoder, teacher_head: torch.nn.Module, config: DistillConfig
    ) -> None:
        super().__init__()
        self.student = student
        self.teacher_head = teacher_head.eval().requires_grad_(False)
        self.config = config
        self.save_hyperparameters(
            {"distill": asdict(config), "spec": asdict(student.spec)}, logger=False
        )
        classes = len(student.spec.class_names)
        self.positive_index = student.spec.class_names.index(student.spec.positive_label)
        self.val_accuracy = MulticlassAccuracy(num_classes=classes, average="micro")
        self.val_f1 = MulticlassF1Score(
            num_classes=classes, average=None if classes == 2 else "macro"
        )

    def _losses(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        relations = "teacher_projections_a" in batch
        watching = (
            captured_projections(encoder_layers(self.student.encoder)[-1])
            if relations
            else nullcontext({})
        )
        with watching as captured:
            u, states_a = self.student.embed_with_states(
                batch["input_ids_a"], batch["attention_mask_a"]
            )
            projections_a = stacked_projections(captured) if relations else None
            v, states_b = self.student.embed_with_states(
                batch["input_ids_b"], batch["attention_mask_b"]
            )
            projections_b = stacked_projections(captured) if relations else None
        logits = self.student.head(pair_features(u, v))
        teacher_u, teacher_v = batch["teacher_u"], batch["teacher_v"]
        if "teacher_logits" in batch:  # the cross-encoder's
            teacher_logits = batch["teacher_logits"].float()
        else:
            with torch.no_grad():
                teacher_logits = self.teacher_head(pair_features(teacher_u, teacher_v)).float()
        t = self.config.temperature
        losses = {
            "mse": F.mse_loss(u.float(), teacher_u) + F.mse_loss(v.float(), teacher_v),
            "kl": F.kl_div(
                F.log_softmax(logits.float() / t, dim=-1),
                F.softmax(teacher_logits / t, dim=-1),
                reduction="batchmean",
            )
            * t
            * t,
            "ce": labelled_cross_entropy(logits.float(), batch["labels"]),
        }
        total = (
            self.config.mse_weight * losses["mse"]
            + self.config.kl_weight * losses["kl"]
            + self.config.ce_weight * losses["ce"]
        )
        if "teacher_states_a" in batch:
            losses["hidden"] = masked_state_mse(
                states_a, batch["teacher_states_a"], batch["attention_mask_a"]
            ) + masked_state_mse(states_b, batch["teacher_states_b"], batch["attention_mask_b"])
            total = total + self.config.hidden_weight * losses["hidden"]
        if relations:
            heads = self.config.relation_heads
            losses["relation"] = relation_kl(
                projections_a, batch["teacher_projections_a"], batch["attention_mask_a"], heads
            ) + relation_kl(
                projections_b, batch["teacher_projections_b"], batch["attention_mask_b"], heads
            )
            total = total + self.config.relation_weight * losses["relation"]
        return losses | {"loss": total}, logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses, _ = self._losses(batch)
        self.log_dict(
            {f"train_{k}": v for k, v in losses.items()},
            on_step=True,
            on_epoch=True,
            batch_size=len(batch["labels"]),
        )
        return losses["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        losses, logits = self._losses(batch)
        predictions = logits.argmax(dim=-1)
        self.val_accuracy.update(predictions, batch["labels"])
        self.val_f1.update(predictions, batch["labels"])
        self.log_dict(
            {f"val_{k}": v for k, v in losses.items()},
            on_epoch=True,
            prog_bar=True,
            batch_size=len(batch["labels"]),
        )

    def on_validation_epoch_end(self) -> None:
        f1 = self.val_f1.compute()
        self.log("val_acc", self.val_accuracy.compute(), prog_bar=True)
        self.log("val_f1", f1[self.positive_index] if f1.ndim else f1, prog_bar=True)
        self.val_accuracy.reset()
        self.val_f1.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_with_linear_warmup(
            [(self.student.encoder, self.config.lr), (self.student.head, self.config.head_lr)],
            self.config.weight_decay,
            self.config.warmup_fraction,
            self.trainer.estimated_stepping_batches,
        )
