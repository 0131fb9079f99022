"""The study in the team PostgreSQL (`tune.storage: services`): two workers' storages reach
one study, in a schema of its own beside MLflow's tables."""

from __future__ import annotations

import optuna
import pytest
from helpers import composed
from services.team_services import postgres_rows

from pair_classifier.services.settings import ServicesConfig
from pair_classifier.tuning.settings import TuneConfig
from pair_classifier.tuning.study import OPTUNA_SCHEMA, open_storage, open_study, services_url

pytestmark = pytest.mark.slow  # starts the team services


def test_two_workers_share_a_study_in_postgresql(team_services: ServicesConfig) -> None:
    config = composed("tune", TuneConfig, study_name="shared-pg", storage="services")
    url = services_url(team_services)
    first = open_study(config, open_storage(url))
    second = open_study(config, open_storage(services_url(team_services)), seeded=False)
    trial = first.ask()
    second.tell(trial.number, 0.5)  # the other worker finishes what the first started
    assert [t.state for t in first.get_trials()] == [optuna.trial.TrialState.COMPLETE]
    tables = postgres_rows(
        team_services,
        "SELECT table_schema FROM information_schema.tables WHERE table_name = 'trials'",
    )
    assert tables == [(OPTUNA_SCHEMA,)]
    mlflow_version = postgres_rows(team_services, "SELECT version_num FROM public.alembic_version")
    assert len(mlflow_version) == 1  # MLflow's migrations untouched
