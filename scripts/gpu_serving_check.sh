#!/usr/bin/env bash
# GPU serving check (docs/serving.md, "Triton on a GPU"): serve artifacts/triton/gpu with a
# Triton server that has the GPU backends (onnxruntime with CUDA, TensorRT, Python), measure the
# ensembles' throughput and their parity with the CPU model, write metrics/triton_gpu.json.
# Without a CUDA device or without such a server it writes the reason there instead (a skip
# record), so the file always says what was, or was not, measured.
#
# Where it runs: NVIDIA's Triton image (nvcr.io/nvidia/tritonserver:<yy.mm>-py3, Triton in
# /opt/tritonserver) with this project mounted, after
#   pip install tritonclient[http] tokenizers pandas pyarrow onnxruntime
# (the Python backend's tokenizer imports pair_classifier from this folder, via PYTHONPATH).
# Elsewhere: TRITON_HOME=<a full Triton install>.  Usage: scripts/gpu_serving_check.sh [args of
# scripts/gpu_serving_check.py, e.g. --duration-s 20]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ -x .venv/bin/python ] && [ -z "${TRITON_HOME:-}" ] && [ ! -d /opt/tritonserver ]; then
  PYTHON=.venv/bin/python # no Triton here: the project's environment writes the skip record
fi
exec env PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" scripts/gpu_serving_check.py "$@"
