"""Register the served model: the student graph the benchmark chose, its tokenizer and model
card as an MLflow pyfunc, a new version of the registered model, tagged with its lineage and
headline figures, and promoted to ``champion`` only when it beats the current champion.

The rule: a new version becomes champion when there is none yet, or when it beats the champion
on ``register.metric`` (higher is better) while keeping at least ``register.min_speed_kept`` of
the champion's pairs/s; otherwise it is the ``challenger``, and the version tag
``champion_decision`` says why. A champion that predicts other classes is another task: the
stage refuses to compare with it. The figures compared are the benchmark stage's, kept as
version tags, so the champion's need no rerun.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.errors import ArtifactError, PairClassifierError, reading_artifact
from pair_classifier.export.interface import MODEL_CARD, TOKENIZER_SUBDIR
from pair_classifier.export.onnx_predictor import OnnxPairPredictor
from pair_classifier.export.served import ServedModel
from pair_classifier.io_utils import read_json
from pair_classifier.registry.pyfunc_model import (
    SERVED_ARTIFACT,
    PairClassifierPyfunc,
    request_signature,
)
from pair_classifier.registry.settings import RANKING_METRICS, RegisterConfig
from pair_classifier.tracking import Lineage

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
DECISION_TAG = "champion_decision"
CLASS_NAMES_TAG = "class_names"  # JSON list, compared with the next version's
SERVED_VARIANT_TAG = "served_variant"
METRIC_TAG_PREFIX = "metric."  # metric.f1, metric.accuracy, metric.throughput_pairs_per_s ...
SPEED = "throughput_pairs_per_s"  # the benchmark's figure the speed rule compares
SPEEDUP = "speedup_vs_pytorch_fp32_teacher"  # a headline figure, tagged, not compared
LOGGED_MODEL_NAME = "model"
# What the pyfunc imports to predict (pinned to this environment's versions): no inference of
# requirements, which takes over half a minute.
REQUIREMENTS = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "tokenizers": ("tokenizers",),
    "pandas": ("pandas",),
    "numpy": ("numpy",),
}
INPUT_EXAMPLE = {
    TEXT_A: ["The company said profits rose 5% in the quarter.", "He left the meeting early."],
    TEXT_B: ["Quarterly profits were up 5 percent, the company said.", "The sky was clear."],
}


class RegistryError(PairClassifierError):
    """The registry holds something the new version cannot be compared with."""


@dataclass(frozen=True)
class Decision:
    alias: str  # champion or challenger
    reason: str


def _read_stage_metrics(path: Path, stage: str) -> dict[str, Any]:
    if not path.is_file():
        raise ArtifactError(f"{path}: not found; the {stage} stage writes it (dvc repro {stage})")
    with reading_artifact(path, f"the {stage} stage's metrics (JSON)"):
        report = read_json(path)
    if not isinstance(report, dict):
        raise ArtifactError(f"{path}: expected a JSON object; rerun the {stage} stage")
    return report


def headline_metrics(benchmark_metrics: Path, served: ServedModel) -> dict[str, float]:
    """The served variant's figures from the benchmark: f1, accuracy, pairs/s, speed-up."""
    report = _read_stage_metrics(benchmark_metrics, "benchmark")
    figures = (report.get("variants") or {}).get(served.benchmark_name)
    speedup = (report.get(SPEEDUP) or {}).get(served.benchmark_name)
    if not isinstance(figures, Mapping):
        raise ArtifactError(
            f"{benchmark_metrics}: no figures for the served variant {served.benchmark_name}; "
            "rerun the benchmark stage (dvc repro benchmark)"
        )
    headline = {key: figures.get(key) for key in (*RANKING_METRICS, SPEED)} | {SPEEDUP: speedup}
    missing = [key for key, value in headline.items() if not isinstance(value, int | float)]
    if missing:
        raise ArtifactError(
            f"{benchmark_metrics}: {served.benchmark_name} has no {missing}; rerun the benchmark "
            "stage (dvc repro benchmark)"
        )
    return {key: float(value) for key, value in headline.items()}


def pip_requirements() -> list[str]:
    """The pyfunc's requirements, pinned to the versions installed here."""
    pinned = []
    for requirement, distributions in REQUIREMENTS.items():
        for distribution in distributions:
            try:
                pinned.append(f"{distribution}=={metadata.version(distribution)}")
                break
            except metadata.PackageNotFoundError:
                continue
        else:
            pinned.append(requirement)
    return pinned


def current_champion(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version the alias ``champion`` points at, if the model and the alias exist."""
    found = client.search_registered_models(filter_string=f"name = '{name}'")
    if not found or CHAMPION not in (found[0].aliases or {}):
        return None
    return client.get_model_version(name, str(found[0].aliases[CHAMPION]))


def check_same_classes(champion: ModelVersion, class_names: list[str]) -> None:
    """Refuse to compare with a champion that predicts other classes (another task)."""
    theirs = json.loads(champion.tags.get(CLASS_NAMES_TAG, "null"))
    if theirs != class_names:
        raise RegistryError(
            f"registered model {champion.name!r}: its champion (version {champion.version}) "
            f"predicts the classes {theirs}, the new model {class_names}: a different task. "
            "Register it under another register.model_name, or delete the champion alias "
            "first if the task itself changed."
        )


def champion_figures(champion: ModelVersion, metric: str) -> dict[str, float]:
    """The compared figures the champion was registered with (its version tags)."""
    figures = {}
    for key in (metric, SPEED):
        value = champion.tags.get(METRIC_TAG_PREFIX + key)
        if value is None:
            raise RegistryError(
                f"registered model {champion.name!r}: its champion (version "
                f"{champion.version}) has no tag {METRIC_TAG_PREFIX + key}, so it cannot be "
                "compared; it was not registered by the register stage. Move the alias "
                "`champion` to a version that has it, or delete the alias."
            )
        figures[key] = float(value)
    return figures


def decide(
    new: Mapping[str, float],
    champion: Mapping[str, float] | None,
    champion_version: str | None,
    config: RegisterConfig,
) -> Decision:
    """Champion when there is none, or when it beats it on the metric and keeps its speed."""
    if champion is None:
        return Decision(CHAMPION, "no champion yet")
    metric = config.metric
    ours, theirs = new[metric], champion[metric]
    kept = new[SPEED] / champion[SPEED] if champion[SPEED] > 0 else math.inf
    versus = f"champion (version {champion_version})"
    if ours <= theirs:
        return Decision(
            CHALLENGER, f"{metric} {ours:.4f} does not beat the {versus}'s {theirs:.4f}"
        )
    if kept < config.min_speed_kept:
        return Decision(
            CHALLENGER,
            f"{metric} {ours:.4f} beats the {versus}'s {theirs:.4f}, but it keeps only "
            f"{kept:.0%} of its speed ({new[SPEED]:.1f} vs {champion[SPEED]:.1f} pairs/s; "
            f"register.min_speed_kept is {config.min_speed_kept:.0%})",
        )
    return Decision(
        CHAMPION,
        f"{metric} {ours:.4f} beats the {versus}'s {theirs:.4f}, keeping {kept:.0%} of its "
        f"speed (register.min_speed_kept is {config.min_speed_kept:.0%})",
    )


def version_tags(
    served: ServedModel,
    headline: Mapping[str, float],
    class_names: list[str],
    lineage: Lineage,
    decision: Decision,
) -> dict[str, str]:
    """Lineage (commit, dirty flag, data version, params, DVC experiment if any), the headline
    figures, the class names and why the version got its alias."""
    tags = {key: value for key, value in lineage.tags().items() if value}
    tags |= {METRIC_TAG_PREFIX + key: repr(value) for key, value in headline.items()}
    return tags | {
        SERVED_VARIANT_TAG: served.variant,
        CLASS_NAMES_TAG: json.dumps(class_names),
        DECISION_TAG: decision.reason,
    }


def _stage_served_folder(served: ServedModel, folder: Path) -> Path:
    """Graph, card and tokenizer in one folder, as ``OnnxPairPredictor`` finds them."""
    folder.mkdir(parents=True)
    shutil.copy2(served.graph, folder / served.graph.name)
    shutil.copy2(served.card, folder / MODEL_CARD)
    shutil.copytree(served.tokenizer, folder / TOKENIZER_SUBDIR)
    return folder / served.graph.name


def register_served_model(
    served: ServedModel,
    headline: Mapping[str, float],
    config: RegisterConfig,
    lineage: Lineage,
) -> dict[str, Any]:
    """Log the pyfunc (into the active run, if any), register it as a new version of
    ``config.model_name``, set its alias; returns what the stage records."""
    client = MlflowClient()
    name = config.model_name
    with tempfile.TemporaryDirectory(prefix="pair-classifier-register-") as tmp:
        graph = _stage_served_folder(served, Path(tmp) / SERVED_ARTIFACT)
        predictor = OnnxPairPredictor(graph, config.batch_size, config.threads)
        champion = current_champion(client, name)
        if champion is not None:
            check_same_classes(champion, predictor.class_names)
        decision = decide(
            headline,
            None if champion is None else champion_figures(champion, config.metric),
            None if champion is None else champion.version,
            config,
        )
        example = pd.DataFrame(INPUT_EXAMPLE)
        info = mlflow.pyfunc.log_model(
            name=LOGGED_MODEL_NAME,
            python_model=PairClassifierPyfunc(graph.name, config.batch_size, config.threads),
            artifacts={SERVED_ARTIFACT: str(graph.parent)},
            signature=request_signature(example, predictor.predict(example)),
            input_example=example,
            pip_requirements=pip_requirements(),
        )
    tags = version_tags(served, headline, predictor.class_names, lineage, decision)
    version = mlflow.register_model(info.model_uri, name, tags=tags)
    client.update_model_version(name, version.version, description=decision.reason)
    client.set_registered_model_alias(name, decision.alias, version.version)
    logger.info(
        "%s version %s is the %s: %s", name, version.version, decision.alias, decision.reason
    )
    return {
        "model_name": name,
        "version": int(version.version),
        "alias": decision.alias,
        "champion_decision": decision.reason,
        "previous_champion": None if champion is None else int(champion.version),
        "served_variant": served.variant,
        "metric": config.metric,
        "headline": dict(headline),
    }
