"""The library's layers: a module imports only from its own layer or those below, export and
serving never need the training code, and no two modules import each other round a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO_ROOT

PACKAGE = "pair_classifier"
# Each top-level module or folder of the package, by layer (0 is the ground floor).
LAYERS = {
    "constants": 0,
    "logs": 0,
    "errors": 0,
    "config": 0,
    "io_utils": 0,
    "tracking": 0,
    "data": 1,
    "services": 1,
    "model": 2,
    "evaluation": 2,
    "classifier": 3,
    "training": 3,
    "training_loggers": 3,
    "plots": 3,
    "predictor": 4,
    "compress": 4,
    "export": 5,
    "inference": 6,
    "prediction_files": 6,
    "benchmark": 6,
    "registry": 6,
    "loadtest": 6,
    "serving": 6,
    "monitoring": 6,
    "matmul_rates": 6,
    "results_page": 6,
    "results_tables": 6,
    "results_variants": 6,
    "results_serving": 6,
    "services_start": 6,
    "tuning": 6,
    "demo": 6,
    "cli": 6,
}
# What a unit must not import even where the layers would allow it.
FORBIDDEN = {
    "model": {"compress", "export", "training"},
    "export": {"inference", "training", "training_loggers", "compress"},
    "registry": {"model", "compress", "training", "training_loggers", "benchmark"},
    "serving": {"model", "compress", "training", "training_loggers", "benchmark"},
    "monitoring": {"model", "compress", "training", "training_loggers"},
    "demo": {"model", "compress", "training", "training_loggers", "benchmark"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Each library module and the library modules it imports, lazy imports included."""
    files = {_module_name(path): path for path in (REPO_ROOT / PACKAGE).rglob("*.py")}
    found: dict[str, set[str]] = {}
    for module, path in files.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
                imported.add(node.module)
                imported |= {f"{node.module}.{a.name}" for a in node.names} & files.keys()
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names if a.name.startswith(PACKAGE)}
        found[module] = imported - {module}
    return found


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_unit_has_a_layer() -> None:
    assert {_unit(module) for module in _imports()} - {PACKAGE} <= LAYERS.keys()


def test_no_module_imports_from_a_layer_above_or_a_forbidden_unit() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in _imports().items()
        for target in targets
        if _unit(module) != _unit(target)
        and (
            LAYERS[_unit(target)] > LAYERS[_unit(module)]
            or _unit(target) in FORBIDDEN.get(_unit(module), set())
        )
    ]
    assert upward == []


def test_no_import_cycles() -> None:
    imports = _imports()
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(imports.get(module, ())):
            if target in path:
                cycles.append(path[path.index(target) :] + [target])
            elif target not in done:
                visit(target, path + [target])
        done.add(module)

    done: set[str] = set()
    for module in sorted(imports):
        if module not in done:
            visit(module, [module])
    assert cycles == []
