"""One load-test point: locust, headless, in its own process, for a fixed time and number of
clients against one server; its CSV summary read back as throughput and latency percentiles.

locust is the field's standard load generator; running its command line (rather than its
library, which monkey-patches the interpreter with gevent) keeps the caller's process clean.
"""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pair_classifier.errors import PairClassifierError

logger = logging.getLogger(__name__)

# locust runs this file in its own process (importing locust here would monkey-patch the caller).
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
ENV_REQUESTS_FILE = "PAIR_CLASSIFIER_LOADTEST_REQUESTS"  # the JSONL file of requests it sends
REQUEST_PATH = "path"  # the keys of each request's record in that file
REQUEST_BODY = "body"
STATS_SUFFIX = "_stats.csv"
AGGREGATED_ROW = "Aggregated"
# locust's CSV columns read back, and the names the metrics give them.
CSV_COLUMNS = {
    "Request Count": "requests",
    "Failure Count": "failures",
    "Requests/s": "throughput_req_per_s",
    "50%": "p50_ms",
    "95%": "p95_ms",
    "99%": "p99_ms",
}
STOP_GRACE_S = 10  # locust's own stop timeout, then what the process may take beyond -t
LOCUST_LOG_LEVEL = "WARNING"


class LoadTestError(PairClassifierError):
    """locust did not run or left no summary."""


@dataclass(frozen=True)
class Point:
    """A point of the load test: how many clients for how long against which server."""

    target: str
    clients: int
    duration_s: float
    requests: int
    failures: int
    throughput_req_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    def record(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key != "target"}


def locust_command(host: str, clients: int, duration_s: float, csv_prefix: Path) -> list[str]:
    """Headless locust: every client started at once, the statistics reset once they all run,
    one request after another per client."""
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        host,
        "--users",
        str(clients),
        "--spawn-rate",
        str(clients),
        "--run-time",
        f"{duration_s:g}s",
        "--reset-stats",
        "--stop-timeout",
        str(STOP_GRACE_S),
        "--csv",
        str(csv_prefix),
        "--only-summary",
        "--loglevel",
        LOCUST_LOG_LEVEL,
        "--exit-code-on-error",
        "0",
    ]


def read_summary(stats_csv: Path, target: str, clients: int, duration_s: float) -> Point:
    """The aggregated row of locust's ``*_stats.csv``."""
    if not stats_csv.is_file():
        raise LoadTestError(f"{stats_csv}: locust wrote no statistics (see its output above)")
    with stats_csv.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("Name") == AGGREGATED_ROW]
    if not rows:
        raise LoadTestError(f"{stats_csv}: no {AGGREGATED_ROW!r} row")
    row = rows[0]
    values: dict[str, Any] = {}
    for column, name in CSV_COLUMNS.items():
        raw = row.get(column, "")
        number = float(raw) if raw not in ("", "N/A") else float("nan")
        values[name] = int(number) if name in ("requests", "failures") else round(number, 2)
    return Point(target=target, clients=clients, duration_s=duration_s, **values)


def run_point(
    target: str,
    host: str,
    requests_file: Path,
    clients: int,
    duration_s: float,
    workdir: Path,
) -> Point:
    """Run locust once and return its summary; logs start and finish."""
    prefix = workdir / f"{target}_{clients}"
    environment = os.environ | {ENV_REQUESTS_FILE: str(requests_file)}
    logger.info("Load: %s at %d clients for %g s (%s)", target, clients, duration_s, host)
    finished = subprocess.run(
        locust_command(host, clients, duration_s, prefix),
        env=environment,
        capture_output=True,
        text=True,
        timeout=duration_s + 3 * STOP_GRACE_S + 60,
        check=False,
    )
    if finished.returncode != 0:
        raise LoadTestError(
            f"locust against {target} ({host}) exited {finished.returncode}: "
            f"{finished.stderr.strip()[-2000:]}"
        )
    point = read_summary(prefix.with_name(prefix.name + STATS_SUFFIX), target, clients, duration_s)
    logger.info(
        "Load: %s at %d clients: %.1f req/s, p50 %.0f ms, p99 %.0f ms, %d of %d failed",
        target,
        clients,
        point.throughput_req_per_s,
        point.p50_ms,
        point.p99_ms,
        point.failures,
        point.requests,
    )
    return point
