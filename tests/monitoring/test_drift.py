"""`pair-classifier drift` on MRPC: the test pairs against the training pairs show no drift;
text shifted in ways made from the data itself (shuffled words, another length profile, an
unknown script) drifts on the checks that see the shift and not on those that cannot."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import composed, composed_params

from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.monitoring.checks import DRIFT, NO_DRIFT
from pair_classifier.monitoring.cli import DRIFT_EXIT_CODE
from pair_classifier.monitoring.drift import DriftInputs, run_drift
from pair_classifier.monitoring.settings import DriftConfig

CLI = Path(sys.executable).parent / "pair-classifier"
WINDOW_PAIRS = 600  # MRPC test pairs in a window
REFERENCE_PAIRS = 600  # training pairs sampled for the sentence vectors
CHECKS = (
    "token_lengths",
    "unknown_tokens",
    "unseen_tokens",
    "sentence_vectors",
    "label_mix",
    "confidence",
)
RUNIC, RUNIC_LETTERS = 0x16A0, 75  # a script the tokenizer has no pieces for

pytestmark = pytest.mark.slow  # a real sentence encoder scores each window


def settings() -> DriftConfig:
    return composed("drift", DriftConfig, max_pairs=WINDOW_PAIRS, reference_pairs=REFERENCE_PAIRS)


def write_pairs(frame: pd.DataFrame, path: Path) -> Path:
    frame[[TEXT_A, TEXT_B]].to_csv(path, index=False)
    return path


def verdicts(splits: dict, graph: Path, window: Path) -> dict[str, str]:
    train, val = (window.parent / f"{name}.csv" for name in ("train", "val"))
    write_pairs(splits["train"], train)
    write_pairs(splits["val"].head(WINDOW_PAIRS), val)
    result = run_drift(DriftInputs(window, train, val, graph, graph), settings())
    assert [check.name for check in result.checks] == list(CHECKS)
    return {check.name: check.verdict for check in result.checks}


def transformed(frame: pd.DataFrame, change) -> pd.DataFrame:
    return frame.assign(**{side: frame[side].map(change) for side in (TEXT_A, TEXT_B)})


def shuffled_words(seed: int):
    shuffler = random.Random(seed)

    def change(text: str) -> str:
        words = text.split()
        shuffler.shuffle(words)
        return " ".join(words)

    return change


def unknown_script(text: str) -> str:
    """Each letter written in runes: the same words and punctuation, no piece the tokenizer
    knows (a word of them is one [UNK])."""
    return "".join(chr(RUNIC + ord(c) % RUNIC_LETTERS) if c.isalpha() else c for c in text)


def test_mrpc_test_pairs_against_training_show_no_drift(
    mrpc_splits: dict, mrpc_graph: Path, tmp_path: Path
) -> None:
    window = write_pairs(mrpc_splits["test"], tmp_path / "test.csv")
    assert verdicts(mrpc_splits, mrpc_graph, window) == {name: NO_DRIFT for name in CHECKS}


def test_shuffled_words_drift_in_meaning_not_in_length_or_vocabulary(
    mrpc_splits: dict, mrpc_graph: Path, tmp_path: Path
) -> None:
    shifted = transformed(mrpc_splits["test"], shuffled_words(seed=0))
    found = verdicts(mrpc_splits, mrpc_graph, write_pairs(shifted, tmp_path / "shuffled.csv"))
    assert found["sentence_vectors"] == DRIFT
    # the same words: the same token counts and pieces
    for name in ("token_lengths", "unknown_tokens", "unseen_tokens"):
        assert found[name] == NO_DRIFT, name


def test_another_length_profile_drifts_in_length_not_in_vocabulary(
    mrpc_splits: dict, mrpc_graph: Path, tmp_path: Path
) -> None:
    """Each text followed by the next pair's first text: twice as long, the same words."""
    test = mrpc_splits["test"]
    following = list(test[TEXT_A].iloc[1:]) + [test[TEXT_A].iloc[0]]
    longer = test.assign(
        **{
            side: [f"{text} {extra}" for text, extra in zip(test[side], following)]
            for side in (TEXT_A, TEXT_B)
        }
    )
    found = verdicts(mrpc_splits, mrpc_graph, write_pairs(longer, tmp_path / "longer.csv"))
    assert found["token_lengths"] == DRIFT
    for name in ("unknown_tokens", "unseen_tokens"):
        assert found[name] == NO_DRIFT, name


def test_an_unknown_script_drifts_in_vocabulary(
    mrpc_splits: dict, mrpc_graph: Path, tmp_path: Path
) -> None:
    shifted = transformed(mrpc_splits["test"], unknown_script)
    found = verdicts(mrpc_splits, mrpc_graph, write_pairs(shifted, tmp_path / "script.csv"))
    assert found["unknown_tokens"] == DRIFT


def drift_command(
    tmp_path: Path, window: Path, graph: Path, splits: dict
) -> subprocess.CompletedProcess:
    params = composed_params()
    params["drift"] |= {"max_pairs": WINDOW_PAIRS, "reference_pairs": REFERENCE_PAIRS}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return subprocess.run(
        [str(CLI), "drift", str(window), "--model", str(graph)]
        + ["--reference", str(write_pairs(splits["train"], tmp_path / "train.csv"))]
        + [
            "--prediction-reference",
            str(write_pairs(splits["val"].head(WINDOW_PAIRS), tmp_path / "val.csv")),
        ]
        + ["--out-dir", str(tmp_path / "report"), "--params-file", str(tmp_path / "params.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_command_writes_the_report_and_exits_1_on_drift_2_on_a_bad_file(
    mrpc_splits: dict, mrpc_graph: Path, tmp_path: Path
) -> None:
    shifted = transformed(mrpc_splits["test"], unknown_script)
    window = write_pairs(shifted, tmp_path / "script.csv")
    done = drift_command(tmp_path, window, mrpc_graph, mrpc_splits)
    assert done.returncode == DRIFT_EXIT_CODE, done.stderr
    record = json.loads((tmp_path / "report" / "drift.json").read_text(encoding="utf-8"))
    assert record["verdict"] == DRIFT
    assert set(record["checks"]) == set(CHECKS)
    for check in record["checks"].values():
        assert {"score", "threshold", "verdict"} <= set(check)
    page = (tmp_path / "report" / "drift.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 3 and "unknown_tokens" in page

    (tmp_path / "bad.csv").write_text("text_a,text_b\nonly one field\n", encoding="utf-8")
    done = drift_command(tmp_path, tmp_path / "bad.csv", mrpc_graph, mrpc_splits)
    assert done.returncode == 2
    assert "bad.csv:2" in done.stderr and "expected 2 fields" in done.stderr
