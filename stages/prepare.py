"""Stage prepare: raw pair files -> validated parquet splits, quarantine file, data report."""

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


def main() -> None:
    """Validate the raw files and write the splits; config checks come first."""
    params = read_params()
    data = section(params, "data", DataConfig)
    prepare = section(params, "prepare", PrepareConfig)
    model = section(params, "model", ModelConfig)
    check_classifier_exportable(section(params, "classifier", ClassifierConfig), data)
    with stage_run("prepare", params, section(params, "tracking", TrackingConfig)):
        count_tokens = token_counter(load_tokenizer(model))
        report = prepare_data(Path(data.dir), PREPARED_DIR, data, prepare, count_tokens)
        write_json(DATA_METRICS, report)
        log_metrics(report, "data.")
        log_artifacts(PREPARED_DIR / QUARANTINE_FILE, "prepared")


if __name__ == "__main__":
    exit_on_user_error(main)
