"""`pair-classifier monitor exporter`: the served traffic log and the latest drift.json as
Prometheus metrics on ``monitoring.host:monitoring.exporter.port`` (``/metrics``).

Triton's own endpoint counts requests, failures and time spent; what only the traffic log knows
(which label the model answered, how sure it was, whether a text was cut at max_length, the
model-side latency of each logged pair) and the drift verdicts are exported here, so that one
Prometheus can alert on both. The log is followed like ``tail -F`` (``log_tail``), across
rotation and new model processes. The log is sampled, so the counters count logged pairs:
their ratios (label mix, truncation rate) hold, their absolute rates are the sampled share of
the traffic.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pair_classifier.monitoring.checks import DRIFT, SKIPPED
from pair_classifier.monitoring.log_tail import TrafficTail
from pair_classifier.monitoring.prom_settings import MonitoringConfig
from pair_classifier.serving.process import STOP_SIGNALS, require_free_port
from pair_classifier.serving.traffic_log import (
    LATENCY_MS,
    MODEL_NAME,
    MODEL_VERSION,
    PREDICTED_LABEL,
    PROBABILITIES,
    SERVER,
    TRUNCATED,
)

logger = logging.getLogger(__name__)

NAME = "pair-classifier monitor exporter"
PREFIX = "pair_classifier"
MS_PER_S = 1000.0
SHOWN_CHARS = 120  # of a bad log line, in the warning
RECORD_LABELS = ("server", "model", "version")


@dataclass(frozen=True)
class TrafficRecord:
    """The fields of one traffic-log line the metrics use."""

    server: str
    model: str
    version: str
    label: str
    truncated: bool
    confidence: float  # the top class probability
    latency_s: float

    @classmethod
    def parse(cls, line: bytes) -> TrafficRecord:
        """One JSON line; a ``ValueError`` names the field that is missing or wrong."""
        record = json.loads(line)
        if not isinstance(record, dict):
            raise ValueError("expected a JSON object")
        try:
            probabilities = [float(p) for p in dict(record[PROBABILITIES]).values()]
            latency_ms = float(record[LATENCY_MS])
            parsed = cls(
                server=str(record[SERVER]),
                model=str(record[MODEL_NAME]),
                version=str(record[MODEL_VERSION]),
                label=str(record[PREDICTED_LABEL]),
                truncated=_flag(record[TRUNCATED]),
                confidence=max(probabilities),
                latency_s=latency_ms / MS_PER_S,
            )
        except KeyError as error:
            raise ValueError(f"missing field {error}") from None
        except (TypeError, ValueError) as error:
            raise ValueError(f"a field of the wrong type ({error})") from None
        if not all(0.0 <= p <= 1.0 for p in probabilities) or not math.isfinite(latency_ms):
            raise ValueError("probabilities outside [0, 1] or a latency that is not a number")
        return parsed


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"truncated: expected true or false, got {value!r}")
    return value


class TrafficMetrics:
    """The counters and histograms of the logged pairs, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry, config: MonitoringConfig) -> None:
        self.pairs = Counter(
            f"{PREFIX}_logged_pairs",
            "Logged pairs by predicted label (the label mix); sampled as the log is",
            [*RECORD_LABELS, "label"],
            registry=registry,
        )
        self.truncated = Counter(
            f"{PREFIX}_logged_truncated_pairs",
            "Logged pairs with a text cut at the model's max_length",
            RECORD_LABELS,
            registry=registry,
        )
        self.confidence = Histogram(
            f"{PREFIX}_confidence",
            "Top class probability of each logged pair",
            RECORD_LABELS,
            buckets=config.exporter.confidence_buckets,
            registry=registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_model_latency_seconds",
            "Model-side latency of each logged pair's request, as the server logged it",
            RECORD_LABELS,
            buckets=config.exporter.latency_buckets_s,
            registry=registry,
        )
        self.bad_lines = Counter(
            f"{PREFIX}_traffic_log_bad_lines",
            "Traffic-log lines the exporter could not read (skipped; see its log)",
            registry=registry,
        )

    def add(self, record: TrafficRecord) -> None:
        where = (record.server, record.model, record.version)
        self.pairs.labels(*where, record.label).inc()
        truncated = self.truncated.labels(*where)  # a series from the first pair on, so that
        if record.truncated:  # the truncation rate is 0, not missing, while none is cut
            truncated.inc()
        self.confidence.labels(*where).observe(record.confidence)
        self.latency.labels(*where).observe(record.latency_s)

    def add_lines(self, lines: Iterable[bytes], source: Path) -> int:
        """Count each line; a line that is not a record is skipped with a warning naming it."""
        added = 0
        for line in lines:
            try:
                self.add(TrafficRecord.parse(line))
                added += 1
            except ValueError as error:
                self.bad_lines.inc()
                shown = line[:SHOWN_CHARS].decode(errors="replace")
                logger.warning("%s: skipped a line (%s): %s", source, error, shown)
        return added


@dataclass(frozen=True)
class DriftCheck:
    score: float | None  # None for a check the run skipped (too few pairs, one class)
    threshold: float | None
    verdict: str  # drift, no_drift or skipped


@dataclass(frozen=True)
class DriftReport:
    checks: dict[str, DriftCheck]
    drift: bool
    modified: float  # the file's modification time, seconds since the epoch


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def read_drift_report(path: Path) -> DriftReport:
    """drift.json as `pair-classifier drift` writes it: ``{"verdict", "checks": {name:
    {"score", "threshold", "verdict", ...}}}``; a ``ValueError`` names what does not fit."""
    report = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(report, dict) or not isinstance(report.get("checks"), dict):
        raise ValueError("expected an object with a 'checks' object")
    try:
        checks = {
            str(name): DriftCheck(
                _number(check["score"]), _number(check["threshold"]), str(check["verdict"])
            )
            for name, check in report["checks"].items()
        }
        overall = str(report["verdict"]) == DRIFT
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"a check without a score, threshold or verdict ({error!r})") from None
    return DriftReport(checks, overall, path.stat().st_mtime)


class DriftCollector(Collector):
    """Gauges of the latest drift report; none before one is read, and a check that a newer
    report leaves out disappears with it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.report: DriftReport | None = None
        self.errors = Counter(
            f"{PREFIX}_drift_report_errors",
            "Times drift.json could not be read (the last good report stays exported)",
            registry=registry,
        )
        registry.register(self)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        report = self.report
        if report is None:
            return
        families = {
            "score": GaugeMetricFamily(
                f"{PREFIX}_drift_score", "Drift score of each check", labels=["check"]
            ),
            "threshold": GaugeMetricFamily(
                f"{PREFIX}_drift_threshold",
                "Score beyond which the check says drift",
                labels=["check"],
            ),
            "detected": GaugeMetricFamily(
                f"{PREFIX}_drift_detected", "1 when the check found drift", labels=["check"]
            ),
            "skipped": GaugeMetricFamily(
                f"{PREFIX}_drift_skipped",
                "1 when the run skipped the check (too few pairs; its reason in drift.json)",
                labels=["check"],
            ),
        }
        for name, check in sorted(report.checks.items()):
            if check.score is not None and check.threshold is not None:
                families["score"].add_metric([name], check.score)
                families["threshold"].add_metric([name], check.threshold)
            families["detected"].add_metric([name], float(check.verdict == DRIFT))
            families["skipped"].add_metric([name], float(check.verdict == SKIPPED))
        yield from families.values()
        yield GaugeMetricFamily(
            f"{PREFIX}_drift_overall_detected",
            "1 when the latest drift report's verdict is drift",
            value=float(report.drift),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_drift_report_timestamp_seconds",
            "When the latest drift report was written (its file's modification time)",
            value=report.modified,
        )


class Exporter:
    """What one poll reads: new traffic-log lines, and drift.json when it changed."""

    def __init__(
        self, config: MonitoringConfig, traffic_log: Path, drift_report: Path, from_start: bool
    ) -> None:
        self.registry = CollectorRegistry()
        self.traffic = TrafficMetrics(self.registry, config)
        self.drift = DriftCollector(self.registry)
        self.tail = TrafficTail(traffic_log, from_start)
        self.drift_report = drift_report
        self._drift_seen: tuple[float, int] | None = None

    def poll(self) -> int:
        """Read what is new; the number of records added."""
        added = sum(self.traffic.add_lines(lines, file) for file, lines in self.tail.read())
        try:
            stat = self.drift_report.stat()
        except FileNotFoundError:
            return added
        seen = (stat.st_mtime, stat.st_size)
        if seen != self._drift_seen:
            self._drift_seen = seen
            try:
                self.drift.report = read_drift_report(self.drift_report)
                logger.info("%s: drift report read", self.drift_report)
            except (OSError, ValueError) as error:
                self.drift.errors.inc()
                logger.warning(
                    "%s: not a drift report (%s); kept the last one", self.drift_report, error
                )
        return added


def run_exporter(
    config: MonitoringConfig,
    traffic_log: Path,
    drift_report: Path,
    port: int,
    from_start: bool,
    on_ready: Callable[[str], None],
) -> None:
    """Serve the metrics until SIGTERM or Ctrl-C, reading every ``poll_interval_s``."""
    require_free_port(NAME, config.host, port)
    exporter = Exporter(config, traffic_log, drift_report, from_start)
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("%s: %s received; stopping", NAME, signal.Signals(signum).name)
        stop.set()

    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop)
    exporter.poll()
    server, thread = start_http_server(port, addr=config.host, registry=exporter.registry)
    on_ready(f"metrics on http://{config.host}:{port}/metrics (PID {os.getpid()})")
    logger.info("%s: following %s and %s", NAME, traffic_log, drift_report)
    try:
        while not stop.wait(config.exporter.poll_interval_s):
            added = exporter.poll()
            if added:
                logger.debug("%s: %d new records", NAME, added)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        exporter.tail.close()
        logger.info("%s: stopped", NAME)
