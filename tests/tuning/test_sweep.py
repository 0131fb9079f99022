"""A grid sweep as queued DVC experiments on the tiny project: `dvc exp run --queue -S
'train.lr=choice(...)'` queues one experiment per value, `dvc queue start -j 1` runs them one
at a time, and each shows up in `dvc exp show` and as one MLflow pipeline run tagged with its
experiment's name (docs/experiments-at-scale.md)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from tiny_project import commit_all, environment, make_tiny_project, run

pytestmark = pytest.mark.slow  # three queued DVC experiments, each a (tiny) training

LEARNING_RATES = ("5e-05", "0.0001", "0.0002")
QUEUE_TIMEOUT_S = 900
POLL_S = 2
STATES = {"Queued", "Running", "Success", "Failed"}


def _queue_states(project: Path) -> list[str]:
    """The status column of `dvc queue status` (it has no JSON output), one per experiment."""
    rows = run(project, "dvc", "queue", "status").splitlines()
    return [row.split()[-1] for row in rows if row.split() and row.split()[-1] in STATES]


def test_a_queued_sweep_shows_in_dvc_exp_show_and_mlflow_one_to_one(
    tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path
) -> None:
    project = make_tiny_project(tmp_path_factory.mktemp("sweep"), tiny_bert_dir)
    # Every queued experiment runs in its own temporary copy: the runs go to one store.
    store = {"MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    run(project, "dvc", "repro", "embed-train", **store)  # the baseline: prepare is cached
    commit_all(project, "baseline")
    swept = f"train.lr=choice({', '.join(LEARNING_RATES)})"
    output = run(project, "dvc", "exp", "run", "--queue", "-S", swept, "embed-train", **store)
    assert output.count("Queued experiment") == len(LEARNING_RATES)
    # The worker is a daemon that keeps the output pipes of whoever started it open.
    subprocess.run(
        ["dvc", "queue", "start", "-j", "1"], cwd=project, env=environment(**store),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
    )  # fmt: skip
    deadline = time.monotonic() + QUEUE_TIMEOUT_S
    while set(_queue_states(project)) & {"Queued", "Running"}:
        assert time.monotonic() < deadline, f"queue not done in {QUEUE_TIMEOUT_S} s"
        time.sleep(POLL_S)
    assert _queue_states(project) == ["Success"] * len(LEARNING_RATES)
    shown = json.loads(run(project, "dvc", "exp", "show", "--json", "--only-changed"))
    experiments = {
        exp["name"]: exp["revs"][0]["data"]["params"]["params.yaml"]["data"]["train"]["lr"]
        for commit in shown
        for exp in commit.get("experiments") or []
    }
    assert sorted(experiments.values()) == sorted(float(lr) for lr in LEARNING_RATES)
    client = MlflowClient(store["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("pair-classifier")
    runs = client.search_runs(
        [experiment.experiment_id], "tags.`pair_classifier.run_kind` = 'pipeline'"
    )
    tagged = {r.data.tags["dvc.experiment"]: r.data.params["train.lr"] for r in runs}
    tagged.pop("", None)  # the baseline `dvc repro`
    assert {name: float(lr) for name, lr in tagged.items()} == experiments
