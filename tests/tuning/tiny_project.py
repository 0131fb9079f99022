"""A tiny copy of the project for the experiment tests: the real dvc.yaml and configs, the tiny
BERT and a data slice as config groups (so `dvc exp run -S` composes them), committed in a
fresh git repository. MLflow tracks into the copy's own sqlite store unless a test says else."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import REPO_ROOT, write_mrpc_dataset
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

SLICE = {"train": 64, "val": 32, "test": 32}
TINY_TRAIN = {
    "epochs": 2,
    "batch_size": 16,
    "lr": 1.0e-4,
    "checkpoint_every_n_steps": 2,
    "num_threads": 1,
    "early_stopping_patience": 100,
    "log_every_n_steps": 2,
}
TINY_CLASSIFIER = {"c_grid": [1.0], "class_weights": [None], "threads": 1}
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def environment(**extra: str) -> dict[str, str]:
    """The tests' environment for child processes: this venv's tools first on PATH, no hub,
    no analytics, no tracking server from the developer's shell."""
    env = dict(os.environ) | GIT_IDENTITY | {"DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("MLFLOW_TRACKING_URI", None)
    return env | extra


def run(project: Path, *command: str, check: bool = True, **env: str) -> str:
    """``command`` in ``project``; its output (stdout and stderr); fails the test on an error
    unless ``check`` is false."""
    result = subprocess.run(
        command, cwd=project, env=environment(**env), capture_output=True, text=True, check=False
    )
    if check:
        assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def _copy_working_tree(target: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    for name in listed:
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _group_file(project: Path, group: str, base: str, values: dict) -> None:
    config = yaml.safe_load((project / f"configs/{group}/{base}.yaml").read_text()) | values
    (project / f"configs/{group}/tiny.yaml").write_text(yaml.safe_dump(config))


def compose_params(project: Path) -> None:
    """params.yaml from the project's configs, as `dvc exp run` composes it."""
    with initialize_config_dir(config_dir=str(project / "configs"), version_base=None):
        OmegaConf.save(compose(config_name="config"), project / "params.yaml")


def use_tiny_configs(project: Path, tiny_bert_dir: Path, train: dict | None = None) -> None:
    """The tiny model, training and classifier as the default config groups."""
    model = {"name": "tiny", "pretrained": str(tiny_bert_dir), "hf_cache": None, "max_length": 32}
    _group_file(project, "model", "minilm_l6", model)
    _group_file(project, "train", "default", TINY_TRAIN | (train or {}))
    _group_file(project, "classifier", "rbf_svm", TINY_CLASSIFIER)
    root = project / "configs/config.yaml"
    text = root.read_text()
    for group, default in (("model", "minilm_l6"), ("train", "default"), ("classifier", "rbf_svm")):
        text = text.replace(f"  - {group}: {default}\n", f"  - {group}: tiny\n")
    root.write_text(text)
    compose_params(project)


def make_tiny_project(root: Path, tiny_bert_dir: Path, train: dict | None = None) -> Path:
    """The project copied to ``root`` with the tiny configs and data, committed; nothing run."""
    _copy_working_tree(root)
    for generated in ("dvc.lock", "data.dvc", "mlflow.db"):
        (root / generated).unlink(missing_ok=True)
    write_mrpc_dataset(root / "data/mrpc", SLICE)
    use_tiny_configs(root, tiny_bert_dir, train)
    run(root, "git", "init", "-q", "-b", "main")
    run(root, "dvc", "add", "-q", "data")
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "tiny project")
    return root


def commit_all(project: Path, message: str) -> None:
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", message)
