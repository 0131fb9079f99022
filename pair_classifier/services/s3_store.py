"""moto's S3 server with its objects kept on disk: ``python -m pair_classifier.services.s3_store``.

moto keeps everything in memory, so a plain ``moto_server`` loses MLflow's artifacts and the
DVC remote at every ``down``. This process runs the same server, loads the objects saved in
``--data-dir`` at start, and saves them back when stopped by SIGTERM or SIGINT (``down``) and
every ``--save-every-s`` seconds, so a crash loses at most that much. A local stand-in:
for durable team storage point the project at AWS S3 or MinIO (docs/services.md).
"""

from __future__ import annotations

import logging
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import typer

from pair_classifier.logs import configure_logging

logger = logging.getLogger(__name__)

DUMMY_CREDENTIAL = "moto"  # moto accepts any key; its own client needs one to sign requests
SAVE_EVERY_S = 60.0
OBJECTS_DIR = "objects"
DEFAULT_REGION = "us-east-1"  # S3 refuses a LocationConstraint naming it


def _client(endpoint: str, region: str) -> Any:  # a boto3 S3 client
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=DUMMY_CREDENTIAL,
        aws_secret_access_key=DUMMY_CREDENTIAL,
    )


def restore(client: Any, data_dir: Path, bucket: str, region: str) -> int:
    """Create ``bucket`` and every bucket saved in ``data_dir`` with their objects."""
    root = data_dir / OBJECTS_DIR
    saved = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    count = 0
    for name in sorted({bucket, *(p.name for p in saved)}):
        where = {} if region == DEFAULT_REGION else {"LocationConstraint": region}
        client.create_bucket(Bucket=name, **({"CreateBucketConfiguration": where} if where else {}))
        folder = root / name
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.is_file():
                client.put_object(Bucket=name, Key=path.relative_to(folder).as_posix(),
                                  Body=path.read_bytes())  # fmt: skip
                count += 1
    return count


def save(client: Any, data_dir: Path) -> int:
    """Write every object to a fresh folder, then swap it in whole: a failed save leaves the
    previous one."""
    staging = data_dir / f".{OBJECTS_DIR}.saving"
    shutil.rmtree(staging, ignore_errors=True)
    count = 0
    for bucket in client.list_buckets().get("Buckets", []):
        name = bucket["Name"]
        (staging / name).mkdir(parents=True, exist_ok=True)
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                target = staging / name / item["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(client.get_object(Bucket=name, Key=item["Key"])["Body"].read())
                count += 1
    previous = data_dir / f".{OBJECTS_DIR}.previous"
    shutil.rmtree(previous, ignore_errors=True)
    current = data_dir / OBJECTS_DIR
    if current.exists():
        current.rename(previous)
    staging.rename(current)
    shutil.rmtree(previous, ignore_errors=True)
    return count


def serve(host: str, port: int, data_dir: Path, bucket: str, region: str, every_s: float) -> None:
    """Run the server until SIGTERM/SIGINT, saving on the way out and every ``every_s``."""
    from moto.server import ThreadedMotoServer

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = ThreadedMotoServer(ip_address=host, port=port)
    server.start()
    client = _client(f"http://{host}:{port}", region)
    logger.info("restored %d objects from %s", restore(client, data_dir, bucket, region), data_dir)
    while not stop.wait(every_s):
        logger.info("saved %d objects", save(client, data_dir))
    logger.info("stopping: saved %d objects to %s", save(client, data_dir), data_dir)
    server.stop()


def main(
    host: str = typer.Option(...),
    port: int = typer.Option(...),
    data_dir: Path = typer.Option(...),
    bucket: str = typer.Option(...),
    region: str = typer.Option(...),
    save_every_s: float = typer.Option(SAVE_EVERY_S),
) -> None:
    """moto's S3 server with its objects kept on disk (started by ``services up``)."""
    configure_logging()
    data_dir.mkdir(parents=True, exist_ok=True)
    serve(host, port, data_dir, bucket, region, save_every_s)


if __name__ == "__main__":
    typer.run(main)
