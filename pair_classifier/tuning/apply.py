"""`pair-classifier tune apply`: the best trial's values written into the default config.

Each searched key ``group.key`` goes into the file of ``group`` that configs/config.yaml's
defaults select (``train: default`` -> configs/train/default.yaml), comments kept; a key of no
group goes into configs/config.yaml. The proxy's overrides are never applied: the default
config keeps its full epochs and data. params.yaml is composed again afterwards, as `dvc exp
run` would compose it, so `dvc repro` trains the new default.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
from ruamel.yaml import YAML

from pair_classifier.config import ConfigError
from pair_classifier.constants import PARAMS_FILE

logger = logging.getLogger(__name__)

ROOT_CONFIG = "config"  # configs/config.yaml
DEFAULTS_KEY = "defaults"
YAML_SUFFIX = ".yaml"


def _yaml() -> YAML:
    yaml = YAML()  # round trip: comments and key order stay
    yaml.preserve_quotes = True
    yaml.width = 100
    return yaml


def selected_groups(config_dir: Path) -> dict[str, str]:
    """The config groups configs/config.yaml selects: group -> option."""
    root = _yaml().load((config_dir / f"{ROOT_CONFIG}{YAML_SUFFIX}").read_text(encoding="utf-8"))
    return {
        str(group): str(option)
        for entry in root.get(DEFAULTS_KEY, [])
        if isinstance(entry, dict)
        for group, option in entry.items()
    }


def _target(config_dir: Path, key: str, groups: dict[str, str]) -> tuple[Path, list[str]]:
    group, _, rest = key.partition(".")
    if rest and group in groups:
        return config_dir / group / f"{groups[group]}{YAML_SUFFIX}", rest.split(".")
    return config_dir / f"{ROOT_CONFIG}{YAML_SUFFIX}", key.split(".")


def set_value(path: Path, keys: list[str], value: Any) -> Any:
    """Set ``keys`` (nested) in the YAML file ``path``, comments kept; returns the old value."""
    yaml = _yaml()
    document = yaml.load(path.read_text(encoding="utf-8"))
    node = document
    for part in keys[:-1]:
        if part not in node:
            raise ConfigError(f"{path}: has no key {'.'.join(keys)} to set")
        node = node[part]
    if keys[-1] not in node:
        raise ConfigError(f"{path}: has no key {'.'.join(keys)} to set")
    old, node[keys[-1]] = node[keys[-1]], value
    with path.open("w", encoding="utf-8") as stream:
        yaml.dump(document, stream)
    return old


def compose_params(config_dir: Path, params_file: Path = PARAMS_FILE) -> None:
    """params.yaml from configs/, as `dvc exp run` composes it (DVC's Hydra integration)."""
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(params_file, str(config_dir.resolve()), None, ROOT_CONFIG, Path.cwd(), [])


def apply_best(study: optuna.Study, config_dir: Path) -> dict[str, tuple[Any, Any]]:
    """Write the best trial's values into the selected config files; returns
    ``key -> (old, new)``."""
    try:
        best = study.best_trial
    except ValueError:
        raise ConfigError(
            f"study {study.study_name!r} has no complete trial: nothing to apply"
        ) from None
    groups = selected_groups(config_dir)
    changed = {}
    for key, value in best.params.items():
        path, keys = _target(config_dir, key, groups)
        changed[key] = (set_value(path, keys, value), value)
        logger.info("%s: %s = %r (was %r)", path, ".".join(keys), value, changed[key][0])
    compose_params(config_dir)
    logger.info("Done: trial %d of study %s is the default config", best.number, study.study_name)
    return changed
