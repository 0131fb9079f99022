# The serving image: scores pairs with the exported ONNX graph baked in at /opt/model (ONNX
# Runtime, tokenizers, pandas, typer and this package without its training dependencies: no
# torch). `docker run IMAGE IN OUT` runs `pair-classifier predict /opt/model/served.onnx IN OUT`.
#
#   docker build -f docker/serving.Dockerfile -t pair-classifier-serving .
#   docker run --rm -v "$PWD/examples:/data" pair-classifier-serving \
#     /data/pairs.jsonl /data/predictions.jsonl
#
# BASE_IMAGE: any image with Python 3.11 and its venv module (python:3.11-slim-bookworm, or a
# local Debian bookworm with python3-venv; scripts/build_images.sh makes one). MODEL_DIR and
# MODEL_GRAPH: the served graph (metrics/benchmark.json `served.graph`) and its folder, which
# holds model.json and tokenizer/. Details: docs/containers.md.
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9
FROM ${UV_IMAGE} AS uv

FROM ${BASE_IMAGE}
ARG MODEL_DIR=artifacts/onnx
ARG MODEL_GRAPH=student.onnx
# uv trusts the system's certificate store (a proxy's CA the build mounts in, for example).
ARG UV_NATIVE_TLS=true
ARG UV_CACHE_DIR=/root/.cache/uv
ENV UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=uv /uv /usr/local/bin/uv
COPY docker/serving-requirements.txt /tmp/serving-requirements.txt
RUN --mount=type=cache,target=/root/.cache/uv \
    uv venv --python python3 /opt/venv \
    && uv pip install --compile-bytecode -r /tmp/serving-requirements.txt
COPY pyproject.toml README.md /tmp/src/
COPY pair_classifier /tmp/src/pair_classifier
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --compile-bytecode --no-deps /tmp/src && rm -rf /tmp/src
COPY ${MODEL_DIR}/model.json /opt/model/model.json
COPY ${MODEL_DIR}/tokenizer /opt/model/tokenizer
COPY ${MODEL_DIR}/${MODEL_GRAPH} /opt/model/served.onnx
RUN useradd --system --no-create-home scorer
USER scorer
WORKDIR /data
ENTRYPOINT ["pair-classifier", "predict", "/opt/model/served.onnx"]
CMD ["--help"]
