"""A `kb:` block read from its source is checked by `glinker pipeline validate` (adapter, option names, option
values the adapter checks without connecting), each problem at its line; nothing connects and no model loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from glinker.errors import PipelineError

BLOCK = """name: companies
model: glinker-bi-minilm
kb:
  adapter: {adapter}
  source: postgresql+psycopg2://nobody@127.0.0.1:1/nowhere
  options:
    {table_key}: ${{GLINKER_TEST_COMPANY_TABLE:-companies}}
    columns: {{{label_key}: name}}
stages:
  dictionary:
    type: alias_mentions
"""


def validate(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "glinker", "pipeline", "validate", str(path)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, check=False)


@pytest.mark.parametrize("adapter, table_key, label_key, code, line, said, fix", [
    ("sqll", "table", "label", "E212", 4, "kb.adapter: no KB adapter named 'sqll'", "did you mean 'sql'?"),
    ("sql", "tabel", "label", "E211", 7, "kb.options.tabel: unknown option 'tabel' for the sql adapter",
     "did you mean 'table'?"),
    ("sql", "table", "lable", "E212", 8, "kb.options.columns.lable: cannot map entity field 'lable'",
     "did you mean 'label'?"),
])
def test_validate_checks_the_kb_block_at_its_lines(tmp_path: Path, adapter: str, table_key: str, label_key: str,
                                                   code: str, line: int, said: str, fix: str) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(BLOCK.format(adapter=adapter, table_key=table_key, label_key=label_key))
    r = validate(f)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"[{code}] {f}:{line}: {said}" in r.stderr, r.stderr
    assert fix in r.stderr
    # the same check when the pipeline is loaded: before any model loads or any server is asked
    import glinker

    with pytest.raises(PipelineError) as ei:
        glinker.load_pipeline(str(f))
    assert [(p.code, p.line) for p in ei.value.problems] == [(code, line)]


def test_validate_says_a_bad_value_came_from_the_environment(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(BLOCK.format(adapter="sql", table_key="table", label_key="label"))
    r = validate(f, {"GLINKER_TEST_COMPANY_TABLE": "companies; DROP TABLE x"})
    assert r.returncode == 2
    assert f"[E212] {f}:7: kb.options.table: invalid SQL identifier 'companies; DROP TABLE x'" in r.stderr
    assert "from the environment: ${GLINKER_TEST_COMPANY_TABLE}: GLINKER_TEST_COMPANY_TABLE=" in r.stderr
    ok = validate(f)
    assert ok.returncode == 0, ok.stderr  # the default, a valid name; the server is not asked
    # a misspelt key: its value is not the problem, so no word about where the value came from
    f.write_text(BLOCK.format(adapter="sql", table_key="tabel", label_key="label"))
    r = validate(f, {"GLINKER_TEST_COMPANY_TABLE": "companies"})
    assert "unknown option 'tabel'" in r.stderr and "from the environment" not in r.stderr, r.stderr


def test_kb_block_keys_are_checked_with_the_block_keys_as_hints(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(BLOCK.format(adapter="sql", table_key="table", label_key="label").replace("  source:", "  sorce:"))
    r = validate(f)
    assert r.returncode == 2
    assert f"{f}:5: unknown key 'sorce' at kb.sorce" in r.stderr and "did you mean 'source'?" in r.stderr
    assert "valid keys here: adapter, source, options" in r.stderr


def test_a_stage_kb_block_is_checked_too(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("""name: companies
model: none
stages:
  dictionary:
    type: alias_mentions
    kb:
      adapter: sql
      source: sqlite:///companies.db
      options: {table: companies, columns: {lable: name}}
""")
    r = validate(f)
    assert r.returncode == 2
    assert f"[E212] {f}:9: stages.dictionary.kb.options.columns.lable: cannot map entity field 'lable'" in r.stderr
