"""MLflow tracking: one run per pipeline run, a child run per stage, lineage on every run.

Stages are separate processes, so they find their pipeline run by a key made of what defines
the run: the git commit (and uncommitted changes), params.yaml, the data version, and the DVC
experiment name when there is one. The first stage to run creates it; a stage that DVC skips
logs nothing new.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import urllib.error
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


def current_lineage(params_file: Path = PARAMS_FILE) -> Lineage:
    """Commit, uncommitted changes to anything but the pipeline's own outputs, data, params."""
    commit = (_git("rev-parse", "HEAD") or "unknown").strip() or "unknown"
    outputs = pipeline_outputs() if DVC_YAML_FILE.is_file() else []
    sources = ["--", ".", *(f":(exclude){path}" for path in outputs)]
    status = _git("status", "--porcelain", "--untracked-files=no", *sources) or ""
    diff = (_git("diff", "HEAD", *sources) or "") if status else ""
    params = params_file.read_bytes() if params_file.is_file() else b""
    return Lineage(
        git_commit=commit,
        git_dirty=bool(status.strip()),
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
    """Fail fast, before any training, when a tracking server is configured but down."""
    if not uri.startswith(HTTP_SCHEMES):
        return
    health = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout_s) as response:
            if response.status != 200:
                raise TrackingUnavailable(f"{health} answered HTTP {response.status}")
    except (urllib.error.URLError, OSError) as error:
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} is unreachable ({error}). Start it, or unset "
            f"{ENV_TRACKING_URI} to track into the embedded store."
        ) from error


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
