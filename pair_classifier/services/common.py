"""What every service shares: PID files, health checks by TCP or HTTP, waiting for a start, and
stopping by the recorded PID (never by a process name, which could hit someone else's server)."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from pair_classifier.errors import PairClassifierError

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2.0  # one health probe
POLL_INTERVAL_S = 0.5  # between probes while a service starts or stops
HTTP_SERVER_ERROR = 500
CREATE_TIME_TOLERANCE_S = 1.0  # a PID whose start time differs more is another process
LOG_TAIL_LINES = 15
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700  # also initdb's requirement for the data folder
SECRETS_DIR = "secrets"  # under the services' data_dir
SECRET_BYTES = 32


class ServiceError(PairClassifierError):
    """A service cannot start, stop or be reached; the message names it and what to do."""


@dataclass(frozen=True)
class PidRecord:
    """A process ``up`` started: its PID and start time (which tells a reused PID apart)."""

    pid: int
    create_time: float

    def alive(self) -> bool:
        """Whether the recorded process, and not a later one with the same PID, still runs."""
        try:
            process = psutil.Process(self.pid)
            return (
                abs(process.create_time() - self.create_time) < CREATE_TIME_TOLERANCE_S
                and process.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            return False


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    healthy: bool
    address: str
    pid: int | None
    detail: str


def write_pid(path: Path, pid: int) -> PidRecord:
    """Record ``pid`` (with its start time) in ``path``."""
    record = PidRecord(pid, psutil.Process(pid).create_time())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": record.pid, "create_time": record.create_time}))
    return record


def read_pid(path: Path) -> PidRecord | None:
    """The recorded process, or None when there is no readable record."""
    try:
        data = json.loads(path.read_text())
        return PidRecord(int(data["pid"]), float(data["create_time"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running(path: Path) -> PidRecord | None:
    """The recorded process if it still runs; a stale record is removed."""
    record = read_pid(path)
    if record is not None and record.alive():
        return record
    path.unlink(missing_ok=True)
    return None


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=CHECK_TIMEOUT_S):
            return True
    except OSError:
        return False


def http_status(url: str, timeout_s: float = CHECK_TIMEOUT_S) -> int | None:
    """The HTTP status ``url`` answers with, or None when nothing answers in time."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, ValueError):
        return None


def http_ok(url: str) -> bool:
    """Whether ``url`` answers HTTP without a server error."""
    code = http_status(url)
    return code is not None and code < HTTP_SERVER_ERROR


def require_free_port(service: str, host: str, port: int, variable: str) -> None:
    """Refuse to start on a port another process holds, naming the way to pick another."""
    if port_open(host, port):
        raise ServiceError(
            f"{service}: port {host}:{port} is taken by a process `services up` did not start; "
            f"stop it or choose another port ({variable}=PORT)"
        )


def require_binary(service: str, name: str, hint: str) -> str:
    """The path of executable ``name``, or an error saying how to get it."""
    found = shutil.which(name)
    if found is None:
        raise ServiceError(f"{service}: `{name}` not found on PATH; {hint}")
    return found


def log_tail(log: Path) -> str:
    """The last lines of a service's log, for an error message."""
    try:
        lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError:
        return "(no log)"
    return "\n".join(lines)


def wait_until(
    service: str,
    healthy: Callable[[], bool],
    timeout_s: float,
    log: Path,
    record: PidRecord | None = None,
) -> None:
    """Poll ``healthy`` until it holds; fail naming the log if the process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while not healthy():
        if record is not None and not record.alive():
            raise ServiceError(f"{service}: exited while starting; see {log}:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise ServiceError(
                f"{service}: not healthy after {timeout_s:g} s; see {log} "
                f"(raise services.start_timeout_s on a slow machine):\n{log_tail(log)}"
            )
        time.sleep(POLL_INTERVAL_S)


def stop_process(
    service: str, pid_file: Path, sig: signal.Signals, timeout_s: float, group: bool
) -> bool:
    """Stop the process recorded in ``pid_file`` (and its process group when ``group``: it
    was started as a session leader, so its workers share its PID as group id). Sends ``sig``,
    then SIGKILL after ``timeout_s``. Returns whether anything was running."""
    record = running(pid_file)
    if record is None:
        return False
    send = os.killpg if group else os.kill
    logger.info("%s: stopping PID %d (%s)", service, record.pid, sig.name)
    try:
        send(record.pid, sig)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + timeout_s
    while record.alive() and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
    if record.alive():
        logger.warning(
            "%s: PID %d still running after %g s; killing it", service, record.pid, timeout_s
        )
        try:
            send(record.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    pid_file.unlink(missing_ok=True)
    return True


def spawn(
    argv: list[str], log: Path, env: dict[str, str] | None = None, user: str | None = None
) -> int:
    """Start ``argv`` detached (its own session, so ``down`` can stop its whole group), its
    output appended to ``log``; returns its PID."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            user=user,
            start_new_session=True,
        )
    return process.pid


def generated_secret(root: Path, name: str) -> str:
    """A random secret generated once into ``root/secrets/name`` (readable by its owner only),
    so it survives a restart and never has to be typed into a file in git."""
    path = root / SECRETS_DIR / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        path.touch(mode=PRIVATE_FILE)
        path.write_text(secrets.token_urlsafe(SECRET_BYTES))
    return path.read_text().strip()
