"""Typed views of the sections of params.yaml that prepare the model for production: distill
(and its cross-encoder teacher), export, quantize, trt, benchmark.

As in ``sections``: no defaults (configs/ is the one source), range rules declared on the
fields, ``check`` for what one field cannot say.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Literal

from pair_classifier.config.loading import ConfigError
from pair_classifier.config.rules import (
    OptimisationSection,
    ParamsSection,
    check_choice,
    one_of,
    rule,
)

logger = logging.getLogger(__name__)

# What the distillation module logs, i.e. what early stopping can monitor.
DISTILL_MONITORS = ("val_acc", "val_f1", "val_loss", "val_mse", "val_kl", "val_ce", "val_hidden")
RELATION_MONITOR = "val_relation"  # logged only when relation distillation is on
TRT_PRECISIONS = ("fp16", "int8")
PROBABILITY = "expected a probability in [0, 1]"  # what a chance per word must be


@dataclass(frozen=True)
class CrossEncoderConfig(OptimisationSection):
    """The optional cross-encoder teacher: ``model.pretrained`` reading both texts as one input."""

    SECTION = "distill.cross_encoder"

    max_length: int = rule("positive")  # both texts together


@dataclass(frozen=True)
class DistillConfig(OptimisationSection):
    SECTION = "distill"

    keep_layers: list[int] = rule("non_negative", says="expected teacher block indices (0 or more)")
    teacher: Literal["bi_encoder", "cross_encoder"]  # whose logits KL follows
    cross_encoder: CrossEncoderConfig
    heads_per_layer: int = rule("non_negative")  # 0: keep all
    ffn_channels_per_layer: int = rule("non_negative")  # 0: keep all
    importance_batches: int = rule("positive")
    augment_copies: int = rule("non_negative")  # perturbed, unlabelled copies of the train pairs
    augment_word_dropout: float = rule("probability", says=PROBABILITY)
    # chance a word becomes an embedding neighbour
    augment_replace_probability: float = rule("probability", says=PROBABILITY)
    augment_neighbours: int = rule("positive")  # candidates per word, nearest in the teacher's
    temperature: float = rule("positive")
    mse_weight: float = rule("non_negative")
    kl_weight: float = rule("non_negative")
    ce_weight: float = rule("non_negative")
    # Layer-wise distillation: per student block, the teacher block whose output token states
    # it learns (empty: off); the MSE between them is weighted by hidden_weight.
    hidden_layers: list[int]
    hidden_weight: float = rule("non_negative")
    # Relation distillation (MiniLMv2): the student's last block learns the query-query,
    # key-key and value-value self-relations of teacher block relation_layer (negative: counted
    # from the last), split into relation_heads heads; KL weighted by relation_weight (0: off).
    relation_weight: float = rule("non_negative", says="expected 0 (off) or more")
    relation_layer: int
    relation_heads: int = rule("positive", says="expected 1 or more")
    monitor: str
    monitor_mode: Literal["min", "max"]

    def check(self) -> None:
        monitors = DISTILL_MONITORS + ((RELATION_MONITOR,) if self.relation_weight > 0 else ())
        check_choice("distill.monitor", self.monitor, monitors)
        if self.hidden_layers and len(self.hidden_layers) != len(self.keep_layers):
            raise ConfigError(
                f"distill.hidden_layers: one teacher block per student block, i.e. "
                f"{len(self.keep_layers)} (as many as keep_layers), got {self.hidden_layers}"
            )


@dataclass(frozen=True)
class ExportConfig(ParamsSection):
    SECTION = "export"

    opset: int = rule("positive")
    optimize_level: int
    # ORT transformer-optimiser fusions left out (its FusionOptions' ``enable_<name>`` flags)
    optimizer_fusions_off: list[str]
    parity_split: Literal["train", "val", "test"]
    parity_batch_size: int = rule("positive")
    max_abs_score_diff: float = rule("non_negative")
    min_prediction_agreement: float = rule("probability")
    # near-tie flips excused: reference top-two probability gap <= this
    tie_margin: float = rule("non_negative")
    threads: int = rule("non_negative")


@dataclass(frozen=True)
class QuantizeConfig(ParamsSection):
    SECTION = "quantize"

    calibration_size: int = rule("positive")
    calibration_batch_size: int = rule("positive")
    calibration_method: Literal["minmax", "entropy"]
    per_channel: bool
    activation_type: Literal["quint8", "qint8"]
    weight_type: Literal["quint8", "qint8"]
    reduce_range: bool  # 7-bit weights: no u8*s8 overflow on CPUs without VNNI
    max_accuracy_drop: float = rule("non_negative")
    gate_confidence: float = rule("share")  # of the one-sided bound on the accuracy drop
    include_nodes: str
    static_exclude_nodes: str | None

    def check(self) -> None:
        for name in ("include_nodes", "static_exclude_nodes"):
            pattern = getattr(self, name)
            try:
                re.compile(pattern or "")
            except re.error as error:
                raise ConfigError(
                    f"quantize.{name}: {pattern!r} is not a regular expression ({error})"
                ) from None


@dataclass(frozen=True)
class TrtConfig(ParamsSection):
    SECTION = "trt"

    precisions: list[str] = one_of(TRT_PRECISIONS)
    min_batch: int = rule("positive")
    opt_batch: int
    max_batch: int
    min_sequence: int = rule("positive")
    opt_sequence: int
    max_sequence: int
    workspace_mib: int = rule("positive")
    max_abs_score_diff: float = rule("non_negative")
    min_prediction_agreement: float = rule("probability")


@dataclass(frozen=True)
class BenchmarkConfig(ParamsSection):
    SECTION = "benchmark"

    split: Literal["train", "val", "test"]
    batch_size: int = rule("positive")
    latency_pairs: int = rule("positive")
    warmup_batches: int = rule("non_negative")
    throughput_passes: int = rule("positive", says="need at least 1")
    threads: int = rule("non_negative")
    # accurate enough: at least this share of the teacher's F1
    min_f1_kept: float = rule("probability")
    # The served graph: batch-invariant within this |Δprobability|, keeping min_f1_kept of the
    # reference's F1, fastest, a simpler graph kept unless the faster beats it by the margin.
    serving_batch_invariance_tolerance: float = rule("non_negative")
    serving_f1_reference: Literal["student_fp32", "teacher"]
    serving_tie_margin: float = rule("non_negative")
    # a variant's process that has not answered is killed
    variant_timeout_s: float = rule("positive", says="need a positive number of seconds")
