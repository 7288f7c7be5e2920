"""The ``glinker`` command line. Each command group lives in its own module with a ``register(app)``."""

from __future__ import annotations

import importlib
import logging
import sqlite3
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


DTYPE_HELP = ("Model precision: float32, bfloat16, float16, or auto (bfloat16 where this CPU or GPU runs it fast: "
              "~2x on CPUs with AMX; float32 elsewhere).")


def _checked_dtype(value: str | None) -> str | None:
    if value is None:
        return None
    from glinker.pipeline.spec import checked_dtype

    try:
        return checked_dtype(value, "--dtype")
    except GlinkerError as e:
        raise typer.BadParameter(f"{e.message}; {e.fix}") from None


def dtype_option(default_is: str = "the checkpoint's (float32)", extra: str = "") -> typer.models.OptionInfo:
    """The ``--dtype`` option of the commands that load a model, checked when the command line is read (one of
    float32, bfloat16, float16, auto, case and a ``torch.`` prefix aside)."""
    return typer.Option(None, "--dtype", callback=_checked_dtype, metavar="DTYPE",
                        help=f"{DTYPE_HELP} Default: {default_is}.{(' ' + extra) if extra else ''}")


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
    """Console-script entry point: glinker errors print as their message (code, place, fix) and exit 2; so do the
    system's errors that say something of a place written or read (no space left, read-only storage, no permission,
    a damaged SQLite file) which no command said itself. Any other exception keeps its traceback (a bug)."""
    import warnings

    from glinker.errors import StaleKBWarning

    warnings.simplefilter("ignore", StaleKBWarning)  # the CLI logs it: once is enough
    sys.argv[1:] = verbosity_first(sys.argv[1:])
    try:
        app()
    except GlinkerError as e:
        typer.echo(str(e), err=True)
        raise SystemExit(2) from None
    except (OSError, sqlite3.Error) as e:
        said = said_system_error(e, kb="kb" in sys.argv[1:3])
        if said is None:
            raise
        typer.echo(str(said), err=True)
        raise SystemExit(2) from None


def verbosity_first(args: list[str]) -> list[str]:
    """``args`` with the verbosity flags given after the command (``glinker kb build ... -vv``, as errors suggest
    "run with -vv") moved before it, where the ``glinker`` group reads them; nothing after ``--`` is moved."""
    end = args.index("--") if "--" in args else len(args)
    flag = [a for a in args[:end] if a == "--verbose" or (a.startswith("-v") and set(a[1:]) == {"v"})]
    if not flag or args[:len(flag)] == flag:
        return args
    rest = [a for a in args[:end] if a not in flag]
    return [*flag, *rest, *args[end:]]


def said_system_error(e: BaseException, kb: bool = False) -> GlinkerError | None:
    """``e`` (an OSError or a SQLite error) as a glinker error (a KBError for a ``kb`` command, else a DataError)
    naming the file and the fix, when it is about the place: no space left, read-only storage, no permission, a
    damaged SQLite file, a disk error; None for another error."""
    from glinker.errors import DataError, KBError
    from glinker.io import system_error_kind

    cls = KBError if kb else DataError
    again = "then run the command again" + (" (`kb build` resumes where it stopped)" if kb else "")
    kind = system_error_kind(e)
    if isinstance(e, OSError):
        at = str(e.filename or "")
        if kind == "toolong":  # a model or KB name, or a path, longer than a file name may be (often 255 bytes)
            at = at if len(at) <= 80 else at[:60] + f"... ({len(at)} characters)"
        said = {  # kind: (message, fix)
            "full": (f"no space left on the device{' holding ' + at if at else ''}",
                     f"free space there (or write to a device with more room), {again}"),
            "readonly": (f"cannot write {at or 'a file'}: read-only file system",
                         f"write to writable storage (or make this one writable), {again}"),
            "denied": (f"permission denied: {at or 'a file'}",
                       f"check the permissions of it and of its folder (or use another place), {again}"),
            "io": (f"disk I/O error{': ' + at if at else ''}",
                   f"check the storage (a disk or network mount error), {again}"),
            "toolong": ("a path or name is too long for the file system" + ("" if at else f" ({e.strerror})"),
                        "check the value given (a model, KB or file path: each part at most 255 bytes here)"),
        }.get(kind or "")
        return cls(said[0], where=at or None, fix=said[1]) if said is not None else None
    if kind == "full":
        return cls("a SQLite database could not be written: no space left on its device", fix=f"free space, {again}")
    if kind == "readonly":
        return cls("a SQLite database could not be written: it is read-only",
                   fix=f"make it and its folder writable (or copy it to writable storage), {again}")
    if kind == "damaged":
        return cls(f"a SQLite database is damaged ({e})", fix="rebuild it (a KB: `glinker kb build ... --out DIR`), "
                   "or restore it from a copy")
    if kind == "io":
        return cls("disk I/O error reading or writing a SQLite database",
                   fix=f"check the storage (a disk or network mount error, no space left), {again}")
    return None
