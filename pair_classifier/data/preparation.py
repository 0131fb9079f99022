"""From raw files to validated parquet splits and a data report."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from pair_classifier.config import DataConfig, PrepareConfig
from pair_classifier.constants import (
    LABEL,
    LABEL_NAME,
    QUARANTINE_FILE,
    SOURCE_LINE,
    SPLIT_SUFFIX,
    SPLITS,
    TEXT_A,
    TEXT_B,
)
from pair_classifier.data.reading import DataError, Problem, RawPair, read_pairs
from pair_classifier.data.validation import (
    SplitRows,
    check_rows,
    describe_problems,
    problem_counts,
    remove_cross_split_duplicates,
    validation_error,
)
from pair_classifier.io_utils import replace_dir_atomically

TokenCounter = Callable[[Sequence[str]], list[int]]
# The splits the classifier is fitted, chosen and calibrated on: each needs every class.
CLASSES_REQUIRED_IN = ("train", "val")
TRUNCATED_PAIRS_NAMED = 5  # the log names this many truncated pairs per split, then counts

logger = logging.getLogger(__name__)


def _to_frame(rows: SplitRows, config: DataConfig) -> pd.DataFrame:
    names = config.class_names
    label_names = [config.labels[p.raw_label] for p in rows.pairs]
    return pd.DataFrame(
        {
            TEXT_A: [p.text_a for p in rows.pairs],
            TEXT_B: [p.text_b for p in rows.pairs],
            LABEL: np.array([names.index(n) for n in label_names], dtype=np.int64),
            LABEL_NAME: label_names,
            SOURCE_LINE: np.array([p.line for p in rows.pairs], dtype=np.int64),
        }
    )


def _by_line(pairs: list[RawPair]) -> list[RawPair]:
    return sorted(pairs, key=lambda pair: pair.line)


def _split_validation(
    train: SplitRows, config: DataConfig, prepare: PrepareConfig
) -> tuple[SplitRows, SplitRows]:
    """A seeded, stratified validation split for data sets that ship without one."""
    labels = [config.labels[p.raw_label] for p in train.pairs]
    try:
        train_pairs, val_pairs = train_test_split(
            train.pairs,
            test_size=prepare.val_fraction,
            random_state=prepare.split_seed,
            stratify=labels,
        )
    except ValueError as error:  # too few pairs, or a class too rare to stratify
        counts = dict(Counter(labels))
        raise DataError(
            f"{train.file}: cannot carve a stratified validation split "
            f"(prepare.val_fraction={prepare.val_fraction}) out of {len(labels)} valid pairs "
            f"with class counts {counts}: {error}. Add pairs, or give data.files.val a file."
        ) from None
    return SplitRows(train.file, _by_line(train_pairs)), SplitRows(train.file, _by_line(val_pairs))


def _no_pair_left(file: str, split: str, problems: list[Problem], max_shown: int) -> DataError:
    """Why a split came out empty: its file's problems, counted and the first ones shown."""
    own = [problem for problem in problems if problem.file == file]
    why = describe_problems(own, max_shown) if own else "the file has no data rows"
    return DataError(f"{file}: no valid {split} pair left; {why}")


def _require_every_class(frame: pd.DataFrame, file: str, split: str, config: DataConfig) -> None:
    """The classifier is fitted on train and chosen and calibrated on val: a class missing from
    either would be silently unknown to it, and its columns of probabilities shifted."""
    counts = frame[LABEL_NAME].value_counts()
    missing = [name for name in config.class_names if name not in counts]
    if missing:
        raise DataError(
            f"{file}: the {split} split has no pair of class(es) {missing} (class counts "
            f"{counts.to_dict()}); every class in data.labels needs pairs in train and val"
        )


def _length_percentiles(lengths: np.ndarray, percentiles: list[int]) -> dict:
    return {f"p{p}": float(np.percentile(lengths, p)) for p in percentiles} | {
        "mean": float(lengths.mean())
    }


def _count_truncated(
    frame: pd.DataFrame,
    tokens_a: np.ndarray,
    tokens_b: np.ndarray,
    max_length: int,
    file: str,
    split: str,
) -> int:
    """How many pairs have a text longer than ``model.max_length`` tokens (the model reads only
    its first ``max_length``); the first few are logged by file and line so they can be found."""
    truncated = np.flatnonzero((tokens_a > max_length) | (tokens_b > max_length))
    if len(truncated):
        named = "; ".join(
            f"{file}:{frame[SOURCE_LINE].iloc[i]} (text_a {tokens_a[i]}, text_b {tokens_b[i]} "
            "tokens)"
            for i in truncated[:TRUNCATED_PAIRS_NAMED]
        )
        left = len(truncated) - TRUNCATED_PAIRS_NAMED
        more = f"; and {left} more" if left > 0 else ""
        logger.warning(
            "%s: %d %s pair(s) have a text longer than model.max_length=%d tokens; the model "
            "reads only the first %d: %s%s",
            file,
            len(truncated),
            split,
            max_length,
            max_length,
            named,
            more,
        )
    return len(truncated)


def build_report(
    frames: dict[str, pd.DataFrame],
    files: dict[str, str],
    rows_read: dict[str, int],
    problems: list[Problem],
    config: DataConfig,
    prepare: PrepareConfig,
    count_tokens: TokenCounter,
    max_length: int,
) -> dict[str, Any]:
    """Counts, label balance, token lengths and pairs longer than ``max_length`` tokens: the
    data report written as DVC metrics."""
    report: dict[str, Any] = {"dataset": config.name, "max_length": max_length, "splits": {}}
    for split, frame in frames.items():
        counts = frame[LABEL_NAME].value_counts()
        tokens_a = np.asarray(count_tokens(frame[TEXT_A].tolist()), dtype=np.int64)
        tokens_b = np.asarray(count_tokens(frame[TEXT_B].tolist()), dtype=np.int64)
        report["splits"][split] = {
            "rows_read": rows_read.get(split, 0),
            "pairs": len(frame),
            "label_fraction": {
                name: round(float(counts.get(name, 0)) / max(len(frame), 1), 4)
                for name in config.class_names
            },
            "tokens_per_text": _length_percentiles(
                np.concatenate([tokens_a, tokens_b]), prepare.length_percentiles
            ),
            "truncated_pairs": _count_truncated(
                frame, tokens_a, tokens_b, max_length, files[split], split
            ),
        }
    report["invalid_rows"] = {"total": len(problems), "by_reason": problem_counts(problems)}
    report["policy"] = prepare.on_invalid
    return report


def prepare_data(
    data_root: Path,
    out_dir: Path,
    config: DataConfig,
    prepare: PrepareConfig,
    count_tokens: TokenCounter,
    max_length: int,
) -> dict[str, Any]:
    """Read, validate and split the raw files; write splits and quarantine; return the report.

    ``count_tokens`` and ``max_length`` (the model's) count the pairs the model will truncate.
    The output folder is replaced only once everything succeeded, so a failure leaves the
    previous outputs as they were.
    """
    files = {split: getattr(config.files, split) for split in SPLITS}
    for split in ("train", "test"):
        if not files[split]:
            raise DataError(f"data.files.{split}: a {split} file is required")
    problems: list[Problem] = []
    checked: dict[str, SplitRows] = {}
    rows_read: dict[str, int] = {}
    for split, name in files.items():
        if not name:
            continue
        path = data_root / name
        result = read_pairs(path, config)
        rows_read[split] = len(result.pairs) + len(result.problems)
        rows, row_problems = check_rows(str(path), result.pairs, config)
        problems += result.problems + row_problems
        checked[split] = rows
    checked, cross_problems = remove_cross_split_duplicates(checked, config)
    problems += cross_problems
    if problems and prepare.on_invalid == "fail":
        raise validation_error(problems, prepare.max_problems_reported)
    for split, rows in checked.items():
        if not rows.pairs:
            raise _no_pair_left(rows.file, split, problems, prepare.max_problems_reported)
    if "val" not in checked:
        checked["train"], checked["val"] = _split_validation(checked["train"], config, prepare)
    frames = {split: _to_frame(checked[split], config) for split in SPLITS}
    for split in CLASSES_REQUIRED_IN:
        _require_every_class(frames[split], checked[split].file, split, config)
    files_read = {split: rows.file for split, rows in checked.items()}
    report = build_report(
        frames, files_read, rows_read, problems, config, prepare, count_tokens, max_length
    )

    def write(staging: Path) -> None:
        for split, frame in frames.items():
            frame.to_parquet(staging / f"{split}{SPLIT_SUFFIX}", index=False)
        with (staging / QUARANTINE_FILE).open("w", encoding="utf-8") as handle:
            for problem in problems:
                handle.write(json.dumps(problem.__dict__, ensure_ascii=False) + "\n")

    replace_dir_atomically(out_dir, write)
    if prepare.on_invalid == "quarantine":
        logger.info(_quarantine_summary(frames, problems, out_dir / QUARANTINE_FILE))
    return report


def _quarantine_summary(
    frames: dict[str, pd.DataFrame], problems: list[Problem], quarantine_file: Path
) -> str:
    """One line: rows kept per split, rows set aside per reason, and where they were put."""
    kept = ", ".join(f"{split} {len(frame)}" for split, frame in frames.items())
    reasons = ", ".join(f"{reason} {n}" for reason, n in problem_counts(problems).items())
    return (
        f"kept {sum(len(f) for f in frames.values())} pairs ({kept}); quarantined "
        f"{len(problems)} rows" + (f" ({reasons})" if reasons else "") + f" in {quarantine_file}"
    )


def load_split(prepared_dir: Path, split: str) -> pd.DataFrame:
    """One prepared split, as written by ``prepare_data``."""
    path = prepared_dir / f"{split}{SPLIT_SUFFIX}"
    if not path.is_file():
        raise DataError(f"{path}: not found; run the prepare stage first (dvc repro prepare)")
    return pd.read_parquet(path)
