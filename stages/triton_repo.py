"""Stage triton-repo: the Triton model repositories of the registered version (artifacts/triton)."""

import logging
from pathlib import Path

from pair_classifier.config import TrackingConfig, read_params, section
from pair_classifier.constants import (
    BENCHMARK_METRICS,
    DEPLOYED_MODEL,
    ONNX_DIR,
    QUANTIZED_DIR,
    REGISTER_METRICS,
    TRT_DIR,
)
from pair_classifier.errors import exit_on_user_error
from pair_classifier.export.interface import variant_file
from pair_classifier.export.served import served_model
from pair_classifier.export.tensorrt_engine import engine_name
from pair_classifier.io_utils import replace_dir_atomically
from pair_classifier.serving.settings import ServingConfig
from pair_classifier.serving.triton_repository import build_repository, registered_model
from pair_classifier.serving.triton_settings import REPOSITORY_DIR, SECTION_NAME, TritonConfig
from pair_classifier.tracking import log_metrics, stage_run

logger = logging.getLogger(__name__)


def main() -> None:
    """Write and check the CPU and GPU repositories of the served graph."""
    params = read_params()
    config = section(params, SECTION_NAME, TritonConfig)
    serving = section(params, "serving", ServingConfig)
    served = served_model(BENCHMARK_METRICS, ONNX_DIR, QUANTIZED_DIR)
    registered = registered_model(REGISTER_METRICS)
    engine = TRT_DIR / engine_name(DEPLOYED_MODEL, config.gpu.trt_precision)
    logger.info(
        "Start: Triton repositories of %s version %s (%s) in %s",
        registered["model_name"],
        registered["version"],
        served.graph,
        REPOSITORY_DIR,
    )
    with stage_run("triton-repo", params, section(params, "tracking", TrackingConfig)):
        manifest: dict = {}

        def build(staging: Path) -> None:
            manifest.update(
                build_repository(
                    served,
                    registered,
                    config,
                    serving.max_batch_pairs,
                    staging,
                    ONNX_DIR / variant_file(DEPLOYED_MODEL),
                    engine if engine.is_file() else None,
                )
            )

        replace_dir_atomically(REPOSITORY_DIR, build)
        log_metrics({"version": manifest["version"]}, "triton.")
    logger.info(
        "Done: %s; GPU ensembles %s (TensorRT plan: %s)",
        REPOSITORY_DIR,
        manifest["gpu"]["ensembles"],
        manifest["gpu"]["tensorrt_plan"] or "none built",
    )


if __name__ == "__main__":
    exit_on_user_error(main)
