"""The ``services`` section of params.yaml, with environment variables laid over it.

The dataclasses live here rather than in ``pair_classifier.config`` because that folder is a
dependency of every pipeline stage: a section no stage reads must not rerun the pipeline.
They follow the same rules (no defaults, declared ranges, the key named in every error).
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pair_classifier.config import ConfigError, read_params, section
from pair_classifier.config.rules import ParamsSection, rule
from pair_classifier.constants import PARAMS_FILE

logger = logging.getLogger(__name__)

SECTION_NAME = "services"
MAX_PORT = 65535
LOOPBACK_NAMES = ("localhost",)
# Environment variable -> the key of the services section it replaces (parsed as YAML, so
# "5433" is a number and "true" a boolean; the section's rules then check it).
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "PAIR_CLASSIFIER_SERVICES_DIR": ("data_dir",),
    "PAIR_CLASSIFIER_POSTGRES_PORT": ("postgres", "port"),
    "PAIR_CLASSIFIER_POSTGRES_OS_USER": ("postgres", "os_user"),
    "PAIR_CLASSIFIER_S3_PORT": ("s3", "port"),
    "PAIR_CLASSIFIER_S3_BUCKET": ("s3", "bucket"),
    "PAIR_CLASSIFIER_MLFLOW_HOST": ("mlflow", "host"),
    "PAIR_CLASSIFIER_MLFLOW_PORT": ("mlflow", "port"),
    "PAIR_CLASSIFIER_MLFLOW_AUTH": ("mlflow", "auth"),
}


def _check_port(where: str, port: int) -> None:
    if port > MAX_PORT:
        raise ConfigError(f"{where}: expected a TCP port (1-{MAX_PORT}), got {port}")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: treated as reachable from elsewhere
        return False


@dataclass(frozen=True)
class PostgresSettings(ParamsSection):
    SECTION = "services.postgres"

    host: str
    port: int = rule("positive")
    os_user: str
    database: str
    role: str

    def check(self) -> None:
        _check_port(f"{self.SECTION}.port", self.port)
        if not is_loopback(self.host):
            raise ConfigError(f"{self.SECTION}.host: the local cluster listens on loopback only")


@dataclass(frozen=True)
class S3Settings(ParamsSection):
    SECTION = "services.s3"

    host: str
    port: int = rule("positive")
    bucket: str
    region: str
    mlflow_prefix: str
    dvc_remote: str

    def check(self) -> None:
        _check_port(f"{self.SECTION}.port", self.port)
        if not is_loopback(self.host):
            raise ConfigError(
                f"{self.SECTION}.host: the local S3 server has no auth: loopback only"
            )

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class MlflowServerSettings(ParamsSection):
    SECTION = "services.mlflow"

    host: str
    port: int = rule("positive")
    workers: int = rule("positive")
    auth: bool

    def check(self) -> None:
        _check_port(f"{self.SECTION}.port", self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class ServicesConfig(ParamsSection):
    SECTION = SECTION_NAME

    data_dir: str
    start_timeout_s: float = rule("positive")
    stop_timeout_s: float = rule("positive")
    postgres: PostgresSettings
    s3: S3Settings
    mlflow: MlflowServerSettings

    @property
    def root(self) -> Path:
        return Path(self.data_dir).resolve()

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"


def _overridden(raw: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """The section's mapping with every set ``ENV_OVERRIDES`` variable laid over it."""
    merged = copy.deepcopy(raw)
    for variable, key in ENV_OVERRIDES.items():
        if variable in environ:
            target = merged
            for part in key[:-1]:
                target = target.setdefault(part, {})
            target[key[-1]] = yaml.safe_load(environ[variable])
            logger.info("%s=%s sets services.%s", variable, environ[variable], ".".join(key))
    return merged


def load_services(
    params_file: Path = PARAMS_FILE, environ: dict[str, str] | None = None
) -> ServicesConfig:
    """The services section of ``params_file``, environment variables winning."""
    params = read_params(params_file)
    if SECTION_NAME not in params:
        raise ConfigError(f"{params_file}: missing section {SECTION_NAME!r}")
    env = dict(os.environ if environ is None else environ)
    params = {**params, SECTION_NAME: _overridden(params[SECTION_NAME], env)}
    return section(params, SECTION_NAME, ServicesConfig)
