"""Configs: the committed params.yaml is the Hydra composition, and bad sections fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pair_classifier.config import (
    BenchmarkConfig,
    ConfigError,
    DataConfig,
    ModelConfig,
    TrainConfig,
    from_mapping,
    read_params,
    section,
)

SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def compose_params(overrides: list[str] = ()) -> dict:
    """What `dvc exp run` writes to params.yaml (DVC composes configs/config.yaml with Hydra)."""
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base=None):
        return OmegaConf.to_container(compose(config_name="config", overrides=list(overrides)))


def test_committed_params_match_the_hydra_composition() -> None:
    committed = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert committed == compose_params()


@pytest.mark.parametrize("group", ["data=csv_pairs", "model=minilm_l12", "classifier=rbf_svm"])
def test_every_config_group_option_is_valid(group: str) -> None:
    params = compose_params([group])
    for name, cls in SECTIONS.items():
        section(params, name, cls)


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"model: unknown key\(s\) \['pretraind'\]"):
        from_mapping(ModelConfig, {"name": "m", "pretraind": "x"}, "model")


def test_wrong_type_is_named() -> None:
    params = compose_params()
    params["train"]["epochs"] = "four"
    with pytest.raises(ConfigError, match=r"train\.epochs: expected int, got 'four'"):
        section(params, "train", TrainConfig)


def test_positive_label_must_be_a_class() -> None:
    params = compose_params(["data.positive_label=yes"])
    with pytest.raises(ConfigError, match="data.positive_label: 'yes' is not one of"):
        section(params, "data", DataConfig)


def test_benchmark_needs_a_throughput_pass() -> None:
    params = compose_params(["benchmark.throughput_passes=0"])
    with pytest.raises(ConfigError, match="benchmark.throughput_passes: need at least 1, got 0"):
        section(params, "benchmark", BenchmarkConfig)


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="params.yaml: not found"):
        read_params(tmp_path / "params.yaml")
