"""Shared fixtures: small pair files in MRPC's on-disk format, the tiny BERT, configs."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from tiny_model import make_tiny_bert

from pair_classifier.classifier import fit_classifier, pair_feature_matrix
from pair_classifier.config import (
    ClassifierConfig,
    DataConfig,
    ModelConfig,
    PrepareConfig,
    from_mapping,
)
from pair_classifier.constants import BI_ENCODER_SUBDIR, CLASSIFIER_SUBDIR

REPO_ROOT = Path(__file__).resolve().parents[1]
MRPC_HEADER = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"

# Small synthetic "paraphrase" pairs: label 1 when the second text restates the first.
SUBJECTS = [
    "the company",
    "the senator",
    "shares",
    "the court",
    "police",
    "the report",
    "officials",
]
VERBS = ["said", "reported", "announced", "denied", "confirmed", "expected", "rejected"]
OBJECTS = [
    "profits rose",
    "the deal",
    "a new plan",
    "the claims",
    "job cuts",
    "the results",
    "a delay",
]


@pytest.fixture(autouse=True)
def _quiet_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No analytics, no hub access, no stray tracking server from the developer's shell."""
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def synthetic_pairs(count: int, seed: int) -> list[tuple[int, str, str]]:
    """Deterministic (label, text_a, text_b) rows, about two thirds positive like MRPC."""
    rows = []
    for i in range(count):
        k = i * 7 + seed * 13
        subject, verb, obj = SUBJECTS[k % 7], VERBS[(k // 7) % 7], OBJECTS[(k // 49) % 7]
        text_a = f'{subject} {verb} that {obj} on day {i} , "sources" said .'
        positive = i % 3 != 0
        if positive:
            text_b = f"on day {i} , {subject} {verb} that {obj} ."
        else:
            other = SUBJECTS[(k + 3) % 7], VERBS[(k + 2) % 7], OBJECTS[(k + 5) % 7]
            text_b = f"{other[0]} {other[1]} {other[2]} on day {i + 1} ."
        rows.append((int(positive), text_a, text_b))
    return rows


def write_mrpc_file(
    path: Path, rows: list[tuple[int, str, str]], extra_lines: list[str] = ()
) -> Path:
    """A file exactly like MRPC's: UTF-8 BOM, CRLF, tab-separated, quotes inside fields."""
    lines = [MRPC_HEADER]
    lines += [f"{label}\t{100 + i}\t{200 + i}\t{a}\t{b}" for i, (label, a, b) in enumerate(rows)]
    lines += list(extra_lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n")
    return path


def write_mrpc_dataset(directory: Path, sizes: dict[str, int]) -> Path:
    """train/val/test files with the MRPC file names, disjoint pairs per split."""
    names = {"train": "msr-para-train.tsv", "val": "msr-para-val.tsv", "test": "msr-para-test.tsv"}
    offset = 0
    for split, size in sizes.items():
        rows = synthetic_pairs(size + offset, seed=1)[offset:]
        write_mrpc_file(directory / names[split], rows)
        offset += size
    return directory


@pytest.fixture
def mrpc_config() -> DataConfig:
    raw = yaml.safe_load((REPO_ROOT / "configs/data/mrpc.yaml").read_text(encoding="utf-8"))
    return from_mapping(DataConfig, raw, "data")


@pytest.fixture
def prepare_config() -> PrepareConfig:
    return PrepareConfig(on_invalid="quarantine")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [text for _, a, b in synthetic_pairs(400, seed=1) for text in (a, b)]
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), texts)


@pytest.fixture
def tiny_model_config(tiny_bert_dir: Path) -> ModelConfig:
    return ModelConfig(name="tiny", pretrained=str(tiny_bert_dir), max_length=32, dropout=0.0)


def word_count(texts: list[str]) -> list[int]:
    return [len(text.split()) for text in texts]


@pytest.fixture
def in_tmp_dir(tmp_path: Path) -> Path:
    """Run the test from an empty folder (stages use paths relative to the project root)."""
    previous = Path.cwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(previous)


def pairs_frame(count: int, seed: int) -> pd.DataFrame:
    """Synthetic pairs as a prepared split looks (text_a, text_b, label)."""
    return pd.DataFrame(synthetic_pairs(count, seed), columns=["label", "text_a", "text_b"])


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    """Tiny models gain nothing from threads; one keeps tests quick on a busy machine."""
    torch.set_num_threads(1)


def different_or_same(symmetric: bool = False) -> DataConfig:
    """A two-class data config (different/same) for models built on synthetic pairs."""
    return DataConfig(
        name="t",
        dir="d",
        format="tsv",
        files={"train": "a", "test": "b"},
        columns={"text_a": "a", "text_b": "b", "label": "l"},
        labels={"0": "different", "1": "same"},
        positive_label="same",
        symmetric=symmetric,
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    """A complete model folder (bi-encoder + SVM) on the tiny BERT, classes different/same."""
    from pair_classifier.training import build_bi_encoder

    data = different_or_same()
    model = ModelConfig(name="tiny", pretrained=str(tiny_bert_dir), max_length=32)
    torch.manual_seed(0)
    bi_encoder = build_bi_encoder(model, data).eval()
    train, val = pairs_frame(60, 1), pairs_frame(30, 2)
    classifier = fit_classifier(
        pair_feature_matrix(bi_encoder, train, 16),
        train["label"].to_numpy(),
        pair_feature_matrix(bi_encoder, val, 16),
        val["label"].to_numpy(),
        ClassifierConfig(c_grid=[0.1]),
        data.class_names,
        data.positive_label,
        seed=0,
    )
    directory = tmp_path_factory.mktemp("model")
    bi_encoder.save(directory / BI_ENCODER_SUBDIR)
    classifier.save(directory / CLASSIFIER_SUBDIR)
    return directory
