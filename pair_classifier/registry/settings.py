"""The ``register`` section of params.yaml.

It lives here rather than in ``pair_classifier.config`` because that folder is a dependency of
every pipeline stage: a section only the last stage reads must not rerun the pipeline. Same
rules as there: no defaults, declared ranges, the key named in every error.
"""

from __future__ import annotations

from dataclasses import dataclass

from pair_classifier.config.loading import ConfigError
from pair_classifier.config.rules import ParamsSection, one_of, rule

SECTION_NAME = "register"
# Figures of a benchmarked variant a champion can be chosen by; each is higher-is-better.
RANKING_METRICS = ("f1", "accuracy")


@dataclass(frozen=True)
class RegisterConfig(ParamsSection):
    SECTION = SECTION_NAME

    model_name: str
    metric: str = one_of(RANKING_METRICS)
    # share of the champion's pairs/s a new champion must keep (0: speed does not matter)
    min_speed_kept: float = rule("probability", says="expected a share in [0, 1]")
    batch_size: int = rule("positive")  # pairs per batch when the registered model predicts
    threads: int = rule("non_negative")  # ONNX Runtime threads (0: its default)

    def check(self) -> None:
        if not self.model_name.strip():
            raise ConfigError(f"{self.SECTION}.model_name: expected a registered model name")
