"""Compression and export on the tiny model: pruning, scoring graph, ONNX parity, int8, TensorRT."""

from __future__ import annotations

import ast
import dataclasses
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from helpers import REPO_ROOT, composed, pairs_frame
from onnx import numpy_helper

from pair_classifier.classifier import fit_classifier, pair_feature_matrix
from pair_classifier.compress.pruning import gate_importance, keep_layers, prune_by_importance
from pair_classifier.config import (
    ClassifierConfig,
    ConfigError,
    ExportConfig,
    QuantizeConfig,
    TrtConfig,
)
from pair_classifier.constants import BI_ENCODER_CONFIG, BI_ENCODER_SUBDIR
from pair_classifier.export import quantization
from pair_classifier.export.accuracy_gate import PairedDrop, share_lower_bound
from pair_classifier.export.bundle import export_bundle
from pair_classifier.export.interface import TOKENIZER_SUBDIR, ExportError, variant_file
from pair_classifier.export.onnx_export import optimize_onnx
from pair_classifier.export.onnx_predictor import OnnxPairPredictor
from pair_classifier.export.quantization import QuantizationError, graph_scores, quantize_bundle
from pair_classifier.export.runtime import (
    ParityError,
    check_parity,
    length_order,
    onnx_runner,
    parity,
    run_batches,
)
from pair_classifier.export.scoring import ScoringModel
from pair_classifier.export.tensorrt_engine import (
    EngineBuildError,
    build_trt_bundle,
    check_profile_covers,
    engine_name,
    engine_precision,
    profile_shapes,
)
from pair_classifier.export.tokenization import PairTokenizer
from pair_classifier.model.bi_encoder import BiEncoder
from pair_classifier.model.encoder_shape import current_shape
from pair_classifier.predictor import PairPredictor

EXPORT = composed("export", ExportConfig, threads=1, parity_batch_size=8)


def _batch(model: BiEncoder, count: int, seed: int) -> dict[str, torch.Tensor]:
    frame = pairs_frame(count, seed)
    a, b = model.tokenize(frame["text_a"].tolist()), model.tokenize(frame["text_b"].tolist())
    return {
        "input_ids_a": a["input_ids"],
        "attention_mask_a": a["attention_mask"],
        "input_ids_b": b["input_ids"],
        "attention_mask_b": b["attention_mask"],
        "labels": torch.tensor(frame["label"].to_numpy()),
    }


def test_structured_pruning_shrinks_and_survives_save_and_load(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    model = BiEncoder.load(tiny_model_dir / BI_ENCODER_SUBDIR).train()
    keep_layers(model.encoder, [1])

    def loss_of(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits, _, _ = model(*(batch[k] for k in list(batch)[:4]))
        return torch.nn.functional.cross_entropy(logits, batch["labels"])

    heads, channels = gate_importance(
        model.encoder, [_batch(model, 16, s) for s in (1, 2)], loss_of
    )
    assert heads.shape == (1, 2) and channels.shape == (1, 64)
    assert channels.sum() > 0  # gradients reached the gates
    before = sum(p.numel() for p in model.encoder.parameters())
    shape = prune_by_importance(model.encoder, heads, channels, 1, 24)
    assert shape == current_shape(model.encoder)
    assert shape.heads == [1] and shape.ffn_channels == [24]
    assert sum(p.numel() for p in model.encoder.parameters()) < before
    model.spec = dataclasses.replace(
        model.spec, pruned_heads=shape.heads, pruned_ffn_channels=shape.ffn_channels
    )
    model.eval().save(tmp_path / "student")
    loaded = BiEncoder.load(tmp_path / "student")
    texts = ["the court said", "police denied the claims on day 3 ."]
    np.testing.assert_allclose(loaded.encode(texts, 2), model.encode(texts, 2), atol=1e-6)


@pytest.mark.parametrize("kind", ["linear", "rbf"])
def test_scoring_model_reproduces_the_svm(tiny_model_dir: Path, kind: str) -> None:
    predictor = PairPredictor.load(tiny_model_dir, batch_size=8)
    train, val = pairs_frame(40, 1), pairs_frame(20, 2)
    classifier = fit_classifier(
        pair_feature_matrix(predictor.bi_encoder, train, 8),
        train["label"].to_numpy(),
        pair_feature_matrix(predictor.bi_encoder, val, 8),
        val["label"].to_numpy(),
        composed("classifier", ClassifierConfig, f"classifier={kind}_svm", c_grid=[1.0]),
        ["different", "same"],
        "same",
        seed=0,
    )
    test = pairs_frame(12, 3)
    features = pair_feature_matrix(predictor.bi_encoder, test, 8)
    batch = _batch(predictor.bi_encoder, 12, 3)
    with torch.no_grad():
        scores, probabilities = ScoringModel(predictor.bi_encoder, classifier).eval()(
            *(batch[k] for k in list(batch)[:4])
        )
    np.testing.assert_allclose(scores[:, 0], classifier.svm.decision_function(features), atol=1e-4)
    np.testing.assert_allclose(probabilities, classifier.predict_proba(features), atol=1e-5)


def test_export_folder_is_self_contained(export_dir: Path) -> None:
    card = json.loads((export_dir / "model.json").read_text())
    assert card["class_names"] == ["different", "same"]
    assert card["graphs"] == ["student.onnx", "student.optimized.onnx", "teacher.onnx"]
    assert (export_dir / TOKENIZER_SUBDIR / "tokenizer.json").is_file()
    graph = onnx.load(str(export_dir / "student.onnx"))
    dims = [d.dim_param for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "sequence_a"]


def test_the_card_describes_the_deployed_model_wherever_it_stands(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The deployed model is named, not taken as the last of the dict: listed first here, it
    still gets the optimised graph and the card, whose max_length differs from the teacher's."""
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_model_dir, teacher)
    spec_file = teacher / BI_ENCODER_SUBDIR / BI_ENCODER_CONFIG
    spec = json.loads(spec_file.read_text())
    assert spec["max_length"] == 32
    spec_file.write_text(json.dumps(spec | {"max_length": 24}))
    out = tmp_path / "onnx"
    models = {"student": tiny_model_dir, "teacher": teacher}
    metrics = export_bundle(models, out, pairs_frame(8, 1), EXPORT, deployed="student")
    card = json.loads((out / "model.json").read_text())
    assert card["deployed"] == "student" and card["max_length"] == 32
    assert card["graphs"] == ["student.onnx", "student.optimized.onnx", "teacher.onnx"]
    assert "student_optimized" in metrics and "teacher_optimized" not in metrics


def test_a_deployed_model_that_is_not_exported_is_named(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"deployed model 'student' is not among .*'teacher'"):
        export_bundle({"teacher": tmp_path}, tmp_path / "onnx", pairs_frame(4, 1), EXPORT)


def test_export_imports_nothing_from_inference_or_training() -> None:
    """export/ is below inference (which serves its graphs) and training: no upward import."""
    upward = ("pair_classifier.inference", "pair_classifier.training")
    found = []
    for source in sorted((REPO_ROOT / "pair_classifier" / "export").glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            found += [(source.name, m) for m in modules if m.startswith(upward)]
    assert not found


def test_parity_check_fails_loudly_on_a_tampered_graph(export_dir: Path, tmp_path: Path) -> None:
    graph = onnx.load(str(export_dir / "student.onnx"))
    tampered = 0
    for initializer in graph.graph.initializer:
        if initializer.name.startswith("scores."):
            values = numpy_helper.to_array(initializer)
            initializer.CopyFrom(numpy_helper.from_array(-values, initializer.name))
            tampered += 1
    assert tampered  # the SVM weights are ordinary initialisers of the graph
    onnx.save(graph, str(tmp_path / "tampered.onnx"))
    tokenize = PairTokenizer.load(export_dir / TOKENIZER_SUBDIR, 32)
    pairs = pairs_frame(16, 5)
    report = parity(
        run_batches(onnx_runner(export_dir / "student.onnx", 1), tokenize, pairs, 8),
        run_batches(onnx_runner(tmp_path / "tampered.onnx", 1), tokenize, pairs, 8),
    )
    with pytest.raises(
        ParityError, match=r"tampered: parity check failed on 16 pairs: max \|Δscore\|"
    ):
        check_parity(report, "tampered", 1e-4, 1.0)


def _binary(positive: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Scores and probabilities of binary predictions with these positive-class probabilities."""
    probabilities = np.array([[1 - p, p] for p in positive], dtype=np.float32)
    return probabilities[:, 1:] - 0.5, probabilities


def test_parity_excuses_flips_only_on_the_references_near_ties() -> None:
    reference = _binary([0.5002, 0.9, 0.2])
    flipped_near_tie = _binary([0.4999, 0.9, 0.2])
    report = parity(reference, flipped_near_tie, tie_margin=1e-3)
    assert report.prediction_agreement == pytest.approx(2 / 3)
    assert report.near_tie_flips == 1
    check_parity(report, "near tie", 1e-3, 1.0)  # passes: the flip is excused
    with pytest.raises(ParityError, match=r"prediction agreement 0.6667 < 1.0000 \(0 near-tie"):
        check_parity(parity(reference, flipped_near_tie), "no margin", 1e-3, 1.0)
    many = parity(_binary([0.5002] + [0.9] * 499), _binary([0.4999] + [0.9] * 499), 1e-3)
    assert many.agreement_beyond_ties == 1.0  # counted, not summed from rounded shares
    check_parity(many, "500 pairs", 1e-3, 1.0)
    flipped_confident = _binary([0.5002, 0.4, 0.2])
    with pytest.raises(ParityError, match=r"confident: .*prediction agreement 0.6667"):
        check_parity(parity(reference, flipped_confident, tie_margin=1e-3), "confident", 1.0, 1.0)


def _op_types(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_optimizer_leaves_out_the_configured_fusions(
    export_dir: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    assert "skip_layer_norm" in EXPORT.optimizer_fusions_off  # export_dir follows the recipe
    assert "SkipLayerNormalization" not in _op_types(export_dir / "student.optimized.onnx")
    config = dataclasses.replace(EXPORT, optimizer_fusions_off=[])
    metrics = export_bundle({"student": tiny_model_dir}, tmp_path, pairs_frame(16, 6), config)
    assert "SkipLayerNormalization" in _op_types(tmp_path / "student.optimized.onnx")
    assert metrics["student_optimized"]["prediction_agreement"] == 1.0


def test_optimizer_rejects_an_unknown_fusion_by_name(export_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ExportError, match=r"export.optimizer_fusions_off: unknown fusion 'skip_norm'; expected"
    ):
        optimize_onnx(export_dir / "student.onnx", tmp_path / "out.onnx", 2, 32, 2, ["skip_norm"])
    assert not (tmp_path / "out.onnx").exists()


def _splits() -> dict:
    return {"train": pairs_frame(40, 1), "val": pairs_frame(20, 2), "test": pairs_frame(20, 3)}


def _quantize_config(**values: Any) -> QuantizeConfig:
    """configs/quantize, calibrated on a handful of the tiny splits' pairs."""
    return composed(
        "quantize", QuantizeConfig, **{"calibration_size": 16, "calibration_batch_size": 8} | values
    )


def _with_int8_predictions(
    monkeypatch: pytest.MonkeyPatch, variants: str | tuple[str, ...], lost: int | None = None
) -> None:
    """Give ``variants`` the fp32 graph's validation predictions, but wrong on ``lost`` of the
    pairs fp32 gets right (all of them when None), whatever the tiny model's int8 graphs really
    score: the gate sees only predictions."""
    names = {
        variant_file("student", v) for v in ((variants,) if isinstance(variants, str) else variants)
    }
    real_scores = quantization.graph_scores
    fp32: dict[str, np.ndarray] = {}

    def scores(graph: Path, *args: Any, **kwargs: Any) -> tuple[dict[str, float], np.ndarray]:
        found, probabilities = real_scores(graph, *args, **kwargs)
        labels = args[2]
        if graph.name == variant_file("student"):
            fp32["probabilities"] = probabilities
        elif graph.name in names:
            probabilities = fp32["probabilities"].copy()
            right = np.flatnonzero(probabilities.argmax(axis=1) == labels)[:lost]
            one_hot = np.eye(probabilities.shape[1], dtype=probabilities.dtype)
            probabilities[right] = np.roll(one_hot[labels[right]], 1, axis=1)
        return found, probabilities

    monkeypatch.setattr(quantization, "graph_scores", scores)


def test_quantize_writes_int8_variants_and_static_is_batch_invariant(
    export_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Also: the quantiser's graphs are pre-processed, so ONNX Runtime's "Please consider to run
    pre-processing before quantization" is gone from the log, and each pass logs its progress."""
    config = _quantize_config(calibration_size=32)
    with caplog.at_level(logging.INFO):
        metrics = quantize_bundle(export_dir, tmp_path, "student", _splits(), config, 8, 1, 0)
    assert "pre-processing" not in caplog.text + capfd.readouterr().err
    assert "Ignore MatMul due to non constant B" not in caplog.text  # the quantiser's INFO chatter
    for line in (
        r"calibrating int8_static: 4 batches",
        r"int8_static: calibrated on 4 batches and quantised in \d+ s",
        r"scoring student.int8_dynamic.onnx on 20 pairs: 3 batches",
        r"student.int8_dynamic.onnx: accuracy \d\.\d{4} in \d+ s",
    ):
        assert re.search(line, caplog.text), line
    assert metrics["rejected"] == {}
    gate = metrics["int8_static"]
    assert gate["accuracy_drop_lower_bound"] <= max(gate["accuracy_drop"], 0)
    assert set(gate["discordant_pairs"]) == {"fp32_right_int8_wrong", "fp32_wrong_int8_right"}
    variants = ("int8_dynamic", "int8_dynamic_optimized", "int8_static", "int8_static_symmetric")
    for variant in variants:
        assert (tmp_path / variant_file("student", variant)).is_file()
        assert 0 <= metrics[variant]["val"]["accuracy"] <= 1
    fused = onnx.load(str(tmp_path / variant_file("student", "int8_dynamic_optimized")))
    op_types = {node.op_type for node in fused.graph.node}
    assert {"BiasGelu", "MatMulInteger"} <= op_types  # int8 on the fused graph
    assert metrics["int8_static"]["max_abs_probability_diff_batch1_vs_batched"] <= 1e-3
    assert (tmp_path / TOKENIZER_SUBDIR / "tokenizer.json").is_file()


def test_quantize_scores_a_dynamic_graph_in_the_batches_predict_serves(
    export_dir: Path, tmp_path: Path
) -> None:
    """Dynamic int8 scales activations per batch, so the accuracy gate must batch as serving."""
    config = _quantize_config()
    quantize_bundle(export_dir, tmp_path, "student", _splits(), config, 8, 1, 0)
    graph = tmp_path / variant_file("student", "int8_dynamic")
    card = json.loads((tmp_path / "model.json").read_text())
    tokenize = PairTokenizer.load(tmp_path / TOKENIZER_SUBDIR, card["max_length"])
    val = _splits()["val"]
    _, gated = graph_scores(
        graph, tokenize, val, val["label"].to_numpy(), card["class_names"], 1, 8, 1
    )
    served = OnnxPairPredictor(graph, batch_size=8, threads=1).predict_proba(val)
    in_input_order = run_batches(onnx_runner(graph, 1), tokenize, val, 8)[1]
    assert np.array_equal(gated, served)
    assert not np.array_equal(gated, in_input_order)  # the batching does show in the scores


def test_pairs_are_ordered_by_their_longer_text_then_their_shorter() -> None:
    """A batch pads each side to its longest text, so the longer text of a pair sets its cost."""
    tokens_a = np.array([5, 1, 3, 4, 2, 4])
    tokens_b = np.array([1, 4, 3, 3, 4, 1])
    # longer texts: 5 4 3 4 4 4; among the 4s the shorter texts 1 3 2 1 come in order 1, 1, 2, 3
    assert length_order(tokens_a, tokens_b).tolist() == [2, 1, 5, 4, 3, 0]


def test_each_side_is_padded_to_its_own_longest_text(export_dir: Path) -> None:
    """Batches of pairs are ordered by their longer text, so the two sides' widths differ."""
    tokenize = PairTokenizer.load(export_dir / TOKENIZER_SUBDIR, 32)
    pad = tokenize.pad_id
    inputs = tokenize.inputs([[5, 7, 6], [5, 6]], [[5, 8, 9, 10, 6], [5, 9, 6]])
    assert inputs["input_ids_a"].tolist() == [[5, 7, 6], [5, 6, pad]]
    assert inputs["attention_mask_a"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert inputs["input_ids_b"].tolist() == [[5, 8, 9, 10, 6], [5, 9, 6, pad, pad]]
    assert inputs["attention_mask_b"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert all(array.dtype == np.int64 for array in inputs.values())
    with pytest.raises(ValueError, match="2 first texts but 1 second texts"):
        tokenize.inputs([[5, 6], [5, 6]], [[5, 6]])


def test_a_variant_beyond_the_bound_is_rejected_and_the_bundle_still_succeeds(
    export_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rejected graph is recorded with its figures; the other graphs remain to be served."""
    _with_int8_predictions(monkeypatch, "int8_dynamic")
    metrics = quantize_bundle(
        export_dir, tmp_path, "student", _splits(), _quantize_config(), 8, 1, 0
    )
    rejected = metrics["rejected"]["int8_dynamic"]
    assert rejected["reason"].startswith("int8_dynamic: validation accuracy dropped by")
    assert "more than quantize.max_accuracy_drop=0.01" in rejected["reason"]
    fp32_right = round(metrics["val_fp32"]["accuracy"] * 20)
    assert rejected["discordant_pairs"] == {
        "fp32_right_int8_wrong": fp32_right,
        "fp32_wrong_int8_right": 0,
    }
    assert rejected["accuracy_drop_lower_bound"] > 0.01
    assert list(metrics["rejected"]) == ["int8_dynamic"]
    card = json.loads((tmp_path / "model.json").read_text())
    assert card["rejected"] == [variant_file("student", "int8_dynamic")]
    assert "serving" not in card  # the benchmark chooses the served graph


def test_every_cpu_graph_beyond_the_bound_fails_naming_the_knobs(
    export_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every CPU int8 graph rejected a setting is wrong: only then does the stage fail."""
    _with_int8_predictions(monkeypatch, ("int8_dynamic", "int8_dynamic_optimized", "int8_static"))
    with pytest.raises(
        QuantizationError,
        match=r"every CPU int8 graph is rejected: int8_dynamic: validation accuracy dropped by .*"
        r"int8_dynamic_optimized: .*int8_static: .* Try quantize.calibration_size .* "
        r"quantize.include_nodes",
    ):
        quantize_bundle(export_dir, tmp_path, "student", _splits(), _quantize_config(), 8, 1, 0)


def test_a_drop_of_a_few_pairs_on_a_small_split_is_within_noise(
    export_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 pairs of 20 is an observed drop of 0.1, ten times the bound, yet not evidence of one."""
    _with_int8_predictions(monkeypatch, "int8_static", lost=2)
    metrics = quantize_bundle(
        export_dir, tmp_path, "student", _splits(), _quantize_config(), 8, 1, 0
    )
    assert metrics["rejected"] == {}
    static = metrics["int8_static"]
    assert static["discordant_pairs"] == {"fp32_right_int8_wrong": 2, "fp32_wrong_int8_right": 0}
    assert static["accuracy_drop"] == 0.1
    assert static["accuracy_drop_lower_bound"] < 0.01


@pytest.mark.parametrize(
    ("lost", "gained", "rejected"),
    [(6, 0, False), (10, 4, False), (11, 0, True), (30, 5, True), (0, 0, False)],
)
def test_the_gate_counts_the_split_s_size(lost: int, gained: int, rejected: bool) -> None:
    """The issue's case: 6 pairs of 495 (0.0121) is within noise at 95 %; 11 lost are not."""
    assert PairedDrop(495, lost, gained, 0.95).exceeds(0.01) == rejected


def test_the_share_bound_is_clopper_pearson() -> None:
    assert share_lower_bound(0, 10, 0.95) == 0.0
    assert share_lower_bound(6, 6, 0.95) == pytest.approx(0.05 ** (1 / 6))
    beta = pytest.importorskip("scipy.stats").beta
    for successes, trials in [(1, 3), (10, 14), (250, 400)]:
        expected = beta.ppf(0.05, successes, trials - successes + 1)
        assert share_lower_bound(successes, trials, 0.95) == pytest.approx(expected, abs=1e-9)


def test_quantize_refuses_a_node_pattern_that_matches_nothing(
    export_dir: Path, tmp_path: Path
) -> None:
    """ONNX Runtime would read the empty node list as "all nodes", the classifier included."""
    config = _quantize_config(include_nodes="/nope/", static_exclude_nodes=None)
    with pytest.raises(ConfigError, match=r"quantize.include_nodes '/nope/' .* matches none of"):
        quantize_bundle(export_dir, tmp_path, "student", _splits(), config, 8, 1, 0)


def test_trt_stage_records_its_skip_without_cuda(export_dir: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the skip path does not apply")
    config = composed("trt", TrtConfig)
    metrics = build_trt_bundle(export_dir, export_dir, tmp_path, "student", None, config, 8, 1)
    assert metrics == {"skipped": "no CUDA device"}
    assert json.loads((tmp_path / "skipped.json").read_text()) == metrics


def test_trt_profile_shapes_come_from_config() -> None:
    config = composed("trt", TrtConfig, min_batch=1, opt_batch=8, max_batch=16, max_sequence=64)
    shapes = profile_shapes(config)
    assert shapes["input_ids_a"] == ((1, 1), (8, 32), (16, 64))
    assert set(shapes) == {"input_ids_a", "attention_mask_a", "input_ids_b", "attention_mask_b"}
    with pytest.raises(EngineBuildError, match="trt.min_batch <= trt.opt_batch <= trt.max_batch"):
        profile_shapes(composed("trt", TrtConfig, opt_batch=128, max_batch=64))
    with pytest.raises(EngineBuildError, match="trt.min_sequence <= trt.opt_sequence"):
        profile_shapes(composed("trt", TrtConfig, min_sequence=64, opt_sequence=32))


def test_the_trt_profile_must_cover_the_model_s_texts_and_the_check_batches() -> None:
    config = composed("trt", TrtConfig, max_batch=64, max_sequence=128)
    check_profile_covers(config, max_length=128, batch_size=64)
    with pytest.raises(EngineBuildError, match="trt.max_sequence 128 is below .*max_length 256"):
        check_profile_covers(config, max_length=256, batch_size=32)
    with pytest.raises(EngineBuildError, match="trt.max_batch 64 is below .*parity_batch_size 65"):
        check_profile_covers(config, max_length=128, batch_size=65)
    with pytest.raises(ConfigError, match=r"trt.precisions: expected one of \['fp16', 'int8'\]"):
        composed("trt", TrtConfig, precisions=["fp16", "fp8"])


def test_engine_names_carry_their_precision() -> None:
    assert engine_precision(Path("out") / engine_name("student.v2", "int8")) == "int8"
