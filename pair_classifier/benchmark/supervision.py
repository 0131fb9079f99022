"""Running a function in a fresh child process, so a variant's peak memory and threads are its
own, and no child outlives the benchmark, answers late or hangs it at exit."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import traceback
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

from pair_classifier.errors import PairClassifierError
from pair_classifier.logs import configure_logging

logger = logging.getLogger(__name__)

# Seconds a variant's process may take to exit after answering (its exit handlers usually take
# well under one) before it is killed.
CHILD_EXIT_GRACE_S = 60.0
# A variant's process that outlives the benchmark ends itself with this code.
ORPHANED_EXIT_CODE = 70


class BenchmarkError(PairClassifierError):
    """A variant could not be measured."""


def in_fresh_process(
    function: Callable[..., dict[str, Any]],
    *args: Any,
    timeout_s: float,
    name: str | None = None,
    exit_grace_s: float = CHILD_EXIT_GRACE_S,
) -> dict[str, Any]:
    """``function(*args)`` in a fresh spawned process, so peak memory and threads are its own.

    The process exits on its own once it has answered, so its exit handlers run and locks it
    made (tqdm's, say) are released rather than reported as leaked semaphores. It is killed only
    when it does not answer within ``timeout_s`` (an error: nothing was measured) or does not
    exit within ``exit_grace_s`` of answering (a warning: a GPU driver hanging at teardown
    should not hang the stage, and the answer stands). It ends itself when this process dies
    first, killed by a signal that leaves no time to kill it. Errors and warnings start with
    ``name``, by default the function's.
    """
    name = name or function.__name__
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_answer, args=(sender, function, args), name=name, daemon=True)
    child.start()
    sender.close()  # the child now holds the only writer, so its death ends the pipe
    with receiver:
        if not receiver.poll(timeout_s):
            child.kill()
            child.join()
            raise BenchmarkError(
                f"{name}: no answer within {timeout_s:g} s "
                "(benchmark.variant_timeout_s); its process was killed"
            )
        try:
            failed, answer = receiver.recv()
        except EOFError:
            child.join()
            raise BenchmarkError(
                f"{name}: its process died before answering (exit code {child.exitcode})"
            ) from None
    child.join(exit_grace_s)
    if child.is_alive():
        warnings.warn(
            f"{name}: its process answered but had not exited {exit_grace_s:g} s "
            "later; killed it",
            RuntimeWarning,
            stacklevel=2,
        )
        child.kill()
        child.join()
    if failed:
        raise answer
    return answer


def _answer(sender: Connection, function: Callable[..., Any], args: tuple) -> None:
    """Run ``function`` in the child and send back (failed, result or exception).

    A spawned child starts with no logging set up: it logs as the stage does (the level comes
    from the environment it inherits), so its progress lines reach the stage's log."""
    threading.Thread(target=_exit_with_parent, name="exit-with-parent", daemon=True).start()
    configure_logging()
    try:
        outcome = (False, function(*args))
    except Exception as error:  # sent to the parent, which raises it there
        error.add_note(f"raised in the benchmark's child process:\n{traceback.format_exc()}")
        outcome = (True, error)
    try:
        sender.send(outcome)
    except Exception:  # an exception that does not pickle: send its text instead
        sender.send((True, RuntimeError(traceback.format_exc())))
    sender.close()


def _exit_with_parent() -> None:
    """In the child: end it as soon as the benchmark's process is gone. A stage killed by SIGTERM
    (``kill``, a CI job's time limit) or SIGKILL runs no exit handlers, so nothing else would stop
    its child, which would go on loading the cores for up to ``benchmark.variant_timeout_s``."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        wait([parent.sentinel])
        os._exit(ORPHANED_EXIT_CODE)
