"""`pair-classifier monitor exporter`: the real command on a free loopback port follows a traffic
log folder (lines appended, a new process's file, a file rotated mid-line, a bad line) and the
latest drift.json, and its /metrics says what was written; it refuses a non-loopback host."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml
from helpers import composed_params
from prometheus_client.parser import text_string_to_metric_families

from pair_classifier.errors import USER_ERROR_EXIT_CODE
from pair_classifier.monitoring.checks import DRIFT, NO_DRIFT, SKIPPED, judged, skipped
from pair_classifier.monitoring.log_tail import LogTail, TrafficTail
from pair_classifier.monitoring.prom_server import DRIFT_FILE
from pair_classifier.monitoring.report import DRIFT_JSON
from pair_classifier.serving.traffic_log import (
    LATENCY_MS,
    MODEL_NAME,
    MODEL_VERSION,
    PREDICTED_LABEL,
    PROBABILITIES,
    SERVER,
    TIME,
    TOKENS_A,
    TOKENS_B,
    TRUNCATED,
)

CLI = Path(sys.executable).parent / "pair-classifier"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
POLL_INTERVAL_S = 0.2  # the exporter's, so that the test waits little
PREFIX = "pair_classifier"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def record(number: int, version: str = "7") -> dict:
    """A traffic-log record as the servers write it; label, confidence, truncation and latency
    vary with ``number``."""
    paraphrase = 0.5 + (number % 5) / 10
    return {
        TIME: "2026-12-02T08:00:00.000+00:00",
        SERVER: "triton",
        MODEL_NAME: "pair_classifier",
        MODEL_VERSION: version,
        TOKENS_A: 10 + number,
        TOKENS_B: 12,
        TRUNCATED: number % 4 == 0,
        PREDICTED_LABEL: "paraphrase" if number % 3 else "not_paraphrase",
        PROBABILITIES: {"not_paraphrase": 1 - paraphrase, "paraphrase": paraphrase},
        LATENCY_MS: 3.0 + number,
    }


def append(path: Path, records: list[dict], end: str = "\n") -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write("\n".join(json.dumps(r) for r in records) + end)


def drift_report(path: Path, scores: dict[str, float], threshold: float, skip: str) -> dict:
    """drift.json as `pair-classifier drift` writes it (its check records), one check skipped."""
    checks = [judged(name, score, threshold) for name, score in scores.items()]
    checks.append(skipped(skip, "too few pairs"))
    verdict = DRIFT if any(check.verdict == DRIFT for check in checks) else NO_DRIFT
    report = {"verdict": verdict, "checks": {check.name: check.record() for check in checks}}
    path.write_text(json.dumps(report), encoding="utf-8")
    return report


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def wait_for(url: str, ready: callable) -> dict:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            samples = scrape(url)
            if ready(samples):
                return samples
        except OSError:
            samples = None
        if time.monotonic() > deadline:
            pytest.fail(f"{url} never showed what was expected; last scrape: {samples}")
        time.sleep(POLL_INTERVAL_S)


def params_file(folder: Path, **monitoring: object) -> Path:
    params = composed_params()
    params["monitoring"]["exporter"] |= {"poll_interval_s": POLL_INTERVAL_S}
    params["monitoring"] |= monitoring
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    return path


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_the_exporter_follows_the_log_folder_and_the_drift_report(tmp_path: Path) -> None:
    logs, reports = tmp_path / "traffic", tmp_path / "drift"
    logs.mkdir()
    reports.mkdir()
    first = logs / "triton-100.jsonl"
    append(first, [record(n) for n in range(5)])  # before the start: not counted (--from-end)
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    with (tmp_path / "exporter.log").open("wb") as log:
        process = subprocess.Popen(
            [str(CLI), "monitor", "exporter", "--traffic-log", str(logs), "--port", str(port)]
            + ["--drift-report", str(reports / DRIFT_FILE), "--from-end"]
            + ["--params-file", str(params_file(tmp_path))],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(url, lambda samples: True)
        written = [record(n) for n in range(5, 40)]
        append(first, written[:10])
        append(logs / "triton-200.jsonl", written[10:20])  # another model process
        append(first, written[20:25], end="")  # the last line unterminated...
        first.rename(logs / "triton-100.jsonl.1")  # ...when the file is rotated
        append(first, written[25:])
        append(first, [], end="{not json\n")
        report = drift_report(
            reports / DRIFT_FILE, {"token_lengths": 0.4, "label_mix": 0.01}, 0.1, "sentence_vectors"
        )
        samples = wait_for(
            url,
            lambda s: sum(v for (n, _), v in s.items() if n == f"{PREFIX}_logged_pairs_total")
            >= len(written)
            and value(s, f"{PREFIX}_traffic_log_bad_lines_total") >= 1
            and value(s, f"{PREFIX}_drift_overall_detected") == 1,
        )
        labels = Counter(r[PREDICTED_LABEL] for r in written)
        where = {"server": "triton", "model": "pair_classifier", "version": "7"}
        for label, count in labels.items():
            assert value(samples, f"{PREFIX}_logged_pairs_total", **where, label=label) == count
        truncated = sum(r[TRUNCATED] for r in written)
        assert value(samples, f"{PREFIX}_logged_truncated_pairs_total", **where) == truncated
        assert value(samples, f"{PREFIX}_traffic_log_bad_lines_total") == 1
        assert value(samples, f"{PREFIX}_confidence_count", **where) == len(written)
        confidences = sum(max(r[PROBABILITIES].values()) for r in written)
        assert value(samples, f"{PREFIX}_confidence_sum", **where) == pytest.approx(confidences)
        latency_s = sum(r[LATENCY_MS] for r in written) / 1000
        assert value(samples, f"{PREFIX}_model_latency_seconds_sum", **where) == pytest.approx(
            latency_s
        )
        for name, check in report["checks"].items():
            key = (f"{PREFIX}_drift_score", (("check", name),))
            assert samples.get(key) == check["score"]  # none for the skipped check
            assert value(samples, f"{PREFIX}_drift_threshold", check=name) == (
                check["threshold"] or 0.0
            )
            detected = value(samples, f"{PREFIX}_drift_detected", check=name)
            assert detected == float(check["verdict"] == DRIFT)
            skipped_check = value(samples, f"{PREFIX}_drift_skipped", check=name)
            assert skipped_check == float(check["verdict"] == SKIPPED)

        (reports / DRIFT_FILE).write_text("{truncated", encoding="utf-8")
        samples = wait_for(url, lambda s: value(s, f"{PREFIX}_drift_report_errors_total") == 1)
        assert value(samples, f"{PREFIX}_drift_overall_detected") == 1  # the last good report
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=STOP_TIMEOUT_S)
    output = (tmp_path / "exporter.log").read_text(errors="replace")
    assert code == 0, output
    assert "skipped a line" in output and "not a drift report" in output


def test_a_host_beyond_loopback_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(CLI), "monitor", "exporter", "--params-file"]
        + [str(params_file(tmp_path, host="0.0.0.0"))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == USER_ERROR_EXIT_CODE
    assert "monitoring.host" in result.stderr and "loopback" in result.stderr


def test_a_truncated_file_is_read_again_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "triton-1.jsonl"
    append(path, [record(1), record(2)])
    tail = LogTail(path, from_start=True)
    assert len(tail.read()) == 2
    path.write_text(json.dumps(record(3)) + "\n", encoding="utf-8")
    assert [json.loads(line)[TOKENS_A] for line in tail.read()] == [record(3)[TOKENS_A]]
    tail.close()


def test_a_file_that_appears_later_is_read_whole_and_a_removed_one_is_dropped(
    tmp_path: Path,
) -> None:
    tail = TrafficTail(tmp_path, from_start=False)
    old = tmp_path / "mlflow-1.jsonl"
    append(old, [record(1)])
    assert [lines for _, lines in tail.read()] == [[]]  # there at the start: followed from its end
    append(tmp_path / "mlflow-2.jsonl", [record(2), record(3)])
    assert sum(len(lines) for _, lines in tail.read()) == 2
    os.remove(old)
    tail.read()
    assert list(tail.tails) == [tmp_path / "mlflow-2.jsonl"]
    tail.close()


def test_the_exporter_reads_the_file_the_drift_command_writes() -> None:
    assert DRIFT_FILE == DRIFT_JSON
