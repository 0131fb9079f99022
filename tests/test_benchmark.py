"""Benchmark summary: speed-ups and the fastest variant that keeps 99 % of the teacher's F1."""

from __future__ import annotations

from pathlib import Path

from pair_classifier.benchmark import (
    ONNX_TEACHER,
    PYTORCH_TEACHER,
    fastest_keeping_f1,
    pipeline_variants,
    relative_to,
)
from pair_classifier.export.tensorrt_engine import engine_name


def _results(**variants: tuple[float, float]) -> dict[str, dict[str, float]]:
    return {
        name: {"throughput_pairs_per_s": speed, "f1": f1} for name, (speed, f1) in variants.items()
    }


def test_a_variant_just_under_99_percent_of_the_f1_does_not_count() -> None:
    results = _results(
        teacher=(84.4, 0.8552),
        fast=(388.3, 0.8459),  # 98.91 %: rounds to 0.99, must not pass
        slower=(343.9, 0.8468),  # 99.02 %
        slowest=(296.3, 0.8552),
    )
    assert fastest_keeping_f1(results, "teacher", 0.99) == "slower"
    assert relative_to(results, "teacher", "f1", 4)["fast"] == 0.9891
    assert relative_to(results, "teacher", "throughput_pairs_per_s", 2)["fast"] == 4.6


def test_no_variant_keeps_the_f1() -> None:
    results = _results(teacher=(80.0, 0.86), student=(400.0, 0.80))
    assert fastest_keeping_f1(results, "teacher", 0.99) is None
    assert fastest_keeping_f1(results, "teacher", kept=0.9) == "student"


def test_pipeline_variants_include_the_engines_the_trt_stage_built(tmp_path: Path) -> None:
    trt_dir = tmp_path / "trt"
    trt_dir.mkdir()
    (trt_dir / engine_name("student", "fp16")).write_bytes(b"")
    variants = pipeline_variants(*(tmp_path / name for name in ("t", "s", "onnx", "q")), trt_dir)
    names = [variant.name for variant in variants]
    assert names[:2] == [PYTORCH_TEACHER, "pytorch_fp32_student"] and ONNX_TEACHER in names
    assert names[-1] == "tensorrt_fp16_student"
    assert {variant.kind for variant in variants} == {"pytorch", "onnx", "tensorrt"}
