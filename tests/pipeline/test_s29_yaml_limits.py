"""YAML aliases are bounded (audit finding 10): a "billion laughs" file, an anchor used inside its own value and a
document nested thousands deep are E201 errors at their line, in loading a pipeline and in `glinker pipeline
validate`, not minutes of memory growth or a RecursionError traceback. Ordinary anchors keep working."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import glinker
from glinker.errors import PipelineError
from glinker.pipeline.spec import load_spec, loads_spec
from glinker.pipeline.yamlsrc import MAX_ALIAS_VALUES, load_yaml

STAGES = "stages:\n  years: {type: regex_mentions, patterns: {year: '[0-9]{4}'}}\n"


def laughs(levels: int) -> str:
    """`levels` anchors of ten aliases each under `x-` keys (ignored by the schema): 10**levels values once expanded,
    in a dozen lines. Line 2 holds the first anchor, line 2 + k the k-th level."""
    rows = ["name: lol", "x-a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    rows += [f"x-a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(rows) + "\n" + STAGES


def test_alias_expansion_is_bounded(tmp_path):
    """5 levels: 111,110 values from a 7-line file (the audit's 8 levels took 1.4 GB in 30 s, still growing)."""
    f = tmp_path / "laughs.yaml"
    f.write_text(laughs(5), encoding="utf-8")
    t0 = time.perf_counter()
    with pytest.raises(PipelineError) as e:
        load_spec(f)
    p = e.value.problems[0]
    assert p.code == "E201" and p.where == f"{f}:6" and p.line == 6  # the line whose alias stands for the most
    assert "*a3 alone stands for" in p.message and f"at most {MAX_ALIAS_VALUES:,} values" in p.message
    assert "billion laughs" in (p.fix or "")
    with pytest.raises(PipelineError, match="aliases may add at most"):
        glinker.load_pipeline(str(f))
    # a hundred levels (10**100 values) is refused as fast: sizes are counted on the file's nodes, not expanded
    with pytest.raises(PipelineError, match="aliases may add at most"):
        loads_spec(laughs(100), source="huge.yaml")
    assert time.perf_counter() - t0 < 10


@pytest.mark.parametrize("text,line", [("name: &a [*a]\n" + STAGES, 1),
                                       ("name: t\nx-base: &b\n  k: 1\n  <<: *b\n" + STAGES, 4),
                                       ("name: t\nx-l: &l\n  - 1\n  - [2, *l]\n" + STAGES, 4)],
                         ids=["list", "merge", "nested"])
def test_a_recursive_anchor_is_an_error_at_its_alias(tmp_path, text, line):
    """`name: &a [*a]` ended in an unhandled RecursionError."""
    f = tmp_path / "recursive.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(PipelineError) as e:
        load_spec(f)
    p = e.value.problems[0]
    assert p.code == "E201" and p.where == f"{f}:{line}", p
    assert "inside the value of its own anchor" in p.message and "recursive alias" in p.message


def test_a_document_nested_thousands_deep_is_an_error():
    with pytest.raises(PipelineError) as e:
        load_yaml("name: " + "[" * 5000 + "]" * 5000 + "\n", source="deep.yaml")
    assert e.value.problems[0].code == "E201" and "nests too deeply" in e.value.problems[0].message
    assert e.value.problems[0].where == "deep.yaml:1"


def test_ordinary_anchors_aliases_and_merge_keys_still_load():
    """As docs/yaml-reference.md shows (`x-` keys hold anchors), and an anchor used many times within the limit."""
    spec = loads_spec("""name: anchors
x-caps: &caps {type: regex_mentions, patterns: {name: '[A-Z][a-z]+'}}
x-many: &many [""" + ", ".join(f"w{i}" for i in range(100)) + """]
x-uses: [""" + ", ".join(["*many"] * 100) + """]
stages:
  a: *caps
  b: {<<: *caps, ignore_case: true}
  m: {type: merge_mentions, inputs: [a, b]}
""")
    assert spec.stages["b"].params.ignore_case is True
    assert spec.stages["a"].params.patterns == spec.stages["b"].params.patterns
    loaded = load_yaml("a: &a {x: 1}\nb: *a\nc: [*a, *a]\n")
    assert loaded.data == {"a": {"x": 1}, "b": {"x": 1}, "c": [{"x": 1}, {"x": 1}]}


def glinker_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "glinker", *args], capture_output=True, text=True, timeout=120)


def test_pipeline_validate_refuses_both_without_a_traceback(tmp_path):
    """`glinker pipeline validate`, the command one runs to check a file from someone else, was affected too."""
    bomb = tmp_path / "laughs.yaml"
    bomb.write_text(laughs(6), encoding="utf-8")  # a million values
    r = glinker_cli("pipeline", "validate", str(bomb))
    assert r.returncode == 2 and f"[E201] {bomb}:7:" in r.stderr and "aliases may add at most" in r.stderr, r.stderr
    rec = tmp_path / "recursive.yaml"
    rec.write_text("name: &a [*a]\n" + STAGES, encoding="utf-8")
    r = glinker_cli("pipeline", "validate", str(rec))
    assert r.returncode == 2 and f"[E201] {rec}:1:" in r.stderr and "recursive alias" in r.stderr
    assert "Traceback" not in r.stderr and "RecursionError" not in r.stderr
    shipped = Path(__file__).resolve().parents[2] / "pipelines" / "rules.yaml"
    assert glinker_cli("pipeline", "validate", str(shipped)).returncode == 0
