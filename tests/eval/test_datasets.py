"""Readers: tiny hand-written fixtures for every format and error, and the real files' counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import glinker.eval.datasets as D
from glinker.errors import DataError

EVAL_RECORDS = [
    {"sentence": "Ada Lovelace worked with Charles Babbage in London .",
     "entities": [{"name": "Ada Lovelace", "type": "person", "pos": [0, 12]},
                  {"name": "Charles Babbage", "type": "person", "pos": [25, 40]},
                  {"name": "London", "type": "location", "pos": [44, 50]}]},
    {"sentence": "No entities here .", "entities": []},
    {"sentence": "The Analytical Engine ( 1837 ) was never built .",
     "entities": [{"name": "Analytical Engine", "type": "else", "pos": [4, 21]}]},
]


def write_eval_set(folder: Path, records=EVAL_RECORDS, labels=("person", "location", "else")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
    (folder / "labels.json").write_text(json.dumps(list(labels)), encoding="utf-8")
    return folder


def test_eval_json_reader_gives_char_spans(tmp_path):
    ds = D.read_ner_dataset(write_eval_set(tmp_path / "tiny"))
    assert ds.name == "tiny" and ds.labels == ["person", "location", "else"]
    assert len(ds.examples) == 3 and ds.n_entities == 4
    ex = ds.examples[0]
    assert [(g.start, g.end, g.label, g.text) for g in ex.spans][1] == (25, 40, "person", "Charles Babbage")
    assert ex.where.endswith(":2")  # file:line of the record in the indented JSON


def test_streaming_array_across_chunk_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "_CHUNK", 7)  # every record straddles several reads
    records = [{"sentence": f"w{i} " * (i % 5 + 1), "entities": []} for i in range(50)] + [12345, "x"]
    f = tmp_path / "a.json"
    f.write_text(json.dumps(records), encoding="utf-8")
    got = [r for r, _ in D.iter_json_records(f)]
    assert got == records


@pytest.mark.parametrize("text,line,msg", [
    ('[\n{"sentence": "a", "entities": []},\n{"sentence": "b" "entities": []}\n]', 3, "invalid JSON"),
    ('[\n{"sentence": "a", "entities": []}\n{"sentence": "b", "entities": []}\n]', 3, "expected ','"),
    ('[\n{"sentence": "a", "entities": []},\n', 3, "end of file"),
])
def test_malformed_array_names_file_and_line(tmp_path, text, line, msg):
    f = tmp_path / "bad.json"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as e:
        list(D.iter_ner_eval_json(f))
    assert f"{f}:{line}" in str(e.value) and msg in str(e.value) and "fix:" in str(e.value)


def test_bad_entity_offsets_are_reported(tmp_path):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps([{"sentence": "abc", "entities": [{"name": "x", "type": "t", "pos": [1, 9]}]}]))
    with pytest.raises(DataError, match="invalid pos"):
        list(D.iter_ner_eval_json(f))


def test_find_datasets_single_or_parent(tmp_path):
    write_eval_set(tmp_path / "b")
    write_eval_set(tmp_path / "a")
    write_eval_set(tmp_path / "sample_x")
    assert [p.name for p in D.find_ner_datasets(tmp_path)] == ["a", "b"]
    assert [p.name for p in D.find_ner_datasets(tmp_path / "a")] == ["a"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no dataset folder"):
        D.find_ner_datasets(tmp_path / "empty")


def test_word_char_conversion_roundtrip():
    toks = ["New", "York", "is", "big", "."]
    spans = [(0, 1, "loc"), (3, 3, "adj")]
    chars = D.word_spans_to_char(toks, spans)
    text = " ".join(toks)
    assert [text[a:b] for a, b, _ in chars] == ["New York", "big"]
    assert D.char_spans_to_word(toks, chars) == spans
    with pytest.raises(DataError, match="token boundaries"):
        D.char_spans_to_word(toks, [(1, 8, "x")])
    assert D.char_spans_to_word(toks, [(1, 8, "x")], strict=False) == []


def test_gliner_word_span_matches_gliner_process():
    words = ["Australian", "tour", ",", "Real", "Madrid-Barcelona"]
    assert D.gliner_word_span(words, 0, 10) == (0, 0)
    assert D.gliner_word_span(words, 0, 9) == (0, None)  # "Australia" inside "Australian"
    assert D.gliner_word_span(words, 18, 39) == (3, 4)


def test_gliner_training_json_and_jsonl(tmp_path):
    rec = {"tokenized_text": ["Marie", "Curie", "won", "."], "ner": [[0, 1, "person"]]}
    arr, jl = tmp_path / "train.json", tmp_path / "train.jsonl"
    arr.write_text(json.dumps([rec, rec]))
    jl.write_text(json.dumps(rec) + "\n\n" + json.dumps(rec) + "\n")
    for f in (arr, jl):
        assert D.sniff_training_format(f) == "gliner"
        exs = list(D.iter_training(f))
        assert len(exs) == 2 and exs[0].spans == [(0, 1, "person")]
        assert exs[0].char_spans() == [(0, 11, "person")] and exs[0].text == "Marie Curie won ."
        assert exs[0].to_gliner()["ner"] == [[0, 1, "person"]]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rec) + "\n" + json.dumps({"tokenized_text": ["a"], "ner": [[0, 3, "x"]]}) + "\n")
    with pytest.raises(DataError) as e:
        list(D.iter_training(bad))
    assert f"{bad}:2" in str(e.value)


def test_bio_reader(tmp_path):
    f = tmp_path / "train.conllu"
    f.write_text("0\tR.H.\tB-ORG\n1\tSaunders\tI-ORG\n2\t(\tO\n3\tSt.\tB-ORG\n4\tLaw\tI-ORG\n5\t)\tO\n\n"
                 "0\tAnders\tI-PER\n1\tLind\tI-PER\n2\tParis\tI-LOC\n\n"
                 "0\tBo\tS-PER\n1\tNew\tB-LOC\n2\tYork\tE-LOC\n3\tX\tB-MISC\n", encoding="utf-8")
    exs = list(D.iter_training(f))
    assert [e.spans for e in exs] == [
        [(0, 1, "organization"), (3, 4, "organization")],
        [(0, 1, "person"), (2, 2, "location")],  # IOB1: I- after O or another type starts a span
        [(0, 0, "person"), (1, 2, "location"), (3, 3, "misc")],
    ]
    raw = list(D.iter_bio(f, type_names=None))
    assert raw[0].spans[0] == (0, 1, "ORG")
    txt = tmp_path / "bio" / "train.txt"  # CoNLL-2003's own file name: BIO by its content, in a folder too
    txt.parent.mkdir()
    txt.write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    assert [e.spans for e in D.iter_training(txt)] == [e.spans for e in exs]
    (txt.parent / "README.txt").write_text("Notes about this corpus.\n")  # not a split: not data
    assert [e.spans for e in D.iter_training(txt.parent)] == [e.spans for e in exs]
    js = tmp_path / "js" / "train.txt"  # JSON in a .txt file still reads as JSON
    js.parent.mkdir()
    js.write_text(json.dumps([{"tokenized_text": ["Paris"], "ner": [[0, 0, "location"]]}]))
    assert [e.spans for e in D.iter_training(js)] == [[(0, 0, "location")]]
    bad = tmp_path / "bad.conllu"
    bad.write_text("0\ta\tO\n1\tb\tX-PER\n")
    with pytest.raises(DataError) as e:
        list(D.iter_bio(bad))
    assert f"{bad}:2" in str(e.value)


def test_bio_reader_reads_conll2003_own_layout(tmp_path):
    """CoNLL-2003's train.txt: space-separated 'token POS CHUNK TAG' lines and -DOCSTART- document lines."""
    f = tmp_path / "train.txt"
    f.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n"
                 "call NN I-NP O\n. . O O\n\n-DOCSTART- -X- -X- O\n\n1990 CD I-NP O\nPeter NNP B-NP B-PER\n"
                 "Blackburn NNP I-NP I-PER\n", encoding="utf-8")
    exs = list(D.iter_training(f))
    assert [e.tokens for e in exs] == [["EU", "rejects", "German", "call", "."], ["1990", "Peter", "Blackburn"]]
    assert [e.spans for e in exs] == [[(0, 0, "organization"), (2, 2, "misc")], [(1, 2, "person")]]
    two = tmp_path / "two.bio"  # token<TAB>tag, a number first: no index column
    two.write_text("1\tO\nParis\tB-LOC\n", encoding="utf-8")
    assert [(e.tokens, e.spans) for e in D.iter_bio(two)] == [(["1", "Paris"], [(1, 1, "location")])]


def test_training_records_with_bad_labels_are_named(tmp_path):
    f = tmp_path / "train.jsonl"
    ok = {"tokenized_text": ["Paris"], "ner": [[0, 0, "city"]]}
    for rec, msg in [({**ok, "label": "city"}, "must be a list"), ({**ok, "label": ["city", ""]}, "must be a list"),
                     ({**ok, "label": []}, "is empty but"), ({**ok, "ner": [[0, 0, ""]]}, "span 0 is invalid")]:
        f.write_text(json.dumps(ok) + "\n" + json.dumps(rec) + "\n")
        with pytest.raises(DataError, match=msg) as e:
            list(D.iter_training(f))
        assert f"{f}:2" in str(e.value)
    f.write_text(json.dumps({**ok, "label": ["city", "river"]}) + "\n" + json.dumps({"tokenized_text": [], "ner": []})
                 + "\n" + json.dumps({**ok, "label": None}) + "\n")
    assert [e.labels for e in D.iter_training(f)] == [["city", "river"], None]  # the empty record is skipped


def test_pilener_empty_passages_and_unfound_answers_are_reported(tmp_path, caplog):
    f = tmp_path / "pile.jsonl"
    rows = [{"doc_question_pairID": "1:1", "tagName": "city", "input": "Paris is big.", "output": '["Lyon"]'},
            {"doc_question_pairID": "2:1", "tagName": "city", "input": "", "output": "[]"}]
    f.write_text("".join(json.dumps(x) + "\n" for x in rows))
    with caplog.at_level("WARNING", logger="glinker.eval.datasets"):
        exs = list(D.iter_pilener(f))
    assert [e.id for e in exs] == ["1"] and exs[0].spans == []
    assert "1 answers are not found" in caplog.text and "skipped 1 empty passages" in caplog.text


def test_pilener_groups_passages_and_keeps_negatives(tmp_path):
    f = tmp_path / "pile.jsonl"
    lines = [
        {"doc_question_pairID": "7:1", "tagName": "city", "input": "Paris and Lyon; Paris again.",
         "instruction": "Extract...\nDEFINITION: CITY is a town.\nGUIDELINES: none", "output": '["Paris", "Lyon"]'},
        {"doc_question_pairID": "8:1", "tagName": "name", "input": "map-stream v1", "instruction": "",
         "output": '["map-stream"]'},
        {"doc_question_pairID": "7:2", "tagName": "river", "input": "Paris and Lyon; Paris again.",
         "instruction": "", "output": "[]"},
    ]
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert D.sniff_training_format(f) == "pilener"
    exs = {e.id: e for e in D.iter_training(f)}
    assert set(exs) == {"7", "8"}
    e7 = exs["7"]
    assert e7.labels == ["city", "river"]
    assert sorted((s, " ".join(e7.tokens[s:e + 1])) for s, e, _ in e7.spans) == [(0, "Paris"), (2, "Lyon"), (4, "Paris")]
    assert e7.meta["definitions"]["city"] == "CITY is a town."
    assert exs["8"].spans == [(0, 0, "name")]  # gliner's splitter keeps "map-stream" as one word
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**lines[0], "output": "[oops"}) + "\n")
    with pytest.raises(DataError, match="not a JSON list"):
        list(D.iter_pilener(bad))


def test_training_folder_with_labels_and_split(tmp_path):
    write_eval_set(tmp_path / "set")
    (tmp_path / "set" / "train.json").write_text(json.dumps(EVAL_RECORDS[:1]))
    (tmp_path / "set" / "dev.json").write_text(json.dumps(EVAL_RECORDS[2:]))
    exs = list(D.iter_training(tmp_path / "set", split="train"))
    assert len(exs) == 1 and exs[0].labels == ["person", "location", "else"]
    assert exs[0].spans == [(0, 1, "person"), (4, 5, "person"), (7, 7, "location")]
    assert len(list(D.iter_training(tmp_path / "set", split="dev"))) == 1
    assert len(list(D.iter_training(tmp_path / "set", split="val"))) == 1


AIDA_DOC = {"id": "1 doc", "text": "JAPAN beat Syria in Al-Ain .",
            "mentions": [{"start": 0, "end": 5, "mention": "JAPAN", "wikidata_qid": "Q170566", "wikipedia_title": "Japan nft"},
                         {"start": 11, "end": 16, "mention": "Syria", "wikidata_qid": None, "wikipedia_title": "Syria nft"},
                         {"start": 20, "end": 26, "mention": "Al-Ain", "wikidata_qid": None, "wikipedia_title": None}]}


def test_aida_reader(tmp_path):
    f = tmp_path / "aida.jsonl"
    f.write_text(json.dumps(AIDA_DOC) + "\n")
    (doc,) = D.iter_el(f)
    assert doc.id == "1 doc" and doc.evaluation_span == (0, len(AIDA_DOC["text"]))
    assert [(m.entity_id, m.is_nil, m.meta.get("unmapped", False)) for m in doc.mentions] == [
        ("Q170566", False, False), ("NIL", True, True), ("NIL", True, False)]
    bad = dict(AIDA_DOC, mentions=[dict(AIDA_DOC["mentions"][0], start=1)])
    f.write_text(json.dumps(AIDA_DOC) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError) as e:
        list(D.iter_el(f))
    assert f"{f}:2" in str(e.value) and "differs" in str(e.value)


def test_elevant_reader(tmp_path):
    f = tmp_path / "x.benchmark.jsonl"
    doc = {"id": 0, "title": "t", "text": "Obama met him in 2009 at Home Depot .", "evaluation_span": [0, 30],
           "labels": [{"id": 0, "span": [0, 5], "entity_id": "Q76", "name": "Barack Obama", "type": "Q5"},
                      {"id": 1, "span": [10, 13], "entity_id": "<NIL>", "name": "Unknown", "type": "OTHER", "coref": True},
                      {"id": 2, "span": [17, 21], "entity_id": "DATETIME", "name": "2009", "type": "DATETIME"},
                      {"id": 3, "span": [25, 35], "entity_id": "Unknown42", "name": "x", "type": "OTHER",
                       "children": [4]},
                      {"id": 4, "span": [25, 29], "entity_id": "Q5", "name": "x", "type": "OTHER", "parent": 3}]}
    f.write_text(json.dumps(doc) + "\n")
    (d,) = D.iter_el(f)
    assert d.evaluation_span == (0, 30)
    ms = d.mentions
    assert [m.entity_id for m in ms] == ["Q76", "NIL", "NIL", "NIL", "Q5"]
    assert ms[1].coref and ms[1].raw_id == "<NIL>"
    assert ms[2].optional and not ms[0].optional
    assert ms[3].children == [4] and ms[4].parent == 3



@pytest.mark.parametrize("fmt, key, value, msg", [
    ("aida", "wikidata_qdi", "Q76", "did you mean 'wikidata_qid'"),
    ("aida", "qid", "Q76", "'qid': 'Q76'"),
    ("elevant", "entityid", "Q76", "did you mean 'entity_id'"),
    ("elevant", "wikidata", "Q76", "'wikidata': 'Q76'"),
    ("aida", "entity_id", "Q76", "'entity_id': 'Q76'"),
    ("elevant", "wikidata_qid", "Q76", "'wikidata_qid': 'Q76'"),
])
def test_el_readers_refuse_an_entity_under_another_key(tmp_path, fmt, key, value, msg):
    """A gold mention whose entity sits under a misspelt or foreign key would be scored as NIL without a word."""
    text = "Obama met him ."
    if fmt == "aida":
        doc = {"id": "d", "text": text, "mentions": [{"start": 0, "end": 5, "mention": "Obama", key: value}]}
        ok = {"id": "d", "text": text, "mentions": [{"start": 0, "end": 5, "mention": "Obama", "note": "x",
                                                     "wikipedia_title": None}]}
    else:
        doc = {"id": 0, "text": text, "labels": [{"id": 0, "span": [0, 5], key: value}]}
        ok = {"id": 0, "text": text, "labels": [{"id": 0, "span": [0, 5], "source": "manual"}]}
    f = tmp_path / "x.jsonl"
    f.write_text(json.dumps(ok) + "\n" + json.dumps(doc) + "\n")
    with pytest.raises(DataError, match=msg) as e:
        list(D.iter_el(f))
    assert f"{f}:2" in str(e.value) and "read as NIL" in str(e.value)
    f.write_text(json.dumps(ok) + "\n")  # other unknown keys (metadata) are fine: the mention is NIL
    (d,) = D.iter_el(f)
    assert [m.is_nil for m in d.mentions] == [True]


@pytest.mark.parametrize("fmt", ["aida", "elevant"])
@pytest.mark.parametrize("extra", [{"wikidata_url": None}, {"wikidata_id": None}, {"wikidata_desc": "a politician"},
                                   {"entity_name": "Barack Obama"}, {"entity_type": "person"}, {"entity_ids": []},
                                   {"predicted_qid": "Q5"}, {"old_qid": "Q76"}, {"gold_type": "Q5"}],
                         ids=lambda d: next(iter(d)))
def test_el_readers_read_past_metadata_keys_of_a_nil_mention(tmp_path, fmt, extra):
    """Keys near the entity key without a QID, and QIDs under keys that name something else, are metadata: the
    mention is NIL (the review found them refused)."""
    text = "Obama met him ."
    if fmt == "aida":
        doc = {"id": "d", "text": text, "mentions": [{"start": 0, "end": 5, "mention": "Obama", **extra}]}
    else:
        doc = {"id": 0, "text": text, "labels": [{"id": 0, "span": [0, 5], **extra}]}
    f = tmp_path / "x.jsonl"
    f.write_text(json.dumps(doc) + "\n")
    (d,) = D.iter_el(f)
    assert [m.is_nil for m in d.mentions] == [True]

# ---- real data -------------------------------------------------------------------------------------------

README_NER = {"CrossNER_AI": (431, 1804), "CrossNER_literature": (416, 2263), "CrossNER_music": (465, 3334),
              "CrossNER_politics": (650, 4200), "CrossNER_science": (543, 3088), "mit-movie": (2442, 5338),
              "mit-restaurant": (1520, 3150), "conll2003": (3453, 5648)}


@pytest.mark.shared_data
def test_real_ner_eval_counts_match_readme(data):
    folders = D.find_ner_datasets(data / "ner" / "eval")
    got = {}
    for f in folders:
        ds = D.read_ner_dataset(f)
        got[ds.name] = (len(ds.examples), ds.n_entities)
    assert got == README_NER


@pytest.mark.shared_data
def test_real_training_folders_all_read(data):
    train = data / "ner" / "train"
    if not train.is_dir():
        pytest.skip("no ner/train")
    expect = {"conll2003": 14041 + 3250, "wikiann_en": 30000, "wikineural_en": 11590, "bc5cdr": 4560,
              "ncbi": 5432, "pilener_validation": 880}
    for name, n in expect.items():
        exs = list(D.iter_training(train / name))
        assert len(exs) == n, name
        for ex in exs[:200]:
            for s, e, t in ex.spans:
                assert 0 <= s <= e < len(ex.tokens) and t
    # sentence_json spans dropped only where the gold offsets are off word boundaries
    assert sum(len(e.spans) for e in D.iter_training(train / "conll2003", split="train")) == 23499 - 79


@pytest.mark.shared_data
def test_real_el_counts(data):
    testb = data / "el" / "aida" / "aida_testb.jsonl"
    if not testb.is_file():
        pytest.skip("no AIDA")
    docs = list(D.iter_el(testb))
    ms = [m for d in docs for m in d.mentions]
    assert len(docs) == 231
    linked = [m for m in ms if not m.is_nil or m.meta.get("unmapped")]
    assert len(linked) == 4485 and sum(not m.is_nil for m in ms) == 4479
    assert all(d.text[m.start:m.end] == m.text for d in docs for m in d.mentions)
    for f in sorted((data / "el" / "elevant").glob("*.benchmark.jsonl")):
        for d in D.iter_el(f):
            a, b = d.evaluation_span
            assert 0 <= a <= b <= len(d.text)


def test_an_empty_eval_set_is_an_error(tmp_path):
    d = write_eval_set(tmp_path / "empty")
    (d / "test.json").write_text("[]")
    with pytest.raises(DataError) as ei:
        D.read_ner_dataset(d)
    assert "holds no examples" in str(ei.value) and "test.json" in str(ei.value)


def test_gliner_training_records_with_a_bool_index_or_a_span_on_blank_tokens_are_refused(tmp_path):
    import json

    import pytest

    from glinker.errors import DataError
    from glinker.eval.datasets import iter_gliner_training

    ok = {"tokenized_text": ["Paris", "is", "big"], "ner": [[0, 0, "city"]]}
    for bad, msg in (({"tokenized_text": ["Paris", "is"], "ner": [[0, True, "city"]]}, "true/false"),
                     ({"tokenized_text": ["", " ", "Paris"], "ner": [[0, 1, "city"]]}, "only whitespace")):
        p = tmp_path / "t.jsonl"
        p.write_text(json.dumps(ok) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
        with pytest.raises(DataError, match=msg) as e:
            list(iter_gliner_training(p))
        assert "t.jsonl:2" in str(e.value)
