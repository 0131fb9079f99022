"""What this CPU's matrix products reach: PyTorch fp32, ONNX Runtime fp32 and its dynamic int8.

Every variant's speed is bounded by its matrix products (about two thirds of the int8 student
graph's time here), so the benchmark records these rates beside its ratios: without int8
dot-product instructions (VNNI) ONNX Runtime's int8 products run less than twice as fast as its
fp32 ones, and a speed-up target set on a VNNI machine needs a smaller model on this one. The
int8 product is quantised exactly as the quantize stage does it (``quantize_dynamic_int8``).
The three runtimes take turns, pass after pass, so load on a shared machine falls on all three;
each rate is the median of the passes, with their spread.
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

# Rows x inputs x outputs: a MiniLM block's first FFN product over one side of a batch of 32
# pairs (32 texts x 64 token positions).
RATE_SHAPE = (2048, 384, 1536)
MIN_SECONDS = 1.0  # each pass of each runtime is timed over at least this long
WARMUP_RUNS = 3
WEIGHT_SCALE = 0.05  # about the spread of a trained projection's weights
GIGA = 1e9
RATE_DIGITS = 1
SPREAD_DIGITS = 3
MATMUL_NODE = "matmul"
MATMUL_INPUT = "x"
MATMUL_OUTPUT = "y"


def multiply_accumulates_per_second(
    run: Callable[[], Any], macs: int, min_seconds: float = MIN_SECONDS
) -> float:
    """Rate of ``run`` (one product of ``macs`` multiply-accumulates) over at least
    ``min_seconds``, in GMAC/s."""
    runs, started = 0, time.perf_counter()
    while runs == 0 or time.perf_counter() - started < min_seconds:
        run()
        runs += 1
    return macs * runs / (time.perf_counter() - started) / GIGA


def save_matmul_graph(weights: np.ndarray, path: Path, opset: int) -> None:
    """One MatMul of a float input by constant ``weights``, batch axis dynamic."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inputs, outputs = weights.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", [MATMUL_INPUT, "weights"], [MATMUL_OUTPUT], name=MATMUL_NODE)],
        "matmul_rates",
        [helper.make_tensor_value_info(MATMUL_INPUT, TensorProto.FLOAT, ["rows", inputs])],
        [helper.make_tensor_value_info(MATMUL_OUTPUT, TensorProto.FLOAT, ["rows", outputs])],
        [numpy_helper.from_array(weights, "weights")],
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets)
    )
    onnx.save(model, str(path))


def median_rates(
    products: dict[str, Callable[[], Any]], macs: int, passes: int, min_seconds: float
) -> dict[str, dict[str, float]]:
    """Each product's median rate (GMAC/s) over ``passes`` turns, and the passes' spread
    ((fastest - slowest) / median); every product takes its turn in each pass."""
    for run in products.values():
        for _ in range(WARMUP_RUNS):
            run()
    rates: dict[str, list[float]] = {name: [] for name in products}
    for _ in range(passes):
        for name, run in products.items():
            rates[name].append(multiply_accumulates_per_second(run, macs, min_seconds))
    medians = {name: float(np.median(values)) for name, values in rates.items()}
    return {
        "gmac_per_s": {name: round(median, RATE_DIGITS) for name, median in medians.items()},
        "spread": {
            name: round((max(values) - min(values)) / medians[name], SPREAD_DIGITS)
            for name, values in rates.items()
        },
    }


def matmul_rates(
    config: QuantizeConfig,
    opset: int,
    threads: int,
    seed: int,
    passes: int,
    shape: tuple[int, int, int] = RATE_SHAPE,
    min_seconds: float = MIN_SECONDS,
) -> dict[str, dict[str, float]]:
    """Rates of one ``shape`` product in PyTorch fp32, ONNX Runtime fp32 and dynamic int8.

    ``threads`` 0 means one per logical CPU, for both runtimes alike; run it in a fresh process
    (it sets PyTorch's threads)."""
    import torch

    threads = threads or os.cpu_count() or 1
    rows, inputs, outputs = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, inputs), dtype=np.float32)
    weights = rng.standard_normal((inputs, outputs), dtype=np.float32) * WEIGHT_SCALE
    torch.set_num_threads(threads)
    torch_x, torch_weights = torch.from_numpy(x), torch.from_numpy(weights)
    with tempfile.TemporaryDirectory() as workdir:
        fp32, int8 = Path(workdir) / "fp32.onnx", Path(workdir) / "int8.onnx"
        save_matmul_graph(weights, fp32, opset)
        quantize_dynamic_int8(fp32, int8, config, nodes=[MATMUL_NODE])
        fp32_session, int8_session = session(fp32, threads), session(int8, threads)
    products = {
        "pytorch_fp32": lambda: torch_x @ torch_weights,
        "onnx_fp32": lambda: fp32_session.run(None, {MATMUL_INPUT: x}),
        "onnx_int8_dynamic": lambda: int8_session.run(None, {MATMUL_INPUT: x}),
    }
    return median_rates(products, rows * inputs * outputs, passes, min_seconds)
