"""Stage prepare: raw pair files -> validated parquet splits, quarantine file, data report."""

import logging
from pathlib import Path

from pair_classifier.config import (
    ClassifierConfig,
    DataConfig,
    ModelConfig,
    PrepareConfig,
    TrackingConfig,
    check_classifier_exportable,
    read_params,
    section,
)
from pair_classifier.constants import DATA_METRICS, PREPARED_DIR, QUARANTINE_FILE
from pair_classifier.data.preparation import prepare_data
from pair_classifier.errors import exit_on_user_error
from pair_classifier.io_utils import write_json
from pair_classifier.model.encoder import load_tokenizer, token_counter
from pair_classifier.tracking import log_artifacts, log_metrics, stage_run

logger = logging.getLogger(__name__)


def main() -> None:
    """Validate the raw files and write the splits; config checks come first."""
    params = read_params()
    data = section(params, "data", DataConfig)
    prepare = section(params, "prepare", PrepareConfig)
    model = section(params, "model", ModelConfig)
    logger.info(
        "Start: validating %s (%s) into %s; invalid rows: %s",
        data.dir,
        data.name,
        PREPARED_DIR,
        prepare.on_invalid,
    )
    check_classifier_exportable(section(params, "classifier", ClassifierConfig), data)
    with stage_run("prepare", params, section(params, "tracking", TrackingConfig)):
        count_tokens = token_counter(load_tokenizer(model))
        report = prepare_data(
            Path(data.dir), PREPARED_DIR, data, prepare, count_tokens, model.max_length
        )
        write_json(DATA_METRICS, report)
        log_metrics(report, "data.")
        log_artifacts(PREPARED_DIR / QUARANTINE_FILE, "prepared")
    logger.info(
        "Done: pairs kept %s, %d invalid rows; wrote %s, %s",
        {split: counts["pairs"] for split, counts in report["splits"].items()},
        report["invalid_rows"]["total"],
        PREPARED_DIR,
        DATA_METRICS,
    )


if __name__ == "__main__":
    exit_on_user_error(main)
