"""Core records that cross every boundary: entities, documents, mentions, candidates and links.

They are pydantic models so that a record read from a file, a database or another stage is validated once,
with a precise field path in the error, and serialises to JSON the same way everywhere.
"""

from __future__ import annotations

import numbers
import sys
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from glinker.errors import DataError

NIL = "NIL"
"""The entity id of a mention that links to nothing in the knowledge base."""

MAX_META_DEPTH = 32
"""How deeply a document's ``meta`` may nest: deeper values failed only when the linked record was serialised,
after the linking work (pydantic's serialisation depth limit), or overflowed the recursion limit."""

META_FIX = ("meta holds what JSON holds: strings, numbers, booleans, None, lists and mappings (dates, Decimals, UUIDs and "
            "sets are written as JSON strings and lists); convert the value "
            "first (str(value), value.isoformat(), array.tolist())")


def checked_meta(meta: dict[str, Any], where: str, max_depth: int = MAX_META_DEPTH) -> dict[str, Any]:
    """``meta`` as a linked record holds it, checked before anything is linked (``Pipeline.link`` and ``glinker
    serve``): numpy scalars (what pandas' ``to_dict`` gives) become the Python values they hold (``.item()``); a
    value the JSON writers cannot write (a numpy array, an arbitrary object), a lone surrogate in a string or a key,
    or nesting deeper than ``max_depth`` is a DataError naming ``where`` and the key (``meta['tags'][2]``): each
    failed only when the linked record was written, after the linking work. NaN and infinities stay floats here
    and are written as JSON ``null``. ``meta`` itself is returned when nothing needed converting."""
    return _meta_value(meta, where, "meta", 1, max_depth)


def _shown_key(k: Any) -> str:
    r = repr(k)  # escapes a lone surrogate: the message stays encodable
    return r if len(r) <= 60 else r[:57] + "..."


def _meta_value(v: Any, where: str, path: str, depth: int, max_depth: int) -> Any:
    t = type(v)
    if t is str:
        _meta_text(v, where, path)
        return v
    if v is None or t is bool or t is int or t is float:
        return v
    if isinstance(v, (dict, list, tuple)):
        if depth > max_depth:
            raise DataError(f"{path} is nested more than {max_depth} levels deep", where=where,
                            fix='keep meta flat, e.g. "meta": {"source": "..."}')
        if isinstance(v, dict):
            out: dict[Any, Any] = {}
            changed = t is not dict
            for k, x in v.items():
                key = _meta_key(k, where, path)
                y = _meta_value(x, where, f"{path}[{_shown_key(key)}]", depth + 1, max_depth)
                changed = changed or key is not k or y is not x
                out[key] = y
            return out if changed else v
        items = [_meta_value(x, where, f"{path}[{i}]", depth + 1, max_depth) for i, x in enumerate(v)]
        if t is list and all(y is x for y, x in zip(items, v)):
            return v
        return items  # a tuple or another sequence type is written as a JSON list anyway
    np = sys.modules.get("numpy")
    # np.int64(3), np.float32(0.5), np.bool_(True), np.str_("x") as Python's values (not a datetime64: its .item()
    # is an int of nanoseconds)
    if np is not None and isinstance(v, np.generic) and v.dtype.kind in "biufU":
        return _meta_value(v.item(), where, path, depth, max_depth)
    if isinstance(v, str):  # a str subclass (a StrEnum's member)
        _meta_text(v, where, path)
        return v
    if isinstance(v, (int, float)):
        return v  # an int or float subclass (an IntEnum's member): written as its number
    if isinstance(v, (set, frozenset)):  # written as a list: its items checked as a list's are
        items = [_meta_value(x, where, f"{path}[{i}]", depth + 1, max_depth) for i, x in enumerate(v)]
        return v if all(y is x for y, x in zip(items, v)) else items
    if _json_writable(v):  # a date, a Decimal, a UUID, an enum...: the writers (pydantic) write it, as before
        return v
    if np is not None and isinstance(v, np.ndarray):
        kind = f"a numpy array of shape {tuple(v.shape)}"
    else:
        name = t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
        kind = f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
    raise DataError(f"{path} is {kind}, which a linked record cannot hold (it is written as JSON)", where=where,
                    fix=META_FIX)


def _json_writable(v: Any) -> bool:
    """Whether the linked records' JSON writers (pydantic's serializer) write ``v`` (a datetime, Decimal, UUID,
    Enum, set, Path...): such values were always linked and written, so they are kept as they are."""
    from collections.abc import Iterator

    from pydantic_core import PydanticSerializationError, to_json

    if isinstance(v, Iterator):  # a generator or map(...): checking would consume it, and [] be written
        return False
    try:
        to_json(v)
    except (PydanticSerializationError, ValueError, TypeError, RecursionError):
        return False
    return True


def _meta_key(k: Any, where: str, path: str) -> Any:
    if type(k) is str:
        _meta_text(k, where, f"{path} key {_shown_key(k)}")
        return k
    np = sys.modules.get("numpy")
    if np is not None and isinstance(k, np.generic) and k.dtype.kind in "biufU":
        k = k.item()
    if isinstance(k, str):
        _meta_text(k, where, f"{path} key {_shown_key(k)}")
        return k
    if k is None or isinstance(k, (bool, int, float)):
        return k  # written as its JSON string ("1", "true"), as json.dumps writes it
    raise DataError(f"{path} has a key of type {type(k).__name__} ({_shown_key(k)}), which JSON cannot hold",
                    where=where, fix="meta keys are strings (or numbers): use str(key)")


def _meta_text(s: str, where: str, path: str) -> None:
    from glinker.io import check_text

    try:
        check_text(s, where)
    except DataError as e:
        raise DataError(f"{path}: {e.message}", where=where, fix=e.fix) from None


class _EveryField(set):  # type: ignore[type-arg]
    """The one set of all a record class's fields that its records built without validation share as pydantic's
    "fields set" (:meth:`_Record._trusted`): adding a name it holds (what assignment does) is a no-op; anything
    that would change it raises, as one record's change would be every record's; copies (``model_copy``, deepcopy,
    pickling) are plain sets of their own."""

    def add(self, name: Any) -> None:
        if name not in self:
            raise TypeError(f"{name!r} is no field of this record (its fields set is shared)")

    def _shared(self, *a: Any, **k: Any) -> Any:
        raise TypeError("a record's fields set is shared by the records of its class: copy it first (set(...))")

    discard = remove = pop = clear = update = difference_update = intersection_update = _shared
    symmetric_difference_update = __ior__ = __iand__ = __isub__ = __ixor__ = _shared

    def __copy__(self) -> set[str]:
        return set(self)

    def __deepcopy__(self, memo: Any) -> set[str]:
        return set(self)

    def __reduce__(self) -> Any:
        return set, (list(self),)


_EVERY_FIELD: dict[type, _EveryField] = {}  # per record class: the set of all its fields (see _Record._trusted)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False, frozen=False)

    @classmethod
    def _trusted(cls, values: dict[str, Any]) -> Any:
        """A record from ``values`` that already hold every field, in field order, with the right types: no
        validation, no copy (the hot loops of retrieval and KB reads; pydantic's ``model_construct`` costs twice
        this). Tests check it equals the validated form. Its set of fields given is the one set of all the class's
        fields, shared (472 of a candidate's ~1,070 bytes were its own copy; assignment adds a field's name, which
        it holds already; ``model_copy`` copies it; any change to it raises: :class:`_EveryField`)."""
        obj = cls.__new__(cls)
        _set = object.__setattr__
        _set(obj, "__dict__", values)
        every = _EVERY_FIELD.get(cls)
        if every is None:
            every = _EVERY_FIELD.setdefault(cls, _EveryField(cls.model_fields))
        _set(obj, "__pydantic_fields_set__", every if len(values) == len(every) else set(values))
        _set(obj, "__pydantic_extra__", None)
        _set(obj, "__pydantic_private__", None)
        return obj


class Entity(_Record):
    """One knowledge-base entity. Homonyms are separate entities with their own ids."""

    id: str = Field(min_length=1, description="Stable entity id, e.g. a Wikidata QID or a primary key.")
    label: str = Field(description="Primary name in the KB's main language.")
    aliases: list[str] = Field(default_factory=list, description="Other names; every one is indexed.")
    alias_counts: dict[str, float] = Field(
        default_factory=dict, description="Surface form -> how often it refers to this entity (e.g. counts of an "
                                          "annotated corpus or of link anchors): the p(entity | mention) prior. "
                                          "Every form is also indexed as an alias.")
    description: str = Field(default="", description="Short description, used in the entity text template.")
    types: list[str] = Field(default_factory=list, description="Type ids or names, e.g. P31 values.")
    popularity: float = Field(default=0.0, ge=0, allow_inf_nan=False, description="Prior weight, e.g. sitelink count.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels per language tag.")
    descriptions: dict[str, str] = Field(default_factory=dict, description="Descriptions per language tag.")
    aliases_by_lang: dict[str, list[str]] = Field(default_factory=dict, description="Aliases per language tag.")
    extra: dict[str, Any] = Field(default_factory=dict, description="Free-form metadata kept with the record.")

    @field_validator("id")
    @classmethod
    def _strip_id(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("entity id is empty")
        return v

    @field_validator("alias_counts")
    @classmethod
    def _counts_non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, n in v.items() if not n >= 0]
        if bad:
            raise ValueError(f"alias counts must be >= 0 (bad: {bad[:3]})")
        return v

    def names(self) -> list[str]:
        """Every surface name of the entity: label, aliases, counted forms and per-language labels/aliases, deduplicated."""
        seen: dict[str, None] = {}
        for n in [self.label, *self.aliases, *self.alias_counts, *self.labels.values(),
                  *(a for al in self.aliases_by_lang.values() for a in al)]:
            if n and n not in seen:
                seen[n] = None
        return list(seen)


class Document(_Record):
    """A text to process. ``id`` defaults to the position in the input when not given."""

    id: str | None = None
    text: str = Field(strict=True, description="The text (a str: bytes are not decoded in an encoding guessed).")
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id", mode="before")
    @classmethod
    def _int_id(cls, v: Any) -> Any:
        # JSON ids are often numbers: kept as their decimal string, as `glinker link` writes them; a numpy integer
        # (a pandas column's) as an int; bytes are not decoded in an encoding guessed
        if isinstance(v, (bytes, bytearray, memoryview)):
            raise ValueError("an id of bytes: decode it first (e.g. value.decode('utf-8'))")
        return str(int(v)) if isinstance(v, numbers.Integral) and not isinstance(v, bool) else v


class Mention(_Record):
    """A span of a document, by character offsets (``end`` exclusive) into the original string."""

    start: int = Field(ge=0)
    end: int = Field(ge=0)
    text: str
    label: str | None = Field(default=None, description="Entity type predicted or given for the span.")
    score: float | None = None
    doc_index: int | None = Field(default=None, exclude=True, repr=False,
                                  description="Index of the document in its batch (in memory only: not written, not "
                                  "shown and not compared, so results do not depend on how documents were batched).")

    @model_validator(mode="after")
    def _check_offsets(self) -> "Mention":
        if self.end < self.start:
            raise ValueError(f"mention end ({self.end}) is before its start ({self.start})")
        return self

    def __eq__(self, other: Any) -> bool:
        """Equal when both are mentions (a stage's subclass that only keeps private attributes, such as a span
        vector, too) with the same span, text, label and score: ``doc_index`` (the document's place in its batch)
        and private attributes are not compared, so a mention equals itself linked in another batch, and read back
        from its JSON."""
        if not isinstance(other, BaseModel):
            return NotImplemented
        if not isinstance(other, Mention):
            return False
        a, b = self.__dict__, other.__dict__
        return all(a.get(k) == b.get(k) for k in _MENTION_COMPARED)


_MENTION_COMPARED = ("start", "end", "text", "label", "score")


class Candidate(_Record):
    """A KB entity proposed for a mention. ``scores`` keeps every stage's score under the stage name."""

    entity_id: str
    label: str = ""
    description: str = ""
    source: str = Field(default="", description="Which retrieval produced it: dense, alias, fuzzy, ...")
    scores: dict[str, float] = Field(default_factory=dict)
    score: float = Field(default=0.0, description="The current combined score used for ranking.")

    @classmethod
    def of(cls, entity_id: str, label: str, description: str, source: str, scores: dict[str, float],
           score: float) -> Candidate:
        """A candidate from values a stage already holds with the right types (KB records, float scores):
        every field set, no validation. Retrieval makes ~150k of these per 231 AIDA documents, where
        validation cost 4x the construction (tests/core/test_types_errors.py checks it equals the validated form)."""
        return cls._trusted({"entity_id": entity_id, "label": label, "description": description, "source": source,
                             "scores": scores, "score": score})

    def clone(self) -> Candidate:
        """A copy with its own ``scores`` dict (stages that merge or re-score mutate their copies)."""
        d = self.__dict__.copy()
        d["scores"] = dict(d["scores"])
        return Candidate._trusted(d)



class Link(_Record):
    """The decision for one mention: an entity id or NIL, with confidence and the ranked candidates."""

    mention: Mention
    entity_id: str = NIL
    label: str = ""
    confidence: float = 0.0
    candidates: list[Candidate] = Field(default_factory=list)

    @property
    def is_nil(self) -> bool:
        return self.entity_id == NIL


class LinkedDocument(_Record):
    """A document with its links; the unit a linking pipeline writes out."""

    id: str | None = None
    text: str
    links: list[Link] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_spans(self) -> "LinkedDocument":
        """Every link's mention lies within the text (links read back from a file made for another text, or
        edited by hand, would be scored or resumed on other words)."""
        n = len(self.text)
        for j, link in enumerate(self.links):
            if link.mention.end > n:
                raise ValueError(f"link {j}'s mention {link.mention.start}-{link.mention.end} "
                                 f"({link.mention.text!r:.40}) ends past the text ({n} characters)")
        return self


DataKind = Literal["documents", "mentions", "candidates", "links"]
