"""Reading params.yaml and turning its sections into the typed dataclasses of ``sections``.

The conversion checks every value against the field's annotation and names the section and key
in its error, so a typo or a missing key fails when a stage starts, not deep in training.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from pair_classifier.constants import PARAMS_FILE
from pair_classifier.errors import PairClassifierError

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ConfigError(PairClassifierError, ValueError):
    """A params section does not match what the code expects."""


def _convert_union(value: Any, annotation: Any, where: str) -> Any:
    """The first option of ``A | B | None`` that takes ``value``; every option's complaint else."""
    options = typing.get_args(annotation)
    if value is None and type(None) in options:
        return None
    errors = []
    for option in (o for o in options if o is not type(None)):
        try:
            return _convert(value, option, where)
        except ConfigError as error:
            errors.append(str(error))
    raise ConfigError("; ".join(errors))


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against ``annotation`` (recursing into dataclasses) and return it."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return from_mapping(annotation, value, where)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(value, annotation, where)
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
        return [_convert(item, item_type, f"{where}[{i}]") for i, item in enumerate(value)]
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


def from_mapping(cls: type[T], mapping: Any, where: str) -> T:
    """Build dataclass ``cls`` from a mapping that names every field, naming ``where`` in every
    error. The dataclasses carry no defaults: configs/ is the one source of the settings, so a
    key left out fails here instead of running silently with a value nobody chose."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a mapping, got {mapping!r}")
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    known = {f.name for f in fields}
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}")
    missing = [f.name for f in fields if f.name not in mapping]
    if missing:
        raise ConfigError(f"{where}: missing required key {missing[0]!r}")
    return cls(
        **{f.name: _convert(mapping[f.name], hints[f.name], f"{where}.{f.name}") for f in fields}
    )


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
    return from_mapping(cls, params[name], name)


def read_seed(params: dict[str, Any]) -> int:
    """The pipeline's top-level ``seed``."""
    seed = params.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"params.yaml: seed: expected an integer, got {seed!r}")
    return seed
