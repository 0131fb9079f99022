"""``mlflow server`` on PostgreSQL and S3, serving artifacts itself so that a client needs only
MLFLOW_TRACKING_URI (no S3 credentials or endpoint).

One worker and no job runner keep it near 0.5 GB and ~20 s to start (docs/services.md). It
refuses to listen beyond loopback without MLflow's basic-auth app: the tracking server would
otherwise let anyone who reaches the port read and delete every run.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

from pair_classifier.services import postgres
from pair_classifier.services.common import (
    ServiceError,
    ServiceStatus,
    generated_secret,
    http_status,
    log_tail,
    require_free_port,
    running,
    spawn,
    stop_process,
    wait_until,
    write_pid,
)
from pair_classifier.services.s3_store import DUMMY_CREDENTIAL
from pair_classifier.services.settings import ServicesConfig, is_loopback

logger = logging.getLogger(__name__)

NAME = "mlflow"
ENV_PORT = "PAIR_CLASSIFIER_MLFLOW_PORT"
HEALTH_PATH = "/health"
STORE_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"  # needs PostgreSQL
HTTP_SERVER_ERROR = 500
HTTP_OK = 200
AUTH_APP = "basic-auth"
ENV_AUTH_CONFIG = "MLFLOW_AUTH_CONFIG_PATH"  # MLflow's: the basic-auth app's settings file
ENV_ADMIN_PASSWORD = "MLFLOW_AUTH_ADMIN_PASSWORD"  # MLflow's: the admin's first password
ENV_SECRET_KEY = "MLFLOW_FLASK_SERVER_SECRET_KEY"  # MLflow's: signs the auth app's CSRF tokens
# The basic-auth app's settings when the environment names none: MLflow's own defaults, with
# its user database kept beside the other services' data instead of in the working directory.
AUTH_CONFIG = """[mlflow]
default_permission = READ
database_uri = sqlite:///{database}
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
grant_default_workspace_access = false
"""
# The credentials the server uses for the bucket: the environment's, else moto's dummies.
AWS_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def _paths(config: ServicesConfig) -> tuple[Path, Path]:  # (log, pid file)
    return config.logs_dir / "mlflow.log", config.root / "pids" / "mlflow.json"


def check_bind(config: ServicesConfig) -> None:
    """Refuse a bind beyond loopback unless authentication is on."""
    server = config.mlflow
    if not is_loopback(server.host) and not server.auth:
        raise ServiceError(
            f"{NAME}: refusing to listen on {server.host} without authentication: set "
            "services.mlflow.auth: true (PAIR_CLASSIFIER_MLFLOW_AUTH=true, MLflow's basic-auth "
            "app; change its admin password at once) or bind 127.0.0.1"
        )


def _executable() -> str:
    """The ``mlflow`` of this environment (the one that has psycopg2 and boto3)."""
    beside = Path(sys.executable).parent / "mlflow"
    if not beside.is_file():
        raise ServiceError(f"{NAME}: {beside} not found; run `uv sync --extra cpu`")
    return str(beside)


def server_environment(config: ServicesConfig) -> dict[str, str]:
    env = dict(os.environ)
    for variable in AWS_CREDENTIALS:
        env.setdefault(variable, DUMMY_CREDENTIAL)
    env["MLFLOW_S3_ENDPOINT_URL"] = config.s3.endpoint_url
    env["AWS_DEFAULT_REGION"] = config.s3.region
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    # --backend-store-uri through the environment: on the command line its password would
    # show in every local user's `ps`.
    env["MLFLOW_BACKEND_STORE_URI"] = postgres.backend_store_uri(config)
    env.pop("MLFLOW_TRACKING_URI", None)
    if config.mlflow.auth:
        env.update(_auth_environment(config, env))
    return env


def _auth_environment(config: ServicesConfig, env: dict[str, str]) -> dict[str, str]:
    """The basic-auth app's settings file (written under data_dir unless the environment
    names one); its admin password must come from the environment."""
    if not env.get(ENV_ADMIN_PASSWORD):
        raise ServiceError(
            f"{NAME}: services.mlflow.auth is on but {ENV_ADMIN_PASSWORD} is unset; set it to "
            "the admin's first password (used once, when the user database is created)"
        )
    extra = (
        {}
        if env.get(ENV_SECRET_KEY)
        else {ENV_SECRET_KEY: generated_secret(config.root, "mlflow_flask_secret_key")}
    )
    if env.get(ENV_AUTH_CONFIG):
        return extra
    folder = config.root / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    ini = folder / "basic_auth.ini"
    ini.write_text(AUTH_CONFIG.format(database=folder / "basic_auth.db"))
    return extra | {ENV_AUTH_CONFIG: str(ini)}


def start(config: ServicesConfig) -> str:
    """Start the tracking server unless ``up`` already did."""
    check_bind(config)
    server = config.mlflow
    log, pid_file = _paths(config)
    record = running(pid_file)
    if record is not None:
        wait_until(NAME, lambda: _healthy(config), config.start_timeout_s, log, record)
        return "already running"
    require_free_port(NAME, "127.0.0.1" if server.host == "0.0.0.0" else server.host,
                      server.port, ENV_PORT)  # fmt: skip
    argv = [
        _executable(), "server", "--host", server.host, "--port", str(server.port),
        "--workers", str(server.workers),
        "--artifacts-destination", f"s3://{config.s3.bucket}/{config.s3.mlflow_prefix}",
        "--serve-artifacts",
    ]  # fmt: skip
    if server.auth:
        argv += ["--app-name", AUTH_APP]
    record = write_pid(pid_file, spawn(argv, log, env=server_environment(config)))
    logger.info("%s: waiting for %s (about 20-60 s; log: %s)", NAME, server.url, log)
    wait_until(NAME, lambda: _healthy(config), config.start_timeout_s, log, record)
    _open_store(config, log)
    return f"started (PID {record.pid})"


def _open_store(config: ServicesConfig, log: Path) -> None:
    """Make the first store request now: the server connects to PostgreSQL (and creates its
    tables) only then, retrying for minutes when it cannot. Done here, a broken store stops
    `up`, and a later outage is answered at once (HTTP 503) instead of after those minutes."""
    url = _health_url(config).removesuffix(HEALTH_PATH) + STORE_PATH
    status = http_status(url, config.start_timeout_s)
    if status is None or status >= HTTP_SERVER_ERROR:
        raise ServiceError(
            f"{NAME}: started, but its backend store (PostgreSQL) fails "
            f"({'no answer' if status is None else f'HTTP {status}'}); see {log}:\n{log_tail(log)}"
        )


def _health_url(config: ServicesConfig) -> str:
    host = "127.0.0.1" if config.mlflow.host == "0.0.0.0" else config.mlflow.host
    return f"http://{host}:{config.mlflow.port}{HEALTH_PATH}"


def _healthy(config: ServicesConfig) -> bool:
    return http_status(_health_url(config)) == HTTP_OK


def stop(config: ServicesConfig) -> bool:
    """SIGTERM to the server's process group (its uvicorn workers are in it)."""
    _, pid_file = _paths(config)
    return stop_process(NAME, pid_file, signal.SIGTERM, config.stop_timeout_s, True)


def status(config: ServicesConfig) -> ServiceStatus:
    _, pid_file = _paths(config)
    record = running(pid_file)
    healthy = record is not None and _healthy(config)
    auth = "basic-auth" if config.mlflow.auth else "no auth (loopback only)"
    return ServiceStatus(
        NAME, healthy, config.mlflow.url, record.pid if record else None,
        f"MLFLOW_TRACKING_URI={config.mlflow.url}, {auth}",
    )  # fmt: skip
