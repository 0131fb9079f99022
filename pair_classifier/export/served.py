"""The served model's files: which of the deployed model's graphs the benchmark chose to serve
(its ``served`` record in metrics/benchmark.json), with the export's tokenizer and model card.

Serving and the registry both read it from here, so neither imports the other nor the
benchmark. The choice is made by the benchmark stage on the machine it runs on
(``pair_classifier.benchmark.serving``); this module only resolves the named graph's files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pair_classifier.constants import DEPLOYED_MODEL
from pair_classifier.errors import ArtifactError, reading_artifact
from pair_classifier.export.interface import MODEL_CARD, OPTIMIZED, TOKENIZER_SUBDIR, variant_file
from pair_classifier.io_utils import read_json

FP32 = "fp32"  # the exported graph as it is, student.onnx
# The variants the onnx stage writes beside the tokenizer; every other (the int8 graphs) is the
# quantize stage's.
EXPORT_VARIANTS = (FP32, OPTIMIZED)
SERVED = "served"  # metrics/benchmark.json key of the choice: variant, graph, reason, figures
SERVED_VARIANT = "variant"


def benchmark_name(variant: str) -> str:
    """A student graph's name in metrics/benchmark.json: ``onnx_int8_static_student`` ..."""
    return f"onnx_{variant}_{DEPLOYED_MODEL}"


def served_graph(variant: str, onnx_dir: Path, quantized_dir: Path) -> Path:
    """Where a variant of the deployed model's graph lies: the export's folder or quantize's."""
    if variant == FP32:
        return onnx_dir / variant_file(DEPLOYED_MODEL)
    folder = onnx_dir if variant in EXPORT_VARIANTS else quantized_dir
    return folder / variant_file(DEPLOYED_MODEL, variant)


@dataclass(frozen=True)
class ServedModel:
    """The files of the served model, as the pipeline leaves them."""

    variant: str  # fp32, optimized, int8_dynamic, int8_dynamic_optimized or int8_static
    graph: Path
    card: Path  # artifacts/onnx/model.json
    tokenizer: Path  # artifacts/onnx/tokenizer

    @property
    def benchmark_name(self) -> str:
        """Its key in metrics/benchmark.json's ``variants`` (``onnx_int8_static_student``)."""
        return benchmark_name(self.variant)


def _served_record(benchmark_metrics: Path) -> dict[str, Any]:
    if not benchmark_metrics.is_file():
        raise ArtifactError(
            f"{benchmark_metrics}: not found; the benchmark stage writes it (dvc repro benchmark)"
        )
    with reading_artifact(benchmark_metrics, "the benchmark stage's metrics (JSON)"):
        report = read_json(benchmark_metrics)
    record = report.get(SERVED) if isinstance(report, dict) else None
    if not isinstance(record, dict) or not isinstance(record.get(SERVED_VARIANT), str):
        raise ArtifactError(
            f"{benchmark_metrics}: no {SERVED}.{SERVED_VARIANT} recorded (the graph chosen for "
            "serving); rerun the benchmark stage (dvc repro benchmark)"
        )
    return record


def served_model(benchmark_metrics: Path, onnx_dir: Path, quantized_dir: Path) -> ServedModel:
    """The graph the benchmark chose to serve, with the export's tokenizer and card; a missing
    file is named with the stage that makes it."""
    variant = _served_record(benchmark_metrics)[SERVED_VARIANT]
    served = ServedModel(
        variant=variant,
        graph=served_graph(variant, onnx_dir, quantized_dir),
        card=onnx_dir / MODEL_CARD,
        tokenizer=onnx_dir / TOKENIZER_SUBDIR,
    )
    graph_stage = "onnx" if variant in EXPORT_VARIANTS else "quantize"
    for path, stage in (
        (served.graph, graph_stage),
        (served.card, "onnx"),
        (served.tokenizer, "onnx"),
    ):
        if not path.exists():
            raise ArtifactError(
                f"{path}: not found; the {stage} stage makes it (dvc repro {stage})"
            )
    return served
