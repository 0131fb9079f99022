"""Stage distill: a smaller, pruned student distilled from the teacher, with its own SVM."""

import logging
from pathlib import Path

from pair_classifier.compress.student import distill_student
from pair_classifier.config import (
    ClassifierConfig,
    DataConfig,
    DistillConfig,
    ModelConfig,
    TrackingConfig,
    TrainConfig,
    read_params,
    read_seed,
    section,
)
from pair_classifier.constants import (
    BI_ENCODER_SUBDIR,
    CLASSIFIER_SUBDIR,
    CROSS_ENCODER_SUBDIR,
    DISTILL_CHECKPOINTS_DIR,
    DISTILL_METRICS,
    DVCLIVE_DISTILL_DIR,
    PREPARED_DIR,
    STUDENT_DIR,
    TEACHER_DIR,
)
from pair_classifier.errors import exit_on_user_error
from pair_classifier.io_utils import replace_dir_atomically, write_json
from pair_classifier.model.bi_encoder import BiEncoder
from pair_classifier.tracking import log_artifacts, log_metrics, stage_run, tracking_uri
from pair_classifier.training_loggers import training_loggers

logger = logging.getLogger(__name__)


def main() -> None:
    """Build and distil the student, then swap it in with its SVM as one folder."""
    params = read_params()
    tracking = section(params, "tracking", TrackingConfig)
    distill = section(params, "distill", DistillConfig)
    logger.info(
        "Start: distilling a student from %s (logits of the %s) on %s",
        TEACHER_DIR,
        distill.teacher,
        PREPARED_DIR,
    )
    with stage_run("distill", params, tracking) as run_id:
        loggers = training_loggers(DVCLIVE_DISTILL_DIR, False, run_id, tracking_uri(tracking))
        cross_loggers = (
            training_loggers(
                DVCLIVE_DISTILL_DIR / CROSS_ENCODER_SUBDIR, False, run_id, tracking_uri(tracking)
            )
            if distill.teacher == "cross_encoder"
            else []
        )
        student, classifier, metrics = distill_student(
            BiEncoder.load(TEACHER_DIR / BI_ENCODER_SUBDIR),
            PREPARED_DIR,
            DISTILL_CHECKPOINTS_DIR,
            distill,
            section(params, "train", TrainConfig),
            section(params, "classifier", ClassifierConfig),
            section(params, "data", DataConfig),
            section(params, "model", ModelConfig),
            read_seed(params),
            loggers,
            cross_loggers,
        )

        def save(staging: Path) -> None:
            """Encoder and SVM swapped in together: never a new encoder beside an old SVM."""
            student.save(staging / BI_ENCODER_SUBDIR)
            classifier.save(staging / CLASSIFIER_SUBDIR)

        replace_dir_atomically(STUDENT_DIR, save)
        write_json(DISTILL_METRICS, metrics)
        log_metrics(metrics, "distill.")
        log_artifacts(STUDENT_DIR, "model/student")
    logger.info(
        "Done: student of %d parameters (teacher %d), validation accuracy %s; wrote %s, %s",
        metrics["student_parameters"],
        metrics["teacher_parameters"],
        metrics["classifier"]["val"]["accuracy"],
        STUDENT_DIR,
        DISTILL_METRICS,
    )


if __name__ == "__main__":
    exit_on_user_error(main)
