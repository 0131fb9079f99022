"""Stage load-test: Triton, MLflow serving of the same registered version and MLflow serving of
the PyTorch teacher, loaded side by side by locust; metrics/serving.json and plots/serving/."""

import logging
import tempfile
from pathlib import Path

from pair_classifier.benchmark.machine import machine_record
from pair_classifier.config import TrackingConfig, read_params, section
from pair_classifier.constants import (
    PREPARED_DIR,
    REGISTER_METRICS,
    SERVING_METRICS,
    SERVING_PLOTS_DIR,
    TEACHER_DIR,
)
from pair_classifier.data.preparation import load_split
from pair_classifier.errors import exit_on_user_error
from pair_classifier.io_utils import write_json
from pair_classifier.loadtest.baseline import save_folder_pyfunc
from pair_classifier.loadtest.load_test import run_load_test
from pair_classifier.loadtest.report import serving_record, write_serving_plots
from pair_classifier.loadtest.settings import SECTION_NAME, LoadTestConfig
from pair_classifier.loadtest.targets import free_ports, mlflow_target, triton_target
from pair_classifier.serving.settings import ServingConfig
from pair_classifier.serving.triton_repository import registered_model
from pair_classifier.serving.triton_settings import TritonConfig
from pair_classifier.tracking import log_artifacts, log_metrics, stage_run

logger = logging.getLogger(__name__)

TRITON, MLFLOW, MLFLOW_TEACHER = "triton", "mlflow", "mlflow_teacher"
PORTS = 4  # Triton (HTTP, metrics) and two MLflow servers


def main() -> None:
    """Serve, load, stop each server in turn; write the side-by-side figures."""
    params = read_params()
    config = section(params, SECTION_NAME, LoadTestConfig)
    serving = section(params, "serving", ServingConfig)
    triton = section(params, "triton", TritonConfig)
    registered = registered_model(REGISTER_METRICS)
    model_uri = f"models:/{registered['model_name']}/{registered['version']}"
    pairs = load_split(PREPARED_DIR, config.split).head(config.pairs)
    logger.info(
        "Start: %d %s pairs, one per request, at %s clients: Triton and MLflow serving of %s, "
        "MLflow serving of %s",
        len(pairs),
        config.split,
        config.clients,
        model_uri,
        TEACHER_DIR,
    )
    with stage_run("load-test", params, section(params, "tracking", TrackingConfig)):
        with tempfile.TemporaryDirectory(prefix="pair-classifier-load-") as tmp:
            workdir = Path(tmp)
            teacher = save_folder_pyfunc(
                TEACHER_DIR, workdir / "teacher_pyfunc", config.teacher_batch_size
            )
            ports = free_ports(serving.host, PORTS)
            targets = [
                triton_target(TRITON, serving.host, ports[0], ports[1], triton.model_name),
                mlflow_target(MLFLOW, serving.host, ports[2], model_uri),
                mlflow_target(MLFLOW_TEACHER, serving.host, ports[3], str(teacher)),
            ]
            points, soak = run_load_test(config, targets, pairs, workdir, TRITON)
        context = {
            "machine": machine_record(),
            "model": model_uri,
            "pairs": len(pairs),
            "split": config.split,
            "point_duration_s": config.point_duration_s,
            "pairs_per_request": 1,
        }
        record = serving_record(points, soak, config.compared_at, TRITON, context)
        write_json(SERVING_METRICS, record)
        write_serving_plots(points, SERVING_PLOTS_DIR)
        log_metrics(record[f"at_{config.compared_at}_clients"], "serving.")
        log_artifacts(SERVING_PLOTS_DIR, "plots/serving")
    logger.info(
        "Done: at %d clients %s; wrote %s and %s",
        config.compared_at,
        record[f"at_{config.compared_at}_clients"],
        SERVING_METRICS,
        SERVING_PLOTS_DIR,
    )


if __name__ == "__main__":
    exit_on_user_error(main)
