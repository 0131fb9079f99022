"""Fine-tuning the bi-encoder with Lightning, resumable after a kill.

Lightning does the work: ModelCheckpoint keeps ``best.ckpt`` (weights, by the monitored
validation metric) and ``last.ckpt`` (full state, every few steps), EarlyStopping stops,
``Trainer.fit(ckpt_path=...)`` resumes. This module only decides whether the checkpoints on disk
belong to the same training (same configs and data): if so it resumes, otherwise it starts over.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger

from pair_classifier.config import ConfigError, DataConfig, ModelConfig, TrainConfig
from pair_classifier.constants import (
    BEST_CHECKPOINT,
    CHECKPOINT_STATE,
    DVC_YAML_FILE,
    LAST_CHECKPOINT,
    PARAMS_FILE,
)
from pair_classifier.errors import PairClassifierError
from pair_classifier.io_utils import read_json, write_json
from pair_classifier.model.bi_encoder import BiEncoder, BiEncoderSpec
from pair_classifier.model.datamodule import PairDataModule
from pair_classifier.model.encoder import load_encoder, load_tokenizer
from pair_classifier.model.lightning_module import BiEncoderModule
from pair_classifier.model.progress_log import ProgressLog

CHECKPOINT_SUFFIX = ".ckpt"
NON_FINITE_TENSORS_NAMED = 3
FULL_DATA = 1.0  # every training batch, each epoch
BYTECODE_CACHE = "__pycache__"  # rebuilt by Python at will: not part of a stage's code
_INTERPOLATION = re.compile(r"\$\{([^}]+)\}")  # dvc.yaml's ${key} in a dep path


class TrainingDivergedError(PairClassifierError):
    """Training left NaN or infinite weights; raised before anything is saved over the model
    a previous run left, so that model stays in place."""


def last_checkpoint(checkpoint_dir: Path) -> Path:
    """Where Lightning keeps a run's rolling last checkpoint."""
    return checkpoint_dir / f"{LAST_CHECKPOINT}{CHECKPOINT_SUFFIX}"


@dataclass(frozen=True)
class TrainingRun:
    """Where a training run keeps its checkpoints and whether it resumes."""

    checkpoint_dir: Path
    fingerprint: str
    resume_from: Path | None

    @property
    def last(self) -> Path:
        """Lightning's rolling last checkpoint of this run."""
        return last_checkpoint(self.checkpoint_dir)

    def mark_completed(self) -> None:
        """Record that this run finished, so the next one starts clean instead of resuming."""
        write_json(
            self.checkpoint_dir / CHECKPOINT_STATE,
            {"fingerprint": self.fingerprint, "completed": True},
        )


def _param_value(params: Mapping[str, Any], key: str, where: str) -> Any:
    """The value at dotted ``key`` of params.yaml (``model`` is a whole section)."""
    value: Any = params
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise ConfigError(f"{where}: lists param {key!r}, which {PARAMS_FILE} does not hold")
        value = value[part]
    return value


def _param_keys(entries: list[Any], where: str) -> list[str]:
    """The params.yaml keys a dvc.yaml ``params:`` list names (``k`` or ``{params.yaml: [k]}``)."""
    keys: list[str] = []
    for entry in entries:
        if isinstance(entry, str):
            keys.append(entry)
        elif isinstance(entry, Mapping) and set(entry) == {str(PARAMS_FILE)}:
            keys += list(entry[str(PARAMS_FILE)])
        else:
            raise ConfigError(f"{where}: params entry {entry!r} is not a key of {PARAMS_FILE}")
    return keys


def _hash_dep(digest: Any, path: Path, where: str) -> None:
    """Every file under ``path`` (names and bytes, in a fixed order), bytecode caches left out."""
    if not path.exists():
        raise ConfigError(f"{where}: dependency {path} not found")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if BYTECODE_CACHE in file.parts:
            continue
        digest.update(f"{file.as_posix()}\0{file.stat().st_size}\0".encode())
        digest.update(file.read_bytes())


def training_fingerprint(
    stage: str, params: Mapping[str, Any], dvc_yaml: Path = DVC_YAML_FILE
) -> str:
    """Identity of a training: everything ``dvc.yaml`` says ``stage`` depends on, that is the
    value of every param it lists and the content of every dep (prepared data and code).

    Read from the stage's own definition, so a setting added to the stage (``data.symmetric``,
    ``data.positive_label``, ...) is part of the identity without this code naming it: after a
    kill, a changed setting starts afresh instead of resuming the old ``last.ckpt``.
    """
    where = f"{dvc_yaml}: stage {stage!r}"
    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")).get("stages", {})
    if stage not in stages:
        raise ConfigError(f"{where} not found")
    definition = stages[stage]
    keys = _param_keys(definition.get("params", []), where)
    values = {key: _param_value(params, key, where) for key in keys}
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode())
    for dep in definition.get("deps", []):
        resolved = _INTERPOLATION.sub(lambda m: str(_param_value(params, m[1], where)), dep)
        _hash_dep(digest, Path(resolved), where)
    return digest.hexdigest()


def plan_run(checkpoint_dir: Path, fingerprint: str) -> TrainingRun:
    """Resume an unfinished run of this fingerprint from its last checkpoint; else start clean."""
    state_file = checkpoint_dir / CHECKPOINT_STATE
    state = read_json(state_file) if state_file.is_file() else {}
    last = last_checkpoint(checkpoint_dir)
    if state.get("fingerprint") == fingerprint and not state.get("completed") and last.is_file():
        return TrainingRun(checkpoint_dir, fingerprint, last)
    if checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True)
    write_json(state_file, {"fingerprint": fingerprint, "completed": False})
    return TrainingRun(checkpoint_dir, fingerprint, None)


def resolve_accelerator(train: TrainConfig) -> tuple[str, str]:
    """Accelerator and the precision configured for it (``train.precision.cpu`` or ``.cuda``)."""
    accelerator = train.accelerator
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    precision = train.precision.cuda if accelerator in ("cuda", "gpu") else train.precision.cpu
    return accelerator, precision


def build_bi_encoder(model: ModelConfig, data: DataConfig) -> BiEncoder:
    """A bi-encoder with pretrained encoder weights and a fresh head."""
    spec = BiEncoderSpec(
        class_names=data.class_names,
        positive_label=data.positive_label,
        max_length=model.max_length,
        head_hidden=model.head_hidden,
        dropout=model.dropout,
    )
    encoder = load_encoder(model).train()  # from_pretrained returns eval mode: dropout off
    return BiEncoder(encoder, load_tokenizer(model), spec)


def freeze_unused_pooler(bi_encoder: BiEncoder) -> None:
    """Mean pooling never uses the transformer's own pooler, so it gets no gradient: harmless
    on one device (the optimiser skips it), but DDP refuses parameters that take no part in the
    loss. Frozen, it is left out of DDP's gradient sync and training is otherwise unchanged."""
    pooler = getattr(bi_encoder.encoder, "pooler", None)
    if isinstance(pooler, torch.nn.Module):
        pooler.requires_grad_(False)


def make_trainer(
    train: TrainConfig,
    epochs: int,
    checkpoint_dir: Path,
    monitor: str,
    mode: str,
    loggers: list[Logger],
    data_fraction: float = FULL_DATA,
) -> tuple[L.Trainer, ModelCheckpoint]:
    """A Trainer with the project's hardware settings, checkpoints and early stopping, running
    ``data_fraction`` of the training batches each epoch (the teacher's ``train.data_fraction``,
    a tuning proxy; the student always trains on all of them).

    ``best.ckpt`` keeps the weights of the best epoch by ``monitor``; ``last.ckpt`` the full
    state every ``train.checkpoint_every_n_steps`` steps, for resuming.
    """
    accelerator, precision = resolve_accelerator(train)
    best = ModelCheckpoint(
        dirpath=checkpoint_dir,
        filename=BEST_CHECKPOINT,
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        save_weights_only=True,
        enable_version_counter=False,
    )
    last = ModelCheckpoint(
        dirpath=checkpoint_dir,
        save_top_k=0,
        save_last=True,
        every_n_train_steps=train.checkpoint_every_n_steps,
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=train.devices,
        strategy=train.strategy,
        precision=precision,
        gradient_clip_val=train.gradient_clip_val,
        log_every_n_steps=train.log_every_n_steps,
        limit_train_batches=data_fraction if data_fraction < FULL_DATA else None,
        logger=loggers,
        callbacks=[
            best,
            last,
            EarlyStopping(monitor=monitor, mode=mode, patience=train.early_stopping_patience),
            LearningRateMonitor(logging_interval="step"),
            *([] if sys.stderr.isatty() else [ProgressLog()]),
        ],
        enable_progress_bar=sys.stderr.isatty(),
        default_root_dir=checkpoint_dir,
    )
    return trainer, best


def load_best_weights(module: L.LightningModule, best: ModelCheckpoint) -> None:
    """Put the weights of the best checkpoint back into ``module``, unless training diverged.

    A diverged run's weights are refused here, in the library, so no stage gets as far as
    saving them over the previous model.
    """
    state = torch.load(best.best_model_path, map_location="cpu", weights_only=False)
    check_finite_weights(state["state_dict"], Path(best.best_model_path))
    module.load_state_dict(state["state_dict"])


def check_finite_weights(weights: dict[str, torch.Tensor], source: Path) -> None:
    """Raise ``TrainingDivergedError`` naming ``source`` and its first non-finite tensors."""
    bad = [
        name
        for name, tensor in weights.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        named = ", ".join(bad[:NON_FINITE_TENSORS_NAMED]) + (
            ", ..." if len(bad) > NON_FINITE_TENSORS_NAMED else ""
        )
        raise TrainingDivergedError(
            f"{source}: training diverged: {len(bad)} weight tensors hold NaN or infinite "
            f"values ({named}); nothing was saved, the previous model is kept. Lower the "
            "learning rate or clip gradients (train.gradient_clip_val)."
        )


def finite_or_null(metrics: dict[str, float]) -> dict[str, Any]:
    """``metrics`` with NaN and infinities written as ``None`` and listed under
    ``non_finite``: JSON has no NaN, and a last epoch that diverged after the best one was
    kept should still leave its metrics, saying which ones it could not measure."""
    written: dict[str, Any] = {k: v if math.isfinite(v) else None for k, v in metrics.items()}
    if non_finite := sorted(k for k, v in metrics.items() if not math.isfinite(v)):
        written["non_finite"] = non_finite
    return written


def train_bi_encoder(
    prepared_dir: Path,
    run: TrainingRun,
    model_config: ModelConfig,
    train: TrainConfig,
    data: DataConfig,
    seed: int,
    loggers: list[Logger],
) -> tuple[BiEncoder, dict[str, Any], Path]:
    """Fit (or resume) the bi-encoder; return it with its best weights, metrics, best checkpoint."""
    L.seed_everything(seed, workers=True)
    if train.num_threads > 0:
        torch.set_num_threads(train.num_threads)
    bi_encoder = build_bi_encoder(model_config, data)
    freeze_unused_pooler(bi_encoder)
    module = BiEncoderModule(bi_encoder, train)
    datamodule = PairDataModule(
        prepared_dir,
        bi_encoder.tokenizer,
        model_config.max_length,
        train.batch_size,
        swap_probability=train.swap_probability if data.symmetric else 0.0,
        num_workers=train.num_workers,
        group_by_length=train.group_by_length,
    )
    trainer, best = make_trainer(
        train,
        train.epochs,
        run.checkpoint_dir,
        train.monitor,
        train.monitor_mode,
        loggers,
        train.data_fraction,
    )
    started = time.perf_counter()
    resumed_from_step = 0
    if run.resume_from is not None:
        resumed_from_step = int(
            torch.load(run.resume_from, map_location="cpu", weights_only=False)["global_step"]
        )
    trainer.fit(module, datamodule=datamodule, ckpt_path=run.resume_from)
    seconds = time.perf_counter() - started
    accelerator, precision = resolve_accelerator(train)
    load_best_weights(module, best)
    metrics = {
        f"best_{train.monitor}": float(best.best_model_score),
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "resumed_from_step": resumed_from_step,
        "fit_seconds": round(seconds, 1),
        "accelerator": accelerator,
        "precision": precision,
    } | finite_or_null(
        {
            f"last_{key}": float(value)
            for key, value in trainer.callback_metrics.items()
            if key.startswith("val_")
        }
    )
    return bi_encoder.cpu().eval(), metrics, Path(best.best_model_path)
