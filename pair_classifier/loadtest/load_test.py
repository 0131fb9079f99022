"""The load test's work: every server in turn, started, warmed up, loaded at each client count
(and the soak), stopped; the figures in one list, so the servers are compared side by side on
one machine in one run."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pair_classifier.loadtest.run import Point, run_point
from pair_classifier.loadtest.settings import LoadTestConfig
from pair_classifier.loadtest.targets import Target, running, warm_up

logger = logging.getLogger(__name__)


def run_load_test(
    config: LoadTestConfig,
    targets: Sequence[Target],
    pairs: pd.DataFrame,
    workdir: Path,
    soak_target: str,
) -> tuple[list[Point], Point | None]:
    """Points of every target at every ``config.clients``, and the soak of ``soak_target``."""
    points: list[Point] = []
    soak: Point | None = None
    for number, target in enumerate(targets, start=1):
        logger.info("Load test %d/%d: %s", number, len(targets), target.name)
        requests = target.write_requests(pairs, workdir / f"{target.name}_requests.jsonl")
        log_file = workdir / f"{target.name}.log"
        with running(target, log_file, config.start_timeout_s, config.stop_timeout_s):
            warm_up(target, pairs, config.warmup_requests)
            for clients in config.clients:
                points.append(
                    run_point(
                        target.name,
                        target.url,
                        requests,
                        clients,
                        config.point_duration_s,
                        workdir,
                    )
                )
            if target.name == soak_target and config.soak_duration_s > 0:
                soak = run_point(
                    f"{target.name}_soak",
                    target.url,
                    requests,
                    config.soak_clients,
                    config.soak_duration_s,
                    workdir,
                )
    logger.info("Load test done: %d points", len(points))
    return points, soak
