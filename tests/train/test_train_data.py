"""What training reads: type names of one type, the split a folder gives, records a span cannot mean."""

from __future__ import annotations

import json
import logging

import pytest
import torch


def _write(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_type_names_differing_in_case_space_or_invisible_characters_are_one_type(tmp_path, caplog):
    """'person', 'Person', ' person ' and 'per\\u200bson' are one type: never a positive and a negative of the
    same span in one batch; named in one warning with the file; drop_types matches them alike."""
    from glinker.model.train.batching import BatchSampler, ner_examples

    words = "john smith met mary jones in paris .".split()
    f = _write(tmp_path / "a.jsonl", [
        {"tokenized_text": words, "ner": [[0, 1, "person"], [6, 6, "city"]]},
        {"tokenized_text": words, "ner": [[0, 1, "Person"], [3, 4, " person  "]]},
        {"tokenized_text": words, "ner": [[3, 4, "per\u200bson"], [6, 6, "CITY"]]},
        {"tokenized_text": words, "ner": [[0, 1, "person"]], "label": ["person", "Person", "place"]},
    ])
    with caplog.at_level(logging.WARNING, logger="glinker.model.train.batching"):
        ex, types = ner_examples(str(f), None, None, [], {})
    assert types == ["person", "city", "place"]
    assert {t for e in ex for _, _, t in e.spans} == {"person", "city"}
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert str(f) in msg and "'Person'" in msg and "' person  '" in msg and "'per\\u200bson'" in msg
    assert "'CITY'" in msg and len(caplog.records) == 1

    from glinker.model.train.batching import Source

    b = BatchSampler([Source("a", "ner", 1.0, ex, types)], 4, 16, 10, 0, 4, 0).next()
    assert [t.casefold() for t in b.labels].count("person") == 1
    # a sampler given raw variants (sources built by hand) still makes them one label, positive for both spans
    from glinker.model.train.batching import Example

    raw = [Example(words, [(0, 1, "person")]), Example(words, [(0, 1, "Person"), (3, 4, "per\u200bson")])]
    b = BatchSampler([Source("r", "ner", 1.0, raw, ["person", "Person", "per\u200bson"])], 2, 16, 10, 3, 4, 0).next()
    assert len(b.labels) == 1
    assert b.targets[:, 0, 1, 0].tolist() == [1.0, 1.0] and b.targets[1, 3, 1, 0] == 1.0

    ex, types = ner_examples(str(f), None, None, ["PERSON"], {"City": "location"})
    assert types == ["location", "place"] and all(t == "location" for e in ex for _, _, t in e.spans)


def test_one_spelling_across_sources(tmp_path, caplog):
    from glinker.model.train.batching import build_sources
    from glinker.model.train.config import DataSource

    words = "john smith lives in paris .".split()
    a = _write(tmp_path / "a.jsonl", [{"tokenized_text": words, "ner": [[0, 1, "person"], [4, 4, "city"]]}] * 3)
    b = _write(tmp_path / "b.jsonl", [{"tokenized_text": words, "ner": [[0, 1, "Person"]]}])
    with caplog.at_level(logging.WARNING, logger="glinker.model.train.batching"):
        srcs = build_sources([DataSource(path=str(a)), DataSource(path=str(b))], 32)
    assert srcs[1].types == ["person"] and srcs[1].examples[0].spans == [(0, 1, "person")]
    assert "'person' <- 'Person'" in caplog.text and str(b) in caplog.text


def test_a_folder_of_splits_trains_on_its_train_split_only(tmp_path, caplog):
    """train.jsonl + dev.jsonl + test.jsonl (or CoNLL's train.txt + test.txt) without `split:`: data reads the
    train files, dev the dev files; test data never trains unless named."""
    from glinker.errors import DataError
    from glinker.model.train.batching import build_sources
    from glinker.model.train.config import DataSource

    d = tmp_path / "set"
    d.mkdir()
    w = "alpha beta gamma".split()
    for split, typ in (("train", "person"), ("dev", "city"), ("test", "secret")):
        _write(d / f"{split}.jsonl", [{"tokenized_text": w, "ner": [[0, 0, typ]]}])
    (d / "test.txt").write_text("alpha B-LEAK\nbeta O\n")
    with caplog.at_level(logging.INFO, logger="glinker.model.train.batching"):
        (train,) = build_sources([DataSource(path=str(d))], 32)
    assert train.types == ["person"] and len(train.examples) == 1
    assert "train split only" in caplog.text and "test.jsonl" in caplog.text
    (dev,) = build_sources([DataSource(path=str(d))], 32, "dev")
    assert dev.types == ["city"]
    (named,) = build_sources([DataSource(path=str(d), split="test")], 32)
    assert set(named.types) == {"secret", "LEAK"}

    (d / "train.jsonl").unlink()
    with pytest.raises(DataError) as ei:
        build_sources([DataSource(path=str(d))], 32)
    assert "no train split" in str(ei.value) and "test data" in str(ei.value) and "data[0]" in str(ei.value)
    assert "split:" in str(ei.value)

    one = tmp_path / "val_only"  # a folder of one other split (Pile-NER's validation file): read, with a warning
    one.mkdir()
    _write(one / "validation_with_definitions.jsonl", [{"tokenized_text": w, "ner": [[0, 0, "person"]]}])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glinker.model.train.batching"):
        (src,) = build_sources([DataSource(path=str(one))], 32)
    assert src.types == ["person"] and "split: dev" in caplog.text
    plain = tmp_path / "plain"  # no split names at all: every file, as before
    plain.mkdir()
    _write(plain / "a.jsonl", [{"tokenized_text": w, "ner": [[0, 0, "person"]]}])
    _write(plain / "b.jsonl", [{"tokenized_text": w, "ner": [[0, 0, "city"]]}])
    assert build_sources([DataSource(path=str(plain))], 32)[0].types == ["person", "city"]
    _write(plain / "train.jsonl", [{"tokenized_text": w, "ner": [[0, 0, "org"]]}])  # a train file beside them
    with pytest.raises(DataError) as ei:  # not read alone silently (a.jsonl, b.jsonl are no test data)
        build_sources([DataSource(path=str(plain))], 32)
    assert "a.jsonl" in str(ei.value) and "split: train" in str(ei.value)
    assert build_sources([DataSource(path=str(plain), split="train")], 32)[0].types == ["org"]


@pytest.mark.parametrize("record,what", [
    ({"tokenized_text": ["john", "", "smith"], "ner": [[0, 1, "person"]]}, "empty or only whitespace"),
    ({"tokenized_text": ["john", "  ", "smith"], "ner": [[1, 1, "person"]]}, "empty or only whitespace"),
    ({"tokenized_text": ["john", "smith"], "ner": [[True, 1, "person"]]}, "true/false"),
    ({"tokenized_text": ["john", "smith"], "ner": [[0, 1, "\u200b"]]}, "invisible"),
    ({"tokenized_text": ["john", "smith"], "ner": [], "ignore": [[0, True]]}, "true/false"),
])
def test_records_a_span_cannot_mean_are_refused_with_file_and_line(tmp_path, record, what):
    from glinker.errors import DataError
    from glinker.model.train.batching import ner_examples

    ok = {"tokenized_text": ["a", "b"], "ner": [[0, 0, "person"]]}
    f = tmp_path / "t.json"
    f.write_text("[\n" + json.dumps(ok) + ",\n" + json.dumps(ok) + ",\n" + json.dumps(record) + "\n]\n")
    with pytest.raises(DataError) as ei:
        ner_examples(str(f), None, None, [], {})
    assert f"{f}:4" in str(ei.value) and what in str(ei.value)
    # blank tokens outside every span stay allowed
    f.write_text(json.dumps([{"tokenized_text": ["john", "", "smith"], "ner": [[2, 2, "person"]]}]))
    assert ner_examples(str(f), None, None, [], {})[1] == ["person"]


def test_linking_mentions_inside_words_are_counted_in_a_warning(tmp_path, caplog):
    from glinker.model.train.batching import linking_examples

    ents = tmp_path / "ents.jsonl"
    _write(ents, [{"id": "Q90", "label": "Paris", "description": "capital of France"},
                  {"id": "Q408", "label": "Australia", "description": "country in Oceania"}])
    text = "Paris hosts the Australian team ."
    docs = _write(tmp_path / "aida.jsonl", [{"id": "d1", "text": text, "mentions": [
        {"start": 0, "end": 5, "mention": "Paris", "wikidata_qid": "Q90"},
        {"start": 16, "end": 25, "mention": "Australia", "wikidata_qid": "Q408"}]}])
    with caplog.at_level(logging.WARNING, logger="glinker.model.train.batching"):
        ex, _ = linking_examples(str(docs), str(ents), "{label}: {description}", None, 32)
    assert [s for e in ex for s in e.spans] == [(0, 0, "Paris: capital of France")]
    assert "dropped 1 mentions" in caplog.text and "'Australia' at 16-25 of document d1" in caplog.text
    assert str(docs) in caplog.text


def test_batch_targets_use_one_column_per_type():
    """The merged labels' target column is the one the batch prompts (no all-zero column for a variant)."""
    from glinker.model.train.batching import BatchSampler, Example, Source

    words = "a b c".split()
    src = Source("s", "ner", 1.0, [Example(words, [(0, 0, "Thing")], labels=["thing", "other"])], ["Thing", "other"])
    b = BatchSampler([src], 1, 8, 5, 0, 2, 0).next()
    assert sorted(b.labels) == ["Thing", "other"]
    assert b.targets[0, 0, 0, b.labels.index("Thing")] == 1.0 and torch.count_nonzero(b.targets) == 1


def test_linking_windows_never_split_a_mention(tmp_path):
    """A mention across a window boundary moves the boundary before it (it used to be dropped from both windows,
    its words taught as negatives); only a mention longer than the window is cut, its parts left out of the loss."""
    from glinker.model.train.batching import linking_examples, mention_windows

    assert mention_windows(10, [(2, 4)], 4) == [(0, 2), (2, 6), (6, 10)]
    assert mention_windows(10, [(1, 6)], 4) == [(0, 1), (1, 5), (5, 9), (9, 10)]  # longer than the window: cut
    assert mention_windows(10, [(2, 5), (3, 4)], 4) == [(0, 2), (2, 6), (6, 10)]  # overlapping mentions
    assert mention_windows(0, [], 4) == [] and mention_windows(3, [], 4) == [(0, 3)]
    ents = tmp_path / "ents.jsonl"
    _write(ents, [{"id": "Q60", "label": "New York City", "description": "city in the United States"}])
    text = "a b c New York City d e f g"
    docs = _write(tmp_path / "aida.jsonl", [{"id": "d1", "text": text, "mentions": [
        {"start": 6, "end": 19, "mention": "New York City", "wikidata_qid": "Q60"}]}])
    ex, _ = linking_examples(str(docs), str(ents), "{label}", None, 4)
    assert [(e.words, e.spans, e.ignore) for e in ex] == [(["New", "York", "City", "d"], [(0, 2, "New York City")], [])]
    _write(ents, [{"id": "Q60", "label": "New York City", "description": "city"},
                  {"id": "Q90", "label": "Paris", "description": "city"}])
    docs = _write(tmp_path / "aida.jsonl", [{"id": "d1", "text": "New York City Paris", "mentions": [
        {"start": 0, "end": 13, "mention": "New York City", "wikidata_qid": "Q60"},
        {"start": 14, "end": 19, "mention": "Paris", "wikidata_qid": "Q90"}]}])
    ex, _ = linking_examples(str(docs), str(ents), "{label}", None, 2)  # a 3-word mention, 2-word windows
    assert [(e.words, e.spans, e.ignore) for e in ex] == [(["City", "Paris"], [(1, 1, "Paris")], [(0, 0)])]
