"""Stage evaluate: score the teacher model on the held-out split; metrics and plots for DVC."""

import logging

from pair_classifier.classifier import labels_of
from pair_classifier.config import DataConfig, EvaluateConfig, TrackingConfig, read_params, section
from pair_classifier.constants import (
    EVALUATE_METRICS,
    EVALUATE_PLOTS_DIR,
    PREPARED_DIR,
    TEACHER_DIR,
)
from pair_classifier.data.preparation import load_split
from pair_classifier.errors import exit_on_user_error
from pair_classifier.io_utils import write_json
from pair_classifier.plots import write_evaluation
from pair_classifier.predictor import PairPredictor
from pair_classifier.tracking import log_artifacts, log_metrics, stage_run

logger = logging.getLogger(__name__)


def main() -> None:
    """Score the teacher on ``evaluate.split`` and write the report and plots."""
    params = read_params()
    data = section(params, "data", DataConfig)
    config = section(params, "evaluate", EvaluateConfig)
    logger.info("Start: scoring %s on the %s split of %s", TEACHER_DIR, config.split, PREPARED_DIR)
    with stage_run("evaluate", params, section(params, "tracking", TrackingConfig)):
        frame = load_split(PREPARED_DIR, config.split)
        probabilities = PairPredictor.load(TEACHER_DIR, config.batch_size).predict_proba(frame)
        report = write_evaluation(
            labels_of(frame),
            probabilities,
            data.class_names,
            data.positive_index,
            config.roc_points,
            EVALUATE_PLOTS_DIR,
        )
        write_json(EVALUATE_METRICS, report)
        log_metrics(report, f"{config.split}.")
        log_artifacts(EVALUATE_PLOTS_DIR, "plots/evaluate")
    logger.info(
        "Done: %s accuracy %.4f, F1 %.4f on %d pairs; wrote %s, %s",
        config.split,
        report["accuracy"],
        report["f1"],
        report["pairs"],
        EVALUATE_METRICS,
        EVALUATE_PLOTS_DIR,
    )


if __name__ == "__main__":
    exit_on_user_error(main)
