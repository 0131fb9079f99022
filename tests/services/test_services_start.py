"""`python -m pair_classifier.services_start`: `services up` timed cold, warm and again
with real servers on free loopback ports, in a data folder of its own that it removes."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import psutil
import pytest
from helpers import REPO_ROOT
from services.team_services import free_port

from pair_classifier.services.common import port_open
from pair_classifier.services_start import (
    AGAIN,
    COLD,
    DATA_DIR_PREFIX,
    WARM,
    StartTimeError,
    measure_start_time,
)

pytestmark = pytest.mark.slow

PORT_VARIABLES = (
    "PAIR_CLASSIFIER_POSTGRES_PORT",
    "PAIR_CLASSIFIER_S3_PORT",
    "PAIR_CLASSIFIER_MLFLOW_PORT",
)


@pytest.fixture
def ports(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    chosen = {variable: free_port() for variable in PORT_VARIABLES}
    for variable, port in chosen.items():
        monkeypatch.setenv(variable, str(port))
    return chosen


def _our_servers() -> list[psutil.Process]:
    """Processes started from a services_start data folder that are still alive."""
    return [
        process
        for process in psutil.process_iter(["cmdline"])
        if any(DATA_DIR_PREFIX in part for part in process.info["cmdline"] or [])
    ]


def test_a_round_times_cold_warm_and_again_and_leaves_nothing_running(
    ports: dict[str, int],
) -> None:
    record = measure_start_time(REPO_ROOT / "params.yaml", rounds=1)
    (times,) = record["rounds"]
    assert all(times[key] > 0 for key in (COLD, WARM, AGAIN))
    assert times[AGAIN] < times[COLD]  # a second `up` only checks health
    assert record["median"] == times and record["machine"]["cpu_flags"] is not None
    assert not any(port_open("127.0.0.1", port) for port in ports.values())
    assert not _our_servers()
    assert not list(Path(tempfile.gettempdir()).glob(f"{DATA_DIR_PREFIX}*"))


def test_a_taken_port_is_named_and_nothing_is_left(ports: dict[str, int]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["PAIR_CLASSIFIER_POSTGRES_PORT"]))
        squatter.listen()
        with pytest.raises(StartTimeError, match="services up.*services down"):
            measure_start_time(REPO_ROOT / "params.yaml", rounds=1)
    assert not _our_servers()
