"""What the serving tests share: free loopback ports, plain HTTP requests whose error statuses
are replies, and servers started as a user starts them (the CLI) and stopped by their PID."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import yaml
from helpers import composed_params

from pair_classifier.tracking import Lineage

MODEL_NAME = "pair-classifier"
MAX_BATCH_PAIRS = 8  # small, so that a batch over it stays a small request
START_TIMEOUT_S = 180  # a busy 2-core machine imports MLflow twice before the server answers
STOP_TIMEOUT_S = 30
HTTP_TIMEOUT_S = 60
LINEAGE = Lineage(
    git_commit="0123abcd",
    git_dirty=False,
    git_diff_hash="",
    data_md5="d474",
    params_md5="a11",
    dvc_experiment="",
)
CLI = Path(sys.executable).parent / "pair-classifier"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> dict:
        return json.loads(self.body)


def post(
    url: str,
    body: bytes,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Reply:
    """POST ``body`` as is; an HTTP error status is a reply, not an exception."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return Reply(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.read(), dict(error.headers))


def pairs_body(text_a: list, text_b: list) -> bytes:
    return json.dumps({"inputs": {"text_a": text_a, "text_b": text_b}}).encode()


@dataclass
class Server:
    """A foreground serve command started by a test, its output in ``log``."""

    process: subprocess.Popen
    url: str
    log: Path

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> int:
        """SIGTERM by PID, as a user's process manager would; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STOP_TIMEOUT_S)


def start_server(
    argv: list[str], url: str, ready_path: str, env: dict[str, str], log: Path
) -> Server:
    """Start ``argv`` and wait until ``url + ready_path`` accepts a request (any HTTP status)."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(process, url, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            urllib.request.urlopen(url + ready_path, timeout=2).close()
            return server
        except urllib.error.HTTPError:
            return server
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"{argv[:4]} did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)


def serving_params(folder: Path, **serving: object) -> Path:
    """A params.yaml whose serving section has the test's values."""
    params = composed_params()
    params["serving"] |= {"max_batch_pairs": MAX_BATCH_PAIRS, "start_timeout_s": 150} | serving
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    return path


def tiny_triton_repository(
    export_dir: Path, root: Path, version: int, max_batch_pairs: int
) -> Path:
    """The CPU Triton repository of the tiny export's student graph, as registered ``version``."""
    from helpers import composed

    from pair_classifier.export.interface import MODEL_CARD, TOKENIZER_SUBDIR, variant_file
    from pair_classifier.export.served import ServedModel
    from pair_classifier.serving.triton_repository import build_repository
    from pair_classifier.serving.triton_settings import CPU_REPOSITORY, TritonConfig

    served = ServedModel(
        "fp32",
        export_dir / variant_file("student"),
        export_dir / MODEL_CARD,
        export_dir / TOKENIZER_SUBDIR,
    )
    build_repository(
        served,
        {"model_name": "pair-classifier", "version": version},
        composed("triton", TritonConfig, threads=1),
        max_batch_pairs,
        root,
        served.graph,
        None,
    )
    return root / CPU_REPOSITORY
