"""Adapter -> entity store -> entity vectors -> FAISS index -> manifest, in a staging directory.

Each phase checkpoints (ingest position in the store's meta table, one vector file per chunk, the trained
index), so re-running an interrupted build with the same inputs resumes where it stopped; the finished
generation is published by an atomic rename of ``CURRENT``, so the previous KB stays intact until then.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from glinker.errors import ConfigError, GlinkerError, KBError
from glinker.kb.adapters import (
    AdapterReport,
    KBAdapter,
    described,
    keyed_options,
    read_entities,
    secret_options,
)
from glinker.kb.encoder import EntityEncoder, encode_sorted
from glinker.kb.kb import CURRENT, INDEX, MANIFEST, STORE, WRITER_LOCK, close_quietly, publish_staged, writing
from glinker.kb.manifest import Manifest, glinker_version, now
from glinker.kb.store import AGAIN, EntityStore, TextTemplate, sqlite_uri, write_error
from glinker.types import Entity

log = logging.getLogger(__name__)

STORE_BYTES_PER_ENTITY = 600
"""Rough on-disk size of one entity record with its aliases (measured ~300-700 B on Wikidata-like records)."""


class Nameless:
    """Entities written without a label, by a build or an update: counted as they pass (the first ids kept) and
    warned of at the end. Such an entity is linkable only through its aliases, and its links show no name."""

    def __init__(self) -> None:
        self.n = 0
        self.ids: list[str] = []

    def see(self, e: Entity) -> None:
        if not e.label.strip():
            self.n += 1
            if len(self.ids) < 5:
                self.ids.append(e.id)

    def say(self, prefix: str = "") -> None:
        if self.n:
            log.warning("%s%d entities have no label (e.g. %s): they show no name in links, and are found only by "
                        "their aliases (map the label column/field, or fill it in the source)", prefix, self.n,
                        ", ".join(repr(i) for i in self.ids))


def index_bytes_per_vector(factory: str, dim: int) -> int:
    """Approximate bytes per vector of a faiss factory string (codes + id)."""
    code = factory.split(",")[-1]
    if code.startswith("SQ8"):
        return dim + 8
    if code.startswith("SQ4"):
        return dim // 2 + 8
    if code.startswith("SQfp16"):
        return dim * 2 + 8
    if code.startswith("PQ"):
        m = int("".join(ch for ch in code[2:].split("x")[0] if ch.isdigit()) or 8)
        return m + 8
    return dim * 4 + 8


def estimate_resources(n: int, dim: int | None, factory: str) -> dict[str, Any]:
    """Disk and memory a build of ``n`` entities needs: final KB, temporary vectors, peak RAM (bytes)."""
    from glinker.kb.index import auto_factory, default_train_size

    store = n * STORE_BYTES_PER_ENTITY
    if not dim:
        return {"entities": n, "kb_disk": store, "temp_disk": 0, "peak_ram": 256 * 2**20}
    fac = auto_factory(n, dim) if factory == "auto" else factory
    index = n * index_bytes_per_vector(fac, dim)
    temp = n * dim * 4
    train = default_train_size(fac, n) * dim * 4
    return {"entities": n, "kb_disk": store + index, "temp_disk": temp, "peak_ram": index + train + 512 * 2**20,
            "factory": fac}


def _source_key(adapter: KBAdapter, fingerprint: str | None, template: str, factory: str) -> str:
    d = adapter.describe()
    # how it reads (workers, ...), not what it yields; on_error only says what a bad record does, so a build that
    # stopped at one resumes after the entities it stored when run again with -o on_error=skip (its fix says so)
    reading = set(getattr(adapter, "reading_options", ())) | {"on_error"}
    raw = d.get("options") or {}
    # a declared secret (an API key, a password) is how the source is reached, not what it holds: a rotated key
    # resumes; an option only named like a secret is keyed by a hash of its value (it may change what is read)
    options = keyed_options(adapter, {k: v for k, v in raw.items() if k not in reading})
    ident: dict[str, Any] = {"adapter": d.get("adapter"), "source": d.get("source"), "options": options,
                             "model": fingerprint, "template": template, "factory": factory}
    src = Path(str(d.get("source", "")))
    if src.is_file() and getattr(adapter, "resume_by_prefix", False):
        # a dump cut short and downloaded again resumes where the cut one stopped: same beginning, same key
        with open(src, "rb") as f:
            ident["file"] = hashlib.sha256(f.read(1 << 16)).hexdigest()
    # a file edited since (a bad line mended) resumes too: the resumed build reads past what it stored and compares
    # those entities with what it stored (their ids and a digest of their content, _skip_stored), starting over when
    # they differ
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _bar(enabled: bool, **kw: Any) -> Any:
    from tqdm.auto import tqdm

    if kw.get("total") is not None and kw["total"] < 1000:
        kw["unit_scale"] = False  # "20/20", not "20.0/20.0"
    return tqdm(disable=not enabled, dynamic_ncols=True, **kw)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    from glinker.io import atomic_write

    try:
        atomic_write(path, lambda f: np.save(f, arr), fsync=False)
    except OSError as e:
        if e.errno is None and "written" in str(e):  # numpy's "N requested and M written": the device is full
            import errno

            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e
        raise


def build_kb(adapter: KBAdapter, out: str | Path, encoder: EntityEncoder | None, *, model_name: str | None = None,
             template: str = "{label}: {description}", factory: str = "auto", nprobe: int | None = None,
             batch_size: int = 64, chunk_size: int = 16384, train_size: int | None = None, resume: bool = True,
             progress: bool = False, wait: bool = False) -> Path:
    """Build (or resume building) the KB directory ``out`` from ``adapter``; returns the published generation.

    ``encoder=None`` builds an alias-only KB (store + alias index, no vectors). The build holds the folder's writer
    lock (:func:`glinker.kb.kb.writing`): while another process writes it (a build, an update) it is a KBError, or
    with ``wait`` it waits its turn. A local model folder (``model_name``) is recorded by its absolute path."""
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"the KB output {root} is a file, not a directory", where="out",
                          fix="give a new or existing KB directory, e.g. --out kb_out/mine")
    tmpl = TextTemplate(template)
    if encoder is not None:
        from glinker.kb.index import VectorIndex

        VectorIndex.check_factory(factory, encoder.dim)  # before hours of encoding, not after
    if root.is_dir() and not (root / CURRENT).is_file() and not any(root.glob(".staging-*")) and any(
            not p.name.startswith(".") for p in root.iterdir()):
        raise ConfigError(f"{root} is not empty and holds no KB: building there would mix the KB with its files",
                          where="out", fix="give a new or empty folder, or an existing KB directory")
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a read-only or forbidden parent; a file where a parent folder should be
        said = write_error(e, root.parent if created else root)
        if said is None:
            from glinker.io import file_in_the_way

            file = file_in_the_way(root)
            raise ConfigError(f"cannot create the KB folder {root}: {e.strerror or e}", where="out",
                              fix=(f"{file} is a file, not a folder: " if file is not None else "")
                              + "give the KB a folder whose parent folders are folders (or can be created)") from None
        raise said from None
    from glinker.io import Busy, locked

    try:
        # the folder's writer lock (one process writes a KB folder at a time: builds, updates, syncs), and the lock
        # an older glinker's build takes
        with writing(root, "a build", wait), locked(root / ".build.lock", wait=wait):
            kw = dict(model_name=_recorded_model(model_name), template=template, factory=factory, nprobe=nprobe,
                      batch_size=batch_size, chunk_size=chunk_size, train_size=train_size, progress=progress,
                      tmpl=tmpl)
            try:
                return _build_locked(adapter, root, encoder, resume=resume, **kw)
            except SourceChanged as e:
                changed = str(e)  # (retried outside this block: its traceback holds the first reading's workers)
            log.warning("the source changed since the interrupted build: %s; starting the build over", changed)
            return _build_locked(adapter, root, encoder, resume=False, **kw)
    except Busy:
        raise KBError(f"another build is writing {root}", where=str(root),
                      fix="wait for it to finish (or stop it), or build into another folder") from None
    except (GlinkerError, OSError, sqlite3.Error) as e:
        # no room left, a read-only folder (a store's error is one already): said with what to do, and that it resumes
        said = e if isinstance(e, GlinkerError) else write_error(e, root)
        if said is None:
            raise
        if getattr(said, "write_failed", False) and getattr(adapter, "resumable", True) \
                and any(root.glob(".staging-*")):  # what it wrote is kept for the next run
            said.fix = (said.fix or "").replace(AGAIN, "run the same command again: the build resumes where it "
                                                       "stopped")
            said.args = (said.render(),)
        if said is e:
            raise
        raise said from e
    finally:  # a new folder that holds nothing of a build (it failed before storing anything) is not left behind
        if created and root.is_dir() and all(p.name in (".build.lock", WRITER_LOCK) for p in root.iterdir()):
            shutil.rmtree(root, ignore_errors=True)


def _recorded_model(name: str | None) -> str | None:
    """The model name a manifest records: a local model folder by its absolute path (a relative one named another
    folder, or a hub id, from the folder of a later `kb add`); shipped names and hub ids as they are."""
    if not name:
        return name
    p = Path(name).expanduser()
    if p.is_dir() and not p.is_absolute():
        return os.path.normpath(p.absolute())
    return name


def _build_locked(adapter: KBAdapter, root: Path, encoder: EntityEncoder | None, *, model_name: str | None,
                  template: str, factory: str, nprobe: int | None, batch_size: int, chunk_size: int,
                  train_size: int | None, resume: bool, progress: bool, tmpl: TextTemplate) -> Path:
    from glinker.cluster import encoding_identity, model_dtype

    fp = encoder.fingerprint if encoder is not None else None
    # an interrupted build resumes only in the precision it embedded in (float32 keys stay as they were)
    key = _source_key(adapter, encoding_identity(encoder) if encoder is not None else None, template, factory)
    staging = root / f".staging-{key}"
    for other in root.glob(".staging-*"):
        if other != staging:
            log.warning("removing %s, an interrupted build of another source (or of this file before it changed) or "
                        "other options (%s): this build replaces it", other, _staged(other))
            shutil.rmtree(other, ignore_errors=True)
    if staging.exists() and resume and not getattr(adapter, "resumable", True):
        log.info("starting over: a %s source may have changed since the interrupted build (rows resumed by "
                 "position would be wrong)", getattr(adapter, "name", "this"))
        resume = False
    if staging.exists() and not resume:
        shutil.rmtree(staging)
    if staging.exists():
        log.info("resuming the build in %s", staging)
    try:
        staging.mkdir(exist_ok=True)
        t0 = time.time()
        store = EntityStore(staging / STORE)
        try:
            _ingest(adapter, store, tmpl, chunk_size, progress)
            n = store.count()
            if n == 0:
                raise _no_entities(adapter)
            desc = described(adapter)
            if "skipped_by_reason" in desc and not desc["skipped_by_reason"]:
                # a build resumed after its reading (killed while embedding) read nothing here: the reading's counts
                desc["skipped_by_reason"] = store.get_meta("skipped_by_reason", {}) or {}
            manifest = Manifest(model=model_name, model_fingerprint=fp, template=template,
                                glinker_version=glinker_version(),
                                source={**desc, "report": store.get_meta("adapter_report", {})})
            if encoder is not None:
                _embed(store, encoder, tmpl, staging / "parts", chunk_size, batch_size, progress)
                fac, probe, nvec, bound = _index(store, staging, encoder.dim, factory, nprobe, train_size, progress)
                manifest.dim, manifest.factory, manifest.nprobe = encoder.dim, fac, probe
                manifest.metric, manifest.mips_norm = (("mips_l2", bound) if bound is not None
                                                       else ("inner_product", None))
                manifest.counts["vectors"] = nvec
            manifest.counts.update(entities=n, aliases=store.alias_count(), alias_counts=store.alias_count_pairs(),
                                   duplicates=int(store.get_meta("duplicates", 0)))
            manifest.history = [{"op": "build", "at": now(), "seconds": round(time.time() - t0, 1),
                                 **({"dtype": model_dtype(encoder)} if encoder is not None else {})}]
        except BaseException:
            close_quietly(store)  # (a full disk fails the close too) the first error is the one to say
            raise
        store.close()
        manifest.save(staging / MANIFEST)
        shutil.rmtree(staging / "parts", ignore_errors=True)
        return publish_staged(root, staging, key)
    except BaseException:
        # a SQL source starts over (its partial copy is of no use); a build that stored nothing has nothing to resume
        if not getattr(adapter, "resumable", True) or not _stored(staging):
            shutil.rmtree(staging, ignore_errors=True)
        raise


def _report(adapter: KBAdapter) -> AdapterReport:
    """The adapter's report (an empty one for an adapter that keeps none)."""
    rep = getattr(adapter, "report", None)
    return rep if isinstance(rep, AdapterReport) else AdapterReport()


def _filter_options(adapter: KBAdapter, options: dict[str, Any]) -> dict[str, Any]:
    """The options this reading sets away from their defaults (what may filter records out), secrets and
    reading options (workers...) left out."""
    model = getattr(adapter, "options_model", None)
    fields = getattr(model, "model_fields", None) or {}
    skip = set(getattr(adapter, "reading_options", ())) | secret_options(adapter, options) | {"on_error"}
    out = {}
    for k, v in options.items():
        if k in skip:
            continue
        f = fields.get(k)
        default = f.get_default(call_default_factory=True) if f is not None else None
        if v != default and v not in (None, "", [], {}):
            out[k] = v
    return out


def _no_entities(adapter: KBAdapter) -> KBError:
    """The error for a source that yielded no entities: what was read, skipped and why, and where to look."""
    desc = described(adapter)
    why = desc.get("skipped_by_reason") or {}
    rep = _report(adapter)
    name = getattr(adapter, "name", "") or "this"
    seen = (f"; {rep.read:,} records read, {rep.skipped:,} filtered out by the adapter, {rep.bad:,} bad"
            if rep.read or rep.skipped else "") + (
        "; skipped: " + ", ".join(f"{k} {v:,}" for k, v in sorted(why.items(), key=lambda kv: -kv[1]))
        if why else "")
    if rep.bad and not rep.skipped and rep.problems:
        # every record bad, for one reason as a rule (a file of another kind): the first one's words, not the filters
        first = str(rep.problems[0])
        fix = f"every record was bad, the first: {first[first.find(': ') + 2:] if ': ' in first else first}"
    elif name == "wikidata":
        fix = ("check the source and the adapter filters (languages, kinds, p31_include/p31_exclude, "
               "min_sitelinks, require_label)")
    elif rep.skipped:
        opts = desc.get("options") if isinstance(desc.get("options"), dict) else {}
        filters = _filter_options(adapter, opts)
        said = ", ".join(f"{k}={v!r}" for k, v in filters.items())
        fix = (f"the {name} adapter's own filters dropped " + ("every record" if not rep.bad else "the good records")
               + f": loosen its filtering options ({said or 'see its documentation'}) or check the source"
               + (" (-o on_error=skip only skips the bad records)" if rep.bad else ""))
    else:
        fix = "check the source: it is empty, or every record was bad (-o on_error=skip skips them)"
    return KBError(f"the source yielded no entities{seen}", where=str(desc.get("source")), fix=fix)


def _stored(staging: Path) -> int | None:
    """Entities an interrupted build's folder holds (None: none can be read)."""
    try:
        import sqlite3

        db = sqlite3.connect(sqlite_uri(staging / STORE, "mode=ro"), uri=True)
        try:
            return int(db.execute("SELECT COUNT(*) FROM entities").fetchone()[0])
        finally:
            db.close()
    except Exception:  # no store yet, or one too broken to read
        return None


def _staged(staging: Path) -> str:
    """What an interrupted build's folder holds, in words (for the warning that it is removed)."""
    n = _stored(staging)
    if n is None:
        return "unreadable"
    parts = len(list((staging / "parts").glob("*"))) if (staging / "parts").is_dir() else 0
    return f"{n:,} entities stored" + (f", {parts} vector files" if parts else "")


_CHECK_IDS = 8  # ids of the last stored entities a resumed build finds again at the same place in the source


class SourceChanged(Exception):
    """The source read again by a resumed build no longer holds the stored entities where they were."""


class ContentDigest:
    """An order-sensitive digest of the entities read so far, kept in the store's meta with the read position: a
    resumed build that reads past the stored entities again checks that the source still holds *them*, not only
    their ids (a newer dump whose first 64 KiB are the old one's, with records changed further on, was resumed
    into a KB of two dumps). Per entity 3-11 us (1-30 languages): 5-8% of a Wikidata dump's reading. The sum of
    per-position hashes, so it continues from its hex."""

    _MOD = 1 << 128

    def __init__(self, hex_value: str | None = None, count: int = 0) -> None:
        self.value = int(hex_value, 16) if hex_value else 0
        self.count = count

    def add(self, e: Entity) -> None:
        try:
            body = e.model_dump_json().encode()
        except Exception:  # a value pydantic cannot write as JSON (an adapter's extra): its repr, stable per run
            body = repr(e.__dict__).encode("utf-8", "surrogatepass")
        h = hashlib.blake2b(body, digest_size=16, person=b"glinker-kb", salt=self.count.to_bytes(16, "little")[:16])
        self.value = (self.value + int.from_bytes(h.digest(), "little")) % self._MOD
        self.count += 1

    @property
    def hex(self) -> str:
        return f"{self.value:032x}"


def _skip_stored(it: Iterator[Any], pos: int, last_ids: list[str] | None, adapter: KBAdapter,
                 digest: str | None = None) -> ContentDigest:
    """Read the first ``pos`` entities of ``it`` (stored by the interrupted build), checking that the last of them
    are the ones stored last and, when the build recorded it, that their content is what was stored;
    :class:`SourceChanged` when not (a newer dump at the same path, an edited file). Returns the digest read."""
    from collections import deque

    tail: deque[str] = deque(maxlen=max(1, len(last_ids or ())))
    seen = ContentDigest()
    for e in islice(it, pos):
        tail.append(e.id)
        seen.add(e)
    n = seen.count
    src = adapter.describe().get("source")
    if n < pos:
        raise SourceChanged(f"{src} now holds {n:,} entities, fewer than the {pos:,} the interrupted build stored")
    if last_ids and list(tail) != list(last_ids):
        raise SourceChanged(f"{src} holds {', '.join(tail)} where the interrupted build stored {', '.join(last_ids)} "
                            f"(entities {pos - len(tail) + 1:,}-{pos:,})")
    if digest and seen.hex != digest:
        raise SourceChanged(f"the first {pos:,} entities of {src} are not the ones the interrupted build stored "
                            "(same ids, other content: a newer dump or an edited file)")
    return seen


def _source_stat(adapter: KBAdapter) -> list[int] | None:
    """[size, mtime] of a file source (None for others: a database is read once, as it was then)."""
    src = Path(str(adapter.describe().get("source", "")))
    try:
        st = src.stat()
    except (OSError, ValueError):
        return None
    return [st.st_size, st.st_mtime_ns] if src.is_file() else None


def _check_read_source(adapter: KBAdapter, store: EntityStore) -> None:
    """A build killed after reading its source resumes without reading it again; when the file changed since then
    (a newer dump at the same path), it is read once more and compared with what was stored, instead of a KB of
    the old dump published under the new file's name. :class:`SourceChanged` when it differs."""
    was, digest = store.get_meta("ingest_source_stat", None), store.get_meta("ingest_digest", None)
    now_stat = _source_stat(adapter)
    if was is None or digest is None or now_stat is None or list(was) == now_stat:
        return
    pos = int(store.get_meta("ingest_pos", 0))
    log.warning("%s changed since the interrupted build read it: reading it again to compare",
                adapter.describe().get("source"))
    it = read_entities(adapter)
    try:
        _skip_stored(it, pos, store.get_meta("ingest_last_ids", None), adapter, digest)
        if next(it, None) is not None:
            raise SourceChanged(f"{adapter.describe().get('source')} now holds more than the {pos:,} entities the "
                                "interrupted build stored")
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
    store.set_meta("ingest_source_stat", now_stat)  # the same entities: this file is the one read


def _ingest(adapter: KBAdapter, store: EntityStore, tmpl: TextTemplate, chunk: int, progress: bool) -> None:
    if store.get_meta("ingest_done", False):
        _check_read_source(adapter, store)
        return
    pos = int(store.get_meta("ingest_pos", 0))
    dups = int(store.get_meta("duplicates", 0))
    it: Iterator[Any] = read_entities(adapter)  # the adapter's own errors said with its name
    # a build before the digest was recorded resumes with the id check alone
    digest = ContentDigest() if pos == 0 or store.get_meta("ingest_digest", None) else None
    if pos and digest is None:  # stored by a glinker that kept no digest: nothing to check the source against
        raise SourceChanged("the interrupted build recorded no digest of what it stored")
    if pos:
        log.warning("resuming the interrupted build: %d entities already stored are read past", pos)
        try:
            read = _skip_stored(it, pos, store.get_meta("ingest_last_ids", None), adapter,
                                store.get_meta("ingest_digest", None))
            digest = read if digest is not None else None
        except SourceChanged:
            close = getattr(it, "close", None)
            if close is not None:
                close()  # the reading's worker processes and open file end now, not with the retry
            raise
    est = None
    try:
        est = adapter.estimate_count()
    except Exception as e:  # an estimate is a nicety; never fail a build for it
        log.debug("no size estimate: %s", e)
    buf: list[Any] = []
    bar = _bar(progress, total=est, initial=pos, desc="entities", unit="ent", unit_scale=True)

    dup_ids: list[str] = []

    def flush(done: bool) -> None:
        nonlocal pos, dups
        if len(dup_ids) < 5:  # name the first repeated ids (the count covers them all)
            ids = [e.id for e in buf]
            seen_here: set[str] = set()
            for i in [*store.rids_for_ids(ids), *(i for i in ids if i in seen_here or seen_here.add(i))]:
                if len(dup_ids) < 5 and i not in dup_ids:
                    dup_ids.append(i)
        new_pos = pos + len(buf)  # recorded only once the chunk is stored (an interrupted write resumes before it)
        meta: dict[str, Any] = {"ingest_pos": new_pos}
        if digest is not None:
            for e in buf:
                digest.add(e)
            meta["ingest_digest"] = digest.hex
        if buf:  # what a resumed build checks the source against
            meta["ingest_last_ids"] = [e.id for e in buf[-_CHECK_IDS:]]
        c = store.upsert(buf, tmpl, track_pending=False, meta=meta)
        pos, n = new_pos, len(buf)
        buf.clear()  # stored: never written again, whatever happens next
        dups += c["updated"] + c["unchanged_text"] + c["same"] + c["repeated"]
        meta = {"duplicates": dups}
        if done:
            meta.update(ingest_done=True, adapter_report=_report(adapter).as_dict(),
                        ingest_source_stat=_source_stat(adapter),
                        skipped_by_reason=dict(described(adapter).get("skipped_by_reason") or {}))
        store.upsert([], tmpl, track_pending=False, meta=meta)
        bar.update(n)
        if bar.total is not None and bar.n > bar.total:  # the source held more than its estimate: count on
            bar.total = None

    nameless = Nameless()
    in_flush = False
    try:
        for e in it:
            nameless.see(e)
            buf.append(e)
            if len(buf) >= chunk:
                try:
                    flush(False)
                except BaseException:
                    in_flush = True
                    raise
    except BaseException:
        # keep everything read before the error (whatever it is: a bad record, a dropped connection, Ctrl-C), so
        # the re-run resumes after it; a source read again from the start (resumable=False) keeps nothing. An
        # error in the writing itself is not written again: the re-run resumes after the last stored chunk
        if getattr(adapter, "resumable", True) and not in_flush:
            try:
                flush(False)
            except Exception:  # the error that stopped the reading is the one to say
                log.warning("could not store the %d entities read before the error", len(buf), exc_info=True)
        bar.close()
        raise
    flush(True)
    bar.close()
    nameless.say()
    if dups:
        log.warning("%d records repeated an id already seen%s; the later record was kept", dups,
                    f" (e.g. {', '.join(repr(i) for i in dup_ids)})" if dup_ids else "")
    rep = _report(adapter)
    if rep.bad:
        log.warning("%d bad records skipped (first: %s)", rep.bad, rep.problems[:3])


def _embed(store: EntityStore, encoder: EntityEncoder, tmpl: TextTemplate, parts: Path, chunk: int,
           batch_size: int, progress: bool) -> None:
    parts.mkdir(exist_ok=True)
    n = store.count()
    bar = _bar(progress, total=n, desc="vectors", unit="ent", unit_scale=True)
    last = 0
    k = 0
    while True:
        ids_f, vec_f = parts / f"ids-{k:06d}.npy", parts / f"vec-{k:06d}.npy"
        if ids_f.exists() and vec_f.exists():
            ids = np.load(ids_f)
            last = int(ids[-1])
            bar.update(len(ids))
            k += 1
            continue
        batch = next(store.iter_texts(tmpl, after_rid=last, batch=chunk), None)
        if batch is None:
            break
        rids, texts = batch
        vecs = encode_sorted(encoder, texts, batch_size)
        _save_npy(vec_f, vecs)
        _save_npy(ids_f, np.asarray(rids, dtype=np.int64))  # written last: marks the chunk complete
        last = rids[-1]
        bar.update(len(rids))
        k += 1
    bar.close()


def _parts(parts: Path) -> list[tuple[Path, Path]]:
    return [(p, parts / p.name.replace("ids-", "vec-")) for p in sorted(parts.glob("ids-*.npy"))]


def _index(store: EntityStore, staging: Path, dim: int, factory: str, nprobe: int | None, train_size: int | None,
           progress: bool) -> tuple[str, int, int, float | None]:
    from glinker.kb.index import VectorIndex, auto_factory, default_nprobe, default_train_size

    files = _parts(staging / "parts")
    n = sum(len(np.load(i, mmap_mode="r")) for i, _ in files)
    fac = auto_factory(n, dim) if factory == "auto" else factory
    probe = nprobe if nprobe is not None else default_nprobe(fac)
    done = store.get_meta("index_done")
    if done and (staging / INDEX).is_file():
        return fac, probe, int(done), store.get_meta("index_mips_norm")
    index = VectorIndex.create(fac, dim, probe)
    if index.needs_training:
        want = min(n, train_size) if train_size else default_train_size(fac, n)
        rng = np.random.default_rng(0)
        sample = []
        for _, vf in files:
            v = np.load(vf, mmap_mode="r")
            take = max(1, int(round(want * len(v) / n)))
            sample.append(np.asarray(v[np.sort(rng.choice(len(v), size=min(take, len(v)), replace=False))]))
        log.info("training %s on %d vectors", fac, sum(len(s) for s in sample))
        index.train(np.concatenate(sample))
    bar = _bar(progress, total=n, desc="index", unit="vec", unit_scale=True)
    for idf, vf in files:
        ids = np.load(idf)
        index.add(np.load(vf), ids)
        bar.update(len(ids))
    bar.close()
    index.save(staging / INDEX)
    store.upsert([], TextTemplate("{label}"), track_pending=False,
                 meta={"index_done": index.ntotal, "index_mips_norm": index.mips_norm})
    return fac, probe, index.ntotal, index.mips_norm
