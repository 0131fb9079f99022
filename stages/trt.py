"""Stage trt: TensorRT engines (fp16, int8) of the student; a recorded skip without CUDA."""

import logging
from pathlib import Path

from pair_classifier.config import ExportConfig, TrackingConfig, TrtConfig, read_params, section
from pair_classifier.constants import (
    DEPLOYED_MODEL,
    ONNX_DIR,
    PREPARED_DIR,
    QUANTIZED_DIR,
    TRT_DIR,
    TRT_METRICS,
)
from pair_classifier.data.preparation import load_split
from pair_classifier.errors import exit_on_user_error
from pair_classifier.export.tensorrt_engine import build_trt_bundle
from pair_classifier.io_utils import replace_dir_atomically, write_json
from pair_classifier.tracking import log_artifacts, log_metrics, stage_run

logger = logging.getLogger(__name__)


def main() -> None:
    """Build and check the TensorRT engines, or record why they were skipped."""
    params = read_params()
    config = section(params, "trt", TrtConfig)
    export = section(params, "export", ExportConfig)
    logger.info(
        "Start: TensorRT engines %s of %s in %s", config.precisions, DEPLOYED_MODEL, ONNX_DIR
    )
    with stage_run("trt", params, section(params, "tracking", TrackingConfig)):
        pairs = load_split(PREPARED_DIR, export.parity_split)
        metrics: dict = {}

        def build(staging: Path) -> None:
            metrics.update(
                build_trt_bundle(
                    ONNX_DIR,
                    QUANTIZED_DIR,
                    staging,
                    DEPLOYED_MODEL,
                    pairs,
                    config,
                    export.parity_batch_size,
                    export.threads,
                )
            )

        replace_dir_atomically(TRT_DIR, build)
        write_json(TRT_METRICS, metrics)
        log_metrics(metrics, "trt.")
        log_artifacts(TRT_DIR, "trt")
    if "skipped" in metrics:
        logger.info("Done: no engines built (%s); recorded in %s", metrics["skipped"], TRT_METRICS)
    else:
        logger.info("Done: engines %s built; wrote %s, %s", list(metrics), TRT_DIR, TRT_METRICS)


if __name__ == "__main__":
    exit_on_user_error(main)
