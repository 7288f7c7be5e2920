"""The ``glinker`` command line. Each command group lives in its own module with a ``register(app)``."""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from glinker.errors import GlinkerError

def _no_type_for_flags() -> None:
    """Help shows no value type for flags and counters (typer >= 0.2x prints ``--skip-bad <bool>`` and ``-v <int>``,
    as if they took a value: ``glinker -v 1`` then fails as "No such command '1'")."""
    opt = getattr(getattr(typer, "core", None), "TyperOption", None)
    shown = getattr(opt, "display_type_rich", None)
    if shown is None or getattr(shown, "_glinker", False):
        return

    def display_type_rich(self, ctx):  # type: ignore[no-untyped-def]
        if getattr(self, "is_flag", False) or getattr(self, "count", False):
            return None
        return shown(self, ctx)

    display_type_rich._glinker = True  # type: ignore[attr-defined]
    opt.display_type_rich = display_type_rich


_no_type_for_flags()

app = typer.Typer(
    name="glinker",
    help="Link text to knowledge bases with the GLiNER bi-encoder.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command groups, in the order `glinker --help` lists them. A module that is absent is skipped.
_GROUPS = ("pipeline", "ner", "labels", "link", "serve", "kb", "eval", "train", "bench")


def _version(value: bool) -> None:
    if value:
        from glinker import __version__

        typer.echo(f"glinker {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-v info, -vv debug)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print glinker's version and exit."),
) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _load_groups() -> None:
    for name in _GROUPS:
        try:
            mod = importlib.import_module(f"glinker.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"glinker.cli.{name}":
                continue
            raise
        mod.register(app)


_load_groups()


def main() -> None:
    """Console-script entry point: glinker errors print as their message (code, place, fix) and exit 2."""
    try:
        app()
    except GlinkerError as e:
        typer.echo(str(e), err=True)
        raise SystemExit(2) from None
