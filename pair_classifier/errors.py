"""Errors caused by the user's data, configs or environment, reported without a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer

from pair_classifier.logs import configure_logging

USER_ERROR_EXIT_CODE = 2


class PairClassifierError(Exception):
    """Base of the errors whose message alone tells the user what to fix."""


class DataError(PairClassifierError, ValueError):
    """Data cannot be used at all (missing, unreadable layout, missing columns or classes)."""


class ArtifactError(PairClassifierError):
    """A saved model, classifier or export is missing a file or cannot be read."""


class InputError(PairClassifierError, ValueError):
    """A file given to ``predict`` (the input, or the output path) is unusable; the message
    names the file and, for the input, the line and field."""


@contextmanager
def reading_artifact(path: Path, expected: str) -> Iterator[None]:
    """Re-raise a failure to read ``path`` as an ``ArtifactError`` naming it and what it
    should have been, instead of a library's traceback from deep inside its reader."""
    try:
        yield
    except PairClassifierError:
        raise
    except Exception as error:  # the readers raise unrelated types, tokenizers a bare Exception
        detail = f"missing key {error}" if isinstance(error, KeyError) else str(error)
        raise ArtifactError(f"{path}: cannot read {expected}: {detail}") from error


def exit_on_user_error(main: Callable[[], None]) -> None:
    """Run a stage's main with logging set up; on a ``PairClassifierError`` print its message
    and exit with code 2."""
    configure_logging()
    try:
        main()
    except PairClassifierError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)


def exit_command(error: Exception) -> NoReturn:
    """Leave a typer command on a user's error: its message alone, no traceback, code 2."""
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(USER_ERROR_EXIT_CODE)
