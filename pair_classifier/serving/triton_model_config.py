"""Triton's ``config.pbtxt`` files, written and read through Triton's own ``ModelConfig``
protobuf message, so a field Triton does not know or a value of the wrong type fails here, at
generation, not when a server loads the repository.

The message comes from ``tritonclient`` (``tritonclient/grpc/model_config_pb2.py``). That
module is loaded from its file, not imported as ``tritonclient.grpc.model_config_pb2``: the
package's ``__init__`` imports grpcio, which the ``grpc`` extra would bring along with a
protobuf older than the one the pipeline's environment runs; the message itself needs only
protobuf.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pair_classifier.errors import ArtifactError, PairClassifierError

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.pbtxt"
PB2_FILE = Path("grpc") / "model_config_pb2.py"


class TritonConfigError(PairClassifierError):
    """A generated Triton model repository is not what Triton would load and serve."""


@functools.cache
def model_config_module() -> Any:
    """tritonclient's ``model_config_pb2`` (Triton's model configuration schema)."""
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or spec.origin is None:
        raise TritonConfigError(
            "tritonclient is not installed; it comes with the project's dependencies "
            "(uv sync --frozen --extra cpu)"
        )
    path = Path(spec.origin).parent / PB2_FILE
    module_spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    if module_spec is None or module_spec.loader is None:
        raise TritonConfigError(f"{path}: Triton's model configuration schema is missing")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model: name, Triton data type (``TYPE_STRING``), dims without
    the batch dimension (-1: any size)."""

    name: str
    data_type: str
    dims: tuple[int, ...]


def new_config(name: str, max_batch_size: int, **fields: Any) -> Any:
    """A ``ModelConfig`` with the name, the batch limit and any scalar fields (``backend``,
    ``platform``)."""
    config = model_config_module().ModelConfig(name=name, max_batch_size=max_batch_size)
    for field, value in fields.items():
        setattr(config, field, value)
    return config


def add_tensors(config: Any, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> None:
    """Declare the model's inputs and outputs."""
    data_types = model_config_module().DataType
    for spec in inputs:
        config.input.add(name=spec.name, data_type=data_types.Value(spec.data_type), dims=spec.dims)
    for spec in outputs:
        config.output.add(
            name=spec.name, data_type=data_types.Value(spec.data_type), dims=spec.dims
        )


def add_dynamic_batching(config: Any, preferred: Sequence[int], delay_us: int) -> None:
    config.dynamic_batching.preferred_batch_size.extend(preferred)
    config.dynamic_batching.max_queue_delay_microseconds = delay_us


def add_instances(config: Any, count: int, kind: str) -> None:
    group = config.instance_group.add(count=count)
    group.kind = model_config_module().ModelInstanceGroup.Kind.Value(kind)


def add_parameters(config: Any, values: Mapping[str, object]) -> None:
    """String parameters a Python-backend model reads in ``initialize``."""
    for key, value in values.items():
        config.parameters[key].string_value = str(value)


def pin_version(config: Any, version: int) -> None:
    """Serve exactly this version folder (the registered model version)."""
    config.version_policy.specific.versions.append(version)


def add_ensemble_step(
    config: Any, model: str, version: int, inputs: Mapping[str, str], outputs: Mapping[str, str]
) -> None:
    """A step of an ensemble: the step model's tensor -> the ensemble's tensor of that name."""
    step = config.ensemble_scheduling.step.add(model_name=model, model_version=version)
    step.input_map.update(inputs)
    step.output_map.update(outputs)


def write_config(config: Any, model_dir: Path) -> Path:
    """``<model_dir>/config.pbtxt`` in protobuf text format."""
    from google.protobuf import text_format

    path = model_dir / CONFIG_FILE
    path.write_text(text_format.MessageToString(config), encoding="utf-8")
    return path


def read_config(path: Path) -> Any:
    """A ``config.pbtxt`` parsed strictly against Triton's ``ModelConfig``."""
    from google.protobuf import text_format

    if not path.is_file():
        raise ArtifactError(f"{path}: not found; every Triton model folder needs one")
    try:
        return text_format.Parse(
            path.read_text(encoding="utf-8"), model_config_module().ModelConfig()
        )
    except text_format.ParseError as error:
        raise TritonConfigError(f"{path}: not a Triton ModelConfig: {error}") from error


def tensor_specs(tensors: Sequence[Any]) -> dict[str, TensorSpec]:
    """A parsed config's inputs or outputs by name."""
    data_types = model_config_module().DataType
    return {
        tensor.name: TensorSpec(tensor.name, data_types.Name(tensor.data_type), tuple(tensor.dims))
        for tensor in tensors
    }


def instance_kind(config: Any) -> str:
    """The kind of the config's first instance group (``KIND_AUTO`` when none is set)."""
    kinds = model_config_module().ModelInstanceGroup.Kind
    return kinds.Name(config.instance_group[0].kind) if config.instance_group else "KIND_AUTO"
