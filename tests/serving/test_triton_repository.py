"""The Triton model repositories the triton-repo stage writes: generated from the tiny export,
every config parsed against Triton's schema, the GPU ensembles consistent step by step, and
each kind of inconsistency caught. No server here (test_triton_server.py starts one)."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import REPO_ROOT, composed, pairs_frame

from pair_classifier.config import ConfigError
from pair_classifier.errors import ArtifactError
from pair_classifier.export.interface import MODEL_CARD, TOKENIZER_SUBDIR, variant_file
from pair_classifier.export.onnx_predictor import OnnxPairPredictor
from pair_classifier.export.runtime import onnx_runner
from pair_classifier.export.served import ServedModel
from pair_classifier.serving.requests import BadRequest
from pair_classifier.serving.settings import ServingConfig
from pair_classifier.serving.triton_backend import (
    bucketed_inputs,
    labels,
    request_pairs,
    split_rows,
)
from pair_classifier.serving.triton_checks import check_repository
from pair_classifier.serving.triton_model_config import (
    CONFIG_FILE,
    TritonConfigError,
    read_config,
    tensor_specs,
)
from pair_classifier.serving.triton_repository import (
    MANIFEST,
    build_repository,
    model_names,
    registered_model,
)
from pair_classifier.serving.triton_settings import CPU_REPOSITORY, GPU_REPOSITORY, TritonConfig

VERSION = 3  # not 1, so a folder named by default would not pass
REGISTERED = {"model_name": "pair-classifier", "version": VERSION}
# Locked in both environments: the server must score with what `predict` scores with.
SCORING_PACKAGES = ("onnxruntime", "tokenizers")


def _served(export_dir: Path) -> ServedModel:
    return ServedModel(
        "fp32",
        export_dir / variant_file("student"),
        export_dir / MODEL_CARD,
        export_dir / TOKENIZER_SUBDIR,
    )


def _build(export_dir: Path, target: Path, trt_engine: Path | None = None, **triton) -> dict:
    target.mkdir()
    settings = composed("triton", TritonConfig, **triton)
    max_batch_pairs = composed("serving", ServingConfig).max_batch_pairs
    graph = export_dir / variant_file("student")
    return build_repository(
        _served(export_dir), REGISTERED, settings, max_batch_pairs, target, graph, trt_engine
    )


@pytest.fixture(scope="module")
def repository(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("triton") / "repo"
    _build(export_dir, target)
    return target


def test_the_cpu_model_serves_the_graph_in_the_registered_version(repository: Path) -> None:
    settings = composed("triton", TritonConfig)
    manifest = json.loads((repository / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["version"] == VERSION
    assert manifest["checked_models"]["cpu"] == [settings.model_name]
    config = read_config(repository / CPU_REPOSITORY / settings.model_name / CONFIG_FILE)
    assert list(config.version_policy.specific.versions) == [VERSION]
    assert config.backend == "python"
    assert config.max_batch_size == settings.batching.max_batch_size
    assert list(config.dynamic_batching.preferred_batch_size) == (
        settings.batching.preferred_batch_sizes
    )
    assert config.instance_group[0].count == settings.instances.count
    assert {spec.data_type for spec in tensor_specs(config.input).values()} == {"TYPE_STRING"}
    assert set(tensor_specs(config.output)) == {"LABEL", "PROBABILITIES", "TRUNCATED"}
    version_dir = repository / CPU_REPOSITORY / settings.model_name / str(VERSION)
    # what OnnxPairPredictor reads: the graph with its card and tokenizer beside it
    predictor = OnnxPairPredictor(version_dir / config.parameters["graph"].string_value, 8)
    assert predictor.class_names == json.loads(config.parameters["class_names"].string_value)
    assert "pair_classifier.serving.triton_backend" in (version_dir / "model.py").read_text()


def test_the_gpu_ensemble_chains_tokenizer_graph_and_label(repository: Path) -> None:
    names = model_names(composed("triton", TritonConfig).model_name)
    gpu = repository / GPU_REPOSITORY
    assert check_repository(gpu) == sorted(
        names[role] for role in ("gpu", "tokenizer", "onnx", "label")
    )
    ensemble = read_config(gpu / names["gpu"] / CONFIG_FILE)
    assert [step.model_name for step in ensemble.ensemble_scheduling.step] == [
        names["tokenizer"],
        names["onnx"],
        names["label"],
    ]
    onnx_model = read_config(gpu / names["onnx"] / CONFIG_FILE)
    assert onnx_model.backend == "onnxruntime"
    assert onnx_model.instance_group[0].kind == 1  # KIND_GPU: the CUDA execution provider
    assert (gpu / names["onnx"] / str(VERSION) / "model.onnx").is_file()
    assert not (gpu / names["gpu_trt"]).exists()  # no TensorRT plan was given


def test_a_tensorrt_plan_gets_its_own_ensemble(export_dir: Path, tmp_path: Path) -> None:
    plan = tmp_path / "student.fp16.plan"
    plan.write_bytes(b"serialised engine bytes")  # never loaded here: only placed and named
    manifest = _build(export_dir, tmp_path / "repo", trt_engine=plan)
    names = model_names(composed("triton", TritonConfig).model_name)
    assert manifest["gpu"]["ensembles"] == [names["gpu"], names["gpu_trt"]]
    trt = read_config(tmp_path / "repo" / GPU_REPOSITORY / names["trt"] / CONFIG_FILE)
    assert trt.platform == "tensorrt_plan"
    ensemble = read_config(tmp_path / "repo" / GPU_REPOSITORY / names["gpu_trt"] / CONFIG_FILE)
    assert ensemble.ensemble_scheduling.step[1].model_name == names["trt"]


def _edit_config(repository: Path, model: str, old: str, new: str) -> None:
    path = repository / model / CONFIG_FILE
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize(
    ("role", "old", "new", "problem"),
    [
        # the graph's ids are int64: a config saying int32 would make Triton refuse them
        ("onnx", "TYPE_INT64", "TYPE_INT32", "data type TYPE_INT64 where TYPE_INT32"),
        # the label step reads a tensor no step writes
        ("gpu", 'value: "PROBABILITIES"', 'value: "PROBS"', "no earlier step"),
        # an output the ensemble promises but no step makes
        ("gpu", 'name: "LABEL"', 'name: "CLASS"', "output CLASS is made by no step"),
        # a field Triton's schema does not have
        ("label", 'backend: "python"', 'backend: "python"\nbackends: "x"', "not a Triton"),
        # a version nobody generated
        ("tokenizer", "versions: 3", "versions: 4", "lacks"),
    ],
)
def test_an_inconsistent_gpu_repository_is_refused(
    repository: Path, tmp_path: Path, role: str, old: str, new: str, problem: str
) -> None:
    copy = shutil.copytree(repository / GPU_REPOSITORY, tmp_path / "gpu")
    _edit_config(copy, model_names(composed("triton", TritonConfig).model_name)[role], old, new)
    with pytest.raises(TritonConfigError, match=problem):
        check_repository(copy)


def test_a_request_limit_over_the_batch_is_refused(export_dir: Path, tmp_path: Path) -> None:
    batching = {"max_batch_size": 16, "preferred_batch_sizes": [8], "max_queue_delay_us": 0}
    with pytest.raises(ConfigError, match="serving.max_batch_pairs"):
        _build(export_dir, tmp_path / "repo", batching=batching)


def test_preferred_batch_sizes_must_fit_the_batch() -> None:
    batching = {"max_batch_size": 16, "preferred_batch_sizes": [32], "max_queue_delay_us": 0}
    with pytest.raises(ConfigError, match="triton.batching.preferred_batch_sizes"):
        composed("triton", TritonConfig, batching=batching)


def test_the_registered_version_must_be_recorded(tmp_path: Path) -> None:
    record = tmp_path / "register.json"
    with pytest.raises(ArtifactError, match="register stage writes it"):
        registered_model(record)
    record.write_text(json.dumps({"model_name": "pair-classifier", "version": "1"}))
    with pytest.raises(ArtifactError, match="no registered version"):
        registered_model(record)
    record.write_text(json.dumps(REGISTERED))
    assert registered_model(record)["version"] == VERSION


def test_requests_are_decoded_and_checked_as_every_server_checks_them() -> None:
    texts = np.array([["a cat".encode()], ["ein Bär".encode()]], dtype=object)
    pairs = request_pairs(texts, texts[::-1], max_batch_pairs=2)
    assert list(pairs["text_b"]) == ["ein Bär", "a cat"]
    with pytest.raises(BadRequest, match="row 1: expected UTF-8"):
        request_pairs(texts, np.array([[b"ok"], [b"caf\xff"]], dtype=object), 2)
    with pytest.raises(BadRequest, match="over the limit of 1"):
        request_pairs(texts, texts, max_batch_pairs=1)


def test_answers_are_cut_back_into_requests() -> None:
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=np.float32)
    assert labels(probabilities, ["no", "yes"]).ravel().tolist() == [b"no", b"yes", b"no"]
    blocks = split_rows(probabilities, [1, 2])
    assert [len(block) for block in blocks] == [1, 2]
    np.testing.assert_array_equal(np.concatenate(blocks), probabilities)


def test_bucketed_token_rows_score_as_unpadded_ones(export_dir: Path) -> None:
    """The GPU tokenizer pads widths to a bucket so requests batch together; the padding is
    masked, so the graph's answers do not move."""
    predictor = OnnxPairPredictor(export_dir / variant_file("student"), 8)
    pairs = pairs_frame(6, 7)[["text_a", "text_b"]]
    bucket = composed("triton", TritonConfig).gpu.sequence_bucket
    padded = bucketed_inputs(predictor.tokenize, pairs, bucket)
    assert all(array.shape[1] % bucket == 0 for array in padded.values())
    run = onnx_runner(export_dir / variant_file("student"), 1)
    plain = run(predictor.tokenize(pairs))[1]
    np.testing.assert_allclose(run(padded)[1], plain, atol=1e-5)
    np.testing.assert_allclose(predictor.predict_proba(pd.DataFrame(pairs)), plain, atol=1e-5)


def _locked_versions(lock: Path) -> dict[str, str]:
    packages = tomllib.loads(lock.read_text(encoding="utf-8"))["package"]
    return {package["name"]: package["version"] for package in packages}


def test_the_server_environment_scores_with_the_pipelines_libraries() -> None:
    pipeline = _locked_versions(REPO_ROOT / "uv.lock")
    server = _locked_versions(REPO_ROOT / "serving" / "triton" / "uv.lock")
    assert {name: server[name] for name in SCORING_PACKAGES} == {
        name: pipeline[name] for name in SCORING_PACKAGES
    }
    assert server["numpy"].startswith("1.")  # nvidia-pytriton's pin, kept out of the pipeline
