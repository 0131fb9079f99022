"""Tracking helpers that need no pipeline: server checks, lineage, flattening."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import pytest
from helpers import composed

from pair_classifier.config import TrackingConfig
from pair_classifier.constants import CHECKPOINTS_DIR, PREPARED_DIR, SPLIT_SUFFIX
from pair_classifier.tracking import (
    TrackingUnavailable,
    check_reachable,
    data_version,
    flatten,
    numeric_metrics,
    stage_run,
    tracking_uri,
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_fails_fast_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started = time.perf_counter()
    with pytest.raises(TrackingUnavailable, match=rf"MLflow tracking server {uri} is unreachable"):
        with stage_run("prepare", {}, composed("tracking", TrackingConfig, server_timeout_s=2)):
            pytest.fail("the stage body must not run")
    assert time.perf_counter() - started < 10


def test_environment_wins_then_config_then_embedded_store(monkeypatch: pytest.MonkeyPatch) -> None:
    embedded = composed("tracking", TrackingConfig, default_store="x.db")
    assert tracking_uri(embedded).endswith("/x.db")
    configured = composed("tracking", TrackingConfig, tracking_uri="http://h:1")
    assert tracking_uri(configured) == "http://h:1"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://h:2")
    assert tracking_uri(configured) == "http://h:2"


def test_sqlite_store_needs_no_check() -> None:
    check_reachable("sqlite:///nowhere.db", 0.1)


def test_flatten_and_numeric_metrics() -> None:
    tree = {"a": {"b": 1, "c": [1, 2]}, "d": "text", "e": True, "f": 0.5}
    assert flatten(tree) == {"a.b": 1, "a.c": [1, 2], "d": "text", "e": True, "f": 0.5}
    assert numeric_metrics(tree) == {"a.b": 1.0, "f": 0.5}


def test_data_version_reads_data_dvc(tmp_path: Path) -> None:
    dvc_file = tmp_path / "data.dvc"
    assert data_version(dvc_file) == "untracked"
    dvc_file.write_text("outs:\n- md5: abc123.dir\n  path: data\n", encoding="utf-8")
    assert data_version(dvc_file) == "abc123.dir"


def test_embed_train_keeps_its_checkpoints_when_tracking_is_unreachable(
    in_tmp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints are not in DVC's cache: nothing may clear them before the run can be tracked."""
    from helpers import REPO_ROOT

    from stages import embed_train

    shutil.copy(REPO_ROOT / "params.yaml", in_tmp_dir / "params.yaml")
    (in_tmp_dir / PREPARED_DIR).mkdir(parents=True)
    for split in ("train", "val"):  # enough for the run's fingerprint
        (in_tmp_dir / PREPARED_DIR / f"{split}{SPLIT_SUFFIX}").write_bytes(split.encode())
    checkpoints = in_tmp_dir / CHECKPOINTS_DIR
    checkpoints.mkdir(parents=True)
    (checkpoints / "last.ckpt").write_bytes(b"an unfinished run")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(TrackingUnavailable):
        embed_train.main()
    assert (checkpoints / "last.ckpt").read_bytes() == b"an unfinished run"
