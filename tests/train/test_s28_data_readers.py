"""Session 28: fine-tuning on one's own data, the readers' side (glinker/eval/datasets.py).

1. natural-text eval-style JSON is split into words as the model splits text for prediction, so entities ending
   before punctuation ("John Smith," "Acme Corp.") are kept; the eval reading of the same files is unchanged;
2. a misspelt annotation key ("nre", "entites") is an error naming the file, the record and a close match;
3. BIO files are recognised by their content (.data, .iob2, a .txt whose first token is "["), and a file that is
   not JSON is not told to delete a "truncated last line";
4. an entity's "name" must be what its "pos" points at;
5. an empty BIO token is an error, and a trailing tab is named as such;
6. CoNLL tag types map to names in any case (B-per is person).
"""

from __future__ import annotations

import json
import logging
import os
import unicodedata
from pathlib import Path

import pytest

import glinker.eval.datasets as D
from glinker.errors import DataError
from glinker.model.words import split_words

REPO = Path(__file__).resolve().parents[2]
BIO = "John\tB-PER\nSmith\tI-PER\nvisited\tO\nParis\tB-LOC\n\nMary\tB-PER\nleft\tO\nBerlin\tB-LOC\n\n"
NATURAL = [
    {"sentence": "I met John Smith, the CEO of Acme Corp.",
     "entities": [{"name": "John Smith", "type": "person", "pos": [6, 16]},
                  {"name": "Acme Corp", "type": "organization", "pos": [29, 38]}]},
    {"sentence": "Paris (France) is large.",
     "entities": [{"name": "Paris", "type": "location", "pos": [0, 5]},
                  {"name": "France", "type": "location", "pos": [7, 13]}]},
    {"sentence": "Google's office in Zürich opened.",
     "entities": [{"name": "Google", "type": "organization", "pos": [0, 6]},
                  {"name": "Zürich", "type": "location", "pos": [19, 25]}]},
    {"sentence": "She moved to Berlin.", "entities": [{"name": "Berlin", "type": "location", "pos": [13, 19]}]},
]


@pytest.fixture
def shared() -> Path:
    root = Path(os.environ.get("GLINKER_DATA", REPO.parent / "shared" / "data"))
    if not (root / "ner").is_dir():
        pytest.skip(f"real data not found at {root} (set GLINKER_DATA)")
    return root


def write(path: Path, obj) -> Path:
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


def words_of(ex: D.TrainingExample) -> list[tuple[str, str]]:
    return [(" ".join(ex.tokens[s:e + 1]), t) for s, e, t in ex.spans]


# ------------------------------------------------------------------------------------------------------------
# 1. natural text: the model's word splitter


def test_entities_of_natural_text_ending_before_punctuation_are_kept(tmp_path):
    f = write(tmp_path / "natural.json", NATURAL)
    exs = list(D.iter_training(f))
    assert [words_of(e) for e in exs] == [
        [("John Smith", "person"), ("Acme Corp", "organization")],
        [("Paris", "location"), ("France", "location")],
        [("Google", "organization"), ("Zürich", "location")],
        [("Berlin", "location")]]
    assert exs[0].tokens == ["I", "met", "John", "Smith", ",", "the", "CEO", "of", "Acme", "Corp", "."]
    assert exs[1].meta["line"] == 1  # the record's line, for error messages


def test_training_words_are_the_words_the_model_predicts_on(tmp_path):
    # the model's splitter, not gliner's plain regex: a decomposed accent stays in its word, a zero-width space or a
    # byte-order mark is no word
    text = "Jose\u0301 met \u200bAnna in Mu\u0308nchen, today."
    at = {w: [text.index(w), text.index(w) + len(w)] for w in ("Jose\u0301", "Anna", "Mu\u0308nchen")}
    ents = [{"name": "Jose\u0301", "type": "person", "pos": at["Jose\u0301"]},
            {"name": "Anna", "type": "person", "pos": at["Anna"]},
            {"name": "Mu\u0308nchen", "type": "location", "pos": at["Mu\u0308nchen"]}]
    f = write(tmp_path / "marks.json", [{"sentence": text, "entities": ents}])
    ex = next(D.iter_sentence_json_training(f))
    assert ex.tokens == split_words(text).words == ["Jose\u0301", "met", "Anna", "in", "Mu\u0308nchen", ",", "today", "."]
    assert words_of(ex) == [("Jose\u0301", "person"), ("Anna", "person"), ("Mu\u0308nchen", "location")]
    # a span starting on the invisible character before a word (or on a space) cuts no word: kept
    ents2 = [{"name": "\u200bAnna", "type": "person", "pos": [at["Anna"][0] - 1, at["Anna"][1]]}]
    ex2 = next(D.iter_sentence_json_training(write(tmp_path / "z.json", [{"sentence": text, "entities": ents2}])))
    assert words_of(ex2) == [("Anna", "person")]


def test_spans_that_still_cut_a_word_are_dropped_with_a_count_and_the_first(tmp_path, caplog):
    recs = [{"sentence": "Johnny lives in Australian Paris.",
             "entities": [{"name": "John", "type": "person", "pos": [0, 4]},
                          {"name": "Australia", "type": "location", "pos": [16, 25]},
                          {"name": "Paris", "type": "location", "pos": [27, 32]}]}]
    f = write(tmp_path / "cut.json", recs)
    with caplog.at_level(logging.WARNING, logger="glinker.eval.datasets"):
        (ex,) = list(D.iter_sentence_json_training(f))
    assert words_of(ex) == [("Paris", "location")]
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "dropped 2 entities whose offsets are not on word boundaries" in msg
    assert "'John' at [0, 4] of record 0" in msg and f"{f}:1" in msg


def test_char_span_to_words():
    sp = split_words("I met John Smith, the CEO.")
    f = lambda a, b: D.char_span_to_words(sp.starts, sp.ends, a, b)
    assert f(6, 16) == (2, 3)  # John Smith
    assert f(5, 16) == (2, 3)  # a leading space cuts nothing
    assert f(6, 17) == (2, 4)  # with the comma
    assert f(7, 16) is None and f(6, 15) is None  # inside a word
    assert f(5, 6) is None  # a space only: no word


def test_eval_reading_keeps_the_sentence_and_gold_char_spans(tmp_path):
    """The benchmark reader is not the training reader: the text and gold character spans stay as written, the
    file read alone scores as its folder."""
    folder = tmp_path / "nat"
    folder.mkdir()
    write(folder / "test.json", NATURAL)
    write(folder / "labels.json", ["person", "organization", "location"])
    for ds in (D.read_ner_dataset(folder), D.read_annotated_set(folder / "test.json")):
        assert [e.text for e in ds.examples] == [r["sentence"] for r in NATURAL]
        assert [(g.start, g.end, g.label, g.text) for g in ds.examples[0].spans] == [
            (6, 16, "person", "John Smith"), (29, 38, "organization", "Acme Corp")]
        assert ds.n_entities == 7 and ds.name == "nat"


@pytest.mark.shared_data
def test_real_training_files_keep_as_many_entities_or_more(shared):
    """Kept entities per sentence-JSON training file (whitespace split before session 28 -> the model's splitter):
    bc5cdr 9,375 -> 9,375, ncbi 5,123 -> 5,123, conll2003 dev 5,923 -> 5,923, conll2003 train 23,419 -> 23,420 (the
    one more: "U.S" at pos [0, 3] of "U.S. Open ... at the U.S ." now ends on a word boundary, U . S)."""
    train = shared / "ner" / "train"
    if not train.is_dir():
        pytest.skip("no ner/train")
    got = {f"{f.parent.name}/{f.name}": sum(len(e.spans) for e in D.iter_sentence_json_training(f))
           for f in (train / "bc5cdr" / "train.json", train / "ncbi" / "train.json",
                     train / "conll2003" / "dev.json", train / "conll2003" / "train.json") if f.is_file()}
    assert got == {"bc5cdr/train.json": 9375, "ncbi/train.json": 5123, "conll2003/dev.json": 5923,
                   "conll2003/train.json": 23420}


@pytest.mark.shared_data
def test_real_eval_gold_is_read_the_same_as_a_folder_and_as_a_file(shared):
    """Gold counts of the benchmark folders (README numbers) and of their test.json read alone: unchanged."""
    expect = {"CrossNER_AI": (431, 1804), "CrossNER_literature": (416, 2263), "CrossNER_music": (465, 3334),
              "CrossNER_politics": (650, 4200), "CrossNER_science": (543, 3088), "conll2003": (3453, 5648),
              "mit-movie": (2442, 5338), "mit-restaurant": (1520, 3150)}
    ev = shared / "ner" / "eval"
    if not ev.is_dir():
        pytest.skip("no ner/eval")
    for folder in D.find_ner_datasets(ev):
        a, b = D.read_ner_dataset(folder), D.read_annotated_set(folder / "test.json")
        assert (len(a.examples), a.n_entities) == expect[folder.name]
        assert [(e.text, [(g.start, g.end, g.label) for g in e.spans]) for e in a.examples] == \
            [(e.text, [(g.start, g.end, g.label) for g in e.spans]) for e in b.examples]


# ------------------------------------------------------------------------------------------------------------
# 2. misspelt keys


def test_a_misspelt_ner_key_is_an_error_naming_the_record_and_a_close_match(tmp_path):
    recs = [{"tokenized_text": ["John", "lives", "in", "Paris"], "ner": [[0, 0, "person"], [3, 3, "location"]]},
            {"tokenized_text": ["Mary", "left", "Berlin"], "nre": [[0, 0, "person"], [2, 2, "location"]]}]
    f = write(tmp_path / "a.jsonl", "\n".join(json.dumps(r) for r in recs) + "\n")
    with pytest.raises(DataError) as ei:
        list(D.iter_training(f))
    msg = str(ei.value)
    assert f"{f}:2" in msg and "'nre'" in msg and "did you mean 'ner'?" in msg and "record 1" in msg
    g = write(tmp_path / "a.json", recs)  # a JSON list: the record's index (and the line it starts on)
    with pytest.raises(DataError) as ei:
        list(D.iter_training(g))
    assert "record 1 has no 'ner'" in str(ei.value) and str(g) in str(ei.value)


def test_a_misspelt_entities_key_is_an_error_in_training_and_in_evaluation(tmp_path):
    recs = [{"sentence": "John lives in Paris", "entities": [{"name": "John", "type": "person", "pos": [0, 4]}]},
            {"sentence": "Mary left Berlin", "entites": [{"name": "Mary", "type": "person", "pos": [0, 4]}]}]
    folder = tmp_path / "set"
    folder.mkdir()
    f = write(folder / "test.json", recs)
    write(folder / "labels.json", ["person"])
    for read in (lambda: list(D.iter_training(f)), lambda: D.read_ner_dataset(folder),
                 lambda: D.read_annotated_set(f), lambda: D.load_ner_datasets(folder)):
        with pytest.raises(DataError) as ei:
            read()
        msg = str(ei.value)
        assert "record 1" in msg and "'entites'" in msg and "did you mean 'entities'?" in msg and str(f) in msg


def test_extra_keys_beside_the_annotation_and_records_without_any_are_read(tmp_path):
    recs = [{"tokenized_text": ["John", "left"], "ner": [[0, 0, "person"]], "id": "a1", "source": "web"},
            {"tokenized_text": ["Nothing", "here"]},
            {"tokenized_text": ["Nor", "here"], "ner": [], "meta": {"x": 1}}]
    assert [e.spans for e in D.iter_training(write(tmp_path / "g.json", recs))] == [[(0, 0, "person")], [], []]
    sents = [{"sentence": "John left", "entities": [{"name": "John", "type": "person", "pos": [0, 4]}], "id": 7},
             {"sentence": "Nothing here"}]
    assert [e.spans for e in D.iter_training(write(tmp_path / "s.json", sents))] == [[(0, 0, "person")], []]


def test_a_record_without_ner_but_with_an_unknown_key_and_no_close_match_is_an_error(tmp_path):
    f = write(tmp_path / "g.json", [{"tokenized_text": ["a", "b"], "spans": [[0, 0, "x"]]}])
    with pytest.raises(DataError) as ei:
        list(D.iter_training(f))
    assert "'spans'" in str(ei.value) and "did you mean" not in str(ei.value) and '"ner": []' in str(ei.value)


def test_a_misspelt_pilener_field_is_named_with_a_close_match(tmp_path):
    rec = {"doc_question_pairID": "1:0", "tagName": "city", "input": "Paris is big", "ouput": "[\"Paris\"]"}
    f = write(tmp_path / "p.jsonl", json.dumps(rec) + "\n")
    with pytest.raises(DataError) as ei:
        list(D.iter_pilener(f))
    assert "'ouput' (did you mean 'output'?)" in str(ei.value)


# ------------------------------------------------------------------------------------------------------------
# 3. format by content


@pytest.mark.parametrize("name", ["tiny.data", "tiny.iob2", "tiny.bio", "tiny.tsv", "tiny.json", "train.txt"])
def test_bio_is_recognised_by_content_whatever_the_extension(tmp_path, name):
    f = write(tmp_path / name, BIO)
    assert D.sniff_training_format(f) == "bio"
    assert [words_of(e) for e in D.iter_training(f)] == [
        [("John Smith", "person"), ("Paris", "location")], [("Mary", "person"), ("Berlin", "location")]]


def test_a_bio_file_whose_first_token_is_a_bracket_is_bio(tmp_path):
    f = write(tmp_path / "bracket.txt", "[\tO\nJohn\tB-PER\n]\tO\n\n")
    assert D.sniff_training_format(f) == "bio"
    assert [words_of(e) for e in D.iter_training(f)] == [[("John", "person")]]
    for name, text in (("brace.data", "{ O\nJohn B-PER\n} O\n\n"), ("c.data", "# sent_id = 1\n[\tO\nJohn\tB-PER\n\n")):
        g = write(tmp_path / name, text)
        assert D.sniff_training_format(g) == "bio"
        assert [words_of(e) for e in D.iter_training(g)] == [[("John", "person")]]


def test_json_is_recognised_by_content_whatever_the_extension(tmp_path):
    recs = [{"tokenized_text": ["John", "left"], "ner": [[0, 0, "person"]]}]
    for name in ("a.conll", "a.txt", "a.data"):
        assert D.sniff_training_format(write(tmp_path / name, recs)) == "gliner"
    long = [{"sentence": "word " * 3000, "entities": []}]  # a first line longer than the sniffed part
    assert D.sniff_training_format(write(tmp_path / "long.jsonl", json.dumps(long[0]) + "\n")) == "sentence_json"
    assert D.sniff_training_format(write(tmp_path / "pretty.json", json.dumps(recs, indent=2))) == "gliner"


def test_a_file_that_is_not_json_is_not_told_to_delete_a_truncated_line(tmp_path):
    f = write(tmp_path / "notes.jsonl", "hello world\nmore text\n")
    with pytest.raises(DataError) as ei:
        list(D.iter_training(f))
    assert f"{f}:1" in str(ei.value) and "truncated" not in str(ei.value) and "not JSON" in str(ei.value)
    # a broken record in the middle: fix it (not delete it)
    g = write(tmp_path / "mid.jsonl", '{"tokenized_text": ["a"], "ner": []}\n{"tokenized_text": ["b"\n'
                                      '{"tokenized_text": ["c"], "ner": []}\n')
    with pytest.raises(DataError) as ei:
        list(D.iter_training(g))
    assert f"{g}:2" in str(ei.value) and "truncated" not in str(ei.value)
    # a cut last line still is
    h = write(tmp_path / "cut.jsonl", '{"tokenized_text": ["a"], "ner": []}\n{"tokenized_text": ["b"')
    with pytest.raises(DataError) as ei:
        list(D.iter_training(h))
    assert f"{h}:2" in str(ei.value) and "truncated last line" in str(ei.value)


def test_a_folder_finds_iob2_files(tmp_path):
    write(tmp_path / "train.iob2", BIO)
    assert [f.name for f in D.training_files(tmp_path, "train")] == ["train.iob2"]
    assert len(list(D.iter_training(tmp_path, split="train"))) == 2


# ------------------------------------------------------------------------------------------------------------
# 4. name vs the text at pos


def test_a_name_that_is_not_the_text_at_pos_is_an_error(tmp_path):
    recs = [{"sentence": "John lives in Paris", "entities": [{"name": "Paris", "type": "location", "pos": [0, 4]}]}]
    folder = tmp_path / "m"
    folder.mkdir()
    f = write(folder / "test.json", recs)
    write(folder / "labels.json", ["location"])
    for read in (lambda: list(D.iter_training(f)), lambda: D.read_ner_dataset(folder)):
        with pytest.raises(DataError) as ei:
            read()
        msg = str(ei.value)
        assert f"{f}:1" in msg and "'Paris'" in msg and "'John'" in msg and "end exclusive" in msg
        assert "[14, 19]" in msg  # where the name is


def test_a_name_differing_only_in_case_spaces_or_composition_is_accepted(tmp_path):
    text = "I saw  New York and Mu\u0308nchen"
    recs = [{"sentence": text, "entities": [
        {"name": "new york", "type": "location", "pos": [7, 15]},
        {"name": unicodedata.normalize("NFC", "Mu\u0308nchen"), "type": "location", "pos": [20, 28]},
        {"type": "location", "pos": [20, 28]}]}]  # no name: nothing to compare
    (ex,) = list(D.iter_training(write(tmp_path / "ok.json", recs)))
    assert len(ex.spans) == 3


# ------------------------------------------------------------------------------------------------------------
# 5. empty tokens and trailing tabs in BIO


@pytest.mark.parametrize("text,line", [("John\tB-PER\n\tO\nx\tO\n\n", 2), ("0\tJohn\tB-PER\n1\t\tO\n2\tx\tO\n\n", 2),
                                       ("x\tO\n \tO\nJohn\tB-PER\n\n", 2)])
def test_an_empty_bio_token_is_an_error(tmp_path, text, line):
    f = write(tmp_path / "e.txt", text)
    with pytest.raises(DataError) as ei:
        list(D.iter_bio(f))
    assert f"{f}:{line}" in str(ei.value) and "empty token" in str(ei.value)


def test_an_empty_bio_token_is_an_error_in_evaluation_too(tmp_path):
    f = write(tmp_path / "test.conll", "x\tO\n\tO\nJohn\tB-PER\n\n")
    with pytest.raises(DataError) as ei:
        D.load_ner_datasets(f)
    assert f"{f}:2" in str(ei.value)


def test_a_trailing_tab_is_named_as_an_empty_last_column(tmp_path):
    f = write(tmp_path / "t.txt", "John\tB-PER\t\nSmith\tI-PER\n\n")
    with pytest.raises(DataError) as ei:
        list(D.iter_bio(f))
    msg = str(ei.value)
    assert f"{f}:1" in msg and "last column is empty" in msg and "expected a token and its tag" not in msg


# ------------------------------------------------------------------------------------------------------------
# 6. CoNLL type names in any case


def test_conll_tag_types_map_to_names_in_any_case(tmp_path):
    f = write(tmp_path / "t.txt", "John\tB-per\nSmith\tI-per\nof\tO\nAcme\tB-Org\nin\tO\nParis\tB-LOC\nx\tB-misc\n"
                                  "y\tB-Drug\n\n")
    (ex,) = list(D.iter_bio(f))
    assert words_of(ex) == [("John Smith", "person"), ("Acme", "organization"), ("Paris", "location"),
                            ("x", "misc"), ("y", "Drug")]
    (raw,) = list(D.iter_bio(f, type_names=None))  # no mapping: as written
    assert [t for _, _, t in raw.spans] == ["per", "Org", "LOC", "misc", "Drug"]
    (own,) = list(D.iter_bio(f, type_names={"drug": "chemical"}))  # a mapping of one's own: any case too
    assert [t for _, _, t in own.spans][-1] == "chemical"
    ds = D.load_ner_datasets(write(tmp_path / "test.conll", "John\tB-per\nleft\tO\n\n"))[0]
    assert ds.labels == ["person"]


def test_bilou_tags_are_read(tmp_path):
    f = write(tmp_path / "t.txt", "John\tB-PER\nSmith\tL-PER\nand\tO\nMary\tU-PER\n\n")
    assert D.sniff_training_format(f) == "bio"
    (ex,) = list(D.iter_bio(f))
    assert words_of(ex) == [("John Smith", "person"), ("Mary", "person")]


def test_records_without_annotation_but_with_metadata_keys_are_sentences_without_entities(tmp_path):
    """An id or a source beside the text of a sentence that has no entities is no misspelt annotation key (the
    review found such records refused, in evaluation too)."""
    sents = [{"sentence": "Obama visited Paris.", "entities": [{"name": "Obama", "type": "person", "pos": [0, 5]}],
              "id": "a1"}, {"sentence": "Nothing here.", "id": "a2"}]
    assert [e.spans for e in D.iter_training(write(tmp_path / "s.json", sents))] == [[(0, 0, "person")], []]
    toks = [{"tokenized_text": ["Nothing", "here"], "id": 5, "source": "web"}]
    assert [e.spans for e in D.iter_training(write(tmp_path / "g.json", toks))] == [[]]
    d = tmp_path / "evalset"
    d.mkdir()
    write(d / "test.json", sents)
    (d / "labels.json").write_text('["person"]')
    assert [len(e.spans) for e in D.iter_ner_eval_json(d / "test.json")] == [1, 0]
