"""The ``drift`` section of params.yaml: what `pair-classifier drift` compares with, the sample
sizes and each check's threshold. It lives here, not in ``pair_classifier.config``, so that no
pipeline stage reruns when it changes. Same rules as there: no defaults, declared ranges."""

from __future__ import annotations

from dataclasses import dataclass

from pair_classifier.config import ConfigError
from pair_classifier.config.rules import ParamsSection, rule

SECTION_NAME = "drift"


@dataclass(frozen=True)
class DriftConfig(ParamsSection):
    SECTION = SECTION_NAME

    reference: str  # the training split: token lengths, vocabulary, sentence vectors
    prediction_reference: str  # held-out pairs the model's outputs are compared with
    out_dir: str  # drift.json and drift.html
    max_pairs: int = rule("positive")  # the newest pairs of the window that are checked
    reference_pairs: int = rule("positive")  # sampled from the reference (seeded)
    seed: int = rule("non_negative")
    batch_size: int = rule("positive")  # pairs per batch when scoring
    threads: int = rule("non_negative")  # ONNX Runtime threads (0: all cores)
    alpha: float = rule("share")  # significance of each statistical test
    ks_min_effect: float = rule("probability")  # token lengths, confidence: smallest KS D
    label_min_effect: float = rule("probability")  # label mix: smallest Cramér's V
    unk_margin: float = rule("probability")  # [UNK] share allowed above the reference's
    unseen_margin: float = rule("probability")  # unseen-token share allowed above expected
    vocabulary_folds: int = rule("positive")  # folds that estimate the expected unseen share
    domain_min_auc: float = rule("probability")  # domain classifier: smallest AUC that counts
    domain_folds: int = rule("positive")  # cross-validation folds of the domain classifier
    domain_permutations: int = rule("non_negative")  # label permutations for its null AUCs
    domain_c: float = rule("positive")  # its inverse regularisation strength (C)

    def check(self) -> None:
        for key in ("vocabulary_folds", "domain_folds"):
            if getattr(self, key) < 2:
                raise ConfigError(f"{self.SECTION}.{key}: expected 2 or more folds")
