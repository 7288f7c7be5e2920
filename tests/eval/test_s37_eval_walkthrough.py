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


def test_review_another_kbs_ids_candidates_and_kb_ids_are_compared_as_gold_is(tmp_path):
    """Second review: ids such as UNKNOWN-LABS-7 or "none" of another KB were taken for NIL markers (F1 1.0 -> 0);
    candidates and --kb-ids kept Wikidata URLs while gold and links read them as QIDs (recall@k and coverage 0)."""
    from glinker.eval.datasets import gold_qid

    for kept in ("UNKNOWN-LABS-7", "UnknownWorlds", "none", "null", "-"):
        assert gold_qid(kept) == (None, False), kept
    docs = list(iter_aida(_gold(tmp_path, ["UNKNOWN-LABS-7", "none", "SKU-3"], "co.jsonl")))
    assert [m.entity_id for m in docs[0].mentions] == ["UNKNOWN-LABS-7", "none", "SKU-3"]
    url = "http://www.wikidata.org/entity/Q90"
    preds = predictions_from_linked([{"id": "d1", "links": [
        {"mention": {"start": 0, "end": 5}, "entity_id": url, "candidates": [{"entity_id": url}, 77]}]}])
    assert preds[0].entity_id == "Q90" and preds[0].candidates == ["Q90", "77"]
    (tmp_path / "ids.txt").write_text(url + "\nwd:Q456\n")
    assert load_kb_ids(str(tmp_path / "ids.txt")) == {"Q90", "Q456"}
    # a title that starts like a marker is still an unmapped title
    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps({"id": "d", "text": TEXT, "mentions": [
        {"start": 0, "end": 5, "mention": "Paris", "wikidata_qid": None, "wikipedia_title": "Unknown Pleasures"},
        {"start": 23, "end": 27, "mention": "Lyon", "wikidata_qid": "Q456"}]}) + "\n")
    assert next(iter_aida(p)).mentions[0].meta.get("unmapped")


def test_review_kb_ids_csv_forms(tmp_path):
    cases = {"a.csv": ("sep=;\nid;label\nQ90;Paris\nQ64;Berlin\n", {"Q90", "Q64"}),  # Excel's first line
             "b.tsv": ('"id"\t"label"\n"Q90"\t"Paris"\n', {"Q90"}),  # quoted as the csv adapter reads it
             "n.csv": ("Q90,Paris\nQ64,Berlin\n", {"Q90", "Q64"}),  # no header: the first column
             "s.txt": ("sep=,\nQ90\nQ64\n", {"Q90", "Q64"}),  # Excel's line before a list of ids
             "z.jsonl": ('{"id": 0}\n{"id": 7}\n', {"0", "7"}),  # an id 0 is an id
             "o.csv": ("id\nQ90\n", {"Q90"}),  # a one-column file with its header
             "c.csv": ('{"id": "Q90"}\n{"id": "Q64"}\n', {"Q90", "Q64"}),  # JSONL under another name
             "d.csv": ('"label, en",id\n"Paris, FR",Q90\n', {"Q90"}),  # a quoted header cell
             "f.csv": ("id,label\nQ90," + "x" * 200_000 + "\n", {"Q90"})}  # a cell over csv's default limit
    for name, (text, want) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert load_kb_ids(str(tmp_path / name)) == want, name


def test_review_a_set_of_other_ids_is_told_from_its_first_documents_only(tmp_path, monkeypatch):
    """Telling a set of QIDs from another KB's read the whole file at the first id that is none (--limit 10 on a
    big file read all of it, and a bad line anywhere failed it)."""
    import glinker.eval.datasets as D

    lines = [json.dumps({"id": f"d{i}", "text": "SKU here", "mentions": [
        {"start": 0, "end": 3, "mention": "SKU", "wikidata_qid": f"SKU-{i}"}]}) for i in range(30)]
    p = tmp_path / "big.jsonl"
    p.write_text("\n".join(lines[:20]) + "\nnot json\n" + "\n".join(lines[20:]) + "\n")
    monkeypatch.setattr(D, "_QID_LOOKAHEAD", 5)
    got = [d.mentions[0].entity_id for d in D.iter_el(p, limit=3)]
    assert got == ["SKU-0", "SKU-1", "SKU-2"]
