"""Errors caused by the user's data, configs or environment, reported without a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

USER_ERROR_EXIT_CODE = 2


class PairClassifierError(Exception):
    """Base of the errors whose message alone tells the user what to fix."""


def exit_on_user_error(main: Callable[[], None]) -> None:
    """Run a command; on a ``PairClassifierError`` print its message and exit with code 2."""
    try:
        main()
    except PairClassifierError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
