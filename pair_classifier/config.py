"""Typed views of the sections of params.yaml.

Each stage loads the sections it declares in dvc.yaml through these dataclasses, so a typo or a
missing key in a config fails at start-up with the section and key named, not deep in training.
params.yaml is the only source of the pipeline's settings: a stage's section must name every
key (``section``). The dataclass defaults serve callers of the library (tests, notebooks).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from pair_classifier.constants import PARAMS_FILE
from pair_classifier.errors import PairClassifierError

T = TypeVar("T")


class ConfigError(PairClassifierError, ValueError):
    """A params section does not match what the code expects."""


# Rules for numeric settings: a value, or every item of a list, must satisfy the test.
_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "positive": (lambda value: value > 0, "a positive number"),
    "non_negative": (lambda value: value >= 0, "0 or more"),
    "probability": (lambda value: 0 <= value <= 1, "a value in [0, 1]"),
    "fraction": (lambda value: 0 <= value < 1, "a value in [0, 1)"),
}
# What the training and distillation modules log, i.e. what early stopping can monitor.
TRAIN_MONITORS = ("val_loss", "val_acc", "val_f1")
DISTILL_MONITORS = ("val_acc", "val_f1", "val_loss", "val_mse", "val_kl", "val_ce", "val_hidden")
# The rules every optimisation section (train, distill, distill.cross_encoder) shares.
OPTIMISATION_RULES = {
    "epochs": "positive",
    "batch_size": "positive",
    "lr": "positive",
    "head_lr": "positive",
    "weight_decay": "non_negative",
    "warmup_fraction": "fraction",
}
SVM_GAMMAS = ("scale", "auto")
SVM_CLASS_WEIGHTS = (None, "balanced")
NO_ITERATION_LIMIT = -1  # libsvm's "until converged"
TRT_PRECISIONS = ("fp16", "int8")


def check_fields(section_name: str, config: Any, **rules: str) -> None:
    """Refuse out-of-range numbers when the section is read, so a stage stops before it does
    anything: ``check_fields("train", config, epochs="positive", ...)``."""
    for name, rule in rules.items():
        test, expected = _RULES[rule]
        value = getattr(config, name)
        values = value if isinstance(value, list) else [value]
        if not values or not all(test(item) for item in values):
            what = f"a non-empty list, each {expected}" if isinstance(value, list) else expected
            raise ConfigError(f"{section_name}.{name}: expected {what}, got {value!r}")


def check_choice(section_name: str, name: str, value: Any, choices: Sequence[Any]) -> None:
    """Refuse a value outside ``choices``, naming them."""
    if value not in choices:
        raise ConfigError(f"{section_name}.{name}: expected one of {list(choices)}, got {value!r}")


@dataclass(frozen=True)
class DataFiles:
    train: str
    test: str
    val: str | None = None


@dataclass(frozen=True)
class DataColumns:
    text_a: str
    text_b: str
    label: str


@dataclass(frozen=True)
class DataConfig:
    name: str
    dir: str
    format: Literal["csv", "tsv", "jsonl", "parquet"]
    files: DataFiles
    columns: DataColumns
    labels: dict[str, str]
    positive_label: str
    encoding: str = "utf-8"
    separator: str = ","
    quoting: Literal["none", "minimal"] = "minimal"
    symmetric: bool = False
    shared_dir: str | None = None
    public_source: str | None = None

    @property
    def class_names(self) -> list[str]:
        """Class names in class-index order (several raw values may map to one class)."""
        return list(dict.fromkeys(self.labels.values()))

    @property
    def positive_index(self) -> int:
        """Class index of ``positive_label``, whose F1, precision and recall are reported."""
        return self.class_names.index(self.positive_label)

    def __post_init__(self) -> None:
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
class PrepareConfig:
    on_invalid: Literal["fail", "quarantine"] = "quarantine"
    val_fraction: float = 0.1
    split_seed: int = 42
    max_problems_reported: int = 20
    length_percentiles: list[int] = field(default_factory=lambda: [50, 90, 95, 99, 100])

    def __post_init__(self) -> None:
        check_fields("prepare", self, max_problems_reported="non_negative")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(
                f"prepare.val_fraction: expected a share between 0 and 1, got {self.val_fraction}"
            )
        outside = [p for p in self.length_percentiles if not 0 <= p <= 100]
        if outside:
            raise ConfigError(
                f"prepare.length_percentiles: expected values in 0..100, got {outside}"
            )


@dataclass(frozen=True)
class ModelConfig:
    name: str
    pretrained: str
    max_length: int = 128
    head_hidden: int = 0
    dropout: float = 0.1
    hf_cache: str | None = None

    def __post_init__(self) -> None:
        check_fields("model", self, max_length="positive", head_hidden="non_negative")
        check_fields("model", self, dropout="fraction")


@dataclass(frozen=True)
class PrecisionConfig:
    cpu: str = "32-true"
    cuda: str = "16-mixed"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float
    head_lr: float
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    gradient_clip_val: float = 1.0
    swap_probability: float = 0.5
    cosine_loss_weight: float = 0.0
    freeze_word_embeddings: bool = True
    freeze_bottom_layers: int = 0
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    accelerator: str = "auto"
    devices: int = 1
    strategy: str = "auto"
    num_threads: int = 0
    num_workers: int = 0
    group_by_length: bool = True
    checkpoint_every_n_steps: int = 50
    monitor: str = "val_acc"
    monitor_mode: Literal["min", "max"] = "max"
    early_stopping_patience: int = 2
    log_every_n_steps: int = 10

    def __post_init__(self) -> None:
        check_fields(
            "train",
            self,
            **OPTIMISATION_RULES,
            gradient_clip_val="non_negative",
            swap_probability="probability",
            cosine_loss_weight="non_negative",
            devices="positive",
            num_threads="non_negative",
            num_workers="non_negative",
            checkpoint_every_n_steps="positive",
            early_stopping_patience="non_negative",
            log_every_n_steps="positive",
            freeze_bottom_layers="non_negative",
        )
        check_choice("train", "monitor", self.monitor, TRAIN_MONITORS)


@dataclass(frozen=True)
class CrossEncoderConfig:
    """The optional cross-encoder teacher: ``model.pretrained`` reading both texts as one input."""

    epochs: int = 3
    batch_size: int = 16
    lr: float = 5.0e-5
    head_lr: float = 1.0e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    max_length: int = 256  # both texts together

    def __post_init__(self) -> None:
        check_fields(
            "distill.cross_encoder",
            self,
            **OPTIMISATION_RULES,
            max_length="positive",
        )


@dataclass(frozen=True)
class DistillConfig:
    keep_layers: list[int]
    teacher: Literal["bi_encoder", "cross_encoder"] = "bi_encoder"  # whose logits KL follows
    cross_encoder: CrossEncoderConfig = field(default_factory=CrossEncoderConfig)
    heads_per_layer: int = 0  # 0: keep all
    ffn_channels_per_layer: int = 0  # 0: keep all
    importance_batches: int = 16
    augment_copies: int = 0  # perturbed, unlabelled copies of the training pairs
    augment_word_dropout: float = 0.1
    augment_replace_probability: float = 0.0  # chance a word becomes an embedding neighbour
    augment_neighbours: int = 8  # candidates per word, nearest in the teacher's embeddings
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1.0e-4
    head_lr: float = 1.0e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    temperature: float = 2.0
    mse_weight: float = 1.0
    kl_weight: float = 1.0
    ce_weight: float = 0.5
    # Layer-wise distillation: per student block, the teacher block whose output token states
    # it learns (empty: off); the MSE between them is weighted by hidden_weight.
    hidden_layers: list[int] = field(default_factory=list)
    hidden_weight: float = 1.0
    # Relation distillation (MiniLMv2): the student's last block learns the query-query,
    # key-key and value-value self-relations of teacher block relation_layer (negative: counted
    # from the last), split into relation_heads heads; KL weighted by relation_weight (0: off).
    relation_weight: float = 0.0
    relation_layer: int = -1
    relation_heads: int = 4
    monitor: str = "val_acc"
    monitor_mode: Literal["min", "max"] = "max"

    def __post_init__(self) -> None:
        check_fields(
            "distill",
            self,
            heads_per_layer="non_negative",
            ffn_channels_per_layer="non_negative",
            importance_batches="positive",
            augment_copies="non_negative",
            augment_neighbours="positive",
            **OPTIMISATION_RULES,
            temperature="positive",
            mse_weight="non_negative",
            kl_weight="non_negative",
            ce_weight="non_negative",
            hidden_weight="non_negative",
        )
        for name in ("augment_word_dropout", "augment_replace_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(
                    f"distill.{name}: expected a probability in [0, 1], got {getattr(self, name)}"
                )
        monitors = DISTILL_MONITORS + (("val_relation",) if self.relation_weight > 0 else ())
        check_choice("distill", "monitor", self.monitor, monitors)
        if not self.keep_layers or any(block < 0 for block in self.keep_layers):
            raise ConfigError(
                f"distill.keep_layers: expected teacher block indices (0 or more), "
                f"got {self.keep_layers}"
            )
        if self.relation_weight < 0:
            raise ConfigError(
                f"distill.relation_weight: expected 0 (off) or more, got {self.relation_weight}"
            )
        if self.relation_heads < 1:
            raise ConfigError(
                f"distill.relation_heads: expected 1 or more, got {self.relation_heads}"
            )
        if self.hidden_layers and len(self.hidden_layers) != len(self.keep_layers):
            raise ConfigError(
                f"distill.hidden_layers: one teacher block per student block, i.e. "
                f"{len(self.keep_layers)} (as many as keep_layers), got {self.hidden_layers}"
            )


@dataclass(frozen=True)
class ClassifierConfig:
    kind: Literal["linear", "rbf"] = "linear"
    c_grid: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    gamma: str | float = "scale"
    standardize: bool = True
    class_weights: list[str | None] = field(default_factory=lambda: [None])
    selection_metric: Literal["accuracy", "f1"] = "accuracy"
    max_iter: int = 20000
    batch_size: int = 64
    threads: int = 0

    def __post_init__(self) -> None:
        check_fields("classifier", self, c_grid="positive", batch_size="positive")
        check_fields("classifier", self, threads="non_negative")
        if not self.class_weights:
            raise ConfigError("classifier.class_weights: expected a non-empty list")
        for weight in self.class_weights:
            check_choice("classifier", "class_weights", weight, SVM_CLASS_WEIGHTS)
        if isinstance(self.gamma, str):
            check_choice("classifier", "gamma", self.gamma, SVM_GAMMAS)
        else:
            check_fields("classifier", self, gamma="positive")
        if self.max_iter != NO_ITERATION_LIMIT:
            check_fields("classifier", self, max_iter="positive")


@dataclass(frozen=True)
class EvaluateConfig:
    split: Literal["train", "val", "test"] = "test"
    batch_size: int = 64
    roc_points: int = 101

    def __post_init__(self) -> None:
        check_fields("evaluate", self, batch_size="positive", roc_points="positive")


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 17
    optimize_level: int = 2
    # ORT transformer-optimiser fusions left out (its FusionOptions' ``enable_<name>`` flags)
    optimizer_fusions_off: list[str] = field(default_factory=list)
    parity_split: Literal["train", "val", "test"] = "val"
    parity_batch_size: int = 32
    max_abs_score_diff: float = 1.0e-4
    min_prediction_agreement: float = 1.0
    tie_margin: float = 0.0  # near-tie flips excused: reference top-two probability gap <= this
    threads: int = 0

    def __post_init__(self) -> None:
        check_fields(
            "export",
            self,
            opset="positive",
            parity_batch_size="positive",
            max_abs_score_diff="non_negative",
            min_prediction_agreement="probability",
            tie_margin="non_negative",
            threads="non_negative",
        )


@dataclass(frozen=True)
class QuantizeConfig:
    calibration_size: int = 512
    calibration_batch_size: int = 32
    calibration_method: Literal["minmax", "entropy"] = "minmax"
    per_channel: bool = True
    activation_type: Literal["quint8", "qint8"] = "quint8"
    weight_type: Literal["quint8", "qint8"] = "qint8"
    reduce_range: bool = True  # 7-bit weights: no u8*s8 overflow on CPUs without VNNI
    max_accuracy_drop: float = 0.01
    batch_invariance_tolerance: float = 1.0e-3
    serving_variant: Literal["int8_static", "int8_dynamic"] = "int8_static"
    include_nodes: str = r"/layer\.\d+/"
    static_exclude_nodes: str | None = None

    def __post_init__(self) -> None:
        check_fields(
            "quantize",
            self,
            calibration_size="positive",
            calibration_batch_size="positive",
            max_accuracy_drop="non_negative",
            batch_invariance_tolerance="non_negative",
        )
        for name in ("include_nodes", "static_exclude_nodes"):
            pattern = getattr(self, name)
            try:
                re.compile(pattern or "")
            except re.error as error:
                raise ConfigError(
                    f"quantize.{name}: {pattern!r} is not a regular expression ({error})"
                ) from None


@dataclass(frozen=True)
class TrtConfig:
    precisions: list[str] = field(default_factory=lambda: ["fp16", "int8"])
    min_batch: int = 1
    opt_batch: int = 32
    max_batch: int = 64
    min_sequence: int = 1
    opt_sequence: int = 32
    max_sequence: int = 128
    workspace_mib: int = 2048
    max_abs_score_diff: float = 5.0e-2
    min_prediction_agreement: float = 0.99

    def __post_init__(self) -> None:
        for precision in self.precisions:
            check_choice("trt", "precisions", precision, TRT_PRECISIONS)
        check_fields(
            "trt",
            self,
            min_batch="positive",
            min_sequence="positive",
            workspace_mib="positive",
            max_abs_score_diff="non_negative",
            min_prediction_agreement="probability",
        )


@dataclass(frozen=True)
class BenchmarkConfig:
    split: Literal["train", "val", "test"] = "test"
    batch_size: int = 32
    latency_pairs: int = 200
    warmup_batches: int = 3
    throughput_passes: int = 3
    threads: int = 0
    min_f1_kept: float = 0.99  # accurate enough: at least this share of the teacher's F1
    variant_timeout_s: float = 3600.0  # a variant's process that has not answered is killed

    def __post_init__(self) -> None:
        check_fields(
            "benchmark",
            self,
            batch_size="positive",
            latency_pairs="positive",
            warmup_batches="non_negative",
            threads="non_negative",
            min_f1_kept="probability",
        )
        if self.variant_timeout_s <= 0:
            raise ConfigError(
                f"benchmark.variant_timeout_s: need a positive number of seconds, "
                f"got {self.variant_timeout_s}"
            )
        if self.throughput_passes < 1:
            raise ConfigError(
                f"benchmark.throughput_passes: need at least 1, got {self.throughput_passes}"
            )


@dataclass(frozen=True)
class TrackingConfig:
    experiment_name: str = "pair-classifier"
    tracking_uri: str | None = None
    default_store: str = "mlflow.db"
    log_system_metrics: bool = True
    system_metrics_interval_s: float = 5.0
    server_timeout_s: float = 10.0
    log_checkpoint: bool = True

    def __post_init__(self) -> None:
        check_fields(
            "tracking", self, system_metrics_interval_s="positive", server_timeout_s="positive"
        )


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


def _convert(value: Any, annotation: Any, where: str, complete: bool) -> Any:
    """Check ``value`` against ``annotation`` (recursing into dataclasses) and return it."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return from_mapping(annotation, value, where, complete)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(value, option, where, complete)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError("; ".join(errors))
    if origin is Literal:
        if value not in typing.get_args(annotation):
            raise ConfigError(
                f"{where}: expected one of {typing.get_args(annotation)}, got {value!r}"
            )
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_type,) = typing.get_args(annotation)
        return [
            _convert(item, item_type, f"{where}[{i}]", complete) for i, item in enumerate(value)
        ]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(key): str(item) for key, item in value.items()}
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float, str, bool):
        if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported annotation {annotation!r}")


def from_mapping(cls: type[T], mapping: Any, where: str, complete: bool = False) -> T:
    """Build dataclass ``cls`` from a mapping, naming ``where`` in every error.

    ``complete``: every field must be in the mapping, defaults are not filled in (a key left out
    of params.yaml would otherwise run silently with the library's default)."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a mapping, got {mapping!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in mapping:
            values[f.name] = _convert(mapping[f.name], hints[f.name], f"{where}.{f.name}", complete)
        elif complete or (
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ):
            raise ConfigError(f"{where}: missing required key {f.name!r}")
    return cls(**values)


def read_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """The whole params.yaml as plain data."""
    if not path.exists():
        raise ConfigError(f"{path}: not found (run from the project root, or `dvc exp run`)")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return params


def section(params: dict[str, Any], name: str, cls: type[T]) -> T:
    """One typed section of params, every key given."""
    if name not in params:
        raise ConfigError(f"params.yaml: missing section {name!r}")
    return from_mapping(cls, params[name], name, complete=True)


def read_seed(params: dict[str, Any]) -> int:
    """The pipeline's top-level ``seed``."""
    seed = params.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"params.yaml: seed: expected an integer, got {seed!r}")
    return seed
