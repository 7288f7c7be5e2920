"""Candidate retrieval: by alias (exact, normalised), fuzzy (rapidfuzz over the alias vocabulary), dense (FAISS,
querying with the mention's span vector), and the union of candidate sets (every homonym kept).

Every candidate keeps its entity id from the moment it is retrieved; limits apply after sorting.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal, Sequence

from pydantic import Field

from glinker.pipeline.stage import Stage, StageParams
from glinker.stages.records import (CANDIDATES, MENTIONS, MentionCandidates, longer_forms, merge_candidate_lists,
                                    mention_vector)
from glinker.stages.resources import (KBRef, check_folds, check_kb_vectors, entity_cache, load_model, open_kb,
                                      span_vectors, window_cache)
from glinker.types import Candidate, Document, Mention

log = logging.getLogger(__name__)


def _variants(text: str) -> list[str]:
    """The mention text and light variants that are still exact look-ups (possessive, leading article)."""
    out = [text]
    t = text.strip()
    for suf in ("'s", "’s", "'"):
        if t.endswith(suf) and len(t) > len(suf) + 1:
            out.append(t[: -len(suf)])
    low = t.casefold()
    if low.startswith("the ") and len(t) > 5:
        out.append(t[4:])
    return out


def _candidate(ent: Any, source: str, score: float) -> Candidate:
    return Candidate.of(ent.id, ent.label, ent.description, source, {source: score}, score)


class AliasCandidatesParams(StageParams):
    kb: KBRef | None = Field(default=None, description="KB to search (default: the pipeline's `kb`).")
    top_k: int = Field(
        default=30, ge=1,
        description="Candidates kept per mention, best alias score first (the entity's label 1.0, another alias "
                    "0.95, a variant 0.9, a last name `name_part_score`), then most popular.")
    variants: bool = Field(default=True, description="Also look up the text without a possessive 's or a leading 'the'.")
    in_document: bool = Field(
        default=True,
        description="Also look up the longer mentions of the same document that begin or end with this one's words "
                    "(\"Thatcher\" -> \"Margaret Thatcher\", \"Real\" -> \"Real Madrid\"): a name is often "
                    "given in full once and shortened after. Their entities score as variants (0.9).")
    fold_accents: bool = Field(
        default=True,
        description="A mention that matches no alias exactly is looked up without accents on Latin and Greek "
                    "letters and without Arabic vowel marks, every apostrophe read as ' (\"Zurich\" -> Zürich, "
                    "\"Sao Paulo\" -> São Paulo, \"ΑΘΗΝΑ\" -> Αθήνα, \"O’Brien\" -> O'Brien, and the other way "
                    "round; Greek and Arabic in KBs built or updated since 2026-12-04, apostrophes (’ ‘ ʼ ʻ ´ ′, the backtick) "
                    "since fold version 3, the Hebrew geresh and gershayim as ' and \" since 4, without characters that "
                    "do not show (a soft hyphen, a zero-width space) since 5, `docs/kb.md`); such "
                    "candidates score as variants (0.9). A KB built before accent folding existed (2026-12-03) has none "
                    "until an update opens it (`glinker kb info` shows `folds`).")
    name_parts: bool = Field(
        default=False,
        description="A one-word mention written as a name that matches no alias, and no longer mention of its "
                    "document, looks up the people with that last name (\"Hollioake\" -> Adam Hollioake; the KB's "
                    "name parts: humans, or in a KB without types every 2-4-word name). They score `name_part_score`.")
    name_part_score: float = Field(default=0.8, gt=0, le=1, description="The alias score of a last-name match.")
    name_part_labels: list[str] | None = Field(
        default_factory=lambda: ["person"],
        description="Only mentions with one of these labels (from the mention stage) look up last names; a mention "
                    "without a label always may. null: any label.")


class AliasCandidates(Stage):
    """Every entity whose label or alias equals the mention text (normalised): all homonyms, one SQL query per
    batch, sorted by alias score (the entity's label, another alias, a variant), then popularity, before the top-k
    cut."""

    type_name = "alias_candidates"
    Params = AliasCandidatesParams
    accepts = (MENTIONS,)
    produces = CANDIDATES
    summary = "candidates whose alias equals the mention (exact, normalised)"

    def warm_up(self) -> None:
        self.kb = open_kb(self.context, self.params.kb)  # type: ignore[attr-defined]
        self.entities = entity_cache(self.context, self.kb)
        if self.params.fold_accents:  # type: ignore[attr-defined]
            check_folds(self.context, self.kb, self.name)
        if self.params.name_parts and not self.kb.store.name_part_count():  # type: ignore[attr-defined]
            log.warning("stage %r: name_parts is on but KB %s has no name parts (built before they existed, or "
                        "no entity is a person): re-run `glinker kb build` on it to add them", self.name, self.kb.root)

    def run(self, documents: Sequence[Document], inputs: Sequence[Any]) -> list[list[MentionCandidates]]:
        from glinker.kb.store import _letters, normalize_alias, written_as_name

        p: AliasCandidatesParams = self.params  # type: ignore[assignment]
        mentions: list[list[Mention]] = inputs[0]
        keys: dict[tuple[int, int], list[str]] = {}
        for d_i, ms in enumerate(mentions):
            longer = longer_forms([normalize_alias(m.text) for m in ms]) if p.in_document else {}
            for j, m in enumerate(ms):
                vs = _variants(m.text) if p.variants else [m.text]
                keys[(d_i, j)] = list(dict.fromkeys([normalize_alias(v) for v in vs] + longer.get(j, [])))
        hits = self.kb.store.lookup_norms(sorted({k for ks in keys.values() for k in ks}))
        # keys looked up without accents, for the mentions none of whose keys matched exactly (kept apart: another
        # mention of the batch that matched exactly must not pick them up)
        folded = self.kb.store.lookup_folded(sorted({k for ks in keys.values() if not any(hits.get(k) for k in ks)
                                                     for k in ks})) if p.fold_accents else {}
        parts: dict[tuple[int, int], str] = {}  # mentions matching nothing -> their last-name key
        if p.name_parts:
            for (d_i, j), ks in keys.items():
                m = mentions[d_i][j]
                text = m.text.strip()
                if (p.name_part_labels is None or m.label is None or m.label in p.name_part_labels) \
                        and " " not in text and _letters(text) and len(text) >= 3 and written_as_name(text) \
                        and not any(hits.get(k) or folded.get(k) for k in ks):
                    parts[(d_i, j)] = normalize_alias(text)
        by_part = self.kb.store.lookup_name_parts(sorted(set(parts.values()))) if parts else {}
        ids = {e for ks in keys.values() for k in ks for e in hits.get(k, []) + folded.get(k, [])} | \
            {e for k in parts.values() for e in by_part.get(k, [])}
        ents = self.entities.get(sorted(ids))
        out = []
        for d_i, ms in enumerate(mentions):
            row = []
            for j, m in enumerate(ms):
                found: dict[str, Candidate] = {}
                ks = keys[(d_i, j)]
                exact = any(hits.get(k) for k in ks)
                for rank, k in enumerate(ks):
                    for eid in hits.get(k, []) if exact else folded.get(k, []):
                        ent = ents.get(eid)
                        if ent is not None and eid not in found:
                            # the entity's own label scores 1, another alias 0.95, a variant of the text (or
                            # the text without accents) 0.9
                            sc = 0.9 if rank or not exact else (1.0 if normalize_alias(ent.label) == k else 0.95)
                            found[eid] = _candidate(ent, "alias", sc)
                for eid in by_part.get(parts.get((d_i, j), ""), []):
                    ent = ents.get(eid)
                    if ent is not None:
                        found.setdefault(eid, _candidate(ent, "alias", p.name_part_score))
                cands = sorted(found.values(), key=lambda c: (-c.score, -ents[c.entity_id].popularity, c.entity_id))
                row.append(MentionCandidates(m, cands[: p.top_k], mention_vector(m)))
            out.append(row)
        return out


FUZZ_SCORERS = ("ratio", "partial_ratio", "token_sort_ratio", "token_set_ratio", "token_ratio",
                "partial_token_sort_ratio", "partial_token_set_ratio", "partial_token_ratio", "WRatio", "QRatio")
"""The similarity functions of ``rapidfuzz.fuzz``."""


class FuzzyCandidatesParams(StageParams):
    kb: KBRef | None = Field(default=None, description="KB to search (default: the pipeline's `kb`).")
    top_k: int = Field(default=10, ge=1, description="Candidates kept per mention, best match first.")
    score_cutoff: float = Field(default=88.0, ge=0, le=100, description="Minimum rapidfuzz similarity (0-100).")
    scorer: Literal[FUZZ_SCORERS] = Field(  # type: ignore[valid-type]
        default="ratio", description="rapidfuzz scorer: " + ", ".join(FUZZ_SCORERS) + ".")
    skip_exact: bool = Field(
        default=True,
        description="A mention that has an exact alias match is not searched for near ones (cheaper); the "
                    "entities of its exact alias are candidates at similarity 100 (score 1.0) either way.")
    min_chars: int = Field(default=4, ge=1, description="Shorter mentions are not fuzzy-matched (an exact alias "
                                                         "match still scores 1.0).")


class FuzzyCandidates(Stage):
    """Entities whose alias is close to the mention text (rapidfuzz over the KB's alias vocabulary, in C++);
    every homonym of a matched alias is a candidate and keeps its entity id."""

    type_name = "fuzzy_candidates"
    Params = FuzzyCandidatesParams
    accepts = (MENTIONS,)
    produces = CANDIDATES
    summary = "candidates whose alias is close to the mention (rapidfuzz)"

    def warm_up(self) -> None:
        self.kb = open_kb(self.context, self.params.kb)  # type: ignore[attr-defined]
        self.entities = entity_cache(self.context, self.kb)

    def run(self, documents: Sequence[Document], inputs: Sequence[Any]) -> list[list[MentionCandidates]]:
        from glinker.kb.store import normalize_alias

        p: FuzzyCandidatesParams = self.params  # type: ignore[assignment]
        mentions: list[list[Mention]] = inputs[0]
        exact = self.kb.store.lookup_norms(sorted({normalize_alias(m.text) for ms in mentions for m in ms}))
        wanted = {key: m.text for ms in mentions for m in ms
                  if len(key := normalize_alias(m.text)) >= p.min_chars and not (p.skip_exact and exact.get(key))}
        # every form of the batch in one rapidfuzz pass (fuzzy normalises the text again: same key)
        # aliases fetched: more than top_k, as several aliases may name one entity (top_k counts entities)
        cache = dict(zip(wanted, self.kb.fuzzy_many(list(wanted.values()), limit=3 * p.top_k,
                                                    score_cutoff=p.score_cutoff, scorer=p.scorer)))
        # a mention's exact alias is at similarity 100 whether it was searched or not (skipped, or shorter than
        # min_chars): its entities are candidates scoring 1.0, so an exact match never scores below a near one
        # ("Zürich Café Group" scored below "Zurich Cafe Group", whose accent-folded form got a fuzzy score)
        for key, eids in exact.items():
            if eids:
                hits = cache.get(key, [])
                have = {h[0] for h in hits if h[2] >= 100}
                cache[key] = [*hits, *((eid, key, 100.0) for eid in eids if eid not in have)]
        out = [[(m, cache.get(normalize_alias(m.text), [])) for m in ms] for ms in mentions]
        ents = self.entities.get(sorted({h[0] for row in out for _, hits in row for h in hits}))
        result = []
        for row in out:
            res_row = []
            for m, hits in row:
                found: dict[str, Candidate] = {}
                key = normalize_alias(m.text)
                named = {eid for eid, alias, _ in hits if alias == key}  # named exactly so (ties of token scorers)
                for eid, _alias, score in hits:
                    ent = ents.get(eid)
                    if ent is not None and (eid not in found or found[eid].score < score / 100):
                        found[eid] = _candidate(ent, "fuzzy", score / 100.0)
                cands = sorted(found.values(), key=lambda c: (-c.score, c.entity_id not in named,
                                                              -ents[c.entity_id].popularity, c.entity_id))
                res_row.append(MentionCandidates(m, cands[: p.top_k], mention_vector(m)))
            result.append(res_row)
        return result


class DenseCandidatesParams(StageParams):
    kb: KBRef | None = Field(default=None, description="KB to search (default: the pipeline's `kb`).")
    model: str | None = Field(default=None, description="Bi-encoder (default: the pipeline's `model`); must be the KB's.")
    top_k: int = Field(default=20, ge=1, description="Nearest entities per mention (FAISS inner product).")
    nprobe: int | None = Field(default=None, ge=1, description="IVF lists searched (default: the KB's).")
    batch_size: int = Field(default=16, ge=1, description="Model windows per forward pass when span vectors are missing.")


class DenseCandidates(Stage):
    """The KB entities nearest to each mention's span vector (the bi-encoder's own score: span · entity).
    Uses the vectors the mention stage attached; otherwise encodes each batch of texts once."""

    type_name = "dense_candidates"
    Params = DenseCandidatesParams
    accepts = (MENTIONS,)
    produces = CANDIDATES
    summary = "nearest KB entities to the mention's span vector (FAISS)"

    def warm_up(self) -> None:
        p: DenseCandidatesParams = self.params  # type: ignore[assignment]
        self.model = load_model(self.context, p.model)
        self.kb = open_kb(self.context, p.kb, p.model)
        check_kb_vectors(self.kb, self.model, f"stage {self.name!r}")
        self.entities = entity_cache(self.context, self.kb)
        self.kb.index()

    def run(self, documents: Sequence[Document], inputs: Sequence[Any]) -> list[list[MentionCandidates]]:
        import numpy as np

        p: DenseCandidatesParams = self.params  # type: ignore[assignment]
        mentions: list[list[Mention]] = inputs[0]
        vecs = ensure_vectors(self.model, documents, mentions, p.batch_size, window_cache(self.context))
        flat = [v for row in vecs for v in row]
        out: list[list[MentionCandidates]] = [[] for _ in mentions]
        if not flat:
            return out
        scores, ids = self.kb.search_vectors(np.stack(flat), p.top_k, p.nprobe)
        ents = self.entities.get(sorted({e for row in ids for e in row}))
        k = 0
        all_scores = scores.tolist()
        for d_i, ms in enumerate(mentions):
            for j, m in enumerate(ms):
                cands = []
                # ids[k] lists only found entities, best first; their scores are the finite ones, in order
                row_scores = [s for s in all_scores[k] if math.isfinite(s)]
                for eid, s in zip(ids[k], row_scores):
                    ent = ents.get(eid)
                    if ent is not None:
                        cands.append(_candidate(ent, "dense", s))
                out[d_i].append(MentionCandidates(m, cands, vecs[d_i][j]))
                k += 1
        return out


def ensure_vectors(model: Any, documents: Sequence[Document], mentions: Sequence[Sequence[Mention]],
                   batch_size: int, cache: Any = None) -> list[list[Any]]:
    """Each mention's span vector: the one it carries, else computed for the whole batch in one pass."""
    have = [[mention_vector(m) for m in ms] for ms in mentions]
    need = [[(m.start, m.end) if have[i][j] is None else None for j, m in enumerate(ms)] for i, ms in enumerate(mentions)]
    if any(x is not None for row in need for x in row):
        spans = [[s for s in row if s is not None] for row in need]
        got = span_vectors(model, [d.text for d in documents], spans, batch_size=batch_size, cache=cache)
        for i, row in enumerate(need):
            it = iter(got[i])
            for j, s in enumerate(row):
                if s is not None:
                    have[i][j] = next(it)
    return have


class MergeCandidatesParams(StageParams):
    pass


class MergeCandidates(Stage):
    """Union of candidate sets per mention span; candidates are merged by entity id (homonyms stay apart),
    keeping every source and every score."""

    type_name = "merge_candidates"
    Params = MergeCandidatesParams
    accepts = (CANDIDATES,)
    produces = CANDIDATES
    max_inputs = None
    summary = "union of candidate sets (every homonym kept)"

    def run(self, documents: Sequence[Document], inputs: Sequence[Any]) -> list[list[MentionCandidates]]:
        return [merge_candidate_lists([inp[d] for inp in inputs]) for d in range(len(documents))]

    def count(self, output: Any) -> int:
        return sum(len(mc.candidates) for row in output for mc in row)
