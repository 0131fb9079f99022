"""The container images (docker/): the serving image's pins follow uv.lock, and, when asked,
scripts/build_images.sh builds both images with podman and checks the serving image scores the
example file exactly as `pair-classifier predict` does here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib

import pytest
from helpers import REPO_ROOT

SERVING_REQUIREMENTS = REPO_ROOT / "docker/serving-requirements.txt"
BUILD_SCRIPT = REPO_ROOT / "scripts/build_images.sh"
# Training-only packages the slim image must not carry.
TRAINING_ONLY = {"torch", "lightning", "transformers", "scikit-learn", "mlflow", "dvc"}
ENV_BUILD = "PAIR_CLASSIFIER_BUILD_IMAGES"  # 1: run the image script (minutes; podman)
ENV_EXTRA = "TRAINING_EXTRA"  # the script's own settings: gpu (default) or cpu, ...
ENV_IMAGES = "BUILD_IMAGES"  # ... and which images ("serving training")
BUILD_TIMEOUT_S = 3600
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)$")


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked_versions() -> dict[str, str]:
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text(encoding="utf-8"))
    return {_normalised(package["name"]): package["version"] for package in lock["package"]}


def test_serving_requirements_are_the_locked_versions_without_training_packages() -> None:
    pins = {}
    for line in SERVING_REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            match = PIN.match(line)
            assert match, f"{SERVING_REQUIREMENTS}: {line!r} is not name==version"
            pins[_normalised(match[1])] = match[2]
    locked = _locked_versions()
    differing = {name: (version, locked.get(name)) for name, version in pins.items()
                 if locked.get(name) != version}  # fmt: skip
    assert not differing, f"pinned vs uv.lock (regenerate, see the file's header): {differing}"
    assert {"onnxruntime", "tokenizers", "pandas", "typer", "pyyaml"} <= set(pins)
    assert not TRAINING_ONLY & set(pins)


@pytest.mark.slow
def test_build_images_script_builds_and_the_serving_image_scores_like_predict() -> None:
    if os.environ.get(ENV_BUILD) != "1":
        pytest.skip(
            f"{ENV_BUILD}=1 runs scripts/build_images.sh (podman; minutes, see docs/containers.md)"
        )
    if shutil.which("podman") is None and os.geteuid() != 0:
        pytest.skip("podman is not installed and installing it needs root")
    env = dict(os.environ) | {ENV_EXTRA: os.environ.get(ENV_EXTRA, "cpu")}
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=BUILD_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    images = env.get(ENV_IMAGES, "serving training").split()
    if "serving" in images:
        assert "serving image OK: 4 predictions identical to the host's, no torch" in result.stderr
    if "training" in images:
        assert f"training image OK (extra {env[ENV_EXTRA]})" in result.stderr
