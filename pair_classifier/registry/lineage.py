"""Lineage of a registered version: what made it and how to make it again.

The register stage records, in the run that logs the model, the files that define the build:
``params.yaml``, ``dvc.lock`` as it stood when the model was registered (every upstream stage's
outputs and their md5), and, when the working tree had uncommitted changes, their ``git diff``.
With the version's tags (commit, dirty flag, data version, headline figures) that is enough to
say where the model came from and to rebuild it: check out the commit, apply the diff, pull the
data, ``dvc repro`` (``pair-classifier lineage``).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pair_classifier.constants import DVC_LOCK_FILE, DVC_YAML_FILE, PARAMS_FILE
from pair_classifier.errors import PairClassifierError
from pair_classifier.registry.register import (
    CLASS_NAMES_TAG,
    DECISION_TAG,
    METRIC_TAG_PREFIX,
    SERVED_VARIANT_TAG,
)
from pair_classifier.tracking import Lineage, flatten, git_remote_url, uncommitted_diff

logger = logging.getLogger(__name__)

ARTIFACT_DIR = "lineage"  # in the run that logged the model
DIFF_FILE = "uncommitted.diff"
GIT_REMOTE_TAG = "git.remote"
MODELS_SCHEME = "models:/"
DEFAULT_DVC_REMOTE = "team"  # when the recorded params name none (services.s3.dvc_remote)
REBUILD_DIR = "pair-classifier"  # the clone's folder in the rebuild commands
NOT_RECORDED = "not recorded"
REFERENCE_FORMS = "models:/NAME@ALIAS, models:/NAME/VERSION, a version number or @ALIAS"
MAX_LISTED = 20  # names or versions listed in an error
PROGRESS_BAR_VARIABLE = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
REGISTER_STAGE = "register"  # dvc.yaml's stage that records the lineage


class LineageError(PairClassifierError):
    """The reference names no registered version, or its lineage cannot be read."""


@dataclass(frozen=True)
class ModelReference:
    name: str
    version: str | None  # exactly one of version and alias
    alias: str | None

    def __str__(self) -> str:
        return f"{MODELS_SCHEME}{self.name}" + (
            f"/{self.version}" if self.version else f"@{self.alias}"
        )


@dataclass(frozen=True)
class ModelLineage:
    """What ``pair-classifier lineage`` prints (``--json``: these fields and ``rebuild``)."""

    model: str
    version: str
    aliases: list[str]
    tracking_uri: str
    run_id: str
    git_commit: str
    git_dirty: bool
    git_remote: str
    uncommitted_diff_recorded: bool
    data_md5: str
    params_md5: str
    dvc_experiment: str
    dvc_remote: str
    served_variant: str
    class_names: list[str]
    champion_decision: str
    metrics: dict[str, float]
    params: dict[str, Any]  # params.yaml as recorded, flattened (train.lr, ...)
    outputs: dict[str, dict[str, str]]  # stage -> output path -> md5, from the recorded dvc.lock

    @property
    def reference(self) -> str:
        return f"{MODELS_SCHEME}{self.model}/{self.version}"


def _paths(entries: list[Any], params: Mapping[str, Any]) -> list[str]:
    """The paths of a dvc.yaml deps/outs list, ``${section.key}`` filled in from params."""
    paths = [next(iter(entry)) if isinstance(entry, dict) else str(entry) for entry in entries]

    def value(match: re.Match[str]) -> str:
        found: Any = params
        for part in match[1].split("."):
            found = found.get(part, {}) if isinstance(found, Mapping) else {}
        return str(found)

    return [re.sub(r"\$\{([^}]+)\}", value, path) for path in paths]


def upstream_stages(pipeline: Mapping[str, Any], params: Mapping[str, Any], stage: str) -> set[str]:
    """The stages whose outputs ``stage`` reads, directly or through other stages (dvc.yaml)."""
    stages = pipeline.get("stages") or {}
    if stage not in stages:
        return set(stages)
    kinds = ("outs", "metrics", "plots")
    made = {
        name: _paths([entry for kind in kinds for entry in spec.get(kind, [])], params)
        for name, spec in stages.items()
    }

    def feeds(out: str, dep: str) -> bool:
        return out == dep or dep.startswith(f"{out}/") or out.startswith(f"{dep}/")

    found: set[str] = set()
    pending = [stage]
    while pending:
        deps = _paths(stages[pending.pop()].get("deps", []), params)
        for name, outs in made.items():
            if name not in found | {stage} and any(feeds(o, d) for o in outs for d in deps):
                found.add(name)
                pending.append(name)
    return found


def record_lineage(lineage: Lineage, stage: str = REGISTER_STAGE) -> None:
    """Log what defines the build into the active run (the one the model is logged in):
    params.yaml; dvc.lock's entries of the stages upstream of ``stage`` (those after it, and
    its own, are from an earlier run); the uncommitted diff when dirty; the git remote (tag)."""
    if mlflow.active_run() is None:
        return
    params = _read_yaml(PARAMS_FILE)
    for path in (PARAMS_FILE, DVC_LOCK_FILE):
        if not path.is_file():
            logger.warning("%s not found: the lineage will not hold it", path)
    if PARAMS_FILE.is_file():
        mlflow.log_artifact(str(PARAMS_FILE), ARTIFACT_DIR)
    if DVC_LOCK_FILE.is_file():
        lock = _read_yaml(DVC_LOCK_FILE)
        upstream = upstream_stages(_read_yaml(DVC_YAML_FILE), params, stage)
        lock["stages"] = {k: v for k, v in (lock.get("stages") or {}).items() if k in upstream}
        mlflow.log_text(yaml.safe_dump(lock, sort_keys=False), f"{ARTIFACT_DIR}/{DVC_LOCK_FILE}")
    diff = uncommitted_diff() if lineage.git_dirty else ""
    if diff:
        mlflow.log_text(diff, f"{ARTIFACT_DIR}/{DIFF_FILE}")
    remote = git_remote_url()
    if remote:
        mlflow.set_tag(GIT_REMOTE_TAG, remote)
    logger.info(
        "Lineage recorded: commit %s%s, %s and %s", lineage.git_commit[:12],
        " with its uncommitted diff" if diff else "", PARAMS_FILE, DVC_LOCK_FILE,
    )  # fmt: skip


def parse_reference(text: str, default_name: str) -> ModelReference:
    """``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``3`` or ``@champion`` (the last two
    of ``default_name``)."""
    text = text.strip()
    if text.startswith(MODELS_SCHEME):
        body = text.removeprefix(MODELS_SCHEME)
        match = re.fullmatch(r"(?P<name>[^@/]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))", body)
        if match is None:
            raise LineageError(f"{text!r}: expected {REFERENCE_FORMS}")
        return ModelReference(match["name"], match["version"], match["alias"])
    if re.fullmatch(r"\d+", text):
        return ModelReference(default_name, text, None)
    if re.fullmatch(r"@[\w-]+", text):
        return ModelReference(default_name, None, text[1:])
    raise LineageError(f"{text!r}: expected {REFERENCE_FORMS}")


def resolve(client: MlflowClient, reference: ModelReference, uri: str) -> ModelVersion:
    """The version ``reference`` names; an unknown model, alias or version is named, with what
    the registry does hold."""
    try:
        model = client.get_registered_model(reference.name)
    except MlflowException as error:
        names = [m.name for m in client.search_registered_models(max_results=MAX_LISTED)]
        raise LineageError(
            f"{reference}: no registered model {reference.name!r} in the registry at {uri} "
            f"(it holds {names or 'none'}); is MLFLOW_TRACKING_URI the store it was registered "
            "in?"
        ) from error
    if reference.alias is not None:
        aliases = dict(model.aliases or {})
        if reference.alias not in aliases:
            held = ", ".join(f"@{a} -> version {v}" for a, v in sorted(aliases.items()))
            raise LineageError(
                f"{reference}: registered model {reference.name!r} has no alias "
                f"{reference.alias!r} (its aliases: {held or 'none'})"
            )
        version = str(aliases[reference.alias])
    else:
        version = str(reference.version)
    try:
        return client.get_model_version(reference.name, version)
    except MlflowException as error:
        found = client.search_model_versions(f"name = '{reference.name}'")
        versions = sorted(int(v.version) for v in found)[-MAX_LISTED:]
        raise LineageError(
            f"{reference}: registered model {reference.name!r} has no version {version} "
            f"(its versions: {versions or 'none'})"
        ) from error


def lock_outputs(lock: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Each stage's outputs and their md5 (a ``.dir`` md5 for a folder) from a dvc.lock."""
    return {
        stage: {str(out["path"]): str(out.get("md5", "")) for out in entry.get("outs", [])}
        for stage, entry in (lock.get("stages") or {}).items()
    }


@contextmanager
def _no_progress_bar() -> Iterator[None]:
    """MLflow draws a download progress bar on stderr: noise around a few small files."""
    previous = os.environ.get(PROGRESS_BAR_VARIABLE)
    os.environ[PROGRESS_BAR_VARIABLE] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PROGRESS_BAR_VARIABLE, None)
        else:
            os.environ[PROGRESS_BAR_VARIABLE] = previous


def _download(client: MlflowClient, run_id: str, path: str, folder: Path) -> Path:
    with _no_progress_bar():
        return Path(client.download_artifacts(run_id, path, str(folder)))


def _recorded_files(client: MlflowClient, run_id: str, folder: Path) -> Path | None:
    """The run's lineage folder, downloaded into ``folder``; None for a version registered
    before lineage was recorded."""
    if not client.list_artifacts(run_id, ARTIFACT_DIR):
        return None
    return _download(client, run_id, ARTIFACT_DIR, folder)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def read_lineage(client: MlflowClient, version: ModelVersion, uri: str) -> ModelLineage:
    """Tags of the version, tags and lineage files of the run that logged it."""
    tags = version.tags or {}
    run_tags = client.get_run(version.run_id).data.tags if version.run_id else {}
    with tempfile.TemporaryDirectory(prefix="pair-classifier-lineage-") as tmp:
        recorded = _recorded_files(client, version.run_id, Path(tmp)) if version.run_id else None
        params = _read_yaml(recorded / PARAMS_FILE.name) if recorded else {}
        lock = _read_yaml(recorded / DVC_LOCK_FILE.name) if recorded else {}
        has_diff = bool(recorded and (recorded / DIFF_FILE).is_file())
    held = client.get_registered_model(version.name).aliases or {}
    aliases = [alias for alias, number in held.items() if str(number) == str(version.version)]
    return ModelLineage(
        model=version.name,
        version=str(version.version),
        aliases=sorted(aliases),
        tracking_uri=uri,
        run_id=version.run_id or "",
        git_commit=tags.get("git.commit", NOT_RECORDED),
        git_dirty=tags.get("git.dirty") == "true",
        git_remote=run_tags.get(GIT_REMOTE_TAG, ""),
        uncommitted_diff_recorded=has_diff,
        data_md5=tags.get("data.md5", NOT_RECORDED),
        params_md5=tags.get("params.md5", NOT_RECORDED),
        dvc_experiment=tags.get("dvc.experiment", ""),
        dvc_remote=str(
            ((params.get("services") or {}).get("s3") or {}).get("dvc_remote", DEFAULT_DVC_REMOTE)
        ),
        served_variant=tags.get(SERVED_VARIANT_TAG, ""),
        class_names=yaml.safe_load(tags.get(CLASS_NAMES_TAG, "[]")) or [],
        champion_decision=tags.get(DECISION_TAG, ""),
        metrics={
            key.removeprefix(METRIC_TAG_PREFIX): float(value)
            for key, value in sorted(tags.items())
            if key.startswith(METRIC_TAG_PREFIX)
        },
        params=flatten(params),
        outputs=lock_outputs(lock),
    )


def diff_text(client: MlflowClient, lineage: ModelLineage) -> str:
    """The uncommitted changes recorded with the version (a ``git diff HEAD``)."""
    if not lineage.uncommitted_diff_recorded:
        raise LineageError(
            f"{lineage.reference}: no uncommitted changes recorded (git.dirty is "
            f"{str(lineage.git_dirty).lower()})"
        )
    with tempfile.TemporaryDirectory(prefix="pair-classifier-lineage-") as tmp:
        path = _download(client, lineage.run_id, f"{ARTIFACT_DIR}/{DIFF_FILE}", Path(tmp))
        return path.read_text(encoding="utf-8")


def rebuild_commands(lineage: ModelLineage, diff_file: str = "lineage.diff") -> list[str]:
    """The shell commands that rebuild the version from a fresh clone."""
    clone = lineage.git_remote or "<URL of this project's git repository>"
    commands = [f"git clone {clone} {REBUILD_DIR}", f"cd {REBUILD_DIR}"]
    commands.append(f"git checkout {lineage.git_commit}")
    if lineage.uncommitted_diff_recorded:
        commands += [
            f"MLFLOW_TRACKING_URI={lineage.tracking_uri} pair-classifier lineage "
            f"{lineage.reference} --diff-out {diff_file}",
            f"git apply {diff_file}",
        ]
    elif lineage.git_dirty:
        commands.append("# uncommitted changes were not recorded: the rebuild may differ")
    commands += [f"dvc pull -r {lineage.dvc_remote} --allow-missing", "dvc repro"]
    return commands


def as_json(lineage: ModelLineage) -> dict[str, Any]:
    return asdict(lineage) | {"reference": lineage.reference, "rebuild": rebuild_commands(lineage)}


def as_text(lineage: ModelLineage) -> str:
    """The lineage for a terminal: identity, code, data, figures, outputs, the rebuild, then
    every param (the longest part, so last)."""
    aliases = ", ".join(f"@{alias}" for alias in lineage.aliases) or "no alias"
    diff = "recorded" if lineage.uncommitted_diff_recorded else "NOT recorded"
    code = f"dirty (uncommitted changes {diff})" if lineage.git_dirty else "clean"
    lines = [
        f"{lineage.reference} ({aliases}), served variant {lineage.served_variant or '?'}",
        f"  registry   {lineage.tracking_uri}, run {lineage.run_id}",
        f"  decision   {lineage.champion_decision or NOT_RECORDED}",
        f"code         git commit {lineage.git_commit}, {code}",
        f"  clone from {lineage.git_remote or NOT_RECORDED}",
        f"data         md5 {lineage.data_md5} (data.dvc), DVC remote {lineage.dvc_remote}",
    ]
    if lineage.dvc_experiment:
        lines.append(f"experiment   {lineage.dvc_experiment}")
    lines.append("metrics      " + ", ".join(f"{k} {v:g}" for k, v in lineage.metrics.items()))
    recorded = "(dvc.lock of the stages it was built by)" if lineage.outputs else NOT_RECORDED
    lines.append(f"outputs      {recorded}")
    for stage, outputs in lineage.outputs.items():
        lines += [f"  {stage:<15} {md5:<36} {path}" for path, md5 in outputs.items()]
    lines.append("rebuild")
    lines += [f"  {command}" for command in rebuild_commands(lineage)]
    recorded = "params.yaml as it was" if lineage.params else f"params.yaml {NOT_RECORDED}"
    lines.append(f"params       md5 {lineage.params_md5}, {recorded}")
    lines += [f"  {key} = {value}" for key, value in lineage.params.items()]
    return "\n".join(lines)


def model_lineage(reference: str, uri: str, default_name: str) -> tuple[MlflowClient, ModelLineage]:
    """Resolve ``reference`` in the registry at ``uri`` and read its lineage."""
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        version = resolve(client, parse_reference(reference, default_name), uri)
        return client, read_lineage(client, version, uri)
    except MlflowException as error:  # e.g. a server that refuses the credentials
        raise LineageError(f"{reference}: the registry at {uri} answered: {error}") from error
