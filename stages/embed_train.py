"""Stage embed-train: fine-tune the bi-encoder (Lightning), keep its best weights."""

import logging

from pair_classifier.config import (
    DataConfig,
    ModelConfig,
    TrackingConfig,
    TrainConfig,
    read_params,
    read_seed,
    section,
)
from pair_classifier.constants import (
    BI_ENCODER_SUBDIR,
    CHECKPOINTS_DIR,
    DVCLIVE_DIR,
    PREPARED_DIR,
    TEACHER_DIR,
    TRAIN_LOSS_PNG,
    TRAIN_METRICS,
    TRAIN_PLOTS_DIR,
)
from pair_classifier.errors import exit_on_user_error
from pair_classifier.io_utils import replace_dir_atomically, write_json
from pair_classifier.plots import save_loss_png
from pair_classifier.tracking import (
    is_worker_process,
    log_artifacts,
    log_metrics,
    stage_run,
    tracking_uri,
)
from pair_classifier.training import plan_run, train_bi_encoder, training_fingerprint
from pair_classifier.training_loggers import loss_curves, training_loggers, write_curve_data

logger = logging.getLogger(__name__)


def main() -> None:
    """Train (or resume) the teacher, then save it, its metrics and loss curves."""
    params = read_params()
    data = section(params, "data", DataConfig)
    model = section(params, "model", ModelConfig)
    train = section(params, "train", TrainConfig)
    tracking = section(params, "tracking", TrackingConfig)
    seed = read_seed(params)
    logger.info(
        "Start: fine-tuning %s on %s for %d epochs", model.pretrained, PREPARED_DIR, train.epochs
    )
    with stage_run("embed-train", params, tracking) as run_id:
        # Only once the configs are read and tracking answers: a finished or changed run's
        # checkpoints are cleared here, and DVC does not cache them.
        # Everything dvc.yaml lists for this stage (params and deps) identifies the training.
        run = plan_run(CHECKPOINTS_DIR, training_fingerprint("embed-train", params))
        loggers = training_loggers(
            DVCLIVE_DIR, run.resume_from is not None, run_id, tracking_uri(tracking)
        )
        bi_encoder, metrics, best_checkpoint = train_bi_encoder(
            PREPARED_DIR, run, model, train, data, seed, loggers
        )
        if is_worker_process():
            return
        out = TEACHER_DIR / BI_ENCODER_SUBDIR
        replace_dir_atomically(out, bi_encoder.save)
        write_json(TRAIN_METRICS, metrics)
        save_loss_png(loss_curves(DVCLIVE_DIR), TRAIN_LOSS_PNG)
        write_curve_data(DVCLIVE_DIR, TRAIN_PLOTS_DIR)
        log_metrics(metrics, "train.")
        if tracking.log_checkpoint:
            log_artifacts(best_checkpoint, "checkpoints")
        log_artifacts(out, f"model/{BI_ENCODER_SUBDIR}")
        # Last: a failure above (an MLflow upload, say) leaves the run resumable from its final
        # checkpoint, instead of marked finished and retrained from scratch by the next repro.
        run.mark_completed()
    logger.info(
        "Done: best validation accuracy %.4f; wrote %s, %s",
        metrics["best_val_acc"],
        out,
        TRAIN_METRICS,
    )


if __name__ == "__main__":
    exit_on_user_error(main)
