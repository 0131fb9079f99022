"""The study: its storage (a SQLite file, the team PostgreSQL or any URL), pruner and sampler,
and the loop that runs trials until the study holds ``tune.n_trials`` of them, whichever
worker ran them."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from pair_classifier.config import ConfigError, TrackingConfig
from pair_classifier.constants import PARAMS_FILE
from pair_classifier.services.settings import ServicesConfig, load_services
from pair_classifier.tracking import tracking_uri
from pair_classifier.tuning.settings import TuneConfig
from pair_classifier.tuning.space import check_space, suggest
from pair_classifier.tuning.trial import (
    EpochMetricReader,
    TrialFailed,
    TrialStopped,
    experiment_command,
    read_objective,
    run_experiment,
)

logger = logging.getLogger(__name__)

ENV_STORAGE = "PAIR_CLASSIFIER_TUNE_STORAGE"  # an SQLAlchemy URL; wins over tune.storage
SQLITE_PREFIX = "sqlite:///"
SQLITE_TIMEOUT_S = 60  # workers sharing one SQLite file wait this long for its lock
HEARTBEAT_INTERVAL_S = 60  # a running trial's heartbeat ...
HEARTBEAT_GRACE_S = 300  # ... missing this long (its worker died): the trial is marked failed
OPTUNA_SCHEMA = "optuna"  # in the services' database: MLflow's tables (and alembic's) stay apart
EXPERIMENT_ATTR = "dvc_experiment"
WORKER_ATTR = "worker"
PROXY_ATTR = "proxy"
ERROR_ATTR = "error"


def trial_name(config: TuneConfig, number: int) -> str:
    """The DVC experiment of trial ``number`` (and its MLflow runs' ``dvc.experiment`` tag)."""
    return f"{config.study_name}-trial-{number}"


def services_url(services: ServicesConfig) -> str:
    """The team PostgreSQL (`pair-classifier services`), Optuna's tables in a schema of their
    own (created here), apart from MLflow's (both keep an ``alembic_version`` table)."""
    import psycopg2

    from pair_classifier.services import postgres

    pg = services.postgres
    secret = postgres.password(services)
    with psycopg2.connect(
        host=pg.host, port=pg.port, user=pg.role, password=secret, dbname=pg.database
    ) as connection, connection.cursor() as cursor:  # fmt: skip
        cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{OPTUNA_SCHEMA}"')
    return (
        f"postgresql+psycopg2://{pg.role}:{quote(secret, safe='')}@{pg.host}:{pg.port}/"
        f"{pg.database}?options=-csearch_path%3D{OPTUNA_SCHEMA}"
    )


def storage_url(config: TuneConfig, project: Path) -> str:
    """Where the study lives: PAIR_CLASSIFIER_TUNE_STORAGE, else ``tune.storage``."""
    if url := os.environ.get(ENV_STORAGE):
        return url
    if config.storage == "sqlite":
        return f"{SQLITE_PREFIX}{(project / config.sqlite_file).resolve()}"
    if config.storage == "services":
        return services_url(load_services(project / PARAMS_FILE))
    if "://" not in config.storage:
        raise ConfigError(
            f"tune.storage: expected sqlite, services or an SQLAlchemy URL, got {config.storage!r}"
        )
    return config.storage


SCHEMA_RACE_ATTEMPTS = 3  # openings of a storage whose tables another worker is creating
SCHEMA_RACE_DELAY_S = 1.0


def open_storage(url: str) -> RDBStorage:
    """Optuna's RDB storage; a trial whose worker stops beating is marked failed."""
    sqlite = url.startswith(SQLITE_PREFIX)
    engine = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if sqlite else {}
    for attempt in range(1, SCHEMA_RACE_ATTEMPTS + 1):
        try:
            return RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=HEARTBEAT_INTERVAL_S,
                grace_period=HEARTBEAT_GRACE_S,
            )
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as error:
            # Workers started together on a new storage both create its tables; the one that
            # loses ("table ... already exists", or alembic_version's row already written)
            # opens the storage again.
            if attempt == SCHEMA_RACE_ATTEMPTS:
                raise
            logger.info("storage tables being created by another worker (%s); retrying", error.orig)
            time.sleep(SCHEMA_RACE_DELAY_S)
    raise AssertionError("unreachable")


def make_pruner(config: TuneConfig) -> optuna.pruners.BasePruner:
    pruner = config.pruner
    if pruner.kind == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=pruner.n_startup_trials, n_warmup_steps=pruner.n_warmup_steps
        )
    if pruner.kind == "threshold":
        return optuna.pruners.ThresholdPruner(
            lower=pruner.lower, upper=pruner.upper, n_warmup_steps=pruner.n_warmup_steps
        )
    return optuna.pruners.NopPruner()


def open_study(config: TuneConfig, storage: RDBStorage, seeded: bool = True) -> optuna.Study:
    """The study, created on first use (by whichever worker comes first)."""
    return optuna.create_study(
        study_name=config.study_name,
        storage=storage,
        direction=config.objective.direction,
        sampler=optuna.samplers.TPESampler(seed=config.seed if seeded else None),
        pruner=make_pruner(config),
        load_if_exists=True,
    )


def load_study(config: TuneConfig, project: Path) -> optuna.Study:
    """The existing study (for reports and ``tune apply``)."""
    url = storage_url(config, project)
    missing = Path(url.removeprefix(SQLITE_PREFIX))
    if url.startswith(SQLITE_PREFIX) and not missing.is_file():
        raise ConfigError(f"{missing}: no study file; run `pair-classifier tune` first")
    try:
        return optuna.load_study(study_name=config.study_name, storage=open_storage(url))
    except KeyError:
        raise ConfigError(
            f"tune.study_name: no study {config.study_name!r} in {url.split('@')[-1]}; "
            "run `pair-classifier tune` first"
        ) from None


def proxy_overrides(config: TuneConfig) -> dict[str, str]:
    """What every trial runs under besides its own values (empty with the proxy off)."""
    return dict(config.proxy.overrides) if config.proxy.enabled else {}


def objective_function(
    config: TuneConfig, tracking: TrackingConfig, project: Path, worker_id: str
) -> Callable[[optuna.Trial], float]:
    """The function Optuna calls per trial: run the experiment, read its validation figure."""

    def objective(trial: optuna.Trial) -> float:
        values = suggest(trial, config.search_space)
        name = trial_name(config, trial.number)
        trial.set_user_attr(EXPERIMENT_ATTR, name)
        trial.set_user_attr(WORKER_ATTR, worker_id)
        trial.set_user_attr(PROXY_ATTR, proxy_overrides(config))
        logger.info("trial %d (%s): %s", trial.number, name, values)
        pruner = config.pruner
        reader = EpochMetricReader(
            tracking_uri(tracking), tracking.experiment_name, name, pruner.stage, pruner.metric
        )

        def report(step: int, value: float) -> bool:
            trial.report(value, step)
            return trial.should_prune()

        command = experiment_command(name, values | proxy_overrides(config), config.targets)
        try:
            run_experiment(
                command, reader, report, config.poll_interval_s, config.trial_timeout_s,
                config.stop_grace_s, config.log_tail_chars,
            )  # fmt: skip
            value = read_objective(project / config.objective.file, config.objective.key)
        except TrialStopped:
            raise optuna.TrialPruned() from None
        except TrialFailed as error:
            trial.set_user_attr(ERROR_ATTR, str(error)[-config.log_tail_chars :])
            logger.warning("trial %d failed: %s", trial.number, str(error).splitlines()[0])
            raise
        logger.info("trial %d: %s = %g", trial.number, config.objective.key, value)
        return value

    return objective


def finished_or_running(study: optuna.Study) -> int:
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
    return len(study.get_trials(deepcopy=False, states=states))


def run_study(
    config: TuneConfig, tracking: TrackingConfig, project: Path, worker: bool
) -> optuna.Study:
    """Run trials in this workspace until the study holds ``tune.n_trials`` (all workers'
    trials count). A worker draws unseeded, so two workers do not propose the same trials."""
    check_space(config.search_space)
    url = storage_url(config, project)
    study = open_study(config, open_storage(url), seeded=not worker)
    worker_id = f"{socket.gethostname()}:{os.getpid()}:{project.resolve()}"
    logger.info(
        "Start: study %s in %s, %d of %d trials there; proxy %s",
        config.study_name, url.split("@")[-1], finished_or_running(study), config.n_trials,
        proxy_overrides(config) or "off",
    )  # fmt: skip
    if finished_or_running(study) < config.n_trials:
        study.optimize(
            objective_function(config, tracking, project, worker_id),
            callbacks=[MaxTrialsCallback(config.n_trials, states=None)],
            catch=(TrialFailed,),
        )
    counts = {s.name: len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState}
    logger.info("Done: study %s: %s", config.study_name, {k: v for k, v in counts.items() if v})
    return study
