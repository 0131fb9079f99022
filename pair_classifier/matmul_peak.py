"""What this CPU's matrix products reach: PyTorch fp32, ONNX Runtime fp32 and its dynamic int8.

Every variant's speed is bounded by its matrix products (about two thirds of the int8 student
graph's time here), so the benchmark records these rates beside its ratios: without int8
dot-product instructions (VNNI) ONNX Runtime's int8 products run less than twice as fast as its
fp32 ones, and a speed-up target set on a VNNI machine needs a smaller model on this one. The
int8 product is quantised exactly as the quantize stage does it (``quantize_dynamic_int8``).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pair_classifier.config import QuantizeConfig
from pair_classifier.export.quantization import quantize_dynamic_int8
from pair_classifier.export.runtime import session

# Rows x inputs x outputs: a MiniLM block's first FFN product over a batch of 32 pairs' tokens.
PEAK_SHAPE = (2048, 384, 1536)
MIN_SECONDS = 1.0  # each rate is timed over at least this long
WARMUP_RUNS = 3
WEIGHT_SCALE = 0.05  # about the spread of a trained projection's weights
GIGA = 1e9
RATE_DIGITS = 1
MATMUL_NODE = "matmul"


def multiply_accumulates_per_second(run: Callable[[], Any], macs: int) -> float:
    """Rate of ``run`` (one product of ``macs`` multiply-accumulates), in GMAC/s."""
    for _ in range(WARMUP_RUNS):
        run()
    runs, started = 0, time.perf_counter()
    while runs == 0 or time.perf_counter() - started < MIN_SECONDS:
        run()
        runs += 1
    return round(macs * runs / (time.perf_counter() - started) / GIGA, RATE_DIGITS)


def save_matmul_graph(weights: np.ndarray, path: Path, opset: int) -> None:
    """One MatMul of a float input by constant ``weights``, batch axis dynamic."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inputs, outputs = weights.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "weights"], ["y"], name=MATMUL_NODE)],
        "matmul_peak",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", inputs])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", outputs])],
        [numpy_helper.from_array(weights, "weights")],
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets)
    )
    onnx.save(model, str(path))


def matmul_peaks(
    config: QuantizeConfig,
    opset: int,
    threads: int,
    seed: int,
    shape: tuple[int, int, int] = PEAK_SHAPE,
) -> dict[str, float]:
    """GMAC/s of one ``shape`` product in PyTorch fp32, ONNX Runtime fp32 and dynamic int8.

    ``threads`` 0 means every core; run it in a fresh process (it sets PyTorch's threads)."""
    import torch

    rows, inputs, outputs = shape
    macs = rows * inputs * outputs
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, inputs), dtype=np.float32)
    weights = rng.standard_normal((inputs, outputs), dtype=np.float32) * WEIGHT_SCALE
    torch.set_num_threads(threads or os.cpu_count() or 1)
    torch_x, torch_weights = torch.from_numpy(x), torch.from_numpy(weights)
    rates = {"pytorch_fp32": multiply_accumulates_per_second(lambda: torch_x @ torch_weights, macs)}
    with tempfile.TemporaryDirectory() as workdir:
        fp32, int8 = Path(workdir) / "fp32.onnx", Path(workdir) / "int8.onnx"
        save_matmul_graph(weights, fp32, opset)
        quantize_dynamic_int8(fp32, int8, config, nodes=[MATMUL_NODE])
        for name, graph in (("onnx_fp32", fp32), ("onnx_int8_dynamic", int8)):
            product = session(graph, threads)
            rates[name] = multiply_accumulates_per_second(lambda: product.run(None, {"x": x}), macs)
    return rates
