"""Ctrl-C and SIGTERM on the long-running commands (``train``, ``kb build``, ``labels build``): both stop the work
where it is, the command says what was kept and what re-running does, and exits 130 (Ctrl-C) or 143 (SIGTERM)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler or ``kill`` stopping the run), raised where the process is, as Ctrl-C's
    KeyboardInterrupt is: what is written atomically is written whole or not at all."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _catch_sigterm():
    try:
        return signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave SIGTERM as it is
        return None


def _restore_sigterm(old) -> None:
    if old is not None:
        try:
            signal.signal(signal.SIGTERM, old)
        except ValueError:
            pass


@contextmanager
def stoppable(say: Callable[[str], str]) -> Iterator[None]:
    """Run the block with SIGTERM raised as Ctrl-C is; when either stops it, print ``say(how)`` on stderr (``how``
    is "interrupted" or "terminated (SIGTERM)") and exit 130 or 143. A second SIGTERM while saying it ends the
    process at once (the previous handler is back)."""
    old = _catch_sigterm()
    try:
        yield
    except KeyboardInterrupt as e:
        _restore_sigterm(old)
        terminated = isinstance(e, Terminated)
        typer.echo(say("terminated (SIGTERM)" if terminated else "interrupted"), err=True)
        raise typer.Exit(143 if terminated else 130) from None
    finally:
        _restore_sigterm(old)
