"""The ``tune`` section of params.yaml: the search space, the objective (validation only), the
pruner, the study's storage and the cheap proxy a CPU search runs under.

It lives here rather than in ``pair_classifier.config`` because that folder is a dependency of
every pipeline stage: a section no stage reads must not rerun the pipeline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pair_classifier.config import ConfigError, read_params, section
from pair_classifier.config.rules import ParamsSection, one_of, rule

logger = logging.getLogger(__name__)

SECTION_NAME = "tune"
PRUNERS = ("none", "median", "threshold")
STORAGE_KINDS = ("sqlite", "services")  # or an SQLAlchemy URL
# The test split must never choose: an objective read from these is refused.
TEST_MARKERS = ("test", "evaluate.json")


@dataclass(frozen=True)
class ObjectiveConfig(ParamsSection):
    """Where a finished trial's objective is read: a JSON metrics file and a dotted key."""

    SECTION = f"{SECTION_NAME}.objective"

    file: str
    key: str
    direction: Literal["maximize", "minimize"]

    def check(self) -> None:
        for marker in TEST_MARKERS:
            if marker in self.file or marker in self.key.split("."):
                raise ConfigError(
                    f"{self.SECTION}: the objective must be a validation figure, got "
                    f"{self.file}:{self.key} (the test split is never used to choose)"
                )


@dataclass(frozen=True)
class PrunerConfig(ParamsSection):
    """Which pruner stops a trial early, from which per-epoch validation metric (as the stage
    logs it to its MLflow run)."""

    SECTION = f"{SECTION_NAME}.pruner"

    kind: str = one_of(PRUNERS)
    stage: str
    metric: str
    n_startup_trials: int = rule("non_negative")
    n_warmup_steps: int = rule("non_negative")
    lower: float | None
    upper: float | None

    def check(self) -> None:
        if self.kind == "threshold" and self.lower is None and self.upper is None:
            raise ConfigError(f"{self.SECTION}: kind threshold needs lower or upper")


@dataclass(frozen=True)
class ProxyConfig(ParamsSection):
    """The cheap setting every trial runs under (fewer epochs, a share of the training data);
    its overrides are stated in the results and never applied to the default config."""

    SECTION = f"{SECTION_NAME}.proxy"

    enabled: bool
    overrides: dict[str, str]


@dataclass(frozen=True)
class TuneConfig(ParamsSection):
    SECTION = SECTION_NAME

    study_name: str
    storage: str
    sqlite_file: str
    n_trials: int = rule("positive")
    targets: list[str]
    search_space: dict[str, str]
    objective: ObjectiveConfig
    pruner: PrunerConfig
    proxy: ProxyConfig
    seed: int
    poll_interval_s: float = rule("positive")
    trial_timeout_s: float = rule("positive")
    stop_grace_s: float = rule("positive")
    plots_dir: str
    log_tail_chars: int = rule("positive")

    def check(self) -> None:
        if not self.study_name.strip() or any(c.isspace() for c in self.study_name):
            raise ConfigError(
                f"{self.SECTION}.study_name: expected a name without spaces (it names the DVC "
                f"experiments), got {self.study_name!r}"
            )
        if not self.search_space:
            raise ConfigError(f"{self.SECTION}.search_space: expected at least one parameter")
        if not self.targets:
            raise ConfigError(f"{self.SECTION}.targets: expected the stages a trial runs")
        clash = sorted(set(self.search_space) & set(self.proxy.overrides))
        if clash:
            raise ConfigError(
                f"{self.SECTION}: {clash} is both searched and fixed by the proxy; pick one"
            )


def load_tune(params_file: Path) -> TuneConfig:
    """The ``tune`` section of ``params_file``, checked."""
    config = section(read_params(params_file), SECTION_NAME, TuneConfig)
    logger.debug("tune settings from %s: %s", params_file, config)
    return config
