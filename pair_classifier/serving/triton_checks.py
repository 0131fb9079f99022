"""Consistency of a generated Triton model repository, checked where no GPU backend runs.

Every ``config.pbtxt`` is parsed strictly against Triton's ``ModelConfig``; each model's
version folders hold the files its backend loads; an ONNX model's declared inputs and outputs
are the graph's own (name, data type, dims); and every tensor an ensemble step reads is one the
ensemble receives or an earlier step writes, with the same data type and dims. So the GPU
repository, which only a Triton server with the GPU backends can load, is known to be
well-formed before it reaches one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pair_classifier.serving.triton_backend as backend
import pair_classifier.serving.triton_model_config as pbtxt
from pair_classifier.serving.triton_model_config import TensorSpec, TritonConfigError

logger = logging.getLogger(__name__)

ANY_SIZE = -1
# ONNX TensorProto element types -> Triton data types, for the types a scoring graph uses.
ONNX_TO_TRITON = {1: "TYPE_FP32", 6: "TYPE_INT32", 7: "TYPE_INT64", 9: "TYPE_BOOL", 10: "TYPE_FP16"}
# The file each backend loads from a version folder.
BACKEND_FILES = {"python": "model.py", "onnxruntime": "model.onnx"}
PLATFORM_FILES = {"tensorrt_plan": "model.plan", "onnxruntime_onnx": "model.onnx"}
ENSEMBLE = "ensemble"


def _dims_match(produced: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    """Same rank, and each dim equal or any-size (-1) on either side."""
    return len(produced) == len(expected) and all(
        a == b or ANY_SIZE in (a, b) for a, b in zip(produced, expected)
    )


def _same_tensor(where: str, produced: TensorSpec, expected: TensorSpec) -> list[str]:
    problems = []
    if produced.data_type != expected.data_type:
        problems.append(
            f"{where}: data type {produced.data_type} where {expected.data_type} is expected"
        )
    if not _dims_match(produced.dims, expected.dims):
        problems.append(f"{where}: dims {list(produced.dims)} where {list(expected.dims)} expected")
    return problems


def _model_file(config: Any) -> str | None:
    if config.platform == ENSEMBLE:
        return None
    return BACKEND_FILES.get(config.backend) or PLATFORM_FILES.get(config.platform)


def _graph_tensors(graph: Path) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
    """An ONNX graph's inputs and outputs as Triton would declare them (batch dim dropped)."""
    import onnx

    model = onnx.load(str(graph), load_external_data=False)

    def specs(values: Any) -> dict[str, TensorSpec]:
        found = {}
        for value in values:
            tensor = value.type.tensor_type
            dims = tuple(dim.dim_value or ANY_SIZE for dim in tensor.shape.dim[1:])
            data_type = ONNX_TO_TRITON.get(tensor.elem_type, f"ONNX type {tensor.elem_type}")
            found[value.name] = TensorSpec(value.name, data_type, dims)
        return found

    return specs(model.graph.input), specs(model.graph.output)


def _check_onnx(model: str, config: Any, graph: Path) -> list[str]:
    """The config declares the graph's inputs (all of them) and some of its outputs."""
    graph_inputs, graph_outputs = _graph_tensors(graph)
    problems = []
    declared_inputs = pbtxt.tensor_specs(config.input)
    if set(declared_inputs) != set(graph_inputs):
        problems.append(
            f"{model}: inputs {sorted(declared_inputs)} but the graph {graph.name} takes "
            f"{sorted(graph_inputs)}"
        )
    for kind, declared, actual in (
        ("input", declared_inputs, graph_inputs),
        ("output", pbtxt.tensor_specs(config.output), graph_outputs),
    ):
        for name, spec in declared.items():
            if name not in actual:
                problems.append(
                    f"{model}: {kind} {name} is not one of the graph's {sorted(actual)}"
                )
            else:
                problems += _same_tensor(f"{model} {kind} {name}", actual[name], spec)
    return problems


def _check_files(folder: Path, config: Any) -> list[str]:
    """Each served version folder exists and holds what the backend and model read."""
    problems = []
    versions = list(config.version_policy.specific.versions)
    if not versions:
        problems.append(f"{config.name}: no version pinned (version_policy.specific)")
    settings = {key: value.string_value for key, value in config.parameters.items()}
    for version in versions:
        version_dir = folder / str(version)
        wanted = [_model_file(config), settings.get(backend.PARAM_GRAPH)]
        if backend.PARAM_MAX_LENGTH in settings or backend.PARAM_GRAPH in settings:
            wanted.append(f"{backend.TOKENIZER_FOLDER}/tokenizer.json")
        missing = [name for name in wanted if name and not (version_dir / name).exists()]
        if not version_dir.is_dir() or missing:
            problems.append(
                f"{config.name}: version folder {version_dir} lacks {missing or 'itself'}"
            )
        elif config.backend == "onnxruntime":
            problems += _check_onnx(config.name, config, version_dir / _model_file(config))
    return problems


def _check_batching(config: Any) -> list[str]:
    preferred = list(config.dynamic_batching.preferred_batch_size)
    too_big = [size for size in preferred if size > config.max_batch_size]
    if too_big:
        return [f"{config.name}: preferred batch sizes {too_big} over max_batch_size"]
    return []


def _check_ensemble(config: Any, configs: dict[str, Any]) -> list[str]:
    """Each step reads tensors the ensemble has by then, of the step model's type and dims."""
    problems = []
    available = pbtxt.tensor_specs(config.input)
    for step in config.ensemble_scheduling.step:
        model = configs.get(step.model_name)
        if model is None:
            problems.append(f"{config.name}: step model {step.model_name} is not in the repository")
            continue
        if step.model_version not in model.version_policy.specific.versions:
            problems.append(f"{config.name}: {step.model_name} has no version {step.model_version}")
        if model.max_batch_size < config.max_batch_size:
            problems.append(f"{config.name}: {step.model_name} batches fewer pairs than it")
        inputs, outputs = pbtxt.tensor_specs(model.input), pbtxt.tensor_specs(model.output)
        unfed = sorted(set(inputs) - set(step.input_map))
        if unfed:
            problems.append(f"{config.name}: step {step.model_name} gets no {unfed}")
        for own, tensor in step.input_map.items():
            where = f"{config.name}: {tensor} -> {step.model_name}.{own}"
            if own not in inputs:
                problems.append(f"{where}: no such input")
            elif tensor not in available:
                problems.append(f"{where}: no earlier step or ensemble input makes {tensor}")
            else:
                problems += _same_tensor(where, available[tensor], inputs[own])
        for own, tensor in step.output_map.items():
            if own not in outputs:
                problems.append(f"{config.name}: {step.model_name} has no output {own}")
            else:
                available[tensor] = TensorSpec(tensor, outputs[own].data_type, outputs[own].dims)
    for name, spec in pbtxt.tensor_specs(config.output).items():
        if name not in available:
            problems.append(f"{config.name}: output {name} is made by no step")
        else:
            problems += _same_tensor(f"{config.name} output {name}", available[name], spec)
    return problems


def check_repository(repository: Path) -> list[str]:
    """The names of the models in ``repository``, every one checked; a ``TritonConfigError``
    lists every problem found."""
    folders = sorted(path for path in repository.iterdir() if path.is_dir())
    configs = {folder.name: pbtxt.read_config(folder / pbtxt.CONFIG_FILE) for folder in folders}
    problems = []
    for folder in folders:
        config = configs[folder.name]
        if config.name != folder.name:
            problems.append(f"{folder}: config names the model {config.name!r}")
        problems += _check_files(folder, config) + _check_batching(config)
        if config.platform == ENSEMBLE:
            problems += _check_ensemble(config, configs)
    if problems:
        raise TritonConfigError(f"{repository}: " + "; ".join(problems))
    logger.info("%s: %d models checked: %s", repository, len(configs), ", ".join(configs))
    return sorted(configs)
