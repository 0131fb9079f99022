"""Stage quantize: int8 student graphs (dynamic and calibrated static QDQ), each accuracy-gated."""

import logging
from pathlib import Path

from pair_classifier.config import (
    ExportConfig,
    QuantizeConfig,
    TrackingConfig,
    read_params,
    read_seed,
    section,
)
from pair_classifier.constants import (
    DEPLOYED_MODEL,
    ONNX_DIR,
    PREPARED_DIR,
    QUANTIZE_METRICS,
    QUANTIZED_DIR,
    SPLITS,
)
from pair_classifier.data.preparation import load_split
from pair_classifier.errors import exit_on_user_error
from pair_classifier.export.quantization import CPU_GRAPHS, REJECTED, quantize_bundle
from pair_classifier.io_utils import replace_dir_atomically, write_json
from pair_classifier.tracking import log_artifacts, log_metrics, stage_run

logger = logging.getLogger(__name__)


def main() -> None:
    """Quantise the student graph, gate each int8 graph on accuracy, record batch invariance."""
    params = read_params()
    config = section(params, "quantize", QuantizeConfig)
    export = section(params, "export", ExportConfig)
    logger.info(
        "Start: int8 variants of %s in %s, calibrated on %d training pairs",
        DEPLOYED_MODEL,
        ONNX_DIR,
        config.calibration_size,
    )
    with stage_run("quantize", params, section(params, "tracking", TrackingConfig)):
        splits = {split: load_split(PREPARED_DIR, split) for split in SPLITS}
        metrics: dict = {}

        def quantize(staging: Path) -> None:
            metrics.update(
                quantize_bundle(
                    ONNX_DIR,
                    staging,
                    DEPLOYED_MODEL,
                    splits,
                    config,
                    export.parity_batch_size,
                    export.threads,
                    read_seed(params),
                )
            )

        replace_dir_atomically(QUANTIZED_DIR, quantize)
        write_json(QUANTIZE_METRICS, metrics)
        log_metrics(metrics, "quantize.")
        log_artifacts(QUANTIZED_DIR, "quantized")
    accepted = [name for name in CPU_GRAPHS if name not in metrics[REJECTED]]
    logger.info(
        "Done: CPU graphs accepted %s, rejected %s (the benchmark chooses the served one); "
        "wrote %s, %s",
        accepted,
        sorted(metrics[REJECTED]),
        QUANTIZED_DIR,
        QUANTIZE_METRICS,
    )


if __name__ == "__main__":
    exit_on_user_error(main)
