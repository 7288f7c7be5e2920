"""Reading and writing linked documents: JSON, JSONL with resume, and their validation.

JSONL is the format for long runs: :func:`write_jsonl` appends one line per document and flushes (and
fsyncs) once per call, so a batch written is a batch kept; :func:`read_done_ids` tells a restarted run which
documents are already done. A line cut by a crash is detected, reported and removed before appending.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glinker.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def to_jsonable(doc: Any) -> dict[str, Any]:
    """A linked document (pydantic record or dict) as a plain JSON-ready dict."""
    if hasattr(doc, "model_dump"):
        return doc.model_dump(mode="json")
    if isinstance(doc, dict):
        return doc
    raise DataError(f"cannot serialise {type(doc).__name__}", where="documents",
                    fix="pass glinker.LinkedDocument records or dicts")


# characters JSON allows raw inside strings but Python's str.splitlines() (and some other readers) break lines at
_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def one_line(js: str) -> str:
    """A JSON text with U+0085, U+2028 and U+2029 escaped, so that it is one line for every reader of JSONL."""
    return js.translate(_LINE_BREAKS)


def json_line(obj: Any) -> str:
    """``obj`` as one JSONL line's text (``json.dumps``, UTF-8 kept, line breaks inside strings escaped)."""
    import json

    return one_line(json.dumps(obj, ensure_ascii=False))


def _dumps(doc: Any) -> str:
    if hasattr(doc, "model_dump_json"):
        return one_line(doc.model_dump_json())
    # pydantic's own JSON writer (compact, its float format: 0.000073, 1e-7): a record written from a dict (a queue
    # worker's answer) and from the model (a local run) are the same bytes
    import pydantic_core

    return one_line(pydantic_core.to_json(to_jsonable(doc)).decode("utf-8"))


def _partial_tail(path: Path) -> int:
    """Byte length of an unterminated last line (0 when the file ends with a newline or is empty)."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb") as f:
        block = 1 << 16
        pos = size
        tail = b""
        while pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            tail = f.read(step) + tail
            if tail.endswith(b"\n"):
                return 0
            nl = tail.rfind(b"\n")
            if nl >= 0:
                return len(tail) - nl - 1
        return len(tail)


def repair_jsonl_tail(path: str | Path) -> int:
    """Remove a last line cut by an interrupted write; returns the number of bytes removed."""
    p = Path(path)
    if not p.is_file():
        return 0
    n = _partial_tail(p)
    if n:
        log.warning("%s: removing an incomplete last line (%d bytes) left by an interrupted write", p, n)
        with open_plain_file(p, "r+b") as f:
            f.truncate(os.fstat(f.fileno()).st_size - n)
    return n


def write_jsonl(path: str | Path, docs: Iterable[Any], append: bool = True, fsync: bool = True) -> int:
    """Write documents as JSON lines (append by default), flushing once at the end of the call.

    Call it once per batch. In append mode an incomplete last line from a crash is removed first.
    Returns the number of documents written.
    """
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    if append:
        repair_jsonl_tail(p)
    n = 0
    with open_plain_file(p, "a" if append else "w", special_ok=True) as f:
        for d in docs:
            f.write(_dumps(d))
            f.write("\n")
            n += 1
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    return n


def system_error_kind(e: BaseException) -> str | None:
    """What an OSError or a SQLite error says of the place it met: ``"full"`` (no space left), ``"readonly"``
    (read-only storage or database), ``"denied"`` (no permission), ``"damaged"`` (a SQLite file that is not a
    sound database), ``"io"`` (a disk or network mount error), ``"toolong"`` (a path or name longer than the file
    system takes), or None for another error. One reading for the KB's own errors (``glinker.kb.store``) and the
    command line's last resort (``glinker.cli``)."""
    import errno
    import sqlite3

    if isinstance(e, OSError):
        return {errno.ENOSPC: "full", errno.EDQUOT: "full", errno.EROFS: "readonly", errno.EACCES: "denied",
                errno.EPERM: "denied", errno.EIO: "io",
                errno.ENAMETOOLONG: "toolong"}.get(e.errno)  # type: ignore[call-overload]
    if not isinstance(e, sqlite3.Error):
        return None
    code = getattr(e, "sqlite_errorcode", None)
    code = code & 0xFF if isinstance(code, int) else None
    text = str(e).lower()
    if code == 10 or "disk i/o error" in text:  # SQLITE_IOERR
        return "io"
    if code in (11, 26) or "malformed" in text or "not a database" in text:  # SQLITE_CORRUPT, SQLITE_NOTADB
        return "damaged"
    if code == 13 or "disk is full" in text:  # SQLITE_FULL
        return "full"
    if code == 8 or "readonly database" in text:  # SQLITE_READONLY
        return "readonly"
    return None


def plain_mode(path: str | Path, executable: bool = False) -> None:
    """Give a file or folder made by ``tempfile`` (owner-only, 0600/0700) the mode a plain ``open``/``mkdir``
    would have given it under the current umask, before it is renamed into place (shared storage reads it)."""
    os.chmod(path, (0o777 if executable else 0o666) & ~current_umask())


def current_umask() -> int:
    """The process's umask, read without changing it where the system tells it (Linux: ``/proc/self/status``);
    elsewhere set to 077 and restored at once (a file another thread creates in between is owner-only then,
    never world-writable)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


# (O_BINARY: on Windows a descriptor from os.open is in text mode without it, which turned "\n" into "\r\r\n")
_NO_LINK = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def open_plain(path: str | Path, flags: int, what: str = "", where: str | None = None, fix: str | None = None,
               own: bool = False, special_ok: bool = False) -> int:
    """``os.open(path, flags)`` for a file glinker writes (or locks) beside others, in a folder other users may write
    too: never through a symbolic link planted at ``path`` (``O_NOFOLLOW``: its target is never opened), and only a
    regular file (``special_ok``: also a named pipe or a device, such as a JSONL stream read by another program);
    with ``own``, also one no other hard link names (a file whose mode glinker changes). Anything else is a
    ConfigError naming ``path`` (``what`` says what the file is: ", the KB's writer lock")."""
    import errno
    import stat

    fix = fix or "remove it (glinker keeps a plain file of its own there) and run this again"
    # a FIFO planted where a lock or a record is expected would block the open: O_NONBLOCK, then refused
    nonblock = 0 if special_ok else getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | _NO_LINK | nonblock, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP or os.path.islink(path):
            raise ConfigError(f"{path}{what} is a symbolic link: glinker does not write through one",
                              where=where or str(path), fix=fix) from None
        if e.errno == errno.ENXIO and not special_ok:  # a FIFO no one reads, opened for writing without blocking
            raise ConfigError(f"{path}{what} is not a regular file", where=where or str(path), fix=fix) from None
        raise
    st = os.fstat(fd)
    regular = stat.S_ISREG(st.st_mode)
    if (not regular and not special_ok) or (own and regular and st.st_nlink > 1):
        os.close(fd)
        kind = "not a regular file" if not regular else "a file that another hard link names too"
        raise ConfigError(f"{path}{what} is {kind}", where=where or str(path), fix=fix)
    if nonblock:
        os.set_blocking(fd, True)
    return fd


def open_plain_file(path: str | Path, mode: str, **kw: Any) -> Any:
    """:func:`open_plain` as a file object: ``mode`` one of "a", "a+", "r+b", "w", "wb" (text modes in UTF-8)."""
    flags = {"a": os.O_WRONLY | os.O_APPEND | os.O_CREAT, "a+": os.O_RDWR | os.O_APPEND | os.O_CREAT,
             "r+b": os.O_RDWR, "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
             "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC}[mode]
    fd = open_plain(path, flags, **kw)
    try:
        return os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"}))
    except BaseException:
        os.close(fd)
        raise


def _special(path: str | Path) -> bool:
    """Whether ``path`` leads (through links too) to something that is no regular file: a named pipe, a terminal,
    /dev/stdout."""
    import stat

    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False  # not there (yet): a new file


def refuse_linked_file(path: str | Path, where: str) -> None:
    """A ConfigError when ``path`` is a symbolic link to a regular file (or to nothing): an output is written at its
    own path, never through a link (planted in a shared folder, it would have glinker overwrite its target); a link
    to a pipe or a device (``/dev/stdout``) is fine."""
    if os.path.islink(path) and not _special(path):
        raise ConfigError(f"{where} {path} is a symbolic link (to {os.readlink(path)}): glinker does not write through "
                          "one", where=where, fix="give the file's own path, or remove the link")


def open_output(path: str | Path, mode: str, where: str) -> Any:
    """An output file opened for writing (``mode`` "w" or "a"): a pipe or device as it is (``/dev/stdout``, reached
    through its link), anything else by :func:`open_plain_file` (never through a link)."""
    if _special(path):
        return open(path, mode, encoding="utf-8")
    return open_plain_file(path, mode, where=where, special_ok=True)


def atomic_write(path: str | Path, data: str | bytes | Any, fsync: bool = True, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` (text, bytes, or a callable given the open binary file) through a temporary file
    of its own folder that no one else can have named (``mkstemp``: a fresh name, created exclusively, never a link
    planted there), fsynced, then renamed into place; the file gets ``mode`` (default: what a plain ``open()`` gives
    under the umask, not mkstemp's owner-only 0600). A failure leaves ``path`` as it was and no temporary file."""
    import tempfile

    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        if mode is None:
            plain_mode(tmp)
        else:
            os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_SURROGATE = None


class Busy(Exception):
    """Raised by :func:`locked` (``wait=False``) when another process holds the lock."""


@contextlib.contextmanager
def locked(path: str | Path, wait: bool = True, mode: str = "a") -> Iterator[Any]:
    """An exclusive lock on the file ``path`` (created if missing) for the ``with`` block; yields the open file
    (``mode``) so the holder may write in it. ``wait=False`` raises :class:`Busy` at once when another process
    holds it; otherwise it waits. Released when the block ends or the process dies (no stale locks). Where fcntl
    is missing (Windows) nothing is locked."""
    with open_plain_file(path, mode, what=", a lock file") as f:
        lock_exclusive(f.fileno(), path, wait=wait)
        try:
            yield f
        finally:
            unlock(f.fileno())


def lock_exclusive(fd: int, path: str | Path, wait: bool = False, what: str = "", where: str | None = None,
                   fix: str = "put it on a local file system, or one with working file locks") -> None:
    """An exclusive ``flock`` on the open file ``fd`` (the file ``path``; ``what`` says what it is in messages):
    :class:`Busy` when another process holds it and ``wait`` is false, else waits for it; a ConfigError (at
    ``where``, default the path, with ``fix``) when the file system has no locks (ENOLCK: some NFS mounts), which is
    not "busy". The file must be open for writing where it may sit on NFS (flock is emulated there with byte-range
    locks, and an exclusive one needs write access). Where fcntl is missing (Windows) nothing is locked."""
    import errno

    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except OSError as e:
        # held by another process: EWOULDBLOCK/EAGAIN, or EACCES where flock is emulated with fcntl locks (CIFS)
        if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):  # no lock to be had here
            from glinker.errors import ConfigError

            raise ConfigError(f"cannot lock {path}{what}: {e.strerror or e}", where=where or str(path),
                              fix=fix) from None
        if not wait:
            raise Busy(str(path)) from None
    log.info("waiting for the process that holds %s", path)
    fcntl.flock(fd, fcntl.LOCK_EX)


def unlock(fd: int) -> None:
    """Release a :func:`lock_exclusive` lock (closing the file releases it too)."""
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)
    except (ImportError, OSError):  # pragma: no cover - Windows, or already unusable: closing releases it
        pass


def already_written(done: ResumeState, k: int, doc_id: str, text: Any, output: Any, where: str, fix: str) -> bool:
    """Resuming by place: whether the ``k``-th document read (1-based, id ``doc_id``) is among the documents an
    output already holds in input order; a DataError when the output holds another document at that place: another
    id, or the same id (a line number, for input without ids) with another text (it was written from another
    input, or the input changed)."""
    if k > len(done.ids):
        return False
    if done.ids[k - 1] and done.ids[k - 1] != doc_id:
        raise DataError(f"document {doc_id!r} is not the one {output} holds at this place (record {k}: "
                        f"{done.ids[k - 1]!r}): the output was written from another input", where=where, fix=fix)
    if done.texts[k - 1] and done.texts[k - 1] != text_digest(text):
        raise DataError(f"document {doc_id!r} has another text than the one {output} holds at this place (record "
                        f"{k}): the output was written from another input, or the input changed since",
                        where=where, fix=fix)
    return True


def check_text(text: str, where: str) -> None:
    """Raise a DataError naming ``where`` when ``text`` holds a lone surrogate code point (JSON such as
    ``"\\ud800"`` decodes to one): no tokenizer or file encoding takes it."""
    global _SURROGATE
    if _SURROGATE is None:
        import re

        _SURROGATE = re.compile("[\ud800-\udfff]")
    m = _SURROGATE.search(text)
    if m is not None:
        raise DataError(f"the text holds a lone surrogate {m.group().encode('utf-8', 'surrogatepass')!r} "
                        f"(\\u{ord(m.group()):04x} at character {m.start()}), which is not Unicode text",
                        where=where, fix="fix the producer of this text (a UTF-16 string cut in half), or drop the "
                        "character")


def wide_text_error(path: str | Path, head: bytes) -> DataError | None:
    """The DataError for a text file whose first bytes ``head`` are UTF-16 or UTF-32 (with or without a byte-order
    mark: read as UTF-8, such a file decodes to NUL-interleaved garbage), else None."""
    from glinker.kb.adapters import wide_unicode

    enc = wide_unicode(head)
    if enc is None:
        return None
    p = Path(path)
    if str(path) in ("-", "<stdin>"):
        return DataError(f"standard input is {enc} text, not UTF-8", where="<stdin>",
                         fix=f"convert it on the way in: ... | iconv -f {enc} -t UTF-8 | glinker ... -")
    return DataError(f"the file is {enc} text, not UTF-8", where=str(p),
                     fix=f"save it as UTF-8 (e.g. iconv -f {enc} -t UTF-8 {p.name} > {p.stem}.utf8{p.suffix})")


def not_utf8(path: str | Path) -> DataError:
    """The DataError for a text file that is not UTF-8, naming its first undecodable line and byte."""
    p = Path(path)
    with p.open("rb") as f:
        wide = wide_text_error(p, f.read(64))
        if wide is not None:  # Notepad's and Excel's "Unicode": latin1 is no fix for it
            return wide
        f.seek(0)
        for n, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return DataError(f"not UTF-8 text (byte {e.start} of the line: {raw[e.start:e.start + 1]!r})",
                                 where=f"{p}:{n}", fix="re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)")
    return DataError("not UTF-8 text", where=str(p), fix="re-encode the file as UTF-8")


def iter_jsonl_dicts(path: str | Path, skip_partial_tail: bool = True) -> Iterator[tuple[dict, int]]:
    """Yield ``(record, line_number)``; an unterminated invalid last line is skipped (with a warning)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"file not found: {p}", where=str(p), fix="check the path")
    with p.open("r", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                if skip_partial_tail and not line.endswith("\n"):
                    log.warning("%s:%d: ignoring an incomplete last line (interrupted write)", p, n)
                    return
                raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", where=f"{p}:{n}",
                                fix="each line must be one complete JSON object") from None
            if not isinstance(rec, dict):
                raise DataError("line is not a JSON object", where=f"{p}:{n}", fix="write one object per line")
            yield rec, n


def _first_problem(e: Any) -> str:
    """A pydantic ValidationError's first problem as ``field.path: message`` (the message alone for a check of
    the whole record, without pydantic's "Value error, " prefix)."""
    first = e.errors()[0]
    msg = str(first["msg"]).removeprefix("Value error, ")
    loc = ".".join(map(str, first["loc"]))
    return f"{loc}: {msg}" if loc else msg


def cache_root() -> Path:
    """glinker's cache: ``$GLINKER_CACHE``, else ``~/.cache/glinker`` (shipped models made whole, KBs read from their
    sources)."""
    return Path(os.environ.get("GLINKER_CACHE") or Path.home() / ".cache" / "glinker")


def file_in_the_way(path: Path) -> Path | None:
    """The file (not folder) at ``path`` or above it that keeps ``path`` from being made a folder; None if none."""
    return next((q for q in (path, *path.parents) if q.exists() and not q.is_dir()), None)


def cache_folder(path: Path, key: str | None = None) -> Path:
    """``path`` created (with its parents): a folder of the cache, or the one a pipeline's ``key`` (``cache``)
    names. When it cannot be (a file in the way, no permission), a ConfigError that names the setting it came from
    (that key, else ``GLINKER_CACHE``) and what is in the way."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        env = os.environ.get("GLINKER_CACHE")
        file = file_in_the_way(path)
        where = key or (f"GLINKER_CACHE={env}" if env else "GLINKER_CACHE (unset: ~/.cache/glinker)")
        setting = f"`{key}:`" if key else "GLINKER_CACHE (export GLINKER_CACHE=/a/writable/folder)"
        raise ConfigError(f"cannot create the cache folder {path}: {e.strerror or e}", where=where,
                          fix=(f"{file} is a file, not a folder: " if file is not None else "")
                          + f"point {setting} at a folder that can be created and written") from None
    return path


def iter_linked_jsonl(path: str | Path) -> Iterator[Any]:
    """Stream :class:`glinker.types.LinkedDocument` records from JSONL, validating each line."""
    from pydantic import ValidationError

    from glinker.types import LinkedDocument

    for rec, n in iter_jsonl_dicts(path):
        try:
            yield LinkedDocument.model_validate(rec)
        except ValidationError as e:
            raise DataError(f"not a linked document: {_first_problem(e)}",
                            where=f"{path}:{n}", fix="lines must be LinkedDocument JSON (id, text, links)") from None


@dataclass
class ResumeState:
    """What a previous run left in a JSONL output: the ids done and whether a line was cut."""

    done_ids: set[str] = field(default_factory=set)
    ids: list[str] = field(default_factory=list)  # the records' ids in file order ("" for a record without one)
    texts: list[bytes] = field(default_factory=list)  # digests of their texts (text_digest; b"" without one)
    lines: int = 0
    partial_tail: bool = False

    @property
    def count(self) -> int:
        return self.lines

    def add(self, doc_id: Any, digest: bytes) -> None:
        """One more document written: its id (None: none) and its text's digest."""
        self.lines += 1
        self.ids.append(str(doc_id) if doc_id is not None else "")
        self.texts.append(digest)
        if doc_id is not None:
            self.done_ids.add(str(doc_id))


def free_id(n: int, taken: set[str]) -> str:
    """``str(n)``, or when ``taken`` holds it (another document's own id), ``n#2`` (``n#3``, ...: the first free one,
    the numbering :class:`InputIds` uses too); added to ``taken``. ``glinker serve`` and ``Pipeline.link`` number the
    documents of a request or call without an id this way."""
    key, k = str(n), 2
    while key in taken:
        key, k = f"{n}#{k}", k + 1
    taken.add(key)
    return key


class InputIds:
    """The ids of one input's documents, read in order (``glinker link`` and ``glinker ner`` on JSONL): a record's
    own ``id``, else its line number, unless an earlier record has that number as its own id: then ``N#2``
    (``N#3``, ...: the first no earlier record has), so that a generated id never repeats an id read before it. A
    record whose own id is the id generated for an earlier line (``{"id": "3"}`` on line 7 when line 3 has none)
    is a DataError naming both lines: that id, maybe written already, cannot change. Records may repeat each
    other's own ids (an output is resumed by place, not by id). Kept: the own ids that a later line's generated id
    could be (a later line's number, ``N#k``), the rare ``N#k`` generated, and one bit a line for the lines
    numbered."""

    FIX = ("give every record an id, or none (a record without one is numbered by its line); or pass --skip-bad")

    AHEAD_CAP = 1_000_000  # own ids kept for later lines at most (~90 MB); past it generated ids may repeat them

    def __init__(self, source: str, max_line: int | None = None) -> None:
        self.source = source
        if max_line is None:  # a plain file has at most one line per byte: ids past that are never generated
            try:
                p = Path(source)
                if p.is_file() and p.suffix.lower() not in (".gz", ".bz2", ".xz", ".zst"):
                    max_line = p.stat().st_size + 1
            except (OSError, ValueError):
                pass
        self.max_line = max_line
        self.ahead: set[str] = set()  # own ids that a later line's generated id could be
        self.renamed: dict[str, int] = {}  # generated N#k -> its line
        self.numbered = bytearray()  # bit n: line n has no id and is numbered n

    def _numbered(self, line: int) -> bool:
        i = line >> 3
        return i < len(self.numbered) and bool(self.numbered[i] >> (line & 7) & 1)

    def assign(self, given: Any, line: int) -> str:
        """The id of the record on ``line`` (1-based, increasing call to call), whose own id is ``given`` (None:
        it has none); a DataError (``FILE:LINE``) when ``given`` is the id generated for an earlier line."""
        if given is None:
            key = str(line)
            if key in self.ahead:  # an earlier record's own id
                self.ahead.discard(key)
                k = 2
                while f"{line}#{k}" in self.ahead:
                    k += 1
                key = f"{line}#{k}"
                self.renamed[key] = line
                return key
            i = line >> 3
            if i >= len(self.numbered):
                self.numbered.extend(bytes(max(i + 1 - len(self.numbered), len(self.numbered))))
            self.numbered[i] |= 1 << (line & 7)
            return key
        key = str(given)
        if self.ahead:
            self.ahead.discard(str(line))  # passed: no longer a later line's
        number, sep, k = key.partition("#")
        if not (number.isascii() and number.isdigit() and number[0] != "0") \
                or sep and not (k.isascii() and k.isdigit()):
            return key  # not a form a generated id has
        n = int(number)
        if n > line:  # a later line's, should it have no id
            if (self.max_line is None or n <= self.max_line) and len(self.ahead) < self.AHEAD_CAP:
                self.ahead.add(key)
            elif len(self.ahead) >= self.AHEAD_CAP and not getattr(self, "_capped", False):
                self._capped = True
                log.info("%s: over %d ids that later lines could be numbered as; from here a record without an id "
                         "may be given one of them", self.source, self.AHEAD_CAP)
            return key
        first = self.renamed.get(key) if sep else (n if n < line and self._numbered(n) else None)
        if first is not None:
            raise DataError(f"id {key!r} is the id line {first} was given, having none of its own (its line "
                            "number, or that number with #2, ... when an earlier record had it)",
                            where=f"{self.source}:{line}", fix=self.FIX)
        return key


def text_digest(text: Any) -> bytes:
    """A short digest of a document's text (b"" for no text): what resuming compares besides the id."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest() if isinstance(text, str) \
        else b""


def resume_state(path: str | Path, text_field: str = "text") -> ResumeState:
    """Inspect a JSONL output before resuming: complete lines, their document ids and text digests, and a cut last
    line."""
    p = Path(path)
    st = ResumeState()
    if not p.is_file():
        return st
    st.partial_tail = _partial_tail(p) > 0
    for rec, n in iter_jsonl_dicts(p):
        st.add(rec.get("id"), text_digest(rec.get(text_field)))
    if st.lines:
        log.info("%s: %d documents already written%s", p, st.lines,
                 " (last line incomplete: it will be rewritten)" if st.partial_tail else "")
    return st


def done_path(output: str | Path) -> Path:
    """Where a ``.json``/``.html`` output's progress is kept (``OUT.done.jsonl``): the id and text digest of every
    document written, in order, so that an interrupted run resumes as a JSONL output does (a page holds neither in a
    form read back)."""
    p = Path(output)
    return p.with_name(p.name + ".done.jsonl")


def record_done(path: str | Path, records: Sequence[Any], text_field: str = "text") -> None:
    """Append the ids and text digests of ``records`` (just written to the output) to :func:`done_path`'s file."""
    rows = []
    for r in records:
        d = to_jsonable(r)
        rows.append({"id": None if d.get("id") is None else str(d["id"]), "text": text_digest(d.get(text_field)).hex()})
    write_jsonl(path, rows, append=True)


def done_state(path: str | Path, keep: int | None = None) -> ResumeState:
    """The :class:`ResumeState` a :func:`done_path` file holds (its first ``keep`` documents, when given: the ones the
    output itself still holds; the file is cut to them)."""
    st = ResumeState()
    p = Path(path)
    if not p.is_file():
        return st
    repair_jsonl_tail(p)
    for rec, _ in iter_jsonl_dicts(p):
        if keep is not None and st.lines >= keep:
            break
        st.add(rec.get("id"), bytes.fromhex(rec.get("text") or ""))
    if keep is not None and st.lines == keep:
        keep_lines(p, keep)
    return st


def keep_lines(path: str | Path, n: int) -> None:
    """Cut a JSONL file after its first ``n`` lines (in place; documents written before an interruption that the
    run's own output does not hold: the resumed run writes them again)."""
    with open_plain_file(path, "r+b") as f:
        for _ in range(n):
            if not f.readline():
                return
        end = f.tell()
        if f.read(1):
            f.truncate(end)


def read_done_ids(path: str | Path) -> set[str]:
    """Ids of the documents already written to a JSONL output (empty when the file does not exist)."""
    return resume_state(path).done_ids


def write_json(path: str | Path, docs: Iterable[Any], indent: int | None = 2) -> int:
    """Write all documents as one JSON array, atomically (temporary file then rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    items = [to_jsonable(d) for d in docs]
    atomic_write(p, json.dumps(items, ensure_ascii=False, indent=indent) + "\n")
    return len(items)


def read_json(path: str | Path) -> list[Any]:
    """Read a JSON array of linked documents written by :func:`write_json`."""
    from pydantic import ValidationError

    from glinker.types import LinkedDocument

    p = Path(path)
    try:
        items = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg}", where=f"{p}:{e.lineno}", fix="fix the JSON syntax") from None
    if not isinstance(items, list):
        raise DataError("expected a JSON array of documents", where=str(p), fix="write a list of documents")
    out = []
    for i, rec in enumerate(items):
        try:
            out.append(LinkedDocument.model_validate(rec))
        except ValidationError as e:
            raise DataError(f"document {i}: {_first_problem(e)}",
                            where=f"{p}[{i}]", fix="items must be LinkedDocument JSON") from None
    return out


_SECRET_WORD = (r"password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?")
"""What makes a query parameter or a connection-string key secret (found anywhere in its name, case-insensitive)."""
_SECRET_PAIR = None


def _hide_pairs(text: str) -> str:
    """``text`` with the values of its secret-named ``key=value`` pairs shown as ``***``: the pairs of a connection
    string carried in one URL parameter (ODBC's ``DRIVER={...};UID=sa;PWD=x`` in ``odbc_connect=``, libpq's
    ``host=h password=x``). A value goes on up to the ';' before the next ``key=`` (an '&' or a space is part of it),
    or to the end of a braced ODBC value (``PWD={a;b}}c}``) or quoted libpq value (``password='a;b\\'c'``): hidden
    whole."""
    import re

    global _SECRET_PAIR
    if _SECRET_PAIR is None:
        # a value ends where ODBC ends it (';'), or with its braces / libpq quotes; never at '&', which is part of
        # an ODBC or libpq value; a ';' not followed by a next ``key=`` goes on (libpq ends a value at a space only)
        _SECRET_PAIR = re.compile(r"(^|[&;\s])(\s*[^=&;\s]*(?:" + _SECRET_WORD + r")[^=&;]*?\s*)="
                                  r"(\s*\{(?:[^}]|\}\})*\}|\s*'(?:[^'\\]|\\.)*'"
                                  r"|(?:[^;]|;(?=\s*[^\s;])(?!\s*[^\s=;{}']+\s*=))*)", re.IGNORECASE)
    return _SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}={'***' if m.group(3).strip() else ''}", text)


def redact(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``: for messages, logs and run records. The credentials end
    at the last '@' (as SQLAlchemy reads them), so a password holding '/', '#', '?' or '@' is hidden whole. The
    whole value of a secret query parameter (``?password=``, ``pwd``, ``sslpassword``, ``passwd``, ``secret``,
    ``token``, ``api_key``..., its name percent-encoded or not) is hidden: SQLAlchemy splits the query at '&' only,
    so a ';' or '#' in it is part of the password. A parameter that carries a whole connection string has the
    secrets in it hidden, percent-encoded or not: SQLAlchemy's documented form for pyodbc,
    ``?odbc_connect=<quote_plus("DRIVER=...;UID=sa;PWD=x")>``, would otherwise keep ``PWD%3Dx`` in the manifest, the
    run record and every message."""
    import re
    from urllib.parse import quote_plus, unquote_plus

    if "?" in url:
        head, _, query = url.partition("?")
        parts = query.split("&")
        for i, part in enumerate(parts):
            name, eq, value = part.partition("=")
            if not eq:
                continue
            if re.search(_SECRET_WORD, unquote_plus(name), re.IGNORECASE):
                parts[i] = f"{name}={'***' if value else ''}"
                continue
            decoded = unquote_plus(value)
            hidden = _hide_pairs(decoded)
            if hidden != decoded:  # shown as it was written: percent-encoded again if it was
                parts[i] = f"{name}={hidden if decoded == value else quote_plus(hidden, safe='*')}"
        url = f"{head}?{'&'.join(parts)}"
    # user (which may hold '@': Azure's user@server), ':', password up to the last '@', host
    m = re.match(r"^([A-Za-z][\w+.-]*://)([^:/]*):(.+)@([^@]*)$", url, re.S)
    return f"{m.group(1)}{m.group(2)}:***@{m.group(4)}" if m else url
