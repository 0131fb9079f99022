"""Stage fit-classifier: the SVM on the fine-tuned pair features, C chosen on validation."""

import logging

from pair_classifier.classifier import fit_classifier, labels_of, pair_feature_matrix
from pair_classifier.config import (
    ClassifierConfig,
    DataConfig,
    TrackingConfig,
    check_classifier_exportable,
    read_params,
    read_seed,
    section,
)
from pair_classifier.constants import (
    BI_ENCODER_SUBDIR,
    CLASSIFIER_METRICS,
    CLASSIFIER_SUBDIR,
    PREPARED_DIR,
    TEACHER_DIR,
)
from pair_classifier.data.preparation import load_split
from pair_classifier.errors import exit_on_user_error
from pair_classifier.io_utils import replace_dir_atomically, write_json
from pair_classifier.model.bi_encoder import BiEncoder
from pair_classifier.tracking import log_artifacts, log_metrics, stage_run

logger = logging.getLogger(__name__)


def main() -> None:
    """Fit the SVM grid on the teacher's features and keep the best on validation."""
    params = read_params()
    data = section(params, "data", DataConfig)
    config = section(params, "classifier", ClassifierConfig)
    check_classifier_exportable(config, data)
    logger.info("Start: %s classifier grid on the features of %s", config.kind, TEACHER_DIR)
    with stage_run("fit-classifier", params, section(params, "tracking", TrackingConfig)):
        bi_encoder = BiEncoder.load(TEACHER_DIR / BI_ENCODER_SUBDIR)
        train, val = load_split(PREPARED_DIR, "train"), load_split(PREPARED_DIR, "val")
        classifier = fit_classifier(
            pair_feature_matrix(bi_encoder, train, config.batch_size),
            labels_of(train),
            pair_feature_matrix(bi_encoder, val, config.batch_size),
            labels_of(val),
            config,
            data.class_names,
            data.positive_label,
            read_seed(params),
        )
        out = TEACHER_DIR / CLASSIFIER_SUBDIR
        replace_dir_atomically(out, classifier.save)
        write_json(CLASSIFIER_METRICS, classifier.report)
        log_metrics(classifier.report, "classifier.")
        log_artifacts(out, f"model/{CLASSIFIER_SUBDIR}")
    logger.info(
        "Done: selected %s, validation accuracy %s; wrote %s, %s",
        classifier.report["selected"],
        classifier.report["val"]["accuracy"],
        out,
        CLASSIFIER_METRICS,
    )


if __name__ == "__main__":
    exit_on_user_error(main)
