"""Typed views of the sections of params.yaml.

Each stage loads the sections it declares in dvc.yaml through these dataclasses, so a typo, a
missing key or an out-of-range value fails at start-up with the section and key named, not deep
in training. configs/ (composed into params.yaml) is the only source of the settings: the
dataclasses carry no defaults, and tests compose configs/ too (tests/helpers.py).

``loading`` reads params and converts a section; ``rules`` holds the range rules declared on the
fields; ``sections`` and ``production_sections`` the dataclasses of the two halves of the pipeline.
"""

from pair_classifier.config.loading import (
    ConfigError,
    from_mapping,
    read_params,
    read_seed,
    section,
)
from pair_classifier.config.production_sections import (
    BenchmarkConfig,
    CrossEncoderConfig,
    DistillConfig,
    ExportConfig,
    QuantizeConfig,
    TrtConfig,
)
from pair_classifier.config.sections import (
    ClassifierConfig,
    DataColumns,
    DataConfig,
    DataFiles,
    EvaluateConfig,
    ModelConfig,
    PrecisionConfig,
    PrepareConfig,
    TrackingConfig,
    TrainConfig,
    check_classifier_exportable,
)

__all__ = [
    "BenchmarkConfig",
    "ClassifierConfig",
    "ConfigError",
    "CrossEncoderConfig",
    "DataColumns",
    "DataConfig",
    "DataFiles",
    "DistillConfig",
    "EvaluateConfig",
    "ExportConfig",
    "ModelConfig",
    "PrecisionConfig",
    "PrepareConfig",
    "QuantizeConfig",
    "TrackingConfig",
    "TrainConfig",
    "TrtConfig",
    "check_classifier_exportable",
    "from_mapping",
    "read_params",
    "read_seed",
    "section",
]
