"""Session 37's `glinker eval el` walkthrough: gold ids that are no QIDs (--NME--, Unknown, titles) counted as
linkable entities, NIL predictions as links, a CSV `--kb-ids` read as whole lines, a repeated gold id blamed on the
predictions."""

from __future__ import annotations

import json
import logging

from typer.testing import CliRunner

from glinker.cli import app
from glinker.eval.datasets import gold_qid, iter_aida
from glinker.eval.el import evaluate_el, load_kb_ids, predictions_from_linked

runner = CliRunner()
TEXT = "Paris and Smith met in Lyon."


def _gold(tmp_path, ids, name="gold.jsonl"):
    spans = [(0, 5), (10, 15), (23, 27)]
    p = tmp_path / name
    p.write_text(json.dumps({"id": "d1", "text": TEXT, "mentions": [
        {"start": s, "end": e, "mention": TEXT[s:e], "wikidata_qid": q} for (s, e), q in zip(spans, ids)]}) + "\n")
    return p


def test_gold_id_forms():
    assert gold_qid(" Q90 ") == ("Q90", False) and gold_qid("wd:Q90") == ("Q90", False)
    assert gold_qid("http://www.wikidata.org/entity/Q90") == ("Q90", False)
    assert gold_qid("https://www.wikidata.org/wiki/Q90") == ("Q90", False)
    for nil in ("--NME--", "NIL", "nil", "Unknown", "<NIL>", "", None):
        assert gold_qid(nil) == (None, True), nil
    assert gold_qid("Paris") == (None, False) and gold_qid(64) == (None, False)


def test_no_qid_gold_ids_are_nil_and_said_among_qids_and_scored_as_they_are_in_another_kbs_set(tmp_path, caplog):
    """`"wikidata_qid": "Unknown"` was an InKB gold entity no prediction could match (R 3/6 instead of 3/5)."""
    with caplog.at_level(logging.WARNING, logger="glinker.eval.datasets"):
        docs = list(iter_aida(_gold(tmp_path, ["Q90", "--NME--", "wd:Q456"])))
    assert [m.entity_id for m in docs[0].mentions] == ["Q90", "NIL", "Q456"] and not caplog.text
    with caplog.at_level(logging.WARNING, logger="glinker.eval.datasets"):
        docs = list(iter_aida(_gold(tmp_path, ["Q90", "Smith", "Q456"])))
    m = docs[0].mentions[1]
    assert m.entity_id == "NIL" and m.meta.get("unmapped") and m.raw_id == "Smith"
    assert "1 gold wikidata_qid values are not Wikidata QIDs ('Smith' at" in caplog.text
    # a set of another KB's ids: scored as they are
    docs = list(iter_aida(_gold(tmp_path, ["SKU-1", "SKU-2", "NIL"], "company.jsonl")))
    assert [m.entity_id for m in docs[0].mentions] == ["SKU-1", "SKU-2", "NIL"]
    # predictions: a NIL marker is no link
    preds = predictions_from_linked([{"id": "d1", "links": [
        {"mention": {"start": 0, "end": 5}, "entity_id": "Q90"},
        {"mention": {"start": 10, "end": 15}, "entity_id": "--NME--"},
        {"mention": {"start": 23, "end": 27}, "entity_id": "http://www.wikidata.org/entity/Q456"}]}])
    assert [p.entity_id for p in preds] == ["Q90", "NIL", "Q456"]
    rep = evaluate_el(iter_aida(_gold(tmp_path, ["Q90", "Unknown", "Q456"])), preds)
    assert (rep.linking.tp, rep.linking.fp, rep.linking.fn) == (2, 0, 0) and rep.nil_gold == 1


def test_kb_ids_from_a_csv_source_and_a_repeated_gold_id_named_before_the_predictions(tmp_path):
    for name, text in (("kb.csv", "id,label\nQ90,Paris\nQ142,France\n"), ("kb2.csv", "label;qid\nParis;Q90\n"),
                       ("kb.tsv", "Q90\tParis\nQ142\tFrance\n"), ("kb.txt", "Q90\nQ142\n")):
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert "Q90" in load_kb_ids(str(tmp_path / name)) and "Q90,Paris" not in load_kb_ids(str(tmp_path / name))
    gold = tmp_path / "dup.jsonl"
    gold.write_text(json.dumps({"id": "d1", "text": "A", "mentions": []}) + "\n"
                    + json.dumps({"id": "d1", "text": "B", "mentions": []}) + "\n")
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "d1", "text": "A", "links": []}) + "\n")
    r = runner.invoke(app, ["eval", "el", "--data", str(gold), "--predictions", str(preds)])
    said = r.output + str(r.exception)
    assert r.exit_code != 0 and "occurs twice in the gold data" in said and f"{gold}:2" in said, said
    # linking data given to eval ner: pointed to eval el (the fix spoke of training only)
    r = runner.invoke(app, ["eval", "ner", "--data", str(gold), "--model", "none-needed"])
    said = r.output + str(r.exception)
    assert "glinker eval el --data" in said, said
