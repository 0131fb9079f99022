"""MLflow tracking: one run per pipeline run, a child run per stage, lineage on every run.

Stages are separate processes, so they find their pipeline run by a key made of what defines
the run: the git commit (and uncommitted changes), params.yaml, the data version, and the DVC
experiment name when there is one. The first stage to run creates it; a stage that DVC skips
logs nothing new.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import yaml

from pair_classifier.config import TrackingConfig
from pair_classifier.constants import (
    DATA_DVC_FILE,
    DVC_LOCK_FILE,
    DVC_YAML_FILE,
    ENV_DVC_EXP_NAME,
    ENV_TRACKING_URI,
    PARAMS_FILE,
)
from pair_classifier.errors import PairClassifierError

PIPELINE_KEY_TAG = "pair_classifier.pipeline_key"
RUN_KIND_TAG = "pair_classifier.run_kind"
HTTP_SCHEMES = ("http://", "https://")
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK")
# Requests that need the server's backend store and its artifact store: /health answers even
# when both are down, and MLflow's client retries a 5xx for minutes before it gives up.
STORE_PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"
ARTIFACTS_PROBE = "/api/2.0/mlflow-artifacts/artifacts?path="
HTTP_SERVER_ERROR = 500
MESSAGE_CHARS = 300  # of a server's error message quoted in ours
CREDENTIAL_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")  # MLflow's own
POSTGRES_MARKERS = ("psycopg2", "postgres")
SERVICES_HINT = (
    "With the team services: `pair-classifier services status` shows which one is down and "
    "`pair-classifier services up` starts it. Nothing was logged"
)


class TrackingUnavailable(PairClassifierError, RuntimeError):
    """The configured tracking server cannot be reached."""


@dataclass(frozen=True)
class Lineage:
    """What a model can be traced back to."""

    git_commit: str
    git_dirty: bool
    git_diff_hash: str
    data_md5: str
    params_md5: str
    dvc_experiment: str

    def tags(self) -> dict[str, str]:
        """MLflow run tags that trace a run back to its code, data and params."""
        return {
            "mlflow.source.git.commit": self.git_commit,
            "git.commit": self.git_commit,
            "git.dirty": str(self.git_dirty).lower(),
            "data.md5": self.data_md5,
            "params.md5": self.params_md5,
            "dvc.experiment": self.dvc_experiment,
        }

    def pipeline_key(self) -> str:
        """One key per pipeline run (code, diff, data, params, experiment): the stages of one
        `dvc repro` share it, so their MLflow runs group under one parent."""
        parts = (
            self.git_commit,
            self.git_diff_hash,
            self.data_md5,
            self.params_md5,
            self.dvc_experiment,
        )
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout


def data_version(dvc_file: Path = DATA_DVC_FILE) -> str:
    """The md5 DVC recorded for the raw data (``data.dvc``), or ``untracked``."""
    if not dvc_file.is_file():
        return "untracked"
    outs = (yaml.safe_load(dvc_file.read_text(encoding="utf-8")) or {}).get("outs") or [{}]
    return str(outs[0].get("md5", "untracked"))


def pipeline_outputs(dvc_yaml: Path = DVC_YAML_FILE) -> list[str]:
    """Paths the pipeline itself writes (outs, metrics, plots of every stage, and dvc.lock)."""
    stages = (yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}).get("stages", {})
    paths = [DVC_LOCK_FILE.name]
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                paths.append(next(iter(entry)) if isinstance(entry, dict) else str(entry))
    return paths


def _source_paths() -> list[str]:
    """git pathspecs of everything but the pipeline's own outputs."""
    outputs = pipeline_outputs() if DVC_YAML_FILE.is_file() else []
    return ["--", ".", *(f":(exclude){path}" for path in outputs)]


def uncommitted_diff() -> str:
    """``git diff HEAD`` of the tracked files that are not pipeline outputs ("" when clean):
    with the commit, what a dirty run needs to be rebuilt (untracked files are not in it)."""
    sources = _source_paths()
    status = _git("status", "--porcelain", "--untracked-files=no", *sources) or ""
    return (_git("diff", "HEAD", "--binary", *sources) or "") if status.strip() else ""


def git_remote_url(remote: str = "origin") -> str:
    """Where the code can be cloned from ("" without that remote); a user name or token in
    the URL is dropped, so it never lands in a tag."""
    url = (_git("remote", "get-url", remote) or "").strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("http", "https") and "@" in parts.netloc:
        url = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
    return url


def current_lineage(params_file: Path = PARAMS_FILE) -> Lineage:
    """Commit, uncommitted changes to anything but the pipeline's own outputs, data, params."""
    commit = (_git("rev-parse", "HEAD") or "unknown").strip() or "unknown"
    diff = uncommitted_diff()
    params = params_file.read_bytes() if params_file.is_file() else b""
    return Lineage(
        git_commit=commit,
        git_dirty=bool(diff),
        git_diff_hash=hashlib.md5(diff.encode()).hexdigest() if diff else "",
        data_md5=data_version(),
        params_md5=hashlib.md5(params).hexdigest(),
        dvc_experiment=os.environ.get(ENV_DVC_EXP_NAME, ""),
    )


def tracking_uri(config: TrackingConfig) -> str:
    """``MLFLOW_TRACKING_URI`` wins, then the config, then the embedded sqlite store."""
    uri = os.environ.get(ENV_TRACKING_URI) or config.tracking_uri
    return uri or f"sqlite:///{Path(config.default_store).resolve()}"


def check_reachable(uri: str, timeout_s: float) -> None:
    """Fail fast, before any training, when a tracking server is configured but down, or up
    while its backend store (PostgreSQL) or artifact store (S3) is not."""
    if not uri.startswith(HTTP_SCHEMES):
        return
    health = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout_s) as response:
            if response.status != 200:
                raise TrackingUnavailable(f"{health} answered HTTP {response.status}")
    except (urllib.error.URLError, OSError) as error:
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} is unreachable ({error}). Start it (the team "
            f"services: `pair-classifier services up`), or unset {ENV_TRACKING_URI} to track "
            "into the embedded store."
        ) from error
    _check_store(uri, timeout_s)
    _check_artifact_store(uri, timeout_s)


def _probe(url: str, timeout_s: float) -> tuple[int | None, str]:
    """One request, no retries: the HTTP status and the error message (None: no answer in
    time). Sends MLflow's basic-auth credentials when they are set."""
    request = urllib.request.Request(url)
    username, password = (os.environ.get(name) for name in CREDENTIAL_VARIABLES)
    if username and password:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, ""
    except urllib.error.HTTPError as error:
        body = error.read().decode(errors="replace")
        try:
            message = str(json.loads(body).get("message", body))
        except (ValueError, AttributeError):  # not JSON: a proxy's or Flask's page says nothing
            message = "" if body.lstrip().startswith("<") else body
        return error.code, " ".join(message.split())[:MESSAGE_CHARS]
    except (urllib.error.URLError, OSError):  # a timeout, or the server went away meanwhile
        return None, ""


def _check_store(uri: str, timeout_s: float) -> None:
    status, message = _probe(uri.rstrip("/") + STORE_PROBE, timeout_s)
    if status is None:
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} is up, but its backend store (PostgreSQL, with the "
            f"team services) gave no answer within {timeout_s:g} s (tracking.server_timeout_s): "
            f"it is down or still starting. {SERVICES_HINT}."
        )
    if status >= HTTP_SERVER_ERROR:
        store = (
            "PostgreSQL"
            if any(marker in message.lower() for marker in POSTGRES_MARKERS)
            else "backend store"
        )
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} is up, but its {store} is not: HTTP {status}, "
            f"{message or 'no message'}. {SERVICES_HINT}; a managed database: check the "
            "server's --backend-store-uri."
        )


def _check_artifact_store(uri: str, timeout_s: float) -> None:
    """Only a server that serves artifacts itself (``--serve-artifacts``) answers this."""
    status, message = _probe(uri.rstrip("/") + ARTIFACTS_PROBE, timeout_s)
    if status is None or status >= HTTP_SERVER_ERROR:
        answer = f"HTTP {status}" if status else f"no answer within {timeout_s:g} s"
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} is up, but its artifact store (S3, with the team "
            f"services) is not: {answer}{', ' + message if message else ''}. {SERVICES_HINT}; "
            "another S3: check the server's --artifacts-destination and its AWS credentials."
        )


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def numeric_metrics(tree: Mapping[str, Any]) -> dict[str, float]:
    """The numeric leaves of a metrics tree, flattened for MLflow."""
    return {
        key: float(value)
        for key, value in flatten(tree).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def is_worker_process() -> bool:
    """DDP ranks other than 0 must not open runs of their own."""
    return any(os.environ.get(name, "0") != "0" for name in RANK_VARIABLES)


def _pipeline_run_id(experiment_id: str, lineage: Lineage, params: Mapping[str, Any]) -> str:
    key = lineage.pipeline_key()
    found = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=f"tags.`{PIPELINE_KEY_TAG}` = '{key}'",
        max_results=1,
        output_format="list",
    )
    if found:
        return found[0].info.run_id
    name = f"pipeline-{lineage.git_commit[:8]}{'-dirty' if lineage.git_dirty else ''}"
    tags = lineage.tags() | {PIPELINE_KEY_TAG: key, RUN_KIND_TAG: "pipeline"}
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags) as run:
        mlflow.log_params(flatten(params))
        return run.info.run_id


@contextmanager
def stage_run(
    stage: str, params: Mapping[str, Any], config: TrackingConfig
) -> Iterator[str | None]:
    """Open the stage's child run under its pipeline run; yields the child run id.

    In DDP worker processes this does nothing and yields ``None``.
    """
    if is_worker_process():
        yield None
        return
    uri = tracking_uri(config)
    check_reachable(uri, config.server_timeout_s)
    mlflow.set_tracking_uri(uri)
    experiment_id = mlflow.set_experiment(config.experiment_name).experiment_id
    lineage = current_lineage()
    parent_id = _pipeline_run_id(experiment_id, lineage, params)
    mlflow.set_system_metrics_sampling_interval(config.system_metrics_interval_s)
    with mlflow.start_run(run_id=parent_id):
        with mlflow.start_run(
            run_name=stage,
            nested=True,
            log_system_metrics=config.log_system_metrics,
            tags=lineage.tags() | {RUN_KIND_TAG: "stage", "stage": stage},
        ) as run:
            yield run.info.run_id


def log_metrics(metrics: Mapping[str, Any], prefix: str = "") -> None:
    """Log the numeric leaves of ``metrics`` to the active run, if any."""
    if mlflow.active_run() is not None:
        mlflow.log_metrics({f"{prefix}{k}": v for k, v in numeric_metrics(metrics).items()})


def log_artifacts(path: Path, artifact_path: str) -> None:
    """Copy a file or folder into the active run's artifacts, if any."""
    if mlflow.active_run() is None:
        return
    if path.is_dir():
        mlflow.log_artifacts(str(path), artifact_path)
    else:
        mlflow.log_artifact(str(path), artifact_path)
