"""Typed views of the sections of params.yaml that train the teacher: data, prepare, model,
train, classifier, evaluate, tracking.

The fields carry no defaults: configs/ (composed into params.yaml) is the one source of the
settings, and tests compose it too, so nothing runs a recipe the pipeline never runs. Range rules
are declared on the fields (``rules.rule``); ``check`` holds what one field cannot say.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from pair_classifier.config.loading import ConfigError
from pair_classifier.config.rules import (
    OptimisationSection,
    ParamsSection,
    check_choice,
    check_value,
    one_of,
    rule,
)

logger = logging.getLogger(__name__)

# What the training module logs, i.e. what early stopping can monitor.
TRAIN_MONITORS = ("val_loss", "val_acc", "val_f1")
SVM_GAMMAS = ("scale", "auto")
SVM_CLASS_WEIGHTS = (None, "balanced")
NO_ITERATION_LIMIT = -1  # libsvm's "until converged"
MAX_PERCENTILE = 100


@dataclass(frozen=True)
class DataFiles:
    train: str
    test: str
    val: str | None


@dataclass(frozen=True)
class DataColumns:
    text_a: str
    text_b: str
    label: str


@dataclass(frozen=True)
class DataConfig(ParamsSection):
    SECTION = "data"

    name: str
    dir: str
    format: Literal["csv", "tsv", "jsonl", "parquet"]
    files: DataFiles
    columns: DataColumns
    labels: dict[str, str]
    positive_label: str
    encoding: str
    separator: str
    quoting: Literal["none", "minimal"]
    symmetric: bool
    shared_dir: str | None
    public_source: str | None

    @property
    def class_names(self) -> list[str]:
        """Class names in class-index order (several raw values may map to one class)."""
        return list(dict.fromkeys(self.labels.values()))

    @property
    def positive_index(self) -> int:
        """Class index of ``positive_label``, whose F1, precision and recall are reported."""
        return self.class_names.index(self.positive_label)

    def check(self) -> None:
        if len(self.separator) != 1:
            raise ConfigError(
                f"data.separator: expected one character (e.g. ',' or '\\t'), "
                f"got {self.separator!r}"
            )
        if len(self.class_names) < 2:
            raise ConfigError(f"data.labels: need at least 2 classes, got {self.class_names}")
        if self.positive_label not in self.class_names:
            raise ConfigError(
                f"data.positive_label: {self.positive_label!r} is not one of {self.class_names}"
            )


@dataclass(frozen=True)
class PrepareConfig(ParamsSection):
    SECTION = "prepare"

    on_invalid: Literal["fail", "quarantine"]
    val_fraction: float = rule("share")
    split_seed: int
    max_problems_reported: int = rule("non_negative")
    length_percentiles: list[int]

    def check(self) -> None:
        outside = [p for p in self.length_percentiles if not 0 <= p <= MAX_PERCENTILE]
        if outside:
            raise ConfigError(
                f"prepare.length_percentiles: expected values in 0..100, got {outside}"
            )


@dataclass(frozen=True)
class ModelConfig(ParamsSection):
    SECTION = "model"

    name: str
    pretrained: str
    max_length: int = rule("positive")
    head_hidden: int = rule("non_negative")
    dropout: float = rule("fraction")
    hf_cache: str | None


@dataclass(frozen=True)
class PrecisionConfig:
    cpu: str
    cuda: str


@dataclass(frozen=True)
class TrainConfig(OptimisationSection):
    SECTION = "train"

    gradient_clip_val: float = rule("non_negative")
    swap_probability: float = rule("probability")
    cosine_loss_weight: float = rule("non_negative")
    freeze_word_embeddings: bool
    freeze_bottom_layers: int = rule("non_negative")
    precision: PrecisionConfig
    accelerator: str
    devices: int = rule("positive")
    strategy: str
    num_threads: int = rule("non_negative")
    num_workers: int = rule("non_negative")
    group_by_length: bool
    checkpoint_every_n_steps: int = rule("positive")
    monitor: str = one_of(TRAIN_MONITORS)
    monitor_mode: Literal["min", "max"]
    early_stopping_patience: int = rule("non_negative")
    log_every_n_steps: int = rule("positive")
    data_fraction: float = rule("positive")

    def check(self) -> None:
        if self.data_fraction > 1:
            raise ConfigError(
                f"train.data_fraction: expected a share of the training batches in (0, 1], "
                f"got {self.data_fraction}"
            )


@dataclass(frozen=True)
class ClassifierConfig(ParamsSection):
    SECTION = "classifier"

    kind: Literal["linear", "rbf"]
    c_grid: list[float] = rule("positive")
    gamma: str | float
    standardize: bool
    class_weights: list[str | None] = one_of(SVM_CLASS_WEIGHTS)
    selection_metric: Literal["accuracy", "f1"]
    max_iter: int
    batch_size: int = rule("positive")
    threads: int = rule("non_negative")

    def check(self) -> None:
        if not self.class_weights:
            raise ConfigError("classifier.class_weights: expected a non-empty list")
        if isinstance(self.gamma, str):
            check_choice("classifier.gamma", self.gamma, SVM_GAMMAS)
        else:
            check_value("classifier.gamma", self.gamma, "positive")
        if self.max_iter != NO_ITERATION_LIMIT:
            check_value("classifier.max_iter", self.max_iter, "positive")


@dataclass(frozen=True)
class EvaluateConfig(ParamsSection):
    SECTION = "evaluate"

    split: Literal["train", "val", "test"]
    batch_size: int = rule("positive")
    roc_points: int = rule("positive")


@dataclass(frozen=True)
class TrackingConfig(ParamsSection):
    SECTION = "tracking"

    experiment_name: str
    tracking_uri: str | None
    default_store: str
    log_system_metrics: bool
    system_metrics_interval_s: float = rule("positive")
    server_timeout_s: float = rule("positive")
    log_checkpoint: bool


def check_classifier_exportable(classifier: ClassifierConfig, data: DataConfig) -> None:
    """The onnx stage turns an RBF SVM into graph ops for two classes only (sklearn's
    one-vs-one voting over more is not exported). Checked by prepare, the first stage, so a
    three-class data set with the default RBF SVM fails there, not at export after training."""
    if classifier.kind == "rbf" and len(data.class_names) > 2:
        raise ConfigError(
            f"classifier.kind: an RBF SVM is exported for 2 classes, data.labels has "
            f"{len(data.class_names)} ({data.class_names}); use the linear SVM "
            "(-S classifier=linear_svm)"
        )
