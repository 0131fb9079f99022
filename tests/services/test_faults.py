"""Faults of the team services, on the real servers (the session's `team_services`): each is
a clear error naming the service and what to do, and nothing is lost once it is back.

Every test that stops a service starts it again (`services up`'s code) before it ends, so the
session's services are whole for the tests after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from helpers import REPO_ROOT, composed, write_mrpc_dataset
from mlflow.tracking import MlflowClient
from services.team_services import AWS_ENV, free_port
from typer.testing import CliRunner

from pair_classifier.cli import app
from pair_classifier.config import DataConfig, TrackingConfig
from pair_classifier.data.download import download_data
from pair_classifier.data.reading import DataError
from pair_classifier.errors import USER_ERROR_EXIT_CODE
from pair_classifier.services import manager, mlflow_server, postgres, s3
from pair_classifier.services.common import port_open, wait_until
from pair_classifier.services.remote import RemoteError, check_remote, remote_settings
from pair_classifier.services.settings import ServicesConfig
from pair_classifier.tracking import TrackingUnavailable, stage_run

pytestmark = pytest.mark.slow

STEPS_BEFORE, STEPS_AFTER = 3, 3
SERVER_TIMEOUT_S = 5  # tracking.server_timeout_s in these tests
FAIL_FAST_S = 20  # a down service is reported within this, not after MLflow's retries
MOTO_START_S = 30.0
GIT_IDENTITY = ("-c", "user.name=t", "-c", "user.email=t@t")
TINY_DATA = {"train": 8, "val": 4, "test": 4}


@pytest.fixture(autouse=True)
def _client_env(monkeypatch: pytest.MonkeyPatch, team_services: ServicesConfig) -> None:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team_services.mlflow.url)
    yield
    mlflow.set_tracking_uri(None)


def _tracking(**values: object) -> TrackingConfig:
    return composed(
        "tracking", TrackingConfig, experiment_name="faults", log_system_metrics=False,
        server_timeout_s=SERVER_TIMEOUT_S, **values,
    )  # fmt: skip


def test_metrics_logged_before_and_after_a_tracking_server_restart_all_arrive(
    team_services: ServicesConfig, in_tmp_dir: Path
) -> None:
    """A stage's run outlives a restart of the server: MLflow's client retries a refused
    connection with exponential backoff (MLFLOW_HTTP_REQUEST_MAX_RETRIES, 7 by default: about
    four minutes), so the calls made while it is down wait for it instead of failing."""
    errors: list[BaseException] = []

    def restart() -> None:
        try:
            mlflow_server.start(team_services)
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)

    with stage_run("restart", {"fault": "restart"}, _tracking()) as run_id:
        for step in range(STEPS_BEFORE):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        assert mlflow_server.stop(team_services)
        assert not port_open("127.0.0.1", team_services.mlflow.port)
        thread = threading.Thread(target=restart)
        thread.start()
        started = time.monotonic()
        for step in range(STEPS_BEFORE, STEPS_BEFORE + STEPS_AFTER):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)  # the first waits for it
        waited = time.monotonic() - started
        thread.join()
    assert not errors, errors
    client = MlflowClient(team_services.mlflow.url)
    history = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(STEPS_BEFORE + STEPS_AFTER))
    assert client.get_run(run_id).info.status == "FINISHED"
    assert waited > 1.0  # the calls did wait for the restart (it takes seconds)


def test_postgresql_down_is_named_with_the_command_that_starts_it(
    team_services: ServicesConfig, in_tmp_dir: Path
) -> None:
    with stage_run("before", {}, _tracking()) as before:
        mlflow.log_metric("kept", 1.0)
    assert postgres.stop(team_services)
    try:
        assert not port_open(team_services.postgres.host, team_services.postgres.port)
        started = time.monotonic()
        with pytest.raises(TrackingUnavailable) as refused:
            with stage_run("register", {}, _tracking()):
                pytest.fail("the stage body must not run")
        assert time.monotonic() - started < FAIL_FAST_S
        message = str(refused.value)
        assert f"MLflow tracking server {team_services.mlflow.url} is up" in message
        assert "its PostgreSQL is not: HTTP 503" in message
        assert "`pair-classifier services up` starts it" in message
        lineage = CliRunner().invoke(
            app, ["lineage", "@champion", "--params-file", str(REPO_ROOT / "params.yaml")]
        )
        assert lineage.exit_code == USER_ERROR_EXIT_CODE
        assert "its PostgreSQL is not" in lineage.output
        assert "`pair-classifier services up`" in lineage.output
    finally:
        manager.up(team_services)
    with stage_run("after", {}, _tracking()) as after:  # repaired by `services up`
        mlflow.log_metric("kept", 2.0)
    client = MlflowClient(team_services.mlflow.url)
    assert client.get_run(before).data.metrics == {"kept": 1.0}  # nothing lost
    assert client.get_run(after).data.metrics == {"kept": 2.0}


def test_s3_down_stops_a_stage_naming_the_artifact_store(
    team_services: ServicesConfig, in_tmp_dir: Path
) -> None:
    assert s3.stop(team_services)
    try:
        with pytest.raises(TrackingUnavailable, match="its artifact store \\(S3"):
            with stage_run("onnx", {}, _tracking()):
                pytest.fail("the stage body must not run")
    finally:
        manager.up(team_services)
    with stage_run("onnx", {}, _tracking()):
        mlflow.log_text("back", "notes/back.txt")


def _run(
    cwd: Path, *command: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    if command[0] == "dvc":
        command = (sys.executable, "-m", "dvc", *command[1:])
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, check=False,
        env=env or (os.environ | {"DVC_NO_ANALYTICS": "1"}),
    )  # fmt: skip


def _ok(cwd: Path, *command: str) -> str:
    result = _run(cwd, *command)
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def data_repo(tmp_path: Path, team_services: ServicesConfig) -> Path:
    """A git + DVC project whose default remote is `team` on the session's S3, holding a tiny
    MRPC-shaped data set (data.dvc), pushed."""
    repo = tmp_path / "repo"
    write_mrpc_dataset(repo / "data/mrpc", TINY_DATA)
    _ok(repo, "git", "init", "-q")
    _ok(repo, "dvc", "init", "-q")
    _ok(repo, "dvc", "remote", "add", "-d", "team", f"s3://{team_services.s3.bucket}/faults")
    _ok(repo, "dvc", "remote", "modify", "team", "endpointurl", team_services.s3.endpoint_url)
    _ok(repo, "dvc", "add", "-q", "data")
    _ok(repo, "git", "add", "-A")
    _ok(repo, "git", *GIT_IDENTITY, "commit", "-qm", "data")
    _ok(repo, "dvc", "push", "-r", "team")
    return repo


def _data_config() -> DataConfig:
    return composed("data", DataConfig, "data=mrpc", shared_dir=None, public_source=None)


def _forget_local_data(repo: Path) -> None:
    """No data and no cache: only the remote has them."""
    for folder in (repo / "data/mrpc", repo / ".dvc/cache"):
        subprocess.run(["rm", "-rf", str(folder)], check=True)


def _status(config: ServicesConfig) -> tuple[int, str]:
    env = {
        "PAIR_CLASSIFIER_SERVICES_DIR": config.data_dir,
        "PAIR_CLASSIFIER_POSTGRES_PORT": str(config.postgres.port),
        "PAIR_CLASSIFIER_S3_PORT": str(config.s3.port),
        "PAIR_CLASSIFIER_MLFLOW_PORT": str(config.mlflow.port),
    }
    result = CliRunner().invoke(
        app, ["services", "status", "--params-file", str(REPO_ROOT / "params.yaml")], env=env
    )
    return result.exit_code, " ".join(result.output.split())


def test_s3_down_dvc_push_and_download_data_name_the_endpoint(
    team_services: ServicesConfig,
    data_repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint = team_services.s3.endpoint_url
    clone = tmp_path / "clone"  # no data and no cache: only the remote has them
    _ok(tmp_path, "git", "clone", "-q", str(data_repo), str(clone))
    monkeypatch.chdir(clone)
    code, status = _status(team_services)
    assert code == 0 and f"dvc-remote up {endpoint} no PID remote 'team'" in status
    (data_repo / "data/mrpc/notes.txt").write_text("a new version of the data\n")
    _ok(data_repo, "dvc", "add", "-q", "data")
    assert s3.stop(team_services)
    try:
        push = _run(data_repo, "dvc", "push", "-r", "team")
        assert push.returncode != 0
        assert f'Could not connect to the endpoint URL: "{endpoint}' in push.stderr  # DVC's
        code, status = _status(team_services)
        assert code == 1
        assert f"dvc-remote DOWN {endpoint} no PID dvc-remote 'team' (s3://" in status
        assert "the S3 endpoint is unreachable" in status
        assert "with the team services run `pair-classifier services up`" in status
        with pytest.raises(DataError) as no_data:
            download_data(_data_config())
        message = " ".join(str(no_data.value).split())
        assert (
            f"dvc pull skipped: dvc-remote 'team' (s3://{team_services.s3.bucket}/faults "
            in message
        )
        assert f"at {endpoint}): the S3 endpoint is unreachable" in message
        assert "`pair-classifier services up`" in message
    finally:
        manager.up(team_services)
    _ok(data_repo, "dvc", "push", "-r", "team")  # the new version waited in the cache
    assert download_data(_data_config()) == "dvc remote"  # nothing lost
    assert sorted(path.name for path in (clone / "data/mrpc").iterdir()) == [
        "msr-para-test.tsv",
        "msr-para-train.tsv",
        "msr-para-val.tsv",
    ]


@pytest.fixture
def moto_with_auth() -> Iterator[str]:
    """A second moto S3 server that checks credentials as AWS does (it knows no key at all),
    stopped by its PID."""
    port = free_port()
    env = os.environ | {"INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    binary = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until("moto", lambda: port_open("127.0.0.1", port), MOTO_START_S, Path("moto.log"))
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()


def test_refused_or_missing_credentials_are_named_with_the_variables(
    team_services: ServicesConfig,
    data_repo: Path,
    moto_with_auth: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(data_repo)
    _ok(data_repo, "dvc", "remote", "modify", "--local", "team", "endpointurl", moto_with_auth)
    push = _run(data_repo, "dvc", "push", "-r", "team")
    assert push.returncode != 0 and "Forbidden" in push.stderr  # DVC's words
    with pytest.raises(RemoteError) as refused:
        check_remote("team", remote_settings("team"))
    message = str(refused.value)
    assert (
        f"dvc-remote 'team' (s3://{team_services.s3.bucket}/faults at {moto_with_auth})" in message
    )
    assert "the S3 server refused the credentials (InvalidAccessKeyId)" in message
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)" in message
    _forget_local_data(data_repo)
    with pytest.raises(DataError, match="refused the credentials \\(InvalidAccessKeyId\\)"):
        download_data(_data_config())

    _ok(data_repo, "dvc", "remote", "modify", "--local", "team", "endpointurl",
        team_services.s3.endpoint_url)  # fmt: skip
    for name in AWS_ENV:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(data_repo / "no-such-file"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(data_repo / "no-such-file"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(RemoteError, match="no AWS credentials found; set AWS_ACCESS_KEY_ID"):
        check_remote("team", remote_settings("team"))
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    assert download_data(_data_config()) == "dvc remote"  # right keys: the data is all there
