"""Getting the raw data into ``data/``: DVC remote, the team's shared drive, or the web."""

from __future__ import annotations

import logging
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pair_classifier.config import DataConfig
from pair_classifier.constants import DATA_DVC_FILE, DOWNLOAD_TIMEOUT_S
from pair_classifier.data.reading import DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublicSource:
    """Files published online, and how to lay them out as the data config expects."""

    base_url: str
    files: dict[str, str]  # local file name -> remote file name
    tail_split: tuple[str, str, int] | None = None  # (from file, to file, rows moved)


# MRPC as SentEval publishes it; the validation file is the last 500 training pairs.
PUBLIC_SOURCES = {
    "senteval_mrpc": PublicSource(
        base_url="https://dl.fbaipublicfiles.com/senteval/senteval_data/",
        files={
            "msr-para-train.tsv": "msr_paraphrase_train.txt",
            "msr-para-test.tsv": "msr_paraphrase_test.txt",
        },
        tail_split=("msr-para-train.tsv", "msr-para-val.tsv", 500),
    )
}


def expected_files(config: DataConfig) -> list[str]:
    """The raw files the data config names (validation is optional)."""
    return [name for name in (config.files.train, config.files.val, config.files.test) if name]


def _complete(directory: Path, config: DataConfig) -> bool:
    return all((directory / name).is_file() for name in expected_files(config))


def _pull_from_dvc_remote() -> str:
    """``dvc pull data.dvc`` when this project has a default DVC remote. Returns "" when it
    pulled, else why not; a failed pull falls through to the other sources (logged as a
    warning), and the reason is reported if none of them has the data either. An S3 remote is
    checked first, so an unreachable endpoint or refused credentials are named as such."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    from pair_classifier.services.remote import RemoteError, check_remote

    if not DATA_DVC_FILE.is_file():
        return f"no {DATA_DVC_FILE}"
    try:
        with Repo() as repo:
            remote = repo.config["core"].get("remote")
            if not remote:
                return "no DVC remote configured"
            check_remote(remote, repo.config["remote"].get(remote, {}))
            repo.pull(targets=[str(DATA_DVC_FILE)])
    except RemoteError as error:
        logger.warning("dvc pull skipped, trying the other sources: %s", error)
        return f"dvc pull skipped: {error}"
    except DvcException as error:
        logger.warning("dvc pull failed, trying the other sources: %s", error)
        return f"dvc pull failed: {error}"
    return ""


@contextmanager
def _staging_beside(target: Path) -> Iterator[Path]:
    """A folder beside ``target`` to fill; its files move into ``target`` only when the block
    finishes, so a failure part-way leaves ``target`` as it was."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as staging:
        yield Path(staging)
        target.mkdir(parents=True, exist_ok=True)
        for path in Path(staging).iterdir():
            path.replace(target / path.name)


def _copy_from(source: Path, target: Path, config: DataConfig) -> None:
    """Copy the raw files through a staging folder: a failed copy leaves no truncated file
    behind that a later call would take as complete."""
    with _staging_beside(target) as staging:
        for name in expected_files(config):
            try:
                shutil.copy2(source / name, staging / name)
            except OSError as error:
                raise DataError(
                    f"{source / name}: copy failed ({error}); {target} left as it was"
                ) from error


def _split_tail(directory: Path, split: tuple[str, str, int], origin: str) -> None:
    """Move the last rows of one downloaded file (``origin``: its URL) to a file of their own."""
    source_name, tail_name, rows = split
    source = directory / source_name
    header, *lines = source.read_bytes().splitlines(keepends=True)
    if len(lines) <= rows:
        raise DataError(f"{origin}: {len(lines)} rows, cannot move the last {rows} to {tail_name}")
    source.write_bytes(header + b"".join(lines[:-rows]))
    (directory / tail_name).write_bytes(header + b"".join(lines[-rows:]))


def _download(source: PublicSource, target: Path) -> None:
    """Fetch and lay out every file in a staging folder beside ``target``, then move them in:
    a failed or partial download leaves ``target`` as it was."""
    with _staging_beside(target) as staging:
        for local, remote in source.files.items():
            url = source.base_url + remote
            try:
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                    (staging / local).write_bytes(response.read())
            except (OSError, ValueError) as error:  # URLError, HTTPError, timeouts; bad URLs
                raise DataError(
                    f"{url}: download failed ({error}); {target} left as it was"
                ) from error
        if source.tail_split:
            origin = source.base_url + source.files[source.tail_split[0]]
            _split_tail(staging, source.tail_split, origin)


def download_data(config: DataConfig, shared_dir: Path | None = None) -> str:
    """Make ``config.dir`` hold the raw files; return where they came from.

    Order: already there; ``dvc pull`` when a DVC remote is configured; a copy from the shared
    drive (``shared_dir`` or ``data.shared_dir``); the public source the data config names.
    A ``shared_dir`` the caller names (``--source-dir``) is the only source tried: asked for a
    folder, the user must not silently get other data.
    """
    target = Path(config.dir)
    if _complete(target, config):
        return "present"
    if shared_dir is not None:
        if not _complete(shared_dir, config):
            missing = [name for name in expected_files(config) if not (shared_dir / name).is_file()]
            raise DataError(
                f"{shared_dir}: --source-dir lacks {missing} (expected {expected_files(config)}); "
                f"{target} left as it was"
            )
        _copy_from(shared_dir, target, config)
        return f"shared drive {shared_dir}"
    pull_problem = _pull_from_dvc_remote()
    if not pull_problem and _complete(target, config):
        return "dvc remote"
    shared = Path(config.shared_dir) if config.shared_dir else None
    if shared is not None and _complete(shared, config):
        _copy_from(shared, target, config)
        return f"shared drive {shared}"
    if config.public_source in PUBLIC_SOURCES:
        _download(PUBLIC_SOURCES[config.public_source], target)
        if _complete(target, config):
            return f"public source {config.public_source}"
    dvc_outcome = pull_problem or "pulled, but not those files"
    raise DataError(
        f"{target}: no data. Expected files {expected_files(config)} (DVC: {dvc_outcome}); "
        "configure a DVC remote, pass --source-dir with those files, or set data.public_source."
    )
