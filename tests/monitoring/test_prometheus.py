"""Prometheus and its alert rules: the committed scrape config is the one params.yaml gives,
`promtool` accepts the config and the rules, every alert fires on its staged series and not on a
healthy one (`promtool test rules`), and a real Prometheus server (Debian's) on loopback scrapes
a real Triton server and the exporter: after requests, its HTTP API returns Triton's request
counts for the model's version and the exporter's figures from Triton's traffic log. Every
process is started as a user starts it (the CLI) and stopped by its PID."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import REPO_ROOT, composed, composed_params, pairs_frame
from serving.serving_helpers import (
    CLI,
    MAX_BATCH_PAIRS,
    Server,
    free_port,
    post,
    start_server,
    tiny_triton_repository,
)

from pair_classifier.errors import USER_ERROR_EXIT_CODE
from pair_classifier.monitoring.prom_server import (
    CONFIG_FILE,
    EXPORTER_JOB,
    PROMETHEUS,
    PROMTOOL,
    RULES_FILE,
    RULES_TEST_FILE,
    TRITON_JOB,
    config_text,
    scrape_config,
)
from pair_classifier.monitoring.prom_settings import MonitoringConfig
from pair_classifier.serving.traffic_log import TrafficLogSettings
from pair_classifier.serving.triton_settings import TritonConfig

pytestmark = pytest.mark.slow  # Debian's Prometheus, a real Triton server and its Python stub

INSTALL_TIMEOUT_S = 900
TOOL_TIMEOUT_S = 120
VERSION = 7  # the registered version the repository's folders are named by
REQUESTS = 6  # per round
ROUNDS = 2
LONG_TEXT_WORDS = 200  # far beyond the tiny model's 32 tokens: truncated
PAIRS_PER_REQUEST = 4
SCRAPE_INTERVAL_S = 1  # so that the test waits seconds, not the configured interval
WAIT_TIMEOUT_S = 120
WAIT_STEP_S = 1.0
STOP_TIMEOUT_S = 60
ROTATE_BYTES = 1_000_000
CONFIG_DIR = REPO_ROOT / CONFIG_FILE.parent
# What `pair-classifier drift` would write: one check over its threshold, one under.
DRIFT_REPORT = {
    "verdict": "drift",
    "checks": {
        "token_lengths": {"score": 0.4, "threshold": 0.1, "verdict": "drift"},
        "label_mix": {"score": 0.02, "threshold": 0.1, "verdict": "no_drift"},
    },
}


def _tools_found() -> bool:
    return all(shutil.which(tool) for tool in (PROMETHEUS, PROMTOOL))


@pytest.fixture(scope="session")
def promtool() -> str:
    """Debian's prometheus package (prometheus and promtool), installed with apt-get when it is
    missing and this runs as root; else a skip naming what to install."""
    if not _tools_found() and os.geteuid() == 0 and shutil.which("apt-get"):
        install = ["apt-get", "install", "-y", "prometheus"]
        for command in (install, ["apt-get", "update"], install):  # update only if needed
            subprocess.run(command, capture_output=True, timeout=INSTALL_TIMEOUT_S, check=False)
            if _tools_found():
                break
    if not _tools_found():
        pytest.skip("prometheus is not installed and could not be (apt-get install prometheus)")
    return str(shutil.which(PROMTOOL))


def run_promtool(promtool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool, *args],
        cwd=CONFIG_DIR,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )


def test_the_committed_config_is_written_from_params_yaml(tmp_path: Path) -> None:
    written = tmp_path / "prometheus.yml"
    result = subprocess.run(
        [str(CLI), "monitor", "prometheus-config", "--output", str(written)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert written.read_text(encoding="utf-8") == (REPO_ROOT / CONFIG_FILE).read_text(
        encoding="utf-8"
    ), "run `pair-classifier monitor prometheus-config` and commit the file"


def test_a_missing_config_is_named_with_the_command_that_writes_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(CLI), "monitor", "prometheus", "--config-file", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == USER_ERROR_EXIT_CODE
    assert "prometheus.yml: no Prometheus config" in result.stderr
    assert "monitor prometheus-config" in result.stderr


def test_promtool_accepts_the_config_and_the_rules(promtool: str) -> None:
    for args in (("check", "config", CONFIG_FILE.name), ("check", "rules", RULES_FILE)):
        result = run_promtool(promtool, *args)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_fires_on_its_staged_series_and_not_on_a_healthy_one(promtool: str) -> None:
    result = run_promtool(promtool, "test", "rules", RULES_TEST_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    rules = yaml.safe_load((CONFIG_DIR / RULES_FILE).read_text(encoding="utf-8"))
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    cases = yaml.safe_load((CONFIG_DIR / RULES_TEST_FILE).read_text(encoding="utf-8"))
    checks = [check for case in cases["tests"] for check in case["alert_rule_test"]]
    firing = {check["alertname"] for check in checks if check["exp_alerts"]}
    quiet = {check["alertname"] for check in checks if not check["exp_alerts"]}
    assert firing == quiet == set(alerts)  # each alert seen firing, and seen quiet
    for name, rule in alerts.items():
        assert {"summary", "description"} <= set(rule["annotations"]), name


@pytest.fixture(scope="module")
def repository(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CPU repository of the tiny export's student graph, as registered version VERSION
    (as tests/serving/test_triton_server.py makes it)."""
    root = tmp_path_factory.mktemp("triton-repository")
    return tiny_triton_repository(export_dir, root, VERSION, MAX_BATCH_PAIRS)


def _params(work: Path, traffic: Path) -> Path:
    """params.yaml with the test's limits, the traffic log on, Prometheus's data in ``work``
    and a one-second scrape."""
    params = composed_params()
    params["serving"] |= {"max_batch_pairs": MAX_BATCH_PAIRS, "start_timeout_s": 150}
    params["serving"]["traffic_log"] |= {"enabled": True, "dir": str(traffic), "sample_rate": 1.0}
    params["monitoring"]["prometheus"] |= {
        "data_dir": str(work / "prometheus-data"),
        "scrape_interval_s": SCRAPE_INTERVAL_S,
        "evaluation_interval_s": SCRAPE_INTERVAL_S,
    }
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    return path


def query(prometheus: str, promql: str) -> list[dict]:
    """The result vector of an instant query over Prometheus's HTTP API."""
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def wait_for_value(prometheus: str, promql: str, expected: float) -> list[dict]:
    """Query until the single result reaches ``expected``; fail with the last answer."""
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while True:
        result = query(prometheus, promql)
        if len(result) == 1 and float(result[0]["value"][1]) >= expected:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{promql}: expected {expected}, Prometheus answered {result}")
        time.sleep(WAIT_STEP_S)


def _stop(server: Server) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    return server.process.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def stack(
    promtool: str, repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Server]]:
    """Triton (traffic log on), the exporter on that log and Prometheus scraping both, each on
    free loopback ports; stopped by PID, Prometheus first."""
    work = tmp_path_factory.mktemp("prometheus-stack")
    traffic = work / "traffic"
    params = _params(work, traffic)
    http_port, metrics_port, exporter_port, prometheus_port = (free_port() for _ in range(4))
    log_env = TrafficLogSettings(traffic, 1.0, ROTATE_BYTES, 1, False).environment()
    (work / "drift.json").write_text(json.dumps(DRIFT_REPORT), encoding="utf-8")
    started: dict[str, Server] = {}
    try:
        started["triton"] = start_server(
            [str(CLI), "serve", "triton", "--repository", str(repository)]
            + ["--http-port", str(http_port), "--metrics-port", str(metrics_port)]
            + ["--params-file", str(params)],
            f"http://127.0.0.1:{http_port}",
            "/v2/health/ready",
            dict(os.environ) | log_env,
            work / "triton.log",
        )
        started["exporter"] = start_server(
            [str(CLI), "monitor", "exporter", "--port", str(exporter_port), "--from-start"]
            + ["--traffic-log", str(traffic), "--drift-report", str(work / "drift.json")]
            + ["--params-file", str(params)],
            f"http://127.0.0.1:{exporter_port}",
            "/metrics",
            dict(os.environ),
            work / "exporter.log",
        )
        config = composed(
            "monitoring",
            MonitoringConfig,
            f"monitoring.prometheus.scrape_interval_s={SCRAPE_INTERVAL_S}",
            f"monitoring.prometheus.evaluation_interval_s={SCRAPE_INTERVAL_S}",
        )
        config_file = work / "prometheus" / "prometheus.yml"
        config_file.parent.mkdir()
        shutil.copy(CONFIG_DIR / RULES_FILE, config_file.parent / RULES_FILE)
        scrape = scrape_config(config, f"127.0.0.1:{metrics_port}", f"127.0.0.1:{exporter_port}")
        config_file.write_text(config_text(scrape), encoding="utf-8")
        started["prometheus"] = start_server(
            [str(CLI), "monitor", "prometheus", "--config-file", str(config_file)]
            + ["--port", str(prometheus_port), "--params-file", str(params)],
            f"http://127.0.0.1:{prometheus_port}",
            "/-/ready",
            dict(os.environ),
            work / "prometheus.log",
        )
        yield started
    finally:
        codes = {name: _stop(server) for name, server in reversed(started.items())}
    assert codes == dict.fromkeys(started, 0), codes  # each stopped cleanly on SIGTERM


def _infer(stack: dict[str, Server], pairs: pd.DataFrame, status: int) -> None:
    """Score ``pairs`` in requests of PAIRS_PER_REQUEST; each answered with ``status``."""
    model = composed("triton", TritonConfig).model_name
    for start in range(0, len(pairs), PAIRS_PER_REQUEST):
        chunk = pairs.iloc[start : start + PAIRS_PER_REQUEST]
        tensors = [
            {"name": name, "datatype": "BYTES", "shape": [len(chunk), 1], "data": list(texts)}
            for name, texts in (("TEXT_A", chunk["text_a"]), ("TEXT_B", chunk["text_b"]))
        ]
        reply = post(
            f"{stack['triton'].url}/v2/models/{model}/infer",
            json.dumps({"inputs": tensors}).encode(),
        )
        assert reply.status == status, reply.body


@pytest.fixture(scope="module")
def served_pairs(stack: dict[str, Server]) -> int:
    """Requests in two rounds, each seen by Prometheus before the next (a rate needs two
    samples that differ); one pair of each round has a text beyond max_length, and one more
    request per round has an empty text, which the model refuses with a 400 (Triton counts it
    as a success: docs/monitoring.md). The number of pairs scored."""
    prometheus = stack["prometheus"].url
    model = composed("triton", TritonConfig).model_name
    for job in (TRITON_JOB, EXPORTER_JOB):
        wait_for_value(prometheus, f'up{{job="{job}"}}', 1)
    scored = 0
    for round_number in range(ROUNDS):
        pairs = pairs_frame(REQUESTS * PAIRS_PER_REQUEST, round_number)[["text_a", "text_b"]]
        pairs.loc[0, "text_a"] = " ".join(["shares"] * LONG_TEXT_WORDS)
        _infer(stack, pairs, 200)
        _infer(stack, pd.DataFrame({"text_a": [" "], "text_b": ["a cat"]}), 400)
        scored += len(pairs)
        success = f'nv_inference_request_success{{job="{TRITON_JOB}",model="{model}"}}'
        wait_for_value(prometheus, success, (REQUESTS + 1) * (round_number + 1))
        logged = f'sum(pair_classifier_logged_pairs_total{{job="{EXPORTER_JOB}"}})'
        wait_for_value(prometheus, logged, scored)
    return scored


def test_prometheus_scrapes_triton_and_the_exporter(
    stack: dict[str, Server], served_pairs: int
) -> None:
    prometheus = stack["prometheus"].url
    model = composed("triton", TritonConfig).model_name
    success = query(prometheus, f'nv_inference_request_success{{model="{model}"}}')
    assert [(r["metric"]["job"], r["metric"]["version"]) for r in success] == [
        (TRITON_JOB, str(VERSION))
    ]
    assert float(success[0]["value"][1]) == ROUNDS * (REQUESTS + 1)  # the refused ones too
    failures = query(prometheus, f'sum(nv_inference_request_failure{{model="{model}"}})')
    assert float(failures[0]["value"][1]) == 0
    logged = query(
        prometheus,
        f'sum by (model, version) (pair_classifier_logged_pairs_total{{job="{EXPORTER_JOB}"}})',
    )
    assert [(r["metric"]["model"], r["metric"]["version"]) for r in logged] == [
        (model, str(VERSION))
    ]
    assert float(logged[0]["value"][1]) == served_pairs  # sample_rate 1: every pair logged
    for name in ("confidence", "model_latency_seconds"):
        counts = query(prometheus, f"sum(pair_classifier_{name}_count)")
        assert float(counts[0]["value"][1]) == served_pairs
    truncated = query(prometheus, "sum(pair_classifier_logged_truncated_pairs_total)")
    assert float(truncated[0]["value"][1]) == ROUNDS  # the long text of each round
    drift = query(prometheus, "pair_classifier_drift_score")
    assert {r["metric"]["check"]: float(r["value"][1]) for r in drift} == {
        name: check["score"] for name, check in DRIFT_REPORT["checks"].items()
    }


def _measured_side(expr: str) -> str:
    """An alert expression without its final comparison: what the alert compares."""
    found = re.match(r"(?s)(.*\S)\s*(>|==)\s*[0-9.]+\s*$", expr)
    assert found, expr
    return found.group(1)


def test_every_alert_reads_the_real_series_and_only_drift_fires(
    stack: dict[str, Server], served_pairs: int
) -> None:
    """Each alert's expression, evaluated by the real Prometheus on what it scraped, has a
    value (no metric or label name that the servers do not export), the healthy ones are
    below their thresholds, and the staged drift report's check fires."""
    prometheus = stack["prometheus"].url
    rules = yaml.safe_load((CONFIG_DIR / RULES_FILE).read_text(encoding="utf-8"))
    alerts = {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}
    measured = {
        name: [float(r["value"][1]) for r in query(prometheus, _measured_side(expr))]
        for name, expr in alerts.items()
    }
    assert all(measured.values()), measured  # every expression found its series
    assert measured["TritonInferenceErrorRate"] == [0.0]  # nothing failed
    assert measured["MonitoringTargetDown"] == [1.0, 1.0]  # both targets up
    assert 0 < measured["TruncationRateHigh"][0] < 1
    assert sorted(measured["DriftDetected"]) == [0.0, 1.0]
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while True:
        with urllib.request.urlopen(f"{prometheus}/api/v1/alerts", timeout=10) as response:
            active = json.loads(response.read())["data"]["alerts"]
        firing = {(a["labels"]["alertname"], a["labels"].get("check")) for a in active}
        if ("DriftDetected", "token_lengths") in firing or time.monotonic() > deadline:
            break
        time.sleep(WAIT_STEP_S)
    assert ("DriftDetected", "token_lengths") in firing, active
    assert ("DriftDetected", "label_mix") not in firing
    quiet = {"TritonInferenceErrorRate", "TruncationRateHigh", "MonitoringTargetDown"}
    assert not quiet & {name for name, _ in firing}, active


def test_the_loaded_rules_are_the_committed_ones(
    stack: dict[str, Server], served_pairs: int
) -> None:
    with urllib.request.urlopen(f"{stack['prometheus'].url}/api/v1/rules", timeout=10) as answer:
        groups = json.loads(answer.read())["data"]["groups"]
    loaded = [rule for group in groups for rule in group["rules"]]
    rules = yaml.safe_load((CONFIG_DIR / RULES_FILE).read_text(encoding="utf-8"))
    assert {rule["name"] for rule in loaded} == {
        rule["alert"] for group in rules["groups"] for rule in group["rules"]
    }
    assert all(rule["health"] == "ok" for rule in loaded), loaded
