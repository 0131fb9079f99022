"""Stage logging: the entry point sets it up, and every stage says when it starts and finishes."""

from __future__ import annotations

import ast
import importlib.machinery
import logging
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO_ROOT

from pair_classifier.constants import ENV_LOG_LEVEL
from pair_classifier.errors import exit_on_user_error
from pair_classifier.logs import OWN_LOGGERS, configure_logging

STAGES_DIR = REPO_ROOT / "stages"
TIME_STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


@pytest.fixture(autouse=True)
def _restore_root_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """configure_logging changes the root logger and the project's: give the next test them back."""
    monkeypatch.delenv(ENV_LOG_LEVEL, raising=False)
    root = logging.getLogger()
    handlers = list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in OWN_LOGGERS}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)


def test_the_entry_point_logs_a_stage_at_info_with_time_and_name(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    stage_logger = logging.getLogger("stages.tiny")

    def main() -> None:
        stage_logger.info("Start: reading %s", "in.tsv")
        stage_logger.debug("not shown at the default level")
        stage_logger.info("Done: accuracy %.2f; wrote %s", 0.9, "out.json")

    exit_on_user_error(main)

    assert [r.getMessage() for r in caplog.records if r.name == "stages.tiny"] == [
        "Start: reading in.tsv",
        "Done: accuracy 0.90; wrote out.json",
    ]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("INFO stages.tiny: Start: reading in.tsv")
    assert lines[1].endswith("INFO stages.tiny: Done: accuracy 0.90; wrote out.json")
    for line in lines:
        assert re.match(TIME_STAMP, line), line


def test_the_level_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_LOG_LEVEL, "debug")
    configure_logging()
    configure_logging()  # a second call replaces the handler instead of doubling every line
    logging.getLogger("stages.tiny").debug("shown")
    assert capsys.readouterr().err.count("DEBUG stages.tiny: shown") == 1

    monkeypatch.setenv(ENV_LOG_LEVEL, "WARNING")
    configure_logging()
    logging.getLogger("stages.tiny").info("hidden")
    assert capsys.readouterr().err == ""


def test_libraries_keep_their_info_lines_to_themselves(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging()
    logging.getLogger("onnxruntime.quantization").info("per-node chatter")
    logging.getLogger("onnxruntime.quantization").warning("a library's warning")
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .endswith("WARNING onnxruntime.quantization: a library's warning")
    )


def test_an_unknown_level_is_named_and_the_default_kept(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_LOG_LEVEL, "loud")
    configure_logging()
    logging.getLogger("stages.tiny").info("still shown")
    err = capsys.readouterr().err
    assert f"{ENV_LOG_LEVEL}='loud' is not a log level (expected one of" in err
    assert "DEBUG" in err and "logging at INFO" in err
    assert "INFO stages.tiny: still shown" in err


def test_a_stage_run_with_python_m_is_logged_under_its_module_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    main_module = types.ModuleType("__main__")
    main_module.__spec__ = importlib.machinery.ModuleSpec("stages.prepare", None)
    monkeypatch.setitem(sys.modules, "__main__", main_module)
    configure_logging()
    logging.getLogger("__main__").info("Start: validating")
    assert "INFO stages.prepare: Start: validating" in capsys.readouterr().err


def _logged_messages(function: ast.FunctionDef) -> list[str]:
    """The literal first arguments of ``logger.info(...)`` calls in ``function``."""
    return [
        node.args[0].value
        for node in ast.walk(function)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "info"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "logger"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]


@pytest.mark.parametrize("script", sorted(STAGES_DIR.glob("[!_]*.py")), ids=lambda p: p.stem)
def test_every_stage_logs_its_start_and_its_finish(script: Path) -> None:
    tree = ast.parse(script.read_text(encoding="utf-8"))
    assert "logging.getLogger(__name__)" in ast.unparse(tree), f"{script.name}: no module logger"
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    messages = _logged_messages(main)
    assert any(m.startswith("Start: ") for m in messages), f"{script.name}: no start line"
    assert any(m.startswith("Done: ") for m in messages), f"{script.name}: no finish line"
