"""The search space in Hydra's sweep syntax (the syntax `dvc exp run -S` sweeps take), turned
into Optuna suggestions: ``interval(a, b)`` a float, ``tag(log, interval(a, b))`` on a log
scale, ``tag(int, interval(a, b))`` an integer, ``range(a, b[, step])`` an integer below ``b``,
``choice(x, y, ...)`` a category."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.errors import HydraException

from pair_classifier.config import ConfigError

logger = logging.getLogger(__name__)

LOG_TAG = "log"
INT_TAG = "int"


def _parse(key: str, spec: str) -> Any:
    try:
        override = OverridesParser.create().parse_override(f"{key}={spec}")
    except HydraException as error:
        raise ConfigError(f"tune.search_space.{key}: not Hydra sweep syntax: {error}") from None
    value = override.value()
    if not isinstance(value, ChoiceSweep | IntervalSweep | RangeSweep):
        raise ConfigError(
            f"tune.search_space.{key}: expected interval(...), choice(...) or range(...), "
            f"got {spec!r}"
        )
    return value


def check_space(space: Mapping[str, str]) -> None:
    """Refuse a search space that does not parse, before any trial runs."""
    for key, spec in space.items():
        _parse(key, spec)


def suggest(trial: optuna.Trial, space: Mapping[str, str]) -> dict[str, Any]:
    """One value per searched key, drawn by ``trial``."""
    values: dict[str, Any] = {}
    for key, spec in space.items():
        sweep = _parse(key, spec)
        if isinstance(sweep, ChoiceSweep):
            values[key] = trial.suggest_categorical(key, list(sweep.list))
        elif isinstance(sweep, RangeSweep):
            step = int(sweep.step)
            high = int(sweep.stop) - step  # range's end is exclusive
            values[key] = trial.suggest_int(key, int(sweep.start), high, step=step)
        elif INT_TAG in sweep.tags:
            log = LOG_TAG in sweep.tags
            values[key] = trial.suggest_int(key, int(sweep.start), int(sweep.end), log=log)
        else:
            log = LOG_TAG in sweep.tags
            values[key] = trial.suggest_float(key, sweep.start, sweep.end, log=log)
    return values
