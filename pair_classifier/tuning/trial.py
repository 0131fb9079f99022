"""One trial: a DVC experiment (`dvc exp run -n <name> -S key=value ... <targets>`) run in
this workspace, watched while it trains.

Pruning reads the per-epoch validation metric the training logs to its MLflow stage run
(``tune.pruner.stage``, ``metric``) while the experiment runs, and stops a hopeless one with
SIGINT to its process group (DVC then exits cleanly and records no experiment). Reading it
from outside keeps the pipeline free of Optuna, and works for any stage that logs per epoch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pair_classifier.errors import PairClassifierError

logger = logging.getLogger(__name__)


class TrialFailed(PairClassifierError):
    """The trial's experiment failed, diverged or ran too long: recorded as failed, the study
    goes on."""


class TrialStopped(Exception):
    """The pruner stopped the trial's experiment."""


def override(key: str, value: Any) -> str:
    """``key=value`` as Hydra reads it (booleans and None in YAML's words)."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif value is None:
        text = "null"
    else:
        text = str(value)
    return f"{key}={text}"


def experiment_command(name: str, values: Mapping[str, Any], targets: list[str]) -> list[str]:
    """The `dvc exp run` of one trial."""
    sets = [part for key, value in values.items() for part in ("-S", override(key, value))]
    return ["dvc", "exp", "run", "-n", name, *sets, *targets]


class EpochMetricReader:
    """New per-epoch values of one metric of this trial's training, read from its MLflow stage
    run (found by the experiment's name, the run's ``dvc.experiment`` tag). Not from DVCLive's
    files in the workspace: DVC restores the previous experiment's copies of those when the
    next one starts, which would pass another trial's epochs off as this one's."""

    def __init__(self, tracking_uri: str, experiment: str, name: str, stage: str, metric: str):
        self.client = MlflowClient(tracking_uri)
        self.experiment, self.name, self.stage, self.metric = experiment, name, stage, metric
        self.run_id: str | None = None
        self.seen = 0

    def _find_run(self) -> str | None:
        experiment = self.client.get_experiment_by_name(self.experiment)
        if experiment is None:
            return None
        query = f"tags.`dvc.experiment` = '{self.name}' and tags.stage = '{self.stage}'"
        runs = self.client.search_runs(
            [experiment.experiment_id], query, order_by=["attributes.start_time DESC"]
        )
        return runs[0].info.run_id if runs else None

    def new_values(self) -> list[float]:
        try:
            if self.run_id is None:
                self.run_id = self._find_run()
                if self.run_id is None:
                    return []
            history = self.client.get_metric_history(self.run_id, self.metric)
        except MlflowException as error:  # a busy store: the next poll reads it
            logger.warning("%s: %s not read this time: %s", self.name, self.metric, error)
            return []
        history = sorted(history, key=lambda m: m.step)
        values = [float(m.value) for m in history[self.seen :]]
        self.seen += len(values)
        return values


def read_objective(path: Path, key: str) -> float:
    """The finished trial's objective: ``key`` (dotted) of the JSON metrics file ``path``."""
    try:
        value: Any = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError) as error:
        raise TrialFailed(f"{path}: no objective to read ({error})") from None
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise TrialFailed(f"{path}: has no key {key!r}")
        value = value[part]
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise TrialFailed(f"{path}: {key} is {value!r}: the trial diverged")
    return float(value)


def _stop(process: subprocess.Popen, grace_s: float) -> None:
    """SIGINT to the experiment's process group (DVC cleans up), SIGKILL after ``grace_s``."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        logger.warning("experiment %d ignored SIGINT for %g s: killed", process.pid, grace_s)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _tail(log: Any, chars: int) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-chars:]


def run_experiment(
    command: list[str],
    reader: EpochMetricReader,
    report: Callable[[int, float], bool],
    poll_interval_s: float,
    timeout_s: float,
    stop_grace_s: float,
    tail_chars: int,
) -> str:
    """Run ``command``; each new epoch value goes to ``report`` (step = epoch index), which
    answers whether to prune. Returns the output's tail; raises TrialStopped when pruned (also
    when it failed after epochs read too late that call for pruning), TrialFailed when the
    experiment fails or runs past ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    step = 0
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            while process.poll() is None:
                for value in reader.new_values():
                    if report(step, value):
                        logger.info(
                            "pruned at epoch %d (%s = %g): stopping", step, reader.metric, value
                        )
                        _stop(process, stop_grace_s)
                        raise TrialStopped()
                    step += 1
                if time.monotonic() > deadline:
                    _stop(process, stop_grace_s)
                    raise TrialFailed(f"ran past tune.trial_timeout_s ({timeout_s:g} s)")
                time.sleep(poll_interval_s)
        except BaseException:
            if process.poll() is None:
                _stop(process, stop_grace_s)
            raise
        # Epochs that ended after the last poll (a busy store, a short trial): had one been
        # read in time it would have stopped the trial, so a failed end counts as pruned.
        late_prune = False
        for value in reader.new_values():
            late_prune = report(step, value) or late_prune
            step += 1
        output = _tail(log, tail_chars)
    if process.returncode != 0:
        if late_prune:
            logger.info("pruned after it ended (exit %d): %s", process.returncode, reader.metric)
            raise TrialStopped()
        raise TrialFailed(f"`{' '.join(command)}` exited with {process.returncode}:\n{output}")
    return output
