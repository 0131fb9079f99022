"""The model registry on the tiny model and a temporary sqlite store: the champion rule, the
refusals, and the registered pyfunc predicting exactly what `pair-classifier predict` does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from helpers import composed, composed_params, pairs_frame
from mlflow.tracking import MlflowClient

from pair_classifier.config import ConfigError
from pair_classifier.errors import ArtifactError
from pair_classifier.export.interface import MODEL_CARD, TOKENIZER_SUBDIR, variant_file
from pair_classifier.export.onnx_predictor import OnnxPairPredictor
from pair_classifier.export.served import ServedModel, served_model
from pair_classifier.registry.register import (
    CHALLENGER,
    CHAMPION,
    DECISION_TAG,
    SPEED,
    RegistryError,
    decide,
    headline_metrics,
    register_served_model,
)
from pair_classifier.registry.settings import RegisterConfig
from pair_classifier.tracking import Lineage

VARIANT = "int8_static"
NAME = "pair-classifier"
LINEAGE = Lineage(
    git_commit="0123abcd",
    git_dirty=True,
    git_diff_hash="",
    data_md5="d474",
    params_md5="a11",
    dvc_experiment="tidy-dace",
)


def _config(**values: object) -> RegisterConfig:
    return composed("register", RegisterConfig, threads=1, **values)


def _write_project(root: Path, export_dir: Path, f1: float = 0.8, speed: float = 100.0) -> None:
    """The pipeline's files as register reads them: the tiny export as artifacts/onnx, its
    student graph copied under the served variant's name, and the benchmark's record."""
    onnx_dir = root / "artifacts/onnx"
    if not onnx_dir.exists():
        shutil.copytree(export_dir, onnx_dir)
        quantized = root / "artifacts/quantized"
        quantized.mkdir(parents=True)
        shutil.copy2(
            onnx_dir / variant_file("student"), quantized / variant_file("student", VARIANT)
        )
        shutil.copy2(onnx_dir / MODEL_CARD, quantized / MODEL_CARD)  # as quantize copies them
        shutil.copytree(onnx_dir / TOKENIZER_SUBDIR, quantized / TOKENIZER_SUBDIR)
        (root / "metrics").mkdir()
    name = f"onnx_{VARIANT}_student"
    benchmark = {
        "variants": {name: {"f1": f1, "accuracy": f1 - 0.1, SPEED: speed}},
        "speedup_vs_pytorch_fp32_teacher": {name: 2.5},
        "served": {"variant": VARIANT, "reason": "the only candidate"},
    }
    (root / "metrics/benchmark.json").write_text(json.dumps(benchmark))


def _served(root: Path) -> ServedModel:
    return served_model(
        root / "metrics/benchmark.json", root / "artifacts/onnx", root / "artifacts/quantized"
    )


def _register(root: Path, export_dir: Path, config: RegisterConfig, **figures: float) -> dict:
    _write_project(root, export_dir, **figures)
    served = _served(root)
    headline = headline_metrics(root / "metrics/benchmark.json", served)
    return register_served_model(served, headline, config, LINEAGE)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh sqlite tracking and registry store; artifacts land under tmp_path too."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # set_registry_uri also exports MLFLOW_REGISTRY_URI: set through monkeypatch, it is removed
    # afterwards, so no later test registers into this store
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("register-test")
    yield tmp_path
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def test_register_section_composes_with_its_rules() -> None:
    config = composed("register", RegisterConfig)
    assert config.model_name == NAME
    with pytest.raises(ConfigError, match=r"register.metric: expected one of \['f1', 'accuracy'\]"):
        _config(metric="loss")
    with pytest.raises(ConfigError, match=r"register.min_speed_kept: expected a share in \[0, 1\]"):
        _config(min_speed_kept=1.5)


@pytest.mark.parametrize(
    ("new", "alias", "reason"),
    [
        ({"f1": 0.9, SPEED: 95.0}, CHAMPION, "f1 0.9000 beats the champion (version 3)'s 0.8000"),
        ({"f1": 0.8, SPEED: 200.0}, CHALLENGER, "f1 0.8000 does not beat"),
        ({"f1": 0.7, SPEED: 200.0}, CHALLENGER, "does not beat the champion (version 3)'s 0.8000"),
        ({"f1": 0.9, SPEED: 80.0}, CHALLENGER, "keeps only 80% of its speed"),
    ],
)
def test_champion_rule(new: dict, alias: str, reason: str) -> None:
    decision = decide(new, {"f1": 0.8, SPEED: 100.0}, "3", _config(min_speed_kept=0.9))
    assert decision.alias == alias
    assert reason in decision.reason
    assert decide(new, None, None, _config()).alias == CHAMPION


def test_a_missing_file_is_named_with_the_stage_that_makes_it(
    tmp_path: Path, export_dir: Path
) -> None:
    _write_project(tmp_path, export_dir)
    graph = tmp_path / "artifacts/quantized" / variant_file("student", VARIANT)
    graph.unlink()
    with pytest.raises(ArtifactError, match=f"{graph}: not found; the quantize stage makes it"):
        _served(tmp_path)
    shutil.rmtree(tmp_path / "artifacts/onnx" / TOKENIZER_SUBDIR)
    (tmp_path / "metrics/benchmark.json").unlink()
    with pytest.raises(ArtifactError, match="benchmark.json: not found; the benchmark stage"):
        headline_metrics(
            tmp_path / "metrics/benchmark.json", ServedModel(VARIANT, graph, graph, graph)
        )


@pytest.mark.slow
def test_first_is_champion_better_is_promoted_worse_is_challenger(
    store: Path, export_dir: Path
) -> None:
    config = _config(min_speed_kept=0.9)
    client = MlflowClient()
    first = _register(store, export_dir, config, f1=0.8, speed=100.0)
    assert (first["version"], first["alias"]) == (1, CHAMPION)
    assert first["champion_decision"] == "no champion yet"
    better = _register(store, export_dir, config, f1=0.85, speed=95.0)
    assert (better["version"], better["alias"]) == (2, CHAMPION)
    worse = _register(store, export_dir, config, f1=0.84, speed=200.0)
    assert (worse["version"], worse["alias"]) == (3, CHALLENGER)
    slower = _register(store, export_dir, config, f1=0.9, speed=50.0)
    assert (slower["version"], slower["alias"]) == (4, CHALLENGER)

    model = client.get_registered_model(NAME)
    assert model.aliases == {CHAMPION: 2, CHALLENGER: 4}
    tags = client.get_model_version(NAME, "3").tags
    assert "does not beat the champion (version 2)'s 0.8500" in tags[DECISION_TAG]
    assert "keeps only 53% of its speed" in client.get_model_version(NAME, "4").tags[DECISION_TAG]
    assert tags["git.commit"] == "0123abcd"
    assert tags["git.dirty"] == "true"
    assert tags["data.md5"] == "d474"
    assert tags["dvc.experiment"] == "tidy-dace"
    assert float(tags["metric.f1"]) == 0.84
    assert float(tags["metric.speedup_vs_pytorch_fp32_teacher"]) == 2.5
    assert tags["served_variant"] == VARIANT


@pytest.mark.slow
def test_a_champion_of_other_classes_is_refused(store: Path, export_dir: Path) -> None:
    _register(store, export_dir, _config())
    card_file = store / "artifacts/onnx" / MODEL_CARD
    card = json.loads(card_file.read_text())
    ours = card["class_names"]
    card["class_names"] = ["negative", "positive"]
    card_file.write_text(json.dumps(card))
    with pytest.raises(RegistryError) as refused:
        _register(store, export_dir, _config(), f1=0.99)
    assert str(ours) in str(refused.value)
    assert "['negative', 'positive']" in str(refused.value)
    assert "a different task" in str(refused.value)
    assert len(MlflowClient().search_model_versions(f"name = '{NAME}'")) == 1


@pytest.mark.slow
def test_the_champion_pyfunc_predicts_what_predict_does(store: Path, export_dir: Path) -> None:
    _register(store, export_dir, _config(batch_size=4))
    loaded = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    pairs = pairs_frame(23, seed=7)[["text_a", "text_b"]]
    graph = store / "artifacts/quantized" / variant_file("student", VARIANT)
    expected = OnnxPairPredictor(graph, batch_size=8, threads=1).predict(pairs)
    got = loaded.predict(pairs)
    got = got[list(expected.columns)]  # the pyfunc adds truncated, model_name, model_version
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))
    assert list(got.columns)[2] == "predicted_label"
    signature = loaded.metadata.get_input_schema().input_names()
    assert signature == ["text_a", "text_b"]


@pytest.mark.slow
def test_register_stage_writes_its_record(in_tmp_dir: Path, export_dir: Path) -> None:
    from stages.register import main

    params = composed_params() | {
        "tracking": composed_params()["tracking"] | {"log_system_metrics": False}
    }
    (in_tmp_dir / "params.yaml").write_text(yaml.safe_dump(params))
    _write_project(in_tmp_dir, export_dir)
    main()
    record = json.loads((in_tmp_dir / "metrics/register.json").read_text())
    assert (record["version"], record["alias"]) == (1, CHAMPION)
    main()
    record = json.loads((in_tmp_dir / "metrics/register.json").read_text())
    assert (record["version"], record["alias"]) == (2, CHALLENGER)  # the same f1 does not beat it
    client = MlflowClient(f"sqlite:///{in_tmp_dir / 'mlflow.db'}")
    assert client.get_registered_model(NAME).aliases == {CHAMPION: 1, CHALLENGER: 2}
    mlflow.set_tracking_uri(None)
