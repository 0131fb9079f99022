"""`pair-classifier serve expose`: the nginx proxy in front of MLflow serving answers only
requests with the token, refuses bodies over the limit with a 413, keeps the server answering,
and stops with everything it started; without a token it refuses to start."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from helpers import composed
from serving_helpers import CLI, Server, free_port, pairs_body, post, serving_params, start_server
from typer.testing import CliRunner

from pair_classifier.cli import app
from pair_classifier.errors import USER_ERROR_EXIT_CODE
from pair_classifier.serving.expose import NGINX, NGINX_DIRS
from pair_classifier.serving.process import port_taken
from pair_classifier.serving.settings import ServingConfig

INSTALL_TIMEOUT_S = 600
MAX_BODY_BYTES = 4096  # small, so that an oversized body is cheap to send
CONFIG = composed("serving", ServingConfig)
TOKEN = secrets.token_urlsafe(CONFIG.min_token_chars)
GOOD = pairs_body(["the company said profits rose ."], ["profits rose , the company said ."])


def _nginx() -> str | None:
    return shutil.which(NGINX) or shutil.which(NGINX, path=os.pathsep.join(NGINX_DIRS))


@pytest.fixture(scope="session")
def nginx() -> str:
    """nginx, installed with apt-get when it is missing and this runs as root; else a skip."""
    if _nginx() is None and os.geteuid() == 0 and shutil.which("apt-get"):
        install = ["apt-get", "install", "-y", "nginx"]
        for command in (install, ["apt-get", "update"], install):  # update only if needed
            subprocess.run(command, capture_output=True, timeout=INSTALL_TIMEOUT_S, check=False)
            if _nginx() is not None:
                break
    found = _nginx()
    if found is None:
        pytest.skip("nginx is not installed and could not be (apt-get install nginx as root)")
    return found


@pytest.fixture(scope="module")
def proxy(
    nginx: str, mlflow_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The proxy in front of the module's MLflow server, on a free port."""
    work = tmp_path_factory.mktemp("expose")
    port = free_port()
    params = serving_params(work, max_body_bytes=MAX_BODY_BYTES)
    server = start_server(
        [str(CLI), "serve", "expose", "--upstream", mlflow_server.url, "--port", str(port)]
        + ["--params-file", str(params)],
        f"http://127.0.0.1:{port}",
        "/ping",
        dict(os.environ) | {CONFIG.token_env: TOKEN},
        work / "expose.log",
    )
    yield server
    server.stop()


def _invoke(proxy: Server, body: bytes, token: str | None) -> int:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return post(f"{proxy.url}/invocations", body, headers=headers).status


@pytest.mark.slow
def test_only_requests_with_the_token_get_through(proxy: Server) -> None:
    refused = post(f"{proxy.url}/invocations", GOOD)
    assert refused.status == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert _invoke(proxy, GOOD, "x" * len(TOKEN)) == 401
    assert _invoke(proxy, GOOD, TOKEN[:-1]) == 401
    assert post(f"{proxy.url}/invocations", GOOD, headers={"Authorization": TOKEN}).status == 401
    answered = post(f"{proxy.url}/invocations", GOOD, headers={"Authorization": f"Bearer {TOKEN}"})
    assert answered.status == 200
    assert answered.json()["predictions"][0]["model_version"] == "1"


@pytest.mark.slow
def test_an_oversized_body_gets_a_413_and_the_server_keeps_answering(proxy: Server) -> None:
    padding = "profits " * MAX_BODY_BYTES
    oversized = pairs_body([padding], ["b"])
    assert len(oversized) > MAX_BODY_BYTES
    reply = post(
        f"{proxy.url}/invocations", oversized, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert reply.status == 413
    assert str(MAX_BODY_BYTES) in reply.json()["message"]
    assert _invoke(proxy, GOOD, TOKEN) == 200


@pytest.mark.slow
def test_bad_requests_through_the_proxy_keep_the_servers_4xx(proxy: Server) -> None:
    assert _invoke(proxy, b'{"inputs": ', TOKEN) == 400
    assert _invoke(proxy, pairs_body([""], ["b"]), TOKEN) == 400
    assert _invoke(proxy, GOOD, TOKEN) == 200


@pytest.mark.slow
def test_sigterm_stops_the_proxy_and_its_workers(proxy: Server, mlflow_server: Server) -> None:
    """Last in the module: it stops the module's proxy; the server behind it keeps running."""
    started = proxy.descendants()
    assert any("nginx" in process.name() for process in started)
    assert proxy.stop() == 0
    assert not [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not port_taken("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]))
    assert post(f"{mlflow_server.url}/invocations", GOOD).status == 200


@pytest.mark.parametrize(
    ("token", "says"),
    [
        (None, "is unset; the proxy refuses to run without a token"),
        ("short", f"expected at least {CONFIG.min_token_chars}"),
        ("x" * CONFIG.min_token_chars + '"; return 200;', "may hold only letters, digits"),
    ],
)
def test_the_proxy_refuses_to_start_without_a_good_token(
    token: str | None, says: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(CONFIG.token_env, raising=False)
    if token is not None:
        monkeypatch.setenv(CONFIG.token_env, token)
    params = serving_params(tmp_path)
    result = CliRunner().invoke(
        app,
        ["serve", "expose", "--upstream", "http://127.0.0.1:1", "--params-file", str(params)],
    )
    assert result.exit_code == USER_ERROR_EXIT_CODE
    assert says in result.output


@pytest.mark.parametrize(
    "upstream", ["127.0.0.1:5001", "http://127.0.0.1", "http://127.0.0.1:5001/x", "ftp://a:1"]
)
def test_the_proxy_refuses_an_upstream_that_is_not_an_address(
    upstream: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(CONFIG.token_env, TOKEN)
    params = serving_params(tmp_path)
    result = CliRunner().invoke(
        app, ["serve", "expose", "--upstream", upstream, "--params-file", str(params)]
    )
    assert result.exit_code == USER_ERROR_EXIT_CODE
    assert "expected the server's address as http://HOST:PORT" in result.output
