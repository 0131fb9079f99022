"""The served traffic log: the records' fields, sampling, rotation and texts only when asked,
first through the log itself (real files, the export's real tokenizer), then written by a real
Triton server (`pair-classifier serve triton` with serving.traffic_log on) and read back by the
drift check."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import composed, composed_params, pairs_frame
from serving.serving_helpers import (
    CLI,
    MAX_BATCH_PAIRS,
    free_port,
    post,
    start_server,
    tiny_triton_repository,
)
from tokenizers import Tokenizer

from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.export.interface import TOKENIZER_SUBDIR, variant_file
from pair_classifier.export.onnx_predictor import OnnxPairPredictor
from pair_classifier.monitoring.checks import SKIPPED
from pair_classifier.monitoring.drift import DriftInputs, run_drift
from pair_classifier.monitoring.settings import DriftConfig
from pair_classifier.serving.requests import truncation_flags
from pair_classifier.serving.traffic_log import (
    RECORD_FIELDS,
    TrafficLog,
    TrafficLogSettings,
    log_files,
    read_traffic_log,
)
from pair_classifier.serving.triton_settings import TritonConfig

VERSION = 3
ROTATE_BYTES = 4000
ROTATE_COUNT = 2
SAMPLED_PAIRS = 2000
SAMPLE_RATE = 0.3
BINOMIAL_SIGMAS = 5  # a sampled count this far from its mean fails the test
LONG_TEXT_WORDS = 300  # beyond the tiny model's 32 tokens
RECORD_WAIT_S = 60  # until a server's listener thread has written what it was sent


def traffic_log(
    folder: Path, predictor: OnnxPairPredictor, rate: float, texts: bool, rotate: int
) -> TrafficLog:
    settings = TrafficLogSettings(folder, rate, rotate, ROTATE_COUNT, texts)
    return TrafficLog(
        settings,
        "mlflow",
        "pair-classifier",
        str(VERSION),
        predictor.class_names,
        predictor.tokenize.tokenizer,
    )


def score_through(log: TrafficLog, predictor: OnnxPairPredictor, pairs: pd.DataFrame) -> None:
    """Score ``pairs`` as a server does, one request per 10 pairs, then close the log."""
    for start in range(0, len(pairs), 10):
        request = pairs.iloc[start : start + 10].reset_index(drop=True)
        began = time.perf_counter()
        probabilities = predictor.predict_proba(request)
        log.record(request, probabilities, truncation_flags(predictor.tokenize, request), began)
    log.close()


@pytest.fixture
def predictor(export_dir: Path) -> OnnxPairPredictor:
    return OnnxPairPredictor(export_dir / variant_file("student"), 16, 1)


def test_every_pair_is_written_with_its_fields_and_no_texts(
    predictor: OnnxPairPredictor, export_dir: Path, tmp_path: Path
) -> None:
    pairs = pairs_frame(40, 3)[[TEXT_A, TEXT_B]]
    pairs.loc[5, TEXT_A] = " ".join(["shares"] * LONG_TEXT_WORDS)
    log = traffic_log(tmp_path, predictor, 1.0, texts=False, rotate=10**7)
    score_through(log, predictor, pairs)
    lines = log.path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len(pairs)
    assert all(tuple(record) == RECORD_FIELDS for record in records)  # exactly, in order
    uncut = Tokenizer.from_file(str(export_dir / TOKENIZER_SUBDIR / "tokenizer.json"))
    uncut.no_truncation()
    uncut.no_padding()
    frame = read_traffic_log(tmp_path)
    expected_tokens = [len(e.ids) for e in uncut.encode_batch(list(pairs[TEXT_A]))]
    assert sorted(frame["tokens_a"]) == sorted(expected_tokens)
    assert frame["truncated"].sum() == 1 and frame["tokens_a"].max() > LONG_TEXT_WORDS
    probabilities = predictor.predict_proba(pairs)
    logged = np.array([[row[n] for n in predictor.class_names] for row in frame["probabilities"]])
    assert np.allclose(np.sort(logged, axis=0), np.sort(probabilities, axis=0), atol=1e-5)
    assert set(frame["server"]) == {"mlflow"} and set(frame["model_version"]) == {str(VERSION)}
    assert (frame["latency_ms"] > 0).all()


def test_texts_are_written_only_when_asked(predictor: OnnxPairPredictor, tmp_path: Path) -> None:
    pairs = pairs_frame(10, 4)[[TEXT_A, TEXT_B]]
    log = traffic_log(tmp_path, predictor, 1.0, texts=True, rotate=10**7)
    score_through(log, predictor, pairs)
    frame = read_traffic_log(tmp_path)
    assert sorted(frame[TEXT_A]) == sorted(pairs[TEXT_A])


def test_a_share_of_the_pairs_is_sampled(predictor: OnnxPairPredictor, tmp_path: Path) -> None:
    pairs = pd.concat([pairs_frame(100, 5)[[TEXT_A, TEXT_B]]] * (SAMPLED_PAIRS // 100))
    log = traffic_log(tmp_path / "some", predictor, SAMPLE_RATE, texts=False, rotate=10**8)
    score_through(log, predictor, pairs.reset_index(drop=True))
    written = len(read_traffic_log(tmp_path / "some"))
    mean = SAMPLED_PAIRS * SAMPLE_RATE
    sigma = math.sqrt(SAMPLED_PAIRS * SAMPLE_RATE * (1 - SAMPLE_RATE))
    assert abs(written - mean) < BINOMIAL_SIGMAS * sigma
    log = traffic_log(tmp_path / "none", predictor, 0.0, texts=False, rotate=10**8)
    score_through(log, predictor, pairs.head(100))
    assert log.path.stat().st_size == 0


def test_each_process_rotates_its_own_file_and_keeps_rotate_count(
    predictor: OnnxPairPredictor, tmp_path: Path
) -> None:
    pairs = pairs_frame(200, 6)[[TEXT_A, TEXT_B]]
    log = traffic_log(tmp_path, predictor, 1.0, texts=False, rotate=ROTATE_BYTES)
    score_through(log, predictor, pairs)
    files = log_files(tmp_path)
    assert [f.name for f in files] == sorted(
        [log.path.name] + [f"{log.path.name}.{n}" for n in range(1, ROTATE_COUNT + 1)]
    )
    assert log.path.name == f"mlflow-{os.getpid()}.jsonl"
    assert all(f.stat().st_size <= ROTATE_BYTES for f in files)
    kept = read_traffic_log(tmp_path)
    assert 0 < len(kept) < len(pairs)  # the oldest were rotated away


def test_the_registered_pyfunc_writes_the_log_its_server_configures(
    export_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MLflow model as `serve mlflow` runs it: the settings come from the environment."""
    import mlflow.pyfunc

    from pair_classifier.registry.pyfunc_model import SERVED_ARTIFACT, PairClassifierPyfunc

    settings = TrafficLogSettings(tmp_path / "traffic", 1.0, 10**7, ROTATE_COUNT, True)
    for name, value in settings.environment().items():
        monkeypatch.setenv(name, value)
    model = PairClassifierPyfunc(variant_file("student"), 8, 1)
    context = mlflow.pyfunc.PythonModelContext({SERVED_ARTIFACT: str(export_dir)}, {})
    model.load_context(context)
    pairs = pairs_frame(6, 9)[[TEXT_A, TEXT_B]]
    answer = model.predict(None, pairs)
    model.traffic_log.close()
    frame = read_traffic_log(tmp_path / "traffic")
    assert list(frame.columns) == [*RECORD_FIELDS, TEXT_A, TEXT_B]
    assert set(frame["server"]) == {"mlflow"}
    assert list(frame[TEXT_A]) == list(pairs[TEXT_A])  # one request: written in order
    assert list(frame["predicted_label"]) == list(answer["predicted_label"])


@pytest.fixture(scope="module")
def repository(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("triton-repository")
    return tiny_triton_repository(export_dir, root, VERSION, MAX_BATCH_PAIRS)


def triton_body(text_a: list[str], text_b: list[str]) -> bytes:
    tensors = [
        {"name": name, "datatype": "BYTES", "shape": [len(texts), 1], "data": texts}
        for name, texts in (("TEXT_A", text_a), ("TEXT_B", text_b))
    ]
    return json.dumps({"inputs": tensors}).encode()


@pytest.mark.slow  # a real Triton server
def test_triton_writes_the_log_and_drift_reads_it(
    repository: Path, export_dir: Path, tmp_path: Path
) -> None:
    logs = tmp_path / "traffic"
    params = composed_params()
    params["serving"] |= {"max_batch_pairs": MAX_BATCH_PAIRS, "start_timeout_s": 150}
    params["serving"]["traffic_log"] |= {"enabled": True, "dir": str(logs), "sample_rate": 1.0}
    (tmp_path / "params.yaml").write_text(json.dumps(params), encoding="utf-8")
    port = free_port()
    server = start_server(
        [str(CLI), "serve", "triton", "--repository", str(repository)]
        + ["--http-port", str(port), "--metrics-port", str(free_port())]
        + ["--params-file", str(tmp_path / "params.yaml")],
        f"http://127.0.0.1:{port}",
        "/v2/health/ready",
        dict(os.environ),
        tmp_path / "serve.log",
    )
    pairs = pairs_frame(30, 7)[[TEXT_A, TEXT_B]]
    pairs.loc[2, TEXT_B] = " ".join(["police"] * LONG_TEXT_WORDS)
    try:
        url = f"{server.url}/v2/models/{composed('triton', TritonConfig).model_name}/infer"
        for start in range(0, len(pairs), 3):
            rows = pairs.iloc[start : start + 3]
            reply = post(url, triton_body(list(rows[TEXT_A]), list(rows[TEXT_B])))
            assert reply.status == 200, reply.body
        deadline = time.monotonic() + RECORD_WAIT_S
        while time.monotonic() < deadline:
            if logs.is_dir() and any(logs.iterdir()) and len(read_traffic_log(logs)) == len(pairs):
                break
            time.sleep(0.5)
    finally:
        exit_code = server.stop()
    assert exit_code == 0
    frame = read_traffic_log(logs)
    assert len(frame) == len(pairs)
    assert list(frame.columns) == list(RECORD_FIELDS)  # no texts unless log_texts
    assert set(frame["server"]) == {"triton"} and set(frame["model_version"]) == {str(VERSION)}
    assert frame["truncated"].sum() == 1 and frame["tokens_b"].max() > LONG_TEXT_WORDS
    assert all(name.startswith("triton-") for name in os.listdir(logs))

    reference = tmp_path / "reference.csv"
    pairs_frame(60, 8)[[TEXT_A, TEXT_B]].to_csv(reference, index=False)
    graph = export_dir / variant_file("student")
    result = run_drift(
        DriftInputs(logs, reference, reference, graph, graph),
        composed("drift", DriftConfig, max_pairs=100, reference_pairs=60),
    )
    verdicts = {check.name: check.verdict for check in result.checks}
    for name in ("unknown_tokens", "unseen_tokens", "sentence_vectors"):
        assert verdicts[name] == SKIPPED  # they read texts, which the log does not hold
    assert verdicts["token_lengths"] != SKIPPED and verdicts["label_mix"] != SKIPPED
