"""Helpers shared by the file adapters: compressed-file opening and record-to-Entity mapping."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
import unicodedata
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import ValidationError, field_validator

from glinker.errors import DataError, KBError
from glinker.kb.adapters import AdapterOptions, wide_unicode
from glinker.types import Entity

ENTITY_FIELDS = tuple(Entity.model_fields)
LIST_FIELDS = ("aliases", "types")


class RecordOptions(AdapterOptions):
    """Options of the adapters that map flat records (JSONL objects, CSV rows) onto entities."""

    mapping: dict[str, str] = {}
    """Entity field -> key (or column) in the records, e.g. ``{"id": "qid", "label": "name"}``."""

    @field_validator("mapping")
    @classmethod
    def _entity_fields(cls, v: dict[str, str]) -> dict[str, str]:
        from glinker.errors import closest

        for field in v:
            if field not in ENTITY_FIELDS:
                guess = closest(field, list(ENTITY_FIELDS))
                raise ValueError(f"mapping names {field!r}, which is not an entity field"
                                 + (f" (did you mean {guess!r}?)" if guess else "")
                                 + f"; fields: {', '.join(ENTITY_FIELDS)}")
        return v
    list_sep: str = "|"
    """Separator when aliases/types are given as one string."""
    keep_extra: bool = True
    """Keep unknown keys/columns under ``Entity.extra`` (they are never silently dropped)."""
    on_error: Literal["raise", "skip"] = "raise"
    """``raise`` stops at the first bad record; ``skip`` counts it in the report and goes on."""


def absolute_source(source: str) -> str:
    """A file adapter's source as it is read: a relative path made absolute (against the working folder)."""
    return os.path.abspath(source) if source else source


def check_source_file(source: str | os.PathLike[str], adapter: str) -> Path:
    """The source as a Path, or a KBError naming it when it does not exist."""
    path = Path(source)
    if path.exists() and not path.is_file():
        what = "a directory" if path.is_dir() else "a pipe or device, not a regular file"
        raise KBError(f"the source {path} is {what}", where=f"{adapter}.source",
                      fix="pass the file itself (a build reads it more than once: to estimate its size and to resume); "
                          "compressed .gz/.bz2 files are read as they are, no need to decompress them into a pipe")
    if not path.is_file():
        raise KBError(f"source file not found: {path}", where=f"{adapter}.source",
                      fix="give the path of an existing file (`glinker kb build --source`, or `source:` in a pipeline's "
                          "kb: block, where a relative path is read from the pipeline file's folder when it is there, "
                          "else from the working folder)")
    return path


_UNSUPPORTED = {b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd", b"PK\x03\x04": "zip", b"7z\xbc\xaf": "7z"}


def compression(path: Path) -> str | None:
    """``gzip``, ``bz2`` or None (plain), read from the file's first bytes (a dump renamed, or downloaded
    without its suffix, is still read right); a compression it cannot stream is a DataError naming the file."""
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bz2"
    for magic, kind in _UNSUPPORTED.items():
        if head.startswith(magic):
            raise DataError(f"the file is {kind}-compressed, which is not read here", where=str(path),
                            fix="use a plain, .gz or .bz2 file (e.g. decompress it, or recompress it with gzip)")
    return None


def open_binary(path: Path) -> IO[bytes]:
    """Open a plain, gzip or bz2 file (by its first bytes) for streaming binary reads (never loads it whole)."""
    kind = compression(path)
    if kind == "gzip":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if kind == "bz2":
        return bz2.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb", buffering=1 << 20)


def wide_text(path: Path) -> str | None:
    """The file's encoding when it is UTF-16 or UTF-32 text (``"UTF-16"``, ``"UTF-16LE"``, ...: see
    :func:`glinker.kb.adapters.wide_unicode`), read from its first bytes (a compressed file's, decompressed)."""
    with open_binary(path) as f:
        return wide_unicode(f.read(64))


def open_text(path: Path, encoding: str = "utf-8") -> IO[str]:
    """Text-mode counterpart of :func:`open_binary` (newline handling left to the caller)."""
    return io.TextIOWrapper(open_binary(path), encoding=encoding, newline="")


def truncated_error(path: Path, records: int) -> DataError:
    """The error for a compressed source whose stream ends early (gzip/bz2 raise EOFError there)."""
    return DataError(f"the compressed file ends early, after {records} records (a cut download or copy)",
                     where=str(path), fix="download or copy the file again")


_BYTES = (bytes, bytearray, memoryview)
BINARY_FIX = ("convert the column to text in a query: CONVERT(col USING utf8mb4) (MySQL/MariaDB), convert_from(col, "
              "'LATIN1') (PostgreSQL, for Latin-1 bytes); a binary id (a UUID in BINARY(16)): HEX(col) (MySQL/MariaDB), encode(col, "
              "'hex') (PostgreSQL)")


def binary_text(value: Any) -> str:
    """A binary value (a BLOB, VARBINARY or bytea cell: bytes, memoryview) as the UTF-8 text it holds; ValueError
    when it holds none (its ``str()`` would be ``b'...'`` or ``<memory at 0x...>``, a different text each read)."""
    try:
        text = bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("binary data that is not UTF-8 text") from None
    if any(c not in "\t\n\r" and unicodedata.category(c) == "Cc" for c in text):  # NUL, other C0/C1 controls
        raise ValueError("binary data that is not text (control bytes)")
    return text


def plain_value(value: Any) -> Any:
    """A cell kept as it is under ``extra``, but binary data as its UTF-8 text, or as hex digits when it is none."""
    if isinstance(value, _BYTES):
        try:
            return binary_text(value)
        except ValueError:
            return bytes(value).hex()
    return value


def split_list(value: Any, sep: str) -> list[str]:
    """A list field from a list, a delimited string or nothing; blanks dropped."""
    if value is None:
        return []
    if isinstance(value, _BYTES):
        value = binary_text(value)
    if isinstance(value, str):
        v = value.strip()
        if v.startswith("[") and v.endswith("]"):  # a JSON list (MySQL/MariaDB JSON columns, JSON in text)
            try:
                items = json.loads(v)
            except ValueError:
                items = None
            if isinstance(items, list):
                return split_list(items, sep)
        return [p.strip() for p in value.split(sep) if p.strip()] if sep else ([value] if value.strip() else [])
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            if isinstance(v, dict):  # {"name": "OA", "lang": "en"}, {"value": ...}: the text, never the dict's repr
                v = next((v[k] for k in ("name", "value", "alias", "label", "id") if isinstance(v.get(k), str)), None)
                if v is None:
                    raise ValueError("an item is an object without a name/value/alias/label text")
            elif isinstance(v, (list, tuple)):
                raise ValueError("an item is itself a list")
            elif isinstance(v, _BYTES):
                v = binary_text(v)
            if v is not None and str(v).strip():
                out.append(str(v).strip())
        return out
    if isinstance(value, dict):
        raise ValueError("an object, not a list or a delimited string")
    return [str(value)]


def parse_alias_counts(value: Any, sep: str, where: str) -> dict[str, Any]:
    """Alias counts from a mapping (JSON) or a delimited string (a CSV cell): ``"England=12|Three Lions=3"``.

    In the string form the count follows the last ``=`` of each part; a part without one is an error."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        out: dict[str, float] = {}
        for part in split_list(value, sep):
            name, _, n = part.rpartition("=")
            try:
                count = float(n)
            except ValueError:
                count = None
            if not name.strip() or count is None:
                raise DataError(f"alias count {part!r} is not NAME=COUNT", where=f"{where} field 'alias_counts'",
                                fix=f"write the counts as NAME=COUNT{sep}NAME=COUNT, e.g. England=12{sep}ENG=3")
            out[name.strip()] = out.get(name.strip(), 0.0) + count
        return out
    raise DataError(f"alias_counts must be an object or a NAME=COUNT list, got {type(value).__name__}",
                    where=f"{where} field 'alias_counts'", fix='write e.g. {"England": 12, "ENG": 3}')


def _db_id(val: Any) -> Any:
    """A database key as an id: a UUID column's value as its text, an integral NUMERIC/DECIMAL as its integer."""
    import decimal
    import uuid

    if isinstance(val, uuid.UUID):
        return str(val)
    if isinstance(val, _BYTES):  # a VARBINARY key holding text: that text (binary that is no text: refused later)
        try:
            return binary_text(val)
        except ValueError:
            return bytes(val)
    if isinstance(val, decimal.Decimal) and val.is_finite() and val == val.to_integral_value():
        return int(val)
    return val


def record_to_entity(rec: dict[str, Any], mapping: dict[str, str], list_sep: str, where: str,
                     keep_extra: bool = True) -> Entity:
    """Map a flat record to an Entity: ``mapping`` renames entity fields to source keys; other keys go to ``extra``."""
    data: dict[str, Any] = {}
    used: set[str] = set()
    for field in ENTITY_FIELDS:
        key = mapping.get(field, field)
        if key in rec:
            val = rec[key]
            if isinstance(val, _BYTES) and field not in LIST_FIELDS:
                try:
                    val = binary_text(val)
                except ValueError as e:
                    raise DataError(f"field {field!r}" + (f" ({key!r})" if key != field else "") + f" holds {e}",
                                    where=f"{where} field {field}", fix=BINARY_FIX) from None
            if field in _DICT_FIELDS and isinstance(val, str) and field not in mapping:
                try:  # a CSV column that happens to be named like one: its text stays under extra
                    val = json.loads(val) if val.strip().startswith("{") else None
                except ValueError:
                    val = None
                if not isinstance(val, dict):
                    continue
            used.add(key)
            if field in LIST_FIELDS:
                try:
                    val = split_list(val, list_sep)
                except ValueError as e:
                    raise DataError(f"field {field!r} ({key!r}): {e}", where=f"{where} field {field}",
                                    fix=BINARY_FIX if "binary" in str(e) else
                                    "give a list of strings or a delimited string") from None
            elif field == "alias_counts":
                val = parse_alias_counts(val, list_sep, where)
            elif field == "popularity" and (val is None or val == ""):
                continue
            elif field == "popularity" and isinstance(val, bool):  # read as 1.0 or 0.0 without a word
                raise DataError(f"field 'popularity' ({key!r}) is {str(val).lower()}, not a number",
                                where=f"{where} field popularity",
                                fix="give a number (a count of links, visits, sitelinks...), or leave it out")
            elif field in ("label", "description"):
                if isinstance(val, (list, tuple, dict)):
                    raise DataError(f"field {field!r} ({key!r}) is a {type(val).__name__}, not text", where=f"{where} field {field}",
                                    fix="give one string (other names go under aliases, other languages under labels / "
                                        "descriptions)")
                val = "" if val is None else str(val).strip()
                if "\x00" in val:  # a NUL byte (a binary cell, a file's damage) stayed inside the name
                    raise DataError(f"field {field!r} ({key!r}) holds a NUL character: {val[:40]!r}",
                                    where=f"{where} field {field}",
                                    fix="remove the NUL bytes from the source (tr -d '\\000' < in > out for a "
                                        "text file); -o on_error=skip skips such records")
            elif field == "id" and val is not None and not isinstance(val, str):
                val = _db_id(val)
                if isinstance(val, bool) or not isinstance(val, (int, float, str)):
                    raise DataError(f"field 'id' ({key!r}) is a {type(val).__name__}: {str(val)[:40]}",
                                    where=f"{where} field id", fix="give every record a string or integer id")
                val = str(int(val)) if isinstance(val, float) and val.is_integer() else str(val)  # 1.0 (pandas) -> 1
            elif field == "id" and isinstance(val, str) and ("\n" in val or "\r" in val):
                raise DataError("the id holds a line break (in a CSV: a quote left open on an earlier line swallows "
                                "the lines after it)", where=f"{where} field id", fix="close the quote in the source")
            data[field] = val
    if keep_extra:
        rest = {k: v for k, v in rec.items() if k not in used}
        if rest:
            data["extra"] = {**rest, **(data.get("extra") or {})}
    id_key = mapping.get("id", "id")
    if id_key in rec and (data.get("id") in (None, "") or (isinstance(data.get("id"), str) and not data["id"].strip())):
        raise DataError(f"the id ({id_key!r}) is empty", where=f"{where} field id",
                        fix="fill in the record's id in the source; -o on_error=skip skips such records")
    if "id" not in data or data["id"] in (None, ""):
        keys = [k for k in rec if k not in used][:8]
        guess = next((k for k in keys if k.lower() in ("key", "uid", "uuid", "qid", "code", "sku")
                      or k.lower().endswith("_id") or k.lower().endswith("id")), keys[0] if keys else "<key>")
        raise DataError(f"record has no id (looked for key {mapping.get('id', 'id')!r}"
                        + (f"; its keys: {', '.join(keys)}" if keys else "") + ")", where=where,
                        fix=_map_fix("id", guess) + "; or give every record an id; -o on_error=skip skips such records")
    try:
        return Entity(**data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        if err.get("type") == "missing" and loc == "label":
            # a source that names its labels otherwise (name, title...): say which of its keys to map
            keys = [k for k in rec if k not in used][:8]
            guess = next((k for k in keys if k.lower() in _LABEL_KEYS or k.lower().endswith("_name")), None)
            raise DataError(f"record has no label (looked for key {mapping.get('label', 'label')!r}"
                            + (f"; its keys: {', '.join(keys)}" if keys else "") + ")", where=f"{where} field label",
                            fix=_map_fix("label", guess or "<key>") + "; -o on_error=skip skips such records") from None
        raise DataError(f"field {loc!r}: {err['msg']}", where=f"{where} field {loc}",
                        fix="correct the value in the source, or map another column to this field") from None


# keys a source may give its entities' names under, suggested for the label field when it has no 'label'
_LABEL_KEYS = frozenset({"name", "title", "entity", "entity_name", "canonical_name", "preferred_name", "display_name",
                         "term", "heading", "caption"})


def _map_fix(field: str, key: str) -> str:
    """How to map ``field`` to the source's ``key``, for each kind of source."""
    return (f"map the {field} field: -o mapping='{{\"{field}\": \"{key}\"}}' (jsonl/csv), -o "
            f"columns='{{\"{field}\": \"{key}\"}}' (sql)")


_ALL_FIELDS = frozenset(ENTITY_FIELDS)
_DICT_FIELDS = frozenset({"labels", "descriptions", "aliases_by_lang", "extra"})


def _fast_entity(d: dict[str, Any]) -> Entity:
    o = Entity.__new__(Entity)
    object.__setattr__(o, "__dict__", d)
    object.__setattr__(o, "__pydantic_fields_set__", set(_ALL_FIELDS))
    object.__setattr__(o, "__pydantic_extra__", None)
    object.__setattr__(o, "__pydantic_private__", None)
    return o


def _probe_fast_entity() -> bool:
    d = {"id": "Q1", "label": "x", "aliases": ["a"], "alias_counts": {"a": 2.0}, "description": "", "types": [], "popularity": 1.0,
         "labels": {}, "descriptions": {}, "aliases_by_lang": {}, "extra": {}}
    try:
        return _fast_entity(dict(d)) == Entity(**d) and _fast_entity(dict(d)).model_dump() == d
    except Exception:  # a pydantic release with other internals: use the public constructor
        return False


_FAST_OK = _probe_fast_entity()


def trusted_entity(d: dict[str, Any]) -> Entity:
    """An Entity from a dict that already has every field with the right type (built by our own parser).

    Skips validation: ~5x cheaper than ``model_construct``, which matters at Wikidata scale. Verified against
    the public constructor once at import; falls back to ``model_construct`` if pydantic's internals differ."""
    return _fast_entity(d) if _FAST_OK else Entity.model_construct(**d)
