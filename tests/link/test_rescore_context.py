"""Re-scoring with the document as context: the ``coherence`` feature and a short form borrowing the best
candidate of its longer mention (``in_document_prior``)."""

from __future__ import annotations

import numpy as np
import pytest

from glinker.errors import GlinkerError, PipelineError

from .test_linking_stages import counted_kb, given, pipe

RESCORE = """stages:
  m: {type: given_mentions}
  a: {type: alias_candidates, input: m, top_k: 10}
  r: {type: rescore, input: a, weights: W}
  links: {type: select, input: r, nil_threshold: 0.0, top_k: 10, one_per_span: false}
"""
TEXT = "Paris and Berlin. Apple and Google. Paris again."
SPANS = [(0, 5), (10, 16), (18, 23), (28, 34), (36, 41)]


def _link(model, kb, weights: str, *spans, text=TEXT):
    [out] = pipe(RESCORE.replace("W", weights), model, kb).link([given(*spans, text=text)])
    return out.links


def test_coherence_is_the_cosine_with_the_other_forms_best_candidates(tiny_model, tiny_kb):
    from glinker.kb import KB

    base = _link(tiny_model, tiny_kb, "{alias: 1.0, popularity: 1.0}", *SPANS)
    links = _link(tiny_model, tiny_kb, "{alias: 1.0, popularity: 1.0, coherence: 0.5}", *SPANS)
    before = {(ln.mention.start, c.entity_id): c.score for ln in base for c in ln.candidates}
    best = {ln.mention.start: max(ln.candidates, key=lambda c: (c.score, c.entity_id)) for ln in base}
    with KB.open(tiny_kb) as kb:
        rid = kb.rids(sorted({c.entity_id for ln in links for c in ln.candidates}))
        vec = dict(zip(rid, kb.index().reconstruct(np.asarray(list(rid.values()), dtype=np.int64))))
    unit = {e: v / np.linalg.norm(v) for e, v in vec.items()}
    form = {s: TEXT[s:e].lower() for s, e in SPANS}
    checked = 0
    for ln in links:
        s = ln.mention.start
        # the context: every other form's best candidate, weighted by its score before coherence ("Paris" twice)
        ctx = sum(best[o].score * unit[best[o].entity_id] for o, _ in SPANS if form[o] != form[s])
        ctx = ctx / np.linalg.norm(ctx)
        for c in ln.candidates:
            coh = max(0.0, float(unit[c.entity_id] @ ctx))
            assert c.scores["coherence"] == pytest.approx(coh, abs=1e-5)
            # the weighted mean: 2/2.5 of the score before coherence, 0.5/2.5 of coherence
            assert c.score == pytest.approx(0.8 * before[(s, c.entity_id)] + 0.2 * coh, abs=1e-5)
            checked += 1
    assert checked >= len(SPANS)


def test_a_mention_without_another_form_leaves_coherence_out(tiny_model, tiny_kb):
    text = "Paris, Paris."
    base = _link(tiny_model, tiny_kb, "{alias: 1.0, popularity: 1.0}", (0, 5), (7, 12), text=text)
    links = _link(tiny_model, tiny_kb, "{alias: 1.0, popularity: 1.0, coherence: 3.0}", (0, 5), (7, 12), text=text)
    assert [[(c.entity_id, round(c.score, 6)) for c in ln.candidates] for ln in links] == \
        [[(c.entity_id, round(c.score, 6)) for c in ln.candidates] for ln in base]
    assert not any("coherence" in c.scores for ln in links for c in ln.candidates)


def test_coherence_needs_another_feature_and_entity_vectors(tiny_model, tiny_kb, tmp_path):
    with pytest.raises(PipelineError) as ei:
        pipe(RESCORE.replace("W", "{coherence: 1.0}"), tiny_model, tiny_kb)
    assert "coherence" in str(ei.value) and "other feature" in str(ei.value)
    kb = counted_kb(tmp_path / "kb")  # built without a model: no vectors
    with pytest.raises(GlinkerError) as ei:
        _link(tiny_model, kb, "{alias: 1.0, coherence: 1.0}", *SPANS)
    assert "no entity vectors" in str(ei.value) and "stage 'r'" in str(ei.value)


def test_a_short_form_borrows_the_best_candidate_of_its_name_in_full(tiny_model, tmp_path):
    """ "Jobs" after "Steve Jobs", neither with alias counts: the full name's best candidate, with its score as the
    prior; without in_document_prior the prior says nothing (0 under missing_prior zero)."""
    kb = counted_kb(tmp_path / "kb")  # only "Paris" has counts
    text = "Steve Jobs left. Jobs came back."
    y = RESCORE.replace("W", "{prior: 1.0, alias: 1.0}")
    for on in (True, False):
        spec = y.replace("weights:", f"in_document_prior: {str(on).lower()}, weights:")
        [out] = pipe(spec, tiny_model, kb).link([given((0, 10), (17, 21), text=text)])
        full, short = out.links
        [c] = [c for c in short.candidates if c.entity_id == "Q19837"]
        assert full.candidates[0].entity_id == "Q19837" and full.candidates[0].score == pytest.approx(0.5)
        assert c.scores["alias_feature"] == 0.9  # found through the longer mention's text
        assert c.scores["prior"] == (pytest.approx(0.5) if on else 0.0)
        assert c.score == pytest.approx((0.5 + 0.9) / 2 if on else 0.45)

