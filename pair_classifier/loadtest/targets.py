"""The servers the load test compares, each started by the user's own command
(``pair-classifier serve triton|mlflow``) in its own process group, sent one pair per request
in its own JSON layout, and stopped by SIGTERM to that command's PID afterwards."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.loadtest.run import REQUEST_BODY, REQUEST_PATH, LoadTestError
from pair_classifier.serving.mlflow_serving import HEALTH_PATH, INVOCATIONS_PATH
from pair_classifier.serving.process import answers_ok, port_taken, stop_group
from pair_classifier.serving.triton_backend import INPUT_TEXT_A, INPUT_TEXT_B
from pair_classifier.serving.triton_server import READY_PATH

logger = logging.getLogger(__name__)

CLI_MODULE = "pair_classifier.cli"
POLL_INTERVAL_S = 0.5
WARM_UP_TIMEOUT_S = 60  # one warm-up request (the first loads the model's sessions)
TRITON_INFER_PATH = "/v2/models/{model}/infer"


def triton_body(first: str, second: str) -> dict[str, Any]:
    """Triton's v2 inference request for one pair: two BYTES inputs of shape [1, 1]."""
    return {
        "inputs": [
            {"name": name, "datatype": "BYTES", "shape": [1, 1], "data": [text]}
            for name, text in ((INPUT_TEXT_A, first), (INPUT_TEXT_B, second))
        ]
    }


def mlflow_body(first: str, second: str) -> dict[str, Any]:
    """MLflow's scoring-server request for one pair (the ``dataframe_split`` layout)."""
    return {"dataframe_split": {"columns": [TEXT_A, TEXT_B], "data": [[first, second]]}}


@dataclass(frozen=True)
class Target:
    """A server under test: how to start it, where it answers, what a request looks like."""

    name: str
    command: list[str]
    url: str
    health_path: str
    request_path: str
    body: Callable[[str, str], dict[str, Any]]

    def write_requests(self, pairs: pd.DataFrame, path: Path) -> Path:
        """One request per pair, as locust's clients send them (``locustfile``)."""
        with path.open("w", encoding="utf-8") as handle:
            for first, second in zip(pairs[TEXT_A], pairs[TEXT_B]):
                record = {REQUEST_PATH: self.request_path, REQUEST_BODY: self.body(first, second)}
                handle.write(json.dumps(record) + "\n")
        return path


def _serve_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", CLI_MODULE, "serve", *arguments]


def triton_target(name: str, host: str, port: int, metrics_port: int, model: str) -> Target:
    return Target(
        name=name,
        command=_serve_command(
            "triton", "--http-port", str(port), "--metrics-port", str(metrics_port)
        ),
        url=f"http://{host}:{port}",
        health_path=READY_PATH,
        request_path=TRITON_INFER_PATH.format(model=model),
        body=triton_body,
    )


def mlflow_target(name: str, host: str, port: int, model_uri: str) -> Target:
    return Target(
        name=name,
        command=_serve_command("mlflow", "--model", model_uri, "--port", str(port)),
        url=f"http://{host}:{port}",
        health_path=HEALTH_PATH,
        request_path=INVOCATIONS_PATH,
        body=mlflow_body,
    )


@contextmanager
def running(
    target: Target, log_file: Path, start_timeout_s: float, stop_timeout_s: float
) -> Iterator[subprocess.Popen]:
    """``target``'s command running and answering its health check; stopped afterwards by
    SIGTERM to its process group (the command stops what it started), SIGKILL after
    ``stop_timeout_s``. Its output goes to ``log_file``, quoted when it fails to start."""
    host_port = target.url.removeprefix("http://").rsplit(":", 1)
    if port_taken(host_port[0], int(host_port[1])):
        raise LoadTestError(f"{target.name}: {target.url} is already in use; stop what holds it")
    logger.info("Starting %s: %s", target.name, " ".join(target.command))
    started = time.monotonic()
    with log_file.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            target.command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_healthy(target, process, log_file, start_timeout_s)
        logger.info(
            "%s ready in %.1f s (PID %d)", target.name, time.monotonic() - started, process.pid
        )
        yield process
    finally:
        stop_group(target.name, process, stop_timeout_s)
        logger.info("%s stopped", target.name)


def _wait_healthy(
    target: Target, process: subprocess.Popen, log_file: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while not answers_ok(target.url + target.health_path):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log_file.read_text(encoding="utf-8", errors="replace")[-3000:]
            state = (
                f"exited with code {process.returncode}"
                if process.poll() is not None
                else f"not healthy after {timeout_s:g} s"
            )
            raise LoadTestError(f"{target.name} ({' '.join(target.command)}) {state}:\n{tail}")
        time.sleep(POLL_INTERVAL_S)


def warm_up(target: Target, pairs: pd.DataFrame, requests: int) -> None:
    """A few requests before measuring (first-call costs: sessions, caches, thread pools)."""
    for first, second in list(zip(pairs[TEXT_A], pairs[TEXT_B]))[:requests]:
        request = urllib.request.Request(
            target.url + target.request_path,
            data=json.dumps(target.body(first, second)).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=WARM_UP_TIMEOUT_S) as response:
            response.read()


def free_ports(host: str, count: int) -> Sequence[int]:
    """``count`` distinct ports nothing listens on now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind((host, 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()
