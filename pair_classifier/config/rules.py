"""Range rules declared on the fields of a section, and the one function that checks them.

A field states what it accepts where it is declared (``lr: float = rule("positive")``), and
``ParamsSection.__post_init__`` checks every declared rule, so a stage stops on an
out-of-range value before it does anything, with the section, key and expectation named.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pair_classifier.config.loading import ConfigError

logger = logging.getLogger(__name__)

RULE_KEY = "rule"  # the key of a field's metadata that holds its Rule

# Tests for numbers: a value, or every item of a non-empty list, must pass.
RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "positive": (lambda value: value > 0, "a positive number"),
    "non_negative": (lambda value: value >= 0, "0 or more"),
    "probability": (lambda value: 0 <= value <= 1, "a value in [0, 1]"),
    "fraction": (lambda value: 0 <= value < 1, "a value in [0, 1)"),
    "share": (lambda value: 0 < value < 1, "a share between 0 and 1"),
}


@dataclass(frozen=True)
class Rule:
    """What a field accepts: a named range (``RANGES``) or one of ``choices`` (each item, for a
    list). ``says`` replaces the message's ``expected ...`` part where a field needs its own
    words (``"expected 0 (off) or more"``)."""

    range: str | None = None
    choices: tuple[Any, ...] | None = None
    says: str | None = None

    def check(self, where: str, value: Any) -> None:
        """Raise ConfigError naming ``where`` when ``value`` breaks the rule."""
        if self.choices is not None:
            for item in value if isinstance(value, list) else [value]:
                if item not in self.choices:
                    raise ConfigError(
                        f"{where}: expected one of {list(self.choices)}, got {item!r}"
                    )
            return
        test, expected = RANGES[self.range]
        values = value if isinstance(value, list) else [value]
        if not values or not all(test(item) for item in values):
            what = f"a non-empty list, each {expected}" if isinstance(value, list) else expected
            raise ConfigError(f"{where}: {self.says or f'expected {what}'}, got {value!r}")


def rule(range_name: str, says: str | None = None) -> Any:
    """A required field whose value (or each item of it) must be in the named range."""
    if range_name not in RANGES:
        raise ValueError(f"unknown range rule {range_name!r}; known: {sorted(RANGES)}")
    return dataclasses.field(metadata={RULE_KEY: Rule(range=range_name, says=says)})


def one_of(choices: Sequence[Any]) -> Any:
    """A required field whose value (or each item of it) must be one of ``choices``."""
    return dataclasses.field(metadata={RULE_KEY: Rule(choices=tuple(choices))})


def check_value(where: str, value: Any, range_name: str) -> None:
    """Apply a named range to a value a cross-field check picked (e.g. a float ``gamma``)."""
    Rule(range=range_name).check(where, value)


def check_choice(where: str, value: Any, choices: Sequence[Any]) -> None:
    """Refuse a value outside ``choices`` that a cross-field check picked, naming them."""
    Rule(choices=tuple(choices)).check(where, value)


def check_declared_rules(section_name: str, config: Any) -> None:
    """Check every rule declared on ``config``'s fields, in field order."""
    for field in dataclasses.fields(config):
        declared = field.metadata.get(RULE_KEY)
        if declared is not None:
            declared.check(f"{section_name}.{field.name}", getattr(config, field.name))


@dataclass(frozen=True)
class ParamsSection:
    """Base of the section dataclasses: building one checks the rules declared on its fields,
    then ``check`` (what one field's rule cannot say, e.g. a list as long as another)."""

    SECTION: ClassVar[str] = ""  # its name in params.yaml, as error messages name it

    def __post_init__(self) -> None:
        check_declared_rules(self.SECTION, self)
        self.check()

    def check(self) -> None:
        """Checks across fields; none unless a section overrides it."""


@dataclass(frozen=True)
class OptimisationSection(ParamsSection):
    """The settings every trained model shares (teacher, student, cross-encoder): what the one
    optimiser builder (``model.optim``) and the Trainer read. Sections inherit them, so the
    fields come first in each."""

    epochs: int = rule("positive")
    batch_size: int = rule("positive")
    lr: float = rule("positive")
    head_lr: float = rule("positive")
    weight_decay: float = rule("non_negative")
    warmup_fraction: float = rule("fraction")
