"""The runner on real stages: fan-out from the documents, fan-in into one stage, batching and statistics."""

from __future__ import annotations

import pytest

from glinker.errors import DataError, StageError
from glinker.pipeline import Pipeline, loads_spec
from glinker.types import Mention

FAN = """name: fan
settings: {batch_size: 2}
stages:
  caps: {type: test_caps, min_length: 3}
  years: {type: regex_mentions, patterns: {year: '\\b(1[89]\\d\\d|20\\d\\d)\\b'}}
  given: {type: given_mentions, field: spans, default_label: gold}
  merged: {type: merge_mentions, inputs: [caps, years, given], overlap: longest}
  summary: {type: test_summary, inputs: [caps, years, merged]}
output: summary
"""

TEXTS = [
    {"text": "Ada Lovelace wrote in 1843 about the Engine.", "meta": {"spans": [[0, 12]]}},
    "Nothing here at all.",
    {"text": "In 1969 Apollo landed.", "meta": {"spans": [{"start": 8, "end": 14, "label": "mission"}]}},
]


@pytest.fixture
def fan_pipeline(fresh_registry):
    return Pipeline(loads_spec(FAN, reg=fresh_registry))


def test_fan_out_fan_in_results(fan_pipeline):
    out = fan_pipeline(TEXTS)
    assert out[0] == {"counts": [3, 1, 3], "texts": ["1843", "Ada", "Ada Lovelace", "Engine", "Lovelace"]}
    assert out[1] == {"counts": [1, 0, 1], "texts": ["Nothing"]}
    assert out[2] == {"counts": [1, 1, 2], "texts": ["1969", "Apollo"]}


def test_merge_prefers_longest_and_keeps_given_labels(fan_pipeline):
    res = list(fan_pipeline.run(TEXTS))
    merged = res[0].outputs["merged"][0]
    assert [(m.text, m.label) for m in merged] == [("Ada Lovelace", "gold"), ("1843", "year"), ("Engine", "capitalized")]
    apollo = res[1].outputs["merged"][0]
    assert [(m.text, m.label) for m in apollo] == [("1969", "year"), ("Apollo", "capitalized")]


def test_order_batches_and_stats(fan_pipeline):
    assert fan_pipeline.order.index("merged") > max(fan_pipeline.order.index(s) for s in ("caps", "years", "given"))
    assert fan_pipeline.order[-1] == "summary"
    results = list(fan_pipeline.run(TEXTS))
    assert [len(r.documents) for r in results] == [2, 1]
    st = fan_pipeline.stats
    assert st.documents == 3 and st.batches == 2
    assert st.stages["caps"].calls == 2 and st.stages["caps"].items == 5
    assert st.stages["years"].items == 2
    assert st.stages["summary"].items == 3
    assert all(s.seconds >= 0 for s in st.stages.values())
    table = st.table()
    assert "merged" in table and "3 documents in 2 batches" in table


def test_warm_up_runs_once(fan_pipeline):
    import glinker_test_plugin

    before = glinker_test_plugin.CapitalizedWords.warmed
    fan_pipeline(TEXTS)
    fan_pipeline(TEXTS)
    assert glinker_test_plugin.CapitalizedWords.warmed == before + 1


def test_bad_document_names_its_position(fan_pipeline):
    with pytest.raises(DataError, match=r"input\[1\]"):
        fan_pipeline(["fine", {"txt": "typo"}])


def test_bad_given_span_is_a_clear_error(fan_pipeline):
    with pytest.raises(DataError, match="span 0 of document '0' is invalid"):
        fan_pipeline([{"text": "short", "meta": {"spans": [[0, 99]]}}])


def test_stage_crash_names_the_stage_and_line(fresh_registry):
    from glinker.pipeline import Stage, StageParams

    class Boom(Stage):
        type_name = "boom"
        Params = StageParams
        accepts = ("mentions",)
        produces = "mentions"

        def run(self, documents, inputs):
            raise ZeroDivisionError("no")

    fresh_registry.register(Boom)
    p = Pipeline(loads_spec("name: b\nstages:\n  c: {type: test_caps}\n  x: {type: boom, input: c}\n",
                            reg=fresh_registry, source="b.yaml"))
    with pytest.raises(StageError, match=r"stage 'x' \(b.yaml:4\).*ZeroDivisionError"):
        p(["Hello"])


def _custom(fresh_registry, ret, produces="mentions"):
    from glinker.pipeline import Stage, StageParams

    class Custom(Stage):
        type_name = "custom"
        Params = StageParams
        accepts = ("documents",)

        def run(self, documents, inputs):
            return ret(documents)

    Custom.produces = produces
    fresh_registry.register(Custom)
    return Pipeline(loads_spec("name: c\nstages:\n  a: {type: custom}\n  s: {type: merge_mentions, inputs: [a]}\n",
                               reg=fresh_registry, source="c.yaml"))


@pytest.mark.parametrize("ret, msg", [
    (lambda docs: {"not": "a list"}, "returned a dict, not a list"),
    (lambda docs: [[]], "1 entries for a batch of 2 documents"),
    (lambda docs: [[{"start": 0}] for _ in docs], "for document 0 a list holding a dict, not a list of glinker"),
    (lambda docs: [[Mention(start=5, end=500, text="x")] for _ in docs], "a mention at 5-500, outside its"),
])
def test_a_custom_stage_returning_the_wrong_shape_is_named(fresh_registry, ret, msg):
    """A plugin's output is checked after each batch: results never go missing, and the error names the plugin,
    not the built-in stage that reads its output."""
    p = _custom(fresh_registry, ret)
    with pytest.raises(StageError) as e:
        p(["Hello there", "Bye"])
    assert "stage 'a' (c.yaml:3)" in str(e.value) and msg in str(e.value)


def test_library_errors_inside_a_stage_name_the_stage(fresh_registry):
    def bad(docs):
        raise DataError("the thing is wrong", where="thing.txt", fix="fix it")

    p = _custom(fresh_registry, bad)
    with pytest.raises(DataError) as e:
        p(["Hello"])
    assert str(e.value).startswith("[E600] stage 'a' (c.yaml:3): thing.txt: the thing is wrong")


def test_default_ids_continue_across_calls_and_numeric_ids_are_read(fan_pipeline):
    def ids(texts):
        return [d.id for r in fan_pipeline.run(texts) for d in r.documents]

    assert ids(["One 1999.", "Two 2001."]) + ids(["Three 1950.", {"id": 7, "text": "Four 1960."}]) == ["0", "1", "2", "7"]


def test_builtin_stage_names_cannot_be_taken(fresh_registry):
    from glinker.errors import ConfigError
    from glinker.pipeline import Stage

    class Mine(Stage):
        type_name = "regex_mentions"

        def run(self, documents, inputs):
            return [[] for _ in documents]

    with pytest.raises(ConfigError, match="built-in stage type"):
        fresh_registry.register(Mine)


def test_kb_and_model_given_by_the_caller_are_relative_to_the_current_directory(tmp_path, monkeypatch):
    """--kb kb/mine on the command line is ./kb/mine, even when the pipeline's folder has a kb/mine of its own (the
    YAML's own paths stay relative to the pipeline file)."""
    (tmp_path / "pipes" / "kb" / "mine").mkdir(parents=True)
    (tmp_path / "work" / "kb" / "mine").mkdir(parents=True)
    (tmp_path / "work" / "m").mkdir()
    yml = tmp_path / "pipes" / "p.yaml"
    yml.write_text("name: p\nkb: kb/mine\nstages:\n  m: {type: alias_mentions}\n")
    monkeypatch.chdir(tmp_path / "work")
    assert Pipeline.from_yaml(yml).context.resolve_path("kb/mine") == str(tmp_path / "pipes" / "kb" / "mine")
    p = Pipeline.from_yaml(yml, kb="kb/mine", model="m")
    assert p.context.resolve_path(p.context.kb) == str(tmp_path / "work" / "kb" / "mine")
    assert p.context.model == str(tmp_path / "work" / "m")
    assert Pipeline.from_yaml(yml, model="glinker-bi-minilm").context.model == "glinker-bi-minilm"  # a name stays


def test_a_missing_kb_folder_says_where_it_was_looked_for(tmp_path, monkeypatch):
    from glinker.errors import GlinkerError

    (tmp_path / "pipes").mkdir()
    yml = tmp_path / "pipes" / "p.yaml"
    yml.write_text("name: p\nkb: ../kb_out/mine\nstages:\n  m: {type: alias_mentions}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GlinkerError) as e:
        Pipeline.from_yaml(yml).link(["Paris"])
    msg = str(e.value)
    assert "does not exist" in msg and str(tmp_path / "pipes") in msg and "--out kb_out/mine" in msg
