"""The Python API audit (s31): what `Pipeline.link`, `load_pipeline`, `given_mentions`, `BiEncoder` and `KB` take,
refuse and promise. Each test names the finding it pins."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import glinker
from glinker.errors import ConfigError, DataError, PipelineError
from glinker.pipeline import Pipeline, loads_spec
from glinker.types import Document, LinkedDocument
from tests.link.conftest import ENTITIES

REPO = Path(__file__).resolve().parents[2]



WRITE = """name: w
model: {model}
kb: {kb}
settings: {{batch_size: 1}}
stages:
  dictionary: {{type: alias_mentions}}
  by_alias: {{type: alias_candidates, input: dictionary}}
  links: {{type: select, input: by_alias}}
  out: {{type: write_links, input: links, path: {out}}}
"""


@pytest.fixture
def writing(tmp_path: Path, tiny_model: Path, tiny_kb: Path) -> tuple[Pipeline, Path]:
    """A linking pipeline whose last stage writes out.jsonl (in tmp_path), one document per batch."""
    p = tmp_path / "w.yaml"
    p.write_text(WRITE.format(model=tiny_model, kb=tiny_kb, out=tmp_path / "out.jsonl"))
    return glinker.load_pipeline(str(p)), tmp_path / "out.jsonl"


def written(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] if out.exists() else []


GIVEN = Pipeline(loads_spec("name: g\nstages:\n  m: {type: given_mentions}\n"))


# ---- finding 1: meta and id are checked before anything is linked ----------------------------------------------

def test_a_bad_meta_or_id_fails_before_the_first_document_is_linked_naming_the_key(writing):
    pipe, out = writing
    bad = [({"k": "\ud800"}, r"meta\['k'\]: the text holds a lone surrogate"),
           ({"v": np.arange(3)}, r"meta\['v'\] is a numpy array of shape \(3,\)"),
           ({"o": {"x": [object()]}}, r"meta\['o'\]\['x'\]\[0\] is an object"),
           ({"deep": json.loads('{"a":' * 40 + "1" + "}" * 40)}, "nested more than 32 levels deep")]
    for meta, said in bad:
        with pytest.raises(DataError, match=said) as ei:
            pipe.link([{"id": "a", "text": "Paris"}, {"id": "b", "text": "Berlin", "meta": meta}])
        assert ei.value.where == "input[1].meta" and ei.value.fix
    with pytest.raises(DataError) as ei:
        pipe.link([{"id": "c", "text": "Paris"}, {"id": "\ud800", "text": "Berlin"}])
    assert ei.value.where == "input[1].id"
    assert written(out) == [] and pipe.stats.documents == 0  # nothing linked, nothing written


def test_numpy_scalars_in_meta_and_numpy_ids_are_taken_as_python_values(writing):
    pipe, out = writing
    meta = {"n": np.int64(3), "f": np.float32(0.5), "ok": np.bool_(True), "s": np.str_("web"),
            "l": [np.int64(1), (np.float64(2.5), "x")], "nan": float("nan")}
    mine = Document(id="d", text="Paris", meta=meta)
    docs = pipe.link([mine, {"id": np.int64(7), "text": "Berlin"}])
    got = docs[0].meta
    assert got["n"] == 3 and type(got["n"]) is int and type(got["f"]) is float and got["ok"] is True
    assert type(got["s"]) is str and got["l"] == [1, [2.5, "x"]] and type(got["l"][0]) is int
    assert mine.meta["n"] is meta["n"]  # the caller's Document is not changed
    assert docs[1].id == "7"
    rows = written(out)
    assert [r["id"] for r in rows] == ["d", "7"]
    assert rows[0]["meta"] == {"n": 3, "f": 0.5, "ok": True, "s": "web", "l": [1, [2.5, "x"]], "nan": None}


def test_meta_values_the_writers_write_are_linked_as_before(writing):
    """Dates (pandas' Timestamps are datetimes), Decimals, UUIDs, enums and sets were always linked and written
    (pydantic writes them as JSON): the meta check refused them (review of s31)."""
    import datetime
    import decimal
    import enum
    import uuid

    class Kind(enum.Enum):
        NEWS = "news"

    pipe, out = writing
    meta = {"published": datetime.date(1996, 8, 30), "at": datetime.datetime(2024, 1, 2, 3, 4, 5),
            "price": decimal.Decimal("1.50"), "uid": uuid.UUID(int=1), "kind": Kind.NEWS, "tags": {"a"}}
    doc = pipe.link([Document(id="d", text="Paris", meta=meta)])[0]
    assert doc.meta["published"] == datetime.date(1996, 8, 30)
    assert written(out)[0]["meta"] == {"published": "1996-08-30", "at": "2024-01-02T03:04:05", "price": "1.50",
                                       "uid": "00000000-0000-0000-0000-000000000001", "kind": "news", "tags": ["a"]}


def test_meta_iterators_are_refused_not_written_empty_and_set_items_are_checked():
    """Checking a generator with the JSON writer consumed it, and `[]` was written (review of s31); a set's items
    are checked as a list's, so the message names the item."""
    from glinker.types import checked_meta

    for v in ((x for x in [1]), map(str, [1]), iter([1])):
        with pytest.raises(DataError, match=r"meta\['x'\] is a"):
            checked_meta({"x": v}, "input[0].meta")
    with pytest.raises(DataError, match=r"meta\['x'\]\[0\]: the text holds a lone surrogate"):
        checked_meta({"x": {"\ud800"}}, "input[0].meta")
    assert checked_meta({"x": {np.int64(3)}}, "input[0].meta") == {"x": [3]}


def test_serve_and_link_share_one_meta_check():
    from glinker import serve

    with pytest.raises(DataError) as ei:
        serve.parse_request(json.dumps({"documents": [{"text": "x", "meta": {"tags": ["a", "\ud800"]}}]}).encode())
    assert ei.value.where == "documents[0].meta" and "meta['tags'][1]" in ei.value.message


# ---- finding 2: given spans are checked against the text ---------------------------------------------------------

def test_a_given_span_whose_text_differs_is_refused_naming_utf16_offsets():
    t = "\U0001f44d Berlin is the capital of Germany."
    utf16 = [{"start": 3, "end": 9, "text": "Berlin"}]  # as JavaScript counts: the emoji is two code units
    with pytest.raises(DataError) as ei:
        GIVEN.link([{"id": "x", "text": t, "meta": {"mentions": utf16}}])
    e = ei.value
    assert e.where.endswith("document id 'x': meta.mentions[0]") and "'Berlin'" in e.message and "'erlin '" in e.message
    assert "UTF-16 code units" in e.fix and "utf-16-le" in e.fix
    # the last span of such a text can end past the Python string's end: still told
    with pytest.raises(DataError, match="UTF-16") as ei:
        GIVEN.link([{"id": "y", "text": "\U0001f44d Paris", "meta": {"mentions": [{"start": 3, "end": 8,
                                                                                  "text": "Paris"}]}}])
    assert "UTF-16" in ei.value.fix
    with pytest.raises(DataError) as ei:  # another mismatch: no encoding to blame
        GIVEN.link([{"id": "z", "text": "Paris is nice.", "meta": {"mentions": [{"start": 0, "end": 5,
                                                                                "text": "Rome"}]}}])
    assert "UTF-16" not in ei.value.fix and "'Rome'" in ei.value.message
    ok = GIVEN.link([{"id": "w", "text": t, "meta": {"mentions": [{"start": 2, "end": 8, "text": "Berlin"}]}}])
    assert [m.text for m in ok[0]] == ["Berlin"]


@pytest.mark.parametrize("span", [[5, 5], [13, 14], [13, 14, "person"]])
def test_empty_and_blank_given_spans_are_left_out_with_a_warning(span, caplog):
    """Nothing to link there, and gold files hold such spans (the evaluation reader takes them, as misses): left
    out with a warning naming the span, not a run stopped half-way (first a refusal, review of s31)."""
    import logging

    with caplog.at_level(logging.WARNING, logger="glinker.stages.given"):
        out = GIVEN.link([{"id": "y", "text": "Douglas Adams lived in Paris.", "meta": {"mentions": [[0, 7], span]}}])
    assert [m.text for m in out[0]] == ["Douglas"]
    assert "document id 'y': meta.mentions[1]" in caplog.text and "empty or cover no word" in caplog.text


def test_pipeline_span_vectors_and_the_model_agree_on_a_span_covering_no_word(tiny_model):
    from glinker.model import BiEncoder
    from glinker.stages.resources import span_vectors

    m = BiEncoder.from_pretrained(tiny_model)
    texts = ["Douglas Adams lived in Paris."]
    with pytest.raises(DataError, match="covers no word"):
        m.span_vectors(texts, [[(13, 14)]])
    with pytest.raises(DataError, match="covers no word"):  # was a zero vector, which found arbitrary entities
        span_vectors(m, texts, [[(0, 7), (13, 14)]])
    a, = span_vectors(m, texts, [[(0, 7), (1, 5)]])
    b, = m.span_vectors(texts, [[(0, 7), (1, 5)]])
    np.testing.assert_allclose(a, b, atol=1e-5)


# ---- finding 3: dicts with other keys are read as glinker link reads a JSONL record -------------------------------

def test_other_keys_of_a_dict_go_into_meta_as_in_glinker_link():
    aida = {"id": "947testa CRICKET", "text": "LONDON 1996-08-30", "mentions": [{"start": 0, "end": 6,
                                                                              "mention": "LONDON"}]}
    [ms] = GIVEN.link([aida])
    assert [(m.start, m.end, m.text) for m in ms] == [(0, 6, "LONDON")]
    docs = GIVEN.run([{"id": 1, "text": "Paris", "lang": "en"},
                      {"text": "Rome", "lang": "en", "source": "web", "meta": {"lang": "it"}}])
    got = [d for r in docs for d in r.documents]
    assert got[0].id == "1" and got[0].meta == {"lang": "en"}
    assert got[1].meta == {"lang": "it", "source": "web"}  # the record's own meta wins, as on the command line


def test_a_dict_without_text_is_told_so_and_one_with_a_bad_text_is_not_told_it_has_none():
    with pytest.raises(DataError) as ei:
        GIVEN.link([{"id": "a", "body": "Paris"}])
    assert ei.value.where == "input[0].text" and "has no `text`" in ei.value.message and "body" in ei.value.message
    with pytest.raises(DataError) as ei:
        GIVEN.link([{"text": 7, "lang": "en"}])
    assert ei.value.where == "input[0].text" and "has no" not in ei.value.message
    assert "string" in ei.value.fix
    with pytest.raises(DataError) as ei:
        GIVEN.link([{"text": "x", "lang": "en", "meta": "web"}])
    assert ei.value.where == "input[0].meta"


# ---- finding 4: batch_size overrides are checked -----------------------------------------------------------------

@pytest.mark.parametrize("bad", [0, -5, "8", 2.5, True, 10**6])
def test_a_bad_batch_size_is_a_config_error(tmp_path, bad):
    p = tmp_path / "g.yaml"
    p.write_text("name: g\nstages:\n  m: {type: given_mentions}\n")
    with pytest.raises(ConfigError, match="batch_size must be a whole number") as ei:
        glinker.load_pipeline(str(p), batch_size=bad)
    assert ei.value.where == "batch_size"
    pipe = glinker.load_pipeline(str(p), batch_size=np.int64(2))
    assert [len(r.documents) for r in pipe.run(["a", "b", "c"])] == [2, 1]
    with pytest.raises(ConfigError, match="batch_size"):
        pipe.run(["a", "b"], batch_size=bad)  # at the call, before any batch
    with pytest.raises(ConfigError, match="batch_size"):
        pipe.link(["a", "b"], batch_size=bad)
    assert pipe.stats.documents == 3


# ---- finding 5: a BiEncoder used in a forked child does not hang -------------------------------------------------

@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork here")
def test_a_model_used_in_a_child_forked_after_it_predicted_with_threads_does_not_hang():
    script = textwrap.dedent("""
        import logging, os, signal, sys
        logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(name)s %(message)s")
        import torch
        from glinker.model import BiEncoder
        torch.set_num_threads(2)
        m = BiEncoder.from_pretrained("glinker-bi-minilm")
        m.predict(["John Smith works at Google."], ["person"])   # the parent's pool has two threads
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            signal.alarm(60)                                       # it hung here forever
            r = m.predict(["John Smith works at Google."], ["person"])
            print("child", len(r[0]), torch.get_num_threads(), flush=True)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print("status", status, "parent threads", torch.get_num_threads(), flush=True)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240, cwd=REPO)
    assert "status 0 parent threads 2" in r.stdout, r.stdout + r.stderr
    assert "child 1 1" in r.stdout  # its entity found, with one torch thread
    warned = [x for x in r.stdout.splitlines() if x.startswith("glinker.locks")]
    assert len(warned) == 1 and "forked" in warned[0] and "spawn" in warned[0]


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork here")
def test_a_forked_child_whose_first_call_comes_from_another_thread_does_not_hang():
    """torch's thread count is per thread once a thread ran torch: the limit is set at the fork, in the forking
    thread (whose pool is gone), not only in whichever thread calls first (review of s31: the main thread hung)."""
    script = textwrap.dedent("""
        import os, signal, sys, threading, torch
        from glinker.locks import torch_guarded
        torch.set_num_threads(2)
        def work():
            x = torch.randn(600, 600)
            return float((x @ x).sum())
        with torch_guarded():
            work()
        pid = os.fork()
        if pid == 0:
            signal.alarm(60)
            t = threading.Thread(target=lambda: torch_guarded().__enter__())
            t.start(); t.join()
            with torch_guarded():
                print("child", torch.get_num_threads(), flush=True)
                work()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print("status", status, flush=True)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert "child 1" in r.stdout and "status 0" in r.stdout, r.stdout + r.stderr


# ---- finding 6: a mention's place in its batch does not leak -----------------------------------------------------

def test_a_stage_mention_subclass_equals_the_plain_mention_read_back():
    """A mention stage returns its own Mention subclass (a span vector in a private attribute): it equals the same
    mention read back from JSON (review of s31: False, the classes differed)."""
    from glinker.types import Mention

    class Encoded(Mention):
        pass

    m = Encoded(start=0, end=5, text="Paris", label="location", score=0.9)
    back = Mention.model_validate_json(m.model_dump_json())
    assert m == back and back == m
    assert m != Mention(start=0, end=5, text="Paris", label="person", score=0.9)


def test_linked_records_do_not_depend_on_their_batch_and_survive_json(writing):
    pipe, _ = writing
    b = {"id": "b", "text": "Berlin and Paris"}
    alone = pipe.link([b])[0]
    second = pipe.link(["Paris", b], batch_size=2)[1]
    assert alone == second and alone.links[1].mention == second.links[1].mention
    assert LinkedDocument.model_validate_json(alone.model_dump_json()) == alone
    assert "doc_index" not in repr(alone.links[0].mention)
    m = GIVEN.link([{"text": "Rome", "meta": {"mentions": [[0, 4]]}}])[0][0]
    assert m.doc_index == 0 and m.model_copy(update={"doc_index": 5}) == m  # kept in memory, not compared


# ---- finding 7: generated ids never repeat an id across calls ----------------------------------------------------

def test_generated_ids_skip_ids_given_in_earlier_calls(writing):
    pipe, out = writing
    pipe.link([{"id": "1", "text": "Paris"}, {"id": "3#2", "text": "Rome"}])
    pipe.link(["Berlin", "France"])   # 0, then 1: given in the first call
    pipe.link(["Berlin", "Germany"])  # 2, then 3 (free: only 3#2 was given)
    pipe.link([{"id": "5", "text": "Paris"}])
    pipe.link(["a", "b"])             # 4, then 5: given before
    ids = [r["id"] for r in written(out)]
    assert ids == ["1", "3#2", "0", "1#2", "2", "3", "5", "4", "5#2"]
    assert len(set(ids)) == len(ids)


# ---- finding 8: load_pipeline checks the resources as `glinker pipeline validate` does ----------------------------

def test_load_pipeline_refuses_a_misspelt_model_and_missing_banks_and_kbs(tmp_path, tiny_model):
    p = tmp_path / "p.yaml"
    p.write_text("name: t\nmodel: glinker-bi-mini\nstages:\n  ner: {type: biencoder_mentions, labels: [person]}\n")
    with pytest.raises(PipelineError) as ei:
        glinker.load_pipeline(str(p))
    assert ei.value.problems[0].code == "E251" and "'glinker-bi-mini'" in str(ei.value)
    p.write_text(f"name: t\nmodel: {tiny_model}\nstages:\n  ner: {{type: biencoder_mentions, label_bank: nothere}}\n")
    with pytest.raises(PipelineError) as ei:
        glinker.load_pipeline(str(p))
    [problem] = ei.value.problems
    assert problem.code == "E252" and "label_bank 'nothere'" in problem.message and problem.line == 4
    p.write_text("name: t\nkb: no-kb\nstages:\n  m: {type: alias_mentions}\n")
    with pytest.raises(PipelineError) as ei:
        glinker.load_pipeline(str(p))
    assert "KB folder 'no-kb' does not exist" in str(ei.value) and "stage 'm'" in str(ei.value)
    assert "glinker kb build" in ei.value.problems[0].fix
    # the same problems `glinker pipeline validate` lists (there a missing KB is a warning: it may be built first)
    r = subprocess.run([sys.executable, "-m", "glinker", "pipeline", "validate", str(p)], capture_output=True,
                       text=True)
    assert "KB folder 'no-kb' does not exist" in r.stderr
    # opting out: a KB built after loading
    pipe = glinker.load_pipeline(str(p), check_resources=False)
    assert pipe.name == "t"
    # the pipeline's own KB that no stage uses is no error
    p.write_text("name: t\nkb: no-kb\nstages:\n  m: {type: given_mentions}\n")
    assert glinker.load_pipeline(str(p)).name == "t"


# ---- finding 9: docs/model.md's example scores are the shipped model's -------------------------------------------

def test_model_doc_example_scores_are_the_shipped_models():
    from glinker.model import BiEncoder

    doc = (REPO / "docs" / "model.md").read_text(encoding="utf-8")
    shown = [(m[1], m[2], float(m[3])) for m in re.finditer(
        r'"text": "([^"]+)", "label": "([^"]+)", "score": ([0-9.]+)', doc.split("```")[1])]
    m = BiEncoder.from_pretrained("glinker-bi-minilm")
    bank = m.encode_labels(["person", "organization", "location"])
    got = m.predict(["John Smith works at Google in London."], bank, threshold=0.5)[0]
    assert shown == [(e["text"], e["label"], round(e["score"], 2)) for e in got]
    said = re.search(r'"a human being" scores John Smith ([0-9.]+) where "person" scores\s+him ([0-9]\.[0-9]+)', doc)
    desc = m.predict(["John Smith works at Google in London."], {"person": "a human being"}, threshold=0.0)[0][0]
    name = m.predict(["John Smith works at Google in London."], ["person"], threshold=0.0)[0][0]
    assert said and (float(said[1]), float(said[2])) == (round(desc["score"], 2), round(name["score"], 2))


# ---- finding 10: the KB API takes lists, and k >= 1 --------------------------------------------------------------

def test_kb_methods_refuse_one_string_and_a_k_below_one(tiny_kb, tmp_path):
    import shutil

    from glinker.kb import KB

    with KB.open(tiny_kb) as kb:
        assert [e.id for e in kb.get(["Q90"])] == ["Q90"]
        assert [e.id for e in kb.get(x for x in ["Q90", "Q142"])] == ["Q90", "Q142"]  # any iterable, read once
        for call, fix in ((lambda: kb.get("Q90"), "kb.get(['Q90'])"), (lambda: kb.rids("Q90"), "kb.rids(['Q90'])"),
                          (lambda: kb.prior("Paris"), "kb.prior(['Paris'])"),
                          (lambda: kb.link_stats("Paris"), "kb.link_stats(['Paris'])"),
                          (lambda: kb.fuzzy_many("Paris"), "kb.fuzzy(name)")):
            with pytest.raises(DataError, match="not one str") as ei:
                call()
            assert fix in ei.value.fix
        q = np.ones((1, kb.manifest.dim), np.float32)
        for k in (0, -1, True, 2.5):
            with pytest.raises(ConfigError, match="k must be a whole number >= 1"):
                kb.search_vectors(q, k=k)
        with pytest.raises(ConfigError, match="nprobe"):
            kb.search_vectors(q, k=3, nprobe=0)
        assert len(kb.search_vectors(q, k=np.int64(3))[1][0]) == 3
    copy = tmp_path / "kb"
    shutil.copytree(tiny_kb, copy)
    with KB.open(copy, writable=True) as kb:
        n = len(kb)
        with pytest.raises(DataError, match="not one str"):
            kb.remove("Q90")  # was the ids "Q", "9" and "0"
        with pytest.raises(DataError, match="not one Entity"):
            kb.upsert(ENTITIES[0], None)
        assert len(kb) == n


# ---- finding 11: predict's flags and label sets -----------------------------------------------------------------

def test_predict_refuses_flags_that_are_not_bools_and_takes_per_text_sets(tiny_model):
    from glinker.model import BiEncoder

    m = BiEncoder.from_pretrained(tiny_model)
    texts = ["John Smith works at Google in London.", "Paris is in France."]
    for kw in ({"flat_ner": "no"}, {"flat_ner": None}, {"multi_label": 1}, {"multi_label": "yes"}):
        with pytest.raises(ConfigError, match="must be True or False") as ei:
            m.predict(texts, ["person"], **kw)
        assert ei.value.where == next(iter(kw))
    assert m.predict(texts, ["person"], flat_ner=np.bool_(False), threshold=0.0) == \
        m.predict(texts, ["person"], flat_ner=False, threshold=0.0)
    lists = m.predict(texts, (["location", "person"], ["location"]), threshold=0.0)  # a set's names: sorted
    assert m.predict(texts, ({"location", "person"}, {"location"}), threshold=0.0) == lists
    assert m.predict(texts, [frozenset({"location", "person"}), ["location"]], threshold=0.0) == lists
    assert m.predict(texts, {"person", "location"}, threshold=0.0) == m.predict(texts, ["location", "person"],
                                                                              threshold=0.0)
    with pytest.raises(DataError, match="no labels"):
        m.predict(texts, set())


def test_a_span_that_cuts_a_word_is_read_as_the_whole_word_as_documented(tiny_model):
    from glinker.model import BiEncoder

    m = BiEncoder.from_pretrained(tiny_model)
    v = m.span_vectors(["Douglas Adams lived in Paris."], [[(1, 5), (0, 7), (8, 13)]])[0]
    np.testing.assert_array_equal(v[0], v[1])
    assert not np.allclose(v[1], v[2])
    assert "widened to the whole word" in (REPO / "docs" / "model.md").read_text(encoding="utf-8")


# ---- minor: dir(glinker) ---------------------------------------------------------------------------------------

def test_dir_glinker_lists_the_lazy_names():
    assert {"Mention", "LinkedDocument", "Document", "GlinkerError", "load_pipeline"} <= set(dir(glinker))


def test_a_name_cut_at_its_apostrophe_is_made_whole() -> None:
    """The model reads O'Brien as three words and often ends the span at "O" ("Tim O" on AIDA testa): the span is
    extended over the apostrophe and the capitalised word; a span found inside the addition is dropped; a
    possessive, a lowercase word after the apostrophe or a longer last word are left alone."""
    from glinker.stages.mentions import whole_apostrophe_names

    t = "Tim O'Gorman met O’Donnell and Obama's aide O'clock D. O Reilly"

    def ent(a: str, at: int = 0, label: str = "person") -> dict:
        s = t.index(a, at)
        return {"start": s, "end": s + len(a), "text": a, "label": label}

    od = t.index("O’Donnell")
    got = whole_apostrophe_names(t, [ent("Tim O"), ent("Gorman"), ent("O", od), ent("O", od, "org"), ent("Obama"),
                                     ent("O", t.index("O'clock")), ent("D. O Reilly")])
    assert [(e["text"], e["label"]) for e in got] == [("Tim O'Gorman", "person"), ("O’Donnell", "person"),
                                                       ("O’Donnell", "org"), ("Obama", "person"), ("O", "person"),
                                                       ("D. O Reilly", "person")]
    plain = [ent("Obama")]
    assert whole_apostrophe_names(t, plain) is plain  # nothing to change: the same list

    def spans(text: str, *given: tuple) -> list:
        ents = [{"start": text.index(a), "end": text.index(a) + len(a), "text": a, "label": lab, "score": sc}
                for a, lab, sc in given]
        return [(e["text"], e["label"], e["score"]) for e in whole_apostrophe_names(text, ents)]

    # not over a possessive or a caps 'S; a span the extension would cross keeps both as they were; the same span
    # twice keeps the best score; a decomposed accent stays with its letter
    assert spans("Tim O'Brien's goal", ("Tim O", "p", .8)) == [("Tim O'Brien", "p", .8)]
    assert spans("WORLD WAR I'S LEGACY", ("WORLD WAR I", "p", .8)) == [("WORLD WAR I", "p", .8)]
    assert spans("KING GEORGE I'LL NEVER", ("KING GEORGE I", "p", .8)) == [("KING GEORGE I", "p", .8)]
    assert spans("Mary O'Brien-O'Connor spoke", ("Mary O", "p", .8)) == [("Mary O'Brien-O'Connor", "p", .8)]
    assert spans("Tim O'Brien-led team", ("Tim O", "p", .8)) == [("Tim O'Brien", "p", .8)]
    assert spans("Tim O'Gorman Group said", ("Tim O", "p", .8), ("Gorman Group", "o", .9)) == [
        ("Tim O", "p", .8), ("Gorman Group", "o", .9)]
    assert spans("Tim O'Gorman said", ("Tim O", "p", .6), ("Tim O'Gorman", "p", .9)) == [("Tim O'Gorman", "p", .9)]
    import unicodedata

    nfd = unicodedata.normalize("NFD", "Tim O'Méara spoke")
    assert spans(nfd, ("Tim O", "p", .8)) == [(nfd[:12], "p", .8)] and nfd[12] == " " and "\u0301" in nfd[:12]
