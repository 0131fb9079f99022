"""`pair-classifier lineage` on a temporary sqlite store: a version registered from a small git
project (commit, uncommitted params change, dvc.lock, data.dvc) traced back, its rebuild
commands, the recorded diff applying on a clean checkout, and unknown references named."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import mlflow
import pytest
import yaml
from helpers import REPO_ROOT, composed, composed_params
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from pair_classifier.cli import app
from pair_classifier.errors import USER_ERROR_EXIT_CODE
from pair_classifier.export.interface import MODEL_CARD, TOKENIZER_SUBDIR, variant_file
from pair_classifier.export.served import ServedModel
from pair_classifier.registry.lineage import (
    LineageError,
    ModelReference,
    parse_reference,
    record_lineage,
    upstream_stages,
)
from pair_classifier.registry.register import SPEED, SPEEDUP, register_served_model
from pair_classifier.registry.settings import RegisterConfig
from pair_classifier.tracking import current_lineage

NAME = "pair-classifier"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}
DVC_LOCK = {
    "schema": "2.0",
    "stages": {
        "prepare": {
            "cmd": "python -m stages.prepare",
            "outs": [
                {"path": "artifacts/prepared", "md5": "aaa111.dir", "size": 10, "nfiles": 3},
                {"path": "metrics/data.json", "md5": "bbb222", "size": 5},
            ],
        },
        "quantize": {
            "cmd": "python -m stages.quantize",
            "outs": [{"path": "artifacts/quantized", "md5": "ccc333.dir", "size": 7, "nfiles": 2}],
        },
        "results": {"cmd": "python -m stages.results", "outs": [{"path": "docs/results.md"}]},
    },
}
PIPELINE = {  # prepare and quantize feed register; the lock's "results" is from an earlier run
    "stages": {
        "prepare": {
            "deps": ["data"],
            "outs": ["artifacts/prepared"],
            "metrics": ["metrics/data.json"],
        },
        "quantize": {"deps": ["artifacts/prepared"], "outs": ["artifacts/quantized"]},
        "register": {"deps": ["artifacts/quantized"], "metrics": ["metrics/register.json"]},
        "results": {"deps": ["metrics/register.json"], "outs": ["docs/results.md"]},
    }
}
DATA_MD5 = "d474a0.dir"
REMOTE = "https://git.example.com/team/pair-classifier.git"


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=root, env=os.environ | GIT_IDENTITY, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    return result.stdout.strip()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed project (params.yaml, data.dvc, dvc.yaml), then an uncommitted params change
    and a dvc.lock (a pipeline output: it does not make the tree dirty)."""
    monkeypatch.chdir(tmp_path)
    params = composed_params()
    params["tracking"] |= {"log_system_metrics": False}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "data.dvc").write_text(
        yaml.safe_dump({"outs": [{"md5": DATA_MD5, "path": "data"}]})
    )
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(PIPELINE))
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "remote", "add", "origin", REMOTE.replace("https://", "https://user:token@"))
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "project")
    params["train"]["lr"] = 1.23e-4  # the uncommitted change the version is built with
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(DVC_LOCK))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)  # removed afterwards (see test_register)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("lineage-test")
    yield tmp_path
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def _served(export_dir: Path) -> ServedModel:
    return ServedModel(
        variant="fp32",
        graph=export_dir / variant_file("student"),
        card=export_dir / MODEL_CARD,
        tokenizer=export_dir / TOKENIZER_SUBDIR,
    )


def _register(export_dir: Path, f1: float, with_lineage: bool = True) -> dict:
    headline = {"f1": f1, "accuracy": f1 - 0.1, SPEED: 100.0, SPEEDUP: 2.0}
    config = composed("register", RegisterConfig, threads=1)
    with mlflow.start_run():
        lineage = current_lineage()
        if with_lineage:
            record_lineage(lineage)
        return register_served_model(_served(export_dir), headline, config, lineage)


def _lineage(*args: str) -> tuple[int, str]:
    """Exit code, and what it printed on stdout (stderr too when it failed)."""
    result = CliRunner().invoke(app, ["lineage", *args])
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def test_references_parse_and_a_bad_one_is_named() -> None:
    assert parse_reference("models:/m@champion", NAME) == ModelReference("m", None, "champion")
    assert parse_reference("models:/m/12", NAME) == ModelReference("m", "12", None)
    assert parse_reference("3", NAME) == ModelReference(NAME, "3", None)
    assert parse_reference("@challenger", NAME) == ModelReference(NAME, None, "challenger")
    for bad in ("models:/m", "models:/m/x", "champion", "models:/@a"):
        with pytest.raises(LineageError, match=f"'{bad}': expected models:/NAME@ALIAS"):
            parse_reference(bad, NAME)


def test_the_recorded_outputs_are_those_of_the_stages_upstream_of_register() -> None:
    pipeline = {
        "stages": {
            "a": {"deps": ["data"], "outs": ["artifacts/a"]},
            "b": {"deps": ["artifacts/a/x.bin"], "outs": [{"artifacts/b.${v.name}.onnx": {}}]},
            "side": {"deps": ["artifacts/a"], "metrics": [{"metrics/side.json": {}}]},
            "register": {"deps": ["artifacts/b.int8.onnx"], "metrics": ["metrics/r.json"]},
            "after": {"deps": ["metrics/r.json"], "outs": ["artifacts/after"]},
        }
    }
    assert upstream_stages(pipeline, {"v": {"name": "int8"}}, "register") == {"a", "b"}
    real = upstream_stages(
        yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text()),
        yaml.safe_load((REPO_ROOT / "params.yaml").read_text()),
        "register",
    )
    assert {"prepare", "embed-train", "distill", "onnx", "quantize", "benchmark"} <= real
    assert not real & {"register", "evaluate", "results"}


@pytest.mark.slow
def test_lineage_traces_the_champion_to_its_commit_data_params_and_outputs(
    project: Path, export_dir: Path
) -> None:
    commit = _git(project, "rev-parse", "HEAD")
    assert _register(export_dir, 0.8)["alias"] == "champion"
    code, output = _lineage("models:/pair-classifier@champion", "--json")
    assert code == 0, output
    found = json.loads(output)
    assert (found["model"], found["version"], found["aliases"]) == (NAME, "1", ["champion"])
    assert found["git_commit"] == commit
    assert found["git_dirty"] is True and found["uncommitted_diff_recorded"] is True
    assert found["git_remote"] == REMOTE  # the token in the remote's URL is not recorded
    assert found["data_md5"] == DATA_MD5
    assert found["params"]["train.lr"] == 1.23e-4
    assert found["params"]["register.model_name"] == NAME
    assert found["metrics"]["f1"] == 0.8 and found["metrics"][SPEED] == 100.0
    assert found["outputs"] == {
        "prepare": {"artifacts/prepared": "aaa111.dir", "metrics/data.json": "bbb222"},
        "quantize": {"artifacts/quantized": "ccc333.dir"},
    }
    uri = os.environ["MLFLOW_TRACKING_URI"]
    assert found["rebuild"] == [
        f"git clone {REMOTE} pair-classifier",
        "cd pair-classifier",
        f"git checkout {commit}",
        f"MLFLOW_TRACKING_URI={uri} pair-classifier lineage models:/pair-classifier/1 "
        "--diff-out lineage.diff",
        "git apply lineage.diff",
        "dvc pull -r team --allow-missing",
        "dvc repro",
    ]
    code, text = _lineage("1")  # the same version, by number, as text
    assert code == 0, text
    assert f"git commit {commit}, dirty (uncommitted changes recorded)" in text
    assert f"md5 {DATA_MD5} (data.dvc), DVC remote team" in text
    assert "  train.lr = 0.000123" in text
    assert "ccc333.dir" in text and "artifacts/quantized" in text
    assert f"  git checkout {commit}" in text and "  dvc repro" in text


@pytest.mark.slow
def test_the_recorded_diff_rebuilds_the_uncommitted_state(project: Path, export_dir: Path) -> None:
    _register(export_dir, 0.8)
    dirty = (project / "params.yaml").read_text()
    _git(project, "checkout", "--", "params.yaml")
    assert (project / "params.yaml").read_text() != dirty
    code, output = _lineage("@champion", "--diff-out", "lineage.diff")
    assert code == 0, output
    _git(project, "apply", "lineage.diff")
    assert (project / "params.yaml").read_text() == dirty
    assert json.loads(_lineage("1", "--json")[1])["params"]["train.lr"] == 1.23e-4


@pytest.mark.slow
def test_challenger_and_a_version_registered_without_lineage_files(
    project: Path, export_dir: Path
) -> None:
    _git(project, "commit", "-qam", "the params change")  # clean from here on
    _register(export_dir, 0.8)
    assert _register(export_dir, 0.7, with_lineage=False)["alias"] == "challenger"
    code, output = _lineage("@challenger", "--json")
    assert code == 0, output
    found = json.loads(output)
    assert (found["version"], found["aliases"], found["git_dirty"]) == ("2", ["challenger"], False)
    assert "does not beat the champion (version 1)" in found["champion_decision"]
    assert found["params"] == {} and found["outputs"] == {}  # not recorded: still traced by tags
    assert found["data_md5"] == DATA_MD5 and found["metrics"]["f1"] == 0.7
    assert not any("lineage.diff" in command for command in found["rebuild"])
    code, text = _lineage("@challenger")
    assert "outputs      not recorded" in text and "git apply" not in text
    code, output = _lineage("@champion", "--diff-out", "x.diff")
    assert code == USER_ERROR_EXIT_CODE
    assert "models:/pair-classifier/1: no uncommitted changes recorded" in output


@pytest.mark.slow
def test_an_unknown_model_alias_or_version_is_named(project: Path, export_dir: Path) -> None:
    _register(export_dir, 0.8)
    cases = {
        "@production": "models:/pair-classifier@production: registered model 'pair-classifier' "
        "has no alias 'production' (its aliases: @champion -> version 1)",
        "7": "models:/pair-classifier/7: registered model 'pair-classifier' has no version 7 "
        "(its versions: [1])",
        "models:/other@champion": "models:/other@champion: no registered model 'other' in the "
        "registry at sqlite:///",
    }
    for reference, message in cases.items():
        code, output = _lineage(reference)
        assert code == USER_ERROR_EXIT_CODE, output
        assert message in " ".join(output.split()), output
    assert "it holds ['pair-classifier']" in _lineage("models:/other@champion")[1]
    client = MlflowClient()
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 1  # nothing was changed
