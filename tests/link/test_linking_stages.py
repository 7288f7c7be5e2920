"""The linking stages on a tiny real bi-encoder and a tiny real KB (SQLite aliases + FAISS vectors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from glinker.errors import ConfigError, PipelineError
from glinker.pipeline import Pipeline, loads_spec
from glinker.types import NIL, Document, Entity, LinkedDocument, Mention

from .conftest import TEXTS, write_entities


def pipe(yaml: str, model: Path, kb: Path) -> Pipeline:
    return Pipeline(loads_spec(f"name: t\nmodel: {model}\nkb: {kb}\n" + yaml))


def given(*spans: tuple[int, int], text: str) -> Document:
    return Document(id="d", text=text, meta={"mentions": [{"start": s, "end": e} for s, e in spans]})


def test_alias_candidates_keep_every_homonym_sorted_before_the_limit(tiny_model, tiny_kb):
    p = pipe("""stages:
  m: {type: given_mentions}
  c: {type: alias_candidates, input: m, top_k: 2}
""", tiny_model, tiny_kb)
    text = "Paris is nice."
    [row] = p([given((0, 5), text=text)])
    [mc] = row
    # three entities are named Paris; the two most popular survive the cut (the cut comes after sorting)
    assert [c.entity_id for c in mc.candidates] == ["Q90", "Q167646"]
    assert all(c.source == "alias" and c.scores["alias"] == 1.0 for c in mc.candidates)  # all labelled Paris
    p3 = pipe("""stages:
  m: {type: given_mentions}
  c: {type: alias_candidates, input: m, top_k: 10}
""", tiny_model, tiny_kb)
    [[mc]] = p3([given((0, 5), text=text)])
    assert sorted(c.entity_id for c in mc.candidates) == ["Q167646", "Q830149", "Q90"]


def test_alias_variants_and_normalisation(tiny_model, tiny_kb):
    p = pipe("""stages:
  m: {type: given_mentions}
  c: {type: alias_candidates, input: m}
""", tiny_model, tiny_kb)
    text = "GOOGLE's  results; the   City of Light"
    [row] = p([given((0, 8), (19, 38), text=text)])
    assert [c.entity_id for c in row[0].candidates] == ["Q95"]
    assert row[0].candidates[0].scores["alias"] == 0.9  # found through the possessive variant
    assert [c.entity_id for c in row[1].candidates] == ["Q90"]


def test_fuzzy_candidates_keep_their_entity_ids(tiny_model, tiny_kb):
    p = pipe("""stages:
  m: {type: given_mentions}
  c: {type: fuzzy_candidates, input: m, score_cutoff: 80}
""", tiny_model, tiny_kb)
    text = "Steve Jbos met Goggle and Paris."
    [row] = p([given((0, 10), (15, 21), (26, 31), text=text)])
    assert [c.entity_id for c in row[0].candidates] == ["Q19837"]
    assert row[0].candidates[0].source == "fuzzy" and 0.8 <= row[0].candidates[0].score < 1.0
    assert [c.entity_id for c in row[1].candidates] == ["Q95"]
    # an exact alias is not searched (skip_exact) yet is at similarity 100: every entity it names, scoring 1.0
    assert sorted(c.entity_id for c in row[2].candidates) == ["Q167646", "Q830149", "Q90"]
    assert {(c.source, c.score) for c in row[2].candidates} == {("fuzzy", 1.0)}


def test_dense_candidates_score_is_span_dot_entity(tiny_model, tiny_kb):
    from glinker.kb import KB
    from glinker.model import BiEncoder

    p = pipe("""stages:
  m: {type: given_mentions}
  c: {type: dense_candidates, input: m, top_k: 12}
""", tiny_model, tiny_kb)
    text = "Steve Jobs founded Apple in California."
    [row] = p([given((0, 10), (19, 24), text=text)])
    enc = BiEncoder.from_pretrained(tiny_model)
    [spans] = enc.span_vectors([text], [[(0, 10), (19, 24)]])
    kb = KB.open(tiny_kb)
    ids = [e.id for e in kb.get([c.entity_id for c in row[0].candidates])]
    assert len(row[0].candidates) == 12  # every entity of the KB, all with ids
    texts = [kb.template.render(e) for e in kb.get(ids)]
    ev = dict(zip(ids, enc.encode_entities(texts)))
    for j, mc in enumerate(row):
        scores = [c.scores["dense"] for c in mc.candidates]
        assert scores == sorted(scores, reverse=True)
        for c in mc.candidates:
            assert c.scores["dense"] == pytest.approx(float(spans[j] @ ev[c.entity_id]), abs=1e-3)


def test_batched_span_vectors_match_the_model(tiny_model):
    from glinker.model import BiEncoder
    from glinker.stages.resources import span_vectors

    enc = BiEncoder.from_pretrained(tiny_model)
    long_text = " ".join(["john smith lives in paris"] * 40)  # several model windows
    texts = ["Steve Jobs founded Apple.", "", long_text, "Paris, Texas"]
    spans = [[(0, 10), (19, 24)], [], [(0, 10), (len(long_text) - 5, len(long_text))], [(0, 12)]]
    ours = span_vectors(enc, texts, spans, batch_size=2)
    ref = enc.span_vectors(texts, spans)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_rescore_weights_and_every_score_kept(tiny_model, tiny_kb):
    y = """stages:
  m: {type: given_mentions}
  a: {type: alias_candidates, input: m, top_k: 10}
  d: {type: dense_candidates, input: m, top_k: 3}
  r: {type: rescore, inputs: [a, d], weights: {popularity: 1.0}}
  links: {type: select, input: r, top_k: 10}
"""
    p = pipe(y, tiny_model, tiny_kb)
    [doc] = p.link([given((0, 5), text="Paris is nice.")])
    assert isinstance(doc, LinkedDocument)
    [ln] = doc.links
    assert ln.entity_id == "Q90" and ln.label == "Paris"  # most popular wins with popularity only
    c0 = ln.candidates[0]
    assert {"alias", "popularity", "r"} <= set(c0.scores)
    # homonyms survive the merge with the dense set
    assert {"Q90", "Q167646", "Q830149"} <= {c.entity_id for c in ln.candidates}
    # the bi-encoder alone ranks by the dot product, which the dense stage measured
    p2 = pipe(y.replace("{popularity: 1.0}", "{biencoder: 1.0}"), tiny_model, tiny_kb)
    [doc2] = p2.link([given((0, 5), text="Paris is nice.")])
    cands = doc2.links[0].candidates
    bi = [c.scores["biencoder"] for c in cands]
    assert bi == sorted(bi, reverse=True)
    for c in cands:
        if "dense" in c.scores:
            assert c.scores["biencoder"] == pytest.approx(1 / (1 + np.exp(-c.scores["dense"])), abs=1e-4)


TYPED = """stages:
  m: {type: given_mentions, default_label: person}
  a: {type: alias_candidates, input: m, top_k: 10}
  r: {type: rescore, input: a, weights: {popularity: 0.2, type: 1.0}, type_map: {person: [Q5]}}
  links: {type: select, input: r}
"""


def test_type_prior(tiny_model, tiny_kb):
    y = TYPED
    [doc] = pipe(y, tiny_model, tiny_kb).link([given((0, 5), text="Paris killed Achilles.")])
    assert doc.links[0].entity_id == "Q167646"  # the only Paris who is a person
    assert doc.links[0].candidates[0].scores["type"] == 1.0


def test_type_feature_on_a_kb_without_types_is_left_out(tiny_model, tmp_path, caplog):
    """It scored every candidate 0 (lowering every confidence under the NIL threshold) without a word."""
    from glinker.kb.adapters import load_adapter
    from glinker.kb.build import build_kb

    from .conftest import ENTITIES, write_entities

    from glinker.model import BiEncoder

    kb = tmp_path / "kb"
    build_kb(load_adapter("jsonl", str(write_entities(tmp_path / "e.jsonl",
                                                      [e.model_copy(update={"types": []}) for e in ENTITIES]))), kb,
             BiEncoder.from_pretrained(tiny_model))
    y = TYPED
    [doc] = pipe(y, tiny_model, kb).link([given((0, 5), text="Paris killed Achilles.")])
    assert "no entity of the KB has types" in caplog.text
    assert "type" not in doc.links[0].candidates[0].scores and doc.links[0].confidence > 0.5
    with pytest.raises(ConfigError, match="no feature of `weights` can score"):
        pipe(y.replace("popularity: 0.2, ", ""), tiny_model, kb).link([given((0, 5), text="Paris killed Achilles.")])
    with pytest.raises(ConfigError, match="no feature of `weights` can score"):  # coherence alone scores nothing
        pipe(y.replace("popularity: 0.2", "coherence: 1.0"), tiny_model, kb).link(
            [given((0, 5), text="Paris killed Achilles.")])


def test_fuzzy_candidates_keep_the_entity_named_like_the_mention_first(tiny_model, tmp_path):
    """With a token scorer every alias holding "munich" scores 100; the stage re-sorted ties by popularity and its
    top_k cut the entity named exactly "Munich"."""
    from glinker.kb.adapters import load_adapter
    from glinker.kb.build import build_kb

    from .conftest import write_entities

    ents = [Entity(id="Q1726", label="Munich", popularity=10), Entity(id="Q2", label="Munich Airport", popularity=100),
            Entity(id="Q3", label="FC Bayern Munich", popularity=200)]
    build_kb(load_adapter("jsonl", str(write_entities(tmp_path / "m.jsonl", ents))), tmp_path / "kb", None)
    y = """stages:
  m: {type: given_mentions}
  f: {type: fuzzy_candidates, input: m, scorer: token_set_ratio, skip_exact: false, top_k: 1}
  links: {type: select, input: f}
"""
    [doc] = pipe(y, tiny_model, tmp_path / "kb").link([given((0, 6), text="Munich is big.")])
    assert [c.entity_id for c in doc.links[0].candidates] == ["Q1726"]


def test_an_exact_alias_never_scores_below_its_accent_folded_or_near_form(tiny_model, tmp_path):
    """`fuzzy_candidates` skipped exact matches (skip_exact) and short ones (min_chars), so with a fuzzy weight an
    exact alias scored below the same name without its accents (which got a fuzzy score) and a unique exact
    alias of a little-known row fell under the NIL threshold (company_kb_sql.yaml)."""
    from glinker.kb.adapters import load_adapter
    from glinker.kb.build import build_kb

    from .conftest import write_entities

    ents = [Entity(id="Z1", label="Café Zürich Holding", aliases=["Zürich Café Group"], popularity=1),
            Entity(id="Q1", label="Quillfeather Analytics", aliases=["QFA"]),
            Entity(id="R1", label="Vendor One Systems", popularity=1000)]
    build_kb(load_adapter("jsonl", str(write_entities(tmp_path / "z.jsonl", ents))), tmp_path / "kb", None)
    scores = {}
    for skip in ("true", "false"):
        y = f"""stages:
  m: {{type: given_mentions}}
  a: {{type: alias_candidates, input: m}}
  f: {{type: fuzzy_candidates, input: m, score_cutoff: 85, skip_exact: {skip}}}
  r: {{type: rescore, inputs: [a, f], weights: {{popularity: 0.2, alias: 1.0, fuzzy: 0.3}}}}
  links: {{type: select, input: r, nil_threshold: 0.5}}
"""
        text = "Zürich Café Group and Zurich Cafe Group and QFA."
        [doc] = pipe(y, tiny_model, tmp_path / "kb").link([given((0, 17), (22, 39), (44, 47), text=text)])
        assert [lk.entity_id for lk in doc.links] == ["Z1", "Z1", "Q1"], skip
        exact, folded, short = (lk.confidence for lk in doc.links)
        assert exact > folded and short >= 0.6, (skip, exact, folded, short)   # (0.95 + 0.3) / 1.5 = 0.83
        assert doc.links[0].candidates[0].scores["fuzzy_feature"] == 1.0
        scores[skip] = (exact, folded, short)
    assert scores["true"] == pytest.approx(scores["false"])


def counted_kb(path: Path) -> Path:
    """The tiny KB, except that "Paris" links 9 times to the Texas city and once to the capital in some corpus
    (alias counts, no vectors); no other form has counts."""
    from glinker.kb.adapters import load_adapter
    from glinker.kb.build import build_kb

    from .conftest import ENTITIES, write_entities

    counts = {"Q830149": {"Paris": 9, "Paris, Texas": 4}, "Q90": {"PARIS": 1}}
    ents = [e.model_copy(update={"alias_counts": counts.get(e.id, {})}) for e in ENTITIES]
    build_kb(load_adapter("jsonl", str(write_entities(path.with_suffix(".jsonl"), ents))), path, None)
    return path


def test_prior_feature_ranks_homonyms_by_alias_counts(tiny_model, tiny_kb, tmp_path):
    counted_kb(tmp_path / "kb")
    y = """stages:
  m: {type: given_mentions}
  a: {type: alias_candidates, input: m, top_k: 10}
  r: {type: rescore, input: a, weights: W}
  links: {type: select, input: r, top_k: 10}
"""
    doc = given((0, 5), (10, 16), text="Paris and Berlin.")

    def link(weights: str, kb: Path) -> list:
        [out] = pipe(y.replace("W", weights), tiny_model, kb).link([doc])
        return out.links

    paris, berlin = link("{prior: 1.0}", tmp_path / "kb")
    assert paris.entity_id == "Q830149" and paris.confidence == pytest.approx(0.9)
    assert {c.entity_id: c.scores["prior"] for c in paris.candidates} == pytest.approx(
        {"Q830149": 0.9, "Q90": 0.1, "Q167646": 0.0})
    assert berlin.candidates[0].scores["prior"] == 0.0  # no counts for Berlin: neutral 0
    assert link("{popularity: 1.0}", tmp_path / "kb")[0].entity_id == "Q90"  # popularity alone disagrees
    assert link("{popularity: 1.0, prior: 1.0}", tmp_path / "kb")[0].entity_id == "Q830149"
    # a KB without any counts has no prior: the feature is left out of the mean, popularity decides alone
    paris, _ = link("{popularity: 1.0, prior: 1.0}", tiny_kb)
    assert paris.entity_id == "Q90" and paris.confidence == pytest.approx(1.0)
    assert all("prior" not in c.scores for c in paris.candidates)
    paris, _ = link("{prior: 1.0}", tiny_kb)  # nothing else to rank by: every candidate scores 0
    assert {c.scores["prior"] for c in paris.candidates} == {0.0}
    # ...unless the prior backs off to popularity, which a KB without counts can always give (`auto` does there)
    for mode in ("popularity", "auto"):
        paris, _ = link("{popularity: 1.0, prior: 1.0}, missing_prior: " + mode, tiny_kb)
        assert {c.entity_id: c.scores["prior"] for c in paris.candidates} == pytest.approx(
            {"Q90": 301 / 423, "Q167646": 81 / 423, "Q830149": 41 / 423}, abs=1e-6)  # kept rounded to 6 places
    # with counts, `auto` is `zero`: "Berlin" (no counts) scores prior 0, "Paris" by its counts
    paris, berlin = link("{prior: 1.0}, missing_prior: auto", tmp_path / "kb")
    assert paris.entity_id == "Q830149" and berlin.candidates[0].scores["prior"] == 0.0


def test_missing_prior_skip_leaves_the_prior_out_for_forms_without_counts(tiny_model, tmp_path):
    kb = counted_kb(tmp_path / "kb")
    y = """stages:
  m: {type: given_mentions}
  a: {type: alias_candidates, input: m, top_k: 10}
  r: {type: rescore, input: a, weights: W, MP}
  links: {type: select, input: r, nil_threshold: 0.5, top_k: 10}
"""
    doc = given((0, 5), (10, 16), text="Paris and Berlin.")

    def link(missing: str, weights: str = "{prior: 2.0, alias: 1.0}") -> list:
        mp = f"missing_prior: {missing}" if missing else ""
        [out] = pipe(y.replace("W", weights).replace(", MP", f", {mp}" if mp else ""), tiny_model, kb).link([doc])
        return out.links

    # default = zero: "Berlin" has no counts, prior 0 pulls its mean to 1/3, under the NIL threshold
    for missing in ("", "zero"):
        paris, berlin = link(missing)
        assert paris.entity_id == "Q830149" and paris.confidence == pytest.approx((2 * 0.9 + 1) / 3)
        assert berlin.entity_id == NIL and berlin.candidates[0].scores["prior"] == 0.0
        assert berlin.candidates[0].scores["r"] == pytest.approx(1 / 3)
    # skip: the unknown prior is left out of Berlin's mean (alias alone, 1.0); Paris, which has counts, is unchanged
    paris, berlin = link("skip")
    assert paris.entity_id == "Q830149" and paris.confidence == pytest.approx((2 * 0.9 + 1) / 3)
    assert {c.entity_id: c.scores["prior"] for c in paris.candidates} == pytest.approx(
        {"Q830149": 0.9, "Q90": 0.1, "Q167646": 0.0})  # a form with counts still gives 0 to uncounted homonyms
    assert berlin.entity_id == "Q64" and berlin.confidence == pytest.approx(1.0)
    assert all("prior" not in c.scores for c in berlin.candidates)
    # popularity: a form without counts gets (1 + popularity) shares over its alias homonyms as its prior
    paris, berlin = link("popularity")
    assert paris.entity_id == "Q830149" and paris.confidence == pytest.approx((2 * 0.9 + 1) / 3)  # has counts
    assert berlin.entity_id == "Q64" and berlin.candidates[0].scores["prior"] == pytest.approx(1.0)
    [out] = pipe(y.replace("W", "{prior: 1.0}").replace(", MP", ", missing_prior: popularity"), tiny_model,
                 kb).link([given((0, 5), text="Apple pie.")])
    assert {c.entity_id: c.scores["prior"] for c in out.links[0].candidates} == pytest.approx(
        {"Q312": 221 / 372, "Q89": 151 / 372}, abs=1e-6)
    # prior alone: nothing is left for a form without counts, it scores 0 either way
    _, berlin = link("skip", "{prior: 1.0}")
    assert berlin.entity_id == NIL and berlin.candidates[0].scores["r"] == 0.0
    with pytest.raises(PipelineError):
        link("maybe")


def test_select_nil_threshold_and_top_k(tiny_model, tiny_kb):
    y = """stages:
  m: {type: given_mentions}
  a: {type: alias_candidates, input: m, top_k: 10}
  r: {type: rescore, input: a, weights: {popularity: 1.0, alias: 1.0}}
  links: {type: select, input: r, nil_threshold: NT, top_k: 2}
"""
    text = "Paris and Zorblax."
    doc = given((0, 5), (10, 17), text=text)
    [out] = pipe(y.replace("NT", "0.5"), tiny_model, tiny_kb).link([doc])
    paris, zorb = out.links
    assert paris.entity_id == "Q90" and len(paris.candidates) == 2 and paris.confidence == pytest.approx(1.0)
    assert zorb.entity_id == NIL and zorb.candidates == []
    [out] = pipe(y.replace("NT", "1.01"), tiny_model, tiny_kb).link([doc])
    assert out.links[0].entity_id == NIL and out.links[0].candidates[0].entity_id == "Q90"


def test_alias_mentions_longest_match(tiny_model, tiny_kb):
    p = pipe("stages:\n  m: {type: alias_mentions}\n", tiny_model, tiny_kb)
    [ms] = p(["Paris, Texas is not Paris. The apple fell on Apple Inc. and the city of light."])
    got = [(m.text) for m in ms]
    # longest first ("Paris, Texas", "Apple Inc."), no lower-case common words ("apple", "city of light")
    assert got == ["Paris, Texas", "Paris", "Apple Inc."]
    assert all(isinstance(m, Mention) for m in ms)
    # tokenised text (AIDA, CoNLL) puts a space before the period: the mention is the name, never "Berlin "
    text = "He flew to Berlin . Then Apple Inc. sold it to Google ."
    [ms] = p([text])
    assert [(m.start, m.end, m.text) for m in ms] == [(11, 17, "Berlin"), (25, 35, "Apple Inc."), (47, 53, "Google")]


def test_alias_mentions_drop_a_leading_article(tiny_model, tiny_kb, tmp_path):
    """A KB alias that starts with "the" ("The French Republic") is matched as the name without it, the way
    AIDA, ELEVANT and Wikipedia anchors mark mentions, when that is an alias too; not otherwise."""
    from glinker.kb.adapters import load_adapter
    from glinker.kb.build import build_kb

    from .conftest import ENTITIES, write_entities

    ents = [e.model_copy(update={"aliases": e.aliases + ["The French Republic", "The Hague Court"]})
            if e.id == "Q142" else e for e in ENTITIES]
    kb = tmp_path / "kb"
    build_kb(load_adapter("jsonl", str(write_entities(tmp_path / "e.jsonl", ents))), kb, None)
    text = "Visitors from the French Republic and The Hague Court met."
    [ms] = pipe("stages:\n  m: {type: alias_mentions}\n", tiny_model, kb)([text])
    assert [m.text for m in ms] == ["French Republic", "The Hague Court"]  # "Hague Court" is no alias
    [ms] = pipe("stages:\n  m: {type: alias_mentions, leading_articles: []}\n", tiny_model, kb)([text])
    assert [m.text for m in ms] == ["the French Republic", "The Hague Court"]


def test_alias_mentions_skip_capitalised_common_nouns(tiny_model, tmp_path):
    """A capitalised word whose entities all have lower-case labels ("world") is part of a longer name ("2002 World
    Cup") or a headline, not the concept; a form that also names something ("Apple" -> Apple Inc.) still matches."""
    from glinker.kb.adapters import load_adapter
    from glinker.kb.build import build_kb

    from .conftest import ENTITIES, write_entities

    ents = [*ENTITIES, Entity(id="Q16502", label="world", aliases=["natural world"], description="planet Earth")]
    kb = tmp_path / "kb"
    build_kb(load_adapter("jsonl", str(write_entities(tmp_path / "e.jsonl", ents))), kb, None)
    text = "The 2002 World Cup in Berlin. World leaders ate an Apple."
    [ms] = pipe("stages:\n  m: {type: alias_mentions}\n", tiny_model, kb)([text])
    assert [m.text for m in ms] == ["Berlin", "Apple"]
    [ms] = pipe("stages:\n  m: {type: alias_mentions, skip_common_nouns: false}\n", tiny_model, kb)([text])
    assert [m.text for m in ms] == ["World", "Berlin", "World", "Apple"]


def test_alias_mentions_of_names_without_letter_case(tiny_model, tmp_path):
    """Names in scripts without capitals (CJK) are no common nouns, and `require_capital` does not drop them."""
    from glinker.kb.adapters import load_adapter
    from glinker.kb.build import build_kb

    from .conftest import write_entities

    ents = [Entity(id="T1", label="東京エレクトロン 露光装置", aliases=["TEL Stepper"]),
            Entity(id="T2", label="東京", description="capital of Japan")]
    kb = tmp_path / "kb"
    build_kb(load_adapter("jsonl", str(write_entities(tmp_path / "e.jsonl", ents))), kb, None)
    text = "東京エレクトロン 露光装置 and the TEL Stepper, made in 東京."
    [ms] = pipe("stages:\n  m: {type: alias_mentions, require_capital: true}\n", tiny_model, kb)([text])
    assert [m.text for m in ms] == ["東京エレクトロン 露光装置", "TEL Stepper", "東京"]


def test_alias_mentions_skip_name_fragments(tiny_model, tiny_kb):
    """With skip_name_fragments, a match directly followed by a Title-case word is part of a longer name the KB
    lacks ("Paris Saint-Germain"); all-caps headline words, weekdays and lower-case words do not count."""
    text = "Paris Saint-Germain beat Berlin today. PARIS WINS in Berlin Monday."
    y = "stages:\n  m: {type: alias_mentions, skip_name_fragments: SNF}\n"
    [ms] = pipe(y.replace("SNF", "true"), tiny_model, tiny_kb)([text])
    assert [m.text for m in ms] == ["Berlin", "PARIS", "Berlin"]
    [ms] = pipe(y.replace("SNF", "false"), tiny_model, tiny_kb)([text])
    assert [m.text for m in ms] == ["Paris", "Berlin", "PARIS", "Berlin"]


def test_biencoder_mentions_carry_span_vectors(tiny_model, tiny_kb):
    from glinker.model import BiEncoder
    from glinker.stages.records import mention_vector

    p = pipe("stages:\n  m: {type: biencoder_mentions, labels: [person, location], threshold: 0.0}\n",
             tiny_model, tiny_kb)
    [ms] = p(["Steve Jobs lives in Paris."])
    assert ms and all(m.label in ("person", "location") for m in ms)
    enc = BiEncoder.from_pretrained(tiny_model)
    [ref] = enc.span_vectors(["Steve Jobs lives in Paris."], [[(m.start, m.end) for m in ms]])
    np.testing.assert_allclose(np.stack([mention_vector(m) for m in ms]), ref, atol=1e-4)


def test_full_pipeline_links_and_writes(tiny_model, tiny_kb, tmp_path):
    out = tmp_path / "out.html"
    y = f"""stages:
  ner: {{type: biencoder_mentions, labels: [person, organization, location], threshold: 0.4}}
  am: {{type: alias_mentions}}
  mentions: {{type: merge_mentions, inputs: [am, ner], overlap: first_input}}
  a: {{type: alias_candidates, input: mentions}}
  f: {{type: fuzzy_candidates, input: mentions}}
  d: {{type: dense_candidates, input: mentions}}
  r: {{type: rescore, inputs: [a, f, d], weights: {{biencoder: 0.5, popularity: 0.2, alias: 1.0}}}}
  links: {{type: select, input: r, nil_threshold: 0.5}}
  html: {{type: write_links, input: links, path: {out}}}
  jsonl: {{type: write_links, input: links, path: {tmp_path / 'out.jsonl'}}}
output: links
"""
    p = pipe(y, tiny_model, tiny_kb)
    docs = p.link(TEXTS, batch_size=2)
    assert len(docs) == len(TEXTS) and all(isinstance(d, LinkedDocument) for d in docs)
    linked = {(d.text[ln.mention.start:ln.mention.end], ln.entity_id) for d in docs for ln in d.links}
    assert ("Steve Jobs", "Q19837") in linked and ("Paris, Texas", "Q830149") in linked
    assert ("Google", "Q95") in linked
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(x)["text"] for x in lines] == TEXTS  # two batches, appended
    page = out.read_text()
    assert 'data-entity="Q830149"' in page and page.count("<section") == len(TEXTS)


def test_wrong_kind_is_rejected_before_loading(tiny_model, tiny_kb):
    with pytest.raises(PipelineError) as ei:
        pipe("stages:\n  m: {type: given_mentions}\n  links: {type: select, input: m}\n", tiny_model, tiny_kb)
    assert "E243" in str(ei.value)
    with pytest.raises(PipelineError) as ei:
        pipe("stages:\n  m: {type: given_mentions}\n  a: {type: alias_candidates, input: m}\n"
             "  r: {type: rescore, input: a, weights: {popularity: 1, popularty: 2}}\n", tiny_model, tiny_kb)
    assert "popularty" in str(ei.value)


def test_kb_built_by_another_model_is_an_error(tiny_kb, tmp_path):
    from glinker.errors import GlinkerError
    from glinker.model.testing import build_tiny_checkpoint

    other = build_tiny_checkpoint(tmp_path / "other", text_encoder="bert", seed=1)
    p = pipe("stages:\n  m: {type: given_mentions}\n  d: {type: dense_candidates, input: m}\n", other, tiny_kb)
    with pytest.raises(GlinkerError) as ei:
        p([given((0, 5), text="Paris")])
    assert "fingerprint" in str(ei.value) and "stage 'd'" in str(ei.value)


def test_a_kb_without_vectors_is_named_at_the_stage_line_of_the_pipeline_file(tiny_model, tmp_path):
    """The stage's own place ("stage 'd'") kept the file and line out of the error (other stage errors had them)."""
    import glinker
    from glinker.errors import GlinkerError
    from glinker.kb.adapters import load_adapter
    from glinker.kb.build import build_kb

    build_kb(load_adapter("jsonl", str(write_entities(tmp_path / "e.jsonl"))), tmp_path / "kb", None)
    f = tmp_path / "p.yaml"
    f.write_text(f"name: t\nmodel: {tiny_model}\nkb: kb\nstages:\n  m: {{type: given_mentions}}\n"
                 "  d: {type: dense_candidates, input: m}\n")
    with pytest.raises(GlinkerError) as ei:
        glinker.load_pipeline(str(f)).link([given((0, 5), text="Paris")])
    assert ei.value.where == f"stage 'd' ({f}:6): {tmp_path / 'kb'}", ei.value.where
    assert "no entity vectors" in str(ei.value)


def test_one_encoder_pass_per_batch(tiny_model, tiny_kb, monkeypatch):
    """Mentions, their span vectors, alias-only mentions' vectors, dense retrieval and re-scoring share one
    forward pass over each window; the results equal the model's own predict and span_vectors."""
    from glinker.model import BiEncoder
    from glinker.model.biencoder import BiEncoder as BE
    from glinker.stages.resources import WindowCache, predict_encoded

    enc = BiEncoder.from_pretrained(tiny_model)
    long_text = " ".join(["john smith lives in paris and works for google"] * 30)
    texts = TEXTS + [long_text]
    bank = enc.encode_labels(["person", "location", "organization"])
    ref = enc.predict(texts, bank, threshold=0.2, batch_size=3)
    got = predict_encoded(enc, texts, bank, 0.2, True, False, 3, WindowCache())
    assert [[(e["start"], e["end"], e["label"]) for e in r] for r in ref] == \
        [[(e["start"], e["end"], e["label"]) for e in r] for r in got]
    assert [[round(e["score"], 5) for e in r] for r in ref] == [[round(e["score"], 5) for e in r] for r in got]

    calls = {"windows": 0}
    orig = BE._encode_windows

    def counting(self, splits, wins):
        calls["windows"] += len(wins)
        return orig(self, splits, wins)

    monkeypatch.setattr(BE, "_encode_windows", counting)
    y = """stages:
  ner: {type: biencoder_mentions, labels: [person, location, organization], threshold: 0.3}
  am: {type: alias_mentions}
  mentions: {type: merge_mentions, inputs: [ner, am], overlap: keep_all}
  d: {type: dense_candidates, input: mentions}
  r: {type: rescore, input: d, weights: {biencoder: 1.0}}
  links: {type: select, input: r}
"""
    p = pipe(y, tiny_model, tiny_kb)
    docs = p.link(texts, batch_size=8)
    n_windows = len(enc._windows([__import__("glinker.model.words", fromlist=["x"]).split_words(t) for t in texts],
                                 "chunk", None))
    assert calls["windows"] == n_windows  # every window encoded exactly once
    # and the vectors are right: the re-scored bi-encoder score equals the dense (span · entity) score
    for doc in docs:
        for ln in doc.links:
            for c in ln.candidates:
                assert c.scores["biencoder"] == pytest.approx(1 / (1 + np.exp(-c.scores["dense"])), abs=1e-4)


def test_settings_window_words_sets_the_window_every_model_stage_reads(tiny_model, tiny_kb, monkeypatch):
    from glinker.model import BiEncoder
    from glinker.model.biencoder import BiEncoder as BE
    from glinker.model.words import split_words

    long_text = " ".join(["john smith lives in paris and works for google"] * 6)
    seen: list[int] = []
    orig = BE._encode_windows

    def recording(self, splits, wins):
        seen.extend(w.end - w.start for w in wins)
        return orig(self, splits, wins)

    monkeypatch.setattr(BE, "_encode_windows", recording)
    y = """settings: {window_words: 12}
stages:
  ner: {type: biencoder_mentions, labels: [person, location], threshold: 0.3}
  d: {type: dense_candidates, input: ner}
  links: {type: select, input: d}
"""
    pipe(y, tiny_model, tiny_kb).link([long_text])
    short = BiEncoder.from_pretrained(tiny_model, window_words=12)
    assert seen and max(seen) <= 12
    assert len(seen) == len(short._windows([split_words(long_text)], "chunk", None)) > 1
    seen.clear()
    pipe(y.replace("12", "0"), tiny_model, tiny_kb).link([long_text])
    assert seen == [54]  # the whole text in one window


def test_window_cache_is_bounded_by_words_not_windows():
    from glinker.stages.resources import WindowCache

    c = WindowCache(max_words=100)
    for i in range(10):  # 10 short windows of 10 words fit, however many windows that is
        c.put(("t", i * 10, i * 10 + 10), np.zeros((10, 4)))
    assert len(c.items) == 10 and c.words == 100
    c.put(("t", 100, 140), np.zeros((40, 4)))  # the oldest four go
    assert c.get(("t", 0, 10)) is None and c.get(("t", 30, 40)) is None and c.get(("t", 40, 50)) is not None
    assert c.words == 100
    c.put(("u", 0, 500), np.zeros((500, 4)))  # one window over the budget is still kept, alone
    assert list(c.items) == [("u", 0, 500)] and c.words == 500


def test_ivf_kb_links_like_the_flat_kb(tiny_model, tiny_kb, tmp_path):
    """A KB on an approximate index (IVF on the MIPS->L2 transform, every list probed) gives the same links and,
    up to float rounding, the same scores as the exact Flat KB: dense search and the vectors read back for
    re-scoring both go through the transform."""
    from glinker.kb import KB
    from glinker.kb.adapters import load_adapter
    from glinker.kb.build import build_kb
    from glinker.model import BiEncoder

    from .conftest import write_entities

    src = write_entities(tmp_path / "entities.jsonl")
    build_kb(load_adapter("jsonl", str(src)), tmp_path / "kb", BiEncoder.from_pretrained(tiny_model),
             model_name=str(tiny_model), factory="IVF2,Flat", nprobe=2)
    m = KB.open(tmp_path / "kb").manifest
    assert m.metric == "mips_l2" and m.mips_norm and m.factory == "IVF2,Flat"
    y = """stages:
  am: {type: alias_mentions}
  a: {type: alias_candidates, input: am}
  d: {type: dense_candidates, input: am, top_k: 12}
  r: {type: rescore, inputs: [a, d], weights: {biencoder: 1.0, alias: 0.5}}
  links: {type: select, input: r, nil_threshold: 0.0, top_k: 12}
output: links
"""
    flat = pipe(y, tiny_model, tiny_kb).link(TEXTS)
    ivf = pipe(y, tiny_model, tmp_path / "kb").link(TEXTS)
    for a, b in zip(flat, ivf):
        assert [(ln.mention.start, ln.entity_id) for ln in a.links] == [(ln.mention.start, ln.entity_id) for ln in b.links]
        for la, lb in zip(a.links, b.links):
            sa = {c.entity_id: c.scores for c in la.candidates}
            sb = {c.entity_id: c.scores for c in lb.candidates}
            assert sa.keys() == sb.keys()
            for e in sa:
                assert sa[e].keys() == sb[e].keys()
                assert all(abs(sa[e][k] - sb[e][k]) < 1e-4 for k in sa[e])


def test_warm_up_can_freeze_the_gc(tiny_model, tiny_kb):
    import gc

    p = pipe("stages:\n  am: {type: alias_mentions}\noutput: am\n", tiny_model, tiny_kb)
    before = gc.get_threshold()
    try:
        p.warm_up(freeze_gc=True)
        assert gc.get_freeze_count() > 1000 and p.stages["am"]._warm
        assert gc.get_threshold()[0] == max(before[0], 10_000) and gc.get_threshold()[1:] == before[1:]
        assert [[m.text for m in r] for r in p.link(["Steve Jobs met Google."])] == [["Steve Jobs", "Google"]]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert gc.get_freeze_count() == 0


def test_gc_frozen_unfreezes_even_when_the_block_fails(tiny_model, tiny_kb):
    import gc

    p = pipe("stages:\n  am: {type: alias_mentions}\noutput: am\n", tiny_model, tiny_kb)
    before = gc.get_threshold()
    with pytest.raises(RuntimeError, match="boom"):
        with p.gc_frozen():
            assert gc.get_freeze_count() > 1000 and p.stages["am"]._warm
            assert gc.get_threshold()[0] == max(before[0], 10_000)
            raise RuntimeError("boom")
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before


def test_alias_candidates_of_a_short_form_include_the_full_name_in_the_document(tiny_model, tiny_kb):
    """"Jobs" has no alias of its own; "Steve Jobs" earlier in the document lends it his entity (as a variant,
    0.9); off by `in_document: false`."""
    from glinker.stages.records import longer_forms

    text = "Steve Jobs founded Apple Inc. in 1976. Jobs later left Apple."
    doc = given((0, 10), (19, 28), (39, 43), (55, 60), text=text)
    y = "stages:\n  m: {type: given_mentions}\n  a: {type: alias_candidates, input: m, top_k: 10IN}\n"
    [row] = pipe(y.replace("IN", ""), tiny_model, tiny_kb)([doc])
    got = {mc.mention.text: [(c.entity_id, c.score) for c in mc.candidates] for mc in row}
    assert got["Jobs"] == [("Q19837", 0.9)]
    assert got["Apple"] == [("Q89", 1.0), ("Q312", 0.95)]  # its own aliases keep their scores
    assert got["Steve Jobs"] == [("Q19837", 1.0)]
    [row] = pipe(y.replace("IN", ", in_document: false"), tiny_model, tiny_kb)([doc])
    assert {mc.mention.text: [c.entity_id for c in mc.candidates] for mc in row}["Jobs"] == []
    assert longer_forms(["margaret thatcher", "thatcher", "mrs thatcher", "real", "real madrid", ""]) == \
        {1: ["margaret thatcher", "mrs thatcher"], 3: ["real madrid"]}
    # forms found later in the document count too, in order of first occurrence; repeats cost nothing extra
    assert longer_forms(["thatcher", "mrs thatcher", "thatcher", "margaret thatcher", "mrs thatcher"]) == \
        {0: ["mrs thatcher", "margaret thatcher"], 2: ["mrs thatcher", "margaret thatcher"]}
    many = longer_forms(["steve jobs", "jobs", "paris"] * 50_000)  # was quadratic in the repeats (minutes)
    assert len(many) == 50_000 and many[1] == ["steve jobs"]


def test_a_short_form_borrows_the_prior_of_its_full_name_in_the_document(tiny_model, tmp_path):
    """"Texas" has no alias counts; "Paris, Texas" in the same document has (all for Q830149): with
    `in_document_prior` (default) the short form scores by them, without it the prior is 0 for every candidate."""
    kb = counted_kb(tmp_path / "kb")
    text = "Paris, Texas is hot. Texas sun."
    assert text[21:26] == "Texas"
    doc = given((0, 12), (21, 26), text=text)
    y = """stages:
  m: {type: given_mentions}
  a: {type: alias_candidates, input: m, top_k: 10}
  r: {type: rescore, input: a, weights: {prior: 1.0}IDP}
  links: {type: select, input: r, nil_threshold: 0.5, top_k: 10}
"""
    [out] = pipe(y.replace("IDP", ""), tiny_model, kb).link([doc])
    full, short = out.links
    assert full.entity_id == short.entity_id == "Q830149" and short.confidence == pytest.approx(1.0)
    [out] = pipe(y.replace("IDP", ", in_document_prior: false"), tiny_model, kb).link([doc])
    assert out.links[1].entity_id == NIL and {c.scores["prior"] for c in out.links[1].candidates} == {0.0}


def test_branches_reading_one_candidate_set_do_not_change_each_other(tiny_model, tiny_kb):
    """Two rescore stages on the same candidates: each works on its own copy (one re-scored and cut the other's
    candidates in place before)."""
    y = """stages:
  m: {type: given_mentions}
  c: {type: alias_candidates, input: m, top_k: 10}
  a: {type: rescore, input: c, weights: {popularity: 1.0}}
  b: {type: rescore, input: c, weights: {alias: 1.0}, top_k: 1}
  la: {type: select, input: a, top_k: 10}
  lb: {type: select, input: b, top_k: 10}
  both: {type: merge_candidates, inputs: [a, b]}
output: la
"""
    p = pipe(y, tiny_model, tiny_kb)
    [res] = list(p.run([given((0, 5), text="Paris is nice.")]))
    only_a = pipe(y.split("  b:")[0] + "  la: {type: select, input: a, top_k: 10}\n", tiny_model, tiny_kb)
    [alone] = only_a.link([given((0, 5), text="Paris is nice.")])
    a, b = res.outputs["la"][0].links[0], res.outputs["lb"][0].links[0]
    assert [(c.entity_id, c.score) for c in a.candidates] == [(c.entity_id, c.score) for c in alone.links[0].candidates]
    assert len(a.candidates) == 3 and len(b.candidates) == 1
    assert [len(mc.candidates) for mc in res.outputs["c"][0]] == [3]  # the shared input is as the stage made it
    assert all("a" not in c.scores and "b" not in c.scores for mc in res.outputs["c"][0] for c in mc.candidates)


def test_a_stage_without_its_kb_is_refused_when_the_pipeline_is_built(tiny_model):
    with pytest.raises(PipelineError) as e:
        Pipeline(loads_spec("name: t\nstages:\n  m: {type: given_mentions}\n  c: {type: alias_candidates, input: m}\n",
                            source="t.yaml"))
    assert "[E250] t.yaml:4: stage 'c' (alias_candidates) needs a kb" in str(e.value)


def test_write_links_needs_a_format_it_can_tell(tiny_model, tiny_kb, tmp_path):
    with pytest.raises(PipelineError, match="cannot tell the format of"):
        pipe(f"stages:\n  m: {{type: given_mentions}}\n  c: {{type: alias_candidates, input: m}}\n"
             f"  l: {{type: select, input: c}}\n  w: {{type: write_links, input: l, path: {tmp_path}/out.txt}}\n",
             tiny_model, tiny_kb)


def test_select_keeps_the_candidate_stages_order_for_equal_scores(tiny_model, tiny_kb):
    """Alias candidates all score 1 for a shared name: the most popular (their order) wins, not the smallest id."""
    p = pipe("stages:\n  m: {type: given_mentions}\n  c: {type: alias_candidates, input: m}\n"
             "  links: {type: select, input: c}\n", tiny_model, tiny_kb)
    [doc] = p.link([given((0, 5), text="Paris is nice.")])
    assert doc.links[0].entity_id == "Q90"  # popularity 300; "Q167646" (80) sorts first as a string


def test_a_stage_kb_block_error_keeps_the_block_s_place(tmp_path):
    """An error reading a stage's own kb block is placed at that block ("stage 'm' kb (p.yaml:6)"), once: the
    stage's own line was put in front of it too."""
    import glinker
    from glinker.errors import GlinkerError

    (tmp_path / "e.jsonl").write_text('{"id": "a", "label": "Acme"}\nnot json\n')
    f = tmp_path / "p.yaml"
    f.write_text("name: t\nmodel: none\nstages:\n  m:\n    type: alias_mentions\n    kb:\n      adapter: jsonl\n"
                 "      source: e.jsonl\n      cache: c\n")
    with pytest.raises(GlinkerError) as ei:
        glinker.load_pipeline(str(f)).link(["Acme"])
    assert ei.value.where.startswith(f"stage 'm' kb ({f}:6") and ei.value.where.count(str(f)) == 1, ei.value.where
