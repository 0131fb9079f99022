"""The locust user of the serving load test, run by ``locust -f`` in its own process.

It knows nothing of the servers: the load test writes each request (path and JSON body) to a
JSONL file beforehand, and every simulated client posts them in turn, so the servers compared
receive the same pairs in the same order. A non-200 answer is a failure in locust's counts.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

from locust import FastHttpUser, task

from pair_classifier.loadtest.run import ENV_REQUESTS_FILE, REQUEST_BODY, REQUEST_PATH

JSON_HEADERS = {"Content-Type": "application/json"}


def _requests() -> list[tuple[str, str]]:
    """(path, body) of every request; read when locust starts the first user."""
    lines = Path(os.environ[ENV_REQUESTS_FILE]).read_text(encoding="utf-8").splitlines()
    return [
        (record[REQUEST_PATH], json.dumps(record[REQUEST_BODY]))
        for record in map(json.loads, filter(None, lines))
    ]


class PairClient(FastHttpUser):
    """A client that sends its next request as soon as the last one is answered."""

    _cycle: itertools.cycle | None = None

    def on_start(self) -> None:
        if PairClient._cycle is None:
            PairClient._cycle = itertools.cycle(_requests())

    @task
    def score_pair(self) -> None:
        assert PairClient._cycle is not None
        path, body = next(PairClient._cycle)
        self.client.post(path, data=body, headers=JSON_HEADERS, name=path)
