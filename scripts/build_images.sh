#!/usr/bin/env bash
# Builds the serving and training images with podman and smoke-tests them: the serving image
# scores examples/pairs.jsonl and its output must be byte-identical to `pair-classifier predict`
# on the same graph here; the training image must import torch, ONNX Runtime and the package.
#
#   scripts/build_images.sh            # both images (training with the GPU extra)
#   TRAINING_EXTRA=cpu scripts/build_images.sh
#   BUILD_IMAGES=serving scripts/build_images.sh
#
# Settings (environment):
#   BASE_IMAGE      base of both images (default: localhost/base:bookworm, made here with
#                   debootstrap when missing: no registry needs to be reachable)
#   TRAINING_BASE   base of the training image (default: BASE_IMAGE)
#   TRAINING_EXTRA  gpu (default) or cpu
#   BUILD_IMAGES    "serving training" (default), or one of them
#   IMAGE_PREFIX    tag prefix (default: localhost/pair-classifier)
#   DEBIAN_MIRROR   mirror for debootstrap (default: the first one apt is configured with)
# Needs root (or sudo) to install podman, debootstrap and runc when they are missing.
# Details and the ordinary `docker build` / `docker run`: docs/containers.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export DVC_NO_ANALYTICS=1

BASE_IMAGE=${BASE_IMAGE:-localhost/base:bookworm}
TRAINING_BASE=${TRAINING_BASE:-$BASE_IMAGE}
TRAINING_EXTRA=${TRAINING_EXTRA:-gpu}
BUILD_IMAGES=${BUILD_IMAGES:-serving training}
IMAGE_PREFIX=${IMAGE_PREFIX:-localhost/pair-classifier}
SERVING_IMAGE=$IMAGE_PREFIX-serving
TRAINING_IMAGE=$IMAGE_PREFIX-training
EXAMPLES=examples/pairs.jsonl
BENCHMARK_METRICS=metrics/benchmark.json
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
# Open files inside a container: podman's default is above this machine's hard limit.
NOFILE_WANTED=20000
NPROC_WANTED=32768

log() { echo "[build_images $(date -u +%H:%M:%S) +${SECONDS}s] $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_tools() {
  local missing=()
  for tool in podman debootstrap runc; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman debootstrap runc
  fi
}

debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(grep -h -m1 -E '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' || true)
  [ -n "$uri" ] || uri=$(grep -h -m1 -E '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# A Debian bookworm base (Python 3.11 and its venv module) when no registry can be reached.
ensure_base() {
  if podman image exists "$BASE_IMAGE"; then return; fi
  if [ "$BASE_IMAGE" != localhost/base:bookworm ]; then
    podman pull "$BASE_IMAGE"
    return
  fi
  local rootfs
  rootfs=$(mktemp -d /tmp/pairclf-base-XXXXXX)
  log "making $BASE_IMAGE with debootstrap from $(debian_mirror)"
  as_root debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$(debian_mirror)" >/dev/null
  as_root chroot "$rootfs" sh -c 'apt-get clean && rm -rf /var/lib/apt/lists/*'
  tar -C "$rootfs" -c . | podman import - "$BASE_IMAGE" >/dev/null
  as_root rm -rf "$rootfs"
}

# The uv stage's image (ghcr.io/astral-sh/uv holds /uv and /uvx), made from this machine's uv.
ensure_uv_image() {
  local version uv_bin dir
  version=$(uv --version | awk '{print $2}')
  UV_IMAGE=localhost/uv:$version
  if podman image exists "$UV_IMAGE"; then return; fi
  uv_bin=$(command -v uv)
  if ! head -c4 "$uv_bin" | grep -q ELF; then uv_bin=$(pyenv which uv); fi  # a pyenv shim
  dir=$(mktemp -d)
  cp "$uv_bin" "$dir/uv" && cp "$(dirname "$uv_bin")/uvx" "$dir/uvx"
  printf 'FROM scratch\nCOPY uv uvx /\n' >"$dir/Containerfile"
  podman build --isolation chroot -q -t "$UV_IMAGE" "$dir" >/dev/null
  rm -rf "$dir"
}

build() {  # build DOCKERFILE TAG CONTEXT [--build-arg ...]
  local dockerfile=$1 tag=$2 context=$3
  shift 3
  local args=(--isolation chroot --network host --build-arg "UV_IMAGE=$UV_IMAGE")
  # This machine reaches PyPI through a proxy whose CA is in the host's bundle: lent to the
  # build's RUN steps, not copied into the image.
  [ -f "$HOST_CA_BUNDLE" ] && args+=(--volume "$HOST_CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")
  # The host's uv cache, so that wheels already downloaded here are not fetched again.
  local cache=${UV_CACHE_DIR:-$HOME/.cache/uv}
  [ -d "$cache" ] && args+=(--volume "$cache:/host-uv-cache" --build-arg UV_CACHE_DIR=/host-uv-cache)
  log "building $tag"
  podman build "${args[@]}" "$@" -f "$context/$dockerfile" -t "$tag" "$context"
}

run_container() {
  local nofile nproc
  nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] || [ "$nofile" -gt $NOFILE_WANTED ] && nofile=$NOFILE_WANTED
  nproc=$(ulimit -Hu); [ "$nproc" = unlimited ] || [ "$nproc" -gt $NPROC_WANTED ] && nproc=$NPROC_WANTED
  podman run --rm --runtime runc --network host \
    --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc" "$@"
}

# The project's files as git lists them (tracked and not ignored): code, configs, docs.
stage_tree() {
  git ls-files -co --exclude-standard | while IFS= read -r name; do
    if [ -f "$name" ]; then printf '%s\n' "$name"; fi
  done | tar -C "$ROOT" -cf - -T - | tar -C "$1" -xf -
}

served_graph() {
  python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['served']['graph'])" \
    "$BENCHMARK_METRICS"
}

build_serving() {
  local graph context out
  graph=$(served_graph)
  [ -f "$graph" ] || { echo "error: $graph (served.graph of $BENCHMARK_METRICS) not found; run dvc repro or dvc pull" >&2; exit 1; }
  context=$WORK/serving
  mkdir -p "$context/$(dirname "$graph")"
  stage_tree "$context"
  cp -r "$(dirname "$graph")/model.json" "$(dirname "$graph")/tokenizer" "$graph" \
    "$context/$(dirname "$graph")/"
  build docker/serving.Dockerfile "$SERVING_IMAGE" "$context" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --build-arg "MODEL_DIR=$(dirname "$graph")" --build-arg "MODEL_GRAPH=$(basename "$graph")"
  out=$WORK/out
  mkdir -p "$out"
  log "scoring $EXAMPLES on the host and in $SERVING_IMAGE with $graph"
  uv run --frozen --extra cpu pair-classifier predict "$graph" "$EXAMPLES" "$out/host.jsonl"
  run_container --user "$(id -u):$(id -g)" -v "$ROOT/examples:/examples:ro" -v "$out:/out" \
    "$SERVING_IMAGE" "/examples/$(basename "$EXAMPLES")" /out/container.jsonl
  if ! cmp "$out/host.jsonl" "$out/container.jsonl"; then
    diff "$out/host.jsonl" "$out/container.jsonl" >&2 || true
    echo "error: the serving image's predictions differ from pair-classifier predict's" >&2
    exit 1
  fi
  if run_container --entrypoint python "$SERVING_IMAGE" -c "import torch" 2>/dev/null; then
    echo "error: torch is importable in $SERVING_IMAGE; the serving image must not carry it" >&2
    exit 1
  fi
  log "serving image OK: $(wc -l <"$out/container.jsonl") predictions identical to the host's," \
    "no torch; size $(podman image inspect --format '{{.Size}}' "$SERVING_IMAGE") bytes"
}

build_training() {
  local context=$WORK/training
  mkdir -p "$context"
  stage_tree "$context"
  build docker/training.Dockerfile "$TRAINING_IMAGE" "$context" \
    --build-arg "BASE_IMAGE=$TRAINING_BASE" --build-arg "EXTRA=$TRAINING_EXTRA"
  log "checking $TRAINING_IMAGE"
  run_container "$TRAINING_IMAGE" python -c "
import onnxruntime, torch, pair_classifier.training
print('torch', torch.__version__, 'CUDA', torch.version.cuda,
      'onnxruntime providers', onnxruntime.get_available_providers())"
  run_container "$TRAINING_IMAGE" pair-classifier --help >/dev/null
  run_container "$TRAINING_IMAGE" dvc --version >/dev/null
  log "training image OK (extra $TRAINING_EXTRA); size" \
    "$(podman image inspect --format '{{.Size}}' "$TRAINING_IMAGE") bytes"
}

main() {
  install_tools
  WORK=$(mktemp -d /tmp/pairclf-images-XXXXXX)
  trap 'rm -rf "$WORK"' EXIT
  ensure_base
  [ "$TRAINING_BASE" = "$BASE_IMAGE" ] || [[ "$BUILD_IMAGES" != *training* ]] || podman image exists "$TRAINING_BASE" || podman pull "$TRAINING_BASE"
  ensure_uv_image
  log "bases ready ($BASE_IMAGE, $UV_IMAGE)"
  [[ "$BUILD_IMAGES" != *serving* ]] || build_serving
  [[ "$BUILD_IMAGES" != *training* ]] || build_training
  log "done in ${SECONDS}s"
}

main "$@"
