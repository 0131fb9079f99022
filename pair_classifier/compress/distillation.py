"""Building a small student from the fine-tuned teacher and distilling the teacher into it.

Student: the teacher's encoder cut to ``distill.keep_layers``, then its least important heads and
FFN channels pruned away (structured). Distillation (Lightning): MSE between student and teacher
sentence vectors, KL between their softened head distributions (temperature T, scaled by T^2),
plus cross-entropy on the labels; weights from config. Optionally layer-wise (as in TinyBERT and
Patient KD): MSE between each student block's token states and those of a chosen teacher block
(``hidden_layers``), which guides the blocks in between, not only the output. The teacher's
vectors and token states are computed once before training (it is frozen), so an epoch costs
only the student's forward and backward.
Perturbed, unlabelled copies of the training pairs (``augment_copies``: words replaced by their
neighbours in the teacher's input embeddings and/or dropped) widen what the student sees of the
teacher; cross-entropy skips them.
"""

from __future__ import annotations

import copy
import dataclasses
from contextlib import nullcontext
from dataclasses import asdict
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from pair_classifier.compress.augmentation import UNLABELLED, augmented_pairs, word_neighbours
from pair_classifier.compress.cross_encoder import CrossEncoder, PairLogits
from pair_classifier.compress.optim import adamw_with_linear_warmup
from pair_classifier.compress.pruning import (
    gate_importance,
    head_size,
    keep_layers,
    prune_by_importance,
)
from pair_classifier.compress.relations import (
    captured_projections,
    check_relation_heads,
    check_relation_width,
    relation_kl,
    stacked_projections,
)
from pair_classifier.config import ConfigError, DistillConfig
from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.model.bi_encoder import BiEncoder
from pair_classifier.model.datamodule import PairCollator, PairDataset, train_sampler
from pair_classifier.model.encoder import encoder_layers
from pair_classifier.model.features import pair_features


@torch.inference_mode()
def vectors_and_token_states(
    teacher: BiEncoder,
    texts: list[str],
    batch_size: int,
    blocks: list[int],
    relation_block: int | None = None,
) -> tuple[np.ndarray, list[torch.Tensor] | None, list[torch.Tensor] | None]:
    """In one pass of the teacher: each text's sentence vector, the output token states of the
    listed blocks, (blocks, tokens, hidden), and the query, key and value projections of
    ``relation_block``, (3, tokens, width); None for what is not asked for. Targets only, so in
    half precision."""
    teacher.eval()
    device = next(teacher.parameters()).device
    vectors = np.zeros((len(texts), teacher.embedding_dim), dtype=np.float32)
    states: list[torch.Tensor] = [torch.empty(0)] * len(texts)
    projections: list[torch.Tensor] = [torch.empty(0)] * len(texts)
    watching = (
        nullcontext({})
        if relation_block is None
        else captured_projections(encoder_layers(teacher.encoder)[relation_block])
    )
    with watching as captured:
        for index, batch in teacher.length_sorted_batches(texts, batch_size):
            embedded, hidden = teacher.embed_with_states(
                batch["input_ids"].to(device), batch["attention_mask"].to(device)
            )
            vectors[index] = embedded.float().cpu().numpy()
            chosen = (
                torch.stack([hidden[block + 1] for block in blocks], dim=1).half().cpu()
                if blocks
                else None
            )
            stacked = stacked_projections(captured).half().cpu() if captured else None
            for row, i in enumerate(index):
                tokens = int(batch["attention_mask"][row].sum())
                if chosen is not None:
                    states[i] = chosen[row, :, :tokens].clone()
                if stacked is not None:
                    projections[i] = stacked[:, row, :tokens].clone()
    return vectors, states if blocks else None, projections if relation_block is not None else None


def check_relation_layer(layer: int, blocks: int) -> None:
    """``distill.relation_layer`` must name one of the teacher's ``blocks`` blocks."""
    if not -blocks <= layer < blocks:
        raise ConfigError(
            f"distill.relation_layer {layer}: the teacher's blocks are 0..{blocks - 1} "
            f"(or -{blocks}..-1, counting from the last)"
        )


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


def padded_targets(per_text: list[torch.Tensor], length: int) -> torch.Tensor:
    """Per-text targets (kinds, tokens, width) stacked to (kinds, batch, length, width),
    zero-padded like the batch's tokens."""
    first = per_text[0]
    padded = torch.zeros(first.shape[0], len(per_text), length, first.shape[-1])
    for column, target in enumerate(per_text):
        padded[:, column, : target.shape[1]] = target.float()
    return padded


class TeacherTargets:
    """What the frozen teacher says of every text the student trains on: its sentence vector,
    for layer-wise distillation the token states of the ``hidden_layers`` blocks, and for
    relation distillation the query/key/value projections of block ``relation_layer``."""

    def __init__(
        self,
        teacher: BiEncoder,
        texts: list[str],
        batch_size: int,
        hidden_layers: list[int],
        relation_layer: int | None = None,
    ) -> None:
        blocks = teacher.encoder.config.num_hidden_layers
        if any(not 0 <= block < blocks for block in hidden_layers):
            raise ConfigError(
                f"distill.hidden_layers {hidden_layers}: the teacher's blocks are 0..{blocks - 1}"
            )
        if relation_layer is not None:
            check_relation_layer(relation_layer, blocks)
        unique = list(dict.fromkeys(texts))
        self.row = {text: i for i, text in enumerate(unique)}
        self.states: list[torch.Tensor] | None = None
        self.projections: list[torch.Tensor] | None = None
        if hidden_layers or relation_layer is not None:
            vectors, self.states, self.projections = vectors_and_token_states(
                teacher, unique, batch_size, hidden_layers, relation_layer
            )
        else:
            vectors = teacher.encode(unique, batch_size)
        self.vectors = torch.from_numpy(vectors)

    def vectors_of(self, texts: list[str]) -> torch.Tensor:
        """The teacher's precomputed sentence vectors of ``texts``, in their order."""
        return self.vectors[[self.row[text] for text in texts]]

    def states_of(self, texts: list[str], length: int) -> torch.Tensor:
        """(blocks, batch, length, hidden), zero-padded like the batch's tokens."""
        assert self.states is not None
        return padded_targets([self.states[self.row[text]] for text in texts], length)

    def projections_of(self, texts: list[str], length: int) -> torch.Tensor:
        """(3, batch, length, width): query, key and value, zero-padded like the batch."""
        assert self.projections is not None
        return padded_targets([self.projections[self.row[text]] for text in texts], length)


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


def make_student(teacher: BiEncoder, config: DistillConfig, batches: list[dict]) -> BiEncoder:
    """Copy the teacher, cut its layers, prune heads and FFN channels by importance."""
    student = copy.deepcopy(teacher).float().train()
    keep_layers(student.encoder, list(config.keep_layers))
    heads = config.heads_per_layer
    ffn = config.ffn_channels_per_layer
    if heads > 0 or ffn > 0:

        def loss_of(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            logits, _, _ = student(
                batch["input_ids_a"],
                batch["attention_mask_a"],
                batch["input_ids_b"],
                batch["attention_mask_b"],
            )
            return F.cross_entropy(logits, batch["labels"])

        head_scores, ffn_scores = gate_importance(student.encoder, batches, loss_of)
        all_heads = student.encoder.config.num_attention_heads
        all_channels = student.encoder.config.intermediate_size
        shape = prune_by_importance(
            student.encoder,
            head_scores,
            ffn_scores,
            heads if heads > 0 else all_heads,
            ffn if ffn > 0 else all_channels,
        )
        student.spec = dataclasses.replace(
            student.spec, pruned_heads=shape.heads, pruned_ffn_channels=shape.ffn_channels
        )
    return student


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
