"""Following a traffic log like ``tail -F``: the complete lines appended since the last read,
across rotation (``RotatingFileHandler`` renames the live file to ``.1`` and starts a new one)
and truncation, in one file or in a folder of per-process files (``serving.traffic_log``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import BinaryIO

from pair_classifier.serving.traffic_log import LOG_SUFFIX

logger = logging.getLogger(__name__)


class LogTail:
    """Complete lines appended to one file since the last ``read``, across rotation: when the
    path names another file (the old one renamed to ``.1``) the rest of the old one is read
    first, then the new one from its start; when it shrank (truncated) it is read again from
    its start. ``finished`` once the path is gone (its lines read to the end)."""

    def __init__(self, path: Path, from_start: bool) -> None:
        self.path = path
        self.finished = False
        self._handle: BinaryIO = path.open("rb")
        if not from_start:
            self._handle.seek(0, os.SEEK_END)
            logger.info("%s: following from byte %d", path, self._handle.tell())
        self._partial = b""

    def _switch(self) -> str:
        """What became of the path since the last read: ``same``, ``rotated`` (reopened),
        ``truncated`` (rewound) or ``gone`` (closed)."""
        try:
            now = self.path.stat()
        except FileNotFoundError:
            self.close()
            self.finished = True
            return "gone"
        if now.st_ino != os.fstat(self._handle.fileno()).st_ino:
            logger.info("%s: rotated; reading the new file", self.path)
            self._handle.close()
            self._handle = self.path.open("rb")
            return "rotated"
        if now.st_size < self._handle.tell():
            logger.info("%s: truncated; reading it from its start", self.path)
            self._handle.seek(0)
            return "truncated"
        return "same"

    def read(self) -> list[bytes]:
        if self.finished:
            return []
        data = self._partial + self._handle.read()
        change = self._switch()
        if change == "truncated":
            data = b""  # what was read is gone with the file's old content
        elif change != "same" and data and not data.endswith(b"\n"):
            data += b"\n"  # the old file's last line, complete though unterminated
        if change != "gone":
            data += self._handle.read()
        lines = data.split(b"\n")
        self._partial = lines.pop()
        return [line for line in lines if line.strip()]

    def close(self) -> None:
        self._handle.close()


class TrafficTail:
    """New lines of a traffic log: one file, or a folder's live files (``<server>-<pid>.jsonl``,
    one per model process; a file that appears after the start is new traffic, read whole)."""

    def __init__(self, path: Path, from_start: bool) -> None:
        self.path = path
        self.tails: dict[Path, LogTail] = {}
        self._from_start = from_start
        self._started = False

    def _live_files(self) -> list[Path]:
        if self.path.is_dir():
            return sorted(self.path.glob(f"*{LOG_SUFFIX}"))
        return [self.path] if self.path.is_file() else []

    def read(self) -> list[tuple[Path, list[bytes]]]:
        for file in self._live_files():
            if file not in self.tails:
                try:
                    self.tails[file] = LogTail(file, self._from_start or self._started)
                except FileNotFoundError:
                    continue  # removed since the listing
                except OSError as error:
                    logger.warning("%s: cannot be read (%s); tried again later", file, error)
        self._started = True
        read = [(file, tail.read()) for file, tail in self.tails.items()]
        for file in [file for file, tail in self.tails.items() if tail.finished]:
            del self.tails[file]
        return read

    def close(self) -> None:
        for tail in self.tails.values():
            tail.close()
        self.tails.clear()
