"""The real Triton server (the bundled `tritonserver`, from serving/triton's environment) on a
repository generated from the tiny export: `pair-classifier serve triton` on free loopback
ports, requests over its v2 HTTP API, answers compared with `predict`'s, every bad request
(a 4xx from Triton, the model or the nginx front, and the server still answers), then SIGTERM
by PID leaving no process and no shared-memory file."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from helpers import composed, pairs_frame
from serving_helpers import (
    CLI,
    MAX_BATCH_PAIRS,
    Server,
    free_port,
    post,
    serving_params,
    start_server,
    tiny_triton_repository,
)

from pair_classifier.export.interface import variant_file
from pair_classifier.export.onnx_predictor import OnnxPairPredictor
from pair_classifier.inference import predict_file
from pair_classifier.serving.expose import nginx_binary
from pair_classifier.serving.process import ServingError
from pair_classifier.serving.triton_client import TritonPredictor
from pair_classifier.serving.triton_front import (
    JS_PACKAGE,
    build_options,
    js_module,
    module_file,
)
from pair_classifier.serving.triton_server import SHM_DIR, SHM_PREFIX
from pair_classifier.serving.triton_settings import TritonConfig

pytestmark = pytest.mark.slow  # a real Triton server and its Python backend stub

VERSION = 7  # the registered version the folders are named by
MAX_ABS_PROBABILITY_DIFF = 1e-5
LONG_TEXT_WORDS = 2000  # far beyond the tiny model's 32 tokens
STOP_TIMEOUT_S = 40  # serving.stop_timeout_s, and a margin for the command's own exit


@dataclass
class TritonServer(Server):
    metrics_url: str = ""


@pytest.fixture(scope="module")
def repository(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CPU repository of the tiny export's student graph, as registered version VERSION."""
    root = tmp_path_factory.mktemp("triton-repository")
    return tiny_triton_repository(export_dir, root, VERSION, MAX_BATCH_PAIRS)


def serve(repository: Path, work: Path) -> TritonServer:
    """`pair-classifier serve triton` on free loopback ports."""
    http_port, metrics_port = free_port(), free_port()
    server = start_server(
        [str(CLI), "serve", "triton", "--repository", str(repository)]
        + ["--http-port", str(http_port), "--metrics-port", str(metrics_port)]
        + ["--params-file", str(serving_params(work))],
        f"http://127.0.0.1:{http_port}",
        "/v2/health/ready",
        dict(os.environ),
        work / "serve.log",
    )
    return TritonServer(**vars(server), metrics_url=f"http://127.0.0.1:{metrics_port}/metrics")


@pytest.fixture(scope="module")
def triton_server(
    repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    server = serve(repository, tmp_path_factory.mktemp("serve-triton"))
    yield server
    server.stop()


def infer_url(server: Server) -> str:
    return f"{server.url}/v2/models/{composed('triton', TritonConfig).model_name}/infer"


def texts_body(text_a: list, text_b: list, datatype: str = "BYTES") -> bytes:
    tensors = [
        {"name": name, "datatype": datatype, "shape": [len(texts), 1], "data": texts}
        for name, texts in (("TEXT_A", text_a), ("TEXT_B", text_b))
    ]
    return json.dumps({"inputs": tensors}).encode()


def assert_still_answers(server: Server) -> None:
    reply = post(infer_url(server), texts_body(["a cat sat"], ["the cat sat"]))
    assert reply.status == 200, reply.body


def test_answers_are_predicts_with_the_registered_version(
    triton_server: Server, export_dir: Path
) -> None:
    pairs = pairs_frame(40, 5)[["text_a", "text_b"]]
    pairs.loc[3, "text_a"] = " ".join(["shares"] * LONG_TEXT_WORDS)
    reference = OnnxPairPredictor(export_dir / variant_file("student"), MAX_BATCH_PAIRS)
    expected = reference.predict_proba(pairs)
    predictor = TritonPredictor(triton_server.url, composed("triton", TritonConfig).model_name)
    assert predictor.max_batch_pairs == MAX_BATCH_PAIRS  # the server's limit, from its config
    try:
        served = predictor.predict_proba(pairs)
    finally:
        predictor.close()
    assert np.abs(served - expected).max() <= MAX_ABS_PROBABILITY_DIFF
    np.testing.assert_array_equal(served.argmax(axis=1), expected.argmax(axis=1))
    assert predictor.versions == {str(VERSION)}  # what `pair-classifier lineage` traces
    assert predictor.truncated == 1  # the long text, and only it


def test_the_client_command_writes_what_predict_writes(
    triton_server: Server, export_dir: Path, tmp_path: Path
) -> None:
    rows = pairs_frame(12, 9).rename(columns={"text_a": "q1", "text_b": "q2"})
    rows.to_csv(tmp_path / "pairs.csv", index=False)
    result = subprocess.run(
        [str(CLI), "serve", "triton-predict", str(tmp_path / "pairs.csv")]
        + [str(tmp_path / "served.jsonl"), "--url", triton_server.url]
        + ["--text-a", "q1", "--text-b", "q2"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"version {VERSION}" in result.stdout
    predict_file(
        export_dir / variant_file("student"),
        tmp_path / "pairs.csv",
        tmp_path / "predicted.jsonl",
        MAX_BATCH_PAIRS,
        "q1",
        "q2",
    )
    served = pd.read_json(tmp_path / "served.jsonl", lines=True)
    predicted = pd.read_json(tmp_path / "predicted.jsonl", lines=True)
    assert list(served.columns) == list(predicted.columns)
    assert served["predicted_label"].tolist() == predicted["predicted_label"].tolist()
    probabilities = [column for column in served.columns if column.startswith("probability_")]
    assert (served[probabilities] - predicted[probabilities]).abs().max().max() <= (
        MAX_ABS_PROBABILITY_DIFF
    )


def _json_with_raw_bytes(text_a: bytes) -> bytes:
    """A JSON body whose first text holds bytes that are not UTF-8 (JSON itself cannot say
    them, so a client that builds bodies by hand can still send them)."""
    template = texts_body(["@@"], ["a cat"])
    return template.replace(b"@@", text_a)


def _binary_tensor_body(text_a: bytes) -> tuple[bytes, dict[str, str]]:
    """Triton's binary tensor extension: the texts as length-prefixed raw bytes."""
    values = [text_a, b"a cat"]
    header = {
        "inputs": [
            {
                "name": name,
                "datatype": "BYTES",
                "shape": [1, 1],
                "parameters": {"binary_data_size": 4 + len(value)},
            }
            for name, value in zip(("TEXT_A", "TEXT_B"), values)
        ]
    }
    head = json.dumps(header).encode()
    body = head + b"".join(len(value).to_bytes(4, "little") + value for value in values)
    return body, {"Inference-Header-Content-Length": str(len(head))}


BAD_REQUESTS = {
    # Triton's frontend: the model's inputs and types are declared in config.pbtxt
    "missing input": (
        json.dumps({"inputs": [json.loads(texts_body(["a"], ["b"]))["inputs"][0]]}).encode(),
        400,
        "missing required input",
    ),
    "wrong datatype": (texts_body([1], [2], datatype="INT32"), 400, "expects 'BYTES'"),
    "wrong shape": (
        texts_body(["a"], ["b"]).replace(b"[1, 1]", b"[1]"),
        400,
        "unexpected shape for input",
    ),
    "batch over Triton's max_batch_size": (
        texts_body(["a"] * 65, ["b"] * 65),
        400,
        "batch-size must be <=",
    ),
    "sides of different lengths": (
        json.dumps(
            {
                "inputs": [
                    {"name": "TEXT_A", "datatype": "BYTES", "shape": [2, 1], "data": ["a", "b"]},
                    {"name": "TEXT_B", "datatype": "BYTES", "shape": [1, 1], "data": ["c"]},
                ]
            }
        ).encode(),
        400,
        "batch size does not match",
    ),
    # the model (serving.requests, raised as TritonError INVALID_ARG)
    "empty text": (texts_body(["  "], ["a cat"]), 400, "row 0: expected a non-empty text"),
    "batch over serving.max_batch_pairs": (
        texts_body(["a"] * (MAX_BATCH_PAIRS + 1), ["b"] * (MAX_BATCH_PAIRS + 1)),
        400,
        f"over the limit of {MAX_BATCH_PAIRS}",
    ),
    "non-UTF-8 bytes in JSON": (_json_with_raw_bytes(b"caf\xff"), 400, "expected UTF-8"),
    # the front (nginx): over serving.max_body_bytes, refused before Triton reads it
    "oversized body": (texts_body(["word " * 300_000], ["a"]), 413, "over the limit of"),
    # the front's njs check (triton_front.js): what Triton 2.51 would answer with a 500
    "malformed JSON": (
        b'{"inputs": [{"name": "TEXT_A",',
        400,
        "malformed JSON in the request body: Unexpected end of input at position 30",
    ),
    "a number where a text is expected": (
        texts_body([5], ["a"]),
        400,
        "input 'TEXT_A', data element 0: expected a string (datatype BYTES), got a number",
    ),
    "null among the texts, in nested data": (
        texts_body(["a", "b"], [["c"], [None]]),
        400,
        "input 'TEXT_B', data element 1: expected a string (datatype BYTES), got null",
    ),
    "text in a numeric tensor": (
        texts_body(["1"], ["2"], datatype="INT32"),
        400,
        "input 'TEXT_A', data element 0: expected an integer (datatype INT32), got a string",
    ),
    "inputs not an array": (b'{"inputs": {"TEXT_A": "a"}}', 400, "'inputs': expected an array"),
    "no inputs": (
        b'{"id": "r1"}',
        400,
        "'inputs': expected an array of input tensors, got nothing",
    ),
    "a negative dimension": (
        texts_body(["a"], ["b"]).replace(b"[1, 1]", b"[-1, 1]", 1),
        400,
        "input 'TEXT_A' 'shape' element 0: expected an unsigned integer, got a number",
    ),
    "a number as the request id": (
        b'{"id": 5, ' + texts_body(["a"], ["b"])[1:],
        400,
        "'id': expected a string, got a number",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_a_bad_request_is_refused_and_the_server_keeps_answering(
    triton_server: Server, case: str
) -> None:
    body, status, message = BAD_REQUESTS[case]
    reply = post(infer_url(triton_server), body)
    assert reply.status == status, reply.body
    assert message in reply.json()["error"]
    assert_still_answers(triton_server)


def test_the_front_passes_every_valid_form_to_triton(triton_server: Server) -> None:
    """Nested data, a versioned path, a request id, chosen outputs: Triton's answers."""
    url = infer_url(triton_server).replace("/infer", f"/versions/{VERSION}/infer")
    body = json.loads(texts_body([["a cat sat"], ["a dog"]], [["the cat sat"], ["a dog ran"]]))
    body |= {"id": "r1", "outputs": [{"name": "LABEL", "parameters": {"binary_data": False}}]}
    reply = post(url, json.dumps(body).encode())
    assert reply.status == 200, reply.body
    assert reply.json()["id"] == "r1"
    assert [output["name"] for output in reply.json()["outputs"]] == ["LABEL"]
    assert len(reply.json()["outputs"][0]["data"]) == 2


def test_malformed_json_in_a_binary_request_is_refused(triton_server: Server) -> None:
    body, headers = _binary_tensor_body(b"a cat")
    reply = post(infer_url(triton_server), body, "application/octet-stream", headers)
    assert reply.status == 200, reply.body  # the well-formed request passes the front
    cut = {"Inference-Header-Content-Length": "10"}  # the JSON header ends mid-way
    reply = post(infer_url(triton_server), body, "application/octet-stream", cut)
    assert reply.status == 400, reply.body
    assert "malformed JSON in the inference header (the body's first 10 bytes" in (
        reply.json()["error"]
    )
    assert_still_answers(triton_server)


def test_without_the_js_module_the_front_names_the_package(tmp_path: Path) -> None:
    """An nginx whose modules folder lacks njs: the command stops before starting anything."""
    nginx = nginx_binary()
    found = js_module(nginx)  # this machine's nginx has it (or the server tests could not run)
    assert found is None or found.is_file()
    options = build_options(nginx) | {"--modules-path": [str(tmp_path)], "--add-module": []}
    with pytest.raises(ServingError, match=f"apt-get install {JS_PACKAGE}"):
        module_file(options)


def test_non_utf8_bytes_in_a_binary_tensor_are_refused(triton_server: Server) -> None:
    body, headers = _binary_tensor_body(b"\xc3\x28 broken")
    reply = post(infer_url(triton_server), body, "application/octet-stream", headers)
    assert reply.status == 400, reply.body
    assert "field 'text_a', row 0: expected UTF-8" in reply.json()["error"]
    assert_still_answers(triton_server)


def test_a_text_far_beyond_max_length_is_scored_and_flagged(triton_server: Server) -> None:
    reply = post(infer_url(triton_server), texts_body(["word " * 5000, "a cat"], ["a", "a cat"]))
    assert reply.status == 200, reply.body
    outputs = {output["name"]: output["data"] for output in reply.json()["outputs"]}
    assert outputs["TRUNCATED"] == [True, False]
    assert reply.json()["model_version"] == str(VERSION)


def test_metrics_count_requests_by_model_version(triton_server: TritonServer) -> None:
    assert_still_answers(triton_server)
    with urllib.request.urlopen(triton_server.metrics_url, timeout=10) as response:
        metrics = response.read().decode()
    model = composed("triton", TritonConfig).model_name
    assert f'nv_inference_request_success{{model="{model}",version="{VERSION}"}}' in metrics


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_server_that_dies_leaves_no_shared_memory(repository: Path, tmp_path: Path) -> None:
    """Killed with SIGKILL, Triton cannot remove its stubs' regions; the command does."""
    server = serve(repository, tmp_path)
    prefix = f"{SHM_PREFIX}{server.process.pid}_"
    assert list(SHM_DIR.glob(f"{prefix}*"))
    children = server.descendants()
    next(child for child in children if child.name() == "tritonserver").kill()
    assert server.process.wait(timeout=STOP_TIMEOUT_S) != 0  # it says the server died
    assert not list(SHM_DIR.glob(f"{prefix}*"))
    assert not [child for child in children if _alive(child)]  # the stub and nginx too
    assert "tritonserver: exited with code" in server.log.read_text(errors="replace")


def test_sigterm_stops_everything_and_leaves_no_shared_memory(triton_server: Server) -> None:
    """Last in the file: it stops the module's server."""
    children = triton_server.descendants()
    assert {child.name() for child in children} >= {"tritonserver", "nginx"}
    prefix = f"{SHM_PREFIX}{triton_server.process.pid}_"
    assert list(SHM_DIR.glob(f"{prefix}*"))  # the Python backend's regions, while it runs
    started = time.monotonic()
    assert triton_server.stop() == 0
    assert time.monotonic() - started < STOP_TIMEOUT_S
    assert not [child for child in children if _alive(child)]
    assert not list(SHM_DIR.glob(f"{prefix}*"))
