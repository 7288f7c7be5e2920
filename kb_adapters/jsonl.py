"""JSONL adapter: one entity object per line, for hand-made KBs (``.jsonl``, ``.jsonl.gz``, ``.jsonl.bz2``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any, ClassVar

from glinker.errors import DataError
from glinker.kb.adapters import AdapterOptions, AdapterReport, parse_options
from glinker.types import Entity
from kb_adapters._common import (RecordOptions, absolute_source, check_source_file, compression, open_binary,
                                 record_to_entity, truncated_error, wide_text)

log = logging.getLogger(__name__)


class JSONLOptions(RecordOptions):
    """The record options; JSONL needs no others."""


class JSONLAdapter:
    """Streams ``{"id", "label", "aliases", "description", "types", "popularity", ...}`` objects, one per line."""

    name: ClassVar[str] = "jsonl"
    options_model: ClassVar[type[AdapterOptions]] = JSONLOptions
    canonical_source = staticmethod(absolute_source)
    """A relative path made absolute: a pipeline's cached KB of this file is keyed by it."""

    def __init__(self, source: str, **options: Any) -> None:
        self.options: JSONLOptions = parse_options(self.name, JSONLOptions, options)  # type: ignore[assignment]
        self.path = check_source_file(source, self.name)
        self.report = AdapterReport()

    def iter_entities(self) -> Iterator[Entity]:
        """Stream the file line by line; blank lines are ignored."""
        self.report = rep = AdapterReport()
        o = self.options
        wide = wide_text(self.path)
        if wide is not None:  # read as UTF-8 its lines would be errors blaming Latin-1, or garbage
            how = ("it starts with a byte-order mark" if wide in ("UTF-16", "UTF-32")
                   else "NUL bytes between its first letters, without a byte-order mark")
            kind = compression(self.path)
            name = self.path.name.removesuffix(".gz").removesuffix(".bz2") if kind else self.path.name
            new = f"{name.removesuffix('.jsonl')}.utf8.jsonl"
            conv = f"iconv -f {wide} -t UTF-8"
            cat = (f"{'gunzip' if kind == 'gzip' else 'bunzip2'} -c {self.path} | {conv}" if kind
                   else f"{conv} {self.path}")
            raise DataError(f"the file is {wide} text ({how}); JSONL is read as UTF-8", where=str(self.path),
                            fix=f"convert it to UTF-8 and build from that: {cat} > {new}")
        with open_binary(self.path) as f:
            try:
                yield from self._records(f, rep, o)
            except EOFError:
                raise truncated_error(self.path, rep.read) from None

    def _records(self, f: Any, rep: AdapterReport, o: JSONLOptions) -> Iterator[Entity]:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            rep.read += 1
            where = f"{self.path}:{lineno}"
            try:
                if b"\x00" in raw:  # no UTF-8 text holds a 0 byte; json.loads would guess UTF-16 from it
                    raise DataError(f"the line holds NUL bytes (byte {raw.index(0)}), which UTF-8 text never does",
                                    where=where, fix="re-encode the file as UTF-8 (iconv -f UTF-16 -t UTF-8 for UTF-16 "
                                    "text), or remove the NUL bytes")
                try:
                    rec = json.loads(raw)
                except UnicodeDecodeError as e:
                    raise DataError(f"the line is not UTF-8 text (byte {e.start}: {raw[e.start:e.start + 1]!r})",
                                    where=where, fix="re-encode the file as UTF-8 (e.g. iconv -f latin1 -t "
                                    "utf-8); a CSV file is read with --adapter csv") from None
                except json.JSONDecodeError as e:
                    raise DataError(f"malformed JSON: {e}", where=where,
                                    fix="each line must be one complete JSON object (a CSV file is read with "
                                        "--adapter csv)") from None
                if not isinstance(rec, dict):
                    raise DataError(f"expected a JSON object, got {type(rec).__name__}", where=where,
                                    fix="each line must be one JSON object with at least 'id' and 'label'")
                if _wikidata_record(rec, o.mapping):
                    raise DataError("a Wikidata entity record (labels of {language, value} objects), which the jsonl "
                                    "adapter does not read", where=where,
                                    fix="read the file with -a wikidata (it takes one entity a line, as "
                                        "wikibase-dump-filter writes)")
                ent = record_to_entity(rec, o.mapping, o.list_sep, where, o.keep_extra)
            except DataError as e:
                rep.bad_record(e, where, o.on_error)
                continue
            rep.yielded += 1
            yield ent

    def estimate_count(self) -> int | None:
        """Line count of a plain file (cheap: no parsing); None for compressed files."""
        if compression(self.path) is not None:
            return None
        with open(self.path, "rb") as f:
            return sum(buf.count(b"\n") for buf in iter(lambda: f.read(1 << 20), b""))

    def describe(self) -> dict[str, Any]:
        """Source path and options for the manifest."""
        return {"adapter": self.name, "source": str(self.path.resolve()), "options": self.options.model_dump()}


def _wikidata_record(rec: dict[str, Any], mapping: dict[str, str] | None = None) -> bool:
    """Whether a record is a Wikidata dump entity (``labels: {"en": {"language": "en", "value": ...}}``), not a
    glinker record (``labels: {"en": "..."}``, under the key ``mapping`` names for it)."""
    labels = rec.get((mapping or {}).get("labels", "labels"))
    return isinstance(labels, dict) and any(isinstance(v, dict) and "value" in v for v in labels.values())
