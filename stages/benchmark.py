"""Stage benchmark: every variant side by side on the test split; DVC metrics and a Pareto plot."""

from pair_classifier.benchmark import Variant, pareto_points, run_benchmark, save_pareto_png
from pair_classifier.config import BenchmarkConfig, TrackingConfig, read_params, section
from pair_classifier.constants import (
    BENCHMARK_METRICS,
    BENCHMARK_PLOTS_DIR,
    DEPLOYED_MODEL,
    ONNX_DIR,
    PREPARED_DIR,
    QUANTIZED_DIR,
    STUDENT_DIR,
    TEACHER_DIR,
    TEACHER_MODEL,
    TRT_DIR,
)
from pair_classifier.data.preparation import load_split
from pair_classifier.errors import exit_on_user_error
from pair_classifier.export.interface import (
    OPTIMIZED,
    TOKENIZER_SUBDIR,
    read_model_card,
    variant_file,
)
from pair_classifier.export.quantization import DYNAMIC, DYNAMIC_OPTIMIZED, STATIC
from pair_classifier.export.tensorrt_engine import ENGINE_SUFFIX
from pair_classifier.io_utils import write_json
from pair_classifier.tracking import log_artifacts, log_metrics, stage_run

TEACHER = "pytorch_fp32_teacher"
ONNX_TEACHER = "onnx_fp32_teacher"


def variants() -> list[Variant]:
    tokenizer = ONNX_DIR / TOKENIZER_SUBDIR
    onnx_graphs = {
        ONNX_TEACHER: ONNX_DIR / variant_file(TEACHER_MODEL),
        "onnx_fp32_student": ONNX_DIR / variant_file(DEPLOYED_MODEL),
        "onnx_optimized_student": ONNX_DIR / variant_file(DEPLOYED_MODEL, OPTIMIZED),
        "onnx_int8_dynamic_student": QUANTIZED_DIR / variant_file(DEPLOYED_MODEL, DYNAMIC),
        "onnx_int8_dynamic_optimized_student": QUANTIZED_DIR
        / variant_file(DEPLOYED_MODEL, DYNAMIC_OPTIMIZED),
        "onnx_int8_static_student": QUANTIZED_DIR / variant_file(DEPLOYED_MODEL, STATIC),
    }
    found = [
        Variant(TEACHER, "pytorch", TEACHER_DIR, tokenizer),
        Variant("pytorch_fp32_student", "pytorch", STUDENT_DIR, tokenizer),
    ]
    found += [Variant(name, "onnx", path, tokenizer) for name, path in onnx_graphs.items()]
    found += [
        Variant(f"tensorrt_{engine.name.split('.')[1]}_student", "tensorrt", engine, tokenizer)
        for engine in sorted(TRT_DIR.glob(f"*{ENGINE_SUFFIX}"))
    ]
    return found


def main() -> None:
    params = read_params()
    config = section(params, "benchmark", BenchmarkConfig)
    with stage_run("benchmark", params, section(params, "tracking", TrackingConfig)):
        card = read_model_card(ONNX_DIR / variant_file(DEPLOYED_MODEL))
        pairs = load_split(PREPARED_DIR, config.split)
        report = run_benchmark(variants(), pairs, card, config, TEACHER, ONNX_TEACHER)
        write_json(BENCHMARK_METRICS, report)
        write_json(BENCHMARK_PLOTS_DIR / "pareto.json", pareto_points(report["variants"]))
        save_pareto_png(report["variants"], BENCHMARK_PLOTS_DIR / "pareto.png")
        for name, result in report["variants"].items():
            log_metrics(result, f"{name}.")
        log_artifacts(BENCHMARK_PLOTS_DIR, "plots/benchmark")


if __name__ == "__main__":
    exit_on_user_error(main)
