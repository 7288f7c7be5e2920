"""An opened KB directory: the read API used by linking stages, and incremental add/update/remove.

Layout: ``DIR/CURRENT`` names the live generation ``DIR/gen-*/`` holding ``manifest.json``, ``entities.sqlite``
and ``vectors.faiss``. A rebuild writes a new generation and swaps ``CURRENT`` atomically, so readers and crashes
never see half a KB.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from glinker.errors import ConfigError, DataError, KBError
from glinker.kb.encoder import EntityEncoder, encode_sorted
from glinker.kb.manifest import Manifest, now
from glinker.kb.store import (
    DAMAGED_FIX,
    EntityStore,
    TextTemplate,
    damaged_store,
    normalize_alias,
    sqlite_uri,
    write_error,
)
from glinker.locks import fork_safe_lock
from glinker.types import Entity

log = logging.getLogger(__name__)
_PENDING_SAID: set[tuple[str, int]] = set()
"""KB folders (and their count of unapplied index changes) whose unfinished update was said in this process."""

CURRENT = "CURRENT"
MANIFEST = "manifest.json"
STORE = "entities.sqlite"
INDEX = "vectors.faiss"


def current_generation(root: str | Path) -> Path:
    """The live generation directory of a KB root, or a KBError that says what is wrong."""
    root = Path(root)
    ptr = root / CURRENT
    if not ptr.is_file():
        hint = ("a build was interrupted before it finished; run the same `glinker kb build` again (file and dump "
                "sources resume where they stopped, SQL sources start over)"
                if any(root.glob(".staging-*")) else "build one with `glinker kb build ... --out DIR`")
        raise KBError(f"{root} is not a KB directory (no {CURRENT} file)", where=str(root), fix=hint)
    try:
        name = ptr.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        name = None
    if not name or name != Path(name).name or not name.startswith("gen-"):
        # (an empty CURRENT read as the KB folder itself: "the generation <folder> ... is missing")
        gens = sorted(d.name for d in root.glob("gen-*") if (d / MANIFEST).is_file())
        said = "is empty" if name == "" else f"names no generation ({name!r:.60})" if name else "is not text"
        raise KBError(f"{CURRENT} is damaged: it {said}", where=str(ptr),
                      fix=DAMAGED_FIX + (f"; or point it at the newest generation there: echo {gens[-1]} > {ptr}"
                                          if gens else ""))
    gen = root / name
    if not (gen / MANIFEST).is_file():
        raise KBError(f"the generation {gen.name} named by {CURRENT} is missing or incomplete", where=str(gen),
                      fix=DAMAGED_FIX)
    return gen


WRITER_LOCK = ".writer.lock"
"""The file every writer of a KB folder locks (builds, updates in place or in a copy, link statistics, a pipeline's
source sync): one process writes a KB folder at a time. Readers never take it."""

_HELD: dict[tuple[str, int], bool] = {}  # (KB folder, thread) holding its lock -> whether writers may nest in it
_HELD_LOCK = fork_safe_lock()


def _trimmed_history(history: list[dict[str, Any]], keep: int = 100) -> list[dict[str, Any]]:
    """The last ``keep`` entries of a KB's history, and always its build entry (what the KB was built with and in
    which precision: ``Manifest.vectors_dtype`` reads it)."""
    if len(history) <= keep:
        return history
    build = next((h for h in history if h.get("op") == "build"), None)
    if build is None or build in history[-keep:]:
        return history[-keep:]
    return [build, *history[-(keep - 1):]]


@contextlib.contextmanager
def writing(root: str | Path, what: str, wait: bool = False, share: bool = False) -> Iterator[None]:
    """The writer lock of the KB folder ``root`` for the block (``what`` says what writes, for the message a second
    writer gets). Held by another process: a KBError naming the folder and its holder, or with ``wait`` a warning,
    then the wait for it (the block then works on what the other writer left). With ``share`` (a pipeline's source
    sync, which reads the KB and then updates or rebuilds it) the writers the block opens in its thread take it
    too; any other second writer of one thread is a KBError (it would lose one's changes). The folder must exist."""
    from glinker.io import Busy, lock_exclusive, unlock

    root = Path(root)
    key = (str(root.absolute()), threading.get_ident())
    with _HELD_LOCK:
        shared = _HELD.get(key)
    if shared is not None:  # this thread holds it
        if not shared:
            raise KBError(f"KB {root} is being written already by this thread: {what} was opened inside another "
                          "writer (a KB.update block, or a KB opened writable and not closed yet)", where=str(root),
                          fix="close the first writer before opening another, or write through the first")
        yield
        return
    path = root / WRITER_LOCK
    try:
        f = _open_lock(path, root)
    except OSError as e:  # said of the folder: it is what cannot be written
        err = write_error(OSError(e.errno, e.strerror, str(root)), root)
        if err is None:
            raise
        raise err from None
    try:
        try:
            lock_exclusive(f.fileno(), path, wait=False, what=" (the KB's writer lock)")
        except Busy:
            holder = _holder(path)
            with _HELD_LOCK:  # by what this process holds, not by the file's line (stale, or another user's)
                ours = any(k[0] == key[0] for k in _HELD)
            who = "another thread of this process" if ours else "another process"
            if not wait:
                raise KBError(f"the KB is being written by {who} ({holder}): one writer at a time", where=str(root),
                              fix="run this again once it has finished (or stop it); processes reading the KB are "
                                  "not affected") from None
            log.warning("KB %s is being written by %s (%s): waiting for it to finish", root, who, holder)
            lock_exclusive(f.fileno(), path, wait=True, what=" (the KB's writer lock)")
        with contextlib.suppress(OSError):  # who holds it, for the message of a second writer (a nicety)
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()}{_program()}: {what}, since {now()}\n")
            f.flush()
        with _HELD_LOCK:
            _HELD[key] = share
        try:
            yield
        finally:
            with _HELD_LOCK:
                _HELD.pop(key, None)
            with contextlib.suppress(OSError):  # no stale line for the next writer's message
                f.seek(0)
                f.truncate()
                f.flush()
            unlock(f.fileno())
    finally:
        f.close()


def _open_lock(path: Path, root: Path) -> Any:
    """The writer lock file, open for reading and writing; made with the folder's group and others' write bits, so
    that on a folder users share each of them can take it (the umask alone would give the first writer's 0644). One
    that exists but cannot be written here (another user's, from before) is opened read-only: flock needs no write
    access, only the holder's line is not written."""
    import stat

    from glinker.io import open_plain

    # never through a link planted in a shared folder, nor on a file another hard link names (its mode is changed)
    kw = {"what": ", the KB's writer lock", "where": str(root), "own": True}
    try:
        fd = open_plain(path, os.O_RDWR | os.O_CREAT, **kw)
    except PermissionError:
        if not path.exists() or not os.access(root, os.W_OK):  # a folder this user cannot write: said as such
            raise
        return os.fdopen(open_plain(path, os.O_RDONLY, **kw), encoding="utf-8")
    with contextlib.suppress(OSError):
        mode = root.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if mode and os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, (os.fstat(fd).st_mode & 0o777) | mode | (stat.S_IRGRP if mode & stat.S_IWGRP else 0)
                      | (stat.S_IROTH if mode & stat.S_IWOTH else 0))
    return os.fdopen(fd, "r+", encoding="utf-8")


def _holder(lock: Path) -> str:
    """What holds a KB's writer lock, as its holder wrote it in the lock file."""
    try:
        said = lock.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        said = ""
    return said or "a process that has not said what it is: just started, or another user's that cannot write its line"


def _program() -> str:
    """`` (glinker kb add)``: the command this process runs, its subcommand words only (no paths, no options)."""
    import re
    import sys

    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if prog != "glinker":
        return ""
    words = []
    for a in sys.argv[1:]:
        if a.startswith("-"):
            continue
        if not re.fullmatch(r"[a-z][a-z-]{0,19}", a) or len(words) == 2:
            break
        words.append(a)
    return f" ({' '.join([prog, *words])})"


def close_quietly(obj: Any) -> None:
    """``obj.close()`` while an error is on its way: a second error from it (a full disk again) is logged at debug
    level, never said in place of the first."""
    try:
        obj.close()
    except Exception:  # noqa: BLE001 - the first error is the one to say
        log.debug("closing %r after an error failed too", obj, exc_info=True)


def publish_generation(root: Path, gen_name: str) -> None:
    """Point CURRENT at ``gen_name`` atomically (a temporary file of a fresh name, fsync, rename)."""
    from glinker.io import atomic_write

    atomic_write(root / CURRENT, gen_name + "\n")


def publish_staged(root: Path, staging: Path, key: str, keep_previous: bool = False) -> Path:
    """Move a finished ``staging`` folder in as a new generation ``gen-<time>-<key>`` and point CURRENT at it; the
    generations before it are removed (all of them, or all but the one that was live: ``keep_previous``, for readers
    that opened it and may not have loaded its index yet)."""
    import shutil

    old = root / (root / CURRENT).read_text(encoding="utf-8").strip() if (root / CURRENT).is_file() else None
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    name = f"gen-{stamp}-{key[:8]}"
    n = 1
    while (root / name).exists():  # two publishes within one second: never replace the live generation
        n += 1
        name = f"gen-{stamp}-{key[:8]}-{n}"
    gen = root / name
    os.replace(staging, gen)
    publish_generation(root, name)
    for d in root.iterdir():
        if d.is_dir() and d.name.startswith("gen-") and d != gen and not (keep_previous and d == old):
            shutil.rmtree(d, ignore_errors=True)
    log.info("published KB generation %s", gen)
    return gen


def _copy_generation(live: Path, staging: Path) -> None:
    """A new folder ``staging`` holding a writable copy of the generation ``live``: the store backed up (a consistent
    copy while readers use it), the other files hard-linked (they are replaced whole when written, never changed)."""
    import shutil
    import sqlite3

    staging.mkdir()
    for f in live.iterdir():
        if f.name == STORE:
            src = sqlite3.connect(sqlite_uri(f, "mode=ro"), uri=True)
            dst = sqlite3.connect(staging / STORE)
            with dst:
                src.backup(dst)
            src.close()
            dst.close()
        elif f.is_file() and not f.name.startswith(STORE):  # (no -wal/-shm: the backup holds them)
            try:
                os.link(f, staging / f.name)
            except OSError:
                shutil.copy2(f, staging / f.name)


class KB:
    """A knowledge base opened from its directory. Reads may come from several threads (SQLite serialises them on
    its connection); writes need ``writable=True`` (or :meth:`update`), and one process writes a KB folder at a time
    (its writer lock: :func:`writing`)."""

    def __init__(self, root: Path, path: Path, manifest: Manifest, store: EntityStore, writable: bool,
                 mmap: bool) -> None:
        self.root = root
        self.path = path
        self.manifest = manifest
        self.store = store
        self.writable = writable
        self._mmap = mmap
        self._index: Any = None
        self._vocab: list[str] | None = None
        self._changed = False
        self._writer: contextlib.ExitStack | None = None  # the KB folder's writer lock, held by a writable open
        self.template = TextTemplate(manifest.template)
        pend = store.pending()
        self.pending_at_open = len(pend)  # (said here: a stage meeting their entities need not say it again)
        said = (str(Path(root).resolve()), len(pend))
        if pend and said not in _PENDING_SAID:  # once a process (a command opens a KB more than once)
            _PENDING_SAID.add(said)
            adds = sum(op == "add" for _, op in pend)
            log.warning("KB %s has %d unapplied index changes (an update was interrupted, or is running): %d new or "
                        "changed entities are not embedded yet (a new one has no vector: biencoder feature 0, not "
                        "found by dense search; a changed one keeps its previous vector); run the update again (any "
                        "`glinker kb add` or `kb remove` with the KB's model finishes them)", root, len(pend), adds)

    @classmethod
    def open(cls, path: str | Path, writable: bool = False, mmap: bool = True, wait: bool = False) -> KB:
        """Open a KB directory (read-only unless ``writable``); the vector index loads on first use. A writable
        open holds the folder's writer lock until :meth:`close` (:func:`writing`): while another process writes the
        KB it is a KBError, or with ``wait`` it waits its turn."""
        root = Path(path)
        gen = current_generation(root)  # a KB folder, before anything is written in it
        writer = contextlib.ExitStack() if writable else None
        try:
            if writer is not None:
                writer.enter_context(writing(root, "an update in place", wait))
                gen = current_generation(root)  # what the writer before left
            manifest = Manifest.load(gen / MANIFEST)
            store = EntityStore(gen / STORE, readonly=not writable)
        except BaseException:
            if writer is not None:
                writer.close()
            raise
        kb = cls(root, gen, manifest, store, writable, mmap and not writable)
        kb._writer = writer
        return kb

    @classmethod
    @contextlib.contextmanager
    def update(cls, path: str | Path, wait: bool = False) -> Iterator[KB]:
        """A writable copy of the KB's live generation, published as the new generation when the block ends
        normally after changing something (discarded when it changed nothing or raised). Processes reading the KB
        meanwhile keep the generation they opened, whole and unchanged (updating in place would show them entities
        whose vectors their loaded index lacks); they see the update when they open the KB again. The generation
        before is kept (a reader may not have loaded its index yet), older ones are removed.

        The folder's writer lock is held from before the copy to the publication (:func:`writing`): while another
        process writes the KB it is a KBError, or with ``wait`` the update waits and then copies what the other
        writer published (two updates at once each copied the same generation and the last to publish lost the
        other's entities)."""
        import shutil
        import uuid

        from glinker.io import Busy, locked

        root = Path(path)
        current_generation(root)  # a KB folder, before anything is written in it
        with contextlib.ExitStack() as held:
            held.enter_context(writing(root, "an update in a copy of the KB", wait))
            live = current_generation(root)  # taken under the lock: the last writer's generation
            try:
                import fcntl  # noqa: F401  (without it nothing is locked: copies are removed by age, as before)

                locking = True
            except ImportError:  # pragma: no cover - Windows
                locking = False
            # a killed update's copy: its lock is free (one of an older glinker, which takes no writer lock, holds it)
            for lk in root.glob(".lock.update-*"):
                if not locking and time.time() - lk.stat().st_mtime < 3600:
                    continue
                try:
                    with locked(lk, wait=False):
                        shutil.rmtree(root / lk.name[len(".lock"):], ignore_errors=True)
                    lk.unlink(missing_ok=True)
                except Busy:
                    continue
            for d in root.glob(".update-*"):  # without a lock file: a killed update of an earlier glinker
                if not (root / f".lock{d.name}").exists():
                    shutil.rmtree(d, ignore_errors=True)
            # the lock is taken before the copy exists, so the copy is never cleaned while in use; a cleaner that
            # locked a new lock file first (it saw the file before its owner locked it) makes us take another name
            for _ in range(20):
                name = f".update-{uuid.uuid4().hex[:8]}"
                try:
                    held.enter_context(locked(root / f".lock{name}", wait=False))
                    break
                except Busy:
                    continue
            else:  # pragma: no cover - twenty lost races in a row
                raise KBError(f"could not start an update of {root}", where=str(root), fix="run it again")
            held.callback((root / f".lock{name}").unlink, missing_ok=True)  # when the copy is gone
            staging = root / name
            try:
                try:
                    _copy_generation(live, staging)
                except Exception as e:  # a damaged live store, or no room for the copy
                    said = damaged_store(e, live / STORE) or write_error(e, root)
                    if said is None:
                        raise
                    raise said from e
                manifest = Manifest.load(staging / MANIFEST)
                kb = cls(root, staging, manifest, EntityStore(staging / STORE), True, False)
                try:
                    yield kb
                except BaseException:
                    close_quietly(kb)  # the block's error is the one to say
                    raise
                kb.close()
                if kb.changed:
                    try:
                        publish_staged(root, staging, uuid.uuid4().hex, keep_previous=True)
                    except OSError as e:
                        said = write_error(e, root)
                        if said is None:
                            raise
                        raise said from e
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)

    def close(self) -> None:
        """Release the store, the index and (a writable open) the KB folder's writer lock."""
        try:
            self.store.close()
        finally:
            self._index = None
            writer, self._writer = self._writer, None
            if writer is not None:
                writer.close()

    def __enter__(self) -> KB:
        return self

    def __exit__(self, et: object, *exc: object) -> None:
        if et is None:
            self.close()
        else:
            close_quietly(self)  # the block's error is the one to say

    def __len__(self) -> int:
        return self.store.count()

    # -- read API -----------------------------------------------------------------------------------------------
    # The methods that take several ids or names refuse one string (or bytes): iterated, it was its characters,
    # ids "Q", "9", "0" looked up (or removed) instead of "Q90".
    def get(self, ids: Sequence[str]) -> list[Entity]:
        """Entities by id, in the order given; unknown ids are skipped. ``ids`` is a list (``kb.get(["Q90"])``)."""
        return self.store.get(_many(ids, "ids", "get"))

    def rids(self, ids: Sequence[str]) -> dict[str, int]:
        """Entity id -> its id in the vector index (for reconstructing or filtering vectors); unknown ids absent.
        ``ids`` is a list."""
        return self.store.rids_for_ids(_many(ids, "ids", "rids"))

    def lookup_alias(self, name: str) -> list[str]:
        """Ids of every entity with this exact (normalised) label or alias — every homonym, most popular first."""
        return self.store.lookup_alias(name)

    def prior(self, names: Sequence[str]) -> dict[str, dict[str, float]]:
        """p(entity | mention) from the KB's alias counts, for each name that has counts: name -> {entity id: p}.

        Names are compared by their normalised key, like alias look-ups; a KB without counts gives {}. ``names``
        is a list (``kb.prior(["Paris"])``)."""
        return _by_name(_many(names, "names", "prior"), self.store.prior)

    def link_stats(self, names: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(linked, seen) for each name with link statistics (``glinker kb link-stats``): where the alias dictionary
        matched this form in an annotated corpus, how often the span was a gold mention. {} without statistics.
        ``names`` is a list."""
        return _by_name(_many(names, "names", "link_stats"), self.store.link_stats)

    def fuzzy(self, name: str, limit: int = 10, score_cutoff: float = 85.0,
              scorer: str = "ratio") -> list[tuple[str, str, float]]:
        """(entity id, matched alias, score 0-100) for the ``limit`` closest aliases by rapidfuzz, every homonym
        of each alias included; the search runs in C++ over the alias vocabulary, loaded once."""
        return self.fuzzy_many([name], limit, score_cutoff, scorer)[0]

    def fuzzy_many(self, names: Sequence[str], limit: int = 10, score_cutoff: float = 85.0,
                   scorer: str = "ratio", chunk: int = 16) -> list[list[tuple[str, str, float]]]:
        """:meth:`fuzzy` for many names at once: one ``rapidfuzz.process.cdist`` pass per ``chunk`` names (fewer on
        vocabularies over 1M aliases; all cores), about 10x faster per name than one ``process.extract`` call each
        on a 500k-alias vocabulary. Best first; equal scores (many aliases score 100 against "Munich" with a token or
        partial scorer) put the alias equal to the name first, then the closest by plain ``ratio``, then vocabulary
        order."""
        from rapidfuzz import fuzz, process

        names = _many(names, "names", "fuzzy_many", single="fuzzy(name)")
        if self._vocab is None:
            self._vocab = self.store.alias_vocab()
        fn = getattr(fuzz, scorer, None)
        if fn is None:
            raise KBError(f"unknown rapidfuzz scorer {scorer!r}", where="scorer", fix="use ratio, WRatio, token_sort_ratio")
        queries = [normalize_alias(n) for n in names]
        found: list[list[tuple[str, float]]] = []
        # the score matrix is chunk x vocabulary float32: at most ~64 MB however large the vocabulary
        chunk = max(1, min(chunk, (64 << 20) // (4 * max(1, len(self._vocab)))))
        for i in range(0, len(queries), chunk):
            m = process.cdist(queries[i:i + chunk], self._vocab, scorer=fn, score_cutoff=score_cutoff,
                              dtype=np.float32, workers=-1)
            for q, row in zip(queries[i:i + chunk], m):
                idx = np.flatnonzero(row >= score_cutoff) if score_cutoff > 0 else np.arange(len(row))
                top = row[idx]
                if scorer != "ratio" and len(idx) > limit:  # ties at the cut: decided by closeness to the name
                    tied = top >= np.sort(top)[-limit]
                    near = np.zeros(len(idx))
                    near[tied] = [200.0 if self._vocab[j] == q else fuzz.ratio(q, self._vocab[j]) for j in idx[tied]]
                    best = idx[np.lexsort((idx, -near, -top))][:limit]
                else:
                    best = idx[np.lexsort((idx, -top))][:limit]
                found.append([(self._vocab[j], float(row[j])) for j in best])
        by_norm = self.store.lookup_norms(sorted({a for hits in found for a, _ in hits}))
        return [[(eid, alias, score) for alias, score in hits for eid in by_norm.get(alias, [])] for hits in found]

    def _check_dtype(self, encoder: EntityEncoder) -> None:
        """Warn when ``encoder`` embeds in another precision than the KB's build did (its vectors would be of two
        precisions: the scores of old and new entities differ by the rounding, up to ~1% in bfloat16)."""
        from glinker.cluster import model_dtype

        built, now_ = self.manifest.vectors_dtype, model_dtype(encoder)
        if built is not None and built != now_:
            log.warning("KB %s was embedded in %s, the model in use runs in %s: the entities added now get vectors of "
                        "another precision (run the model in %s: --dtype %s, or dtype=%r in Python; or rebuild the KB "
                        "to change its precision)", self.root, built, now_, built, built, built)

    def check_model(self, fingerprint: str, model: str | None = None) -> None:
        """Raise a KBError unless the KB's vectors were built by the model with this fingerprint; ``model`` (how the
        model in use was named: a shipped name, a folder, a hub id) tells a model whose weights changed under the
        same name (a glinker upgrade shipping new weights, a checkpoint saved again) from another model."""
        m = self.manifest
        if m.model_fingerprint is None:
            raise KBError(f"KB {self.root} has no entity vectors (built with --model none)", where=str(self.root),
                          fix="rebuild it with --model, or link with alias/fuzzy candidates only")
        if fingerprint == m.model_fingerprint:
            return
        rebuild = f"glinker kb build ... --model {model or m.model or '<this model>'} --out {self.root}"
        if model is not None and m.model and same_model(model, m.model):
            from glinker.kb.manifest import glinker_version

            now_version = glinker_version()
            upgraded = (f" (the KB was built by glinker {m.glinker_version}"
                        + (f", this is glinker {now_version}" if now_version else "") + ")"
                        if m.glinker_version and m.glinker_version != now_version else "")
            raise KBError(f"the weights of model {m.model} changed since KB {self.root} was built{upgraded}: its "
                          f"vectors were made by fingerprint {m.model_fingerprint[:12]}, the model now has "
                          f"{fingerprint[:12]}, and vectors of other weights cannot be compared",
                          where=str(self.path / MANIFEST),
                          fix=f"rebuild the KB with the model as it is now: {rebuild} (or link with the weights "
                              "that built it)")
        raise KBError(f"KB {self.root} was built with model {m.model or '?'} (fingerprint "
                      f"{m.model_fingerprint[:12]}), not with the model in use"
                      + (f" ({model}, fingerprint {fingerprint[:12]})" if model else f" (fingerprint {fingerprint[:12]})"),
                      where=str(self.path / MANIFEST),
                      fix=f"link with the model that built it ({m.model}), or rebuild the KB with this model: "
                          f"{rebuild}")

    def index(self) -> Any:
        """The :class:`~glinker.kb.index.VectorIndex` (loaded on first use)."""
        if self._index is None:
            if not self.manifest.has_vectors:
                raise KBError(f"KB {self.root} has no vector index (built with --model none)", where=str(self.root),
                              fix="rebuild with --model to enable dense search")
            from glinker.kb.index import VectorIndex

            if not (self.path / INDEX).exists() and (self.root / CURRENT).is_file() \
                    and current_generation(self.root) != self.path:
                raise KBError(f"KB {self.root} was updated since this process opened it, and the generation it "
                              f"opened ({self.path.name}) is gone", where=str(self.root),
                              fix="open the KB again (restart the process): it reads the new generation")
            self._index = VectorIndex.load(self.path / INDEX, self.manifest.factory or "Flat", self.manifest.nprobe,
                                           mmap=self._mmap, mips_norm=self.manifest.mips_norm,
                                           dim=self.manifest.dim)
        return self._index

    def search_vectors(self, queries: np.ndarray, k: int = 10,
                       nprobe: int | None = None) -> tuple[np.ndarray, list[list[str]]]:
        """Top-k entities per query vector (M, D): scores (M, k) float32 (``-inf`` where fewer than k were found)
        and entity ids per row (only the ones found, best first). ``k`` and ``nprobe`` are whole numbers >= 1."""
        k = _count(k, "k")
        if nprobe is not None:
            nprobe = _count(nprobe, "nprobe")
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        index = self.index()
        if q.shape[1] != self.manifest.dim:
            raise KBError(f"query vectors have dimension {q.shape[1]}, the KB's are {self.manifest.dim}",
                          where="queries", fix="encode queries with the model that built the KB (check_model)")
        scores, rids = index.search(q, k, nprobe)
        flat = rids.ravel().tolist()
        names = self.store.ids_for_rids(flat)
        ids: list[list[str]] = []
        scores = scores.astype(np.float32, copy=True)
        width = rids.shape[1]
        for r in range(rids.shape[0]):
            row = []
            for c, rid in enumerate(flat[r * width:(r + 1) * width]):
                eid = names.get(rid)
                if eid is None:
                    scores[r, c] = -np.inf
                else:
                    row.append(eid)
            ids.append(row)
        return scores, ids

    def search_text(self, texts: Sequence[str], encoder: EntityEncoder, k: int = 10) -> tuple[np.ndarray, list[list[str]]]:
        """Dense search for mention texts encoded on the label side (a convenience for the CLI and tests)."""
        texts = _many(texts, "texts", "search_text")
        self.check_model(encoder.fingerprint, _name_of(encoder))
        return self.search_vectors(encoder.encode_entities(texts), k)

    # -- incremental updates ------------------------------------------------------------------------------------
    def _need_writable(self) -> None:
        if not self.writable:
            raise KBError("the KB was opened read-only", where=str(self.root), fix="KB.open(path, writable=True)")

    def upsert(self, entities: Iterable[Entity], encoder: EntityEncoder | None, batch: int = 8192) -> dict[str, int]:
        """Add new entities and update existing ones (by id) without a rebuild; only changed texts are re-embedded.

        Counts per id: ``added``, ``updated``, ``unchanged_text``, ``same``. Records that repeat an id are warned
        about, naming the ids; the last of them is kept. Records of one id that come one after the other (a source
        read in id order) are always compared as one, whatever the batch size; an id repeated far apart in a source
        in no order is written once per batch it is in."""
        _not_one_entity(entities, "upsert")
        self._need_writable()
        if self.manifest.has_vectors:
            if encoder is None:
                raise KBError("this KB has entity vectors: adding entities needs the model that built it",
                              where=str(self.root), fix=f"pass --model {self.manifest.model}")
            self.check_model(encoder.fingerprint, _name_of(encoder))
            self._check_dtype(encoder)
        self.apply_pending(encoder, checked=True)
        total = {"added": 0, "updated": 0, "unchanged_text": 0, "same": 0}
        n_repeated = 0
        buf: list[Entity] = []
        repeated: list[str] = []  # the first ids repeated, for the warning

        def flush(last: bool) -> None:
            nonlocal buf, n_repeated
            held: list[Entity] = []
            if not last and buf:  # the batch's last id may go on in the next records: they are written together
                k = len(buf)
                while k > 0 and buf[k - 1].id == buf[-1].id:
                    k -= 1
                if k:
                    buf, held = buf[:k], buf[k:]
            if len(repeated) < 5:
                ids: set[str] = set()
                for e in buf:
                    if e.id in ids and e.id not in repeated and len(repeated) < 5:
                        repeated.append(e.id)
                    ids.add(e.id)
            c = self.store.upsert(buf, self.template, track_pending=True)
            for key in total:
                total[key] += c[key]
            n_repeated += c["repeated"]
            buf = held
            self.apply_pending(encoder, checked=True)

        from glinker.kb.build import Nameless

        nameless = Nameless()
        for e in entities:
            buf.append(e)
            nameless.see(e)
            if len(buf) >= batch:
                flush(False)
                self._save_counts()  # `kb info` is right even if the rest of a long update is interrupted
        flush(True)
        nameless.say(f"KB {self.root}: ")
        if n_repeated:
            log.warning("KB %s: %d source records repeat an id (the last record of each is kept; first ones: %s); a "
                        "SQL source with several aliases per entity: use an alias table (alias_table=...), not a JOIN",
                        self.root, n_repeated, ", ".join(repeated))
        self._vocab = None
        self._record("upsert", total)
        return total

    def sync(self, entities: Iterable[Entity], encoder: EntityEncoder | None, batch: int = 8192,
             source: Any = None, seen: set[str] | None = None) -> dict[str, int]:
        """Make the KB hold exactly ``entities`` (its source read again): new ones added, changed ones updated
        (only changed texts re-embedded), the ones the source no longer has removed. Returns the counts of
        :meth:`upsert` plus ``removed``.

        A source that yields no entity at all while the KB has some is an error (an emptied or truncated export
        would otherwise wipe the KB); when the ``source`` adapter's report counted bad records (``on_error:
        skip``), nothing is removed this time: a skipped record's entity is not gone from the source.

        With ``seen`` (every id the source holds, from :meth:`EntityStore.changed`), ``entities`` are only the new
        and changed ones; the others count as the same. Without it the source is streamed through :meth:`upsert`
        in batches (memory flat whatever the source's size; an unchanged record is compared, not written)."""
        _not_one_entity(entities, "sync")
        given = seen is not None
        seen = set(seen) if seen is not None else set()

        def tracked() -> Iterable[Entity]:
            for e in entities:
                if not given:
                    seen.add(e.id)
                yield e

        counts = self.upsert(tracked(), encoder, batch)
        if given:  # the records not passed were read and found equal to the stored ones
            counts["same"] = len(seen) - counts["added"] - counts["updated"] - counts["unchanged_text"]
        have = self.store.all_ids()
        if not seen and have:
            raise KBError(f"the source holds no entities: syncing would remove all {len(have):,} entities of the KB",
                          where=str(self.root), fix="check the source (an empty or failed export?); to empty the KB "
                          "on purpose, remove its entities with `glinker kb remove` or delete its folder")
        gone = sorted(have - seen)
        bad = int(getattr(getattr(source, "report", None), "bad", 0) or 0)  # read once the source was streamed
        if gone and bad:
            log.warning("%s: %d bad source records were skipped, so the %d entities the source seems to lack are "
                        "kept this time (a skipped record's entity is not gone); fix the records and sync again",
                        self.root, bad, len(gone))
            gone = []
        counts["removed"] = len(self.remove(gone, encoder)) if gone else 0
        return counts

    def remove(self, ids: Sequence[str], encoder: EntityEncoder | None = None) -> list[str]:
        """Remove entities by id (store, aliases and vectors); returns the ids that existed. ``ids`` is a list
        (``kb.remove(["Q90"])``: a string alone is refused, not read as its characters' ids)."""
        ids = _many(ids, "ids", "remove")
        self._need_writable()
        if encoder is not None and self.manifest.has_vectors:
            self.check_model(encoder.fingerprint, _name_of(encoder))
        removed = self.store.delete(ids, track_pending=True)
        self.apply_pending(encoder)
        self._vocab = None
        self._record("remove", {"removed": len(removed)})
        return removed

    def apply_pending(self, encoder: EntityEncoder | None, checked: bool = False) -> int:
        """Apply journaled changes to the vector index, save it atomically, then clear the journal (idempotent,
        so an interrupted update is finished by the next call). Returns the number of changes applied."""
        pend = self.store.pending()
        if not pend:
            return 0
        self._need_writable()
        self._changed = True
        if self.manifest.has_vectors:
            adds = [r for r, op in pend if op == "add"]
            if adds and encoder is None:
                raise KBError(f"{len(adds)} changed entities need embedding", where=str(self.root),
                              fix=f"run the update with --model {self.manifest.model}")
            if adds and not checked:  # (upsert checked it once for all its batches)
                self._check_dtype(encoder)  # type: ignore[arg-type]
            index = self.index()
            index.remove(np.asarray([r for r, _ in pend], dtype=np.int64))
            for rids, texts in self.store.iter_texts(self.template, rids=adds):
                index.add(encode_sorted(encoder, texts, 64), np.asarray(rids, dtype=np.int64))  # type: ignore[arg-type]
            index.save(self.path / INDEX)
        self.store.clear_pending([r for r, _ in pend])
        return len(pend)

    def set_link_stats(self, stats: dict[str, tuple[int, int]], source: str) -> None:
        """Replace the KB's link statistics (normalised form -> (linked, seen)) in one transaction."""
        self._need_writable()
        self.store.replace_link_stats({normalize_alias(k): v for k, v in stats.items()})
        self._record("link-stats", {"forms": len(stats), "source": source})

    @property
    def changed(self) -> bool:
        """Whether this KB object wrote a change (an update, a removal, link statistics, a store migration)."""
        return self._changed or self.store.migrated

    def _record(self, op: str, counts: dict[str, Any]) -> None:
        if op == "link-stats" or any(counts.get(k) for k in ("added", "updated", "unchanged_text", "removed")):
            self._changed = True
        m = self._save_counts(save=False)
        m.history = _trimmed_history(m.history + [{"op": op, "at": m.updated, **counts}])
        m.save(self.path / MANIFEST)

    def _save_counts(self, save: bool = True) -> Manifest:
        """The manifest with counts as the store now holds them (saved atomically unless ``save`` is False)."""
        m = self.manifest
        m.counts["entities"] = self.store.count()
        m.counts["aliases"] = self.store.alias_count()
        m.counts["alias_counts"] = self.store.alias_count_pairs()
        m.counts["link_stats"] = self.store.link_stats_count()
        if m.has_vectors:
            m.counts["vectors"] = self.index().ntotal
        m.updated = now()
        if save:
            m.save(self.path / MANIFEST)
        return m


def same_model(a: str, b: str) -> bool:
    """Whether two names of a model name the same one: equal, or the same folder."""
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    try:
        return pa.is_dir() and pb.is_dir() and pa.samefile(pb)
    except OSError:
        return False


def _name_of(encoder: Any) -> str | None:
    """How an encoder was named when it was loaded (``BiEncoder.source``: a shipped name, a folder, a hub id)."""
    name = getattr(encoder, "source", None)
    return name if isinstance(name, str) and name else None


def _many(values: Any, what: str, method: str, single: str | None = None) -> list[Any]:
    """``values`` (several ids, names or texts: any iterable) as a list; one string or bytes is a DataError naming
    the method: iterated, it would be its characters."""
    if isinstance(values, (str, bytes)):
        example = f"kb.{method}([{values!r:.40}])"
        raise DataError(f"kb.{method} takes a list of {what}, not one {type(values).__name__} ({values!r:.60}): it "
                        f"would be read as its characters", where=what,
                        fix=f"pass a list: {example}" + (f", or use kb.{single}" if single else ""))
    if values is None or not hasattr(values, "__iter__"):
        raise DataError(f"kb.{method} takes a list of {what}, not {type(values).__name__}", where=what,
                        fix=f"pass a list, e.g. kb.{method}([...])")
    return list(values)


def _not_one_entity(entities: Any, method: str) -> None:
    if isinstance(entities, Entity):  # iterated, it is its (field, value) pairs
        raise DataError(f"kb.{method} takes a list (or any iterable) of entities, not one Entity", where="entities",
                        fix=f"pass a list: kb.{method}([entity], encoder)")


def _count(value: Any, name: str) -> int:
    """``value`` as an int >= 1 (a numpy integer too); a ConfigError naming ``name`` otherwise (FAISS asserted)."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} must be a whole number >= 1, not {value!r:.60}", where=name, fix=f"e.g. {name}=10")
    return int(value)


def _by_name(names: Sequence[str], by_keys: Callable[[list[str]], dict[str, Any]]) -> dict[str, Any]:
    """A per-key store look-up answered per name: names are compared by their normalised alias key."""
    keys = {n: normalize_alias(n) for n in names}
    found = by_keys(sorted(set(keys.values())))
    return {n: found[k] for n, k in keys.items() if k in found}
