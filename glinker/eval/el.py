"""Entity-linking metrics: end-to-end InKB micro P/R/F1 (strong match), disambiguation accuracy on gold
mentions, candidate recall@k, NIL accuracy and KB coverage.

What is counted (ELEVANT's linking evaluation with unknown entities *ignored*, i.e. InKB; see
``docs/evaluation.md`` for the derivation and the cases table):
- InKB gold = root gold mentions (no ``parent``) with a known entity id that are not optional.
- TP: an InKB gold mention with a prediction at exactly its span linking to its entity; a gold mention with
  nested children is also a TP when every child path is linked correctly (ELEVANT's nesting rule).
- FN: an InKB gold mention that is not a TP (no prediction, NIL predicted, or a wrong entity).
- FP: a prediction linking to a KB entity (not NIL) that is not the gold entity of a gold mention with the
  same span; predictions without a gold span count only inside the document's ``evaluation_span``.
  A wrong entity on an InKB gold span is therefore one FN and one FP.
- Never counted: NIL predictions, gold NIL/Unknown mentions that receive NIL or no prediction, optional
  gold mentions (ELEVANT ``optional``, DATETIME, QUANTITY) linked correctly or not at all.
Spans match exactly (character offsets); ELEVANT also accepts spans expanded to word boundaries, which we
do not.

The missed InKB gold mentions (FN) are also counted by cause (``missed``, :data:`MISS_CAUSES`): the entity is
not in the KB (with a KB given); nothing was predicted over the span (split by whether the gold text starts in
lowercase: a concept or a pronoun, which a named-entity mention detector does not propose); a prediction overlaps
it with other bounds; a prediction at the span whose candidates lack the gold entity; or whose candidates hold it
and another entity (or NIL) was chosen.

Candidate recall@k is over InKB gold mentions; a prediction that links an entity without carrying a candidate
list counts as having that entity as its one candidate (so recall@1 >= ed_acc), and a gold mention without a
prediction at its span is a miss.
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from glinker.errors import DataError
from glinker.eval.datasets import NIL, ELDocument, GoldMention
from glinker.eval.ner import PRF

log = logging.getLogger(__name__)

DEFAULT_KS = (1, 5, 10, 20, 50, 100)


@dataclass
class PredictedLink:
    """One predicted link: document id, char span, entity id (``NIL`` when none) and ranked candidate ids."""

    doc_id: str
    start: int
    end: int
    entity_id: str = NIL
    candidates: list[str] = field(default_factory=list)
    score: float | None = None

    @property
    def is_nil(self) -> bool:
        return self.entity_id in (NIL, "", None)


MISS_CAUSES = {
    "not_in_kb": "entity not in the KB",
    "no_mention": "no mention predicted",
    "no_mention_lowercase": "no mention, lowercase gold (concept or pronoun)",
    "other_bounds": "a mention with other bounds",
    "not_a_candidate": "gold entity not among the candidates",
    "not_chosen": "gold entity a candidate, not chosen",
}
"""Why an InKB gold mention was missed (``ELReport.missed``), in the order they are tried: a gold entity the KB
lacks is counted as such whatever was predicted (only when a KB is given)."""
_SHOWN_CAUSES = {**MISS_CAUSES, "wrong_at_span": "another entity or NIL at the span (no candidate lists)"}


def _miss_cause(m: GoldMention, p: PredictedLink | None, overlapped: bool, covered: bool | None) -> str:
    if covered is False:
        return "not_in_kb"
    if p is None:
        if overlapped:
            return "other_bounds"
        return "no_mention_lowercase" if m.text[:1].islower() else "no_mention"
    # a link without a candidate list has its entity as its one candidate (as for recall@k)
    cands = p.candidates or ([] if p.is_nil else [p.entity_id])
    return "not_chosen" if m.entity_id in cands else "not_a_candidate"


@dataclass
class ELReport:
    """Every EL metric with the counts behind it (see the module docstring for what each counts)."""

    linking: PRF = field(default_factory=PRF)
    inkb_gold: int = 0
    ed_correct: int = 0
    ed_with_prediction: int = 0
    recall_hits: dict[int, int] = field(default_factory=dict)
    has_candidates: bool = False
    # InKB gold spans whose prediction links an entity but carries no candidate list, in a run where others carry
    # them: recall@k takes the link as its single candidate (it was the system's choice, so a candidate)
    recall_link_as_candidate: int = 0
    nil_gold: int = 0
    nil_correct: int = 0
    optional_gold: int = 0
    unmapped_gold: int = 0  # gold mentions with a source id but no KB-style id (e.g. AIDA title without QID)
    covered: PRF | None = None  # end-to-end InKB over gold mentions whose entity the KB holds (a KB was given)
    kb_distinct: int = 0
    kb_distinct_present: int | None = None
    documents: int = 0
    predictions: int = 0
    predictions_nil: int = 0  # of ``predictions``: NIL links (never scored: not in the precision denominator)
    predictions_outside_span: int = 0
    predictions_unknown_doc: int = 0
    duplicate_predictions: int = 0
    # how the mentions were found: "gold" (the pipeline was given the gold mentions), "end-to-end" (it found
    # them), None (unknown: saved links); it words the disambiguation line of :meth:`summary`
    mentions: str | None = None
    missed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MISS_CAUSES, 0))  # FN by cause

    @property
    def ed_acc(self) -> float:
        """Share of InKB gold mentions whose prediction at the exact span is the gold entity."""
        return self.ed_correct / self.inkb_gold if self.inkb_gold else 0.0

    @property
    def nil_acc(self) -> float | None:
        """Share of gold NIL mentions left unlinked (predicted NIL or not predicted)."""
        return self.nil_correct / self.nil_gold if self.nil_gold else None

    @property
    def kb_present(self) -> int | None:
        """InKB gold mentions whose entity is in the KB (None when no KB was given)."""
        return None if self.covered is None else self.covered.tp + self.covered.fn

    @property
    def kb_coverage(self) -> float | None:
        """Share of InKB gold mentions whose entity is in the KB (None when no KB was given)."""
        if self.kb_present is None:
            return None
        return self.kb_present / self.inkb_gold if self.inkb_gold else 0.0

    @property
    def kb_coverage_distinct(self) -> float | None:
        """Share of distinct InKB gold entities present in the KB."""
        if self.kb_distinct_present is None:
            return None
        return self.kb_distinct_present / self.kb_distinct if self.kb_distinct else 0.0

    def recall_at(self, k: int) -> float | None:
        """Candidate recall@k over InKB gold mentions (None when no prediction carried candidates).

        A gold mention counts when its gold entity is among the first k candidates of the prediction at its exact
        span; without a prediction there it is a miss. A prediction that links an entity but carries no candidate
        list counts as having that entity as its single candidate (``recall_link_as_candidate`` counts them), so
        recall@1 is never below ``ed_acc`` because of a missing list."""
        if not self.has_candidates or k not in self.recall_hits:
            return None
        return self.recall_hits[k] / self.inkb_gold if self.inkb_gold else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "el_precision": self.linking.precision, "el_recall": self.linking.recall, "el_f1": self.linking.f1,
            "tp": self.linking.tp, "fp": self.linking.fp, "fn": self.linking.fn, "inkb_gold": self.inkb_gold,
            "ed_acc": self.ed_acc, "ed_with_prediction": self.ed_with_prediction,
            "recall_at": {k: self.recall_at(k) for k in sorted(self.recall_hits)},
            "recall_link_as_candidate": self.recall_link_as_candidate if self.has_candidates else None,
            "nil_gold": self.nil_gold, "nil_acc": self.nil_acc, "optional_gold": self.optional_gold,
            "unmapped_gold": self.unmapped_gold, "kb_coverage": self.kb_coverage,
            "kb_coverage_distinct": self.kb_coverage_distinct,
            "covered_precision": self.covered.precision if self.kb_present else None,
            "covered_recall": self.covered.recall if self.kb_present else None,
            "covered_f1": self.covered.f1 if self.kb_present else None, "documents": self.documents,
            "predictions": self.predictions, "predictions_linked": self.predictions - self.predictions_nil,
            "predictions_nil": self.predictions_nil, "mentions": self.mentions,
            "predictions_outside_span": self.predictions_outside_span,
            "predictions_unknown_doc": self.predictions_unknown_doc,
            "duplicate_predictions": self.duplicate_predictions,
            "missed": self._missed_causes(),
        }

    def _missed_causes(self) -> dict[str, int]:
        """``missed`` without ``not_in_kb`` when no KB was given (no such cause then)."""
        return {k: v for k, v in self.missed.items() if k != "not_in_kb" or self.covered is not None}

    def summary(self) -> str:
        """A readable multi-line summary (the CLI prints it above :meth:`last_line`)."""
        s = self.linking
        extra = [f"{n} {what}" for n, what in ((self.duplicate_predictions, "on a span already predicted"),
                                               (self.predictions_unknown_doc, "of documents not in the gold data"))
                 if n]
        lines = [
            f"documents            {self.documents}",
            (f"InKB gold mentions   {self.inkb_gold}  (NIL gold {self.nil_gold}, optional {self.optional_gold}, "
             f"unmapped ids {self.unmapped_gold})"),
            (f"predictions          {self.predictions}  ({self.predictions - self.predictions_nil} linked, "
             f"{self.predictions_nil} NIL: only linked ones are scored; outside evaluation span "
             f"{self.predictions_outside_span}{''.join('; ' + x for x in extra)})"),
            f"end-to-end InKB      P={s.precision:.4f} R={s.recall:.4f} F1={s.f1:.4f}  (tp={s.tp} fp={s.fp} fn={s.fn})",
        ]
        detail = f"{self.ed_correct}/{self.inkb_gold}; {self.ed_with_prediction} gold spans had a prediction"
        missed = self.inkb_gold - self.ed_with_prediction
        if self.mentions == "end-to-end":
            detail += "; end to end a lower bound: gold spans the system did not find count as wrong"
        elif self.mentions is None and missed:
            detail += (f"; a lower bound if the links were made end to end: the {missed} gold spans without a "
                       "prediction count as wrong")
        lines.append(f"disambiguation acc   {self.ed_acc:.4f}  ({detail})")
        if self.has_candidates:
            note = (f"; {self.recall_link_as_candidate} links without a candidate list count as their own single "
                    "candidate" if self.recall_link_as_candidate else "")
            lines.append("candidate recall@k   " + " ".join(f"@{k}={self.recall_at(k):.4f}"
                                                             for k in sorted(self.recall_hits))
                         + f"  (over the {self.inkb_gold} InKB gold mentions{note})")
        if self.nil_acc is not None:
            lines.append(f"NIL accuracy         {self.nil_acc:.4f}  ({self.nil_correct}/{self.nil_gold})")
        if self.kb_coverage is not None:
            lines.append(f"KB coverage          {self.kb_coverage:.4f} of gold mentions, "
                         f"{self.kb_coverage_distinct:.4f} of distinct gold entities")
        if self.covered is not None and not self.kb_present:  # 0 of 0: no figure, not a zero
            lines.append("in-KB-covered        n/a  (the KB holds none of the gold entities)")
        elif self.covered is not None:
            c = self.covered
            lines.append(f"in-KB-covered        P={c.precision:.4f} R={c.recall:.4f} F1={c.f1:.4f}  (gold mentions "
                         f"whose entity the KB holds; links at spans of gold entities it lacks ignored)")
        if self.linking.fn:
            shown = [(k, n) for k, n in self._missed_causes().items() if n]
            if not self.has_candidates:  # no candidate lists: only "another entity or NIL at the span" is known
                wrong = self.missed["not_a_candidate"] + self.missed["not_chosen"]
                shown = [(k, n) for k, n in shown if k not in ("not_a_candidate", "not_chosen")]
                shown += [("wrong_at_span", wrong)] if wrong else []
            lines.append("missed, by cause     " + "; ".join(f"{_SHOWN_CAUSES[k]} {n}" for k, n in shown)
                         + f"  (of the {self.linking.fn} InKB gold mentions not linked right)")
        return "\n".join(lines)

    def last_line(self) -> str:
        return format_last_line(self)


def format_last_line(report: ELReport) -> str:
    """``el_f1=<x> ed_acc=<y> kb_coverage=<z>`` (``kb_coverage=n/a`` when no KB was given)."""
    cov = report.kb_coverage
    return (f"el_f1={report.linking.f1:.4f} ed_acc={report.ed_acc:.4f} "
            f"kb_coverage={'n/a' if cov is None else f'{cov:.4f}'}")


def _membership(kb: Container[str] | Callable[[str], bool] | None) -> Callable[[str], bool] | None:
    if kb is None:
        return None
    if callable(kb) and not hasattr(kb, "__contains__"):
        return kb  # type: ignore[return-value]
    return lambda e: e in kb  # type: ignore[operator]


def evaluate_el(gold: Iterable[ELDocument], predictions: Iterable[PredictedLink], *,
                kb: Container[str] | Callable[[str], bool] | None = None, ks: Sequence[int] = DEFAULT_KS,
                exclude_coref: bool = False, mentions: str | None = None) -> ELReport:
    """Score predicted links against gold documents (see the module docstring for the exact counting).

    ``kb`` is a set of entity ids or a membership callable, for KB coverage. ``exclude_coref`` drops gold
    coreference mentions (ELEVANT ``coref``) and ignores predictions on their spans. ``mentions`` says how the
    linker found its mentions ("gold", "end-to-end" or None: unknown), for the wording of the summary.
    """
    if mentions not in (None, "gold", "end-to-end"):
        raise ValueError(f"mentions must be 'gold', 'end-to-end' or None, not {mentions!r}")
    in_kb = _membership(kb)
    rep = ELReport(recall_hits={k: 0 for k in ks}, mentions=mentions)
    docs = gold_by_id(gold)
    by_doc: dict[str, dict[tuple[int, int], PredictedLink]] = {d: {} for d in docs}
    for p in predictions:
        rep.predictions += 1
        if p.is_nil:
            rep.predictions_nil += 1
        spans = by_doc.get(p.doc_id)
        if spans is None:
            rep.predictions_unknown_doc += 1
            continue
        key = (p.start, p.end)
        if key in spans:
            rep.duplicate_predictions += 1  # keep the first: one decision per span
            continue
        spans[key] = p
        if p.candidates:
            rep.has_candidates = True
    if rep.predictions_unknown_doc:
        log.warning("%d predictions name documents that are not in the gold data", rep.predictions_unknown_doc)
    distinct: set[str] = set()
    for doc_id, doc in docs.items():
        rep.documents += 1
        _score_doc(doc, by_doc[doc_id], rep, exclude_coref, distinct, in_kb)
    if in_kb is not None:
        rep.kb_distinct = len(distinct)
        rep.kb_distinct_present = sum(1 for e in distinct if in_kb(e))
    else:
        rep.kb_distinct = len(distinct)
    if rep.documents and not rep.inkb_gold:
        log.warning("no gold mention of the %d documents names an entity (all %d are NIL): every score is 0; "
                    "AIDA JSONL gives a mention's QID as \"wikidata_qid\", ELEVANT JSONL as \"entity_id\"",
                    rep.documents, rep.nil_gold)
    return rep


def _score_doc(doc: ELDocument, preds: dict[tuple[int, int], PredictedLink], rep: ELReport, exclude_coref: bool,
               distinct: set[str], in_kb: Callable[[str], bool] | None) -> None:
    labels = [m for m in doc.mentions if not (exclude_coref and m.coref)]
    ignored_spans = {(m.start, m.end) for m in doc.mentions if exclude_coref and m.coref}
    by_id = {m.label_id: m for m in labels if m.label_id is not None}
    gold_at: dict[tuple[int, int], list[GoldMention]] = {}
    for m in labels:
        gold_at.setdefault((m.start, m.end), []).append(m)

    def linked_ok(m: GoldMention, seen: frozenset = frozenset()) -> bool:
        p = preds.get((m.start, m.end))
        if p is not None and not p.is_nil and not m.is_nil and p.entity_id == m.entity_id:
            return True
        kids = [by_id[c] for c in m.children if c in by_id and c not in seen]
        return bool(kids) and all(linked_ok(k, seen | {m.label_id}) for k in kids)

    if rep.covered is None and in_kb is not None:
        rep.covered = PRF()
    # predicted spans by start, with the furthest end so far: a gold span overlaps a prediction when one that
    # starts before its end ends after its start
    spans = sorted(sp for sp in preds if sp not in ignored_spans)  # (the spans left out of scoring: not a mention)
    starts = [a for a, _ in spans]
    reach = list(itertools.accumulate((b for _, b in spans), max))

    def overlapped(m: GoldMention) -> bool:
        i = bisect.bisect_left(starts, m.end)
        return i > 0 and reach[i - 1] > m.start

    def cause(m: GoldMention, covered: bool | None, seen: frozenset = frozenset()) -> str:
        """Why ``m`` (not linked right) was missed; a nested root without a prediction of its own was missed
        where its first child not linked right was (its children's predictions are no other bounds of it)."""
        p = preds.get((m.start, m.end))
        kids = [by_id[c] for c in m.children if c in by_id and c not in seen]
        if p is None and kids and covered is not False:
            for k in kids:
                if not linked_ok(k, seen | {m.label_id}):
                    return cause(k, None, seen | {m.label_id})
        return _miss_cause(m, p, p is None and overlapped(m), covered)

    for m in labels:
        is_root = m.parent is None or m.parent not in by_id
        if not is_root:
            continue
        p = preds.get((m.start, m.end))
        if m.optional:
            rep.optional_gold += 1
            continue
        if m.is_nil:
            rep.nil_gold += 1
            if m.meta.get("unmapped"):
                rep.unmapped_gold += 1
            if p is None or p.is_nil:
                rep.nil_correct += 1
            continue
        rep.inkb_gold += 1
        distinct.add(m.entity_id)
        covered = in_kb is not None and in_kb(m.entity_id)
        if p is not None:
            rep.ed_with_prediction += 1
            if not p.is_nil and p.entity_id == m.entity_id:
                rep.ed_correct += 1
            cands = p.candidates
            if not cands and not p.is_nil:  # a link without a candidate list: the link is its one candidate
                cands = [p.entity_id]
                rep.recall_link_as_candidate += 1
            for k in rep.recall_hits:
                if m.entity_id in cands[:k]:
                    rep.recall_hits[k] += 1
        ok = linked_ok(m)
        if ok:
            rep.linking.tp += 1
        else:
            rep.linking.fn += 1
            rep.missed[cause(m, covered if in_kb is not None else None)] += 1
        if covered:
            assert rep.covered is not None
            if ok:
                rep.covered.tp += 1
            else:
                rep.covered.fn += 1
    a, b = doc.evaluation_span
    for span, p in preds.items():
        if p.is_nil or span in ignored_spans:
            continue
        golds = gold_at.get(span)
        if golds is not None:
            if not any(not g.is_nil and g.entity_id == p.entity_id for g in golds):
                rep.linking.fp += 1
                # a wrong link where every gold entity is missing from the KB is out of the covered figure
                if in_kb is not None and not all(not g.is_nil and not in_kb(g.entity_id) for g in golds):
                    assert rep.covered is not None
                    rep.covered.fp += 1
        elif a <= span[0] and span[1] <= b:
            rep.linking.fp += 1
            if rep.covered is not None:
                rep.covered.fp += 1
        else:
            rep.predictions_outside_span += 1


# ------------------------------------------------------------------------------------------------------------
# predictions from pipeline output


def predictions_from_linked(docs: Iterable[Any], ids: Sequence[str] | None = None,
                            max_candidates: int | None = None) -> list[PredictedLink]:
    """Flatten linked documents (``LinkedDocument`` or its dict form) into :class:`PredictedLink` records.

    A document without an id takes ``ids[i]`` (the gold id at the same position) when given.
    """
    out: list[PredictedLink] = []
    for i, d in enumerate(docs):
        rec = d.model_dump() if hasattr(d, "model_dump") else d
        if not isinstance(rec, dict) or "links" not in rec:
            raise DataError(f"output {i} is not a linked document (no 'links')", where=f"output[{i}]",
                            fix="the pipeline's output stage must produce LinkedDocument records")
        doc_id = rec.get("id")
        if doc_id is None:
            if ids is None:
                raise DataError(f"linked document {i} has no id", where=f"output[{i}]",
                                fix="keep document ids through the pipeline, or pass ids=")
            doc_id = ids[i]
        for j, link in enumerate(rec["links"]):
            try:
                m = link["mention"]
                start, end = int(m["start"]), int(m["end"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"link {j} of document {doc_id!r} has no mention start/end", where=f"output[{i}]",
                                fix="links are {mention: {start, end, ...}, entity_id, candidates}") from None
            cands = [entity_key(c["entity_id"] if isinstance(c, dict) else c) for c in link.get("candidates") or []]
            if max_candidates is not None:
                cands = cands[:max_candidates]
            eid = predicted_id(link.get("entity_id"))
            out.append(PredictedLink(str(doc_id), start, end, eid, cands, link.get("confidence")))
    return out


def gold_by_id(gold: Iterable[ELDocument]) -> dict[str, ELDocument]:
    """The gold documents by id; a DataError naming the file and line of an id that occurs twice (predictions are
    matched to documents by id)."""
    docs: dict[str, ELDocument] = {}
    for d in gold:
        if d.id in docs:
            src = d.meta.get("source")
            raise DataError(f"document id {d.id!r} occurs twice in the gold data; predictions are matched to "
                            f"documents by id, so the two could not be told apart",
                            where=f"{src}:{d.meta.get('line')}" if src else f"document {d.id!r}",
                            fix="give every document a unique id; to score several files as one set, pass each "
                                "file (`glinker eval el --data A --data B` prefixes the ids with the file names) "
                                "rather than concatenating them")
        docs[d.id] = d
    return docs


def predicted_id(value: Any) -> str:
    """A link's entity id as scored: NIL markers (``nil``, ``--NME--``, ``Unknown``, empty) are NIL, ``wd:Q90`` and
    Wikidata URLs ``Q90``; other ids as they are (another KB's)."""
    from glinker.eval.datasets import gold_qid

    return NIL if value is None or gold_qid(value)[1] else entity_key(value)


def entity_key(value: Any) -> str:
    """A candidate's or a KB's entity id as compared with gold ids: ``wd:Q90`` and Wikidata URLs are ``Q90`` (as
    gold and links read them), a number its text, others as they are."""
    from glinker.eval.datasets import gold_qid

    qid = gold_qid(value)[0] if value is not None else None
    return qid if qid else str(value).strip()


def load_kb_ids(path: str) -> set[str]:
    """Entity ids for KB coverage from a file: one id per line (first tab column), JSONL records with
    ``id``/``qid``/``wikidata_id``, a JSON list of such records, or a JSON object whose values carry them
    (the fb15k237 ``entity2wikidata.json`` layout), or a CSV/TSV whose header names its id column. Ids are compared
    as gold ids are (:func:`entity_key`: Wikidata URLs and ``wd:`` prefixes are QIDs)."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():  # a KB directory: its entity ids
        from glinker.kb import KB

        with KB.open(p) as kb:
            return {entity_key(i) for i in kb.store.all_ids()}
    if not p.is_file():
        raise DataError(f"KB id file not found: {p}", where=str(p),
                        fix="pass a KB directory, or a file with one entity id per line")
    text = p.read_text(encoding="utf-8-sig")
    return {entity_key(i) for i in _kb_ids(p, text)}


def _kb_ids(p: Any, text: str) -> set[str]:
    import json

    def rec_id(rec: Any) -> str | None:
        if isinstance(rec, (str, int)) and not isinstance(rec, bool):  # a plain list of ids
            return str(rec)
        if isinstance(rec, dict):  # (an id 0 is an id)
            e = next((rec[k] for k in ("id", "qid", "wikidata_id") if rec.get(k) not in (None, "")), None)
            return str(e) if e is not None else None
        return None

    ids: set[str] = set()
    if text.lstrip()[:1] not in ("{", "["):
        head = _csv_header(text)
        if head is not None or getattr(p, "suffix", "").lower() in (".csv", ".tsv"):  # no header: the first column
            if head is None:
                first = text.lstrip().split("\n", 1)[0][:80]
                log.warning("%s: no header names an id column (%s): its first column is read as the ids, the first "
                            "line too (%r); name the id column `id` if the file has a header", p,
                            ", ".join(_ID_COLUMNS), first)
            return _some(p, _csv_ids(text, head))
        text = "\n".join(_csv_lines(text)[0])  # (an Excel sep= line before a list of ids is no id)
    if text.lstrip()[:1] in ("{", "["):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None  # JSONL: parsed line by line below
        if isinstance(obj, dict):
            recs = [obj] if rec_id(obj) else [v for v in obj.values() if isinstance(v, dict)]
            got = {e for e in map(rec_id, recs) if e}
            # {"Q42": "Douglas Adams", ...}: the keys are the ids
            return got or {str(k) for k in obj}
        if isinstance(obj, list):
            return _some(p, {e for e in map(rec_id, obj) if e})
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            try:
                e = rec_id(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(f"invalid JSON: {err.msg}", where=f"{p}:{n}", fix="one JSON object per line") from None
            if e:
                ids.add(e)
        else:
            ids.add(line.split("\t")[0])
    return _some(p, ids)


_ID_COLUMNS = ("id", "qid", "wikidata_id", "entity_id", "kb_id")


def _csv_lines(text: str) -> tuple[list[str], str | None]:
    """The lines of a CSV text without an Excel ``sep=X`` first line, and that delimiter (None: none given)."""
    lines = text.lstrip("\ufeff").splitlines()
    if lines and lines[0].strip().lower().startswith("sep=") and len(lines[0].strip()) == 5:
        return lines[1:], lines[0].strip()[4]
    return lines, None


def _csv_header(text: str) -> tuple[str, int] | None:
    """(delimiter, id column) when ``text`` starts (after an Excel ``sep=`` line) with a CSV/TSV header naming an
    id column (``id,label``; quoted cells read as CSV reads them), else None: a file of ids (``Q90`` a line, or
    ``Q90<TAB>Paris``) has no such header."""
    import csv

    lines, given = _csv_lines(text[:65536])
    if not lines:
        return None
    for delim in ([given] if given else [",", "\t", ";", "|"]):
        cols = [c.strip().lower() for c in next(csv.reader([lines[0]], delimiter=delim), [])]
        if len(cols) > 1 or cols[:1] in ([n] for n in _ID_COLUMNS):  # (a one-column file headed `id` too)
            for name in _ID_COLUMNS:
                if name in cols:
                    return delim, cols.index(name)
    return None


def _csv_ids(text: str, head: tuple[str, int] | None) -> set[str]:
    """The ids of a CSV/TSV file (the KB source `glinker kb build --adapter csv` reads, quoted as it reads it):
    the column its header names (``head``: :func:`_csv_header`'s), or without a header the first column. Cells of
    any size."""
    import csv
    import sys

    lines, given = _csv_lines(text)
    if head is not None:
        (delim, col), lines = head, lines[1:]
    else:
        delim, col = given or ("\t" if lines and "\t" in lines[0] else ","), 0
    csv.field_size_limit(min(sys.maxsize, 1 << 30))
    rows = csv.reader(lines, delimiter=delim)
    ids = set()
    for row in rows:
        if len(row) > col and row[col].strip() and not row[col].lstrip().startswith("#"):
            ids.add(row[col].strip())
    return ids


def _some(p: Any, ids: set[str]) -> set[str]:
    if not ids:
        raise DataError("no entity ids in the file", where=str(p),
                        fix="one id a line, JSONL records with id/qid, a JSON list of ids, or the KB directory")
    return ids
