"""Wikidata JSON dump adapter: streams ``[``, one entity per line with a trailing comma, ``]``.

Reads ``.json``, ``.json.gz`` or ``.json.bz2`` without loading the file; lines are parsed in worker processes
in ordered chunks, so the output order is the dump order and memory is bounded by a small window of chunks.
"""

from __future__ import annotations

import json

try:  # orjson parses dump lines several times faster; the standard library is the fallback
    from orjson import loads as _loads
except ImportError:  # pragma: no cover
    _loads = json.loads
import logging
import os
import re
import zlib
from collections import deque
from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import field_validator

from glinker.errors import DataError, SourceCut
from glinker.kb.adapters import AdapterOptions, AdapterReport, parse_options
from glinker.types import Entity
from kb_adapters._common import absolute_source, check_source_file, compression, open_binary, trusted_entity

log = logging.getLogger(__name__)

_KIND_BY_PREFIX = {"Q": "item", "P": "property", "L": "lexeme"}
_LANG = re.compile(r"[a-z]{2,3}(-[a-z0-9]+)*")


# bytes of a dump (as stored, compressed or not) read to estimate its entity count; smaller files are counted
ESTIMATE_SAMPLE_BYTES = 4 << 20


class WikidataOptions(AdapterOptions):
    languages: list[str] = ["en"]
    """Languages to keep, in order of preference: the first present gives ``label`` and ``description``."""
    fallback: bool = True
    """When none of ``languages`` has a label, use ``mul`` and then any label (so no entity goes nameless); and keep
    the language-independent ``mul`` label and aliases as aliases."""
    kinds: list[str] = ["item"]
    """Entity kinds to keep: item, property, lexeme."""
    p31_include: list[str] = []
    """Keep only entities that are an instance of (P31) one of these QIDs (empty: no filter)."""
    p31_exclude: list[str] = []
    """Drop entities that are an instance of one of these QIDs (e.g. Q4167836 category, Q13442814 article)."""
    min_sitelinks: int = 0
    """Drop entities with fewer sitelinks (a popularity floor)."""
    require_label: bool = True
    """Drop entities that have no label at all after fallback."""
    workers: int | None = None
    """Parser processes (None: CPU count - 1 on machines with 4+ CPUs, else 0 = parse in this process, since
    with fewer cores the parent's reading competes with the workers and in-process parsing is as fast)."""
    block_mb: float = 4.0
    """Megabytes of whole lines sent to a worker at a time."""
    allow_truncated: bool = False
    """On a truncated archive, keep what was read and end normally instead of raising."""

    @field_validator("languages")
    @classmethod
    def _language_codes(cls, v: list[str]) -> list[str]:
        out = [x.strip().lower() for x in v if x.strip()]
        bad = [x for x in out if not _LANG.fullmatch(x)]
        if bad or not out:
            raise ValueError((f"{bad[0]!r} is not a Wikidata language code" if bad else "no language given")
                             + "; use codes such as en, de, zh-hans, mul")
        return out

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in _KIND_BY_PREFIX.values()]
        if bad:
            raise ValueError(f"unknown kind {bad[0]!r}; kinds are item, property, lexeme")
        return v

    @field_validator("p31_include", "p31_exclude")
    @classmethod
    def _qids(cls, v: list[str]) -> list[str]:
        out = [x.strip().upper() for x in v if x.strip()]
        bad = [x for x in out if not re.fullmatch(r"Q[1-9][0-9]*", x)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a QID; write classes as Q5 (human), Q515 (city), ...")
        return out


def _claim_ids(claims: dict[str, Any], prop: str) -> list[str]:
    out: list[str] = []
    for st in claims.get(prop, ()):
        if st.get("rank") == "deprecated":
            continue
        dv = st.get("mainsnak", {}).get("datavalue")
        if not dv:
            continue
        val = dv.get("value")
        if isinstance(val, dict):
            # old dumps carry only numeric-id; current ones carry both
            qid = val.get("id") or (f"Q{val['numeric-id']}" if "numeric-id" in val else None)
            if qid and qid not in out:
                out.append(qid)
    return out


_DUMP_KEYS = ("labels", "lemmas", "claims", "sitelinks", "descriptions", "aliases", "forms", "senses")


def _pretty_printed(block: bytes) -> bool:
    """Whether a file's first block is indented JSON (``json.dump(..., indent=2)``): its first lines after an
    opening ``[`` are a lone ``{`` or a ``"key":`` line, never a whole entity."""
    lines = [ln.strip() for ln in block[:4096].split(b"\n")[:4] if ln.strip()]
    if lines and lines[0] == b"[":
        lines = lines[1:]
    elif lines and lines[0].startswith(b"[") and len(lines[0]) > 1:
        lines = [lines[0][1:].strip(), *lines[1:]]
    return len(lines) >= 2 and lines[0] in (b"{", b"[{") and lines[1].startswith(b'"') and not lines[1].endswith(b"}")


def parse_entity(doc: dict[str, Any], opts: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """One dump entity -> Entity fields, or (None, reason) when filtered out. Pure, picklable, worker-side."""
    eid = doc.get("id")
    if not isinstance(eid, str) or not eid:
        raise ValueError("entity has no 'id'")
    if not any(k in doc for k in _DUMP_KEYS):
        # another JSON record (glinker's own, 'label' a string) read as a dump entity: every one was filtered as
        # unnamed, and the error blamed the filters
        raise ValueError(f"not a Wikidata entity (no labels, claims or sitelinks; its keys: {', '.join(list(doc)[:6])})"
                         ": a JSONL file of other records is read with -a jsonl")
    kind = doc.get("type") or _KIND_BY_PREFIX.get(eid[:1], "")
    if kind not in opts["kinds"]:
        return None, "kind"
    sitelinks = doc.get("sitelinks") or {}
    if len(sitelinks) < opts["min_sitelinks"]:
        return None, "sitelinks"
    claims = doc.get("claims") or {}
    p31 = _claim_ids(claims, "P31") if claims else []
    inc, exc = opts["p31_include"], opts["p31_exclude"]
    if inc and not any(t in inc for t in p31):
        return None, "p31"
    if exc and any(t in exc for t in p31):
        return None, "p31"
    langs: list[str] = opts["languages"]
    raw_labels = doc.get("labels") or doc.get("lemmas") or {}
    raw_desc = doc.get("descriptions") or {}
    raw_alias = doc.get("aliases") or {}
    # names are stripped here as in every adapter, so the same entity reads the same from any source
    labels = {lg: v for lg in langs if lg in raw_labels and (v := (raw_labels[lg].get("value") or "").strip())}
    descs = {lg: v for lg in langs if lg in raw_desc and (v := (raw_desc[lg].get("value") or "").strip())}
    aliases_by_lang = {lg: [v for a in raw_alias[lg] if (v := (a.get("value") or "").strip())]
                       for lg in langs if raw_alias.get(lg)}
    label = next((labels[lg] for lg in langs if lg in labels), "")
    fb = ""
    if not label and opts["fallback"] and raw_labels:
        # "mul" is Wikidata's language-independent label; then the first label in a stable (sorted) order
        fb = "mul" if "mul" in raw_labels else sorted(raw_labels)[0]
        label = (raw_labels[fb].get("value") or "").strip()
        if label:
            labels.setdefault(fb, label)
    if not label and opts["require_label"]:
        return None, "label"
    description = next((descs[lg] for lg in langs if lg in descs), "")
    if not description and fb and fb != "mul" and (v := ((raw_desc.get(fb) or {}).get("value") or "").strip()):
        description = descs[fb] = v  # the label's own language: a description that matches the name
    aliases: list[str] = []
    seen = {label}
    for lg in langs:
        for a in aliases_by_lang.get(lg, ()):
            if a not in seen:
                seen.add(a)
                aliases.append(a)
        # other requested languages' labels are names too
        lab = labels.get(lg)
        if lab and lab not in seen:
            seen.add(lab)
            aliases.append(lab)
    if opts["fallback"] and "mul" not in langs:
        # "mul" names are language-independent (since 2024 many names live only there): names in every language
        for v in [(raw_labels.get("mul") or {}).get("value") or "",
                  *((a.get("value") or "") for a in raw_alias.get("mul") or ())]:
            v = v.strip()
            if v and v not in seen:
                seen.add(v)
                aliases.append(v)
    extra: dict[str, Any] = {"kind": kind}
    enwiki = sitelinks.get("enwiki")
    if enwiki and enwiki.get("title"):
        extra["enwiki"] = enwiki["title"]
    return {"id": eid, "label": label, "aliases": aliases, "alias_counts": {}, "description": description,
            "types": p31, "popularity": float(len(sitelinks)), "labels": labels, "descriptions": descs,
            "aliases_by_lang": aliases_by_lang, "extra": extra}, ""


def _shape_problem(doc: dict[str, Any]) -> str | None:
    """What in an entity is not shaped as a dump's (``labels``/``descriptions``: language -> {"language", "value"};
    ``aliases``: language -> a list of those; ``sitelinks``: site -> {"title"}), named by field and language; None
    when nothing is. Asked only for an entity that failed to parse (the hot path checks nothing)."""
    def term(v: Any) -> bool:
        return isinstance(v, dict) and isinstance(v.get("value", ""), str)

    for key in ("labels", "lemmas", "descriptions", "aliases", "sitelinks"):
        m = doc.get(key)
        if m is None:
            continue
        if not isinstance(m, dict):
            return f"'{key}' is a {type(m).__name__}, not an object keyed by language (or site)"
        for lg, v in m.items():
            ok = (isinstance(v, list) and all(term(a) for a in v)) if key == "aliases" else \
                 isinstance(v, dict) and (key == "sitelinks" or term(v))
            if not ok:
                shape = '[{"language", "value"}]' if key == "aliases" else '{"site", "title"}' \
                    if key == "sitelinks" else '{"language", "value"}'
                return (f"'{key}' of {lg!r} is {json.dumps(v, default=str)[:60]}, not {shape} as in a Wikidata "
                        "dump")
    return None


def parse_chunk(task: tuple[int, bytes | list[bytes], dict[str, Any]]) -> tuple[list[dict[str, Any]], list[tuple[int, str]],
                                                                       dict[str, int]]:
    """Parse dump lines starting at line ``first``: (entities, [(line, problem)], skipped-by-reason)."""
    first, block, opts = task
    lines = block.split(b"\n") if isinstance(block, bytes) else block
    ents: list[dict[str, Any]] = []
    problems: list[tuple[int, str]] = []
    skipped: dict[str, int] = {}
    for i, raw in enumerate(lines):
        s = raw.strip()
        if not s or s in (b"[", b"]"):
            continue
        if s.endswith(b","):
            s = s[:-1]
        doc: Any = None
        try:
            doc = _loads(s)
            if not isinstance(doc, dict):
                raise ValueError(f"expected an entity object, got {type(doc).__name__}")
            ent, why = parse_entity(doc, opts)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            msg = str(e)
            if isinstance(e, json.JSONDecodeError):
                msg = f"malformed or truncated JSON ({e.msg} at column {e.colno})"
            elif isinstance(e, (TypeError, AttributeError)) and isinstance(doc, dict):
                msg = _shape_problem(doc) or msg  # ("'str' object has no attribute 'get'" named no field)
            problems.append((first + i, msg[:200]))
            continue
        if ent is None:
            skipped[why] = skipped.get(why, 0) + 1
        else:
            ents.append(ent)
    return ents, problems, skipped


class WikidataAdapter:
    """Streams items (by default) of an official Wikidata JSON dump with language, kind, P31 and sitelink filters."""

    name: ClassVar[str] = "wikidata"
    options_model: ClassVar[type[AdapterOptions]] = WikidataOptions
    canonical_source = staticmethod(absolute_source)
    """A relative path made absolute: a pipeline's cached KB of this file is keyed by it."""
    reading_options: ClassVar[tuple[str, ...]] = ("workers", "block_mb", "allow_truncated")
    resume_by_prefix: ClassVar[bool] = True
    """A dump's entities come in a fixed order: a truncated download and its complete re-download share their
    first 64 KiB, and the build of the complete one resumes after the entities the cut one gave."""

    def __init__(self, source: str, **options: Any) -> None:
        self.options: WikidataOptions = parse_options(self.name, WikidataOptions, options)  # type: ignore[assignment]
        self.path = check_source_file(source, self.name)
        self.report = AdapterReport()
        self.skipped_by_reason: dict[str, int] = {}
        self.truncated = False

    def _opts(self) -> dict[str, Any]:
        o = self.options
        return {"languages": list(o.languages), "fallback": o.fallback, "kinds": set(o.kinds),
                "p31_include": set(o.p31_include), "p31_exclude": set(o.p31_exclude),
                "min_sitelinks": o.min_sitelinks, "require_label": o.require_label}

    def _chunks(self, opts: dict[str, Any]) -> Iterator[tuple[int, bytes, dict[str, Any]]]:
        """Blocks of whole lines in file order, with the number of their first line; shipping one bytes block per
        task (not a list of lines) keeps the parent's cost a memcpy. A truncated archive raises DataError after
        the last complete block."""
        size = max(1024, int(self.options.block_mb * (1 << 20)))
        lineno = 1
        offset = 0  # decompressed offset of the next block
        tail = b""
        bracketed = False
        try:
            with open_binary(self.path) as f:
                while True:
                    block = f.read(size)
                    if not block:
                        break
                    block += f.readline()  # end the block on a line boundary
                    if lineno == 1:
                        from glinker.io import wide_text_error

                        wide = wide_text_error(self.path, block[:64])
                        if wide is not None:  # read as UTF-8 it was "malformed JSON" on every line
                            raise wide
                        if block.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark (an editor's): not data
                            block = block[3:]
                            offset += 3
                    if lineno == 1:  # a dump opens with '[' (and must close with ']'); NDJSON (one entity a line) not
                        bracketed = block.lstrip().startswith(b"[")
                    if lineno == 1 and b"".join(block[:200].split()).startswith(b'{"entities"'):
                        raise DataError("the file is a Wikidata API answer (wbgetentities: one object holding "
                                        "'entities'), not a dump", where=str(self.path),
                                        fix="use a dump (latest-all.json.gz: '[', one entity per line, ']'); "
                                            "kb_adapters.wikidata.write_dump writes entities in that layout")
                    if lineno == 1 and _pretty_printed(block):
                        array = block.lstrip().startswith(b"[")
                        raise DataError("the file is pretty-printed JSON (an entity spread over many lines), not a "
                                        "dump's layout of one entity a line", where=f"{self.path}:2",
                                        fix=f"write it one entity a line, e.g. jq -c '{'.[]' if array else '.'}' FILE "
                                            "> entities.json (NDJSON is read as a dump is), or json.dumps without "
                                            "indent= per entity")
                    yield lineno, block, opts
                    lineno += block.count(b"\n")
                    offset += len(block)
                    stripped = block.rstrip()
                    tail = stripped[-1:] if stripped else tail
        except (EOFError, zlib.error, OSError) as e:
            # the failed block is lost to the exception: re-read it line by line up to the damage
            salvage: list[bytes] = []
            try:
                with open_binary(self.path) as f:
                    f.seek(offset)
                    for raw in f:
                        salvage.append(raw)
            except (EOFError, zlib.error, OSError):
                pass
            if salvage:
                yield lineno, b"".join(salvage), opts
                lineno += sum(r.count(b"\n") for r in salvage)
            self.truncated = True
            after = f"after line {lineno - 1}" if lineno > 1 else "before its first complete line"
            raise SourceCut(f"the archive is truncated or corrupt {after} ({e})", keep_option="allow_truncated",
                            where=f"{self.path}:{lineno}",
                            fix="download the dump again (every entity read before this point was kept); "
                                "or pass allow_truncated=true to build from what was read") from None
        if lineno > 1 and bracketed and tail != b"]":
            self.truncated = True
            raise SourceCut(f"the dump does not end with ']': the file is cut short after line {lineno - 1}",
                            keep_option="allow_truncated", where=f"{self.path}:{lineno - 1}",
                            fix="download or copy the dump again (every entity read before the cut was kept: the "
                                "build resumes); or pass allow_truncated=true to build from what was read")

    def iter_entities(self) -> Iterator[Entity]:
        """Stream the dump in order, parsing in worker processes; bad lines are counted with their line number."""
        self.report = AdapterReport()
        self.skipped_by_reason = {}
        self.label_languages: dict[str, int] = {}  # entities with a label in each language they were named in
        self.truncated = False
        opts = self._opts()
        ncpu = os.cpu_count() or 1
        workers = self.options.workers if self.options.workers is not None else (ncpu - 1 if ncpu >= 4 else 0)
        chunks = self._chunks(opts)
        try:
            if workers <= 0:
                for task in chunks:
                    yield from self._emit(parse_chunk(task))
                self._check_languages()
                return
            import multiprocessing as mp

            # fork needs no `if __name__ == "__main__"` guard in user scripts; workers only parse JSON
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ctx.Pool(workers) as pool:
                window: deque[Any] = deque()
                cut: DataError | None = None
                try:
                    for task in chunks:
                        window.append(pool.apply_async(parse_chunk, (task,)))
                        # a bounded window keeps memory flat whatever the dump size
                        while len(window) > 2 * workers:
                            yield from self._emit(window.popleft().get())
                except DataError as e:  # a cut file: the blocks read before the cut are still given
                    cut = e
                while window:
                    yield from self._emit(window.popleft().get())
                if cut is not None:
                    raise cut
                self._check_languages()
        except DataError:
            if self.options.allow_truncated and self.truncated:
                self.report.problem(str(self.path), "dump truncated; kept the entities read before the cut")
                return
            raise

    def _emit(self, result: tuple[list[dict[str, Any]], list[tuple[int, str]], dict[str, int]]) -> Iterator[Entity]:
        ents, problems, skipped = result
        rep = self.report
        for line, msg in problems:
            rep.read += 1
            rep.problem(f"{self.path}:{line}", msg)
        for why, c in skipped.items():
            self.skipped_by_reason[why] = self.skipped_by_reason.get(why, 0) + c
            rep.skipped += c
            rep.read += c
        seen = self.label_languages
        for d in ents:
            rep.read += 1
            rep.yielded += 1
            for lg in d["labels"]:
                seen[lg] = seen.get(lg, 0) + 1
            # every field is built with its type by parse_entity: no second validation in the parent
            yield trusted_entity(d)

    def _check_languages(self, least: int = 1) -> None:
        """After a whole dump: a requested language that named none of the (``least`` or more) entities kept is
        said (most likely not a Wikidata language code: ``eng`` for ``en``), since the build silently fell back
        otherwise; true of a small dump as of a large one."""
        n = self.report.yielded
        unseen = [lg for lg in self.options.languages if not self.label_languages.get(lg)]
        if n >= least and unseen:
            log.warning("none of the %d entities kept has a label in %s: %sthe dump holds none in that language, or "
                        "the code is not one of Wikidata's, which are such as en, de, fr, zh-hans, mul (option "
                        "languages)", n, ", ".join(map(repr, unseen)),
                        "their names came from the other languages or the fallback; " if len(unseen) <
                        len(self.options.languages) or self.options.fallback else "")

    def estimate_count(self) -> int | None:
        """Entities estimated from the file size and the mean (compressed) size of the first entity lines (at least
        200 and ESTIMATE_SAMPLE_BYTES of the file); a smaller file is counted."""
        import bz2
        import gzip

        size = self.path.stat().st_size
        kind = compression(self.path)
        # a decompressor reads its file ahead in chunks (gzip ~128 KB): the sample runs until the file position
        # is well past one chunk (or the end: then the count is exact), so that the read-ahead skews it little
        sample = min(size, ESTIMATE_SAMPLE_BYTES)
        with open(self.path, "rb") as raw:
            f: Any = (gzip.GzipFile(fileobj=raw) if kind == "gzip" else bz2.BZ2File(raw) if kind == "bz2" else raw)
            n = 0
            eof = True
            for line in f:
                if len(line.strip()) > 2:
                    n += 1
                if n >= 200 and raw.tell() >= sample and raw.tell() < size:
                    eof = False
                    break
            if eof or n == 0:
                return n
            # bytes of the underlying (possibly compressed) file consumed per entity line
            return int(size / (raw.tell() / n))

    def describe(self) -> dict[str, Any]:
        """Source path and options for the manifest."""
        return {"adapter": self.name, "source": str(self.path.resolve()), "options": self.options.model_dump(),
                "skipped_by_reason": dict(self.skipped_by_reason)}


def entity_to_dump_json(e: Entity, lang: str = "en") -> dict[str, Any]:
    """An Entity as a Wikidata dump entity (labels, descriptions, aliases, P31 claims, sitelinks), for test
    fixtures and for converting other sources into the dump layout."""
    labels = dict(e.labels) or {lang: e.label}
    labels.setdefault(lang, e.label)
    descs = dict(e.descriptions)
    if e.description:
        descs.setdefault(lang, e.description)
    aliases = {lg: list(v) for lg, v in e.aliases_by_lang.items()}
    if e.aliases and not aliases:
        aliases[lang] = list(e.aliases)
    claims = {"P31": [{"mainsnak": {"snaktype": "value", "property": "P31", "datatype": "wikibase-item",
                                    "datavalue": {"type": "wikibase-entityid",
                                                  "value": {"entity-type": "item", "id": t,
                                                            "numeric-id": int(t[1:]) if t[1:].isdigit() else 0}}},
                       "type": "statement", "rank": "normal"} for t in e.types]} if e.types else {}
    n_links = int(e.popularity)
    sitelinks: dict[str, Any] = {}
    enwiki = e.extra.get("enwiki")
    if enwiki:
        sitelinks["enwiki"] = {"site": "enwiki", "title": enwiki, "badges": []}
    for i in range(n_links - len(sitelinks)):
        sitelinks[f"x{i}wiki"] = {"site": f"x{i}wiki", "title": e.label, "badges": []}
    return {"type": "item", "id": e.id,
            "labels": {lg: {"language": lg, "value": v} for lg, v in labels.items() if v},
            "descriptions": {lg: {"language": lg, "value": v} for lg, v in descs.items()},
            "aliases": {lg: [{"language": lg, "value": a} for a in v] for lg, v in aliases.items() if v},
            "claims": claims, "sitelinks": sitelinks}


def write_dump(entities: Any, out: Any, lang: str = "en") -> int:
    """Write entities in the official dump layout (``[``, one entity per line with a trailing comma, ``]``) to a
    .json/.json.gz/.json.bz2 path; returns the count. The last entity line has no comma, as in real dumps."""
    import bz2
    import gzip
    from pathlib import Path

    path = Path(out)
    opener = gzip.open if path.name.endswith(".gz") else bz2.open if path.name.endswith(".bz2") else open
    n = 0
    with opener(path, "wt", encoding="utf-8") as f:  # type: ignore[operator]
        f.write("[\n")
        prev: str | None = None
        for e in entities:
            if prev is not None:
                f.write(prev + ",\n")
            prev = json.dumps(entity_to_dump_json(e, lang), ensure_ascii=False, separators=(",", ":"))
            n += 1
        if prev is not None:
            f.write(prev + "\n")
        f.write("]\n")
    return n
