"""Empty gold spans (start == end) are left out of EL scoring with one warning naming the file and line."""

from __future__ import annotations

import json
import logging

from glinker.eval.datasets import iter_el
from glinker.eval.el import evaluate_el, predictions_from_linked
from glinker.types import Link, LinkedDocument, Mention

TEXT = "Paris is in France."


def _aida(tmp_path):
    p = tmp_path / "gold.jsonl"
    recs = [{"id": "a", "text": TEXT, "mentions": [
                {"start": 0, "end": 5, "mention": "Paris", "wikidata_qid": "Q90"},
                {"start": 9, "end": 9, "mention": "", "wikidata_qid": "Q142"},
                {"start": 12, "end": 18, "mention": "France", "wikidata_qid": "Q142"}]},
            {"id": "b", "text": TEXT, "mentions": [{"start": 3, "end": 3, "wikidata_qid": "Q1"}]}]
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return p


def _elevant(tmp_path):
    p = tmp_path / "gold.benchmark.jsonl"
    rec = {"id": 0, "text": TEXT, "labels": [{"id": 1, "span": [0, 5], "entity_id": "Q90"},
                                             {"id": 2, "span": [9, 9], "entity_id": "Q142"},
                                             {"id": 3, "span": [12, 18], "entity_id": "Q142"}]}
    p.write_text(json.dumps(rec) + "\n")
    return p


def test_aida_empty_spans_left_out_with_one_warning(tmp_path, caplog):
    p = _aida(tmp_path)
    with caplog.at_level(logging.WARNING, logger="glinker.eval.datasets"):
        docs = list(iter_el(p))
    assert [[m.text for m in d.mentions] for d in docs] == [["Paris", "France"], []]
    warned = [r.getMessage() for r in caplog.records if "empty span" in r.getMessage()]
    assert len(warned) == 1 and f"{p}:1" in warned[0] and "mention 1" in warned[0]
    # a pipeline that links both names gets full recall (the empty span was a miss before)
    linked = [LinkedDocument(id="a", text=TEXT, links=[
        Link(mention=Mention(start=0, end=5, text="Paris"), entity_id="Q90"),
        Link(mention=Mention(start=12, end=18, text="France"), entity_id="Q142")]),
        LinkedDocument(id="b", text=TEXT)]
    rep = evaluate_el(docs, predictions_from_linked(linked))
    assert rep.inkb_gold == 2 and rep.last_line().startswith("el_f1=1.0000")


def test_elevant_empty_spans_left_out(tmp_path, caplog):
    p = _elevant(tmp_path)
    with caplog.at_level(logging.WARNING, logger="glinker.eval.datasets"):
        (doc,) = list(iter_el(p))
    assert [m.text for m in doc.mentions] == ["Paris", "France"]
    assert any(f"{p}:1" in r.getMessage() and "label 1" in r.getMessage() for r in caplog.records)
