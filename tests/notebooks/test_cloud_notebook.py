"""notebooks/cloud_gpu.ipynb, executed headless on a CPU as a cloud runtime would run it.

Everything stays on this machine: the "GitHub" it clones from is a tiny project made here (as
tests/stages/test_pipeline.py makes one), the DVC remote is the team services' S3, the secrets
come from the environment (the helper's last resort after Colab's and Kaggle's stores), and
only the cells tagged ``gpu-only`` (the GPU check, the internet tunnel) are left out.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import mlflow
import nbformat
import pytest
from helpers import REPO_ROOT, write_mrpc_dataset
from nbclient import NotebookClient
from services.team_services import AWS_ENV, bucket_keys, free_port

from pair_classifier.services.settings import ServicesConfig

NOTEBOOK = REPO_ROOT / "notebooks/cloud_gpu.ipynb"
GPU_ONLY = "gpu-only"
PARAMETERS = "parameters"
CELL_TIMEOUT_S = 1800  # the environment's install and the experiment on 2 busy cores
EXPERIMENT = "cloud-test"
LR = "0.0002"
TARGET = "fit-classifier"  # prepare, embed-train, fit-classifier: enough to push outputs
UI_PASSWORD = "a-test-only-ui-password"
# moto accepts any key; a distinctive one, so that the test can tell it never reaches an output
AWS_SECRET = "a-test-only-aws-secret"
DVC_PREFIX = "dvc/"


@functools.cache
def _pipeline_test() -> Any:
    """tests/stages/test_pipeline.py, whose tiny project this test clones (loaded by path: the
    project's own ``stages`` package shadows that test folder's name)."""
    spec = importlib.util.spec_from_file_location(
        "pipeline_test_project", REPO_ROOT / "tests/stages/test_pipeline.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tags(cell: nbformat.NotebookNode) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def _dvc(repo: Path, *args: str, env: dict[str, str]) -> None:
    result = subprocess.run(
        [str(REPO_ROOT / ".venv/bin/dvc"), *args], cwd=repo, env=env, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"dvc {args}:\n{result.stdout}\n{result.stderr}"


def _origin(root: Path, tiny_bert_dir: Path, endpoint: str, env: dict[str, str]) -> Path:
    """The team's repository: the tiny project committed, its data pushed to the remote."""
    origin = root / "origin"
    _pipeline_test()._copy_working_tree(origin)
    for generated in ("dvc.lock", "data.dvc"):
        (origin / generated).unlink(missing_ok=True)
    write_mrpc_dataset(origin / "data/mrpc", _pipeline_test().SLICE)
    _pipeline_test()._use_tiny_configs(origin, tiny_bert_dir)
    _git(origin, "init", "-q", "-b", "main")
    _dvc(origin, "add", "-q", "data", env=env)
    _git(origin, "add", "-A")
    _git(origin, "commit", "-qm", "tiny project")
    _dvc(origin, "remote", "modify", "--local", "team", "endpointurl", endpoint, env=env)
    _dvc(origin, "push", "-q", "-r", "team", env=env)
    # A clone pushes its experiments here: refs/exps only, never the checked-out branch.
    _git(origin, "config", "receive.denyCurrentBranch", "refuse")
    return origin


def _runtime_environment(root: Path, origin: Path, endpoint: str) -> dict[str, str]:
    env = dict(os.environ) | _pipeline_test().GIT_IDENTITY | AWS_ENV
    env.pop("VIRTUAL_ENV", None)  # the clone gets its own environment, as on a runtime
    return env | {
        "PAIRCLF_REPO_URL": str(origin),
        "PAIRCLF_REPO_DIR": str(root / "runtime/pair-classifier"),
        "PAIRCLF_EXTRA": "cpu",
        "PAIRCLF_MODE": "experiment",
        "PAIRCLF_OVERRIDES": f"train.lr={LR}",
        "PAIRCLF_TARGETS": TARGET,
        "PAIRCLF_EXPERIMENT": EXPERIMENT,
        # The origin has no dvc.lock yet (as in the pipeline test): only its data is pushed.
        "PAIRCLF_PULL_TARGETS": "data.dvc",
        "PAIRCLF_UI_PORT": str(free_port()),
        "UV_PROJECT_ENVIRONMENT": str(root / "runtime/venv"),
        "DVC_REMOTE_ENDPOINT_URL": endpoint,
        "MLFLOW_UI_PASSWORD": UI_PASSWORD,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "HF_HUB_OFFLINE": "1",
        "DVC_NO_ANALYTICS": "1",
    }


def _stop_ui(pid_file: Path) -> None:
    """The notebook stops its MLflow UI; after a failed cell the test does (its process group)."""
    if pid_file.is_file():
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        except ProcessLookupError:
            pass


def _outputs(notebook: nbformat.NotebookNode) -> str:
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") or json.dumps(output.get("data", {})))
    return "".join(texts)


def test_notebook_is_stored_without_outputs_and_marks_its_gpu_cells() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    assert [PARAMETERS in _tags(cell) for cell in code].index(True) == 0
    gpu_only = [cell.source for cell in code if GPU_ONLY in _tags(cell)]
    assert any("nvidia-smi" in source for source in gpu_only)
    assert any("cuda.is_available" in source for source in gpu_only)
    assert any("ngrok" in source for source in gpu_only)
    untagged = "".join(cell.source for cell in code if GPU_ONLY not in _tags(cell))
    assert "nvidia-smi" not in untagged and "ngrok" not in untagged


@pytest.mark.slow
def test_notebook_runs_headless_on_cpu(
    tmp_path: Path,
    tiny_bert_dir: Path,
    team_services: ServicesConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint = team_services.s3.endpoint_url
    base_env = dict(os.environ) | _pipeline_test().GIT_IDENTITY | AWS_ENV
    origin = _origin(tmp_path, tiny_bert_dir, endpoint, base_env)
    data_keys = set(bucket_keys(team_services, DVC_PREFIX))
    assert data_keys, "the origin's data was not pushed"
    for name, value in _runtime_environment(tmp_path, origin, endpoint).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    skipped = [cell for cell in notebook.cells if GPU_ONLY in _tags(cell)]
    notebook.cells = [cell for cell in notebook.cells if GPU_ONLY not in _tags(cell)]
    assert skipped
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        client.execute()  # a failing cell raises CellExecutionError with its output
    finally:
        _stop_ui(tmp_path / "runtime/pair-classifier/.mlflow-ui/server.pid")

    text = _outputs(notebook)
    assert "secrets set: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY" in text
    assert UI_PASSWORD not in text
    assert AWS_SECRET not in text
    assert "(basic-auth, user admin)" in text and "'pair-classifier'" in text
    assert "MLflow UI stopped" in text
    # The experiment reached the team's repository, with its override ...
    refs = _git(origin, "for-each-ref", "--format=%(refname)", "refs/exps").split()
    pushed = [ref for ref in refs if ref.endswith(f"/{EXPERIMENT}")]
    assert len(pushed) == 1, refs
    params = _git(origin, "show", f"{pushed[0]}:params.yaml")
    assert f"lr: {LR}" in params
    assert "best_val_acc" in _git(origin, "show", f"{pushed[0]}:metrics/train.json")
    # ... its outputs the DVC remote, and its runs the runtime's MLflow store.
    assert set(bucket_keys(team_services, DVC_PREFIX)) > data_keys
    clone = tmp_path / "runtime/pair-classifier"
    tracking = mlflow.MlflowClient(f"sqlite:///{clone / 'mlflow.db'}")
    experiments = [experiment.experiment_id for experiment in tracking.search_experiments()]
    names = {run.info.run_name for run in tracking.search_runs(experiments, max_results=100)}
    assert {"prepare", "embed-train", "fit-classifier"} <= names, names
