"""TensorRT engines built from the exported ONNX graphs (GPU machines only).

fp16 engines come from the fp32 graph with the FP16 builder flag; int8 engines come from the
symmetric static QDQ graph (explicit quantisation: TensorRT takes the calibrated scales from
the Q/DQ nodes, so no TensorRT calibrator is involved). One optimisation profile covers the
configured batch and sequence ranges. ``tensorrt`` is imported only when CUDA is present; it
comes with the ``gpu`` extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pair_classifier.config import TrtConfig
from pair_classifier.constants import MEBIBYTE
from pair_classifier.errors import PairClassifierError
from pair_classifier.export.interface import SCORING_INPUTS, SCORING_OUTPUTS

if TYPE_CHECKING:
    import pandas as pd

ENGINE_SUFFIX = ".plan"
SKIP_NO_CUDA = "no CUDA device"
SKIP_NO_TENSORRT = "tensorrt is not installed (uv sync --extra gpu)"
SKIP_RECORD = "skipped.json"


class EngineBuildError(PairClassifierError):
    """TensorRT could not parse or build the graph."""


def skip_reason() -> str | None:
    """Why TensorRT cannot run here, or None when it can."""
    import torch

    if not torch.cuda.is_available():
        return SKIP_NO_CUDA
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return SKIP_NO_TENSORRT
    return None


def engine_name(model: str, precision: str) -> str:
    """``<model>.<precision>.plan``: engine files are named here and read back by
    ``engine_precision``."""
    return f"{model}.{precision}{ENGINE_SUFFIX}"


def engine_precision(engine: Path) -> str:
    """The precision an engine file was built for, from its name."""
    return engine.name.removesuffix(ENGINE_SUFFIX).rsplit(".", 1)[-1]


def profile_shapes(config: TrtConfig) -> dict[str, tuple[tuple[int, int], ...]]:
    """(min, opt, max) shape of every input for the optimisation profile."""
    shapes = (
        (config.min_batch, config.min_sequence),
        (config.opt_batch, config.opt_sequence),
        (config.max_batch, config.max_sequence),
    )
    for axis, (low, mid, high) in zip(("batch", "sequence"), zip(*shapes)):
        if not low <= mid <= high:
            raise EngineBuildError(
                f"trt.min_{axis} <= trt.opt_{axis} <= trt.max_{axis} needed, "
                f"got {low}, {mid}, {high}"
            )
    return {name: shapes for name in SCORING_INPUTS}


def build_engine(graph: Path, engine: Path, precision: str, config: TrtConfig) -> None:
    """Parse ``graph`` and write a serialised engine for ``precision`` (fp16 or int8)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(graph)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"{graph}: TensorRT cannot parse it: {errors}")
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(
        trt.MemoryPoolType.WORKSPACE, config.workspace_mib * MEBIBYTE
    )
    builder_config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        builder_config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    for name, (low, mid, high) in profile_shapes(config).items():
        profile.set_shape(name, low, mid, high)
    builder_config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise EngineBuildError(f"{graph}: TensorRT failed to build a {precision} engine")
    engine.write_bytes(bytes(serialized))


def check_profile_covers(config: TrtConfig, max_length: int, batch_size: int) -> None:
    """The engines' optimisation profile must admit every input the pipeline gives them: texts
    of up to the model's ``max_length`` tokens in batches of ``batch_size``. Checked before
    anything is built, not when the first long batch is refused."""
    if max_length > config.max_sequence:
        raise EngineBuildError(
            f"trt.max_sequence {config.max_sequence} is below the model's max_length "
            f"{max_length}: raise trt.max_sequence"
        )
    if batch_size > config.max_batch:
        raise EngineBuildError(
            f"trt.max_batch {config.max_batch} is below export.parity_batch_size {batch_size}, "
            "the batches the engines are checked with: raise trt.max_batch"
        )


class EngineRunner:
    """Runs a serialised engine on numpy inputs, with torch CUDA tensors as buffers."""

    def __init__(self, engine: Path) -> None:
        import tensorrt as trt
        import torch

        self.torch = torch
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(engine.read_bytes())
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()

    def __call__(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        torch = self.torch
        keep: list[Any] = []
        for name in SCORING_INPUTS:
            tensor = torch.from_numpy(inputs[name]).cuda()
            keep.append(tensor)
            if not self.context.set_input_shape(name, tuple(tensor.shape)):
                raise EngineBuildError(
                    f"{name}: shape {tuple(tensor.shape)} is outside the engine's optimisation "
                    "profile (trt.min_/max_batch and trt.min_/max_sequence when it was built)"
                )
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in SCORING_OUTPUTS:
            shape = tuple(self.context.get_tensor_shape(name))
            outputs[name] = torch.empty(shape, dtype=torch.float32, device="cuda")
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        # TensorRT reports a failed launch by its return value; the outputs would be garbage.
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise EngineBuildError("TensorRT could not run the engine (see its log above)")
        self.stream.synchronize()
        return tuple(outputs[name].cpu().numpy() for name in SCORING_OUTPUTS)


def build_trt_bundle(
    onnx_dir: Path,
    quantized_dir: Path,
    out_dir: Path,
    model: str,
    pairs: pd.DataFrame,
    config: TrtConfig,
    batch_size: int,
    threads: int,
) -> dict[str, Any]:
    """Engines for every configured precision, each checked against the fp32 ONNX graph.

    Without CUDA (or without TensorRT) this writes a skip record instead and returns it, so the
    pipeline completes on a laptop.
    """
    from pair_classifier.export.interface import (
        MODEL_CARD,
        TOKENIZER_SUBDIR,
        read_model_card,
        variant_file,
    )
    from pair_classifier.export.quantization import STATIC_SYMMETRIC
    from pair_classifier.export.runtime import check_parity, onnx_runner, parity, run_batches
    from pair_classifier.export.tokenization import PairTokenizer
    from pair_classifier.io_utils import write_json

    reason = skip_reason()
    if reason is not None:
        record = {"skipped": reason}
        write_json(out_dir / SKIP_RECORD, record)
        return record
    fp32 = onnx_dir / variant_file(model)
    card = read_model_card(fp32)
    check_profile_covers(config, card["max_length"], batch_size)
    tokenize = PairTokenizer.load(onnx_dir / TOKENIZER_SUBDIR, card["max_length"])
    reference = run_batches(onnx_runner(fp32, threads), tokenize, pairs, batch_size)
    sources = {"fp16": fp32, "int8": quantized_dir / variant_file(model, STATIC_SYMMETRIC)}
    metrics: dict[str, Any] = {}
    for precision in config.precisions:
        engine = out_dir / engine_name(model, precision)
        build_engine(sources[precision], engine, precision, config)
        report = parity(reference, run_batches(EngineRunner(engine), tokenize, pairs, batch_size))
        check_parity(
            report,
            f"TensorRT {precision}",
            config.max_abs_score_diff,
            config.min_prediction_agreement,
        )
        metrics[precision] = report.as_dict() | {
            "megabytes": round(engine.stat().st_size / MEBIBYTE, 2)
        }
    write_json(
        out_dir / MODEL_CARD,
        card | {"engines": sorted(p.name for p in out_dir.glob(f"*{ENGINE_SUFFIX}"))},
    )
    return metrics
