"""The ``loadtest`` section of params.yaml (stage load-test). Same rules as
``pair_classifier.config``: no defaults, declared ranges, the key named in every error."""

from __future__ import annotations

from dataclasses import dataclass

from pair_classifier.config.loading import ConfigError
from pair_classifier.config.rules import ParamsSection, one_of, rule
from pair_classifier.constants import SPLITS

SECTION_NAME = "loadtest"


@dataclass(frozen=True)
class LoadTestConfig(ParamsSection):
    SECTION = SECTION_NAME

    split: str = one_of(SPLITS)
    pairs: int = rule("positive")  # distinct requests, sent in turn by every client
    clients: list[int] = rule("positive")  # concurrent clients of each point
    point_duration_s: float = rule("positive")
    warmup_requests: int = rule("non_negative")
    compared_at: int = rule("positive")  # the client count the ratios are read at
    soak_clients: int = rule("positive")
    soak_duration_s: float = rule("non_negative", says="expected seconds (0: no soak)")
    start_timeout_s: float = rule("positive")
    stop_timeout_s: float = rule("positive")
    teacher_batch_size: int = rule("positive")

    def check(self) -> None:
        if self.compared_at not in self.clients:
            raise ConfigError(
                f"{self.SECTION}.compared_at: expected one of clients {self.clients}, "
                f"got {self.compared_at}"
            )
