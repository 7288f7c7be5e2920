"""Core records that cross every boundary: entities, documents, mentions, candidates and links.

They are pydantic models so that a record read from a file, a database or another stage is validated once,
with a precise field path in the error, and serialises to JSON the same way everywhere.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NIL = "NIL"
"""The entity id of a mention that links to nothing in the knowledge base."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False, frozen=False)


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
    text: str
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id", mode="before")
    @classmethod
    def _int_id(cls, v: Any) -> Any:
        # JSON ids are often numbers: kept as their decimal string, as `glinker link` writes them
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


class Mention(_Record):
    """A span of a document, by character offsets (``end`` exclusive) into the original string."""

    start: int = Field(ge=0)
    end: int = Field(ge=0)
    text: str
    label: str | None = Field(default=None, description="Entity type predicted or given for the span.")
    score: float | None = None
    doc_index: int | None = Field(default=None, exclude=True,
                                  description="Index of the document in its batch (in memory only: not written, so "
                                  "output does not depend on how documents were batched).")

    @model_validator(mode="after")
    def _check_offsets(self) -> "Mention":
        if self.end < self.start:
            raise ValueError(f"mention end ({self.end}) is before its start ({self.start})")
        return self


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
        obj = cls.__new__(cls)
        _set = object.__setattr__
        _set(obj, "__dict__", {"entity_id": entity_id, "label": label, "description": description,
                               "source": source, "scores": scores, "score": score})
        _set(obj, "__pydantic_fields_set__", set(_CANDIDATE_FIELDS))
        _set(obj, "__pydantic_extra__", None)
        _set(obj, "__pydantic_private__", None)
        return obj

    def clone(self) -> Candidate:
        """A copy with its own ``scores`` dict (stages that merge or re-score mutate their copies)."""
        d = self.__dict__
        return Candidate.of(d["entity_id"], d["label"], d["description"], d["source"], dict(d["scores"]), d["score"])


_CANDIDATE_FIELDS = frozenset(Candidate.model_fields)


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


DataKind = Literal["documents", "mentions", "candidates", "links"]
