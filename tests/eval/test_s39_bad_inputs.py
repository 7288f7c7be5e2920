"""Session 39, messy files through the readers (a malformed-input walkthrough): raw tracebacks, silently wrong
results and misplaced messages, each reproduced here first."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from glinker.errors import DataError, KBError
from glinker.eval.datasets import iter_aida, iter_elevant, iter_gliner_training, iter_pilener, read_labels
from glinker.eval.ner import score_predictions_file
from glinker.kb.adapters import load_adapter


def _jsonl(path: Path, *recs: Any) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


PILE = {"doc_question_pairID": "1:1", "tagName": "person", "input": "John Smith lives in Paris.",
        "output": '["John Smith"]', "instruction": "DEFINITION: a human being"}


@pytest.mark.parametrize("change, said", [
    ({"instruction": None}, None),  # null is "no definition"
    ({"instruction": ["x"]}, "'instruction' (when given) must be strings"),
    ({"output": [1, None]}, "'output' holds 1, not a string"),
    ({"doc_question_pairID": None}, "'doc_question_pairID', 'input'"),
])
def test_pilener_fields_of_the_wrong_type(tmp_path: Path, change: dict, said: str | None) -> None:
    """instruction null or a list was a bare TypeError (re.search); non-string answers were dropped silently."""
    p = _jsonl(tmp_path / "p.jsonl", {**PILE, **change})
    if said is None:
        assert [ex.spans for ex in iter_pilener(p)] == [[(0, 1, "person")]]
        return
    with pytest.raises(DataError, match=said.replace("(", r"\(").replace(")", r"\)")) as ei:
        list(iter_pilener(p))
    assert ei.value.where == f"{p}:1"


def test_pilener_one_id_two_passages_is_refused(tmp_path: Path) -> None:
    """The second passage's answers were searched in the first passage's text."""
    p = _jsonl(tmp_path / "p.jsonl", PILE, {**PILE, "doc_question_pairID": "1:2", "input": "Mary went home."})
    with pytest.raises(DataError, match="another 'input' than at line 1") as ei:
        list(iter_pilener(p))
    assert ei.value.where == f"{p}:2"


GOLD = [{"sentence": "John Smith works at Google .", "entities": [{"name": "John Smith", "type": "person",
                                                                  "pos": [0, 10]}]}] * 3


@pytest.fixture
def gold(tmp_path: Path) -> Path:
    d = tmp_path / "data" / "good"
    d.mkdir(parents=True)
    (d / "test.json").write_text(json.dumps(GOLD), encoding="utf-8")
    (d / "labels.json").write_text('["person", "organization"]', encoding="utf-8")
    return d


def _line(**change: Any) -> dict:
    return {"dataset": "good", "index": 0, "text": GOLD[0]["sentence"],
            "entities": [{"start": 0, "end": 10, "label": "person"}], **change}


@pytest.mark.parametrize("change, said", [
    ({"entities": None}, "entities a list"),
    ({"entities": 5}, "entities a list"),
    ({"entities": {"start": 0}}, "entities a list"),
    ({"entities": ["John Smith"]}, "entities[0]"),
    ({"entities": [{"start": 0, "end": 10}]}, "entities[0]"),  # no label: was a wrong-type false positive
    ({"entities": [{"start": 0, "end": 10, "label": None}]}, "entities[0]"),
    ({"entities": [{"start": "0", "end": 10, "label": "person"}]}, "entities[0]"),
    ({"dataset": ["good"]}, "dataset is"),
    ({"dataset": None}, "dataset is"),
    ({"index": -1}, "index is -1"),
    ({"index": 1.7}, "index is 1.7"),
    ({"index": True}, "index is true"),
])
def test_a_bad_prediction_line_names_the_predictions_file(tmp_path: Path, gold: Path, change: dict,
                                                            said: str) -> None:
    """A raw TypeError (entities null, dataset a list or null), a sentence scored twice (index -1), an index
    truncated (1.7, true), or an error naming the gold file."""
    p = _jsonl(tmp_path / "pred.jsonl", _line(index=1), _line(**change))
    with pytest.raises(DataError, match=said.replace("[", r"\[")) as ei:
        score_predictions_file(p, gold.parent)
    assert ei.value.where == f"{p}:2"


ELEVANT = {"text": "Paris is in France.", "labels": [
    {"id": 0, "span": [0, 5], "entity_id": "Q90", "name": "Paris", "parent": None, "children": [], "optional": False,
     "type": "Q515", "coref": False}]}


@pytest.mark.parametrize("change, said", [
    ({"optional": "false"}, "optional is \"false\", not true or false"),
    ({"coref": "false"}, "coref is \"false\""),
    ({"children": 5}, "children is 5, not a list"),
    ({"id": [1]}, "id holds [1]"),
    ({"children": [[1]]}, "children holds [1]"),
])
def test_elevant_flags_and_ids_of_the_wrong_type(tmp_path: Path, change: dict, said: str) -> None:
    """"false" as a string was read as true (the mention left the gold); children 5 and id [1] were raw
    TypeErrors."""
    rec = {**ELEVANT, "labels": [{**ELEVANT["labels"][0], **change}]}
    p = _jsonl(tmp_path / "e.jsonl", rec)
    with pytest.raises(DataError, match=said.replace("[", r"\[")) as ei:
        list(iter_elevant(p))
    assert ei.value.where == f"{p}:1" and "label 0" in ei.value.message


def test_a_repeated_gold_mention_counts_once(tmp_path: Path, caplog: Any) -> None:
    """Two identical gold mentions counted as two, both matched by one prediction; the same span with two entities
    (ELEVANT's Fair sets give such alternatives) stays."""
    m = {"start": 0, "end": 5, "mention": "Paris", "wikidata_qid": "Q90", "wikipedia_title": "Paris"}
    p = _jsonl(tmp_path / "a.jsonl", {"id": "d", "text": "Paris is in France.", "mentions": [m, m]})
    with caplog.at_level(logging.WARNING):
        docs = list(iter_aida(p))
    assert len(docs[0].mentions) == 1 and "given twice: counted once" in caplog.text
    two = {**ELEVANT, "labels": [ELEVANT["labels"][0], {**ELEVANT["labels"][0], "id": 1, "entity_id": "Q7"}]}
    assert len(next(iter(iter_elevant(_jsonl(tmp_path / "e.jsonl", two)))).mentions) == 2


def test_a_file_of_the_other_format_is_named(tmp_path: Path) -> None:
    aida = {"id": "d", "text": "Paris.", "mentions": []}
    with pytest.raises(DataError, match="this line has AIDA's 'mentions'"):
        list(iter_elevant(_jsonl(tmp_path / "e.jsonl", aida)))
    with pytest.raises(DataError, match="this line has ELEVANT's 'labels'"):
        list(iter_aida(_jsonl(tmp_path / "a.jsonl", ELEVANT)))


def test_ner_data_blank_tokens_labels_and_types(tmp_path: Path, gold: Path) -> None:
    """An empty token outside any span became a double space in the text (the gold after it no longer matched); a
    blank label in labels.json was prompted (eval) or blamed on train.json (training); a type "  " was taken."""
    from glinker.eval.datasets import load_ner_datasets

    rec = {"tokenized_text": ["John", "", "lives", " ", "in", "Paris"], "ner": [[0, 0, "person"], [5, 5, "city"]]}
    p = _jsonl(tmp_path / "t.jsonl", rec)
    ex = load_ner_datasets(p)[0].examples[0]  # read for evaluation: the blank tokens left out, the spans moved
    assert ex.text == "John lives in Paris" and [(g.text, g.label) for g in ex.spans] == [("John", "person"),
                                                                                          ("Paris", "city")]
    assert next(iter(iter_gliner_training(p))).tokens == rec["tokenized_text"]  # training reads them as they are
    (gold / "labels.json").write_text('["person", "  "]', encoding="utf-8")
    with pytest.raises(DataError, match="non-blank strings") as ei:
        read_labels(gold / "labels.json")
    assert ei.value.where == str(gold / "labels.json")
    from glinker.eval.datasets import read_ner_dataset

    (gold / "labels.json").write_text('["person"]', encoding="utf-8")
    bad = [{"sentence": "John works .", "entities": [{"name": "John", "type": "  ", "pos": [0, 4]}]}]
    (gold / "test.json").write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(DataError, match="entity 0 has no type"):
        read_ner_dataset(gold)


def test_utf16_json_without_a_mark_is_named(tmp_path: Path, gold: Path) -> None:
    """ASCII in UTF-16LE decodes as UTF-8 (NUL bytes are valid): "invalid JSON: Expecting value"."""
    from glinker.eval.datasets import read_ner_dataset

    (gold / "test.json").write_bytes(json.dumps(GOLD).encode("utf-16-le"))
    with pytest.raises(DataError, match="UTF-16LE text, not UTF-8"):
        read_ner_dataset(gold)


# ---- KB adapters ---------------------------------------------------------------------------------------------------

WD = {"type": "item", "id": "Q42", "labels": {"en": {"language": "en", "value": "Douglas Adams"}},
      "descriptions": {}, "aliases": {}, "claims": {}, "sitelinks": {}}


def _wd_entities(path: Path) -> list:
    return list(load_adapter("wikidata", str(path), workers=0).iter_entities())


def test_a_dump_with_a_byte_order_mark_keeps_its_first_entity(tmp_path: Path) -> None:
    """"BOM is not supported": Q42 skipped as a bad record and the build went on without it."""
    for name, text in (("nd.json", json.dumps(WD) + "\n" + json.dumps({**WD, "id": "Q1"}) + "\n"),
                       ("dump.json", "[\n" + json.dumps(WD) + ",\n" + json.dumps({**WD, "id": "Q1"}) + "\n]\n")):
        p = tmp_path / name
        p.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
        assert [e.id for e in _wd_entities(p)] == ["Q42", "Q1"]


def test_a_utf16_dump_is_named(tmp_path: Path) -> None:
    p = tmp_path / "u16.json"
    p.write_bytes((json.dumps(WD) + "\n").encode("utf-16"))
    with pytest.raises(DataError, match="UTF-16 text, not UTF-8"):
        _wd_entities(p)


def test_a_misshapen_dump_entity_names_its_field(tmp_path: Path) -> None:
    """"'str' object has no attribute 'get'" named no field."""
    from kb_adapters.wikidata import parse_chunk

    ad = load_adapter("wikidata", str(_jsonl(tmp_path / "x.json", WD)), workers=0)
    for bad, said in (({"labels": {"en": "Douglas"}}, "'labels' of 'en' is \"Douglas\""),
                      ({"aliases": {"en": ["DNA"]}}, "'aliases' of 'en' is [\"DNA\"]")):
        _, problems, _ = parse_chunk((1, json.dumps({**WD, **bad}).encode(), ad._opts()))
        assert problems and said in problems[0][1], problems


def test_csv_short_rows_nul_bytes_and_a_header_of_another_case(tmp_path: Path, caplog: Any) -> None:
    p = tmp_path / "k.csv"
    p.write_text("id,label,description\nE1,Paris,capital\nE2,Berlin\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        ents = list(load_adapter("csv", str(p)).iter_entities())
    assert [e.id for e in ents] == ["E1", "E2"] and "fewer cells than the header's 3 columns" in caplog.text
    p.write_text("id,label\nE1,Par\x00is\n", encoding="utf-8")
    with pytest.raises(DataError, match="NUL character"):
        list(load_adapter("csv", str(p)).iter_entities())
    p.write_text("ID,label\nE1,Paris\n", encoding="utf-8")
    with pytest.raises(KBError) as ei:
        list(load_adapter("csv", str(p)).iter_entities())
    assert "the header has 'ID'" in ei.value.fix and '-o mapping=\'{"id": "ID"}\'' in ei.value.fix
    # and the fix works
    assert [e.id for e in load_adapter("csv", str(p), mapping={"id": "ID"}).iter_entities()] == ["E1"]


def test_jsonl_popularity_true_is_refused(tmp_path: Path) -> None:
    """true became 1.0 without a word."""
    p = _jsonl(tmp_path / "k.jsonl", {"id": "E1", "label": "Paris", "popularity": True})
    with pytest.raises(DataError, match="'popularity' .* is true, not a number"):
        list(load_adapter("jsonl", str(p)).iter_entities())


def test_another_kbs_id_under_an_entity_key_is_named(tmp_path: Path) -> None:
    """"entity_id": "ACME-1" in an AIDA file (no wikidata_qid) was read as NIL without a word: only QIDs under such a
    key were caught."""
    m = {"start": 0, "end": 4, "mention": "Acme", "entity_id": "ACME-1"}
    p = _jsonl(tmp_path / "a.jsonl", {"id": "d", "text": "Acme sells.", "mentions": [m]})
    with pytest.raises(DataError, match="has no 'wikidata_qid' but has 'entity_id': 'ACME-1'"):
        list(iter_aida(p))
    # ELEVANT gold is Wikidata's (an entity_id that is no QID is NIL there): no rename to suggest
    lab = {"span": [0, 4], "kb_id": "ACME-1"}
    assert list(iter_elevant(_jsonl(tmp_path / "e.jsonl", {"text": "Acme sells.", "labels": [lab]})))
    nil = {**m, "entity_id": "--NME--"}  # a NIL marker under it is what it says
    assert list(iter_aida(_jsonl(tmp_path / "b.jsonl", {"id": "d", "text": "Acme sells.", "mentions": [nil]})))


def test_kb_ids_from_a_csv_without_an_id_column_are_said(tmp_path: Path, caplog: Any) -> None:
    """A CSV whose header names no id column had its first column (and its header cell) read as the ids: coverage 0
    and every miss "not in the KB", without a word."""
    from glinker.eval.el import load_kb_ids

    p = tmp_path / "kb.csv"
    p.write_text("company_name,company_code\nAcme,ACME-1\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        ids = load_kb_ids(str(p))
    assert "company_name" in ids and "no header names an id column" in caplog.text
