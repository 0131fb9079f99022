"""GPU serving check: Triton's GPU backends on the generated GPU repository (artifacts/triton/gpu).

Run through scripts/gpu_serving_check.sh. It serves every ensemble of the repository (the
fp32 graph on the onnxruntime backend with CUDA, and the TensorRT plan when the trt stage built
one) with a Triton server that has those backends, sends MRPC test pairs from concurrent
clients for a fixed time, compares the answers with the CPU model's, and writes
metrics/triton_gpu.json. Without a CUDA device, such a server or the client's modules, it
writes why not (``{"skipped": reason}``) and exits 0: a skip is a result, not a failure.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

logger = logging.getLogger("gpu_serving_check")

OUTPUT = Path("metrics/triton_gpu.json")
REPOSITORY = Path("artifacts/triton/gpu")
MANIFEST = Path("artifacts/triton/repository.json")
CPU_GRAPH = Path("artifacts/onnx/student.onnx")  # what the onnxruntime ensemble serves
TEST_PAIRS = Path("artifacts/prepared/test.parquet")
DEFAULT_TRITON_HOME = Path("/opt/tritonserver")  # where NVIDIA's image installs Triton
NEEDED_BACKENDS = ("onnxruntime", "python")
CLIENT_MODULES = ("tritonclient.http", "tokenizers", "pandas", "pyarrow", "onnxruntime", "typer")
PIP_PACKAGES = ("tritonclient[http]", "tokenizers", "pandas", "pyarrow", "onnxruntime", "typer")
START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0
POLL_S = 0.5
PERCENTILES = (50, 95, 99)
MS = 1000.0

app = typer.Typer(add_completion=False)


def skip_reason(triton_home: Path) -> str | None:
    """Why the check cannot run here, or None."""
    smi = shutil.which("nvidia-smi")
    listed = subprocess.run([smi, "-L"], capture_output=True, text=True).stdout if smi else ""
    if "GPU" not in listed:
        return "no CUDA device (nvidia-smi lists no GPU)"
    missing = [b for b in NEEDED_BACKENDS if not (triton_home / "backends" / b).is_dir()]
    if not (triton_home / "bin" / "tritonserver").is_file() or missing:
        return (
            f"no Triton server with the GPU backends at {triton_home} (missing backends "
            f"{missing or 'none'}, or bin/tritonserver): run in nvcr.io/nvidia/tritonserver:"
            "<yy.mm>-py3 or set TRITON_HOME"
        )
    absent = [
        name for name in CLIENT_MODULES if importlib.util.find_spec(name.split(".")[0]) is None
    ]
    if absent:
        return f"Python modules {absent} missing: pip install {' '.join(PIP_PACKAGES)}"
    return None


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_server(triton_home: Path, http_port: int, metrics_port: int) -> subprocess.Popen:
    argv = [
        str(triton_home / "bin" / "tritonserver"),
        f"--model-repository={REPOSITORY.resolve()}",
        f"--backend-directory={triton_home / 'backends'}",
        "--http-address=127.0.0.1",
        f"--http-port={http_port}",
        "--allow-grpc=false",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={metrics_port}",
        "--strict-readiness=true",
        "--disable-auto-complete-config",
    ]
    env = dict(os.environ) | {
        "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])
    }
    logger.info("starting %s", " ".join(argv))
    process = subprocess.Popen(argv, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _ready(url):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_server(process)
            raise RuntimeError(f"tritonserver did not become ready (exit code {process.poll()})")
        time.sleep(POLL_S)
    return process


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _request(texts_a: list[str], texts_b: list[str]) -> list:
    import tritonclient.http as httpclient

    inputs = []
    for name, texts in (("TEXT_A", texts_a), ("TEXT_B", texts_b)):
        values = np.array([t.encode() for t in texts], dtype=object).reshape(-1, 1)
        tensor = httpclient.InferInput(name, list(values.shape), "BYTES")
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    return inputs


def measure(
    url: str,
    model: str,
    pairs: list[tuple[str, str]],
    clients: int,
    duration_s: float,
    per_request: int,
) -> dict:
    """Throughput and latency of ``clients`` closed-loop clients for ``duration_s``."""
    import tritonclient.http as httpclient

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + duration_s

    def client(offset: int) -> None:
        connection = httpclient.InferenceServerClient(url.removeprefix("http://"))
        position = offset
        while time.monotonic() < stop_at:
            chunk = [pairs[(position + i) % len(pairs)] for i in range(per_request)]
            position += per_request * clients
            started = time.perf_counter()
            try:
                connection.infer(model, _request(*map(list, zip(*chunk))))
                with lock:
                    latencies.append(time.perf_counter() - started)
            except Exception:  # noqa: BLE001 - every failure counts as an error of the run
                with lock:
                    errors[0] += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(i * per_request,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    figures = np.percentile(latencies, PERCENTILES) * MS if latencies else [float("nan")] * 3
    return {
        "clients": clients,
        "pairs_per_request": per_request,
        "requests": len(latencies),
        "errors": errors[0],
        "pairs_per_s": round(len(latencies) * per_request / elapsed, 1),
        **{f"p{p}_ms": round(float(v), 2) for p, v in zip(PERCENTILES, figures)},
    }


def parity(url: str, model: str, pairs: list[tuple[str, str]], batch: int) -> dict:
    """The ensemble's probabilities against the CPU model's (ONNX Runtime, fp32 graph)."""
    import pandas as pd
    import tritonclient.http as httpclient

    from pair_classifier.export.onnx_predictor import OnnxPairPredictor

    frame = pd.DataFrame(pairs, columns=["text_a", "text_b"])
    expected = OnnxPairPredictor(CPU_GRAPH, batch).predict_proba(frame)
    connection = httpclient.InferenceServerClient(url.removeprefix("http://"))
    served = np.concatenate(
        [
            connection.infer(model, _request(*map(list, zip(*pairs[i : i + batch])))).as_numpy(
                "PROBABILITIES"
            )
            for i in range(0, len(pairs), batch)
        ]
    )
    connection.close()
    return {
        "pairs": len(pairs),
        "max_abs_probability_diff": float(np.abs(served - expected).max()),
        "prediction_agreement": float((served.argmax(1) == expected.argmax(1)).mean()),
    }


def _write(record: dict) -> None:
    OUTPUT.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %s", OUTPUT)


@app.command()
def main(
    duration_s: Annotated[float, typer.Option(min=1, help="Seconds per measured point.")] = 20.0,
    clients: Annotated[list[int], typer.Option(help="Concurrent clients per point.")] = [
        1,
        16,
        64,
    ],  # noqa: B006
    pairs_per_request: Annotated[int, typer.Option(min=1)] = 1,
    parity_pairs: Annotated[int, typer.Option(min=1)] = 256,
    parity_batch: Annotated[int, typer.Option(min=1)] = 32,
    http_port: Annotated[int, typer.Option()] = 8100,
    metrics_port: Annotated[int, typer.Option()] = 8102,
) -> None:
    """Measure the GPU ensembles, or record why they cannot be measured here."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    triton_home = Path(os.environ.get("TRITON_HOME", DEFAULT_TRITON_HOME))
    reason = skip_reason(triton_home)
    if reason is not None:
        logger.info("skipped: %s", reason)
        _write({"skipped": reason})
        return
    import pandas as pd

    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    test = pd.read_parquet(TEST_PAIRS)
    pairs = list(zip(test["text_a"], test["text_b"]))
    gpu = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip()
    record: dict = {"gpu": gpu, "registered_version": manifest["version"], "ensembles": {}}
    process = start_server(triton_home, http_port, metrics_port)
    url = f"http://127.0.0.1:{http_port}"
    try:
        for ensemble in manifest["gpu"]["ensembles"]:
            measure(url, ensemble, pairs, 1, 2.0, pairs_per_request)  # warm-up, not recorded
            record["ensembles"][ensemble] = {
                "parity": parity(url, ensemble, pairs[:parity_pairs], parity_batch),
                "points": [
                    measure(url, ensemble, pairs, c, duration_s, pairs_per_request) for c in clients
                ],
            }
            logger.info("%s: %s", ensemble, record["ensembles"][ensemble])
    finally:
        stop_server(process)
    _write(record)


if __name__ == "__main__":
    app()
