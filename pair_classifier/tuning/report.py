"""What a study leaves: the optimisation history and parameter importances (Optuna's
matplotlib plots), every trial and a summary that states the proxy the trials ran under, in
``<plots_dir>/<study>/``, and the same in an MLflow run ``tune-<study>``; each trial's MLflow
pipeline run is tagged with its study, number and state."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import matplotlib
import mlflow
import optuna
from optuna.trial import FrozenTrial, TrialState

from pair_classifier.config import TrackingConfig
from pair_classifier.io_utils import write_json
from pair_classifier.tracking import RUN_KIND_TAG, tracking_uri
from pair_classifier.tuning.settings import TuneConfig
from pair_classifier.tuning.study import EXPERIMENT_ATTR, PROXY_ATTR, proxy_overrides

logger = logging.getLogger(__name__)

HISTORY_PNG = "history.png"
IMPORTANCES_PNG = "importances.png"
TRIALS_JSON = "trials.json"
SUMMARY_JSON = "summary.json"
FIGURE_DPI = 120
MIN_TRIALS_FOR_IMPORTANCE = 2  # completed trials Optuna's importance evaluator needs
STUDY_TAG = "optuna.study"
TRIAL_TAG = "optuna.trial"
STATE_TAG = "optuna.state"


def _trial_record(trial: FrozenTrial) -> dict[str, Any]:
    seconds = trial.duration.total_seconds() if trial.duration else None
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "params": trial.params,
        "epochs_reported": len(trial.intermediate_values),
        "seconds": round(seconds, 1) if seconds is not None else None,
    } | {key: value for key, value in trial.user_attrs.items() if key != PROXY_ATTR}


def summary(study: optuna.Study, config: TuneConfig) -> dict[str, Any]:
    """The study's result; the proxy is stated next to the best value it was measured under."""
    trials = study.get_trials(deepcopy=False)
    counts = {state.name: sum(t.state == state for t in trials) for state in TrialState}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = study.best_trial if complete else None
    objective = config.objective
    return {
        "study": config.study_name,
        "objective": f"{objective.file}:{objective.key} ({objective.direction})",
        "proxy": proxy_overrides(config) or "off: trials ran the full config",
        "trials": {name: count for name, count in counts.items() if count},
        "best": (
            None
            if best is None
            else {
                "number": best.number,
                "value": best.value,
                "params": best.params,
                EXPERIMENT_ATTR: best.user_attrs.get(EXPERIMENT_ATTR),
            }
        ),
    }


def _save_plots(study: optuna.Study, out_dir: Path) -> list[Path]:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    written = []
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    plots = {HISTORY_PNG: optuna_plots.plot_optimization_history}
    if len(complete) >= MIN_TRIALS_FOR_IMPORTANCE:
        plots[IMPORTANCES_PNG] = optuna_plots.plot_param_importances
    else:
        logger.info("parameter importances need %d complete trials", MIN_TRIALS_FOR_IMPORTANCE)
    for name, plot in plots.items():
        try:
            axes = plot(study)
        except (ValueError, RuntimeError) as error:  # e.g. every value identical
            logger.warning("%s not drawn: %s", name, error)
            continue
        axes.figure.tight_layout()
        axes.figure.savefig(out_dir / name, dpi=FIGURE_DPI)
        plt.close(axes.figure)
        written.append(out_dir / name)
    return written


def _tag_trial_runs(study: optuna.Study, config: TuneConfig, experiment_id: str) -> None:
    """Tag each trial's MLflow pipeline run (found by its ``dvc.experiment`` tag)."""
    client = mlflow.MlflowClient()
    for trial in study.get_trials(deepcopy=False):
        name = trial.user_attrs.get(EXPERIMENT_ATTR)
        query = f"tags.`dvc.experiment` = '{name}' and tags.`{RUN_KIND_TAG}` = 'pipeline'"
        runs = client.search_runs([experiment_id], filter_string=query)
        for run in runs:
            for key, value in (
                (STUDY_TAG, config.study_name),
                (TRIAL_TAG, str(trial.number)),
                (STATE_TAG, trial.state.name),
            ):
                client.set_tag(run.info.run_id, key, value)


def write_report(
    study: optuna.Study, config: TuneConfig, tracking: TrackingConfig, project: Path
) -> Path:
    """Plots, trials and summary into ``<plots_dir>/<study>/``, logged to MLflow; returns the
    folder."""
    out_dir = project / config.plots_dir / config.study_name
    out_dir.mkdir(parents=True, exist_ok=True)
    result = summary(study, config)
    write_json(out_dir / SUMMARY_JSON, result)
    write_json(out_dir / TRIALS_JSON, [_trial_record(t) for t in study.get_trials(deepcopy=False)])
    _save_plots(study, out_dir)
    _log_to_mlflow(study, config, tracking, result, out_dir)
    logger.info("Done: study %s reported in %s", config.study_name, out_dir)
    return out_dir


def _log_to_mlflow(
    study: optuna.Study,
    config: TuneConfig,
    tracking: TrackingConfig,
    result: dict[str, Any],
    out_dir: Path,
) -> None:
    mlflow.set_tracking_uri(tracking_uri(tracking))
    experiment_id = mlflow.set_experiment(tracking.experiment_name).experiment_id
    tags = {RUN_KIND_TAG: "tune", STUDY_TAG: config.study_name}
    name = f"tune-{config.study_name}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags):
        mlflow.log_params(
            {f"space.{k}": v for k, v in config.search_space.items()}
            | {f"proxy.{k}": v for k, v in proxy_overrides(config).items()}
            | {"objective": result["objective"], "pruner": config.pruner.kind}
        )
        for trial in study.get_trials(deepcopy=False):
            if trial.value is not None and math.isfinite(trial.value):
                mlflow.log_metric("trial_value", trial.value, step=trial.number)
        if result["best"] is not None:
            mlflow.log_metric("best_value", result["best"]["value"])
        mlflow.log_metrics({f"trials.{k}": v for k, v in result["trials"].items()})
        mlflow.log_artifacts(str(out_dir), "tune")
    _tag_trial_runs(study, config, experiment_id)
