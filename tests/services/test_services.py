"""`services up|down|status` with real servers on 127.0.0.1 (PostgreSQL, moto's S3, MLflow),
the session's team services (tests/services/team_services.py: free ports, a scratch folder,
stopped by PID at the end)."""

from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest
from helpers import REPO_ROOT, composed
from services.team_services import AWS_ENV, bucket_keys, postgres_rows, services_config
from typer.testing import CliRunner

from pair_classifier.cli import app
from pair_classifier.services import manager, postgres
from pair_classifier.services.common import ServiceError, port_open
from pair_classifier.services.settings import ServicesConfig, load_services

pytestmark = pytest.mark.slow


@pytest.fixture
def services(team_services: ServicesConfig) -> ServicesConfig:
    return team_services


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)


def _log_run(config: ServicesConfig) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=config.mlflow.url)
    experiment = client.get_experiment_by_name("services-test")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("services-test")
    )
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "accuracy", 0.75)
    client.log_text(run.info.run_id, "hello", "notes/hello.txt")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _run_in_postgres(config: ServicesConfig, run_id: str) -> tuple[str, float]:
    (row,) = postgres_rows(
        config,
        "SELECT r.status, m.value FROM runs r JOIN metrics m ON m.run_uuid = r.run_uuid "
        "WHERE r.run_uuid = %s AND m.key = 'accuracy'",
        run_id,
    )
    return row


def _artifact_keys(config: ServicesConfig, run_id: str) -> list[str]:
    return [key for key in bucket_keys(config, f"{config.s3.mlflow_prefix}/") if run_id in key]


def test_up_starts_every_service_healthy(services: ServicesConfig) -> None:
    statuses = manager.status(services)
    assert [s.name for s in statuses] == ["postgresql", "s3", "mlflow"]
    assert all(s.healthy and s.pid for s in statuses), statuses


def test_a_run_lands_in_postgres_with_its_artifact_in_s3(services: ServicesConfig) -> None:
    run_id = _log_run(services)
    assert _run_in_postgres(services, run_id) == ("FINISHED", 0.75)
    keys = _artifact_keys(services, run_id)
    assert len(keys) == 1 and keys[0].endswith("artifacts/notes/hello.txt")


def test_up_twice_is_harmless(services: ServicesConfig) -> None:
    pids = [s.pid for s in manager.status(services)]
    said: list[str] = []
    manager.up(services, said.append)
    assert said == [f"{name}: already running" for name in ("postgresql", "s3", "mlflow")]
    assert [s.pid for s in manager.status(services)] == pids


def test_down_stops_by_pid_and_data_survives_down_and_up(services: ServicesConfig) -> None:
    from mlflow.tracking import MlflowClient

    run_id = _log_run(services)
    processes = [psutil.Process(s.pid) for s in manager.status(services)]
    manager.down(services)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes)
    assert not port_open(services.mlflow.host, services.mlflow.port)
    assert not any(s.healthy for s in manager.status(services))
    manager.up(services)
    client = MlflowClient(tracking_uri=services.mlflow.url)
    assert client.get_run(run_id).data.metrics == {"accuracy": 0.75}
    assert _artifact_keys(services, run_id)
    assert _run_in_postgres(services, run_id) == ("FINISHED", 0.75)


def test_a_bind_beyond_loopback_without_auth_is_refused(tmp_path: Path) -> None:
    config = services_config(tmp_path, host="0.0.0.0", auth=False)
    with pytest.raises(ServiceError, match="mlflow: refusing to listen on 0.0.0.0"):
        manager.up(config)
    assert not (tmp_path / "pids").exists()  # nothing was started


def test_a_taken_port_is_named_with_the_way_out(tmp_path: Path) -> None:
    config = services_config(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", config.s3.port))
        taken.listen()
        from pair_classifier.services import s3

        with pytest.raises(ServiceError, match="s3: port .* is taken.*PAIR_CLASSIFIER_S3_PORT"):
            s3.start(config)


def test_status_exits_non_zero_when_a_service_is_down(tmp_path: Path) -> None:
    env = {"PAIR_CLASSIFIER_SERVICES_DIR": str(tmp_path), "PAIR_CLASSIFIER_MLFLOW_PORT": "1"}
    result = CliRunner().invoke(
        app, ["services", "status", "--params-file", str(REPO_ROOT / "params.yaml")], env=env
    )
    assert result.exit_code == 1
    assert "mlflow" in result.output and "DOWN" in result.output


def test_environment_variables_override_the_config() -> None:
    env = {"PAIR_CLASSIFIER_S3_PORT": "9999", "PAIR_CLASSIFIER_MLFLOW_AUTH": "true"}
    config = load_services(REPO_ROOT / "params.yaml", env)
    assert (config.s3.port, config.mlflow.auth) == (9999, True)


def test_the_team_dvc_remote_points_at_the_configured_bucket() -> None:
    config = composed("services", ServicesConfig)
    dvc_config = configparser.ConfigParser()
    dvc_config.read(REPO_ROOT / ".dvc" / "config")
    remote = dvc_config[f"'remote \"{config.s3.dvc_remote}\"'"]
    assert remote["url"] == f"s3://{config.s3.bucket}/dvc"
    assert remote["endpointurl"] == config.s3.endpoint_url
    assert "remote" not in dvc_config["core"]  # not the default: download-data never waits on it


def _git_dvc(cwd: Path, *args: str) -> None:
    command = ["git", *args[1:]] if args[0] == "git" else [sys.executable, "-m", "dvc", *args]
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, env=os.environ | AWS_ENV)


def test_dvc_push_then_pull_into_a_fresh_clone_gives_identical_files(
    services: ServicesConfig, tmp_path: Path
) -> None:
    origin = tmp_path / "origin"
    (origin / "data").mkdir(parents=True)
    (origin / "data" / "tiny.txt").write_text("a tiny DVC-tracked file\n")
    _git_dvc(origin, "git", "init", "-q")
    _git_dvc(origin, "init", "-q")
    _git_dvc(origin, "remote", "add", "team", f"s3://{services.s3.bucket}/dvc-test")
    _git_dvc(origin, "remote", "modify", "team", "endpointurl", services.s3.endpoint_url)
    _git_dvc(origin, "add", "data")
    _git_dvc(origin, "git", "add", "-A")
    _git_dvc(origin, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "data")
    _git_dvc(origin, "push", "-r", "team")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
    _git_dvc(clone, "pull", "-r", "team")
    assert (clone / "data" / "tiny.txt").read_bytes() == (origin / "data" / "tiny.txt").read_bytes()


def test_with_auth_on_the_server_refuses_anonymous_clients(
    services: ServicesConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib.request

    from pair_classifier.services import mlflow_server
    from pair_classifier.services.common import http_status

    data_dir = Path(tempfile.mkdtemp(prefix="pairclf-auth-"))
    base = services_config(data_dir, auth=True)
    config = composed(
        "services", ServicesConfig, data_dir=str(data_dir),
        postgres=vars(services.postgres), s3=vars(services.s3), mlflow=vars(base.mlflow),
    )  # fmt: skip
    monkeypatch.setenv("PAIR_CLASSIFIER_POSTGRES_PASSWORD", postgres.password(services))
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    with pytest.raises(ServiceError, match="MLFLOW_AUTH_ADMIN_PASSWORD is unset"):
        mlflow_server.start(config)
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "a-test-only-password")
    try:
        mlflow_server.start(config)
        url = f"{config.mlflow.url}/api/2.0/mlflow/experiments/search?max_results=1"
        assert http_status(url) == 401
        opener = urllib.request.build_opener(urllib.request.HTTPBasicAuthHandler(
            password_mgr := urllib.request.HTTPPasswordMgrWithDefaultRealm()))  # fmt: skip
        password_mgr.add_password(None, config.mlflow.url, "admin", "a-test-only-password")
        with opener.open(url) as response:
            assert response.status == 200
    finally:
        mlflow_server.stop(config)
        shutil.rmtree(data_dir, ignore_errors=True)
