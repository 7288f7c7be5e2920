"""CSV/TSV adapter for hand-made KBs: a header row, one entity per row, aliases and types as delimited cells."""

from __future__ import annotations

import csv
import itertools
import logging
import re
from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import field_validator

from glinker.errors import DataError, KBError
from glinker.kb.adapters import AdapterOptions, AdapterReport, parse_options
from glinker.types import Entity
from kb_adapters._common import (
    RecordOptions,
    absolute_source,
    check_source_file,
    compression,
    open_binary,
    open_text,
    record_to_entity,
    truncated_error,
    wide_text,
)

log = logging.getLogger(__name__)


class CSVOptions(RecordOptions):
    delimiter: str = ","
    encoding: str = "utf-8-sig"  # UTF-8, with or without the byte-order mark spreadsheet exports write

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        import codecs

        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown text encoding {v!r} (e.g. utf-8, cp1252, latin-1, utf-16)") from None
        return v


_SEP_LINE = re.compile(r"sep=([^\r\n])\r?\n?")
"""Excel's first line naming the delimiter of the rows after it (``sep=;``): read as that, not as a header."""


class CSVAdapter:
    """Streams rows of a CSV (or TSV with ``delimiter="\\t"``) file with a header row."""

    name: ClassVar[str] = "csv"
    options_model: ClassVar[type[AdapterOptions]] = CSVOptions
    canonical_source = staticmethod(absolute_source)
    """A relative path made absolute: a pipeline's cached KB of this file is keyed by it."""

    def __init__(self, source: str, **options: Any) -> None:
        self.options: CSVOptions = parse_options(self.name, CSVOptions, options)  # type: ignore[assignment]
        d = self.options.delimiter
        self.options.delimiter = {"\\t": "\t", "tab": "\t", "TAB": "\t"}.get(d, d)  # typed as two characters
        if len(self.options.delimiter) != 1:
            raise KBError(f"delimiter must be one character, got {d!r}", where="csv.delimiter",
                          fix="e.g. -o delimiter=';' or -o delimiter=tab")
        self.path = check_source_file(source, self.name)
        self.report = AdapterReport()
        if self.options.encoding.lower().replace("-", "").replace("_", "") in ("utf8sig", "utf8"):
            wide = wide_text(self.path)  # Excel's "Unicode text": UTF-16 with its byte-order mark (or UTF-32)
            if wide is not None:
                self.options.encoding = wide
        csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # a long description is one cell

    def iter_entities(self) -> Iterator[Entity]:
        """Stream the rows; an empty cell for popularity means 0."""
        self.report = rep = AdapterReport()
        o = self.options
        with open_text(self.path, o.encoding) as f:
            try:
                first = f.readline()
            except UnicodeDecodeError:
                raise self._not_decodable() from None
            except EOFError:
                raise truncated_error(self.path, 0) from None
            sep, skipped = _SEP_LINE.fullmatch(first), 0
            delimiter = o.delimiter
            if sep is not None:  # Excel's "sep=;" line: the rows' delimiter, then the header on line 2
                skipped = 1
                if sep.group(1) != o.delimiter and o.delimiter != CSVOptions.model_fields["delimiter"].default:
                    # (the default "," is no choice: a KB's manifest records it, and `kb add` passes it back)
                    log.warning("%s: line 1 says the delimiter is %r (sep=): the rows are read with it, not with "
                                "the delimiter option's %r", self.path, sep.group(1), o.delimiter)
                delimiter = sep.group(1)
            lines = f if sep is not None else itertools.chain([first], f)
            reader = csv.DictReader(lines, delimiter=delimiter, strict=True)
            try:
                header = reader.fieldnames or []
            except UnicodeDecodeError:
                raise self._not_decodable() from None
            except csv.Error as e:
                raise DataError(f"CSV syntax error in the header: {e}", where=f"{self.path}:{1 + skipped}",
                                fix="check the quoting of the header row") from None
            except EOFError:
                raise truncated_error(self.path, 0) from None
            self._check_header(header, skipped + 1, delimiter)
            start = reader.line_num + 1 + skipped  # the line the next row starts on
            short: list[str] = []  # rows with fewer cells than the header (their last cells read as empty)
            try:
                for row in reader:
                    where = f"{self.path}:{start}"
                    start = reader.line_num + 1 + skipped
                    if None not in row and not any((v or "").strip() for v in row.values()):
                        continue  # a row of empty cells (";;;;" after a spreadsheet's data): a blank line
                    rep.read += 1
                    try:
                        if None in row:  # more cells than header columns
                            raise DataError(f"row has {len(header) + len(row[None])} cells, header has "  # type: ignore[index]
                                            f"{len(header)}", where=where,
                                            fix="quote cells that contain the delimiter")
                        if None in row.values():  # fewer: DictReader fills them with None
                            if not short:
                                short.append(f"{where} ({sum(v is not None for v in row.values())} of "
                                             f"{len(header)})")
                            short.append(where)
                        ent = record_to_entity(dict(row), o.mapping, o.list_sep, where, o.keep_extra)
                    except DataError as e:
                        rep.bad_record(e, where, o.on_error)
                        continue
                    rep.yielded += 1
                    yield ent
                if short:  # a tool that leaves trailing empty cells out, or a cell lost to the delimiter: said once
                    log.warning("%s: %d row(s) have fewer cells than the header's %d columns, the missing ones read as "
                                "empty (the first: %s); check that no cell lost its delimiter", self.path,
                                len(short) - 1, len(header), short[0])
            except csv.Error as e:
                if "unexpected end of data" in str(e):
                    raise DataError(f"a quoted cell opened in the row that starts on line {start} is never closed "
                                    "(the rest of the file was read into it)", where=f"{self.path}:{start}",
                                    fix="close the quote, or double the quote characters inside the cell") from None
                raise DataError(f"CSV syntax error: {e}", where=f"{self.path}:{start}",
                                fix="check the quoting of the row that starts on that line (a quote inside a cell is "
                                    "written twice: \"\")") from None
            except UnicodeDecodeError:
                raise self._not_decodable() from None
            except EOFError:
                raise truncated_error(self.path, rep.read) from None

    def _check_header(self, header: list[str], line: int = 1, delimiter: str | None = None) -> None:
        o = self.options
        delimiter = delimiter or o.delimiter
        if not header:
            raise KBError("the file is empty", where=str(self.path), fix="export the entities with a header row")
        dup = next((h for i, h in enumerate(header) if h in header[:i]), None)
        if dup is not None:
            raise DataError(f"the header names the column {dup!r} twice (the second would replace the first)",
                            where=f"{self.path}:{line}", fix="rename one of the columns")
        id_col = o.mapping.get("id", "id")
        if id_col not in header:
            other = next((d for d in ("\t", ";", "|", ",") if d != delimiter and len(header) == 1
                          and d in header[0]), None)
            # "ID" or " id ": the column is there under another case or with spaces around it
            near = next((h for h in header if h.strip().lower() == id_col.strip().lower()), None)
            raise KBError(f"no id column {id_col!r} in the header {header}", where=f"{self.path}:{line}",
                          fix=(f"the columns seem separated by {other!r}: pass -o delimiter="
                               + ("tab" if other == "\t" else repr(other)) if other else
                               f"the header has {near!r} (column names are case- and space-sensitive): map it with "
                               f"-o mapping='{{\"id\": \"{near}\"}}', or rename the column" if near is not None else
                               "add an 'id' column, or map yours with mapping={'id': '<column>'}"))
        missing = [f"{k} -> {v!r}" for k, v in o.mapping.items() if v not in header]
        if missing:
            raise KBError(f"mapping names columns the header lacks: {', '.join(missing)} (header: {header})",
                          where=f"{self.path}:{line}", fix="use the header's column names (they are case-sensitive)")

    def _not_decodable(self) -> DataError:
        """The error for a file that is not in the given encoding, naming its first such line (the text reader
        decodes blocks, so the failing line is found again in the raw bytes)."""
        enc = self.options.encoding
        n, bad = 0, b""
        with open_binary(self.path) as f:
            for n, raw in enumerate(f, 1):
                try:
                    raw.decode(enc)
                except UnicodeDecodeError as e:
                    bad = raw[e.start:e.start + 1]
                    break
        return DataError(f"line is not {enc} text (byte {bad!r})", where=f"{self.path}:{n}",
                         fix="pass the file's encoding, e.g. -o encoding=latin-1 (cp1252 for Windows exports), or "
                             "re-encode it as UTF-8")

    def estimate_count(self) -> int | None:
        """Line count minus the header (rows with embedded newlines make it an over-estimate)."""
        if compression(self.path) is not None:
            return None
        with open(self.path, "rb") as f:
            return max(0, sum(buf.count(b"\n") for buf in iter(lambda: f.read(1 << 20), b"")) - 1)

    def describe(self) -> dict[str, Any]:
        """Source path and options for the manifest."""
        return {"adapter": self.name, "source": str(self.path.resolve()), "options": self.options.model_dump()}
