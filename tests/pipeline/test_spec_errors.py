"""Each malformed pipeline in bad/ declares, in its first line, the code, line and message it must produce."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from glinker.errors import PipelineError
from glinker.pipeline import load_spec, loads_spec

BAD = sorted((Path(__file__).parent / "bad").glob("*.yaml"))


def _expectation(path: Path) -> tuple[str, int, list[str]]:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    m = re.match(r"# expect: (E\d+) line (\d+) (.*)", first)
    assert m, f"{path.name}: first line must be '# expect: E### line N \"text\" ...'"
    return m.group(1), int(m.group(2)), shlex.split(m.group(3))


def test_there_are_at_least_12_distinct_malformed_files():
    codes = {_expectation(p)[0] for p in BAD}
    assert len(BAD) >= 12 and len(codes) >= 12


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_malformed_pipeline_reports_code_line_and_message(path: Path):
    code, line, fragments = _expectation(path)
    with pytest.raises(PipelineError) as info:
        load_spec(path)
    err = info.value
    matching = [p for p in err.problems if p.code == code and p.line == line]
    assert matching, f"no {code} at line {line}; got: " + "; ".join(f"{p.code}@{p.line} {p.message}" for p in err.problems)
    text = matching[0].render()
    for frag in fragments:
        assert frag in text, f"{frag!r} not in {text!r}"
    assert f"{path}:{line}" in text
    assert matching[0].fix, "every problem must carry a fix"


def test_every_problem_is_reported_at_once():
    text = """name: many
stages:
  a: {type: regex_mention, patterns: {y: "[0-9]+"}}
  b: {type: merge_mentions, inputs: [a, c], overlp: longest}
  d: {type: given_mentions, input: b}
"""
    with pytest.raises(PipelineError) as info:
        loads_spec(text, source="many.yaml")
    got = {(p.code, p.line) for p in info.value.problems}
    assert {("E230", 3), ("E220", 4), ("E241", 4), ("E243", 5)} <= got
    assert str(info.value).startswith("4 problem(s) in pipeline many.yaml") or "problem(s)" in str(info.value)


def test_valid_pipeline_keeps_file_order_and_infers_edges():
    spec = loads_spec("""name: ok
stages:
  years: {type: regex_mentions, patterns: {year: '\\b\\d{4}\\b'}}
  caps: {type: regex_mentions, patterns: {name: '\\b[A-Z][a-z]+\\b'}}
  merged: {type: merge_mentions, inputs: [years, caps], overlap: longest}
""")
    assert list(spec.stages) == ["years", "caps", "merged"]
    assert spec.stages["merged"].inputs == ["years", "caps"]
    assert spec.stages["years"].inputs == ["documents"]
    assert spec.output == "merged"
    assert spec.stages["merged"].params.overlap == "longest"


def test_yaml_anchors_and_merge_keys_work():
    spec = loads_spec("""name: anchors
x-caps: &caps {type: regex_mentions, patterns: {name: '[A-Z][a-z]+'}}
stages:
  a: *caps
  b: {<<: *caps, ignore_case: true}
  m: {type: merge_mentions, inputs: [a, b]}
""")
    assert spec.stages["b"].params.ignore_case is True


def test_a_bad_input_is_not_also_reported_as_unconnected(caplog):
    text = "name: t\nstages:\n  a: {type: regex_mentions, patterns: {y: '[0-9]+'}}\n  b: {type: merge_mentions, input: [a]}\n"
    with caplog.at_level("WARNING"), pytest.raises(PipelineError) as info:
        loads_spec(text, source="t.yaml")
    assert [p.code for p in info.value.problems] == ["E216"]
    assert "feed no other stage" not in caplog.text  # no advice about a file that does not load


def test_yaml_booleans_and_numbers_as_names_say_quote_it():
    text = "name: t\nstages:\n  1: {type: regex_mentions, patterns: {y: '[0-9]+', no: 'No'}}\n  yes: {type: merge_mentions, inputs: ['1']}\n  on: {type: merge_mentions, inputs: ['1']}\n"
    with pytest.raises(PipelineError) as info:
        loads_spec(text, source="t.yaml")
    msg = str(info.value)
    assert "duplicate key True (first defined on line 3) ('on' read as True: quote it)" in msg
    assert "quote it: YAML reads unquoted yes/no/on/off/true/false as booleans" in msg


def test_a_type_that_is_not_a_name_and_a_folder_as_the_file(tmp_path):
    with pytest.raises(PipelineError, match="has a `type` that is a list, not a name"):
        loads_spec("name: t\nstages:\n  a: {type: [regex_mentions]}\n")
    with pytest.raises(PipelineError, match="cannot read the pipeline file: it is a folder"):
        load_spec(tmp_path)


def test_a_plugin_that_fails_as_it_is_imported_is_named(tmp_path, monkeypatch):
    from glinker.pipeline.registry import StageRegistry

    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('broken at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = StageRegistry()
    reg._paths["broken"] = "broken_plugin:Stage"
    with pytest.raises(PipelineError) as info:
        loads_spec("name: t\nstages:\n  a: {type: broken}\n", reg=reg)
    assert "E231" in str(info.value) and "RuntimeError: broken at import" in str(info.value)


def test_stage_values_keep_their_yaml_type():
    text = "name: t\nstages:\n  a: {type: regex_mentions, patterns: {y: '[0-9]+'}}\n  b: {type: merge_mentions, inputs: [a]}\n"
    ok = loads_spec(text.replace("inputs: [a]}", "inputs: [a], overlap: longest}"))
    assert ok.stages["b"].params.overlap == "longest"
    bad = "name: t\nkb: x\nstages:\n  m: {type: given_mentions}\n  c: {type: alias_candidates, input: m, top_k: 2.0}\n  s: {type: select, input: c, nil_threshold: '0.5'}\n"
    with pytest.raises(PipelineError) as info:
        loads_spec(bad, source="t.yaml")
    got = {(p.code, p.line) for p in info.value.problems}
    assert {("E221", 5), ("E221", 6)} <= got
    assert loads_spec(bad.replace("2.0", "2").replace("'0.5'", "1")).stages["s"].params.nil_threshold == 1.0


def test_a_key_written_beside_a_merge_key_overrides_the_merged_one(tmp_path):
    """`<<: *base` then `top_k: 7` was refused as a duplicate key: in YAML the mapping's own keys override merged
    ones, wherever they are written; a key written twice is still a duplicate."""
    from glinker.pipeline.yamlsrc import load_yaml

    f = tmp_path / "p.yaml"
    f.write_text("x-base: &base {type: alias_candidates, input: m, top_k: 3}\nstages:\n  c1:\n    <<: *base\n"
                 "    top_k: 7\n  c2:\n    top_k: 5\n    <<: *base\n  c3:\n    <<: *base\n    top_k: 1\n    top_k: 2\n")
    y = load_yaml(path=f)
    st = y.data["stages"]
    assert st["c1"] == {"type": "alias_candidates", "input": "m", "top_k": 7} and st["c2"]["top_k"] == 5
    assert [p.message for p in y.duplicates] == ["duplicate key 'top_k' (first defined on line 11)"]


def test_keys_beside_merge_keys_keep_their_own_lines(tmp_path):
    """A key written before `<<: *a` was placed at the anchor's line; `<<: [*a, *b]` lost the merged keys' lines."""
    from glinker.errors import PipelineError
    from glinker.pipeline.spec import load_spec

    f = tmp_path / "p.yaml"
    f.write_text("name: t\nmodel: none\nx-a: &a {type: regex_mentions, patterns: {year: '[0-9]{4}'}, nope: 1}\n"
                 "x-b: &b {type: alias_mentions, bogus: 2}\nstages:\n  m:\n    bad_key: 7\n    <<: *a\n"
                 "  n:\n    <<: [*a, *b]\n")
    try:
        load_spec(f)
        raise AssertionError("accepted")
    except PipelineError as e:
        at = sorted((p.line, p.message.split("'")[1], p.message.split("'")[3]) for p in e.problems)
        assert at == [(3, "nope", "m"), (3, "nope", "n"), (4, "bogus", "n"), (7, "bad_key", "m")], at
