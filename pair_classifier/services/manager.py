"""``services up | down | status``: every service in dependency order (PostgreSQL and S3
before the MLflow server that uses them; stopped in the reverse order)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from pair_classifier.services import mlflow_server, postgres, s3
from pair_classifier.services.common import ServiceStatus
from pair_classifier.services.settings import ServicesConfig

logger = logging.getLogger(__name__)

SERVICES = (postgres, s3, mlflow_server)  # start order


def up(config: ServicesConfig, report: Callable[[str], None] = logger.info) -> None:
    """Start what is not running; a second ``up`` only checks that all are healthy."""
    mlflow_server.check_bind(config)  # refuse before starting anything
    for service in SERVICES:
        report(f"{service.NAME}: {service.start(config)}")


def down(config: ServicesConfig, report: Callable[[str], None] = logger.info) -> None:
    """Stop what ``up`` started, by recorded PID; data folders stay."""
    for service in reversed(SERVICES):
        report(f"{service.NAME}: {'stopped' if service.stop(config) else 'not running'}")


def status(config: ServicesConfig) -> list[ServiceStatus]:
    return [service.status(config) for service in SERVICES]
