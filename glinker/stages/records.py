"""The records that flow between linking stages, and the kind names of the stage protocol.

Kinds: ``mentions`` (per document, a list of :class:`glinker.types.Mention`), ``candidates`` (per document, a
list of :class:`MentionCandidates`) and ``links`` (a list of :class:`glinker.types.LinkedDocument`, one per
document). A mention may carry its span vector (computed once per batch by the stage that encoded the text), so
later stages never encode a text again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any

from pydantic import PrivateAttr

from glinker.types import Candidate, Mention

MENTIONS = "mentions"
CANDIDATES = "candidates"
LINKS = "links"


class EncodedMention(Mention):
    """A :class:`Mention` that carries its span vector (not serialised); still a Mention everywhere."""

    _vector: Any = PrivateAttr(default=None)


def mention_vector(m: Mention) -> Any:
    """The span vector a mention carries, or None."""
    return getattr(m, "_vector", None) if isinstance(m, EncodedMention) else None


def with_vector(m: Mention, vec: Any) -> EncodedMention:
    """``m`` as an :class:`EncodedMention` carrying ``vec`` (the same object when it already is one)."""
    em = m if isinstance(m, EncodedMention) else EncodedMention.model_construct(**m.__dict__)
    em._vector = vec
    return em


@dataclass
class MentionCandidates:
    """One mention with its candidate entities (every homonym kept, keyed by entity id).

    ``candidates`` are ordered best first by the producing stage's score; ``vector`` is the mention's span vector
    when a stage computed it (dense retrieval, re-scoring), so it is computed once per mention.
    """

    mention: Mention
    candidates: list[Candidate] = field(default_factory=list)
    vector: Any = None

    def span(self) -> tuple[int, int]:
        return self.mention.start, self.mention.end


def merge_candidate_lists(lists: list[list[MentionCandidates]]) -> list[MentionCandidates]:
    """Union per mention span (first list's order, then new spans by position). Candidates are unioned by entity
    id — never by label, so homonyms stay apart — with every source and every stage score kept."""
    by_span: dict[tuple[int, int], MentionCandidates] = {}
    order: list[tuple[int, int]] = []
    for lst in lists:
        for mc in lst:
            key = mc.span()
            cur = by_span.get(key)
            if cur is None:
                cur = MentionCandidates(mc.mention, [], mc.vector)
                by_span[key] = cur
                order.append(key)
            if cur.vector is None and mc.vector is not None:
                cur.vector = mc.vector
            if cur.mention.label is None and mc.mention.label is not None:
                cur.mention = mc.mention
            index = {c.entity_id: c for c in cur.candidates}
            for c in mc.candidates:
                old = index.get(c.entity_id)
                if old is None:
                    nc = c.clone()
                    cur.candidates.append(nc)
                    index[c.entity_id] = nc
                else:
                    srcs = old.source.split("+") if old.source else []
                    for s in (c.source.split("+") if c.source else []):
                        if s not in srcs:
                            srcs.append(s)
                    old.source = "+".join(srcs)
                    for k, v in c.scores.items():
                        old.scores[k] = max(v, old.scores.get(k, v))
                    old.score = max(old.score, c.score)
                    if not old.description and c.description:
                        old.description = c.description
    order.sort(key=lambda k: (k[0], -k[1]))
    return [by_span[k] for k in order]


def longer_forms(norms: list[str]) -> dict[int, list[str]]:
    """For each mention (normalised text), the longer mention texts of the same document whose words begin or end
    with its words ("thatcher" -> "margaret thatcher"), in order of first occurrence; computed once per distinct
    text (a document repeating a name 20,000 times costs what one occurrence does), indexed by first and last word."""
    first: dict[str, int] = {}  # distinct texts -> first position, in document order
    for i, n in enumerate(norms):
        first.setdefault(n, i)
    words = {n: n.split() for n in first}
    by_edge: dict[str, list[str]] = {}
    for n, w in words.items():
        if len(w) > 1:
            for edge in dict.fromkeys((w[0], w[-1])):
                by_edge.setdefault(edge, []).append(n)
    found: dict[str, list[str]] = {}
    for n, w in words.items():
        if not w:
            continue
        cands = sorted(set(by_edge.get(w[0], [])) | set(by_edge.get(w[-1], [])), key=first.__getitem__)
        longer = [m for m in cands if len(words[m]) > len(w) and (words[m][-len(w):] == w or words[m][: len(w)] == w)]
        if longer:
            found[n] = longer
    return {j: list(found[n]) for j, n in enumerate(norms) if n in found}


def document_prior_sources(texts: Sequence[str], norms: Sequence[str], counted: Sequence[bool],
                           has_candidates: Sequence[bool]) -> tuple[dict[int, int], dict[int, int]]:
    """Where ``rescore``'s ``in_document_prior`` finds a prior for the mentions of one document whose own form has
    no counts: (mention index -> the first longer mention with counts whose words begin or end with its words;
    mention index -> for those where no such mention has counts, the first one written as a name that has
    candidates, whose best candidate it borrows: "Wiesel" after "Elie Wiesel", not "Pisa" after "University of
    Pisa"). Indexes point at each form's first occurrence."""
    from glinker.kb.store import written_as_name

    first: dict[str, int] = {}
    for i, n in enumerate(norms):
        first.setdefault(n, i)
    from_counts, from_name = {}, {}
    for j, forms in longer_forms(list(norms)).items():
        if counted[j]:
            continue
        k = next((first[f] for f in forms if counted[first[f]]), None)
        if k is not None:
            from_counts[j] = k
            continue
        k = next((first[f] for f in forms if has_candidates[first[f]] and written_as_name(texts[first[f]])), None)
        if k is not None:
            from_name[j] = k
    return from_counts, from_name
