"""Writing outputs so that a failure never leaves a half-written or lost artifact behind."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

DIR_MODE = 0o755


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


def write_json(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    staging.replace(path)


def read_json(path: Path) -> Any:
    """Read a UTF-8 JSON file written by ``write_json``."""
    return json.loads(path.read_text(encoding="utf-8"))
