"""What an integrator passes by mistake to `Pipeline.link`/`run` (session 34 walkthrough): bytes are not decoded
silently, None or bytes as the documents argument is a DataError, a JSON-null meta is no meta."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from glinker.errors import DataError
from glinker.pipeline import Pipeline, loads_spec
from glinker.types import Document


@pytest.fixture(scope="module")
def pipe():
    return Pipeline(loads_spec("name: t\nstages:\n  m: {type: regex_mentions, patterns: {city: 'Paris'}}\n"))


def test_bytes_are_refused_not_decoded(pipe):
    for doc, key in (({"text": b"Paris"}, "text"), ({"id": b"doc-1", "text": "Paris"}, "id"),
                     ({"text": bytearray(b"Paris"), "src": "x"}, "text")):
        with pytest.raises(DataError) as e:
            pipe.link([doc])
        assert e.value.where == f"input[0].{key}" and "decode it first" in e.value.fix
    with pytest.raises(ValidationError):
        Document(text=bytearray(b"Paris"))
    with pytest.raises(ValidationError, match="decode it first"):
        Document(id=b"doc-1", text="Paris")


@pytest.mark.parametrize("bad", [None, b"Paris is in France.", 7])
def test_the_documents_argument_must_be_an_iterable_of_documents(pipe, bad):
    for call in (lambda: pipe.link(bad), lambda: list(pipe.run(bad)), lambda: pipe(bad)):
        with pytest.raises(DataError, match="documents must be a list"):
            call()


def test_a_json_null_meta_is_no_meta(pipe):
    assert pipe.link([{"text": "Paris", "meta": None}]) == pipe.link([{"text": "Paris"}])
    [m] = pipe([{"id": "a", "text": "Paris", "src": "x", "meta": None}])
    assert [x.text for x in m] == ["Paris"]
    docs = list(pipe._documents([{"id": "a", "text": "Paris", "src": "x", "meta": None}]))
    assert docs[0].meta == {"src": "x"}


def test_load_pipeline_overrides_take_a_path_and_kb_look_ups_a_string(tmp_path):
    import glinker
    from glinker.errors import ConfigError

    p = tmp_path / "p.yaml"
    p.write_text("name: t\nstages:\n  m: {type: regex_mentions, patterns: {city: 'Paris'}}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        glinker.load_pipeline(str(p), kb={"adapter": "jsonl", "source": "x.jsonl"})
    assert e.value.where == "load_pipeline(kb=...)" and "`kb:` block" in e.value.fix
    with pytest.raises(ConfigError, match="model= takes a model name"):
        glinker.load_pipeline(str(p), model=3)


def test_kb_alias_look_up_of_a_non_string_is_a_data_error(tmp_path):
    from glinker.kb import KB
    from glinker.kb.adapters import load_adapter
    from glinker.kb.build import build_kb

    src = tmp_path / "e.jsonl"
    src.write_text('{"id": "Q90", "label": "Paris"}\n', encoding="utf-8")
    build_kb(load_adapter("jsonl", str(src)), tmp_path / "kb", None)
    with KB.open(tmp_path / "kb") as kb:
        assert kb.lookup_alias("PARIS") == ["Q90"]
        with pytest.raises(DataError, match="an alias is a string"):
            kb.lookup_alias(None)


def test_run_batch_takes_what_link_takes(pipe):
    """`run_batch` (public, thread-safe) failed inside its first stage on strings, blaming the stage ("a bug"), and
    gave a Document without an id the id None."""
    res = pipe.run_batch(["Paris is big.", {"text": "Paris again", "id": 7}, Document(text="and Paris")])
    assert [d.id for d in res.documents] == ["0", "7", "2"]
    assert [[m.text for m in ms] for ms in res.output] == [["Paris"], ["Paris"], ["Paris"]]
    with pytest.raises(DataError, match="document 0 has type int"):
        pipe.run_batch([3])


def test_a_pipeline_refuses_pickling_with_what_to_do(pipe):
    import pickle

    with pytest.raises(TypeError, match=r"cannot be pickled .* glinker.load_pipeline"):
        pickle.dumps(pipe)
