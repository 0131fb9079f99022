"""The demo page as the tests start it: `pair-classifier demo` (the CLI, as a user starts it) on
the tiny export, with a params file of its own, ready once the page answers, stopped by PID."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from helpers import composed_params
from serving.serving_helpers import CLI, Server, free_port, start_server

from pair_classifier.export.served import FP32, SERVED, SERVED_VARIANT

MODEL_NAME = "pair-classifier"
EXPORT_VERSION = 3  # the registered version the test's register record names


def demo_params(
    folder: Path, export_dir: Path, triton_port: int | None = None, **demo: object
) -> Path:
    """A params.yaml whose demo section serves the tiny export's student graph (fp32), named
    version EXPORT_VERSION by a register record beside it; ``triton_port``: where backend auto
    probes for Triton (by default triton.server.http_port)."""
    benchmark = folder / "benchmark.json"
    benchmark.write_text(json.dumps({SERVED: {SERVED_VARIANT: FP32}}), encoding="utf-8")
    register = folder / "register.json"
    register.write_text(
        json.dumps({"model_name": MODEL_NAME, "version": EXPORT_VERSION, "served_variant": FP32}),
        encoding="utf-8",
    )
    params = composed_params()
    params["demo"] |= {
        "benchmark_metrics": str(benchmark),
        "onnx_dir": str(export_dir),
        "quantized_dir": str(folder / "quantized"),
        "register_metrics": str(register),
        "port": free_port(),
    } | demo
    if triton_port is not None:
        params["triton"]["server"]["http_port"] = triton_port
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    return path


def start_demo(params_file: Path, env: dict[str, str], *options: str) -> Server:
    """`pair-classifier demo` on the params file's port, ready once its page answers."""
    port = yaml.safe_load(params_file.read_text(encoding="utf-8"))["demo"]["port"]
    return start_server(
        [str(CLI), "demo", "--params-file", str(params_file), *options],
        f"http://127.0.0.1:{port}",
        "/",
        env,
        params_file.parent / "demo.log",
    )
