#!/usr/bin/env bash
# Prepares a cloud runtime (Colab, Kaggle, any fresh Linux machine with Python 3.11 or uv) to
# run this project's experiments: clone, uv, the locked environment, the DVC remote, `dvc pull`.
# notebooks/cloud_gpu.ipynb calls it; docs/cloud.md says what each secret is for.
#
#   REPO_URL=https://github.com/<team>/pair-classifier.git scripts/cloud_setup.sh /content/pair-classifier
#
# Credentials come from the environment only (the notebook copies them there from the
# runtime's secret store); nothing secret is written to disk:
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   the DVC remote's S3 keys
#   DVC_REMOTE_URL, DVC_REMOTE_ENDPOINT_URL    where the remote is (S3 URL, S3 endpoint such as
#                                              MinIO's), written to .dvc/config.local
#   GIT_TOKEN                                  push access to REPO_URL (`dvc exp push`), read
#                                              by a credential helper at push time
# Settings: REPO_URL and REPO_REF (what to clone when the folder holds no clone), EXTRA (gpu,
# default, or cpu), DVC_REMOTE (team), PULL (1: `dvc pull`; 0: skip), PULL_TARGETS (what
# `dvc pull` fetches; default everything dvc.lock and data.dvc name).
set -euo pipefail

USER_ERROR=2
REPO_DIR=${1:-${REPO_DIR:-$PWD}}
EXTRA=${EXTRA:-gpu}
DVC_REMOTE=${DVC_REMOTE:-team}
PULL=${PULL:-1}
GIT_NAME_DEFAULT="cloud runtime"
GIT_EMAIL_DEFAULT="cloud-runtime@localhost"

log() { echo "[cloud_setup $(date -u +%H:%M:%S) +${SECONDS}s] $*"; }
fail() { echo "error: $*" >&2; exit "$USER_ERROR"; }

case "$EXTRA" in gpu | cpu) ;; *) fail "EXTRA=$EXTRA: expected gpu or cpu" ;; esac

if [ ! -d "$REPO_DIR/.git" ]; then
  [ -n "${REPO_URL:-}" ] || fail "$REPO_DIR is not a git clone and REPO_URL is unset"
  log "cloning $REPO_URL${REPO_REF:+ ($REPO_REF)} into $REPO_DIR"
  git clone --quiet ${REPO_REF:+--branch "$REPO_REF"} "$REPO_URL" "$REPO_DIR"
fi
cd "$REPO_DIR"

if ! command -v uv >/dev/null 2>&1; then
  log "installing uv"
  python3 -m pip install --quiet uv
fi
log "uv sync --frozen --extra $EXTRA (the locked environment)"
uv sync --frozen --extra "$EXTRA"

# DVC experiments are git commits: a runtime without a git identity gets one, local to the clone.
git config user.name >/dev/null || git config user.name "$GIT_NAME_DEFAULT"
git config user.email >/dev/null || git config user.email "$GIT_EMAIL_DEFAULT"
if [ -n "${GIT_TOKEN:-}" ]; then
  # The helper reads the token from the environment when git asks; the config holds no secret.
  git config credential.helper \
    '!f() { echo username=x-access-token; echo "password=${GIT_TOKEN}"; }; f'
fi

dvc() { uv run --frozen --extra "$EXTRA" dvc "$@"; }
if [ -n "${DVC_REMOTE_URL:-}" ]; then
  dvc remote modify --local "$DVC_REMOTE" url "$DVC_REMOTE_URL"
fi
if [ -n "${DVC_REMOTE_ENDPOINT_URL:-}" ]; then
  dvc remote modify --local "$DVC_REMOTE" endpointurl "$DVC_REMOTE_ENDPOINT_URL"
fi
# `dvc exp push` and `dvc push` without -r use the default remote.
dvc remote default --local "$DVC_REMOTE"

if [ "$PULL" = 1 ]; then
  log "dvc pull from $DVC_REMOTE${PULL_TARGETS:+: $PULL_TARGETS}"
  # shellcheck disable=SC2086 # PULL_TARGETS is a list of targets
  dvc pull --remote "$DVC_REMOTE" ${PULL_TARGETS:-}
fi
log "ready: $REPO_DIR (extra $EXTRA, DVC remote $DVC_REMOTE)"
