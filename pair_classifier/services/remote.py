"""Is the DVC remote on S3 usable? One listing request, its failure told in our words.

`dvc push` and `dvc pull` print the S3 client's own errors ("Unable to locate credentials",
"Forbidden", "Could not connect to the endpoint URL"): they do not say which variables hold the
credentials or which command starts the server. ``services status`` and ``download-data`` run
this check instead, naming the remote, its endpoint and what to do.
"""

from __future__ import annotations

import configparser
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pair_classifier.services.common import ServiceError, ServiceStatus
from pair_classifier.services.settings import ServicesConfig

logger = logging.getLogger(__name__)

NAME = "dvc-remote"
DVC_DIR = ".dvc"
CONFIG_FILES = ("config", "config.local")  # the later wins
S3_SCHEME = "s3"
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
DEFAULT_REGION = "us-east-1"
CREDENTIALS_HINT = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or "
    "`dvc remote modify --local {remote} access_key_id ...`; the local S3 server takes any "
    "non-empty pair (.env.example)"
)
START_HINT = (
    "with the team services run `pair-classifier services up`; for another S3 fix the endpoint "
    "with `dvc remote modify --local {remote} endpointurl URL`"
)
# S3 error codes that mean "these credentials are not accepted".
REFUSED_CREDENTIALS = {
    "403",
    "AccessDenied",
    "ExpiredToken",
    "Forbidden",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "InvalidToken",
    "SignatureDoesNotMatch",
}
NO_BUCKET = {"404", "NoSuchBucket"}


class RemoteError(ServiceError):
    """The DVC remote cannot be used; the message names it, its endpoint and what to do."""


def _dvc_dir(root: Path) -> Path:
    """The ``.dvc`` folder of the DVC project ``root`` is in."""
    for folder in (root.resolve(), *root.resolve().parents):
        if (folder / DVC_DIR).is_dir():
            return folder / DVC_DIR
    raise RemoteError(f"{NAME}: no DVC project at {root} ({DVC_DIR}/ not found there or above)")


def remote_settings(name: str, root: Path = Path(".")) -> Mapping[str, Any]:
    """The remote's settings as DVC merges them (.dvc/config, then config.local), read without
    importing DVC (it binds its log handlers to the streams of the moment it is imported)."""
    parser = configparser.ConfigParser(interpolation=None)
    dvc_dir = _dvc_dir(root)
    try:
        parser.read([dvc_dir / config_file for config_file in CONFIG_FILES], encoding="utf-8")
    except configparser.Error as error:
        raise RemoteError(f"{NAME}: cannot read the DVC config in {dvc_dir}: {error}") from error
    remotes = {
        match[1]: dict(parser[section])
        for section in parser.sections()
        if (match := re.fullmatch(r"""'?remote\s+"([^"]+)"'?""", section.strip()))
    }
    if name not in remotes:
        raise RemoteError(
            f"{NAME} {name!r}: not configured in {dvc_dir} (remotes: {sorted(remotes) or 'none'}"
            "); see `dvc remote list` and docs/services.md"
        )
    return remotes[name]


def _client(settings: Mapping[str, Any], remote: str) -> Any:  # a boto3 S3 client
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ProfileNotFound

    try:
        session = boto3.Session(profile_name=settings.get("profile"))
    except ProfileNotFound as error:
        raise RemoteError(f"{NAME} {remote!r}: {error}; {CREDENTIALS_HINT.format(remote=remote)}")
    keys = {
        "aws_access_key_id": settings.get("access_key_id"),
        "aws_secret_access_key": settings.get("secret_access_key"),
        "aws_session_token": settings.get("session_token"),
    }
    if not keys["aws_access_key_id"] and session.get_credentials() is None:
        raise RemoteError(
            f"{NAME} {remote!r} ({settings['url']}): no AWS credentials found; "
            + CREDENTIALS_HINT.format(remote=remote)
        )
    return session.client(
        "s3",
        endpoint_url=settings.get("endpointurl"),
        region_name=settings.get("region") or session.region_name or DEFAULT_REGION,
        config=Config(
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            retries={"max_attempts": 1},
        ),
        **{key: value for key, value in keys.items() if value},
    )


def check_remote(name: str, settings: Mapping[str, Any]) -> str:
    """List one object under the remote's prefix; returns what was checked, raises a
    ``RemoteError`` that says what to do. Remotes other than S3 are not checked."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    url = str(settings.get("url", ""))
    parts = urlsplit(url)
    if parts.scheme != S3_SCHEME:
        return f"{url} (not S3: not checked)"
    endpoint = settings.get("endpointurl") or "AWS S3"
    where = f"{NAME} {name!r} ({url} at {endpoint})"
    client = _client(settings, name)
    try:
        client.list_objects_v2(Bucket=parts.netloc, Prefix=parts.path.lstrip("/"), MaxKeys=1)
    except EndpointConnectionError as error:
        raise RemoteError(
            f"{where}: the S3 endpoint is unreachable ({error}); " + START_HINT.format(remote=name)
        ) from error
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in REFUSED_CREDENTIALS:
            raise RemoteError(
                f"{where}: the S3 server refused the credentials ({code}); check "
                + CREDENTIALS_HINT.format(remote=name)
            ) from error
        if code in NO_BUCKET:
            raise RemoteError(
                f"{where}: bucket {parts.netloc!r} does not exist; the local S3 server creates it "
                "at `pair-classifier services up` (services.s3.bucket); elsewhere create it"
            ) from error
        raise RemoteError(f"{where}: S3 answered {code or 'an error'}: {error}") from error
    except BotoCoreError as error:  # timeouts, bad endpoint URLs, missing credentials
        raise RemoteError(f"{where}: {error}; " + START_HINT.format(remote=name)) from error
    return f"{url} at {endpoint}"


def remote_status(config: ServicesConfig, root: Path = Path(".")) -> ServiceStatus:
    """The ``services.s3.dvc_remote`` remote of the project at ``root``, as a status line."""
    name = config.s3.dvc_remote
    settings: Mapping[str, Any] = {}
    try:
        settings = remote_settings(name, root)
        healthy, detail = True, f"remote {name!r}: {check_remote(name, settings)}"
    except RemoteError as error:
        healthy, detail = False, str(error)
    return ServiceStatus(NAME, healthy, str(settings.get("endpointurl") or name), None, detail)
