"""Mends from the session-34 walkthrough of a company KB: where a cache or KB folder cannot be made, the error names
the setting (a kb block's `cache:`, GLINKER_CACHE, `--out`) and the file in the way, not a traceback or the source."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import glinker
from glinker.cli import app
from glinker.errors import ConfigError

runner = CliRunner()


@pytest.fixture()
def a_file(tmp_path):
    f = tmp_path / "afile.txt"
    f.write_text("hi\n", encoding="utf-8")
    return f


def test_kb_build_out_under_a_file_is_an_error_not_a_traceback(tmp_path, a_file):
    src = tmp_path / "any.csv"
    src.write_text("id,name\n1,Acme\n", encoding="utf-8")
    r = runner.invoke(app, ["kb", "build", "--adapter", "csv", "--source", str(src), "--model", "none",
                            "--out", str(a_file / "kb")])
    assert r.exit_code != 0 and isinstance(r.exception, ConfigError), r.output
    assert "cannot create the KB folder" in str(r.exception) and f"{a_file} is a file, not a folder" in str(r.exception)


def test_a_kb_blocks_cache_under_a_file_is_said_at_its_line(tmp_path, a_file):
    (tmp_path / "ents.jsonl").write_text(json.dumps({"id": "Q1", "label": "Acme"}) + "\n", encoding="utf-8")
    p = tmp_path / "p.yaml"
    p.write_text("name: t\nmodel: none\nkb:\n  adapter: jsonl\n  source: ents.jsonl\n  cache: afile.txt/cache\n"
                 "stages:\n  m: {type: alias_mentions}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        glinker.load_pipeline(str(p)).link(["Acme rose."])
    assert f"{p}:6, cache" in e.value.where and "point `cache:` at a folder" in e.value.fix
    assert "afile.txt is a file, not a folder" in e.value.fix


def test_glinker_cache_under_a_file_names_glinker_cache(tmp_path, a_file, monkeypatch):
    from glinker.model import shipped

    monkeypatch.setenv("GLINKER_CACHE", str(a_file / "c"))
    with pytest.raises(ConfigError) as e:
        shipped.materialize(shipped.shipped_names()[0])
    assert e.value.where == f"GLINKER_CACHE={a_file / 'c'}" and "point GLINKER_CACHE" in e.value.fix
