"""`glinker pipeline validate|show` through the real console entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
GOOD = """name: demo
stages:
  years: {type: regex_mentions, patterns: {year: '\\b\\d{4}\\b'}}
  caps: {type: regex_mentions, patterns: {name: '\\b[A-Z][a-z]+\\b'}}
  merged: {type: merge_mentions, inputs: [years, caps]}
"""


def glinker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "glinker", *args], capture_output=True, text=True)


@pytest.fixture
def good(tmp_path):
    f = tmp_path / "good.yaml"
    f.write_text(GOOD)
    return f


def test_validate_ok(good):
    r = glinker("pipeline", "validate", str(good))
    assert r.returncode == 0
    assert "pipeline 'demo', 3 stage(s), output 'merged'" in r.stdout
    assert "years -> caps -> merged" in r.stdout


def test_validate_reports_every_error_with_line_and_exit_2():
    r = glinker("pipeline", "validate", str(HERE / "bad" / "12_missing_input.yaml"))
    assert r.returncode == 2
    assert "12_missing_input.yaml:8" in r.stderr and "fix: did you mean 'mentions'?" in r.stderr


def test_show_text_and_dot(good):
    r = glinker("pipeline", "show", str(good))
    assert r.returncode == 0 and "merged [merge_mentions -> mentions]  inputs: years, caps  <- output" in r.stdout
    r = glinker("pipeline", "show", "--format", "dot", str(good))
    assert r.returncode == 0
    assert r.stdout.startswith('digraph "demo" {') and '"years" -> "merged" [label="mentions"];' in r.stdout


def test_help_everywhere():
    for args in ([], ["pipeline"], ["pipeline", "validate"], ["pipeline", "show"]):
        r = glinker(*args, "--help")
        assert r.returncode == 0 and "Usage" in r.stdout, (args, r.stderr)


def test_missing_file():
    r = glinker("pipeline", "validate", "does/not/exist.yaml")
    assert r.returncode == 2 and "E202" in r.stderr and "not found" in r.stderr


def test_validate_names_stages_left_without_a_kb_or_model(tmp_path):
    f = tmp_path / "nokb.yaml"
    f.write_text("name: x\nstages:\n  m: {type: alias_mentions}\n  c: {type: dense_candidates, input: m}\n"
                 "  r: {type: rescore, input: c, weights: {alias: 1.0}}\n")
    r = glinker("pipeline", "validate", str(f))
    assert r.returncode == 2 and f"{f}:3: stage 'm' (alias_mentions) needs a kb" in r.stderr
    assert "stage 'c' (dense_candidates) needs a model" in r.stderr and "--kb" in r.stderr
    assert "stage 'r' (rescore) needs a model" not in r.stderr  # no biencoder weight: no model
    f.write_text("name: x\nkb: kb_out/x\nmodel: m\n" + f.read_text().split("\n", 1)[1])
    r = glinker("pipeline", "validate", str(f))  # names that do not exist: found now, not at the first document
    assert r.returncode == 2 and "model 'm' is not a folder, a shipped model" in r.stderr
    (tmp_path / "m").mkdir()  # relative to the pipeline file
    r = glinker("pipeline", "validate", str(f))  # a folder that is no checkpoint: what loading it would say
    assert r.returncode == 2 and "no gliner_config.json" in r.stderr
    (tmp_path / "m" / "gliner_config.json").write_text("{}")
    r = glinker("pipeline", "validate", str(f))  # a KB not built yet: a warning
    assert r.returncode == 0 and "warning: [E252]" in r.stderr and "KB folder 'kb_out/x' does not exist" in r.stderr
    (tmp_path / "kb_out" / "x").mkdir(parents=True)
    r = glinker("pipeline", "validate", str(f))
    assert r.returncode == 0 and "warning" not in r.stderr
    f.write_text(f.read_text().replace("model: m", "model: someone/gliner-bi-large"))  # a hub id: not checked
    assert glinker("pipeline", "validate", str(f)).returncode == 0


def test_header_problems_name_their_line_and_a_kb_file_is_said_as_such(tmp_path):
    """A misspelt `model:` or a `kb:` naming the entities file (not a KB folder): the line of the key, the shipped
    name it resembles, and for the file the two ways to use it (the earlier fix, `kb build --out FILE`, failed)."""
    (tmp_path / "ents.jsonl").write_text('{"id": "Q1", "label": "Acme"}\n')
    f = tmp_path / "p.yaml"
    f.write_text("name: x\nmodel: glinker-bi-minlm\nkb: ents.jsonl\nstages:\n  m: {type: alias_mentions}\n"
                 "  c: {type: alias_candidates, input: m}\n")
    r = glinker("pipeline", "validate", str(f))
    assert r.returncode == 2 and f"{f}:2: the pipeline: model 'glinker-bi-minlm'" in r.stderr
    assert "did you mean 'glinker-bi-minilm'?" in r.stderr
    f.write_text(f.read_text().replace("glinker-bi-minlm", "none"))
    r = glinker("pipeline", "validate", str(f))
    err = " ".join(r.stderr.split())
    assert r.returncode == 2 and f"{f}:3: the pipeline" in err and "kb 'ents.jsonl' is a file" in err, err
    ents = tmp_path / "ents.jsonl"
    assert f'kb: {{adapter: jsonl, source: "{ents}"}}' in err and f"glinker kb build -a jsonl -s {ents}" in err
    # the block suggested for each kind of file is one the pipeline takes
    import re
    import sqlite3

    (tmp_path / "ents.tsv").write_text("id\tlabel\nQ1\tAcme\n")
    with sqlite3.connect(tmp_path / "ents.db") as db:
        db.execute("CREATE TABLE t (id TEXT, label TEXT)")
    (tmp_path / "o'neil?x").mkdir()  # a quote and a '?' in the path: the suggested block and URL still work
    with sqlite3.connect(tmp_path / "o'neil?x" / "q.db") as db:
        db.execute("CREATE TABLE t (id TEXT, label TEXT)")
    for name in ("ents.tsv", "ents.db", "ents.jsonl", "\"o'neil?x/q.db\""):
        f.write_text(f"name: x\nmodel: none\nkb: {name}\nstages:\n  m: {{type: alias_mentions}}\n")
        err = " ".join(glinker("pipeline", "validate", str(f)).stderr.split())
        block = re.search(r"`(kb: \{.*?\})`", err).group(1).replace("TABLE", "t")
        f.write_text(f"name: x\nmodel: none\n{block}\nstages:\n  m: {{type: alias_mentions}}\n")
        r = glinker("pipeline", "validate", str(f))
        assert r.returncode == 0 and "warning" not in r.stderr, (name, block, r.stderr)  # its source found
    # a --kb given on the command line is not the file's line
    import glinker as gl
    from glinker.errors import GlinkerError

    f.write_text("name: x\nmodel: none\nkb: kbdir\nstages:\n  m: {type: alias_mentions}\n")
    with pytest.raises(GlinkerError) as ei:
        gl.load_pipeline(str(f), kb=str(tmp_path / "ents.jsonl"))
    assert f"{f}:3" not in str(ei.value) and "is a file" in str(ei.value)


def test_a_misspelt_type_key_is_said_as_one(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("name: x\nstages:\n  a: {type: regex_mentions, patterns: {y: 'x'}}\n  d:\n    input: a\n"
                 "    typ: alias_mentions\n")
    r = glinker("pipeline", "validate", str(f))
    assert r.returncode == 2 and f"{f}:6: stage 'd' has no `type`: its key 'typ' looks like `type` misspelt" in r.stderr
    assert "fix: write `type: alias_mentions`" in r.stderr
    f.write_text("name: x\nstages:\n  a: {type: regex_mentions, patterns: {y: 'x'}}\n  d:\n    input: a\n"
                 "    type_map: {}\n")  # an option of a stage type (rescore's), not a misspelt `type`
    r = glinker("pipeline", "validate", str(f))
    assert r.returncode == 2 and "has no `type`" in r.stderr and "looks like `type` misspelt" not in r.stderr


def test_every_problem_of_a_kb_block_is_said_at_once(tmp_path):
    """A misspelt option and a misspelt column field in one kb block took two runs of validate; an option left
    out by a typo is not said again as missing (its consequence)."""
    f = tmp_path / "k.yaml"
    f.write_text("name: x\nmodel: none\nkb:\n  adapter: sql\n  source: 'sqlite:///x.db'\n  options:\n    tabel: t\n"
                 "    table: t\n    columns: {lable: name}\nstages:\n  m: {type: alias_mentions}\n")
    r = glinker("pipeline", "validate", str(f))
    assert r.returncode == 2 and "2 problem(s)" in r.stderr, r.stderr
    assert f"{f}:7: kb.options.tabel: unknown option" in r.stderr and f"{f}:9: kb.options.columns.lable" in r.stderr
    # without `table:` beside the typo (the shipped company pipeline with both typos): the typo is read as the
    # option it was meant to be, so the column mapping is checked in the same run
    f.write_text(f.read_text().replace("    table: t\n", ""))
    r = glinker("pipeline", "validate", str(f))
    assert r.returncode == 2 and "2 problem(s)" in r.stderr, r.stderr
    assert f"{f}:7: kb.options.tabel: unknown option" in r.stderr and f"{f}:8: kb.options.columns.lable" in r.stderr
    f.write_text(f.read_text().replace("{lable: name}", "{label: name}"))
    r = glinker("pipeline", "validate", str(f))
    assert r.returncode == 2 and "1 problem(s)" in r.stderr and "give exactly one of table" not in r.stderr
    # a misspelt option read as the one meant: its own problems are said at the key as written, and the options
    # after it are still checked
    f.write_text("name: x\nmodel: none\nkb:\n  adapter: sql\n  source: 'sqlite:///x.db'\n  options:\n    table: t\n"
                 "    colums: {lable: name}\n    alias_table: 'x y'\nstages:\n  m: {type: alias_mentions}\n")
    r = glinker("pipeline", "validate", str(f))
    assert r.returncode == 2 and "3 problem(s)" in r.stderr, r.stderr
    assert f"{f}:8: kb.options.colums: unknown option" in r.stderr and f"{f}:8: kb.options.colums.lable" in r.stderr
    assert f"{f}:9: kb.options.alias_table: invalid SQL identifier" in r.stderr
