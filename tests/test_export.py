"""Compression and export on the tiny model: pruning, scoring graph, ONNX parity, int8, TensorRT."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from conftest import pairs_frame
from onnx import numpy_helper

from pair_classifier.classifier import fit_classifier, pair_feature_matrix
from pair_classifier.compress.pruning import (
    current_shape,
    gate_importance,
    keep_layers,
    prune_by_importance,
)
from pair_classifier.config import (
    ClassifierConfig,
    ConfigError,
    ExportConfig,
    QuantizeConfig,
    TrtConfig,
)
from pair_classifier.constants import BI_ENCODER_SUBDIR
from pair_classifier.export import quantization
from pair_classifier.export.bundle import export_bundle
from pair_classifier.export.interface import TOKENIZER_SUBDIR, ExportError, variant_file
from pair_classifier.export.onnx_export import optimize_onnx
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
from pair_classifier.inference import OnnxPairPredictor, PairPredictor
from pair_classifier.model.bi_encoder import BiEncoder

EXPORT = ExportConfig(threads=1, parity_batch_size=8)


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
        ClassifierConfig(kind=kind, c_grid=[1.0]),
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


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model exported as both teacher and student."""
    directory = tmp_path_factory.mktemp("onnx")
    metrics = export_bundle(
        {"teacher": tiny_model_dir, "student": tiny_model_dir},
        directory,
        pairs_frame(24, 4),
        EXPORT,
    )
    for name in ("teacher", "student", "student_optimized"):
        assert metrics[name]["prediction_agreement"] == 1.0
        assert metrics[name]["max_abs_score_diff"] <= EXPORT.max_abs_score_diff
    return directory


def test_export_folder_is_self_contained(export_dir: Path) -> None:
    card = json.loads((export_dir / "model.json").read_text())
    assert card["class_names"] == ["different", "same"]
    assert card["graphs"] == ["student.onnx", "student.optimized.onnx", "teacher.onnx"]
    assert (export_dir / TOKENIZER_SUBDIR / "tokenizer.json").is_file()
    graph = onnx.load(str(export_dir / "student.onnx"))
    dims = [d.dim_param for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "sequence_a"]


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
    fused = export_dir / "student.optimized.onnx"  # every fusion on (the dataclass default)
    assert "SkipLayerNormalization" in _op_types(fused)
    config = dataclasses.replace(EXPORT, optimizer_fusions_off=["skip_layer_norm"])
    metrics = export_bundle({"student": tiny_model_dir}, tmp_path, pairs_frame(16, 6), config)
    assert "SkipLayerNormalization" not in _op_types(tmp_path / "student.optimized.onnx")
    assert metrics["student_optimized"]["prediction_agreement"] == 1.0


def test_optimizer_rejects_an_unknown_fusion_by_name(export_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ExportError, match=r"export.optimizer_fusions_off: unknown fusion 'skip_norm'; expected"
    ):
        optimize_onnx(export_dir / "student.onnx", tmp_path / "out.onnx", 2, 32, 2, ["skip_norm"])
    assert not (tmp_path / "out.onnx").exists()


def _splits() -> dict:
    return {"train": pairs_frame(40, 1), "val": pairs_frame(20, 2), "test": pairs_frame(20, 3)}


def test_quantize_writes_int8_variants_and_static_is_batch_invariant(
    export_dir: Path, tmp_path: Path
) -> None:
    config = QuantizeConfig(calibration_size=32, calibration_batch_size=8, max_accuracy_drop=1.0)
    metrics = quantize_bundle(export_dir, tmp_path, "student", _splits(), config, 8, 1, 0)
    variants = ("int8_dynamic", "int8_dynamic_optimized", "int8_static", "int8_static_symmetric")
    for variant in variants:
        assert (tmp_path / variant_file("student", variant)).is_file()
        assert 0 <= metrics[variant]["val"]["accuracy"] <= 1
    fused = onnx.load(str(tmp_path / variant_file("student", "int8_dynamic_optimized")))
    op_types = {node.op_type for node in fused.graph.node}
    assert {"SkipLayerNormalization", "MatMulInteger"} <= op_types  # int8 on the fused graph
    assert metrics["int8_static"]["max_abs_probability_diff_batch1_vs_batched"] <= 1e-3
    assert (tmp_path / TOKENIZER_SUBDIR / "tokenizer.json").is_file()


def test_quantize_scores_a_dynamic_graph_in_the_batches_predict_serves(
    export_dir: Path, tmp_path: Path
) -> None:
    """Dynamic int8 scales activations per batch, so the accuracy gate must batch as serving."""
    config = QuantizeConfig(calibration_size=16, calibration_batch_size=8, max_accuracy_drop=1.0)
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


def test_quantize_fails_when_accuracy_drops_beyond_the_bound(
    export_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tiny model's int8 graphs may score as well as fp32, so the int8 graphs' scores are
    lowered by 0.05: the stage must compare them with fp32 and stop at the 0.01 bound."""
    real_scores = quantization.graph_scores

    def worse_int8(graph: Path, *args: Any, **kwargs: Any) -> tuple[dict[str, float], Any]:
        scores, rest = real_scores(graph, *args, **kwargs)
        if "int8" in graph.name:
            scores = scores | {"accuracy": scores["accuracy"] - 0.05}
        return scores, rest

    monkeypatch.setattr(quantization, "graph_scores", worse_int8)
    config = QuantizeConfig(calibration_size=16, calibration_batch_size=8, max_accuracy_drop=0.01)
    with pytest.raises(QuantizationError, match=r"int8_dynamic: validation accuracy dropped by"):
        quantize_bundle(export_dir, tmp_path, "student", _splits(), config, 8, 1, 0)


def test_quantize_refuses_a_node_pattern_that_matches_nothing(
    export_dir: Path, tmp_path: Path
) -> None:
    """ONNX Runtime would read the empty node list as "all nodes", the classifier included."""
    config = QuantizeConfig(calibration_size=16, calibration_batch_size=8, include_nodes="/nope/")
    with pytest.raises(ConfigError, match=r"quantize.include_nodes '/nope/' .* matches none of"):
        quantize_bundle(export_dir, tmp_path, "student", _splits(), config, 8, 1, 0)


def test_trt_stage_records_its_skip_without_cuda(export_dir: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the skip path does not apply")
    metrics = build_trt_bundle(export_dir, export_dir, tmp_path, "student", None, TrtConfig(), 8, 1)
    assert metrics == {"skipped": "no CUDA device"}
    assert json.loads((tmp_path / "skipped.json").read_text()) == metrics


def test_trt_profile_shapes_come_from_config() -> None:
    shapes = profile_shapes(TrtConfig(min_batch=1, opt_batch=8, max_batch=16, max_sequence=64))
    assert shapes["input_ids_a"] == ((1, 1), (8, 32), (16, 64))
    assert set(shapes) == {"input_ids_a", "attention_mask_a", "input_ids_b", "attention_mask_b"}
    with pytest.raises(EngineBuildError, match="trt.min_batch <= trt.opt_batch <= trt.max_batch"):
        profile_shapes(TrtConfig(opt_batch=128, max_batch=64))
    with pytest.raises(EngineBuildError, match="trt.min_sequence <= trt.opt_sequence"):
        profile_shapes(TrtConfig(min_sequence=64, opt_sequence=32))


def test_the_trt_profile_must_cover_the_model_s_texts_and_the_check_batches() -> None:
    config = TrtConfig(max_batch=64, max_sequence=128)
    check_profile_covers(config, max_length=128, batch_size=64)
    with pytest.raises(EngineBuildError, match="trt.max_sequence 128 is below .*max_length 256"):
        check_profile_covers(config, max_length=256, batch_size=32)
    with pytest.raises(EngineBuildError, match="trt.max_batch 64 is below .*parity_batch_size 65"):
        check_profile_covers(config, max_length=128, batch_size=65)
    with pytest.raises(ConfigError, match=r"trt.precisions: expected one of \['fp16', 'int8'\]"):
        TrtConfig(precisions=["fp16", "fp8"])


def test_engine_names_carry_their_precision() -> None:
    assert engine_precision(Path("out") / engine_name("student.v2", "int8")) == "int8"
