"""A PostgreSQL 15 cluster on loopback for MLflow's backend store.

``initdb`` refuses to run as root, so when ``up`` runs as root the cluster belongs to an
unprivileged system user (``services.postgres.os_user``), created on first use and reused after.
The superuser and MLflow's role share a password generated once into the data folder (mode 600)
unless PAIR_CLASSIFIER_POSTGRES_PASSWORD gives one: nothing secret is in git.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path
from urllib.parse import quote

from pair_classifier.services.common import (
    PRIVATE_DIR,
    PRIVATE_FILE,
    ServiceError,
    ServiceStatus,
    generated_secret,
    port_open,
    require_binary,
    require_free_port,
    running,
    stop_process,
    wait_until,
    write_pid,
)
from pair_classifier.services.settings import ServicesConfig

logger = logging.getLogger(__name__)

NAME = "postgresql"
ENV_PASSWORD = "PAIR_CLASSIFIER_POSTGRES_PASSWORD"
ENV_PORT = "PAIR_CLASSIFIER_POSTGRES_PORT"
INSTALL_HINT = "install PostgreSQL 15 server binaries (Debian: apt-get install postgresql-15)"
SHARED_DIR = 0o755
MAINTENANCE_DB = "postgres"
FAST_SHUTDOWN = signal.SIGINT  # PostgreSQL's "fast" shutdown: roll back, then exit cleanly


def _dir(config: ServicesConfig) -> Path:
    return config.root / "postgres"


def _log(config: ServicesConfig) -> Path:
    return config.logs_dir / "postgres.log"


def _pid_file(config: ServicesConfig) -> Path:
    return config.root / "pids" / "postgres.json"


def password(config: ServicesConfig) -> str:
    """The roles' password: the environment's, else the one generated on first ``up``."""
    return os.environ.get(ENV_PASSWORD) or generated_secret(config.root, "postgres_password")


def backend_store_uri(config: ServicesConfig) -> str:
    """MLflow's ``--backend-store-uri`` (psycopg2: SQLAlchemy 2 maps plain postgresql:// to
    psycopg 3, which is not installed)."""
    pg = config.postgres
    secret = quote(password(config), safe="")
    return f"postgresql+psycopg2://{pg.role}:{secret}@{pg.host}:{pg.port}/{pg.database}"


def _run_as(config: ServicesConfig) -> str | None:
    """The OS user to run the cluster as: the configured one when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    user = config.postgres.os_user
    try:
        pwd.getpwnam(user)
    except KeyError:
        useradd = require_binary(NAME, "useradd", "install passwd, or create the user yourself")
        nologin = shutil.which("nologin") or "/bin/false"
        logger.info("%s: creating system user %s (initdb refuses root)", NAME, user)
        subprocess.run(
            [useradd, "--system", "--user-group", "--no-create-home", "--shell", nologin, user],
            check=True,
        )
    return user


def _owned_dir(path: Path, user: str | None, mode: int = SHARED_DIR) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    if user is not None:
        shutil.chown(path, user, user)


def _initdb(config: ServicesConfig, user: str | None) -> None:
    """Create the cluster once; the superuser is the OS user, password-protected over TCP."""
    data = _dir(config) / "data"
    if (data / "PG_VERSION").is_file():
        return
    initdb = require_binary(NAME, "initdb", INSTALL_HINT)
    _owned_dir(data, user, PRIVATE_DIR)
    pwfile = _dir(config) / "run" / "initdb.pw"
    pwfile.write_text(password(config))
    pwfile.chmod(PRIVATE_FILE)
    if user is not None:
        shutil.chown(pwfile, user, user)
    superuser = user or pwd.getpwuid(os.geteuid()).pw_name
    logger.info("%s: initdb %s", NAME, data)
    try:
        result = subprocess.run(
            [initdb, "-D", str(data), "-U", superuser, "--auth=scram-sha-256",
             f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C"],
            capture_output=True, text=True, user=user, check=False,
        )  # fmt: skip
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        raise ServiceError(f"{NAME}: initdb failed: {result.stderr.strip()[-2000:]}")


def _create_database(config: ServicesConfig, user: str | None) -> None:
    """MLflow's role and database, created when missing."""
    import psycopg2

    pg = config.postgres
    superuser = user or pwd.getpwuid(os.geteuid()).pw_name
    connection = psycopg2.connect(
        host=pg.host, port=pg.port, user=superuser, password=password(config),
        dbname=MAINTENANCE_DB,
    )  # fmt: skip
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (pg.role,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE ROLE "{pg.role}" LOGIN PASSWORD %s', (password(config),))
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (pg.database,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{pg.database}" OWNER "{pg.role}"')
    finally:
        connection.close()


def start(config: ServicesConfig) -> str:
    """Start the cluster unless ``up`` already did; returns what it did."""
    pg = config.postgres
    if running(_pid_file(config)) is not None:
        wait_until(NAME, lambda: port_open(pg.host, pg.port), config.start_timeout_s, _log(config))
        return "already running"
    require_free_port(NAME, pg.host, pg.port, ENV_PORT)
    pg_ctl = require_binary(NAME, "pg_ctl", INSTALL_HINT)
    user = _run_as(config)
    for folder in (config.root, _dir(config)):  # the cluster's user must reach its folder
        _owned_dir(folder, None)
    _owned_dir(_dir(config) / "run", user)
    _owned_dir(config.logs_dir, None)
    _initdb(config, user)
    log = _log(config)
    log.touch()
    if user is not None:
        shutil.chown(log, user, user)
    data = _dir(config) / "data"
    options = f"-h {pg.host} -p {pg.port} -k {_dir(config) / 'run'}"
    result = subprocess.run(
        [pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w",
         "-t", str(int(config.start_timeout_s)), "start"],
        capture_output=True, text=True, user=user, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise ServiceError(
            f"{NAME}: pg_ctl start failed ({result.stdout.strip()} {result.stderr.strip()}); "
            f"see {log}"
        )
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    write_pid(_pid_file(config), postmaster)
    _create_database(config, user)
    return f"started (PID {postmaster})"


def stop(config: ServicesConfig) -> bool:
    """Fast shutdown of the postmaster ``up`` recorded; the data folder stays."""
    return stop_process(NAME, _pid_file(config), FAST_SHUTDOWN, config.stop_timeout_s, False)


def status(config: ServicesConfig) -> ServiceStatus:
    pg = config.postgres
    record = running(_pid_file(config))
    healthy = record is not None and port_open(pg.host, pg.port)
    detail = f"database {pg.database}, data in {_dir(config) / 'data'}"
    return ServiceStatus(
        NAME, healthy, f"{pg.host}:{pg.port}", record.pid if record else None, detail
    )
