"""Configs: the committed params.yaml is the Hydra composition, and bad sections fail clearly."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT, composed, composed_params

from pair_classifier.config import (
    BenchmarkConfig,
    ClassifierConfig,
    ConfigError,
    CrossEncoderConfig,
    DataColumns,
    DataConfig,
    DataFiles,
    DistillConfig,
    EvaluateConfig,
    ExportConfig,
    ModelConfig,
    PrecisionConfig,
    PrepareConfig,
    QuantizeConfig,
    TrackingConfig,
    TrainConfig,
    TrtConfig,
    check_classifier_exportable,
    from_mapping,
    read_params,
    read_seed,
    section,
)
from pair_classifier.config.rules import ParamsSection, one_of, rule
from pair_classifier.demo.settings import DemoConfig
from pair_classifier.loadtest.settings import LoadTestConfig
from pair_classifier.monitoring.prom_settings import (
    ExporterSettings,
    MonitoringConfig,
    PrometheusSettings,
)
from pair_classifier.monitoring.settings import DriftConfig
from pair_classifier.registry.settings import RegisterConfig
from pair_classifier.services.settings import ServicesConfig
from pair_classifier.serving.settings import ServingConfig, TrafficLogConfig
from pair_classifier.serving.triton_settings import (
    TritonBatching,
    TritonConfig,
    TritonGpu,
    TritonInstances,
    TritonServerSettings,
)
from pair_classifier.tuning.settings import TuneConfig

SECTIONS = {
    "data": DataConfig,
    "prepare": PrepareConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "classifier": ClassifierConfig,
    "evaluate": EvaluateConfig,
    "distill": DistillConfig,
    "export": ExportConfig,
    "quantize": QuantizeConfig,
    "trt": TrtConfig,
    "benchmark": BenchmarkConfig,
    "register": RegisterConfig,
    "tracking": TrackingConfig,
    "services": ServicesConfig,
    "serving": ServingConfig,
    "triton": TritonConfig,
    "loadtest": LoadTestConfig,
    "monitoring": MonitoringConfig,
    "drift": DriftConfig,
    "tune": TuneConfig,
    "demo": DemoConfig,
}


def test_committed_params_match_the_hydra_composition() -> None:
    committed = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert committed == composed_params()


@pytest.mark.parametrize(
    "group", ["data=csv_pairs", "model=minilm_l12", "classifier=linear_svm", "classifier=rbf_svm"]
)
def test_every_config_group_option_is_valid(group: str) -> None:
    params = composed_params(group)
    assert set(SECTIONS) | {"seed"} == set(params)
    for name, cls in SECTIONS.items():
        section(params, name, cls)
    assert isinstance(read_seed(params), int)


def test_a_key_left_out_of_params_is_named_not_defaulted() -> None:
    params = composed_params()
    del params["distill"]["lr"]
    with pytest.raises(ConfigError, match="distill: missing required key 'lr'"):
        section(params, "distill", DistillConfig)
    del params["distill"]["cross_encoder"]["epochs"]
    with pytest.raises(ConfigError, match="distill.cross_encoder: missing required key 'epochs'"):
        from_mapping(DistillConfig, params["distill"] | {"lr": 3e-4}, "distill")


NESTED = (
    DataFiles,
    DataColumns,
    PrecisionConfig,
    CrossEncoderConfig,
    TritonBatching,
    TritonInstances,
    TritonGpu,
    TritonServerSettings,
    ExporterSettings,
    PrometheusSettings,
    TrafficLogConfig,
)


@pytest.mark.parametrize("cls", [*SECTIONS.values(), *NESTED], ids=lambda cls: cls.__name__)
def test_the_dataclasses_carry_no_recipe_of_their_own(cls: type) -> None:
    """configs/ is the one source of the settings: a dataclass default would be a second recipe
    that only tests and notebooks run (they compose configs/ instead, tests/helpers.py)."""
    defaulted = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    ]
    assert not defaulted


def test_composed_sections_are_the_committed_params() -> None:
    committed = read_params(REPO_ROOT / "params.yaml")
    for name, cls in SECTIONS.items():
        assert composed(name, cls) == section(committed, name, cls)
    scaled = composed("distill", DistillConfig, "distill.epochs=1", lr=1.0)
    assert (scaled.epochs, scaled.lr) == (1, 1.0)


@dataclass(frozen=True)
class _Ruled(ParamsSection):
    SECTION = "demo"

    rate: float = rule("positive")
    sizes: list[int] = rule("non_negative")
    share: float = rule("probability", says="expected a probability in [0, 1]")
    mode: str = one_of(("a", "b"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rate": 0.0}, r"^demo.rate: expected a positive number, got 0.0$"),
        (
            {"sizes": [1, -1]},
            r"^demo.sizes: expected a non-empty list, each 0 or more, got \[1, -1\]$",
        ),
        ({"sizes": []}, r"^demo.sizes: expected a non-empty list, each 0 or more, got \[\]$"),
        ({"share": 1.5}, r"^demo.share: expected a probability in \[0, 1\], got 1.5$"),
        ({"mode": "c"}, r"^demo.mode: expected one of \['a', 'b'\], got 'c'$"),
    ],
)
def test_a_rule_declared_on_a_field_is_enforced(change: dict, message: str) -> None:
    good = {"rate": 1.0, "sizes": [0, 2], "share": 0.5, "mode": "a"}
    assert from_mapping(_Ruled, good, "demo").sizes == [0, 2]
    with pytest.raises(ConfigError, match=message):
        from_mapping(_Ruled, good | change, "demo")
    with pytest.raises(ConfigError, match=message):  # built directly, as well as when read
        _Ruled(**(good | change))


@pytest.mark.parametrize("seed", [None, "42", 4.7, True])
def test_seed_must_be_an_integer(seed: object) -> None:
    params = {} if seed is None else {"seed": seed}
    with pytest.raises(ConfigError, match="params.yaml: seed: expected an integer"):
        read_seed(params)


@pytest.mark.parametrize(
    ("override", "name", "cls", "message"),
    [
        ("data.separator=';;'", "data", DataConfig, "data.separator: expected one character"),
        ("prepare.val_fraction=1.5", "prepare", PrepareConfig, "prepare.val_fraction: expected"),
        (
            "prepare.length_percentiles=[50,101]",
            "prepare",
            PrepareConfig,
            r"prepare.length_percentiles: expected values in 0..100, got \[101\]",
        ),
        ("train.freeze_bottom_layers=-1", "train", TrainConfig, "train.freeze_bottom_layers"),
        ("distill.keep_layers=[]", "distill", DistillConfig, "distill.keep_layers: expected"),
        (
            "quantize.include_nodes='/layer[/'",
            "quantize",
            QuantizeConfig,
            "quantize.include_nodes: '/layer\\[/' is not a regular expression",
        ),
        (
            "quantize.calibration_method=percentile",
            "quantize",
            QuantizeConfig,
            r"quantize.calibration_method: expected one of \('minmax', 'entropy'\)",
        ),
        ("train.epochs=0", "train", TrainConfig, "train.epochs: expected a positive number, got 0"),
        ("train.warmup_fraction=1", "train", TrainConfig, r"warmup_fraction: expected .*\[0, 1\)"),
        (
            "train.monitor=val_accuracy",
            "train",
            TrainConfig,
            r"train.monitor: expected one of \['val_loss', 'val_acc', 'val_f1'\], got 'val_acc",
        ),
        ("distill.temperature=0", "distill", DistillConfig, "distill.temperature: expected a pos"),
        ("distill.importance_batches=0", "distill", DistillConfig, "importance_batches: expected"),
        ("distill.heads_per_layer=-2", "distill", DistillConfig, "heads_per_layer: expected 0 or"),
        ("distill.monitor=val_relation", "distill", DistillConfig, "distill.monitor: expected"),
        ("model.dropout=1", "model", ModelConfig, r"model.dropout: expected a value in \[0, 1\)"),
        (
            "classifier.c_grid=[]",
            "classifier",
            ClassifierConfig,
            r"classifier.c_grid: expected a non-empty list, each a positive number, got \[\]",
        ),
        (
            "classifier.class_weights=[balancd]",
            "classifier",
            ClassifierConfig,
            r"classifier.class_weights: expected one of \[None, 'balanced'\], got 'balancd'",
        ),
        (
            "classifier.gamma=sclae",
            "classifier",
            ClassifierConfig,
            "classifier.gamma: expected one",
        ),
        ("classifier.gamma=-1.0", "classifier", ClassifierConfig, "classifier.gamma: expected a p"),
        ("evaluate.roc_points=0", "evaluate", EvaluateConfig, "evaluate.roc_points: expected"),
        (
            "export.min_prediction_agreement=1.5",
            "export",
            ExportConfig,
            r"export.min_prediction_agreement: expected a value in \[0, 1\], got 1.5",
        ),
        ("quantize.calibration_size=0", "quantize", QuantizeConfig, "calibration_size: expected"),
        ("trt.workspace_mib=0", "trt", TrtConfig, "trt.workspace_mib: expected a positive"),
        ("benchmark.latency_pairs=0", "benchmark", BenchmarkConfig, "latency_pairs: expected a"),
        ("tracking.server_timeout_s=0", "tracking", TrackingConfig, "server_timeout_s: expected"),
    ],
)
def test_out_of_range_settings_are_named(override: str, name: str, cls: type, message: str) -> None:
    params = composed_params(override)
    with pytest.raises(ConfigError, match=message):
        section(params, name, cls)


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"model: unknown key\(s\) \['pretraind'\]"):
        from_mapping(ModelConfig, {"name": "m", "pretraind": "x"}, "model")


def test_wrong_type_is_named() -> None:
    params = composed_params()
    params["train"]["epochs"] = "four"
    with pytest.raises(ConfigError, match=r"train\.epochs: expected int, got 'four'"):
        section(params, "train", TrainConfig)


def test_positive_label_must_be_a_class() -> None:
    params = composed_params("data.positive_label=yes")
    with pytest.raises(ConfigError, match="data.positive_label: 'yes' is not one of"):
        section(params, "data", DataConfig)


def test_benchmark_needs_a_throughput_pass() -> None:
    params = composed_params("benchmark.throughput_passes=0")
    with pytest.raises(ConfigError, match="benchmark.throughput_passes: need at least 1, got 0"):
        section(params, "benchmark", BenchmarkConfig)


def test_params_file_that_is_not_yaml_is_named(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("seed: [42\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"{path}: not valid YAML"):
        read_params(path)


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="params.yaml: not found"):
        read_params(tmp_path / "params.yaml")


def test_a_three_class_data_set_needs_the_linear_svm_to_export() -> None:
    """The onnx stage exports an RBF SVM for two classes only: prepare refuses the combination
    before any training, and says what to use instead."""
    params = composed_params("data=csv_pairs")
    data = section(params, "data", DataConfig)
    with pytest.raises(ConfigError, match=r"classifier.kind: .* 3 .*-S classifier=linear_svm"):
        check_classifier_exportable(section(params, "classifier", ClassifierConfig), data)
    linear = composed_params("data=csv_pairs", "classifier=linear_svm")
    check_classifier_exportable(section(linear, "classifier", ClassifierConfig), data)
