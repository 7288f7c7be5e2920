"""Selection: the best candidate per mention, or NIL under a threshold; the links keep the top-k candidates
with every stage's score."""

from __future__ import annotations

import copy

from typing import Any, Sequence

from pydantic import Field

from glinker.pipeline.stage import Stage, StageParams
from glinker.stages.names import follow_full_names
from glinker.stages.records import CANDIDATES, LINKS, MentionCandidates, merge_candidate_lists
from glinker.types import NIL, Document, Link, LinkedDocument


class SelectParams(StageParams):
    nil_threshold: float = Field(default=0.0, description="A mention whose best candidate scores below this is NIL.")
    top_k: int = Field(default=5, ge=0, description="Candidates kept on each link (best first, with all their scores).")
    keep_nil: bool = Field(default=True, description="Also output mentions linked to NIL.")
    one_per_span: bool = Field(default=True, description="Drop overlapping linked mentions, keeping the most confident.")
    follow_full_names: bool = Field(
        default=False,
        description="A short name form (\"Riley\") takes the decision of the full name it abbreviates in its "
                    "document (\"Pat Riley\"): that entity, or NIL with it when the KB lacks the person, instead of "
                    "whoever the KB holds with that last name; a NIL full name takes the entity its short form "
                    "found under the full name (\"Wolfgang Pauli\" for \"Wolfgang Joseph Pauli\"). Both written "
                    "as names, the short form's words the first or last words of the full name (case aside), the "
                    "full name of a `name_labels` type and the short form of none other; a short form with two "
                    "different full names is left alone.")
    name_labels: list[str] = Field(
        default_factory=lambda: ["person"],
        description="Mention types for `follow_full_names` (the mention stages' labels); empty: every type.")


class Select(Stage):
    """Turn ranked candidates into links: entity id (or NIL), label, confidence and the top-k candidates."""

    type_name = "select"
    Params = SelectParams
    accepts = (CANDIDATES,)
    produces = LINKS
    max_inputs = None
    summary = "best candidate per mention, NIL under a threshold"

    def run(self, documents: Sequence[Document], inputs: Sequence[Any]) -> list[LinkedDocument]:
        p: SelectParams = self.params  # type: ignore[assignment]
        out = []
        for d, doc in enumerate(documents):
            rows: list[MentionCandidates] = (merge_candidate_lists([inp[d] for inp in inputs]) if len(inputs) > 1
                                             else inputs[0][d])
            links = []
            for mc in rows:
                # equal scores keep the order the candidate stage gave them (alias candidates: most popular first)
                cands = sorted(mc.candidates, key=lambda c: -c.score)
                best = cands[0] if cands else None
                if best is not None and best.score >= p.nil_threshold:
                    link = Link(mention=_plain(mc.mention), entity_id=best.entity_id, label=best.label,
                                confidence=round(float(best.score), 6), candidates=cands[: p.top_k])
                else:
                    conf = round(float(best.score), 6) if best is not None else 0.0
                    link = Link(mention=_plain(mc.mention), entity_id=NIL, confidence=conf,
                                candidates=cands[: p.top_k])
                links.append(link)
            if p.one_per_span:
                links = _no_overlaps(links)
            if p.follow_full_names:
                follow_full_names(links, p.name_labels)
            if not p.keep_nil:
                links = [ln for ln in links if not ln.is_nil]
            links.sort(key=lambda ln: (ln.mention.start, ln.mention.end))
            # a copy all the way down: the record's meta edited by the caller leaves the input's as it was
            out.append(LinkedDocument(id=doc.id, text=doc.text, links=links,
                                      meta=copy.deepcopy(doc.meta) if doc.meta else {}))
        return out

    def count(self, output: Any) -> int:
        return sum(len(d.links) for d in output)


def _plain(m: Any) -> Any:
    from glinker.types import Mention

    return m if type(m) is Mention else Mention.model_construct(**{k: getattr(m, k) for k in Mention.model_fields})


def _no_overlaps(links: list[Link]) -> list[Link]:
    """Keep non-overlapping links: linked before NIL, then by confidence, then longer spans (O(n log n))."""
    import bisect

    ranked = sorted(links, key=lambda ln: (ln.is_nil, -ln.confidence, -(ln.mention.end - ln.mention.start),
                                           ln.mention.start))
    starts: list[int] = []
    ends: list[int] = []  # kept spans never overlap, so sorting by start also sorts their ends
    kept: list[Link] = []
    for ln in ranked:
        s, e = ln.mention.start, ln.mention.end
        i = bisect.bisect_left(starts, s)
        if i > 0 and ends[i - 1] > s:
            continue
        if i < len(starts) and starts[i] < e:
            continue
        if i < len(starts) and starts[i] == s:
            continue
        starts.insert(i, s)
        ends.insert(i, e)
        kept.append(ln)
    return kept
