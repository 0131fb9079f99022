"""The ``serving`` section of params.yaml: where the servers and the proxy listen, the request
limits and the name of the variable that holds the proxy's token (never the token itself).

It lives here rather than in ``pair_classifier.config`` because that folder is a dependency of
every pipeline stage: a section no stage reads must not rerun the pipeline. Same rules as
there: no defaults, declared ranges, the key named in every error.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

from pair_classifier.config import ConfigError, read_params, section
from pair_classifier.config.rules import ParamsSection, rule
from pair_classifier.serving.traffic_log import TrafficLogSettings

logger = logging.getLogger(__name__)

SECTION_NAME = "serving"
MAX_PORT = 65535
LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (a host name counts as not)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class TrafficLogConfig(ParamsSection):
    """The served traffic log (``serving.traffic_log``, docs/monitoring.md): one JSON line per
    sampled pair, written by the model processes off the request path."""

    SECTION = f"{SECTION_NAME}.traffic_log"

    enabled: bool
    dir: str  # relative to where the serve command runs
    sample_rate: float = rule("probability")
    rotate_bytes: int = rule("positive")
    rotate_count: int = rule("non_negative")
    log_texts: bool

    def settings(self) -> TrafficLogSettings | None:
        """What the model processes get (as environment variables), or None when off."""
        if not self.enabled:
            return None
        return TrafficLogSettings(
            Path(self.dir), self.sample_rate, self.rotate_bytes, self.rotate_count, self.log_texts
        )

    def check(self) -> None:
        if self.enabled and not self.dir.strip():
            raise ConfigError(f"{self.SECTION}.dir: expected a folder to write the log to")


@dataclass(frozen=True)
class ServingConfig(ParamsSection):
    SECTION = SECTION_NAME

    host: str
    model_uri: str
    mlflow_port: int = rule("positive")
    mlflow_workers: int = rule("positive")
    max_batch_pairs: int = rule("positive")
    max_body_bytes: int = rule("positive")
    token_env: str
    min_token_chars: int = rule("positive")
    proxy_host: str
    proxy_port: int = rule("positive")
    start_timeout_s: float = rule("positive")
    stop_timeout_s: float = rule("positive")
    traffic_log: TrafficLogConfig

    def check(self) -> None:
        for key in ("mlflow_port", "proxy_port"):
            if getattr(self, key) > MAX_PORT:
                raise ConfigError(
                    f"{self.SECTION}.{key}: expected a TCP port (1-{MAX_PORT}), "
                    f"got {getattr(self, key)}"
                )
        if not is_loopback(self.host):
            raise ConfigError(
                f"{self.SECTION}.host: the servers answer without a token, so they bind loopback "
                f"only, got {self.host!r}; expose them through `pair-classifier serve expose`"
            )
        if not self.token_env.strip():
            raise ConfigError(f"{self.SECTION}.token_env: expected an environment variable name")
        if not self.model_uri.strip():
            raise ConfigError(f"{self.SECTION}.model_uri: expected an MLflow model URI")


def load_serving(params_file: Path) -> ServingConfig:
    """The ``serving`` section of ``params_file``, checked."""
    config = section(read_params(params_file), SECTION_NAME, ServingConfig)
    logger.debug("serving settings from %s: %s", params_file, config)
    return config
