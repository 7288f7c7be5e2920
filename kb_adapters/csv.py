"""CSV/TSV adapter for hand-made KBs: a header row, one entity per row, aliases and types as delimited cells."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from typing import Any, ClassVar

from glinker.errors import DataError, KBError
from glinker.kb.adapters import AdapterOptions, AdapterReport, parse_options
from glinker.types import Entity
from kb_adapters._common import (
    RecordOptions,
    check_source_file,
    compression,
    open_binary,
    open_text,
    record_to_entity,
)

log = logging.getLogger(__name__)


class CSVOptions(RecordOptions):
    delimiter: str = ","
    encoding: str = "utf-8-sig"  # UTF-8, with or without the byte-order mark spreadsheet exports write


class CSVAdapter:
    """Streams rows of a CSV (or TSV with ``delimiter="\\t"``) file with a header row."""

    name: ClassVar[str] = "csv"
    options_model: ClassVar[type[AdapterOptions]] = CSVOptions

    def __init__(self, source: str, **options: Any) -> None:
        self.options: CSVOptions = parse_options(self.name, CSVOptions, options)  # type: ignore[assignment]
        if len(self.options.delimiter) != 1:
            raise KBError("delimiter must be one character", where="csv.delimiter", fix='use "," or "\\t"')
        self.path = check_source_file(source, self.name)
        self.report = AdapterReport()

    def iter_entities(self) -> Iterator[Entity]:
        """Stream the rows; an empty cell for popularity means 0."""
        self.report = rep = AdapterReport()
        o = self.options
        with open_text(self.path, o.encoding) as f:
            reader = csv.DictReader(f, delimiter=o.delimiter)
            try:
                header = reader.fieldnames or []
            except UnicodeDecodeError:
                raise self._not_decodable() from None
            id_col = o.mapping.get("id", "id")
            if id_col not in header:
                raise KBError(f"no id column {id_col!r} in the header {header}", where=f"{self.path}:1",
                              fix="add an 'id' column, or map yours with mapping={'id': '<column>'}")
            try:
                for row in reader:
                    rep.read += 1
                    where = f"{self.path}:{reader.line_num}"
                    try:
                        if None in row:  # more cells than header columns
                            raise DataError(f"row has {len(header) + len(row[None])} cells, header has "  # type: ignore[index]
                                            f"{len(header)}", where=where,
                                            fix="quote cells that contain the delimiter")
                        ent = record_to_entity(dict(row), o.mapping, o.list_sep, where, o.keep_extra)
                    except DataError as e:
                        rep.bad_record(e, where, o.on_error)
                        continue
                    rep.yielded += 1
                    yield ent
            except csv.Error as e:
                raise DataError(f"CSV syntax error: {e}", where=f"{self.path}:{reader.line_num}",
                                fix="check quoting around that line") from None
            except UnicodeDecodeError:
                raise self._not_decodable() from None

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
