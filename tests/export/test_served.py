"""The served model's files, resolved from the benchmark's choice: a missing record or file is
named with the stage that makes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pair_classifier.errors import ArtifactError
from pair_classifier.export.interface import MODEL_CARD, TOKENIZER_SUBDIR, variant_file
from pair_classifier.export.served import served_model
from pair_classifier.io_utils import write_json


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An export folder (fp32 graphs, card, tokenizer) and quantize's folder, files empty."""
    onnx_dir, quantized = tmp_path / "onnx", tmp_path / "quantized"
    (onnx_dir / TOKENIZER_SUBDIR).mkdir(parents=True)
    quantized.mkdir()
    for path in (
        onnx_dir / variant_file("student"),
        onnx_dir / variant_file("student", "optimized"),
        onnx_dir / MODEL_CARD,
        quantized / variant_file("student", "int8_static"),
    ):
        path.touch()
    return tmp_path


def _served(project: Path, record: object) -> object:
    write_json(project / "benchmark.json", {"variants": {}, "served": record})
    return served_model(project / "benchmark.json", project / "onnx", project / "quantized")


@pytest.mark.parametrize(
    ("variant", "graph", "name"),
    [
        ("fp32", "onnx/student.onnx", "onnx_fp32_student"),
        ("optimized", "onnx/student.optimized.onnx", "onnx_optimized_student"),
        ("int8_static", "quantized/student.int8_static.onnx", "onnx_int8_static_student"),
    ],
)
def test_each_served_variant_resolves_to_its_graph(
    project: Path, variant: str, graph: str, name: str
) -> None:
    served = _served(project, {"variant": variant, "reason": "fastest"})
    assert served.graph == project / graph
    assert served.card == project / "onnx" / MODEL_CARD
    assert served.tokenizer == project / "onnx" / TOKENIZER_SUBDIR
    assert served.benchmark_name == name


def test_a_missing_choice_or_graph_is_named_with_its_stage(project: Path) -> None:
    with pytest.raises(
        ArtifactError, match=r"no served.variant recorded .*\(dvc repro benchmark\)"
    ):
        _served(project, None)
    (project / "onnx" / variant_file("student")).unlink()
    with pytest.raises(ArtifactError, match=r"student.onnx: not found; the onnx stage makes it"):
        _served(project, {"variant": "fp32"})
    with pytest.raises(ArtifactError, match=r"int8_dynamic.onnx: not found; the quantize stage"):
        _served(project, {"variant": "int8_dynamic"})
    with pytest.raises(ArtifactError, match=r"nowhere.json: not found; the benchmark stage"):
        served_model(project / "nowhere.json", project / "onnx", project / "quantized")
