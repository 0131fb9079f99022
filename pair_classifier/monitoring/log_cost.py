"""What the traffic log costs a server: `pair-classifier serve triton` under locust's load
(the load test's own point runner, ``loadtest.run.run_point``) with the log off and on
(every pair written, the worst case), started in turns so that a change in what else the
machine runs falls on both alike. Writes the points, their medians and the machine's CPU flags.

    python -m pair_classifier.monitoring.log_cost --rounds 3 --clients 4 --duration-s 15
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
import yaml

from pair_classifier.benchmark.machine import machine_record
from pair_classifier.config import read_params, section
from pair_classifier.constants import PARAMS_FILE, PREPARED_DIR, TEXT_A, TEXT_B
from pair_classifier.data.preparation import load_split
from pair_classifier.errors import exit_on_user_error
from pair_classifier.export.onnx_predictor import OnnxPairPredictor
from pair_classifier.io_utils import write_json
from pair_classifier.loadtest.run import run_point
from pair_classifier.loadtest.settings import SECTION_NAME as LOADTEST_SECTION
from pair_classifier.loadtest.settings import LoadTestConfig
from pair_classifier.loadtest.targets import free_ports, running, triton_target, warm_up
from pair_classifier.serving.settings import ServingConfig
from pair_classifier.serving.traffic_log import (
    ScoredRequest,
    TrafficLog,
    TrafficLogSettings,
    read_traffic_log,
)
from pair_classifier.serving.triton_settings import CPU_REPOSITORY, REPOSITORY_DIR, TritonConfig

logger = logging.getLogger(__name__)

OFF, ON = "log_off", "log_on"
OUT_FILE = Path("metrics/traffic_log_cost.json")
MICRO_BATCH = 32
FIGURES = ("throughput_req_per_s", "p50_ms", "p95_ms", "p99_ms")


def _params_files(params_file: Path, workdir: Path) -> dict[str, Path]:
    """A params file per mode: the project's, with the traffic log off or on (every pair)."""
    files = {}
    for mode in (OFF, ON):
        params = read_params(params_file)
        params["serving"]["traffic_log"] |= {
            "enabled": mode == ON,
            "dir": str(workdir / "traffic"),
            "sample_rate": 1.0,
            "log_texts": False,
        }
        files[mode] = workdir / f"{mode}.yaml"
        files[mode].write_text(yaml.safe_dump(params), encoding="utf-8")
    return files


def _summary(points: list[dict[str, Any]]) -> dict[str, float]:
    return {key: round(statistics.median(p[key] for p in points), 2) for key in FIGURES}


def thread_costs(repository: Path, model_name: str, pairs: pd.DataFrame) -> dict[str, float]:
    """Microseconds per pair spent by ``TrafficLog.record`` on the request thread (one pair per
    call, as the load sends) and by the listener thread building and writing its line (median
    over ``pairs``): the work the log adds, apart from the machine's load."""
    folder = next(path.parent for path in sorted((repository / model_name).glob("*/*.onnx")))
    predictor = OnnxPairPredictor(next(folder.glob("*.onnx")), MICRO_BATCH)
    probabilities = predictor.predict_proba(pairs)
    truncated = np.zeros(len(pairs), dtype=bool)
    rows = [pairs.iloc[[i]].reset_index(drop=True) for i in range(len(pairs))]
    with tempfile.TemporaryDirectory(prefix="pair-classifier-log-cost-") as tmp:
        settings = TrafficLogSettings(Path(tmp), 1.0, 10**9, 1, False)
        log = TrafficLog(
            settings,
            "triton",
            model_name,
            "0",
            predictor.class_names,
            predictor.tokenize.tokenizer,
        )
        request_s = []
        for row, pair in enumerate(rows):
            began = time.perf_counter()
            log.record(pair, probabilities[row : row + 1], truncated[row : row + 1], began)
            request_s.append(time.perf_counter() - began)
        log.close()
        listener_s = []
        for row, pair in enumerate(rows):
            began = time.perf_counter()
            log.lines(
                ScoredRequest(
                    time.time(),
                    1.0,
                    [pair[TEXT_A][0]],
                    [pair[TEXT_B][0]],
                    probabilities[row : row + 1],
                    truncated[row : row + 1],
                )
            )
            listener_s.append(time.perf_counter() - began)
    return {
        "request_thread_us_per_pair": round(statistics.median(request_s) * 1e6, 1),
        "listener_thread_us_per_pair": round(statistics.median(listener_s) * 1e6, 1),
    }


def measure_log_cost(
    params_file: Path, repository: Path, rounds: int, clients: int, duration_s: float
) -> dict[str, Any]:
    """Alternating runs of Triton with the log off and on; each mode's points and medians."""
    params = read_params(params_file)
    config = section(params, LOADTEST_SECTION, LoadTestConfig)
    serving = section(params, "serving", ServingConfig)
    triton = section(params, "triton", TritonConfig)
    pairs = load_split(PREPARED_DIR, config.split).head(config.pairs)
    points: dict[str, list[dict[str, Any]]] = {OFF: [], ON: []}
    with tempfile.TemporaryDirectory(prefix="pair-classifier-log-cost-") as tmp:
        workdir = Path(tmp)
        files = _params_files(params_file, workdir)
        for number in range(rounds):
            for mode in (OFF, ON) if number % 2 == 0 else (ON, OFF):
                http, metrics = free_ports(serving.host, 2)
                target = triton_target(mode, serving.host, http, metrics, triton.model_name)
                target = dataclasses.replace(
                    target,
                    command=target.command
                    + ["--repository", str(repository), "--params-file", str(files[mode])],
                )
                requests = target.write_requests(pairs, workdir / "requests.jsonl")
                logger.info("round %d of %d: Triton with the %s", number + 1, rounds, mode)
                with running(
                    target, workdir / f"{mode}.log", config.start_timeout_s, config.stop_timeout_s
                ):
                    warm_up(target, pairs, config.warmup_requests)
                    point = run_point(mode, target.url, requests, clients, duration_s, workdir)
                points[mode].append(point.record())
        logged = len(read_traffic_log(workdir / "traffic"))
    off, on = _summary(points[OFF]), _summary(points[ON])
    return {
        "what": "Triton (serve triton) under locust, one pair per request, traffic log off vs "
        "on (sample_rate 1: every pair written), started in turns; medians over the rounds",
        "rounds": rounds,
        "clients": clients,
        "point_duration_s": duration_s,
        "pairs_logged": logged,
        OFF: off,
        ON: on,
        "throughput_change": round(on["throughput_req_per_s"] / off["throughput_req_per_s"] - 1, 4),
        "p99_change": round(on["p99_ms"] / off["p99_ms"] - 1, 4),
        "thread_costs": thread_costs(repository, triton.model_name, pairs),
        "points": points,
        "machine": machine_record(),
        "note": "the machine's cores were shared with other jobs during the run",
    }


def main(
    rounds: Annotated[int, typer.Option(min=1, help="Runs per mode, in turns.")] = 3,
    clients: Annotated[int, typer.Option(min=1, help="Concurrent locust clients.")] = 4,
    duration_s: Annotated[float, typer.Option(min=1, help="Measured seconds per run.")] = 15,
    repository: Annotated[Path, typer.Option(help="Triton repository.")] = REPOSITORY_DIR
    / CPU_REPOSITORY,
    params_file: Annotated[Path, typer.Option(help="params.yaml to start from.")] = PARAMS_FILE,
    out: Annotated[Path, typer.Option(help="Where the figures go.")] = OUT_FILE,
) -> None:
    """Measure the traffic log's cost on Triton and write it to ``out``."""

    def run() -> None:
        record = measure_log_cost(params_file, repository, rounds, clients, duration_s)
        write_json(out, record)
        logger.info(
            "traffic log on vs off: throughput %+.1f%%, p99 %+.1f%% (%s)",
            100 * record["throughput_change"],
            100 * record["p99_change"],
            out,
        )

    exit_on_user_error(run)


if __name__ == "__main__":
    typer.run(main)
