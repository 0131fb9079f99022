"""The tune section and its search space, without running trials."""

from __future__ import annotations

import optuna
import pytest
from helpers import composed

from pair_classifier.config import ConfigError
from pair_classifier.tuning.settings import TuneConfig
from pair_classifier.tuning.space import check_space, suggest
from pair_classifier.tuning.trial import experiment_command

SPACE = {
    "train.lr": "tag(log, interval(1e-5, 1e-3))",
    "train.warmup_fraction": "interval(0.0, 0.3)",
    "train.freeze_bottom_layers": "choice(0, 2, 4)",
    "train.epochs": "range(1, 4)",
    "train.batch_size": "tag(int, interval(8, 32))",
}


def test_each_sweep_form_becomes_its_optuna_distribution() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        values = suggest(study.ask(), SPACE)
        assert 1e-5 <= values["train.lr"] <= 1e-3
        assert 0.0 <= values["train.warmup_fraction"] <= 0.3
        assert values["train.freeze_bottom_layers"] in (0, 2, 4)
        assert values["train.epochs"] in (1, 2, 3)  # range's end is exclusive
        assert isinstance(values["train.batch_size"], int) and 8 <= values["train.batch_size"] <= 32
    distribution = study.trials[0].distributions["train.lr"]
    assert distribution.log


def test_a_space_that_is_not_sweep_syntax_is_named() -> None:
    with pytest.raises(ConfigError, match="tune.search_space.train.lr"):
        check_space({"train.lr": "1e-4"})


def test_the_default_config_composes_and_its_space_parses() -> None:
    config = composed("tune", TuneConfig)
    check_space(config.search_space)
    assert config.objective.file == "metrics/train.json"


@pytest.mark.parametrize(
    "objective",
    [{"file": "metrics/evaluate.json", "key": "f1"}, {"file": "x.json", "key": "test.accuracy"}],
)
def test_an_objective_on_the_test_split_is_refused(objective: dict) -> None:
    with pytest.raises(ConfigError, match="the test split is never used to choose"):
        composed("tune", TuneConfig, objective=objective | {"direction": "maximize"})


def test_a_key_both_searched_and_fixed_by_the_proxy_is_refused() -> None:
    proxy = {"enabled": True, "overrides": {"train.lr": "1e-4"}}
    with pytest.raises(ConfigError, match="both searched and fixed by the proxy"):
        composed("tune", TuneConfig, proxy=proxy)


def test_the_trial_command_is_a_named_dvc_experiment_of_its_targets() -> None:
    command = experiment_command("s-trial-3", {"train.lr": 1e-4, "x.flag": True}, ["embed-train"])
    assert command == [
        "dvc", "exp", "run", "-n", "s-trial-3",
        "-S", "train.lr=0.0001", "-S", "x.flag=true", "embed-train",
    ]  # fmt: skip
