"""Shared fixtures: small pair files in MRPC's on-disk format, the tiny BERT, configs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import (
    composed,
    different_or_same,
    make_tiny_bert,
    pairs_frame,
    synthetic_pairs,
    tiny_model,
)

from pair_classifier.classifier import fit_classifier, pair_feature_matrix
from pair_classifier.config import (
    ClassifierConfig,
    DataConfig,
    ExportConfig,
    ModelConfig,
    PrepareConfig,
)
from pair_classifier.constants import BI_ENCODER_SUBDIR, CLASSIFIER_SUBDIR


@pytest.fixture(autouse=True)
def _quiet_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No analytics, no hub access, no stray tracking server from the developer's shell."""
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture
def mrpc_config() -> DataConfig:
    return composed("data", DataConfig, "data=mrpc")


@pytest.fixture
def prepare_config() -> PrepareConfig:
    return composed("prepare", PrepareConfig, on_invalid="quarantine")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [text for _, a, b in synthetic_pairs(400, seed=1) for text in (a, b)]
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), texts)


@pytest.fixture
def tiny_model_config(tiny_bert_dir: Path) -> ModelConfig:
    return tiny_model(tiny_bert_dir, dropout=0.0)


@pytest.fixture
def in_tmp_dir(tmp_path: Path) -> Path:
    """Run the test from an empty folder (stages use paths relative to the project root)."""
    previous = Path.cwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(previous)


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    """Tiny models gain nothing from threads; one keeps tests quick on a busy machine."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    """A complete model folder (bi-encoder + SVM) on the tiny BERT, classes different/same."""
    from pair_classifier.training import build_bi_encoder

    data = different_or_same()
    model = tiny_model(tiny_bert_dir)
    torch.manual_seed(0)
    bi_encoder = build_bi_encoder(model, data).eval()
    train, val = pairs_frame(60, 1), pairs_frame(30, 2)
    classifier = fit_classifier(
        pair_feature_matrix(bi_encoder, train, 16),
        train["label"].to_numpy(),
        pair_feature_matrix(bi_encoder, val, 16),
        val["label"].to_numpy(),
        composed("classifier", ClassifierConfig, c_grid=[0.1]),
        data.class_names,
        data.positive_label,
        seed=0,
    )
    directory = tmp_path_factory.mktemp("model")
    bi_encoder.save(directory / BI_ENCODER_SUBDIR)
    classifier.save(directory / CLASSIFIER_SUBDIR)
    return directory


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model exported once per session as both teacher and student (the deployed
    one); a test that damages or adds files works on a copy."""
    from pair_classifier.export.bundle import export_bundle

    config = composed("export", ExportConfig, threads=1, parity_batch_size=8)
    directory = tmp_path_factory.mktemp("onnx")
    metrics = export_bundle(
        {"teacher": tiny_model_dir, "student": tiny_model_dir},
        directory,
        pairs_frame(24, 4),
        config,
    )
    for name in ("teacher", "student", "student_optimized"):
        assert metrics[name]["prediction_agreement"] == 1.0
        assert metrics[name]["max_abs_score_diff"] <= config.max_abs_score_diff
    return directory


@pytest.fixture(scope="session")
def team_services() -> Iterator[Any]:
    """PostgreSQL, S3 and the MLflow server on free loopback ports, started once for the
    session and stopped by PID at its end (tests/services/team_services.py)."""
    from services.team_services import running_services

    with running_services() as config:
        yield config
