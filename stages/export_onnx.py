"""Stage onnx: teacher and student as self-contained ONNX graphs, checked against PyTorch."""

import logging
from pathlib import Path

from pair_classifier.config import ExportConfig, TrackingConfig, read_params, section
from pair_classifier.constants import (
    DEPLOYED_MODEL,
    ONNX_DIR,
    ONNX_METRICS,
    PREPARED_DIR,
    STUDENT_DIR,
    TEACHER_DIR,
    TEACHER_MODEL,
)
from pair_classifier.data.preparation import load_split
from pair_classifier.errors import exit_on_user_error
from pair_classifier.export.bundle import export_bundle
from pair_classifier.io_utils import replace_dir_atomically, write_json
from pair_classifier.tracking import log_artifacts, log_metrics, stage_run

logger = logging.getLogger(__name__)


def main() -> None:
    """Export and parity-check teacher and student, then swap the bundle in whole."""
    params = read_params()
    config = section(params, "export", ExportConfig)
    logger.info(
        "Start: %s and %s to ONNX graphs in %s, parity on the %s split",
        TEACHER_DIR,
        STUDENT_DIR,
        ONNX_DIR,
        config.parity_split,
    )
    with stage_run("onnx", params, section(params, "tracking", TrackingConfig)):
        pairs = load_split(PREPARED_DIR, config.parity_split)
        metrics: dict = {}

        def export(staging: Path) -> None:
            metrics.update(
                export_bundle(
                    {TEACHER_MODEL: TEACHER_DIR, DEPLOYED_MODEL: STUDENT_DIR},
                    staging,
                    pairs,
                    config,
                    deployed=DEPLOYED_MODEL,
                )
            )

        replace_dir_atomically(ONNX_DIR, export)
        write_json(ONNX_METRICS, metrics)
        log_metrics(metrics, "onnx.")
        log_artifacts(ONNX_DIR, "onnx")
    logger.info(
        "Done: %s graph agrees with PyTorch on %s of the pairs; wrote %s, %s",
        DEPLOYED_MODEL,
        metrics[DEPLOYED_MODEL]["prediction_agreement"],
        ONNX_DIR,
        ONNX_METRICS,
    )


if __name__ == "__main__":
    exit_on_user_error(main)
