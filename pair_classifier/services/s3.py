"""The S3-compatible server on loopback: moto's, with its objects saved to disk (``s3_store``).

It holds MLflow's artifacts under ``s3://<bucket>/<mlflow_prefix>`` and the DVC remote under
``s3://<bucket>/dvc``. It checks no credentials, so it listens on loopback only.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

from pair_classifier.services.common import (
    ServiceStatus,
    http_status,
    require_free_port,
    running,
    spawn,
    stop_process,
    wait_until,
    write_pid,
)
from pair_classifier.services.settings import ServicesConfig

logger = logging.getLogger(__name__)

NAME = "s3"
HTTP_OK = 200
ENV_PORT = "PAIR_CLASSIFIER_S3_PORT"
STORE_MODULE = "pair_classifier.services.s3_store"


def _paths(config: ServicesConfig) -> tuple[Path, Path, Path]:  # data folder, log, pid file
    return (config.root / "s3", config.logs_dir / "s3.log", config.root / "pids" / "s3.json")


def _healthy(config: ServicesConfig) -> bool:
    """Up once the bucket answers (the server creates it after it starts listening)."""
    return http_status(f"{config.s3.endpoint_url}/{config.s3.bucket}") == HTTP_OK


def start(config: ServicesConfig) -> str:
    """Start the server unless ``up`` already did; the bucket is created by the server."""
    data, log, pid_file = _paths(config)
    s3 = config.s3
    record = running(pid_file)
    if record is not None:
        wait_until(NAME, lambda: _healthy(config), config.start_timeout_s, log, record)
        return "already running"
    require_free_port(NAME, s3.host, s3.port, ENV_PORT)
    argv = [
        sys.executable, "-m", STORE_MODULE, "--host", s3.host, "--port", str(s3.port),
        "--data-dir", str(data), "--bucket", s3.bucket, "--region", s3.region,
    ]  # fmt: skip
    record = write_pid(pid_file, spawn(argv, log, env=dict(os.environ)))
    wait_until(NAME, lambda: _healthy(config), config.start_timeout_s, log, record)
    return f"started (PID {record.pid})"


def stop(config: ServicesConfig) -> bool:
    """SIGTERM: the server saves its objects, then exits."""
    _, _, pid_file = _paths(config)
    return stop_process(NAME, pid_file, signal.SIGTERM, config.stop_timeout_s, True)


def status(config: ServicesConfig) -> ServiceStatus:
    data, _, pid_file = _paths(config)
    record = running(pid_file)
    healthy = record is not None and _healthy(config)
    return ServiceStatus(
        NAME, healthy, config.s3.endpoint_url, record.pid if record else None,
        f"bucket {config.s3.bucket}, saved in {data}",
    )  # fmt: skip
