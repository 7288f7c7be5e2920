"""Evaluation inputs a user gets wrong or mixes (session 34 walkthrough): a record's own label list in eval JSON,
sets left out of a --predictions average, folders mixing set kinds, link offsets that point elsewhere, empty and
boolean gold offsets, in-KB-covered figures over no covered gold."""

from __future__ import annotations

import json
import logging

import pytest
from typer.testing import CliRunner

from glinker.cli import app
from glinker.errors import DataError
from glinker.eval import datasets as D
from glinker.eval.el import ELReport
from glinker.eval.ner import example_labels

runner = CliRunner()


def _json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def test_eval_json_records_are_prompted_with_their_own_labels(tmp_path):
    f = _json(tmp_path / "reclab.json", [
        {"sentence": "John Smith visited Paris .", "labels": ["person"],
         "entities": [{"name": "John Smith", "type": "person", "pos": [0, 10]}]},
        {"sentence": "Paris is nice .", "label": ["location"],
         "entities": [{"name": "Paris", "type": "location", "pos": [0, 5]}]},
        {"sentence": "It rained .", "labels": ["weather"]},        # a negative: no entities, its own list
        {"sentence": "Nothing here .", "entities": []}])
    (ds,) = D.load_ner_datasets(f)
    assert [example_labels(ds, ex) for ex in ds.examples] == [
        ["person"], ["location"], ["weather"], ["person", "location", "weather"]]
    with pytest.raises(DataError, match="'labels' must be a list of non-empty strings"):
        D.load_ner_datasets(_json(tmp_path / "bad.json", [{"sentence": "A .", "entities": [], "labels": "person"}]))
    with pytest.raises(DataError, match="'labels' is empty but the record has entities"):
        D.load_ner_datasets(_json(tmp_path / "empty.json", [
            {"sentence": "Ann .", "labels": [], "entities": [{"name": "Ann", "type": "person", "pos": [0, 3]}]}]))


def test_a_folder_of_sets_reads_each_sub_folder_as_alone(tmp_path):
    mix = tmp_path / "mix"
    _json(mix / "A" / "test.json", [{"sentence": "Mary lives .", "entities": [
        {"name": "Mary", "type": "person", "pos": [0, 4]}]}])
    _json(mix / "A" / "labels.json", ["person"])
    (mix / "mybio").mkdir()
    (mix / "mybio" / "test.conll").write_text("Bob\tB-PER\nworks\tO\n", encoding="utf-8")
    _json(mix / "mine" / "test.json", [{"sentence": "Ann sings .", "entities": [
        {"name": "Ann", "type": "person", "pos": [0, 3]}]}])                       # no labels.json
    _json(mix / "sample_x" / "test.json", [{"sentence": "x", "entities": []}])   # skipped, as in GLiNER
    (mix / "notes").mkdir()                                                         # no data: not a set
    sets = D.load_ner_datasets(mix)
    assert [s.name for s in sets] == ["A", "mine", "mybio"]
    alone = {s.name: s for s in [*D.load_ner_datasets(mix / "mine"), *D.load_ner_datasets(mix / "mybio")]}
    for s in sets[1:]:
        assert s.labels == alone[s.name].labels and [e.text for e in s.examples] == \
            [e.text for e in alone[s.name].examples]
    with pytest.raises(DataError, match="no dataset folder"):
        D.load_ner_datasets(mix / "notes")
    # a file beside the sets (notes, a report) does not make the folder one set; hidden folders are no sets
    (mix / "test_notes.txt").write_text("scores: 0.9\n", encoding="utf-8")
    _json(mix / ".ipynb_checkpoints" / "test-checkpoint.json", [{"sentence": "x", "entities": []}])
    assert [s.name for s in D.load_ner_datasets(mix)] == ["A", "mine", "mybio"]


def test_a_benchmark_folder_prompts_every_sentence_with_its_labels_json(tmp_path):
    """docs/evaluation.md: benchmark folders use labels.json for every sentence; a record's own list (or a key
    named so that is no list) is annotated data's, not a benchmark's. A benchmark file given alone reads as its
    folder."""
    recs = [{"sentence": "Ann met Bob .", "labels": ["person"], "entities": [
        {"name": "Ann", "type": "person", "pos": [0, 3]}]}, {"sentence": "Rome .", "label": "place", "entities": []}]
    _json(tmp_path / "bench" / "test.json", recs)
    _json(tmp_path / "bench" / "labels.json", ["person", "location"])
    for data in (tmp_path / "bench", tmp_path / "bench" / "test.json"):
        (ds,) = D.load_ner_datasets(data)
        assert ds.name == "bench" and [example_labels(ds, ex) for ex in ds.examples] == [["person", "location"]] * 2


def test_predictions_for_some_sets_say_which_sets_the_average_leaves_out(tmp_path, caplog):
    for name, text in (("A", "Mary lives ."), ("B", "Bob works .")):
        _json(tmp_path / "sets" / name / "test.json", [{"sentence": text, "entities": [
            {"name": text.split()[0], "type": "person", "pos": [0, len(text.split()[0])]}]}])
        _json(tmp_path / "sets" / name / "labels.json", ["person"])
    preds = tmp_path / "predsA.jsonl"
    preds.write_text(json.dumps({"dataset": "A", "index": 0, "text": "Mary lives .", "entities": [
        {"start": 0, "end": 4, "label": "person", "score": 0.9}]}) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="glinker.eval.ner"):
        r = runner.invoke(app, ["eval", "ner", "--data", str(tmp_path / "sets"), "--predictions", str(preds)])
    assert r.exit_code == 0, r.output
    assert r.output.strip().endswith("avg_micro_f1=1.0000")
    assert "1 of the 2 sets" in caplog.text and "not in the average: B" in caplog.text


def test_empty_and_boolean_gold_offsets_in_ner_json(tmp_path, caplog):
    f = _json(tmp_path / "emp.json", [{"sentence": "Mary lives in Paris .", "entities": [
        {"name": "Mary", "type": "person", "pos": [0, 4]}, {"name": "", "type": "location", "pos": [14, 14]}]}])
    with caplog.at_level(logging.WARNING, logger="glinker.eval.datasets"):
        (ds,) = D.load_ner_datasets(f)
    assert [(g.start, g.end) for g in ds.examples[0].spans] == [(0, 4)]   # as the EL readers do: left out
    assert "entity 1 is an empty span" in caplog.text and "emp.json:1" in caplog.text
    with pytest.raises(DataError, match=r"invalid pos \[True, 4\]"):
        D.load_ner_datasets(_json(tmp_path / "tr.json", [{"sentence": "Mary lives .", "entities": [
            {"name": "Mary", "type": "person", "pos": [True, 4]}]}]))


@pytest.fixture()
def el_gold(tmp_path):
    return _json(tmp_path / "g.jsonl", {"id": "a", "text": "Paris is big.", "mentions": [
        {"start": 0, "end": 5, "mention": "Paris", "wikidata_qid": "Q90"}]})


def _links(tmp_path, name, links):
    p = tmp_path / name
    p.write_text(json.dumps({"id": "a", "text": "Paris is big.", "links": links}) + "\n", encoding="utf-8")
    return p


def test_saved_links_whose_offsets_point_elsewhere_are_refused(tmp_path, el_gold):
    shifted = _links(tmp_path, "p.jsonl", [{"mention": {"start": 1, "end": 6, "text": "Paris"}, "entity_id": "Q90"}])
    r = runner.invoke(app, ["eval", "el", "--data", str(el_gold), "--predictions", str(shifted)])
    assert r.exit_code != 0
    assert "document 'a', link 0: the mention 'Paris' has offsets 1-6, where the text reads 'aris '" in r.output
    past = _links(tmp_path, "p2.jsonl", [{"mention": {"start": 5, "end": 60, "text": "x"}, "entity_id": "Q90"}])
    r = runner.invoke(app, ["eval", "el", "--data", str(el_gold), "--predictions", str(past)])
    assert r.exit_code != 0
    assert "p2.jsonl:1: not a linked document: link 0's mention 5-60 ('x') ends past the text (13 characters)" \
        in r.output and "Value error" not in r.output
    right = _links(tmp_path, "p3.jsonl", [{"mention": {"start": 0, "end": 5, "text": "Paris"}, "entity_id": "Q90"}])
    r = runner.invoke(app, ["eval", "el", "--data", str(el_gold), "--predictions", str(right)])
    assert r.exit_code == 0 and r.output.strip().endswith("el_f1=1.0000 ed_acc=1.0000 kb_coverage=n/a"), r.output


def test_in_kb_covered_over_no_covered_gold_is_not_a_zero(tmp_path, el_gold):
    none = _links(tmp_path, "p.jsonl", [])
    kb = tmp_path / "kb.txt"
    kb.write_text("Q1\n", encoding="utf-8")
    out = tmp_path / "r.json"
    r = runner.invoke(app, ["eval", "el", "--data", str(el_gold), "--predictions", str(none), "--kb-ids", str(kb),
                            "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "in-KB-covered        n/a  (the KB holds none of the gold entities)" in r.output
    rep = json.loads(out.read_text())
    assert rep["covered_f1"] is None and rep["kb_coverage"] == 0.0
    # with covered gold the figures are there, a zero included
    kb.write_text("Q90\n", encoding="utf-8")
    r = runner.invoke(app, ["eval", "el", "--data", str(el_gold), "--predictions", str(none), "--kb-ids", str(kb)])
    assert "in-KB-covered        P=0.0000 R=0.0000 F1=0.0000" in r.output
    assert ELReport().as_dict()["covered_f1"] is None


def test_an_error_in_a_one_line_json_array_names_the_record(tmp_path):
    """The shared training sets are JSON arrays on one line: "bad.json:1" alone did not say which record."""
    recs = [{"sentence": "Alice met Bob .", "entities": [{"name": "Alice", "type": "person", "pos": [0, 5]}]}] * 200
    recs = [*recs[:150], {**recs[0], "entities": [{"name": "Alice", "type": "person", "pos": [1, 6]}]}, *recs[151:]]
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(recs), encoding="utf-8")
    with pytest.raises(DataError) as e:
        D.load_ner_datasets(f)
    assert e.value.where == f"{f}:1 (record 150)"
    lines = tmp_path / "lines.json"   # one record a line: the line alone
    lines.write_text("[\n" + ",\n".join(json.dumps(r) for r in recs) + "\n]\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        D.load_ner_datasets(lines)
    assert e.value.where == f"{lines}:152"
