"""Stage register: the served graph as a new version of the registered model, champion or not."""

import logging

from pair_classifier.config import TrackingConfig, read_params, section
from pair_classifier.constants import (
    BENCHMARK_METRICS,
    ONNX_DIR,
    QUANTIZED_DIR,
    REGISTER_METRICS,
)
from pair_classifier.errors import exit_on_user_error
from pair_classifier.export.served import served_model
from pair_classifier.io_utils import write_json
from pair_classifier.registry.lineage import record_lineage
from pair_classifier.registry.register import headline_metrics, register_served_model
from pair_classifier.registry.settings import SECTION_NAME, RegisterConfig
from pair_classifier.tracking import current_lineage, log_metrics, stage_run

logger = logging.getLogger(__name__)


def main() -> None:
    """Log the served model, register it, move `champion` only when it wins."""
    params = read_params()
    config = section(params, SECTION_NAME, RegisterConfig)
    served = served_model(BENCHMARK_METRICS, ONNX_DIR, QUANTIZED_DIR)
    headline = headline_metrics(BENCHMARK_METRICS, served)
    logger.info(
        "Start: %s (%s, %s %.4f, %.1f pairs/s) as a new version of %s",
        served.graph,
        served.benchmark_name,
        config.metric,
        headline[config.metric],
        headline["throughput_pairs_per_s"],
        config.model_name,
    )
    with stage_run("register", params, section(params, "tracking", TrackingConfig)):
        lineage = current_lineage()
        record_lineage(lineage)  # params.yaml, dvc.lock, the diff: `pair-classifier lineage`
        record = register_served_model(served, headline, config, lineage)
        write_json(REGISTER_METRICS, record)
        log_metrics({"version": record["version"]}, "register.")
    logger.info(
        "Done: %s version %s is the %s (%s); wrote %s",
        record["model_name"],
        record["version"],
        record["alias"],
        record["champion_decision"],
        REGISTER_METRICS,
    )


if __name__ == "__main__":
    exit_on_user_error(main)
