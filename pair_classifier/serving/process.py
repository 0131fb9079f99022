"""Running a server in the foreground: start it in its own process group, wait until it answers,
then wait for it; SIGTERM or Ctrl-C stops the whole group (SIGTERM, SIGKILL after a timeout),
so no worker of it outlives the command.

The servers (``mlflow models serve`` and its uvicorn, nginx and its workers) are children of
the command, never daemons: whoever stops the command by its PID stops everything it started.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from types import FrameType

from pair_classifier.errors import PairClassifierError

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.25  # between health probes and exit checks
PROBE_TIMEOUT_S = 2.0  # one health probe
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ServingError(PairClassifierError):
    """A server cannot start or stopped by itself; the message names it and what to do."""


class _StopRequested(Exception):
    """Raised in the main thread by the signal handler."""


def port_taken(host: str, port: int) -> bool:
    """Whether something already accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def answers_ok(url: str, headers: Mapping[str, str] | None = None) -> bool:
    """Whether ``url`` answers a GET with HTTP 200."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def require_free_port(name: str, host: str, port: int) -> None:
    if port_taken(host, port):
        raise ServingError(
            f"{name}: {host}:{port} is already in use; stop what holds it or pass --port"
        )


def stop_group(name: str, process: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM to the process group ``process`` leads; SIGKILL after ``timeout_s``."""
    if process.poll() is not None:
        return
    logger.info("%s: stopping process group %d (SIGTERM)", name, process.pid)
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        logger.warning("%s: still running after %g s; killing it", name, timeout_s)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
    # Workers of a group whose leader exited first still share its group id.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait_ready(
    name: str, process: subprocess.Popen, ready: Callable[[], bool], timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if process.poll() is not None:
            raise ServingError(f"{name}: exited with code {process.returncode} while starting")
        if time.monotonic() > deadline:
            raise ServingError(
                f"{name}: not answering after {timeout_s:g} s "
                "(raise serving.start_timeout_s on a slow machine)"
            )
        time.sleep(POLL_INTERVAL_S)


def run_foreground(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    ready: Callable[[], bool],
    start_timeout_s: float,
    stop_timeout_s: float,
    on_ready: Callable[[], None] = lambda: None,
) -> None:
    """Run ``argv`` until SIGTERM/SIGINT (a clean stop) or until it exits (a ``ServingError``).
    ``on_ready`` runs once ``ready()`` holds."""

    def request_stop(signum: int, frame: FrameType | None) -> None:
        for sig in STOP_SIGNALS:  # a second signal must not interrupt the stop itself
            signal.signal(sig, signal.SIG_IGN)
        raise _StopRequested(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, request_stop) for sig in STOP_SIGNALS}
    process: subprocess.Popen | None = None
    try:
        logger.info("%s: starting %s", name, " ".join(argv))
        process = subprocess.Popen(
            list(argv), env=dict(env), stdin=subprocess.DEVNULL, start_new_session=True
        )
        _wait_ready(name, process, ready, start_timeout_s)
        logger.info("%s: ready (PID %d)", name, process.pid)
        on_ready()
        code = process.wait()
        raise ServingError(f"{name}: exited by itself with code {code}; see its output above")
    except _StopRequested as stop:
        logger.info("%s: %s received", name, stop)
    finally:
        if process is not None:
            stop_group(name, process, stop_timeout_s)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logger.info("%s: stopped", name)
