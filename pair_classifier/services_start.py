"""How long `pair-classifier services up` takes, as a new user sees it: the command itself
(interpreter start included) from cold (an empty data folder, so ``initdb`` and MLflow's
first tables too), warm (after ``down``, data kept) and again while everything runs. Each
round uses a new temporary data folder, so the team's own ``.services/`` is never touched;
the ports are the configured ones, so the team's services must be down. Writes the rounds,
their medians, the load average before the first round and the machine's CPU flags.

    python -m pair_classifier.services_start --rounds 3
"""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from pair_classifier.benchmark.machine import machine_record
from pair_classifier.constants import PARAMS_FILE, SERVICES_START_METRICS
from pair_classifier.errors import PairClassifierError, exit_on_user_error
from pair_classifier.io_utils import write_json
from pair_classifier.services.settings import ENV_OVERRIDES, load_services

logger = logging.getLogger(__name__)

COLD, WARM, AGAIN = "cold_s", "warm_s", "again_s"
DATA_DIR_VARIABLE = next(name for name, key in ENV_OVERRIDES.items() if key == ("data_dir",))
CLI = Path(sys.executable).parent / "pair-classifier"  # the console script beside this Python
DECIMALS = 2
DATA_DIR_PREFIX = "services-start-"


class StartTimeError(PairClassifierError):
    """A `services` command failed while being timed (its output says why)."""


def _services(command: str, params_file: Path, data_dir: Path) -> float:
    """Seconds `pair-classifier services <command>` took; its failure is raised with its output."""
    env = os.environ | {DATA_DIR_VARIABLE: str(data_dir)}
    started = time.perf_counter()
    result = subprocess.run(
        [str(CLI), "services", command, "--params-file", str(params_file)],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise StartTimeError(
            f"`pair-classifier services {command}` (data in {data_dir}) exited "
            f"{result.returncode}; stop the team's services first (`services down`) if a port "
            f"is taken:\n{result.stderr.strip() or result.stdout.strip()}"
        )
    return round(seconds, DECIMALS)


def _round(params_file: Path) -> dict[str, float]:
    """One cold, warm and repeated ``up`` in a new data folder, stopped again at the end."""
    # The folder itself, not one inside it: the cluster's unprivileged user must reach it.
    with tempfile.TemporaryDirectory(prefix=DATA_DIR_PREFIX) as tmp:
        data_dir = Path(tmp)
        try:
            cold = _services("up", params_file, data_dir)
            _services("down", params_file, data_dir)
            warm = _services("up", params_file, data_dir)
            again = _services("up", params_file, data_dir)
        finally:
            _services("down", params_file, data_dir)
    return {COLD: cold, WARM: warm, AGAIN: again}


def measure_start_time(params_file: Path, rounds: int) -> dict[str, Any]:
    """``rounds`` rounds of cold, warm and repeated ``up`` and their medians."""
    config = load_services(params_file)  # a broken section fails here, before any server starts
    load_before = os.getloadavg()[0]
    results = []
    for number in range(1, rounds + 1):
        logger.info("round %d of %d: services up cold, warm, again", number, rounds)
        results.append(_round(params_file))
        logger.info("round %d: %s", number, results[-1])
    return {
        "rounds": results,
        "median": {key: statistics.median(r[key] for r in results) for key in (COLD, WARM, AGAIN)},
        "mlflow_workers": config.mlflow.workers,
        "load_average_1m_before": round(load_before, DECIMALS),
        "machine": machine_record(),
    }


def main(
    rounds: Annotated[int, typer.Option(min=1, help="Cold, warm and repeated starts each.")] = 3,
    params_file: Annotated[Path, typer.Option(help="params.yaml with the services.")] = PARAMS_FILE,
    out: Annotated[Path, typer.Option(help="Where the figures go.")] = SERVICES_START_METRICS,
) -> None:
    """Time `pair-classifier services up` and write the figures to ``out``."""

    def run() -> None:
        record = measure_start_time(params_file, rounds)
        write_json(out, record)
        logger.info("services up, median of %d: %s (%s)", rounds, record["median"], out)

    exit_on_user_error(run)


if __name__ == "__main__":
    typer.run(main)
