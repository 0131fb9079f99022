"""`run_experiment`'s ending when a trial's epochs are read only after its process ended (a
busy store, a short trial): a failed end that the pruner would have stopped counts as pruned,
any other failure as failed, and a trial that finished is kept."""

from __future__ import annotations

import sys

import pytest

from pair_classifier.tuning.trial import TrialFailed, TrialStopped, run_experiment

PRUNE_ABOVE = 100.0  # a threshold pruner on a loss


class LateReader:
    """Reads nothing while the process runs; every epoch at once afterwards."""

    metric = "val_loss"

    def __init__(self, values: list[float]) -> None:
        self.values, self.polls = values, 0

    def new_values(self) -> list[float]:
        self.polls += 1
        if self.polls == 1:
            return []
        values, self.values = self.values, []
        return values


def _command(exit_code: int) -> list[str]:
    return [sys.executable, "-c", f"import sys, time; time.sleep(0.3); sys.exit({exit_code})"]


def _run(exit_code: int, values: list[float]) -> str:
    return run_experiment(
        _command(exit_code),
        LateReader(values),  # type: ignore[arg-type]
        lambda step, value: not value <= PRUNE_ABOVE,  # NaN prunes too
        poll_interval_s=1.0,
        timeout_s=60,
        stop_grace_s=5,
        tail_chars=200,
    )


def test_a_failed_trial_whose_late_epochs_call_for_pruning_is_pruned() -> None:
    with pytest.raises(TrialStopped):
        _run(1, [0.7, float("nan")])


def test_a_failed_trial_the_pruner_would_keep_is_failed() -> None:
    with pytest.raises(TrialFailed, match="exited with 1"):
        _run(1, [0.7, 0.6])


def test_a_finished_trial_is_kept_even_when_late_epochs_call_for_pruning() -> None:
    assert _run(0, [0.7, 1e9]) == ""
