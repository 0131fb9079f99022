"""dvc.yaml: every library module a stage runs is among its deps, so `dvc repro` never keeps an
output that code it did not declare would now compute differently."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT

PACKAGE = "pair_classifier"
STAGE_COMMAND_PREFIX = "python -m "
# Plumbing every stage shares: reading params and prepared splits, naming paths, reporting
# errors, console logging, logging to MLflow. A change there is a whole-pipeline change
# (`dvc repro -f`).
PLUMBING = {
    "pair_classifier.config",
    "pair_classifier.constants",
    "pair_classifier.errors",
    "pair_classifier.io_utils",
    "pair_classifier.logs",
    "pair_classifier.tracking",
    "pair_classifier.data.preparation",
}


def _module_file(module: str) -> Path:
    path = REPO_ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else path / "__init__.py"


def _imported_modules(source: Path) -> set[str]:
    """Library modules ``source`` imports anywhere, lazy imports inside functions included."""
    found = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith(PACKAGE)}
    return found


def _modules_run_by(script: Path) -> set[str]:
    seen: set[str] = set()
    pending = list(_imported_modules(script))
    while pending:
        module = pending.pop()
        if module in seen or module in PLUMBING:
            continue
        seen.add(module)
        pending += _imported_modules(_module_file(module))
    return seen


def _stages() -> dict[str, dict]:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


@pytest.mark.parametrize("name", list(_stages()))
def test_stage_declares_the_library_code_it_runs(name: str) -> None:
    stage = _stages()[name]
    script = stage["cmd"].removeprefix(STAGE_COMMAND_PREFIX).replace(".", "/") + ".py"
    deps = [REPO_ROOT / dep for dep in stage["deps"]]
    assert REPO_ROOT / script in deps, f"{name}: its own script {script} is not a dep"
    undeclared = sorted(
        str(_module_file(module).relative_to(REPO_ROOT))
        for module in _modules_run_by(REPO_ROOT / script)
        if not any(_module_file(module).is_relative_to(dep) for dep in deps)
    )
    assert not undeclared, f"{name}: dvc.yaml deps miss {undeclared}"


def test_the_import_walk_follows_lazy_imports(tmp_path: Path) -> None:
    script = tmp_path / "stage.py"
    script.write_text("def main():\n    from pair_classifier.benchmark.measure import measure\n")
    modules = _modules_run_by(script)
    assert "pair_classifier.export.tensorrt_engine" in modules  # imported inside a function
    assert not modules & PLUMBING
