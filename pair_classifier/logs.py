"""Console logging for the stages: one format with the time and the logger's name, set up once
per process by the stage entry point, so a long stage says what it is doing and since when."""

from __future__ import annotations

import logging
import os
import sys
import time

from pair_classifier.constants import ENV_LOG_LEVEL

DEFAULT_LOG_LEVEL = "INFO"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
MAIN_MODULE = "__main__"
# The project's own loggers; libraries keep logging's default (warnings and errors only).
OWN_LOGGERS = ("pair_classifier", "stages", MAIN_MODULE)
PROGRESS_EVERY_S = 10.0  # seconds between the progress lines of a long loop

logger = logging.getLogger(__name__)


class _MainModuleName(logging.Filter):
    """A stage runs as ``python -m stages.<name>``, so its logger is called ``__main__``; the
    log names it ``stages.<name>`` instead, which says which stage wrote the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        spec = getattr(sys.modules.get(MAIN_MODULE), "__spec__", None)
        if record.name == MAIN_MODULE and spec is not None:
            record.name = spec.name
        return True


class _StageHandler(logging.StreamHandler):
    """The handler ``configure_logging`` installs, told apart so a second call replaces it."""


def configure_logging() -> None:
    """Log the project's own messages to stderr at the level named by
    ``PAIR_CLASSIFIER_LOG_LEVEL`` (default INFO); libraries' INFO chatter stays out.

    An unknown level name does not stop a stage that may have hours of work ahead: it logs at
    the default level and says, in a warning, which names the variable accepts."""
    requested = os.environ.get(ENV_LOG_LEVEL, DEFAULT_LOG_LEVEL).strip().upper()
    levels = logging.getLevelNamesMapping()
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(levels.get(requested, levels[DEFAULT_LOG_LEVEL]))
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StageHandler)]:
        root.removeHandler(handler)
    handler = _StageHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
    handler.addFilter(_MainModuleName())
    root.addHandler(handler)
    if requested not in levels:
        expected = ", ".join(name for name in levels if name != "NOTSET")
        logger.warning(
            "%s=%r is not a log level (expected one of %s); logging at %s",
            ENV_LOG_LEVEL,
            os.environ[ENV_LOG_LEVEL],
            expected,
            DEFAULT_LOG_LEVEL,
        )


class Progress:
    """Counts the steps of a long loop and logs how far it is every ``PROGRESS_EVERY_S``
    seconds, so a minutes-long pass (teacher targets, calibration, scoring) is seen to move."""

    def __init__(
        self,
        what: str,
        total: int,
        log: logging.Logger,
        unit: str = "batches",
        announce: bool = True,
    ) -> None:
        """``announce=False`` leaves out the start line, for a loop that is often short (only a
        long one then shows, by its progress lines)."""
        self.what, self.total, self.unit, self.log = what, total, unit, log
        self.done = 0
        self.started = self.last = time.monotonic()
        if announce:
            log.info("%s: %d %s", what, total, unit)

    def step(self, count: int = 1) -> None:
        """``count`` more steps done; a progress line when the last one is old enough."""
        self.done += count
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S and self.done < self.total:
            self.last = now
            self.log.info(
                "%s: %d of %d %s (%.0f%%), %.0f s so far",
                self.what,
                self.done,
                self.total,
                self.unit,
                100 * self.done / max(self.total, 1),
                self.elapsed,
            )

    @property
    def elapsed(self) -> float:
        """Seconds since the loop started."""
        return time.monotonic() - self.started
