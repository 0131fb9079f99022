"""The ``monitoring`` section of params.yaml: where the exporter and Prometheus listen, what the
exporter reads and its histogram buckets, how often Prometheus scrapes and evaluates its rules.

It lives beside the monitoring code rather than in ``pair_classifier.config`` because that
folder is a dependency of every pipeline stage: a section no stage reads must not rerun the
pipeline. Same rules as there: no defaults, declared ranges, the key named in every error.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from pair_classifier.config import ConfigError, read_params, section
from pair_classifier.config.rules import ParamsSection, rule
from pair_classifier.serving.settings import is_loopback

logger = logging.getLogger(__name__)

SECTION_NAME = "monitoring"
MAX_PORT = 65535
RETENTION_PATTERN = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")  # a Prometheus duration


def _check_port(where: str, port: int) -> None:
    if port > MAX_PORT:
        raise ConfigError(f"{where}: expected a TCP port (1-{MAX_PORT}), got {port}")


def _check_ascending(where: str, values: list[float]) -> None:
    if sorted(set(values)) != values:
        raise ConfigError(f"{where}: expected strictly ascending bucket bounds, got {values}")


@dataclass(frozen=True)
class ExporterSettings(ParamsSection):
    """`pair-classifier monitor exporter`: its port, how often it reads, its buckets."""

    SECTION = f"{SECTION_NAME}.exporter"

    port: int = rule("positive")
    poll_interval_s: float = rule("positive")
    from_start: bool  # count the lines already in the log when it starts
    confidence_buckets: list[float] = rule("probability")
    latency_buckets_s: list[float] = rule("positive")

    def check(self) -> None:
        _check_port(f"{self.SECTION}.port", self.port)
        _check_ascending(f"{self.SECTION}.confidence_buckets", self.confidence_buckets)
        _check_ascending(f"{self.SECTION}.latency_buckets_s", self.latency_buckets_s)


@dataclass(frozen=True)
class PrometheusSettings(ParamsSection):
    """The Prometheus server `pair-classifier monitor prometheus` runs."""

    SECTION = f"{SECTION_NAME}.prometheus"

    port: int = rule("positive")
    scrape_interval_s: int = rule("positive")
    evaluation_interval_s: int = rule("positive")
    data_dir: str  # its time-series database
    retention: str  # a Prometheus duration: 15d, 12h

    def check(self) -> None:
        _check_port(f"{self.SECTION}.port", self.port)
        if not RETENTION_PATTERN.match(self.retention):
            raise ConfigError(
                f"{self.SECTION}.retention: expected a Prometheus duration such as 15d or 12h, "
                f"got {self.retention!r}"
            )


@dataclass(frozen=True)
class MonitoringConfig(ParamsSection):
    SECTION = SECTION_NAME

    host: str
    exporter: ExporterSettings
    prometheus: PrometheusSettings

    def check(self) -> None:
        if not is_loopback(self.host):
            raise ConfigError(
                f"{self.SECTION}.host: the exporter and Prometheus answer without credentials, "
                f"so they bind loopback only, got {self.host!r}"
            )
        if self.exporter.port == self.prometheus.port:
            raise ConfigError(
                f"{self.SECTION}: exporter.port and prometheus.port are both {self.exporter.port}"
            )


def load_monitoring(params_file: Path) -> MonitoringConfig:
    """The ``monitoring`` section of ``params_file``, checked."""
    config = section(read_params(params_file), SECTION_NAME, MonitoringConfig)
    logger.debug("monitoring settings from %s: %s", params_file, config)
    return config
