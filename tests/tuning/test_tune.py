"""`pair-classifier tune` on the tiny project: trials are DVC experiments, a diverging trial is
pruned from its per-epoch validation loss, a broken one is recorded as failed, the study
finishes, `tune apply` makes the best trial the default config, and two workers in two clones
share one SQLite study."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from tiny_project import compose_params, environment, make_tiny_project, run

from pair_classifier.tuning.report import STUDY_TAG, SUMMARY_JSON
from pair_classifier.tuning.settings import TuneConfig, load_tune
from pair_classifier.tuning.study import (
    ENV_STORAGE,
    ERROR_ATTR,
    WORKER_ATTR,
    open_storage,
    open_study,
    storage_url,
    trial_name,
)

pytestmark = pytest.mark.slow  # DVC experiments of a (tiny) training each

PROXY_EPOCHS = 6
OUTPUT_FILE = "tune-output.txt"  # what `pair-classifier tune` printed, beside the project
TEST_TUNE = {
    "study_name": "tiny",
    "n_trials": 4,
    "search_space": {
        "train.lr": "tag(log, interval(1e-5, 1e-3))",
        "train.warmup_fraction": "interval(0.0, 0.3)",
    },
    # NaN or a huge validation loss: a diverging trial is stopped at its first epoch.
    "pruner": {
        "kind": "threshold",
        "stage": "embed-train",
        "metric": "val_loss",
        "n_startup_trials": 0,
        "n_warmup_steps": 0,
        "lower": None,
        "upper": 100.0,
    },
    "proxy": {
        "enabled": True,
        "overrides": {"train.epochs": str(PROXY_EPOCHS), "train.data_fraction": "0.5"},
    },
    "poll_interval_s": 0.1,
    "trial_timeout_s": 600,
}
GOOD = {"train.lr": 1.0e-4, "train.warmup_fraction": 0.1}
DIVERGING = {"train.lr": 1.0e30, "train.warmup_fraction": 0.0}
BROKEN = {"train.lr": 1.0e-4, "train.warmup_fraction": 1.5}  # train.warmup_fraction is < 1


def _use_tune_config(project: Path, **values: object) -> TuneConfig:
    path = project / "configs/tune/default.yaml"
    path.write_text(yaml.safe_dump(yaml.safe_load(path.read_text()) | TEST_TUNE | values))
    compose_params(project)
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "tune config")
    return load_tune(project / "params.yaml")


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    """A 4-trial study: good, diverging, broken (enqueued in that order), then one sampled."""
    project = make_tiny_project(tmp_path_factory.mktemp("tune"), tiny_bert_dir)
    config = _use_tune_config(project)
    study = open_study(config, open_storage(storage_url(config, project)))
    for values in (GOOD, DIVERGING, BROKEN):
        study.enqueue_trial(values, skip_if_exists=False)
    (project.parent / OUTPUT_FILE).write_text(run(project, "pair-classifier", "tune"))
    return project


def _study(project: Path) -> optuna.Study:
    config = load_tune(project / "params.yaml")
    return optuna.load_study(study_name=config.study_name, storage=storage_url(config, project))


def test_the_study_records_complete_pruned_and_failed_trials(tuned: Path) -> None:
    trials = _study(tuned).get_trials()
    states = [trial.state for trial in trials]
    assert states[:3] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
    assert len(trials) == 4 and states[3] in (TrialState.COMPLETE, TrialState.PRUNED)
    good, diverging, broken = trials[:3]
    assert len(good.intermediate_values) == PROXY_EPOCHS
    assert 0 < len(diverging.intermediate_values) < PROXY_EPOCHS  # stopped early
    assert "train.warmup_fraction" in broken.user_attrs[ERROR_ATTR]


def test_the_study_logs_each_trial_and_its_end(tuned: Path) -> None:
    output = (tuned.parent / OUTPUT_FILE).read_text()
    assert all(f"trial {number} (tiny-trial-{number})" in output for number in range(4))
    assert "trial 2 failed" in output and "Done: study tiny" in output


def test_finished_trials_are_dvc_experiments_and_mlflow_runs(tuned: Path) -> None:
    study = _study(tuned)
    config = load_tune(tuned / "params.yaml")
    complete = {
        trial_name(config, t.number) for t in study.get_trials(states=(TrialState.COMPLETE,))
    }
    shown = json.dumps(json.loads(run(tuned, "dvc", "exp", "show", "--json")))
    assert all(f'"{name}"' in shown for name in complete)
    assert f'"{trial_name(config, 1)}"' not in shown  # the pruned one was stopped: no experiment
    client = MlflowClient(f"sqlite:///{tuned / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("pair-classifier")
    runs = client.search_runs([experiment.experiment_id])
    pipelines = [r for r in runs if r.data.tags.get("pair_classifier.run_kind") == "pipeline"]
    tagged = {r.data.tags["dvc.experiment"]: r for r in pipelines if STUDY_TAG in r.data.tags}
    assert complete <= set(tagged)
    assert all(tagged[name].data.tags["optuna.state"] == "COMPLETE" for name in complete)
    (tune_run,) = [r for r in runs if r.data.tags.get("pair_classifier.run_kind") == "tune"]
    assert tune_run.data.params["proxy.train.epochs"] == str(PROXY_EPOCHS)
    assert "best_value" in tune_run.data.metrics


def test_the_report_states_the_proxy_and_holds_the_plots(tuned: Path) -> None:
    out_dir = tuned / "plots/tune/tiny"
    summary = json.loads((out_dir / SUMMARY_JSON).read_text())
    assert summary["proxy"] == TEST_TUNE["proxy"]["overrides"]
    assert summary["objective"].startswith("metrics/train.json:best_val_acc")
    assert summary["trials"]["PRUNED"] >= 1 and summary["trials"]["FAIL"] == 1
    assert (out_dir / "history.png").stat().st_size > 1000
    assert (out_dir / "importances.png").stat().st_size > 1000


def test_tune_apply_makes_the_best_trial_the_default_config(tuned: Path) -> None:
    best = _study(tuned).best_trial
    run(tuned, "pair-classifier", "tune", "apply")
    train = yaml.safe_load((tuned / "configs/train/tiny.yaml").read_text())
    params = yaml.safe_load((tuned / "params.yaml").read_text())
    for key, value in best.params.items():
        name = key.split(".", 1)[1]
        assert train[name] == pytest.approx(value) and params["train"][name] == pytest.approx(value)
    assert params["train"]["epochs"] != PROXY_EPOCHS  # the proxy is not applied
    assert "lr: " in (tuned / "configs/train/tiny.yaml").read_text()


def test_the_objective_refuses_the_test_split(tuned: Path) -> None:
    path = tuned / "configs/tune/default.yaml"
    config = yaml.safe_load(path.read_text())
    config["objective"]["file"] = "metrics/evaluate.json"
    path.write_text(yaml.safe_dump(config))
    compose_params(tuned)
    result = subprocess.run(
        ["pair-classifier", "tune"], cwd=tuned, env=environment(), capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "the test split is never used to choose" in result.stderr


def test_two_workers_share_one_study(
    tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path
) -> None:
    shared = tmp_path_factory.mktemp("shared") / "study.db"
    env = {ENV_STORAGE: f"sqlite:///{shared}"}
    projects = [
        make_tiny_project(tmp_path_factory.mktemp(f"worker{i}"), tiny_bert_dir) for i in (0, 1)
    ]
    for project in projects:
        _use_tune_config(
            project, n_trials=2, study_name="shared", proxy={"enabled": False, "overrides": {}}
        )
    workers = [
        subprocess.Popen(
            ["pair-classifier", "tune", "--worker"], cwd=project, env=environment(**env),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        for project in projects
    ]
    outputs = [worker.communicate(timeout=900)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    study = optuna.load_study(study_name="shared", storage=env[ENV_STORAGE])
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    places = {t.user_attrs[WORKER_ATTR].rsplit(":", 1)[1] for t in trials}
    assert places == {str(p.resolve()) for p in projects}  # one trial in each clone
    assert not (projects[0] / "plots/tune/shared").exists()  # a worker writes no report
