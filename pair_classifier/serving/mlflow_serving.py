"""`pair-classifier serve mlflow`: MLflow's own scoring server (``mlflow models serve``) on the
registered model, in this environment (``--env-manager local``), bound to loopback.

The pyfunc's request limit travels in ``PAIR_CLASSIFIER_MAX_BATCH_PAIRS``, the registry in
``MLFLOW_TRACKING_URI`` (the store the register stage wrote, unless the environment names
another).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from pair_classifier.config import TrackingConfig
from pair_classifier.constants import ENV_TRACKING_URI
from pair_classifier.registry.pyfunc_model import ENV_MAX_BATCH_PAIRS
from pair_classifier.serving.process import answers_ok, require_free_port, run_foreground
from pair_classifier.serving.settings import ServingConfig
from pair_classifier.tracking import tracking_uri

logger = logging.getLogger(__name__)

NAME = "mlflow models serve"
HEALTH_PATH = "/ping"
INVOCATIONS_PATH = "/invocations"


def server_url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def serve_command(model_uri: str, host: str, port: int, workers: int) -> list[str]:
    """The ``mlflow models serve`` command line, with this environment's ``mlflow``."""
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    return [
        str(mlflow_cli),
        "models",
        "serve",
        "--model-uri",
        model_uri,
        "--env-manager",
        "local",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def serve_environment(config: ServingConfig, tracking: TrackingConfig) -> dict[str, str]:
    """This environment's variables, with its bin folder first on PATH (``mlflow models
    serve`` starts ``uvicorn`` by name), the registry, the pyfunc's request limit and, when
    on, the traffic log's settings."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env[ENV_TRACKING_URI] = tracking_uri(tracking)
    env[ENV_MAX_BATCH_PAIRS] = str(config.max_batch_pairs)
    traffic_log = config.traffic_log.settings()
    if traffic_log is not None:  # the workers write it (docs/monitoring.md)
        env |= traffic_log.environment()
    return env


def serve_mlflow(
    config: ServingConfig,
    tracking: TrackingConfig,
    model_uri: str,
    port: int,
    on_ready: Callable[[str], None],
) -> None:
    """Serve ``model_uri`` on ``config.host:port`` until SIGTERM or Ctrl-C."""
    require_free_port(NAME, config.host, port)
    url = server_url(config.host, port)
    run_foreground(
        NAME,
        serve_command(model_uri, config.host, port, config.mlflow_workers),
        serve_environment(config, tracking),
        ready=lambda: answers_ok(url + HEALTH_PATH),
        start_timeout_s=config.start_timeout_s,
        stop_timeout_s=config.stop_timeout_s,
        on_ready=lambda: on_ready(f"{model_uri} at {url}{INVOCATIONS_PATH}"),
    )
