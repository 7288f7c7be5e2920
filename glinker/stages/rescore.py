"""Re-scoring: the bi-encoder's exact score (span vector · entity vector) combined with priors — popularity,
p(entity | mention) from the KB's alias counts, alias match, type compatibility — with weights set in YAML.
Every feature is kept on the candidate."""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any, Literal, Sequence

from pydantic import Field, field_validator

from glinker.errors import ConfigError, KBError
from glinker.kb.store import normalize_alias
from glinker.pipeline.stage import Stage, StageParams
from glinker.stages.records import CANDIDATES, MentionCandidates, document_prior_sources, merge_candidate_lists
from glinker.stages.resources import (KBRef, check_kb_vectors, entity_cache, entity_vectors, load_model, open_kb,
                                      window_cache)
from glinker.types import Document

log = logging.getLogger(__name__)

FEATURES = ("biencoder", "popularity", "prior", "alias", "fuzzy", "dense", "type", "coherence")


class RescoreParams(StageParams):
    weights: dict[str, float] = Field(
        default_factory=lambda: {"biencoder": 1.0, "popularity": 0.2, "alias": 0.2, "type": 0.0},
        description="Feature -> weight; the score is the weighted mean. Features: biencoder (sigmoid of span · "
                    "entity), popularity (log popularity relative to the mention's best candidate), prior "
                    "(p(entity | mention) from the KB's alias counts for the mention's normalised text; a form "
                    "without counts: see `missing_prior`; left out of the mean when the KB has no alias counts at "
                    "all), alias (1 the label, 0.95 an alias, 0.9 a variant such as a plural), fuzzy (similarity "
                    "0-1), dense (sigmoid of the retrieval score), type (1 if the mention's label maps to one of the entity's types, else 0), coherence (cosine, "
                    "floored at 0, of the entity's vector with the document's other mentions: the sum of their "
                    "best candidates' unit vectors weighted by their scores before coherence, mentions of the "
                    "same form left out; a mention with no other form in its document leaves coherence out of "
                    "its mean).")
    missing_prior: Literal["zero", "skip", "popularity", "auto"] = Field(
        default="zero",
        description="A mention whose normalised text has no alias counts in the KB (the prior is unknown, not "
                    "against): `zero` scores `prior` 0 for every candidate (the prior says no, so the weighted "
                    "mean drops, e.g. under a NIL threshold); `skip` leaves `prior` out of that mention's weighted "
                    "mean (the other weights renormalised; `prior` is not kept on its candidates), as for a KB "
                    "without any counts; `popularity` backs off to the popularity share among the candidates "
                    "whose alias matches the mention, (1 + popularity) / sum over them (others 0), and so gives a "
                    "KB without any counts (e.g. built from a dump) a prior too; `auto` is `zero` for a KB with "
                    "alias counts and `popularity` for one without (AIDA testa, shipped weights: 74.7 with counts, "
                    "64.7 without them against 63.9 when the prior is left out). A form with counts gives 0 to the "
                    "candidates it has no count for either way.")
    type_map: dict[str, list[str]] = Field(
        default_factory=dict, description="Mention label -> entity type ids it is compatible with (for `type`).")
    in_document_prior: bool = Field(
        default=True,
        description="A mention whose form has no alias counts borrows the p(e|m) of a longer mention of its "
                    "document that begins or ends with its words (\"Thatcher\" after \"Margaret Thatcher\"), "
                    "before `missing_prior` applies; when no such longer mention has counts either (\"Wiesel\" "
                    "after \"Elie Wiesel\"), the best candidate of the first longer one written as a name (every word "
                    "capitalised: not \"University of Pisa\" for \"Pisa\") is the short one's prior, with the longer "
                    "mention's score as its value, if it is among the short one's candidates.")
    top_k: int | None = Field(default=None, ge=1, description="Keep only the best k candidates per mention (after sorting).")
    kb: KBRef | None = Field(default=None, description="KB (default: the pipeline's `kb`).")
    model: str | None = Field(default=None, description="Bi-encoder (default: the pipeline's `model`).")
    batch_size: int = Field(default=16, ge=1, description="Model windows per forward pass when span vectors are missing.")

    @field_validator("weights")
    @classmethod
    def _known(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k in v if k not in FEATURES]
        if bad:
            raise ValueError(f"unknown feature(s) {bad}; features: {', '.join(FEATURES)}")
        if any(w < 0 for w in v.values()) or not any(w > 0 for w in v.values()):
            raise ValueError("weights must be >= 0 with at least one > 0")
        if v.get("coherence", 0) > 0 and not any(w > 0 for k, w in v.items() if k != "coherence"):
            raise ValueError("coherence compares a candidate with the document's best candidates, which the other "
                             "features choose: give at least one other feature a weight > 0")
        return v


def _normalised(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items()} if total > 0 else {}


# features kept on a candidate under another key than their name (the retrieval scores keep theirs)
_STORED_AS = {"alias": "alias_feature", "fuzzy": "fuzzy_feature", "dense": "dense_feature"}


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


def _sigmoids(x: Any) -> Any:
    """:func:`_sigmoid` of every element of a numpy array (float64)."""
    import numpy as np

    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, dtype=np.float64), -60.0, 60.0)))


def effective_missing_prior(mode: str, weights: dict[str, float], kb_counted: bool) -> tuple[str, dict[str, float]]:
    """The ``missing_prior`` mode and the weights rescore really uses: ``auto`` is ``zero`` for a KB with alias
    counts and ``popularity`` without. A KB without counts has no p(e|m) at all, so unless the mode backs off to
    popularity, ``prior`` leaves the mean (neutral) rather than scoring every candidate 0 on it, which would only
    shrink the scores under the NIL threshold (not when it is the only weight)."""
    m = mode if mode != "auto" else ("zero" if kb_counted else "popularity")
    active = [k for k, v in weights.items() if v > 0]
    if not kb_counted and m != "popularity" and "prior" in active and len(active) > 1:
        weights = {k: v for k, v in weights.items() if k != "prior"}
    return m, weights


def _best(candidates: Sequence[Any]) -> Any:
    """A mention's best candidate before the final sort (highest score), or None."""
    return max(candidates, key=lambda c: (c.score, c.entity_id), default=None)


def _popularity_prior(candidates: Sequence[Any], ents: dict[str, Any]) -> dict[str, float]:
    """p(entity | mention) from popularity alone, for a form without alias counts: (1 + popularity) shares over
    the candidates whose alias matches the mention (retrieved by the alias stage); others get none."""
    pops = {c.entity_id: 1.0 + max(0.0, float(ents[c.entity_id].popularity))
            for c in candidates if "alias" in c.scores and c.entity_id in ents}
    total = sum(pops.values())
    return {e: v / total for e, v in pops.items()} if total > 0 else {}


class Rescore(Stage):
    """Re-rank every mention's candidates by a weighted mean of the bi-encoder score and priors.

    Several inputs are merged first (union by entity id). Entity vectors are read back from the KB index,
    never re-encoded; span vectors come from the mention stage or are computed once per batch."""

    type_name = "rescore"
    Params = RescoreParams
    accepts = (CANDIDATES,)
    produces = CANDIDATES
    max_inputs = None
    summary = "bi-encoder score combined with popularity, p(e|m), alias and type priors"

    def warm_up(self) -> None:
        p: RescoreParams = self.params  # type: ignore[assignment]
        self.kb = open_kb(self.context, p.kb, p.model)
        self.entities = entity_cache(self.context, self.kb)
        self.use_model = p.weights.get("biencoder", 0) > 0
        if self.use_model:
            self.model = load_model(self.context, p.model)
            check_kb_vectors(self.kb, self.model, f"stage {self.name!r}")
        if p.weights.get("coherence", 0) > 0 and not self.kb.manifest.has_vectors:
            raise KBError(f"KB {self.kb.root} has no entity vectors (built with --model none), which the "
                          f"'coherence' feature compares", where=f"stage {self.name!r}",
                          fix="rebuild the KB with --model, or set the coherence weight to 0")
        if self.use_model or p.weights.get("coherence", 0) > 0:
            self.vectors = entity_vectors(self.context, self.kb)
        weights = {k: v for k, v in p.weights.items() if v > 0}
        counted = bool(self.kb.store.alias_count_pairs()) if "prior" in weights else True
        self.missing, kept = effective_missing_prior(p.missing_prior, weights, counted)
        if kept != weights:
            log.warning("stage %r: the KB has no alias counts, so the 'prior' feature is left out (weights %s)",
                        self.name, kept)
            weights = kept
        if "type" in weights and not self.kb.store.has_types():
            weights = {k: v for k, v in weights.items() if k != "type"}
            log.warning("stage %r: no entity of the KB has types, so the 'type' feature is left out (it would score "
                        "every candidate 0; weights %s)", self.name, weights)
        if not weights or set(weights) == {"coherence"}:  # coherence compares candidates scored by the others
            raise ConfigError(f"stage {self.name!r}: no feature of `weights` can score with KB {self.kb.root} (its "
                              f"prior needs alias counts, its type feature entity types)", where=f"stage {self.name!r}",
                              fix="weigh features this KB supports (biencoder, popularity, alias...), or build the KB "
                                  "with alias counts / types")
        self.w = _normalised(weights)
        # the weights for a mention without counts under `missing_prior: skip` (none, score 0, if prior was alone)
        self.w_unknown = (_normalised({k: v for k, v in weights.items() if k != "prior"})
                          if self.missing == "skip" and "prior" in weights else self.w)
        self.types = {k: set(v) for k, v in p.type_map.items()}

    def run(self, documents: Sequence[Document], inputs: Sequence[Any]) -> list[list[MentionCandidates]]:
        import numpy as np

        from glinker.stages.candidates import ensure_vectors

        p: RescoreParams = self.params  # type: ignore[assignment]
        # merged, or copied: the input stage's records may feed other branches too, and are not ours to change
        rows = [merge_candidate_lists([inp[d] for inp in inputs]) if len(inputs) > 1
                else [MentionCandidates(mc.mention, [c.clone() for c in mc.candidates], mc.vector) for mc in inputs[0][d]]
                for d in range(len(documents))]
        ids = sorted({c.entity_id for row in rows for mc in row for c in mc.candidates})
        ents = self.entities.get(ids)
        if len(ents) < len(ids) and not getattr(self, "_said_foreign", False):
            self._said_foreign = True  # (once a pipeline: a KB updated meanwhile, or candidates of another KB)
            lack = [e for e in ids if e not in ents]
            log.warning("stage %r: %d candidate(s) are not in its KB %s (e.g. %s): their popularity, type and "
                        "biencoder features are 0. Candidates from another KB (a stage with its own `kb`) are "
                        "re-scored by a rescore stage with that `kb`, one per KB", self.name, len(lack),
                        self.kb.root, ", ".join(lack[:3]))
        bi: dict[tuple[int, int], Any] = {}
        prior = self.kb.prior([mc.mention.text for row in rows for mc in row]) if "prior" in self.w else {}
        evec = self.vectors.get(ids) if ids and (self.use_model or "coherence" in self.w) else {}
        if self.use_model and ids:
            # span vectors: those carried along, else one pass for the batch
            missing = [[mc.mention for mc in row if mc.vector is None] for row in rows]
            if any(missing):
                got = ensure_vectors(self.model, documents, missing, p.batch_size, window_cache(self.context))
                for row, vs in zip(rows, got):
                    it = iter(vs)
                    for mc in row:
                        if mc.vector is None:
                            mc.vector = next(it)
            known = [e for e in ids if e in evec]
            if known:
                col = {e: i for i, e in enumerate(known)}
                E = np.stack([evec[e] for e in known])
                for d, row in enumerate(rows):
                    for j, mc in enumerate(row):
                        cs = [c for c in mc.candidates if c.entity_id in col]
                        if cs and mc.vector is not None:
                            s = E[[col[c.entity_id] for c in cs]] @ np.asarray(mc.vector, dtype=np.float32)
                            # the biencoder feature, sigmoid of the dot product, for the mention's rows at once
                            bi[(d, j)] = dict(zip((c.entity_id for c in cs), _sigmoids(s).tolist()))
        w_coh = self.w.get("coherence", 0.0)
        for d, row in enumerate(rows):
            norms = [normalize_alias(mc.mention.text) for mc in row]
            from_counts, from_name = (
                document_prior_sources([mc.mention.text for mc in row], norms,
                                       [mc.mention.text in prior for mc in row], [bool(mc.candidates) for mc in row])
                if "prior" in self.w and p.in_document_prior else ({}, {}))
            coh_w = []  # each mention's coherence weight (its weights depend on whether its prior is known)
            for j, mc in enumerate(row):
                pem = prior.get(mc.mention.text)
                if pem is None and j in from_counts:
                    pem = prior[row[from_counts[j]].mention.text]
                if pem is None and self.missing == "popularity" and "prior" in self.w:
                    pem = _popularity_prior(mc.candidates, ents)
                coh_w.append(self._score_mention(mc, pem, ents, bi.get((d, j), {})))
            # a short form whose longer mention has no counts either ("Wiesel" after "Elie Wiesel"): the longer
            # mention's best candidate, with its score as the prior
            for j, k in from_name.items():
                best = _best(row[k].candidates)
                if best is not None and any(c.entity_id == best.entity_id for c in row[j].candidates):
                    coh_w[j] = self._score_mention(row[j], {best.entity_id: best.score}, ents, bi.get((d, j), {}))
            if w_coh > 0:
                self._add_coherence(row, norms, evec, coh_w, self.name)
            for mc in row:
                mc.candidates.sort(key=lambda c: (-c.score, c.entity_id))
                if p.top_k is not None:
                    del mc.candidates[p.top_k:]
        return rows

    def _score_mention(self, mc: MentionCandidates, pem: dict[str, float] | None, ents: dict[str, Any],
                       dots: dict[str, float]) -> float:
        """Compute the features of one mention's candidates and their score before coherence (the weighted mean
        of the other features); ``pem`` is its p(e|m), None when unknown. Returns its coherence weight."""
        cands = mc.candidates
        w = self.w if pem is not None else self.w_unknown
        rest = 1.0 - w.get("coherence", 0.0)
        # one column of values per feature, in the order they are stored (the order of the checks below)
        cols: dict[str, list[float]] = {}
        if "biencoder" in self.w:
            cols["biencoder"] = [dots.get(c.entity_id, 0.0) for c in cands]  # sigmoid(span . entity)
        if "popularity" in self.w:
            pops = [math.log1p(ents[c.entity_id].popularity) if c.entity_id in ents else 0.0 for c in cands]
            top = max(pops, default=0.0)
            cols["popularity"] = [lp / top if top > 0 else 0.0 for lp in pops]
        if "prior" in w:
            cols["prior"] = [pem.get(c.entity_id, 0.0) for c in cands] if pem is not None else [0.0] * len(cands)
        if "alias" in self.w:
            cols["alias"] = [c.scores.get("alias", 0.0) for c in cands]
        if "fuzzy" in self.w:
            cols["fuzzy"] = [c.scores.get("fuzzy", 0.0) for c in cands]
        if "dense" in self.w:
            cols["dense"] = [_sigmoid(c.scores["dense"]) if "dense" in c.scores else 0.0 for c in cands]
        if "type" in self.w:
            allowed = self.types.get(mc.mention.label or "", None)
            cols["type"] = [1.0 if (allowed and (ent := ents.get(c.entity_id)) is not None
                                    and allowed.intersection(ent.types)) else 0.0 for c in cands]
        # each candidate's weighted terms in the order of the weights, summed as one sum() of them would
        terms = [[wk * v for v in cols[k]] for k, wk in w.items() if k != "coherence"]
        totals = [sum(t) for t in zip(*terms)] if terms else [0] * len(cands)
        stored = [(_STORED_AS.get(k, k), list(map(round, col, itertools.repeat(6)))) for k, col in cols.items()]
        name = self.name
        for i, c in enumerate(cands):
            score = totals[i] / rest if rest > 0 else 0.0
            d = c.__dict__  # (our own clones, every field set: written directly, not through pydantic's setattr)
            scores = d["scores"]
            scores.pop("prior", None)  # a second pass with a borrowed prior replaces the first's features
            for k, col in stored:
                scores[k] = col[i]
            scores[name] = score
            d["score"] = score
        return w.get("coherence", 0.0)

    @staticmethod
    def _add_coherence(row: Sequence[MentionCandidates], forms: Sequence[str], evec: dict[str, Any],
                       weights: Sequence[float], name: str) -> None:
        """Mix the ``coherence`` feature into the scores of one document's candidates (see the ``weights``
        description): each mention's context is the score-weighted sum of the unit vectors of the best
        candidates of the document's mentions of other forms (``forms``: their normalised texts)."""
        import numpy as np

        ids = sorted({c.entity_id for mc in row for c in mc.candidates if c.entity_id in evec})
        if not ids:
            return
        col = {e: i for i, e in enumerate(ids)}
        U = np.stack([np.asarray(evec[e], dtype=np.float32) for e in ids])
        norms = np.linalg.norm(U, axis=1, keepdims=True)
        U = np.divide(U, norms, out=np.zeros_like(U), where=norms > 0)  # unit rows (a zero vector stays 0)
        by_form: dict[str, Any] = {}
        for mc, form in zip(row, forms):
            best = _best(mc.candidates)
            if best is not None and best.score > 0 and best.entity_id in col:
                by_form[form] = by_form.get(form, 0.0) + best.score * U[col[best.entity_id]]
        if not by_form:
            return
        total = sum(by_form.values())
        # the mentions of one form share their context (every other form's best candidates): one product a form
        ctx_of: dict[str, Any] = {}
        for mc, form, wc in zip(row, forms, weights):
            if not mc.candidates:
                continue
            if form not in ctx_of:
                ctx = total - by_form[form] if form in by_form else total
                norm = float(np.linalg.norm(ctx))
                ctx_of[form] = ctx / norm if norm > 0 else None
            ctx = ctx_of[form]
            if ctx is None:
                continue  # no other form: coherence stays out of this mention's mean
            rows_ = [col.get(c.entity_id, -1) for c in mc.candidates]
            sims = U[rows_] @ ctx
            for c, r, sim in zip(mc.candidates, rows_, sims.tolist()):
                coh = max(0.0, sim) if r >= 0 else 0.0
                d = c.__dict__  # (rescore's own clones: see _score_mention)
                score = (1.0 - wc) * d["score"] + wc * coh
                d["scores"]["coherence"] = round(coh, 6)
                d["scores"][name] = d["score"] = score

    def count(self, output: Any) -> int:
        return sum(len(mc.candidates) for row in output for mc in row)
