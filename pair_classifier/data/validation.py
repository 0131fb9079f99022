"""Row-level checks of the data contract, within a split and across splits.

Every rejected row becomes a ``Problem``; the caller decides (by ``prepare.on_invalid``) whether
problems stop the run or go to a quarantine file. Nothing is dropped without a record.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pair_classifier.config import DataConfig
from pair_classifier.data.reading import Problem, RawPair
from pair_classifier.errors import PairClassifierError

# When the same pair sits in two splits, it stays in the split that scores the model.
SPLIT_PRIORITY = ("test", "val", "train")


class DataValidationError(PairClassifierError, ValueError):
    """Rows break the data contract and the policy is to fail."""


@dataclass(frozen=True)
class SplitRows:
    """The accepted rows of one split and the file they came from."""

    file: str
    pairs: list[RawPair]


def pair_key(pair: RawPair, symmetric: bool) -> tuple[str, str]:
    """Identity of a pair: its two texts, in either order when the task is symmetric."""
    a, b = pair.text_a.strip(), pair.text_b.strip()
    return (min(a, b), max(a, b)) if symmetric else (a, b)


def check_rows(
    file: str, pairs: list[RawPair], config: DataConfig
) -> tuple[SplitRows, list[Problem]]:
    """Empty texts, unknown labels, duplicates and conflicting labels within one file."""
    accepted: list[RawPair] = []
    problems: list[Problem] = []
    seen: dict[tuple[str, str], RawPair] = {}
    for pair in pairs:
        empty = [
            name
            for name, text in (("text_a", pair.text_a), ("text_b", pair.text_b))
            if not text.strip()
        ]
        if empty:
            problems.append(
                Problem(
                    file,
                    pair.line,
                    "empty_text",
                    f"{' and '.join(empty)} empty or whitespace only",
                    pair.raw,
                )
            )
            continue
        if pair.raw_label not in config.labels:
            problems.append(
                Problem(
                    file,
                    pair.line,
                    "unknown_label",
                    f"label {pair.raw_label!r} is not one of {list(config.labels)}",
                    pair.raw,
                )
            )
            continue
        key = pair_key(pair, config.symmetric)
        first = seen.get(key)
        if first is not None:
            same = config.labels[first.raw_label] == config.labels[pair.raw_label]
            reason = "duplicate" if same else "conflicting_label"
            detail = f"same pair as line {first.line}" + (
                "" if same else f" with label {first.raw_label!r}"
            )
            problems.append(Problem(file, pair.line, reason, detail, pair.raw))
            continue
        seen[key] = pair
        accepted.append(pair)
    return SplitRows(file, accepted), problems


def remove_cross_split_duplicates(
    splits: dict[str, SplitRows], config: DataConfig
) -> tuple[dict[str, SplitRows], list[Problem]]:
    """A pair present in two splits leaks; keep it only in the highest-priority split."""
    owner: dict[tuple[str, str], tuple[str, RawPair]] = {}
    problems: list[Problem] = []
    cleaned: dict[str, SplitRows] = {}
    for split in (s for s in SPLIT_PRIORITY if s in splits):
        rows = splits[split]
        kept = []
        for pair in rows.pairs:
            key = pair_key(pair, config.symmetric)
            if key in owner:
                other_split, other = owner[key]
                problems.append(
                    Problem(
                        rows.file,
                        pair.line,
                        "cross_split_duplicate",
                        f"same pair as {other_split} line {other.line}",
                        pair.raw,
                    )
                )
                continue
            owner[key] = (split, pair)
            kept.append(pair)
        cleaned[split] = SplitRows(rows.file, kept)
    return cleaned, problems


def problem_counts(problems: list[Problem]) -> dict[str, int]:
    """How many problems of each reason, reasons sorted: the data report's counts."""
    return dict(sorted(Counter(p.reason for p in problems).items()))


def describe_problems(problems: list[Problem], max_shown: int) -> str:
    """The problems counted by reason, then the first ``max_shown`` of them, one per line."""
    shown = "\n".join(f"  {p.describe()}" for p in problems[:max_shown])
    more = f"\n  ... and {len(problems) - max_shown} more" if len(problems) > max_shown else ""
    counts = ", ".join(f"{reason}: {n}" for reason, n in problem_counts(problems).items())
    return f"{len(problems)} invalid row(s) ({counts}):\n{shown}{more}"


def validation_error(problems: list[Problem], max_shown: int) -> DataValidationError:
    """One error that lists the first problems and counts all of them by reason."""
    return DataValidationError(
        f"{describe_problems(problems, max_shown)}\n"
        "Fix the data, or set prepare.on_invalid=quarantine to set these rows aside."
    )
