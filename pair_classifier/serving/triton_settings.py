"""The ``triton`` section of params.yaml: the generated model repository and the server.

It lives beside the serving code rather than in ``pair_classifier.config`` because that folder
is a dependency of every pipeline stage: a section only the last stages read must not rerun the
pipeline. Same rules as there: no defaults, declared ranges, the key named in every error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pair_classifier.config.loading import ConfigError
from pair_classifier.config.rules import ParamsSection, one_of, rule

SECTION_NAME = "triton"
REPOSITORY_DIR = Path("artifacts/triton")  # the triton-repo stage's output
CPU_REPOSITORY = "cpu"  # what the bundled server serves
GPU_REPOSITORY = "gpu"  # for a Triton server with the GPU backends
INSTANCE_KINDS = ("KIND_CPU", "KIND_GPU", "KIND_AUTO")
# Engines of the trt stage the GPU ensemble can serve (engine_name(model, precision)).
TRT_PRECISIONS = ("fp16", "int8")
MAX_PORT = 65535


@dataclass(frozen=True)
class TritonBatching(ParamsSection):
    """Triton's dynamic batcher: requests queued up to ``max_queue_delay_us`` are scored as one
    batch of at most ``max_batch_size`` pairs, preferably one of ``preferred_batch_sizes``."""

    SECTION = f"{SECTION_NAME}.batching"

    max_batch_size: int = rule("positive")
    preferred_batch_sizes: list[int] = rule("positive")
    max_queue_delay_us: int = rule("non_negative")

    def check(self) -> None:
        too_big = [size for size in self.preferred_batch_sizes if size > self.max_batch_size]
        if too_big:
            raise ConfigError(
                f"{self.SECTION}.preferred_batch_sizes: {too_big} exceed max_batch_size "
                f"{self.max_batch_size}"
            )


@dataclass(frozen=True)
class TritonInstances(ParamsSection):
    """An ``instance_group``: how many copies of a model run, and on what."""

    SECTION = f"{SECTION_NAME}.instances"

    count: int = rule("positive")
    kind: str = one_of(INSTANCE_KINDS)


@dataclass(frozen=True)
class TritonGpu(ParamsSection):
    """The GPU ensemble: a Python-backend tokenizer, the scoring graph on the onnxruntime backend
    (CUDA execution provider) and, when the trt stage built one, on the TensorRT backend."""

    SECTION = f"{SECTION_NAME}.gpu"

    instances: int = rule("positive")  # per GPU model (graph and plan)
    tokenizer_instances: int = rule("positive")  # CPU copies of the tokenizer step
    trt_precision: str = one_of(TRT_PRECISIONS)
    sequence_bucket: int = rule("positive")  # pad token rows to a multiple (batches more)


@dataclass(frozen=True)
class TritonServerSettings(ParamsSection):
    """How `pair-classifier serve triton` runs the bundled ``tritonserver``."""

    SECTION = f"{SECTION_NAME}.server"

    http_port: int = rule("positive")
    metrics_port: int = rule("positive")
    http_threads: int = rule("positive")
    # Triton's own wait for in-flight requests after SIGTERM; below serving.stop_timeout_s,
    # after which the server is killed
    exit_timeout_s: int = rule("non_negative")

    def check(self) -> None:
        for name in ("http_port", "metrics_port"):
            if getattr(self, name) > MAX_PORT:
                raise ConfigError(f"{self.SECTION}.{name}: expected a port up to {MAX_PORT}")


@dataclass(frozen=True)
class TritonConfig(ParamsSection):
    SECTION = SECTION_NAME

    model_name: str  # the CPU model; the GPU ensemble is <model_name>_gpu
    threads: int = rule("non_negative")  # ONNX Runtime threads per CPU instance (0: all cores)
    batching: TritonBatching
    instances: TritonInstances
    gpu: TritonGpu
    server: TritonServerSettings

    def check(self) -> None:
        if not self.model_name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(
                f"{self.SECTION}.model_name: expected letters, digits, '_' or '-' (a folder "
                f"name and a URL path part), got {self.model_name!r}"
            )
