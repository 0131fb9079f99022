"""`pair-classifier monitor prometheus-config` and `monitor prometheus`: the scrape config
(Triton's metrics port and the exporter, the alert rules beside it) written from params.yaml,
and Debian's ``prometheus`` run on loopback with it.

The committed ``monitoring/prometheus/prometheus.yml`` is this module's rendering of the
committed params.yaml (a test compares them), so the ports have one source: configs/. The
server replaces the command's process (``exec``): stopping the command's PID stops Prometheus.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, NoReturn

import yaml

from pair_classifier.errors import PairClassifierError
from pair_classifier.monitoring.prom_settings import MonitoringConfig
from pair_classifier.serving.process import require_free_port

logger = logging.getLogger(__name__)

PROMETHEUS = "prometheus"
PROMTOOL = "promtool"
INSTALL_HINT = "install it (Debian/Ubuntu: apt-get install prometheus)"
CONFIG_DIR = Path("monitoring/prometheus")
CONFIG_FILE = CONFIG_DIR / "prometheus.yml"
RULES_FILE = "alerts.yml"  # beside the config: Prometheus resolves it from the config's folder
RULES_TEST_FILE = "alerts_test.yml"  # `promtool test rules` cases of the alerts
DRIFT_FILE = "drift.json"  # what `pair-classifier drift` writes in drift.out_dir
TRITON_JOB = "triton"
EXPORTER_JOB = "pair_classifier_exporter"
HEADER = (
    "# Written by `pair-classifier monitor prometheus-config` from params.yaml (the monitoring\n"
    "# section and triton.server.metrics_port); change those and rewrite it, not this file.\n"
    "# Alerts: alerts.yml beside it (docs/monitoring.md).\n"
)


class _IndentedDumper(yaml.SafeDumper):
    """Lists indented under their key, as prettier (the pre-commit hook) writes YAML."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


class MonitoringError(PairClassifierError):
    """Prometheus cannot be run as asked; the message says what to change."""


def scrape_config(config: MonitoringConfig, triton_target: str, exporter_target: str) -> dict:
    """prometheus.yml's content: both jobs (``host:port``), the rule file, the intervals."""
    return {
        "global": {
            "scrape_interval": f"{config.prometheus.scrape_interval_s}s",
            "evaluation_interval": f"{config.prometheus.evaluation_interval_s}s",
        },
        "rule_files": [RULES_FILE],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in ((TRITON_JOB, triton_target), (EXPORTER_JOB, exporter_target))
        ],
    }


def config_text(scrape: dict[str, Any]) -> str:
    return HEADER + yaml.dump(scrape, Dumper=_IndentedDumper, sort_keys=False)


def find_tool(name: str) -> str:
    """The Prometheus binary ``name`` on PATH; a ``MonitoringError`` says how to install it."""
    found = shutil.which(name)
    if found is None:
        raise MonitoringError(f"{name}: not found on PATH; {INSTALL_HINT}")
    return found


def prometheus_argv(config: MonitoringConfig, config_file: Path, port: int) -> list[str]:
    return [
        find_tool(PROMETHEUS),
        f"--config.file={config_file}",
        f"--storage.tsdb.path={config.prometheus.data_dir}",
        f"--storage.tsdb.retention.time={config.prometheus.retention}",
        f"--web.listen-address={config.host}:{port}",
    ]


def run_prometheus(config: MonitoringConfig, config_file: Path, port: int) -> NoReturn:
    """Replace this process by Prometheus on ``config.host:port`` with ``config_file``."""
    if not config_file.is_file():
        raise MonitoringError(
            f"{config_file}: no Prometheus config; write it: pair-classifier monitor "
            "prometheus-config"
        )
    rules = config_file.parent / RULES_FILE
    if not rules.is_file():
        raise MonitoringError(f"{rules}: the alert rules the config names are missing")
    require_free_port(PROMETHEUS, config.host, port)
    argv = prometheus_argv(config, config_file, port)
    Path(config.prometheus.data_dir).mkdir(parents=True, exist_ok=True)
    logger.info("%s: %s (PID %d)", PROMETHEUS, " ".join(argv), os.getpid())
    os.execv(argv[0], argv)
