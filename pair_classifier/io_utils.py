"""Writing outputs so that a failure never leaves a half-written or lost artifact behind."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DIR_MODE = 0o755
FILE_MODE = 0o644  # mkstemp makes files private; outputs are ordinary files


def replace_dir_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Let ``write`` fill a staging folder beside ``target``, then swap it in.

    If ``write`` raises, ``target`` keeps its previous content.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(staging)
        staging.chmod(DIR_MODE)  # mkdtemp makes it private; outputs are ordinary folders
        backup = target.with_name(f".{target.name}.old")
        if backup.exists():
            shutil.rmtree(backup)
        if target.exists():
            target.rename(backup)
        staging.rename(target)
        if backup.exists():
            shutil.rmtree(backup)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


@contextmanager
def replacing_file(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, so writers that go by it still work) that
    replaces ``path`` only when the block finishes: a failure part-way leaves ``path`` as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    staging = Path(name)
    try:
        yield staging
        staging.chmod(FILE_MODE)
        staging.replace(path)
    finally:
        staging.unlink(missing_ok=True)


def non_finite_key(data: Any, where: str = "$") -> str | None:
    """Where in ``data`` the first NaN or infinity sits (``$.a[3].b``), or ``None``.

    JSON has no NaN: Python would write a bare ``NaN`` that strict readers reject.
    """
    if isinstance(data, float) and not math.isfinite(data):
        return where
    if isinstance(data, Mapping):
        children: Iterator[tuple[str, Any]] = ((f"{where}.{k}", v) for k, v in data.items())
    elif isinstance(data, list | tuple):
        children = ((f"{where}[{i}]", v) for i, v in enumerate(data))
    else:
        return None
    return next((found for key, value in children if (found := non_finite_key(value, key))), None)


def write_json(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and an atomic rename; NaN and infinities are refused
    (naming the file and the key) before anything is written, as they are not JSON."""
    if (where := non_finite_key(data)) is not None:
        raise ValueError(
            f"{path}: refusing to write a NaN or infinity at {where}: not valid JSON; "
            "write null and say why instead"
        )
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
    with replacing_file(path) as staging:
        staging.write_text(text, encoding="utf-8")


def read_json(path: Path) -> Any:
    """Read a UTF-8 JSON file written by ``write_json``."""
    return json.loads(path.read_text(encoding="utf-8"))
