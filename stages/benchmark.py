"""Stage benchmark: every variant side by side on the test split, the graph to serve chosen from
those figures; DVC metrics and a Pareto plot."""

import logging

from pair_classifier.benchmark.report import write_pareto_plots
from pair_classifier.benchmark.run import pipeline_variants, rejected_variants, run_benchmark
from pair_classifier.benchmark.serving import check_served
from pair_classifier.config import (
    BenchmarkConfig,
    ExportConfig,
    QuantizeConfig,
    TrackingConfig,
    read_params,
    read_seed,
    section,
)
from pair_classifier.constants import (
    BENCHMARK_METRICS,
    BENCHMARK_PLOTS_DIR,
    DEPLOYED_MODEL,
    ONNX_DIR,
    PREPARED_DIR,
    QUANTIZE_METRICS,
    QUANTIZED_DIR,
    STUDENT_DIR,
    TEACHER_DIR,
    TRT_DIR,
)
from pair_classifier.data.preparation import load_split
from pair_classifier.errors import exit_on_user_error
from pair_classifier.export.interface import read_model_card, variant_file
from pair_classifier.io_utils import write_json
from pair_classifier.tracking import log_artifacts, log_metrics, stage_run

logger = logging.getLogger(__name__)


def main() -> None:
    """Measure every variant in its own process, choose the served graph, then write metrics,
    plots and MLflow runs; fail (figures written) when no graph can be served."""
    params = read_params()
    config = section(params, "benchmark", BenchmarkConfig)
    quantize = section(params, "quantize", QuantizeConfig)
    opset = section(params, "export", ExportConfig).opset
    logger.info(
        "Start: every variant of %s, %s, %s, %s and %s on the %s split",
        TEACHER_DIR,
        STUDENT_DIR,
        ONNX_DIR,
        QUANTIZED_DIR,
        TRT_DIR,
        config.split,
    )
    with stage_run("benchmark", params, section(params, "tracking", TrackingConfig)):
        card = read_model_card(ONNX_DIR / variant_file(DEPLOYED_MODEL))
        pairs = load_split(PREPARED_DIR, config.split)
        variants = pipeline_variants(
            TEACHER_DIR,
            STUDENT_DIR,
            ONNX_DIR,
            QUANTIZED_DIR,
            TRT_DIR,
            rejected=rejected_variants(QUANTIZE_METRICS),
        )
        report = run_benchmark(
            variants,
            pairs,
            card,
            config,
            read_seed(params),
            quantize,
            opset,
        )
        write_json(BENCHMARK_METRICS, report)
        write_pareto_plots(report["variants"], BENCHMARK_PLOTS_DIR, config.batch_size)
        for name, result in report["variants"].items():
            log_metrics(result, f"{name}.")
        log_metrics(report["matmul_rates"]["gmac_per_s"], "matmul_gmac_per_s.")
        log_artifacts(BENCHMARK_PLOTS_DIR, "plots/benchmark")
        check_served(report["served"])
    logger.info(
        "Done: served %s (%s); fastest variant keeping %s of the teacher's F1: %s (speed-ups: "
        "%s); wrote %s, %s",
        report["served"]["variant"],
        report["served"]["reason"],
        config.min_f1_kept,
        report["fastest_keeping_f1"],
        report["speedup_vs_pytorch_fp32_teacher"],
        BENCHMARK_METRICS,
        BENCHMARK_PLOTS_DIR,
    )


if __name__ == "__main__":
    exit_on_user_error(main)
