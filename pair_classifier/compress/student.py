"""The distill stage's work: build, distill and save the student with its own SVM.

Student: the teacher's encoder cut to ``distill.keep_layers``, then its least important heads and
FFN channels pruned away (structured), ranked on a few labelled training batches.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import Logger

from pair_classifier.classifier import (
    FittedClassifier,
    fit_classifier,
    labels_of,
    pair_feature_matrix,
)
from pair_classifier.compress.cross_encoder import train_cross_encoder
from pair_classifier.compress.distillation import DistillationModule, check_distill_config
from pair_classifier.compress.distillation_data import distill_loaders, importance_batches
from pair_classifier.compress.pruning import gate_importance, keep_layers, prune_by_importance
from pair_classifier.config import (
    ClassifierConfig,
    DataConfig,
    DistillConfig,
    ModelConfig,
    TrainConfig,
)
from pair_classifier.constants import CROSS_ENCODER_SUBDIR, STUDENT_CHECKPOINT_SUBDIR
from pair_classifier.data.preparation import load_split
from pair_classifier.model.bi_encoder import BiEncoder
from pair_classifier.training import load_best_weights, make_trainer


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


def parameter_count(model: torch.nn.Module) -> int:
    """Every parameter, embedding table included (what the saved model holds)."""
    return sum(p.numel() for p in model.parameters())


def distill_student(
    teacher: BiEncoder,
    prepared_dir: Path,
    checkpoint_dir: Path,
    config: DistillConfig,
    train_config: TrainConfig,
    classifier_config: ClassifierConfig,
    data: DataConfig,
    model_config: ModelConfig,
    seed: int,
    loggers: list[Logger],
    cross_encoder_loggers: list[Logger],
) -> tuple[BiEncoder, FittedClassifier, dict[str, Any]]:
    """Student encoder distilled from ``teacher`` (and, by config, from a cross-encoder trained
    here first), its refitted SVM, and metrics."""
    check_distill_config(teacher, config)
    L.seed_everything(seed, workers=True)
    if train_config.num_threads > 0:
        torch.set_num_threads(train_config.num_threads)
    train, val = load_split(prepared_dir, "train"), load_split(prepared_dir, "val")
    swap = train_config.swap_probability if data.symmetric else 0.0
    cross_encoder, cross_metrics = None, {}
    if config.teacher == "cross_encoder":
        cross_encoder, cross_metrics = train_cross_encoder(
            model_config,
            config.cross_encoder,
            train_config,
            train,
            val,
            len(data.class_names),
            swap,
            checkpoint_dir / CROSS_ENCODER_SUBDIR,
            cross_encoder_loggers,
        )
        L.seed_everything(seed, workers=True)  # the student's run as without it
    train_loader, val_loader, labelled_loader = distill_loaders(
        teacher,
        train,
        val,
        config,
        swap,
        train_config.group_by_length,
        seed,
        cross_encoder,
        data.symmetric,
    )
    student = make_student(
        teacher, config, importance_batches(labelled_loader, config.importance_batches)
    )
    module = DistillationModule(student, teacher.head, config)
    trainer, best = make_trainer(
        train_config,
        config.epochs,
        checkpoint_dir / STUDENT_CHECKPOINT_SUBDIR,
        config.monitor,
        config.monitor_mode,
        loggers,
    )
    started = time.perf_counter()
    trainer.fit(module, train_loader, val_loader)
    seconds = time.perf_counter() - started
    load_best_weights(module, best)
    student = module.student.cpu().eval()
    classifier = fit_classifier(
        pair_feature_matrix(student, train, classifier_config.batch_size),
        labels_of(train),
        pair_feature_matrix(student, val, classifier_config.batch_size),
        labels_of(val),
        classifier_config,
        data.class_names,
        data.positive_label,
        seed,
    )
    metrics = {
        "teacher_parameters": parameter_count(teacher.encoder),
        "student_parameters": parameter_count(student.encoder),
        "layers": len(config.keep_layers),
        "heads_per_layer": student.spec.pruned_heads,
        "ffn_channels_per_layer": student.spec.pruned_ffn_channels,
        "fit_seconds": round(seconds, 1),
        "epochs": trainer.current_epoch,
        "training_pairs": len(train_loader.dataset),
        f"best_{config.monitor}_head": float(best.best_model_score),
        "classifier": classifier.report,
    }
    if cross_metrics:
        metrics["cross_encoder"] = cross_metrics
    return student, classifier, metrics
