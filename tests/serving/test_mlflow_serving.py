"""`pair-classifier serve mlflow` on a registered model, with real requests: the answers are
`pair-classifier predict`'s on the same graph and name the model version, every bad request
gets a 4xx while the server keeps answering, and SIGTERM stops everything it started."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pandas as pd
import psutil
import pytest
from helpers import pairs_frame
from serving_helpers import MAX_BATCH_PAIRS, MODEL_NAME, Server, pairs_body, post, serving_params
from typer.testing import CliRunner

from pair_classifier.cli import app
from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.errors import USER_ERROR_EXIT_CODE
from pair_classifier.export.interface import variant_file
from pair_classifier.registry.pyfunc_model import MODEL_NAME as MODEL_NAME_COLUMN
from pair_classifier.registry.pyfunc_model import MODEL_VERSION, TRUNCATED
from pair_classifier.serving.process import port_taken

MAX_ABS_PROB_DIFF = 1e-5
LONG_TEXT_WORDS = 2000  # far beyond the tiny model's 32 tokens
GOOD = pairs_body(["the company said profits rose ."], ["profits rose , the company said ."])


def _invocations(server: Server) -> str:
    return f"{server.url}/invocations"


def _predictions(server: Server, pairs: pd.DataFrame) -> pd.DataFrame:
    reply = post(_invocations(server), pairs_body(list(pairs[TEXT_A]), list(pairs[TEXT_B])))
    assert reply.status == 200, reply.body
    return pd.DataFrame(reply.json()["predictions"])


@pytest.mark.slow
def test_served_answers_are_predicts_and_name_the_version(
    mlflow_server: Server, export_dir: Path, tmp_path: Path
) -> None:
    pairs = pairs_frame(23, seed=7)[[TEXT_A, TEXT_B]]
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    graph = export_dir / variant_file("student")
    result = CliRunner().invoke(
        app, ["predict", str(graph), str(tmp_path / "pairs.csv"), str(tmp_path / "out.csv")]
    )
    assert result.exit_code == 0, result.output
    expected = pd.read_csv(tmp_path / "out.csv")
    chunks = [pairs.iloc[i : i + MAX_BATCH_PAIRS] for i in range(0, len(pairs), MAX_BATCH_PAIRS)]
    served = pd.concat([_predictions(mlflow_server, chunk) for chunk in chunks], ignore_index=True)

    assert list(served.columns) == list(expected.columns) + [
        TRUNCATED,
        MODEL_NAME_COLUMN,
        MODEL_VERSION,
    ]
    assert served["predicted_label"].tolist() == expected["predicted_label"].tolist()
    probabilities = [column for column in expected.columns if column.startswith("probability_")]
    assert len(probabilities) == 2
    diff = (served[probabilities] - expected[probabilities]).abs().to_numpy().max()
    assert diff <= MAX_ABS_PROB_DIFF
    assert not served[TRUNCATED].any()
    assert set(served[MODEL_NAME_COLUMN]) == {MODEL_NAME}
    assert set(served[MODEL_VERSION]) == {"1"}  # the alias `champion` resolved to its version


@pytest.mark.slow
def test_every_json_layout_of_a_request_gets_the_same_answer(mlflow_server: Server) -> None:
    """MLflow's four JSON layouts of the same two pairs (docs/serving.md shows them)."""
    pairs = pairs_frame(2, seed=3)[[TEXT_A, TEXT_B]]
    records = pairs.to_dict(orient="records")
    bodies = [
        {"dataframe_split": pairs.to_dict(orient="split", index=False)},
        {"dataframe_records": records},
        {"inputs": pairs.to_dict(orient="list")},
        {"instances": records},
    ]
    answers = []
    for body in bodies:
        reply = post(_invocations(mlflow_server), json.dumps(body).encode())
        assert reply.status == 200, (body, reply.body)
        answers.append(reply.json()["predictions"])
    assert all(answer == answers[0] for answer in answers)
    assert [row[TEXT_A] for row in answers[0]] == list(pairs[TEXT_A])


@pytest.mark.slow
def test_a_text_far_beyond_max_length_is_scored_truncated_and_says_so(
    mlflow_server: Server,
) -> None:
    long_text = " ".join(["profits"] * LONG_TEXT_WORDS)
    reply = post(_invocations(mlflow_server), pairs_body([long_text, "a"], ["short", "b"]))
    assert reply.status == 200, reply.body
    assert [row[TRUNCATED] for row in reply.json()["predictions"]] == [True, False]


BAD_REQUESTS = {
    "missing field": (pairs_body(["a"], ["b"]).replace(b'"text_b"', b'"text_c"'), "text_b"),
    "wrong type": (pairs_body([5], ["b"]), "field 'text_a', row 0: expected a string"),
    "text not a string": (
        json.dumps({"dataframe_records": [{"text_a": "a", "text_b": ["b"]}]}).encode(),
        "field 'text_b', row 0: expected a string, got list",
    ),
    "null text": (
        json.dumps({"dataframe_records": [{"text_a": "a", "text_b": None}]}).encode(),
        "field 'text_b', row 0: expected a string",
    ),
    "null in inputs": (pairs_body(["a"], [None]), "field 'text_b', row 0: expected a string"),
    "list in inputs": (pairs_body([["a"]], ["b"]), "field 'text_a', row 0: expected a string"),
    "sides of different lengths": (pairs_body(["a", "b"], ["c"]), "got 2 and 1"),
    "empty text": (pairs_body(["a", " "], ["b", "c"]), "field 'text_a', row 1: expected a non"),
    "batch over the maximum": (
        pairs_body(["a"] * (MAX_BATCH_PAIRS + 1), ["b"] * (MAX_BATCH_PAIRS + 1)),
        f"over the limit of {MAX_BATCH_PAIRS} pairs per request",
    ),
    "malformed JSON": (b'{"inputs": {"text_a": ["a"], ', "valid JSON"),
    "non-UTF-8 bytes": (b'{"inputs": {"text_a": ["caf\xe9"], "text_b": ["b"]}}', "valid JSON"),
    "no input field": (b'{"pairs": []}', "dataframe_split"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_a_bad_request_gets_a_400_and_the_server_keeps_answering(
    mlflow_server: Server, case: str
) -> None:
    body, says = BAD_REQUESTS[case]
    reply = post(_invocations(mlflow_server), body)
    assert reply.status == 400, reply.body
    assert says in reply.json()["message"]
    assert post(_invocations(mlflow_server), GOOD).status == 200


@pytest.mark.slow
def test_a_body_of_another_type_gets_a_415(mlflow_server: Server) -> None:
    reply = post(_invocations(mlflow_server), b"a\tb", content_type="text/plain")
    assert reply.status == 415
    assert post(_invocations(mlflow_server), GOOD).status == 200


@pytest.mark.slow
def test_sigterm_stops_the_server_and_all_it_started(mlflow_server: Server) -> None:
    """Last in the module: it stops the module's server."""
    started = mlflow_server.descendants()
    assert any("uvicorn" in " ".join(p.cmdline()) for p in started)
    port = int(mlflow_server.url.rsplit(":", 1)[1])

    assert mlflow_server.stop() == 0
    assert not [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not port_taken("127.0.0.1", port)
    assert "stopped" in mlflow_server.log.read_text(errors="replace")


def test_serve_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = CliRunner().invoke(
            app,
            ["serve", "mlflow", "--port", str(port), "--params-file"]
            + [str(serving_params(tmp_path))],
        )
    assert result.exit_code == USER_ERROR_EXIT_CODE
    assert f"127.0.0.1:{port} is already in use" in result.output
