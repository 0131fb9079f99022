"""A load-test point end to end: real locust processes against a small HTTP server on loopback
that answers some requests with 400, and the record and plot made from the points."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pair_classifier.loadtest.report import serving_record, write_serving_plots
from pair_classifier.loadtest.run import LoadTestError, Point, read_summary, run_point

pytestmark = pytest.mark.slow  # locust processes, a few seconds each

GOOD, BAD = "/good", "/bad"
DURATION_S = 2


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        json.loads(body)
        status = 200 if self.path == GOOD else 400
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        """Quiet: locust counts the requests."""


@pytest.fixture(scope="module")
def host() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def _requests(tmp_path: Path, *paths: str) -> Path:
    file = tmp_path / "requests.jsonl"
    lines = [json.dumps({"path": path, "body": {"text_a": "a", "text_b": "b"}}) for path in paths]
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return file


def test_a_point_counts_requests_throughput_and_latency(host: str, tmp_path: Path) -> None:
    point = run_point("echo", host, _requests(tmp_path, GOOD), 2, DURATION_S, tmp_path)
    assert point.requests > 0 and point.failures == 0
    assert point.throughput_req_per_s > 0
    assert 0 <= point.p50_ms <= point.p95_ms <= point.p99_ms


def test_rejected_requests_are_counted_as_failures(host: str, tmp_path: Path) -> None:
    point = run_point("echo", host, _requests(tmp_path, GOOD, BAD), 2, DURATION_S, tmp_path)
    assert 0 < point.failures < point.requests


def test_no_summary_is_named(tmp_path: Path) -> None:
    with pytest.raises(LoadTestError, match="locust wrote no statistics"):
        read_summary(tmp_path / "missing_stats.csv", "triton", 1, 1)


def _point(target: str, clients: int, throughput: float, p99: float) -> Point:
    return Point(target, clients, 1.0, 100, 0, throughput, p99 / 2, p99, p99)


def test_record_reads_ratios_at_the_compared_client_count(tmp_path: Path) -> None:
    points = [
        _point("triton", 1, 50, 20),
        _point("triton", 16, 300, 80),
        _point("mlflow", 16, 150, 200),
        _point("mlflow_teacher", 16, 30, 900),
    ]
    record = serving_record(points, points[1], 16, "triton", {"pairs": 100})
    at = record["at_16_clients"]
    assert at["throughput_ratios"] == {"triton_vs_mlflow": 2.0, "triton_vs_mlflow_teacher": 10.0}
    assert at["triton_p99_ms"] == 80
    assert record["targets"]["triton"]["1"]["throughput_req_per_s"] == 50
    assert record["soak"]["target"] == "triton" and record["pairs"] == 100
    write_serving_plots(points, tmp_path / "plots")
    data = json.loads((tmp_path / "plots" / "load.json").read_text())
    assert len(data) == 4 and (tmp_path / "plots" / "load.png").stat().st_size > 0
    assert not any(math.isnan(row["p99_ms"]) for row in data)
