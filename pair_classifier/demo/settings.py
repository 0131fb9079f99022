"""The ``demo`` section of params.yaml (`pair-classifier demo`).

It lives beside the demo rather than in ``pair_classifier.config`` because that folder is a
dependency of every pipeline stage: a section no stage reads must not rerun the pipeline. Same
rules as there: no defaults, declared ranges, the key named in every error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pair_classifier.config import ConfigError, read_params, section
from pair_classifier.config.rules import ParamsSection, one_of, rule

SECTION_NAME = "demo"
AUTO, TRITON, EXPORT = "auto", "triton", "export"
BACKENDS = (AUTO, TRITON, EXPORT)
MAX_PORT = 65535


@dataclass(frozen=True)
class DemoConfig(ParamsSection):
    SECTION = SECTION_NAME

    host: str  # beyond loopback only with a token (serving.token_env)
    port: int = rule("positive")
    backend: str = one_of(BACKENDS)
    probe_timeout_s: float = rule("positive")  # auto: Triton's readiness, then the export
    benchmark_metrics: str  # names the served graph
    onnx_dir: str
    quantized_dir: str
    register_metrics: str  # the registered name and version of that graph
    threads: int = rule("non_negative")  # ONNX Runtime threads (0: its default)
    max_text_chars: int = rule("positive")
    user: str  # the login's user name when a token is required

    def check(self) -> None:
        if self.port > MAX_PORT:
            raise ConfigError(
                f"{self.SECTION}.port: expected a TCP port (1-{MAX_PORT}), got {self.port}"
            )
        for key in (
            "host",
            "benchmark_metrics",
            "onnx_dir",
            "quantized_dir",
            "register_metrics",
            "user",
        ):
            if not getattr(self, key).strip():
                raise ConfigError(f"{self.SECTION}.{key}: expected a non-empty value")


def load_demo(params_file: Path) -> DemoConfig:
    """The ``demo`` section of ``params_file``, checked."""
    return section(read_params(params_file), SECTION_NAME, DemoConfig)
