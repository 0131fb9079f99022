"""DDP on the tiny project: `dvc exp run -S train.strategy=ddp -S train.devices=2` trains on
two CPU processes (gloo), leaves one MLflow run and one checkpoint set (rank 0 only), and a
training killed mid-way resumes from its last checkpoint."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from tiny_project import SLICE, environment, make_tiny_project, run

pytestmark = pytest.mark.slow  # DVC experiments of a two-process training

RANKS = 2
BATCH = 4
TRAIN = {"epochs": 3, "batch_size": BATCH, "checkpoint_every_n_steps": 2}
DDP = ("-S", "train.strategy=ddp", "-S", f"train.devices={RANKS}")
CHECKPOINT_SET = {"best.ckpt", "last.ckpt", "state.json"}
KILL_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    return make_tiny_project(tmp_path_factory.mktemp("ddp"), tiny_bert_dir, TRAIN)


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_ddp_trains_on_two_processes_with_one_run_and_one_checkpoint_set(
    project: Path,
) -> None:
    output = run(project, "dvc", "exp", "run", "-n", "ddp", *DDP, "embed-train")
    assert f"Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/{RANKS}" in output
    train = _json(project / "metrics/train.json")
    steps_per_epoch = math.ceil(SLICE["train"] / RANKS / BATCH)  # each rank takes half
    assert train["global_step"] == TRAIN["epochs"] * steps_per_epoch
    checkpoints = project / "checkpoints/embed-train"
    assert {p.name for p in checkpoints.iterdir()} == CHECKPOINT_SET
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("pair-classifier")
    runs = client.search_runs([experiment.experiment_id], "tags.stage = 'embed-train'")
    assert len(runs) == 1  # rank 1 opened none
    assert runs[0].data.tags["dvc.experiment"] == "ddp"
    assert len(client.get_metric_history(runs[0].info.run_id, "val_acc")) == TRAIN["epochs"]


def _wait_for_new_checkpoint(path: Path, process: subprocess.Popen, after: float) -> None:
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while not (path.exists() and path.stat().st_mtime > after):
        assert process.poll() is None, "training ended before writing a checkpoint"
        assert time.monotonic() < deadline, f"no new {path} after {KILL_TIMEOUT_S} s"
        time.sleep(0.1)


def test_a_killed_ddp_training_resumes_from_its_last_checkpoint(project: Path) -> None:
    command = ["dvc", "exp", "run", "-n", "ddp-resumed", *DDP, "-S", "train.lr=5e-5"]
    last = project / "checkpoints/embed-train/last.ckpt"
    started = time.time()
    process = subprocess.Popen(
        [*command, "embed-train"], cwd=project, env=environment(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_for_new_checkpoint(last, process, started)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # both ranks and DVC
        process.wait()
    assert _json(project / "checkpoints/embed-train/state.json")["completed"] is False
    output = run(project, *command, "embed-train")
    assert "Restoring states from the checkpoint" in output
    train = _json(project / "metrics/train.json")
    assert train["resumed_from_step"] >= TRAIN["checkpoint_every_n_steps"]
    assert train["global_step"] == TRAIN["epochs"] * math.ceil(SLICE["train"] / RANKS / BATCH)
    assert _json(project / "checkpoints/embed-train/state.json")["completed"] is True
    assert {p.name for p in last.parent.iterdir()} == CHECKPOINT_SET
