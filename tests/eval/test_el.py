"""EL metrics: the ELEVANT InKB cases one by one, nesting, evaluation spans, recall@k, NIL, KB coverage."""

from __future__ import annotations

import pytest

from glinker.eval.datasets import NIL, ELDocument, GoldMention, iter_el
from glinker.eval.el import (
    ELReport,
    PredictedLink,
    evaluate_el,
    format_last_line,
    load_kb_ids,
    predictions_from_linked,
)
from glinker.types import Candidate, Link, LinkedDocument, Mention

TEXT = "Obama met Merkel in Berlin and someone in 2009 ."


def doc(*mentions, span=None, id="d"):
    return ELDocument(id=id, text=TEXT, mentions=list(mentions), evaluation_span=span or (0, len(TEXT)))


def gm(start, end, eid=NIL, **kw):
    return GoldMention(start, end, TEXT[start:end], eid, **kw)


def pl(start, end, eid=NIL, cands=(), id="d"):
    return PredictedLink(id, start, end, eid, list(cands))


OBAMA, MERKEL, BERLIN, SOMEONE, YEAR = (0, 5), (10, 16), (20, 26), (31, 38), (42, 46)


@pytest.mark.parametrize("gold_id,pred,expect", [
    ("Q76", "Q76", (1, 0, 0)),     # ent / ent correct: TP
    ("Q76", "Q1", (0, 1, 1)),      # ent / ent wrong: FN + FP
    ("Q76", NIL, (0, 0, 1)),       # ent / NIL: FN
    ("Q76", None, (0, 0, 1)),      # ent / nothing: FN
    (NIL, "Q1", (0, 1, 0)),        # unknown / ent: FP
    (NIL, NIL, (0, 0, 0)),         # unknown / NIL: ignored
    (NIL, None, (0, 0, 0)),        # unknown / nothing: ignored
])
def test_elevant_inkb_cases(gold_id, pred, expect):
    preds = [] if pred is None else [pl(*OBAMA, pred)]
    r = evaluate_el([doc(gm(*OBAMA, gold_id))], preds)
    assert (r.linking.tp, r.linking.fp, r.linking.fn) == expect


def test_optional_gold_is_neither_required_nor_rewarded():
    g = gm(*YEAR, NIL, optional=True, meta={"type": "DATETIME"})
    assert evaluate_el([doc(g)], []).linking == evaluate_el([doc(g)], [pl(*YEAR, NIL)]).linking
    r = evaluate_el([doc(g)], [])
    assert (r.linking.tp, r.linking.fp, r.linking.fn, r.optional_gold, r.inkb_gold) == (0, 0, 0, 1, 0)
    assert evaluate_el([doc(gm(*YEAR, "Q2009", optional=True))], [pl(*YEAR, "Q2009")]).linking.fp == 0
    assert evaluate_el([doc(gm(*YEAR, "Q2009", optional=True))], [pl(*YEAR, "Q1")]).linking.fp == 1
    assert evaluate_el([doc(g)], [pl(*YEAR, "Q1")]).linking.fp == 1


def test_predictions_without_gold_count_only_inside_evaluation_span():
    d = doc(gm(*OBAMA, "Q76"), span=(0, 20))
    r = evaluate_el([d], [pl(*OBAMA, "Q76"), pl(*MERKEL, "Q567"), pl(*BERLIN, "Q64"), pl(*SOMEONE, NIL)])
    assert (r.linking.tp, r.linking.fp, r.linking.fn) == (1, 1, 0)
    assert r.predictions_outside_span == 1


def test_nested_gold_root_is_tp_when_children_are_linked():
    # "Obama met Merkel" as a root with unknown id whose children are known: ELEVANT's nesting rule
    root = gm(0, 16, "Q9", label_id=1, children=[2, 3])
    c1 = gm(*OBAMA, "Q76", label_id=2, parent=1)
    c2 = gm(*MERKEL, "Q567", label_id=3, parent=1)
    d = doc(root, c1, c2)
    r = evaluate_el([d], [pl(*OBAMA, "Q76"), pl(*MERKEL, "Q567")])
    assert (r.linking.tp, r.linking.fp, r.linking.fn, r.inkb_gold) == (1, 0, 0, 1)
    r = evaluate_el([d], [pl(*OBAMA, "Q76"), pl(*MERKEL, "Q1")])
    assert (r.linking.tp, r.linking.fp, r.linking.fn) == (0, 1, 1)
    r = evaluate_el([d], [pl(0, 16, "Q9")])
    assert (r.linking.tp, r.linking.fp, r.linking.fn) == (1, 0, 0)


def test_disambiguation_recall_at_k_and_nil_accuracy():
    d = doc(gm(*OBAMA, "Q76"), gm(*MERKEL, "Q567"), gm(*BERLIN, "Q64"), gm(*SOMEONE, NIL))
    preds = [pl(*OBAMA, "Q76", ["Q76", "Q1"]), pl(*MERKEL, "Q1", ["Q1", "Q2", "Q567"]),
             pl(*SOMEONE, "Q5", ["Q5"])]
    r = evaluate_el([d], preds, ks=(1, 3))
    assert r.inkb_gold == 3 and r.ed_correct == 1 and r.ed_with_prediction == 2
    assert r.ed_acc == pytest.approx(1 / 3)
    assert r.recall_at(1) == pytest.approx(1 / 3) and r.recall_at(3) == pytest.approx(2 / 3)
    assert r.nil_gold == 1 and r.nil_acc == 0.0
    r2 = evaluate_el([d], preds[:2] + [pl(*SOMEONE, NIL)])
    assert r2.nil_acc == 1.0
    assert evaluate_el([d], [pl(*OBAMA, "Q76")]).recall_at(1) is None  # no candidate lists given


def test_kb_coverage_set_or_callable_and_last_line():
    d = doc(gm(*OBAMA, "Q76"), gm(*MERKEL, "Q567"), gm(*BERLIN, "Q76"))
    r = evaluate_el([d], [pl(*OBAMA, "Q76")], kb={"Q76"})
    assert r.kb_coverage == pytest.approx(2 / 3) and r.kb_coverage_distinct == pytest.approx(1 / 2)
    r2 = evaluate_el([d], [pl(*OBAMA, "Q76")], kb=lambda e: e == "Q567")
    assert r2.kb_coverage == pytest.approx(1 / 3)
    assert format_last_line(r) == f"el_f1={r.linking.f1:.4f} ed_acc=0.3333 kb_coverage=0.6667"
    assert evaluate_el([d], []).last_line() == "el_f1=0.0000 ed_acc=0.0000 kb_coverage=n/a"


def test_in_kb_covered_prf_ignores_gold_entities_the_kb_lacks():
    # Obama in the KB and linked right; Merkel not in the KB (its wrong link is out of the covered figure);
    # Berlin in the KB, linked wrong; "someone" is NIL gold and linked (a false positive in both figures);
    # the year is no gold span and linked (false positive in both)
    d = doc(gm(*OBAMA, "Q76"), gm(*MERKEL, "Q567"), gm(*BERLIN, "Q64"), gm(*SOMEONE, NIL))
    preds = [pl(*OBAMA, "Q76"), pl(*MERKEL, "Q1"), pl(*BERLIN, "Q2"), pl(*SOMEONE, "Q5"), pl(*YEAR, "Q9")]
    r = evaluate_el([d], preds, kb={"Q76", "Q64", "Q1", "Q2", "Q5", "Q9"})
    assert (r.linking.tp, r.linking.fp, r.linking.fn) == (1, 4, 2)
    assert (r.covered.tp, r.covered.fp, r.covered.fn) == (1, 3, 1)
    assert r.as_dict()["covered_f1"] == pytest.approx(r.covered.f1)
    assert "in-KB-covered" in r.summary()
    assert evaluate_el([d], preds).covered is None  # no KB given: no covered figure


def test_missed_gold_mentions_are_counted_by_cause():
    """Each missed InKB gold mention has one cause: not in the KB, no mention (lowercase apart), other bounds, gold
    not a candidate, gold a candidate not chosen; the counts add up to the false negatives."""
    text = "Obama met Merkel in Berlin and the president in 2009 ."
    g = [GoldMention(0, 5, "Obama", "Q76"), GoldMention(10, 16, "Merkel", "Q567"), GoldMention(20, 26, "Berlin", "Q64"),
         GoldMention(31, 44, "the president", "Q11696"), GoldMention(48, 52, "2009", "Q2009"),
         GoldMention(35, 44, "president", "Q30461")]
    d = ELDocument(id="d", text=text, mentions=g, evaluation_span=(0, len(text)))
    preds = [PredictedLink("d", 0, 5, "Q1", ["Q1", "Q76"]),  # gold a candidate, another chosen
             PredictedLink("d", 10, 16, NIL, ["Q9"]),  # NIL, gold not a candidate
             PredictedLink("d", 20, 30, "Q64"),  # other bounds ("Berlin and")
             PredictedLink("d", 48, 52, "Q2009")]  # right
    r = evaluate_el([d], preds)
    assert r.linking.fn == 5 and sum(r.missed.values()) == 5
    assert r.missed == {"not_in_kb": 0, "no_mention": 0, "no_mention_lowercase": 2, "other_bounds": 1,
                        "not_a_candidate": 1, "not_chosen": 1}
    assert "no mention, lowercase gold (concept or pronoun) 2" in r.summary()
    assert "not_in_kb" not in r.as_dict()["missed"]  # without a KB there is no such cause
    k = evaluate_el([d], preds, kb={"Q76", "Q567", "Q2009"})
    assert k.missed["not_in_kb"] == 3 and k.missed["not_chosen"] == 1 and k.missed["not_a_candidate"] == 1
    assert sum(k.missed.values()) == k.linking.fn and "entity not in the KB 3" in k.summary()
    # a wrong link without a candidate list: its entity was its one candidate
    assert evaluate_el([d], [PredictedLink("d", 0, 5, "Q1")]).missed["not_a_candidate"] == 1


def test_a_nested_root_is_missed_where_its_child_was_and_excluded_spans_are_no_mentions():
    """A nested gold root without a prediction of its own, missed through a child, has the child's cause (its
    children's predictions are not "other bounds" of it); a prediction at a span left out of scoring (a coref span
    under exclude_coref) is no mention; without candidate lists the two wrong-at-span causes are said as one."""
    text = "Bill and Hillary Clinton came ."
    root = GoldMention(0, 24, "Bill and Hillary Clinton", "Q1", label_id=0, children=[1, 2])
    kids = [GoldMention(0, 4, "Bill", "Q2", label_id=1, parent=0),
            GoldMention(9, 24, "Hillary Clinton", "Q3", label_id=2, parent=0)]
    d = ELDocument(id="d", text=text, mentions=[root, *kids], evaluation_span=(0, len(text)))
    r = evaluate_el([d], [PredictedLink("d", 0, 4, "Q2"), PredictedLink("d", 9, 24, "Q9", ["Q9", "Q3"])])
    assert r.linking.fn == 1 and r.missed["not_chosen"] == 1 and r.missed["other_bounds"] == 0
    assert evaluate_el([d], [PredictedLink("d", 0, 4, "Q2")]).missed["no_mention"] == 1
    c = ELDocument(id="c", text=text, evaluation_span=(0, len(text)),
                   mentions=[GoldMention(9, 24, "Hillary Clinton", "Q3"), GoldMention(17, 24, "Clinton", "Q3", coref=True)])
    r = evaluate_el([c], [PredictedLink("c", 17, 24, "Q3")], exclude_coref=True)
    assert r.missed["no_mention"] == 1 and r.missed["other_bounds"] == 0
    r = evaluate_el([c], [PredictedLink("c", 9, 24, "Q5")])  # no candidate lists at all
    assert "another entity or NIL at the span (no candidate lists) 1" in r.summary()
    assert "gold entity not among the candidates" not in r.summary()


def test_coref_exclusion_and_unknown_documents():
    d = doc(gm(*OBAMA, "Q76"), gm(*SOMEONE, "Q76", coref=True))
    preds = [pl(*OBAMA, "Q76"), pl(*SOMEONE, "Q1"), pl(*OBAMA, "Q76", id="other"), pl(*OBAMA, "Q2")]
    r = evaluate_el([d], preds)
    assert (r.linking.tp, r.linking.fp, r.linking.fn) == (1, 1, 1)
    assert r.predictions_unknown_doc == 1 and r.duplicate_predictions == 1
    r = evaluate_el([d], preds, exclude_coref=True)
    assert (r.linking.tp, r.linking.fp, r.linking.fn) == (1, 0, 0)


def test_predictions_from_linked_documents():
    ld = LinkedDocument(id="d", text=TEXT, links=[
        Link(mention=Mention(start=0, end=5, text="Obama"), entity_id="Q76", confidence=0.9,
             candidates=[Candidate(entity_id="Q76"), Candidate(entity_id="Q1")]),
        Link(mention=Mention(start=10, end=16, text="Merkel"))])
    preds = predictions_from_linked([ld, ld.model_dump()])
    assert [(p.start, p.entity_id, p.candidates) for p in preds[:2]] == [(0, "Q76", ["Q76", "Q1"]), (10, NIL, [])]
    r = evaluate_el([doc(gm(*OBAMA, "Q76"), gm(*MERKEL, "Q567"))], preds)
    assert (r.linking.tp, r.linking.fn, r.duplicate_predictions) == (1, 1, 2)


def test_load_kb_ids_formats(tmp_path):
    (tmp_path / "a.txt").write_text("# ids\nQ1\nQ2\tfoo\n\n")
    (tmp_path / "b.jsonl").write_text('{"qid": "Q3"}\n{"id": "Q4"}\n')
    (tmp_path / "c.json").write_text('{"/m/x": {"wikidata_id": "Q5"}, "/m/y": {"wikidata_id": "Q6"}}')
    assert load_kb_ids(str(tmp_path / "a.txt")) == {"Q1", "Q2"}
    assert load_kb_ids(str(tmp_path / "b.jsonl")) == {"Q3", "Q4"}
    assert load_kb_ids(str(tmp_path / "c.json")) == {"Q5", "Q6"}


def oracle(docs, with_candidates=False):
    out = []
    for d in docs:
        for m in d.mentions:
            out.append(PredictedLink(d.id, m.start, m.end, m.entity_id,
                                     [m.entity_id, "Q0"] if with_candidates and not m.is_nil else []))
    return out


@pytest.mark.shared_data
def test_real_aida_oracle_and_coverage(data):
    testb = data / "el" / "aida" / "aida_testb.jsonl"
    fb = data / "kb" / "fb15k237_wikidata" / "entity2wikidata.json"
    places = data / "kb" / "places" / "places.jsonl"
    if not (testb.is_file() and fb.is_file() and places.is_file()):
        pytest.skip("AIDA or KB files missing")
    gold = list(iter_el(testb))
    r = evaluate_el(gold, oracle(gold, True), ks=(1, 2))
    assert r.inkb_gold == 4479 and r.unmapped_gold == 6
    assert (r.linking.tp, r.linking.fp, r.linking.fn) == (4479, 0, 0)
    assert r.ed_acc == 1.0 and r.nil_acc == 1.0 and r.recall_at(1) == 1.0
    # the README's coverage figure (63% on testb) is the mention-level share with these KB files
    kb = load_kb_ids(str(fb)) | load_kb_ids(str(places))
    title2qid = data / "kb" / "title2qid_partial.tsv"
    vital = data / "kb" / "vital_articles" / "summaries_en-us.json"
    if title2qid.is_file() and vital.is_file():
        import json

        t2q = dict(line.rstrip("\n").split("\t")[:2] for line in title2qid.open(encoding="utf-8") if "\t" in line)
        kb |= {t2q[t] for t in json.loads(vital.read_text(encoding="utf-8")) if t in t2q}
        cov = evaluate_el(gold, [], kb=kb).kb_coverage
        assert cov == pytest.approx(0.63, abs=0.005)


@pytest.mark.shared_data
def test_real_elevant_oracle_is_perfect(data):
    files = sorted((data / "el" / "elevant").glob("*.benchmark.jsonl"))
    if not files:
        pytest.skip("no ELEVANT files")
    for f in files:
        gold = list(iter_el(f))
        r = evaluate_el(gold, oracle(gold))
        assert r.linking.f1 == 1.0 and r.linking.fp == 0, f.name
        assert r.inkb_gold > 0 and isinstance(r, ELReport)


def test_gold_without_any_entity_is_warned_about(caplog):
    """Every gold mention NIL (a gold file whose QIDs sit under a key the readers do not read) scores 0 everywhere:
    said, with the keys each format reads."""
    import logging

    with caplog.at_level(logging.WARNING, logger="glinker.eval.el"):
        evaluate_el([doc(gm(*OBAMA), gm(*BERLIN))], [pl(*OBAMA, "Q76")])
    assert "no gold mention of the 1 documents names an entity (all 2 are NIL)" in caplog.text
    assert "wikidata_qid" in caplog.text and "entity_id" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glinker.eval.el"):
        evaluate_el([doc(gm(*OBAMA, "Q76"))], [pl(*OBAMA, "Q76")])
    assert "names an entity" not in caplog.text
