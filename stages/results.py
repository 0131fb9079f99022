"""Stage results: docs/results.md and README.md's headline block, from metrics/ and plots/."""

import logging
from pathlib import Path

from pair_classifier.constants import METRICS_DIR, PLOTS_DIR
from pair_classifier.errors import exit_on_user_error
from pair_classifier.results_page import write_results

logger = logging.getLogger(__name__)


def main() -> None:
    """Render the results page and the README's headline block from the committed metrics."""
    logger.info("Start: results from %s and %s", METRICS_DIR, PLOTS_DIR)
    written = write_results(Path.cwd())
    logger.info("Done: wrote %s", ", ".join(map(str, written)))


if __name__ == "__main__":
    exit_on_user_error(main)
