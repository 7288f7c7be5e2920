"""A `kb:` block's `cache:` expands `${VAR}` as `source` and `options` do (two tables shared one literally named
folder), and a cache folder built from one source is rebuilt, with a warning, when opened with another (a
PostgreSQL run synced its rows into a MySQL-built cache whose manifest still named MySQL)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

PIPE = """name: cache-test
model: none
kb:
  adapter: {adapter}
  source: {source}
  options: {options}
  cache: {cache}
  refresh: {refresh}
stages:
  m: {{type: alias_mentions}}
  a: {{type: alias_candidates, input: m}}
  links: {{type: select, input: a}}
"""

TEXT = "Acme met Globex and Initech."
PG_URL = os.environ.get("GLINKER_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("GLINKER_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")


def _ents(path: Path, *labels: str) -> Path:
    path.write_text("".join(json.dumps({"id": f"{path.stem}-{i}", "label": lab}) + "\n"
                            for i, lab in enumerate(labels)), encoding="utf-8")
    return path


def _linked(pipeline: Path) -> list[str]:
    import glinker

    pipe = glinker.load_pipeline(str(pipeline))
    try:
        [doc] = pipe.link([TEXT])
        return sorted(str(ln.entity_id) for ln in doc.links)
    finally:
        pipe.close()


def _manifest_source(folder: Path) -> dict[str, Any]:
    from glinker.kb import KB

    with KB.open(folder) as kb:
        return dict(kb.manifest.source)


def test_cache_expands_env_vars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _ents(tmp_path / "a.jsonl", "Acme")
    _ents(tmp_path / "b.jsonl", "Globex")
    p = tmp_path / "p.yaml"
    p.write_text(PIPE.format(adapter="jsonl", source=str(tmp_path / "${FIX27_KB:-a}.jsonl"), options="{}",
                             cache=str(tmp_path / "caches" / "kb_${FIX27_KB:-a}"), refresh="always"))
    monkeypatch.delenv("FIX27_KB", raising=False)
    assert _linked(p) == ["a-0"]
    monkeypatch.setenv("FIX27_KB", "b")
    assert _linked(p) == ["b-0"]
    monkeypatch.delenv("FIX27_KB")
    assert _linked(p) == ["a-0"]
    assert sorted(x.name for x in (tmp_path / "caches").iterdir() if x.is_dir()) == ["kb_a", "kb_b"]
    assert _manifest_source(tmp_path / "caches" / "kb_b")["source"] == str(tmp_path / "b.jsonl")
    # unset without a default: named at the kb block
    p.write_text(PIPE.format(adapter="jsonl", source=str(tmp_path / "a.jsonl"), options="{}",
                             cache=str(tmp_path / "caches" / "kb_${FIX27_UNSET_VAR}"), refresh="always"))
    from glinker.errors import GlinkerError

    with pytest.raises(GlinkerError, match="FIX27_UNSET_VAR is not set"):
        _linked(p)


@pytest.mark.parametrize("refresh", ["always", "if_missing"])
def test_a_cache_opened_with_another_source_is_rebuilt_not_synced(tmp_path: Path, refresh: str, caplog: Any) -> None:
    _ents(tmp_path / "a.jsonl", "Acme")
    _ents(tmp_path / "b.jsonl", "Globex", "Initech")
    cache = tmp_path / "shared_cache"
    p = tmp_path / "p.yaml"

    def use(src: str) -> list[str]:
        p.write_text(PIPE.format(adapter="jsonl", source=str(tmp_path / src), options="{}", cache=cache,
                                 refresh=refresh))
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="glinker.stages.resources"):
            return _linked(p)

    assert use("a.jsonl") == ["a-0"]
    assert use("a.jsonl") == ["a-0"] and "another source" not in caplog.text  # the same source: kept
    assert use("b.jsonl") == ["b-0", "b-1"]
    assert f"the cached KB {cache} was built from another source (source '{tmp_path / 'a.jsonl'}', now " \
           f"'{tmp_path / 'b.jsonl'}'): rebuilding it" in caplog.text
    assert _manifest_source(cache)["source"] == str(tmp_path / "b.jsonl")  # the manifest names what it holds
    assert use("a.jsonl") == ["a-0"] and _manifest_source(cache)["source"] == str(tmp_path / "a.jsonl")
    # another adapter on the same cache folder
    (tmp_path / "c.csv").write_text("id,label\nc-0,Initech\n", encoding="utf-8")
    p.write_text(PIPE.format(adapter="csv", source=str(tmp_path / "c.csv"), options="{}", cache=cache,
                             refresh=refresh))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glinker.stages.resources"):
        assert _linked(p) == ["c-0"]
    assert "adapter 'jsonl', now 'csv'" in caplog.text
    assert _manifest_source(cache)["adapter"] == "csv"


def test_a_cache_written_before_its_source_key_is_checked_by_its_manifest(tmp_path: Path, caplog: Any) -> None:
    """A cache folder built by an earlier glinker has no SOURCE_KEY: its manifest's adapter, source and the options
    the block gives are compared (the same source is synced as before, another one rebuilds it)."""
    from glinker.stages.resources import SOURCE_KEY

    _ents(tmp_path / "a.jsonl", "Acme")
    _ents(tmp_path / "b.jsonl", "Globex")
    cache = tmp_path / "cache"
    p = tmp_path / "p.yaml"
    for src in ("a.jsonl", "a.jsonl", "b.jsonl"):
        (cache / SOURCE_KEY).unlink(missing_ok=True)
        p.write_text(PIPE.format(adapter="jsonl", source=str(tmp_path / src), options="{}", cache=cache,
                                 refresh="always"))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="glinker.stages.resources"):
            assert _linked(p) == [f"{src[0]}-0"]
        assert ("another source" in caplog.text) == (src == "b.jsonl")


def test_a_mysql_built_cache_opened_with_postgresql_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              caplog: Any) -> None:
    """The audit's case on real servers: one literal cache folder, AUD_SQL_URL / AUD_TABLE switched from MariaDB to
    PostgreSQL; a rotated password of the same source keeps the cache (it is not part of the source's key)."""
    from sqlalchemy import create_engine, text

    def server_engine(url: str) -> Any:  # as tests/kb's: a server not reachable here skips the test
        try:
            eng = create_engine(url)
            with eng.connect() as c:
                c.execute(text("SELECT 1"))
            return eng
        except Exception as e:  # noqa: BLE001 - any driver or connection failure: not available here
            pytest.skip(f"database server unreachable at {url}: {type(e).__name__}")
    tables = {MYSQL_URL: ("fix27_enc_cache_my", "Acme"), PG_URL: ("fix27_enc_cache_pg", "Globex")}
    for url, (t, label) in tables.items():
        eng = server_engine(url)
        with eng.begin() as c:
            c.execute(text(f"DROP TABLE IF EXISTS {t}"))
            c.execute(text(f"CREATE TABLE {t} (id VARCHAR(20), name VARCHAR(50))"))
            c.execute(text(f"INSERT INTO {t} VALUES (:i, :n)"), {"i": f"{t}-1", "n": label})
        eng.dispose()
    try:
        p = tmp_path / "p.yaml"
        p.write_text(PIPE.format(adapter="sql", source="${FIX27_SQL_URL}",
                                 options="{table: '${FIX27_TABLE}', columns: {label: name}}",
                                 cache=tmp_path / "cache_one", refresh="always"))
        monkeypatch.setenv("FIX27_SQL_URL", MYSQL_URL)
        monkeypatch.setenv("FIX27_TABLE", "fix27_enc_cache_my")
        assert _linked(p) == ["fix27_enc_cache_my-1"]
        pg = PG_URL.replace("postgres@", "postgres:first-secret@")  # trust authentication: any password does
        monkeypatch.setenv("FIX27_SQL_URL", pg)
        monkeypatch.setenv("FIX27_TABLE", "fix27_enc_cache_pg")
        with caplog.at_level(logging.WARNING, logger="glinker.stages.resources"):
            assert _linked(p) == ["fix27_enc_cache_pg-1"]
        assert "built from another source" in caplog.text and "table='fix27_enc_cache_my', now " \
               "'fix27_enc_cache_pg'" in caplog.text
        assert _manifest_source(tmp_path / "cache_one")["source"].startswith("postgresql")
        caplog.clear()
        # the same PostgreSQL source read with a rotated password: synced, not rebuilt
        monkeypatch.setenv("FIX27_SQL_URL", pg.replace("first-secret", "rotated-secret"))
        with caplog.at_level(logging.WARNING, logger="glinker.stages.resources"):
            assert _linked(p) == ["fix27_enc_cache_pg-1"]
        assert "another source" not in caplog.text and "secret" not in \
               (tmp_path / "cache_one" / "SOURCE_KEY").read_text()
    finally:
        for url, (t, _) in tables.items():
            eng = server_engine(url)
            with eng.begin() as c:
                c.execute(text(f"DROP TABLE IF EXISTS {t}"))
            eng.dispose()


def test_relative_cache_goes_beside_the_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative `cache:` is made beside the pipeline file, whatever folder the run starts in (it was made in the
    working folder: a run from another folder built a second copy, and a test wrote one into the repository)."""
    from glinker.cli import app
    from typer.testing import CliRunner

    home, elsewhere = tmp_path / "pipes", tmp_path / "cwd"
    home.mkdir()
    elsewhere.mkdir()
    _ents(home / "a.jsonl", "Acme")
    p = home / "p.yaml"
    p.write_text(PIPE.format(adapter="jsonl", source="a.jsonl", options="{}", cache="caches/kb", refresh="always"))
    monkeypatch.chdir(elsewhere)
    shown = CliRunner().invoke(app, ["pipeline", "validate", str(p)])
    assert shown.exit_code == 0, shown.output
    assert str(home / "caches" / "kb") in shown.output.replace("\n", "")
    assert _linked(p) == ["a-0"]
    assert (home / "caches" / "kb" / "CURRENT").is_file()
    assert not (elsewhere / "caches").exists()
    # a folder of that name in the working folder is not the pipeline's cache: another pipeline's cache there is
    # neither read nor rebuilt from this source
    _ents(elsewhere / "b.jsonl", "Globex")
    other = elsewhere / "other.yaml"
    other.write_text(PIPE.format(adapter="jsonl", source="b.jsonl", options="{}", cache="caches/kb2",
                                 refresh="always"))
    p2 = home / "p2.yaml"
    p2.write_text(PIPE.format(adapter="jsonl", source="a.jsonl", options="{}", cache="caches/kb2", refresh="always"))
    assert _linked(other) == ["b-0"] and _linked(p2) == ["a-0"] and _linked(other) == ["b-0"]
    assert _manifest_source(elsewhere / "caches" / "kb2")["source"] == str(elsewhere / "b.jsonl")
    assert _manifest_source(home / "caches" / "kb2")["source"] == str(home / "a.jsonl")


def test_validate_lists_a_missing_kb_folder_where_its_warning_says_to_build_it(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative KB folder that exists nowhere yet: the files list showed it under the working folder while the
    E252 warning said to build it beside the pipeline file (where a run looks first)."""
    from glinker.cli import app
    from typer.testing import CliRunner

    (tmp_path / "repo" / "pipelines").mkdir(parents=True)
    p = tmp_path / "repo" / "pipelines" / "p.yaml"
    p.write_text("name: t\nmodel: none\nkb: ../kb_out/mine\nstages:\n  m: {type: alias_mentions}\n"
                 "  a: {type: alias_candidates, input: m}\n  links: {type: select, input: a}\n")
    monkeypatch.chdir(tmp_path / "repo")
    r = CliRunner().invoke(app, ["pipeline", "validate", str(p)])
    out = r.output.replace("\n", " ")
    assert "--out kb_out/mine" in out
    assert f"reads  {tmp_path / 'repo' / 'kb_out' / 'mine'}" in out, out
