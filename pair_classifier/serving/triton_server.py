"""`pair-classifier serve triton`: the ``tritonserver`` binary that ``nvidia-pytriton`` bundles
(Triton 2.51, Python backend only), run from the server's own environment
(``uv sync --project serving/triton``: pytriton pins numpy<2) on a generated model repository.

What the bundled binary needs, and gets here:
- a backend folder with the Python backend and the stub built for the environment's Python
  (pytriton ships one per Python version); made of symbolic links in a temporary workspace;
- ``LD_LIBRARY_PATH``: pytriton's libraries and the environment Python's ``LIBDIR`` (the stub
  would otherwise load the system's libpython, of another patch release);
- ``PYTHONPATH``: the project's source root (the repository's ``model.py`` files import
  ``pair_classifier``) and the environment's site-packages.

Clients call an nginx front on ``serving.host:triton.server.http_port`` (``triton_front``), which
refuses a body over ``serving.max_body_bytes`` with a 413 and a request Triton cannot read as
JSON with a 400, and passes the rest to Triton on a free loopback port: Triton 2.51's HTTP
frontend crashes (SIGSEGV) on a body of about 4 MB, measured here, has no size limit of its own
and answers JSON errors with a 500. Metrics on ``triton.server.metrics_port``, gRPC off.

SIGTERM or Ctrl-C stops both process groups (Triton waits ``triton.server.exit_timeout_s`` for
requests in flight; each is killed after ``serving.stop_timeout_s``); then the shared-memory
regions of this server's Python backend stubs (``/dev/shm/<its own prefix>*``) are removed,
whatever way it ended.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from pair_classifier.serving.expose import nginx_binary
from pair_classifier.serving.process import (
    POLL_INTERVAL_S,
    STOP_SIGNALS,
    ServingError,
    answers_ok,
    require_free_port,
    stop_group,
)
from pair_classifier.serving.settings import ServingConfig
from pair_classifier.serving.triton_backend import ENV_SOURCE_ROOT
from pair_classifier.serving.triton_front import FRONT, js_module, write_front
from pair_classifier.serving.triton_settings import TritonConfig

logger = logging.getLogger(__name__)

NAME = "tritonserver"
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding pair_classifier/
TRITON_PROJECT = Path("serving/triton")  # its pyproject.toml and uv.lock
TRITON_ENV = SOURCE_ROOT / TRITON_PROJECT / ".venv"
INSTALL_HINT = f"uv sync --frozen --project {TRITON_PROJECT}"
PYTRITON_DIR = Path("pytriton") / "tritonserver"
PYTRITON_LIBS = "nvidia_pytriton.libs"
STUB = "triton_python_backend_stub"
PYTHON_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")
SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "pair_classifier_triton_"
READY_PATH = "/v2/health/ready"
RUN_DIR_MODE = 0o711  # nginx's workers (another user when it runs as root) reach their temp dirs
# What the environment's Python tells about itself: its libpython's folder, its version.
LIBDIR_SCRIPT = (
    "import sysconfig, sys; print(sysconfig.get_config_var('LIBDIR')); "
    "print(sys.version_info[0], sys.version_info[1])"
)


@dataclass(frozen=True)
class TritonInstall:
    """Where the server environment's pieces are."""

    python: Path
    site_packages: Path
    python_libdir: Path
    python_version: str  # "3.11": which of pytriton's stubs to run

    @property
    def server_dir(self) -> Path:
        return self.site_packages / PYTRITON_DIR

    @property
    def binary(self) -> Path:
        return self.server_dir / "bin" / NAME

    @property
    def stub(self) -> Path:
        return self.server_dir / "python_backend_stubs" / self.python_version / STUB

    @property
    def libs(self) -> Path:
        return self.site_packages / PYTRITON_LIBS


def find_install(env_dir: Path = TRITON_ENV) -> TritonInstall:
    """The Triton environment at ``env_dir``; a ``ServingError`` says how to create it."""
    python = env_dir / "bin" / "python"
    if not python.is_file():
        raise ServingError(f"{env_dir}: no Triton server environment; create it: {INSTALL_HINT}")
    answer = subprocess.run(
        [str(python), "-c", LIBDIR_SCRIPT], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    version = answer[1].replace(" ", ".")
    matches = sorted(env_dir.glob(f"lib/python{version}/site-packages"))
    install = TritonInstall(python, matches[0] if matches else env_dir, Path(answer[0]), version)
    missing = [path for path in (install.binary, install.stub) if not path.is_file()]
    if missing:
        raise ServingError(f"{missing[0]}: not found; reinstall the environment: {INSTALL_HINT}")
    return install


def backend_folder(install: TritonInstall, workspace: Path) -> Path:
    """``<workspace>/backends/python``: the Python backend beside the stub of this Python."""
    folder = workspace / "backends" / "python"
    folder.mkdir(parents=True)
    for name in PYTHON_BACKEND_FILES:
        (folder / name).symlink_to(install.server_dir / "backends" / "python" / name)
    (folder / STUB).symlink_to(install.stub)
    return folder.parent


def server_environment(install: TritonInstall) -> dict[str, str]:
    """This process's variables with the libraries and import paths the server needs."""
    env = dict(os.environ)
    paths = [str(install.libs), str(install.python_libdir), env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, paths))
    env["PYTHONPATH"] = os.pathsep.join([str(SOURCE_ROOT), str(install.site_packages)])
    env[ENV_SOURCE_ROOT] = str(SOURCE_ROOT)  # read by the repository's model.py files
    env["PATH"] = os.pathsep.join([str(install.python.parent), env.get("PATH", "")])
    for name in ("VIRTUAL_ENV", "PYTHONHOME"):  # the pipeline's, not the server's
        env.pop(name, None)
    return env


@dataclass(frozen=True)
class ServerPorts:
    host: str
    http: int
    metrics: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http}"


def server_command(
    install: TritonInstall,
    backends: Path,
    repository: Path,
    ports: ServerPorts,
    settings: TritonConfig,
    shm_prefix: str,
) -> list[str]:
    """The ``tritonserver`` command line: loopback HTTP and metrics, no gRPC, every model in
    ``repository`` loaded at start (ready only when all are), this server's own shm prefix."""
    return [
        str(install.binary),
        f"--model-repository={repository.resolve()}",
        f"--backend-directory={backends}",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        f"--http-address={ports.host}",
        f"--http-port={ports.http}",
        f"--http-thread-count={settings.server.http_threads}",
        "--allow-grpc=false",
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
        f"--metrics-address={ports.host}",
        f"--metrics-port={ports.metrics}",
        "--strict-readiness=true",
        "--disable-auto-complete-config",
        f"--exit-timeout-secs={settings.server.exit_timeout_s}",
    ]


def shared_memory_files(prefix: str) -> list[Path]:
    """The shared-memory regions a server with ``prefix`` made (its Python backend stubs')."""
    return sorted(SHM_DIR.glob(f"{prefix}*"))


def remove_shared_memory(prefix: str) -> list[Path]:
    """Remove what a stopped server left in /dev/shm under its own prefix; returns them."""
    left = shared_memory_files(prefix)
    for path in left:
        path.unlink(missing_ok=True)
    if left:
        logger.info("%s: removed %d shared-memory files %s*", NAME, len(left), prefix)
    return left


def free_port(host: str) -> int:
    """A TCP port nothing listens on now (for Triton behind the front)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class _Stop(Exception):
    """SIGTERM or SIGINT arrived."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    for sig in STOP_SIGNALS:  # a second signal must not interrupt the stop itself
        signal.signal(sig, signal.SIG_IGN)
    raise _Stop(signal.Signals(signum).name)


def _start(name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    logger.info("%s: starting %s", name, " ".join(argv))
    return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True)


def _wait_ready(processes: dict[str, subprocess.Popen], url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not answers_ok(url):
        _check_running(processes)
        if time.monotonic() > deadline:
            raise ServingError(
                f"{NAME}: not ready after {timeout_s:g} s (raise serving.start_timeout_s)"
            )
        time.sleep(POLL_INTERVAL_S)


def _check_running(processes: dict[str, subprocess.Popen]) -> None:
    for name, process in processes.items():
        if process.poll() is not None:
            raise ServingError(f"{name}: exited with code {process.returncode}; see its output")


def _stop(name: str, process: subprocess.Popen, timeout_s: float) -> None:
    """Stop the process group ``process`` leads, also when the leader died first: Triton
    killed, its Python backend stub would otherwise linger until it notices."""
    stop_group(name, process, timeout_s)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def serve_triton(
    serving: ServingConfig,
    settings: TritonConfig,
    repository: Path,
    ports: ServerPorts,
    on_ready: Callable[[str], None],
    env_dir: Path = TRITON_ENV,
) -> None:
    """Serve ``repository`` behind the front until SIGTERM or Ctrl-C (a ``ServingError`` if
    either process ends by itself); nothing of either is left after."""
    if not (repository / settings.model_name).is_dir():
        raise ServingError(
            f"{repository}: no model {settings.model_name!r}; generate the repository "
            "(dvc repro triton-repo) or pass --repository"
        )
    if settings.server.exit_timeout_s >= serving.stop_timeout_s:
        raise ServingError(
            f"triton.server.exit_timeout_s ({settings.server.exit_timeout_s}) must be below "
            f"serving.stop_timeout_s ({serving.stop_timeout_s}): Triton must finish before "
            "it is killed"
        )
    install = find_install(env_dir)
    nginx = nginx_binary()
    module = js_module(nginx)
    for port in (ports.http, ports.metrics):
        require_free_port(NAME, ports.host, port)
    inner = ServerPorts(ports.host, free_port(ports.host), ports.metrics)
    shm_prefix = f"{SHM_PREFIX}{os.getpid()}_"
    models = sorted(path.name for path in repository.iterdir() if path.is_dir())
    previous = {sig: signal.signal(sig, _raise_stop) for sig in STOP_SIGNALS}
    processes: dict[str, subprocess.Popen] = {}
    workspace = Path(tempfile.mkdtemp(prefix=f"{SHM_PREFIX}workspace_"))
    try:
        workspace.chmod(RUN_DIR_MODE)
        argv = server_command(
            install, backend_folder(install, workspace), repository, inner, settings, shm_prefix
        )
        env = server_environment(install)
        traffic_log = serving.traffic_log.settings()
        if traffic_log is not None:  # the model's stubs write it (docs/monitoring.md)
            env |= traffic_log.environment()
        processes[NAME] = _start(NAME, argv, env)
        _wait_ready(processes, inner.url + READY_PATH, serving.start_timeout_s)
        conf = write_front(
            workspace,
            f"{ports.host}:{ports.http}",
            f"{inner.host}:{inner.http}",
            serving.max_body_bytes,
            module,
        )
        front = [nginx, "-p", str(workspace), "-c", str(conf), "-e", "stderr"]
        processes[FRONT] = _start(FRONT, front, dict(os.environ))
        _wait_ready(processes, ports.url + READY_PATH, serving.start_timeout_s)
        on_ready(
            f"{', '.join(models)} at {ports.url}/v2/models/<model>/infer "
            f"(metrics: http://{ports.host}:{ports.metrics}/metrics; PID {os.getpid()})"
        )
        while True:
            _check_running(processes)
            time.sleep(POLL_INTERVAL_S)
    except _Stop as stop:
        logger.info("%s: %s received", NAME, stop)
    finally:
        for name, process in reversed(processes.items()):
            _stop(name, process, serving.stop_timeout_s)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        remove_shared_memory(shm_prefix)
        shutil.rmtree(workspace, ignore_errors=True)
    logger.info("%s: stopped", NAME)
