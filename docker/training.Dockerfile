# The training image: the project's locked environment with the GPU extra (CUDA torch,
# onnxruntime-gpu, TensorRT) in /opt/venv and the code at /app, installed editable; mount a
# clone over /app to run its pipeline (DVC needs the clone's .git):
#
#   docker build -f docker/training.Dockerfile -t pair-classifier-training .
#   docker run --rm --gpus all -v "$PWD:/app" pair-classifier-training dvc exp run -S train.lr=5e-5
#
# BASE_IMAGE: any Debian/Ubuntu image; CUDA's libraries come with the wheels, the host's driver
# through the NVIDIA container toolkit. Without Python 3.11 in the base, uv installs one.
# EXTRA=cpu builds the same environment with CPU ONNX Runtime. Details: docs/containers.md.
ARG BASE_IMAGE=nvidia/cuda:13.0.1-base-ubuntu24.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9
FROM ${UV_IMAGE} AS uv

FROM ${BASE_IMAGE}
ARG EXTRA=gpu
ARG UV_NATIVE_TLS=true
ARG UV_CACHE_DIR=/root/.cache/uv
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON=3.11 \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DVC_NO_ANALYTICS=1
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=uv /uv /uvx /usr/local/bin/
WORKDIR /app
# The dependencies first (their layer is reused while only the code changes), then the code.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra ${EXTRA} --no-install-project
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra ${EXTRA}
CMD ["pair-classifier", "--help"]
