"""A real headless browser for the demo tests: Debian's chromium and chromedriver (installed
with apt-get when missing and this runs as root; else the browser tests skip, saying why),
driven by selenium, and the screenshots kept as test artifacts."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PACKAGES = ["chromium", "chromium-driver"]
APT_LOCK_TIMEOUT_S = 600  # another test or helper may hold dpkg's lock meanwhile
INSTALL_TIMEOUT_S = 1200
WINDOW = "--window-size=1280,1000"
ARTIFACTS_ENV = "PAIR_CLASSIFIER_TEST_ARTIFACTS"  # a folder the screenshots are copied to


def _install_chromium() -> str | None:
    """Why the browser is missing after trying to install it, or None once it is there."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "chromium is not installed and could not be (apt-get install chromium as root)"
    install = ["apt-get", "-o", f"DPkg::Lock::Timeout={APT_LOCK_TIMEOUT_S}", "install", "-y"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    result = None
    for command in (install + PACKAGES, ["apt-get", "update"], install + PACKAGES):
        result = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=INSTALL_TIMEOUT_S
        )
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return None
    return f"apt-get install {' '.join(PACKAGES)} failed: {result.stderr[-500:]}"


@pytest.fixture(scope="session")
def chromium() -> Path:
    reason = _install_chromium()
    if reason is not None:
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
def browser(chromium: Path) -> Iterator[object]:
    """A fresh headless chromium (no cookies from another test), quit after the test."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    # root in a container: no sandbox; no GPU and no /dev/shm size to rely on
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument(WINDOW)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    yield driver
    driver.quit()


@pytest.fixture
def screenshot(tmp_path: Path) -> Callable[[object, str], Path]:
    """Save the browser's view as ``name``.png under the test's tmp dir and, when
    PAIR_CLASSIFIER_TEST_ARTIFACTS names a folder, a copy there."""

    def save(driver: object, name: str) -> Path:
        path = tmp_path / f"{name}.png"
        assert driver.save_screenshot(str(path)), f"no screenshot {path}"
        target = os.environ.get(ARTIFACTS_ENV)
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, Path(target) / path.name)
        return path

    return save
