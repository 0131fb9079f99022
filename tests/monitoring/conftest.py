"""What the drift tests compare: MRPC's real pairs (the prepared splits when the pipeline made
them, else the raw files of data/mrpc or the team drive, as a fresh clone in CI has them) and a
real sentence encoder's exported graph."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import REPO_ROOT, composed

from pair_classifier.classifier import fit_classifier, pair_feature_matrix
from pair_classifier.config import ClassifierConfig, DataConfig, ExportConfig, ModelConfig
from pair_classifier.constants import (
    BI_ENCODER_SUBDIR,
    CLASSIFIER_SUBDIR,
    LABEL,
    PREPARED_DIR,
    SPLIT_SUFFIX,
    SPLITS,
    TEXT_A,
    TEXT_B,
)
from pair_classifier.data.reading import read_pairs
from pair_classifier.export.interface import MODEL_CARD, variant_file

FIT_PAIRS = 200  # MRPC pairs the SVM of an on-the-spot export is fitted and tuned on
ONNX_DIR = Path("artifacts/onnx")  # the pipeline's export, when it ran here
PARITY_PAIRS = 24


def _raw_splits(config: DataConfig) -> dict[str, pd.DataFrame] | None:
    for folder in (REPO_ROOT / config.dir, REPO_ROOT / (config.shared_dir or "")):
        paths = {split: folder / getattr(config.files, split) for split in SPLITS}
        if all(path.is_file() for path in paths.values()):
            frames = {}
            for split, path in paths.items():
                pairs = read_pairs(path, config).pairs
                frames[split] = pd.DataFrame(
                    {
                        TEXT_A: [pair.text_a for pair in pairs],
                        TEXT_B: [pair.text_b for pair in pairs],
                        LABEL: [int(pair.raw_label) for pair in pairs],
                    }
                )
            return frames
    return None


@pytest.fixture(scope="session")
def mrpc_splits() -> dict[str, pd.DataFrame]:
    """MRPC's train, val and test pairs (text_a, text_b, label)."""
    prepared = {split: REPO_ROOT / PREPARED_DIR / f"{split}{SPLIT_SUFFIX}" for split in SPLITS}
    if all(path.is_file() for path in prepared.values()):
        return {
            split: pd.read_parquet(path)[[TEXT_A, TEXT_B, LABEL]]
            for split, path in prepared.items()
        }
    frames = _raw_splits(composed("data", DataConfig, "data=mrpc"))
    if frames is None:
        pytest.skip("no MRPC data: neither artifacts/prepared, data/mrpc nor the team drive")
    return frames


@pytest.fixture(scope="session")
def mrpc_graph(tmp_path_factory: pytest.TempPathFactory, mrpc_splits: dict) -> Path:
    """A real sentence encoder's exported student graph: the pipeline's own when it was built
    here, else one exported on the spot from the pretrained MiniLM of the team drive's cache
    (offline), its SVM fitted on MRPC training pairs. A random tiny BERT would not do: its
    mean-pooled vectors hardly change when a text's words are shuffled."""
    from pair_classifier.export.bundle import export_bundle
    from pair_classifier.training import build_bi_encoder

    built = REPO_ROOT / ONNX_DIR / variant_file("student")
    if built.is_file() and (REPO_ROOT / ONNX_DIR / MODEL_CARD).is_file():
        return built
    model = composed("model", ModelConfig)
    if model.hf_cache is None or not (REPO_ROOT / model.hf_cache).is_dir():
        pytest.skip(f"no exported model (artifacts/onnx) and no pretrained cache {model.hf_cache}")
    model = composed("model", ModelConfig, hf_cache=str(REPO_ROOT / model.hf_cache))
    data = composed("data", DataConfig, "data=mrpc")
    torch.manual_seed(0)
    bi_encoder = build_bi_encoder(model, data).eval()
    train, val = mrpc_splits["train"].head(FIT_PAIRS), mrpc_splits["val"].head(FIT_PAIRS)
    classifier = fit_classifier(
        pair_feature_matrix(bi_encoder, train, 32),
        train[LABEL].to_numpy(),
        pair_feature_matrix(bi_encoder, val, 32),
        val[LABEL].to_numpy(),
        composed("classifier", ClassifierConfig, c_grid=[1.0]),
        data.class_names,
        data.positive_label,
        seed=0,
    )
    model_dir = tmp_path_factory.mktemp("mrpc-model")
    bi_encoder.save(model_dir / BI_ENCODER_SUBDIR)
    classifier.save(model_dir / CLASSIFIER_SUBDIR)
    out = tmp_path_factory.mktemp("mrpc-onnx")
    export_bundle(
        {"teacher": model_dir, "student": model_dir},
        out,
        mrpc_splits["val"].head(PARITY_PAIRS),
        composed("export", ExportConfig, threads=1, parity_batch_size=8),
    )
    return out / variant_file("student")
