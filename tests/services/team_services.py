"""The team services for tests: PostgreSQL, moto's S3 and the MLflow server on free loopback
ports in a scratch folder, started by `services up`'s own code and stopped by PID. The session
fixture ``team_services`` (tests/conftest.py) starts them once for every test that needs them."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from helpers import composed

from pair_classifier.services import manager, postgres
from pair_classifier.services.s3_store import DUMMY_CREDENTIAL
from pair_classifier.services.settings import ServicesConfig

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIAL,
    "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIAL,
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def services_config(data_dir: Path, **mlflow: object) -> ServicesConfig:
    """The configured services with ``data_dir`` and a free port each."""
    base = composed("services", ServicesConfig)
    return composed(
        "services",
        ServicesConfig,
        data_dir=str(data_dir),
        postgres={**vars(base.postgres), "port": free_port()},
        s3={**vars(base.s3), "port": free_port()},
        mlflow={**vars(base.mlflow), "port": free_port(), **mlflow},
    )


@contextmanager
def running_services() -> Iterator[ServicesConfig]:
    """Up on entry, down (by PID) and deleted on exit. Not under pytest's tmp folder: that one
    is private to root, and the cluster's own unprivileged user must reach its data folder."""
    data_dir = Path(tempfile.mkdtemp(prefix="pairclf-services-"))
    config = services_config(data_dir)
    try:
        manager.up(config)
        yield config
    finally:
        manager.down(config)
        shutil.rmtree(data_dir, ignore_errors=True)


def client_environment(config: ServicesConfig) -> dict[str, str]:
    """What a client of the services needs: the tracking URI, and S3 keys for DVC."""
    return {"MLFLOW_TRACKING_URI": config.mlflow.url, **AWS_ENV}


def s3_client(config: ServicesConfig) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=config.s3.endpoint_url,
        region_name=AWS_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=DUMMY_CREDENTIAL,
        aws_secret_access_key=DUMMY_CREDENTIAL,
    )


def bucket_keys(config: ServicesConfig, prefix: str) -> list[str]:
    """Every object key under ``prefix`` in the services' bucket."""
    keys: list[str] = []
    pages = s3_client(config).get_paginator("list_objects_v2")
    for page in pages.paginate(Bucket=config.s3.bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def postgres_rows(config: ServicesConfig, query: str, *args: object) -> list[tuple]:
    """``query`` run in MLflow's database, as MLflow's role."""
    import psycopg2

    pg = config.postgres
    with psycopg2.connect(
        host=pg.host, port=pg.port, user=pg.role, password=postgres.password(config),
        dbname=pg.database,
    ) as connection, connection.cursor() as cursor:  # fmt: skip
        cursor.execute(query, args)
        return cursor.fetchall()
