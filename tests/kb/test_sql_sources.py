"""A company KB read straight from its database: caches, connection failures, URLs, repeated ids, interrupted
builds, column names and table hints, on real PostgreSQL and MariaDB servers (and SQLite files)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from glinker.errors import ConfigError, KBError, SourceUnavailable
from glinker.kb.adapters import load_adapter

from .conftest import MYSQL_URL, PG_URL, server_engine
from .test_kb import ListAdapter

SERVERS = {"postgres": PG_URL, "mariadb": MYSQL_URL}
REPO = Path(__file__).resolve().parents[2]


def _name(prefix: str = "glk_co") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _exec(engine: Any, *statements: str) -> None:
    from sqlalchemy import text

    with engine.begin() as c:
        for st in statements:
            c.execute(text(st))


def _drop(engine: Any, *tables: str) -> None:
    for t in tables:
        _exec(engine, f"DROP TABLE IF EXISTS {t}")


def glinker_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "glinker", *args], capture_output=True, text=True, cwd=cwd, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def _companies_db(path: Path, rows: list[tuple[Any, ...]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE companies (id INTEGER PRIMARY KEY, name TEXT, description TEXT, aliases TEXT, "
               "popularity REAL)")
    db.executemany("INSERT INTO companies VALUES (?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()


PIPELINE = """name: companies
model: none
kb:
  adapter: sql
  source: {source}
  options:
    table: {table}
    columns: {{label: name}}
  refresh: {refresh}
stages:
  dictionary:
    type: alias_mentions
  cands:
    type: alias_candidates
    input: dictionary
"""


def _linked(path: Path, text: str) -> set[str]:
    import glinker

    pipe = glinker.load_pipeline(str(path))
    try:
        [out] = pipe.link([text])
        return {c.label for mc in out for c in mc.candidates}
    finally:
        pipe.close()


# -- 1: relative SQLite URLs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("refresh", ["if_missing", "always"])
def test_relative_sqlite_urls_of_two_folders_are_two_sources(tmp_path: Path, monkeypatch: Any, refresh: str) -> None:
    """`sqlite:///companies.db` is read from the working folder: projA's and projB's files are two KBs, never one
    cache (projB linked against projA's rows under if_missing; under always each rewrote the other's cache)."""
    _companies_db(tmp_path / "projA" / "companies.db", [(1, "Acme Corp", "maker", "", 5.0)])
    _companies_db(tmp_path / "projB" / "companies.db", [(1, "Globex", "other maker", "", 3.0)])
    pipe = tmp_path / "companies.yaml"
    pipe.write_text(PIPELINE.format(source="sqlite:///companies.db", table="companies", refresh=refresh))
    monkeypatch.setenv("GLINKER_CACHE", str(tmp_path / "cache"))
    text = "Acme Corp met Globex."
    monkeypatch.chdir(tmp_path / "projA")
    assert _linked(pipe, text) == {"Acme Corp"}
    monkeypatch.chdir(tmp_path / "projB")
    assert _linked(pipe, text) == {"Globex"}
    monkeypatch.chdir(tmp_path / "projA")
    assert _linked(pipe, text) == {"Acme Corp"}
    caches = sorted(p.name for p in (tmp_path / "cache" / "kb").iterdir() if p.is_dir())
    assert len(caches) == 2
    from glinker.kb import KB

    sources = set()
    for c in caches:
        with KB.open(tmp_path / "cache" / "kb" / c) as kb:
            sources.add(kb.manifest.source["source"])
    assert sources == {f"sqlite:///{tmp_path / p / 'companies.db'}" for p in ("projA", "projB")}
    # and so does the run record of an output (a resumed output is refused when its KB is another)
    from glinker.pipeline import load_spec
    from glinker.stages.resources import shown_kb

    kb = load_spec(pipe).header.kb
    assert shown_kb(kb)["source"] == f"sqlite:///{tmp_path / 'projA' / 'companies.db'}"
    # and so does what a cluster's coordinator and workers compare: workers in another folder read another file
    import glinker

    idents = []
    for proj in ("projA", "projB"):
        monkeypatch.chdir(tmp_path / proj)
        p = glinker.load_pipeline(str(pipe))
        idents.append(p.resource_ident()["kb"])
        p.close()
    assert idents[0] != idents[1] and f"{tmp_path / 'projB' / 'companies.db'}" in json.dumps(idents[1])


def test_a_kb_source_beside_the_pipeline_file_is_read_from_there(tmp_path: Path, monkeypatch: Any) -> None:
    """A pipeline's kb: source (a file path, or a sqlite:/// file) that lies beside the pipeline file is read from
    there, as its other relative paths, wherever the command runs; one missing from both folders is a validate
    warning naming the folders (it read from the working folder and failed at run time, hinting at `--source`)."""
    from glinker.pipeline import load_spec
    from glinker.pipeline.spec import resource_problems

    sub = tmp_path / "project"
    _companies_db(sub / "companies.db", [(1, "Acme Corp", "maker", "", 5.0)])
    (sub / "ents.jsonl").write_text(json.dumps({"id": "G1", "label": "Globex", "description": "other maker"}) + "\n")
    (sub / "sql.yaml").write_text(PIPELINE.format(source="sqlite:///companies.db", table="companies",
                                                  refresh="always"))
    (sub / "jsonl.yaml").write_text(PIPELINE.replace("adapter: sql", "adapter: jsonl").replace(
        "  options:\n    table: {table}\n    columns: {{label: name}}\n", "").format(source="ents.jsonl",
                                                                                    refresh="always"))
    monkeypatch.setenv("GLINKER_CACHE", str(tmp_path / "cache"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert _linked(sub / "sql.yaml", "Acme Corp met Globex.") == {"Acme Corp"}
    assert _linked(sub / "jsonl.yaml", "Acme Corp met Globex.") == {"Globex"}
    assert not resource_problems(load_spec(sub / "jsonl.yaml"), check_paths=True)
    (sub / "ents.jsonl").unlink()
    [warning] = resource_problems(load_spec(sub / "jsonl.yaml"), check_paths=True)
    assert warning.code == "E252" and "ents.jsonl" in warning.message and str(sub) in warning.message
    # a third-party adapter's source need not be a file: not warned about
    spec = load_spec(sub / "jsonl.yaml")
    spec.header.kb["adapter"] = "acme"  # as if installed
    assert not resource_problems(spec, check_paths=True)
    # a file in the working folder (and none beside the pipeline) is still read from there
    (elsewhere / "ents.jsonl").write_text(json.dumps({"id": "A1", "label": "Acme Corp", "description": "x"}) + "\n")
    assert _linked(sub / "jsonl.yaml", "Acme Corp met Globex.") == {"Acme Corp"}


# -- 2: a refused login is not an unreachable server -------------------------------------------------------------
@pytest.mark.services
def test_a_wrong_password_is_refused_not_unreachable_mariadb() -> None:
    server_engine(MYSQL_URL).dispose()
    from sqlalchemy.engine import make_url

    u = make_url(MYSQL_URL)
    bad = u.set(password="wrong-s3cret").render_as_string(hide_password=False)
    ad = load_adapter("sql", bad, table="whatever")
    with pytest.raises(KBError) as ei:
        list(ad.iter_entities())
    assert not isinstance(ei.value, SourceUnavailable)
    text = str(ei.value)
    assert "refused the login" in text and "1045" in text and "***" in text and "wrong-s3cret" not in text
    assert "password" in ei.value.fix and ei.value.where == "sql.source"
    # an unknown database: refused too
    with pytest.raises(KBError) as ei:
        list(load_adapter("sql", u.set(database=_name("nodb")).render_as_string(hide_password=False),
                          table="t").iter_entities())
    assert not isinstance(ei.value, SourceUnavailable) and "no such database" in str(ei.value)


@pytest.mark.services
def test_postgres_refusals_and_unreachable_servers_are_told_apart() -> None:
    server_engine(PG_URL).dispose()
    from sqlalchemy.engine import make_url

    u = make_url(PG_URL)
    for url, said in ((u.set(username=_name("nobody")), "refused the login"),
                      (u.set(database=_name("nodb")), "no such database")):
        with pytest.raises(KBError) as ei:
            list(load_adapter("sql", url.render_as_string(hide_password=False), table="t").iter_entities())
        assert not isinstance(ei.value, SourceUnavailable) and said in str(ei.value), str(ei.value)
    with pytest.raises(KBError) as ei:  # an option the driver refuses: said as such, not as the server's answer
        list(load_adapter("sql", u.update_query_dict({"sslmode": "bogus"}).render_as_string(hide_password=False),
                          table="t").iter_entities())
    assert not isinstance(ei.value, SourceUnavailable) and "the database driver refused an option" in str(ei.value)
    for url in (u.set(port=1), u.set(host="no-such-host.invalid")):  # refused connection, unknown host
        with pytest.raises(SourceUnavailable):
            list(load_adapter("sql", url.render_as_string(hide_password=False), table="t").iter_entities())


@pytest.mark.parametrize("message, unreachable, kind", [
    ('connection to server at "db" (10.0.0.5), port 5432 failed: FATAL:  password authentication failed for user "app"',
     False, "login"),
    ('connection to server at "db", port 5432 failed: FATAL:  database "crm" does not exist', False, "database"),
    ('FATAL:  permission denied for database "crm"', False, "permission"),
    ('FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "app", database "crm", no encryption', False, "login"),
    ('connection to server at "db", port 5432 failed: Connection refused\n\tIs the server running', True, ""),
    ("connection to server at \"db\", port 5432 failed: timeout expired", True, ""),
    ('could not translate host name "db.example" to address: Name or service not known', True, ""),
    ("server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally", True, ""),
    ('connection to server at "db", port 5432 failed: FATAL:  the database system is starting up', True, ""),
    # libpq's own refusals of the URL's options, before any server is asked
    ('invalid sslmode value: "bogus"', False, "options"),
    ('invalid dsn: invalid connection option "foo"', False, "options"),
    ('connection to server at "127.0.0.1", port 5432 failed: invalid integer value "x" for connection option '
     '"connect_timeout"', False, "options"),
])
def test_postgres_connection_messages_are_classified(message: str, unreachable: bool, kind: str) -> None:
    """psycopg gives no error code at connect time: the message says which failure it is (a wrong password cannot
    be produced on the test server, which trusts local logins)."""
    from kb_adapters.sql import connection_problem

    class FakeOperationalError(Exception):
        pass

    class Wrapped(Exception):
        orig = FakeOperationalError(message)

    assert connection_problem(Wrapped()) == (unreachable, kind)


@pytest.mark.services
def test_a_pipeline_with_a_cached_kb_fails_on_a_refused_login(tmp_path: Path, monkeypatch: Any, caplog: Any) -> None:
    """The stale cache serves only while the server cannot be reached: a wrong password (for an account that has
    one, so the cache is the same: it is keyed without the password) stops the start, naming the kb block, with
    the password hidden."""
    from sqlalchemy.engine import make_url

    eng = server_engine(MYSQL_URL)
    t, user = _name(), _name("glk_u")
    _exec(eng, f"CREATE TABLE {t} (id INT PRIMARY KEY, name VARCHAR(64))", f"INSERT INTO {t} VALUES (1, 'Acme Corp')",
          f"CREATE USER '{user}'@'%' IDENTIFIED BY 'right-s3cret'",
          f"GRANT SELECT ON {make_url(MYSQL_URL).database}.{t} TO '{user}'@'%'")
    try:
        pipe = tmp_path / "p.yaml"
        pipe.write_text(PIPELINE.format(source="${GLINKER_SQL_URL}", table=t, refresh="always"))
        monkeypatch.setenv("GLINKER_CACHE", str(tmp_path / "cache"))
        url = make_url(MYSQL_URL).set(username=user)
        monkeypatch.setenv("GLINKER_SQL_URL", url.set(password="right-s3cret").render_as_string(hide_password=False))
        assert _linked(pipe, "Acme Corp") == {"Acme Corp"}  # the cache, built while the login worked
        monkeypatch.setenv("GLINKER_SQL_URL", url.set(password="wrong-s3cret").render_as_string(hide_password=False))
        with pytest.raises(KBError) as ei:
            _linked(pipe, "Acme Corp")
        text = str(ei.value)
        assert not isinstance(ei.value, SourceUnavailable)
        assert "refused the login" in text and "1045" in text and "wrong-s3cret" not in text and "***" in text
        assert ei.value.where.startswith(f"kb ({pipe}:5, source)"), ei.value.where
        assert "GLINKER_SQL_URL" in text  # the URL came from the environment
        assert "linking with the cached KB" not in caplog.text
    finally:
        _exec(eng, f"DROP USER IF EXISTS '{user}'@'%'")
        _drop(eng, t)
        eng.dispose()


# -- 5: errors met when the source is read name the kb block ------------------------------------------------------
@pytest.mark.services
def test_errors_reading_the_source_name_the_kb_block_and_the_environment(tmp_path: Path, monkeypatch: Any) -> None:
    eng = server_engine(PG_URL)
    t = _name()
    _exec(eng, f"CREATE TABLE {t} (id INT PRIMARY KEY, name TEXT)", f"INSERT INTO {t} VALUES (1, 'Acme Corp')")
    try:
        pipe = tmp_path / "p.yaml"
        pipe.write_text(PIPELINE.format(source=PG_URL, table="${GLINKER_COMPANY_TABLE}", refresh="always")
                        .replace("columns: {label: name}", "columns: {label: '${GLINKER_LABEL_COLUMN:-name}'}"))
        monkeypatch.setenv("GLINKER_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv("GLINKER_COMPANY_TABLE", t + "x")
        with pytest.raises(KBError) as ei:
            _linked(pipe, "Acme Corp")
        assert ei.value.where == f"kb ({pipe}:7, options.table)", ei.value.where
        assert f"did you mean {t!r}" in ei.value.message
        assert f"from the environment: ${{GLINKER_COMPANY_TABLE}}: GLINKER_COMPANY_TABLE='{t}x'" in ei.value.message
        assert "stage 'dictionary'" not in str(ei.value)
        monkeypatch.setenv("GLINKER_COMPANY_TABLE", t)
        monkeypatch.setenv("GLINKER_LABEL_COLUMN", "nmae")
        with pytest.raises(KBError) as ei:
            _linked(pipe, "Acme Corp")
        assert ei.value.where == f"kb ({pipe}:8, options.columns.label)", ei.value.where
        assert "'nmae'" in ei.value.message and "GLINKER_LABEL_COLUMN='nmae'" in ei.value.message
        monkeypatch.delenv("GLINKER_LABEL_COLUMN")
        assert _linked(pipe, "Acme Corp") == {"Acme Corp"}
    finally:
        _drop(eng, t)
        eng.dispose()


# -- 3: a password with '@', ':' and '/' ------------------------------------------------------------------------------
@pytest.mark.parametrize("url", [
    "postgresql+psycopg2://postgres:p@ss:w/rd@127.0.0.1:5432/audit_sql",
    "mysql+pymysql://root:p@ss:w/rd@127.0.0.1:3306/test",
    "postgresql+psycopg2://postgres:pass@127.0.0.1:5432:5433/test",  # one '@': SQLAlchemy's ValueError on the port
], ids=["pg-at-colon-slash", "mariadb-at-colon-slash", "pg-bad-port"])
def test_an_unencoded_password_is_named_not_a_crash(url: str, tmp_path: Path, monkeypatch: Any) -> None:
    res = glinker_cli("kb", "build", "-a", "sql", "--model", "none", "-s", url, "--table", "companies",
                      "-o", 'columns={"label":"name"}', "--out", str(tmp_path / "kb"))
    assert res.returncode == 2, res.stderr
    assert "cannot read the database URL" in res.stderr and "percent-encode the user's password" in res.stderr
    assert "Traceback" not in res.stderr and "ValueError" not in res.stderr and "ss:w" not in res.stderr
    # in a pipeline: the kb block's error, not a stage's "warm-up failed: ValueError"
    pipe = tmp_path / "p.yaml"
    pipe.write_text(PIPELINE.format(source="${GLINKER_SQL_URL}", table="companies", refresh="always"))
    monkeypatch.setenv("GLINKER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GLINKER_SQL_URL", url)
    with pytest.raises(KBError) as ei:
        _linked(pipe, "Acme")
    assert "cannot read the database URL" in ei.value.message and "percent-encode" in ei.value.fix
    assert ei.value.where.startswith(f"kb ({pipe}:5, source)")
    # written into the file, the URL is checked by `pipeline validate` (no connection needed), with the line
    pipe.write_text(PIPELINE.format(source=url, table="companies", refresh="always"))
    res = glinker_cli("pipeline", "validate", str(pipe))
    assert res.returncode == 2 and f"{pipe}:5: kb.source: cannot read the database URL" in res.stderr, res.stderr
    assert "ss:w" not in res.stderr


# -- 4: repeated ids ------------------------------------------------------------------------------------------------
@pytest.mark.services
@pytest.mark.parametrize("server", sorted(SERVERS))
def test_a_repeated_id_is_kept_the_same_way_and_an_unchanged_table_writes_nothing(server: str,
                                                                                 tmp_path: Path) -> None:
    """Which of two rows with one id wins does not depend on their order on disk, the id is named, and `kb add
    --prune --atomic` on an unchanged table counts nothing as updated and publishes no new generation."""
    eng = server_engine(SERVERS[server])
    first, second = _name(), _name()
    for t, rows in ((first, "(1, 'Zeta', 'z'), (2, 'Beta', 'b'), (1, 'Alpha', 'a')"),
                    (second, "(1, 'Alpha', 'a'), (2, 'Beta', 'b'), (1, 'Zeta', 'z')")):
        _exec(eng, f"CREATE TABLE {t} (id INT, name VARCHAR(64), description VARCHAR(64))",
              f"INSERT INTO {t} VALUES {rows}")
    try:
        from glinker.kb import KB

        winners = []
        for t in (first, second):
            res = glinker_cli("kb", "build", "-a", "sql", "--model", "none", "-s", SERVERS[server], "--table", t,
                              "-o", 'columns={"label": "name"}', "--out", str(tmp_path / t))
            assert res.returncode == 0, res.stderr
            assert "1 records repeated an id already seen (e.g. '1')" in res.stderr
            with KB.open(tmp_path / t) as kb:
                winners.append(kb.get(["1"])[0].label)
        assert winners == ["Zeta", "Zeta"]  # the last in the order of the rows' values: the same for both tables
        for t in (first, second):
            out = tmp_path / t
            live = (out / "CURRENT").read_text()
            for args in (["--prune", "--atomic"], ["--prune"], []):
                res = glinker_cli("kb", "add", str(out), "-s", SERVERS[server], *args)
                assert res.returncode == 0, res.stderr
                assert "added 0, updated 0 (texts changed), 0 with the same text, 2 unchanged" in res.stdout, \
                    (args, res.stdout)
                assert "repeat an id" in res.stderr and "first ones: 1" in res.stderr, res.stderr
                assert (out / "CURRENT").read_text() == live, args
    finally:
        _drop(eng, first, second)
        eng.dispose()


def test_store_upsert_counts_a_repeated_id_once(tmp_path: Path, caplog: Any) -> None:
    from glinker.kb import KB
    from glinker.kb.build import build_kb
    from glinker.types import Entity

    stored = Entity(id="1", label="Zeta", description="z")
    build_kb(ListAdapter([stored, Entity(id="2", label="Beta")]), tmp_path / "kb", None)
    live = (tmp_path / "kb" / "CURRENT").read_text()
    with KB.open(tmp_path / "kb", writable=True) as kb:
        c = kb.store.upsert([Entity(id="1", label="Alpha", description="a"), stored], kb.template, track_pending=True)
        assert c == {"added": 0, "updated": 0, "unchanged_text": 0, "same": 1, "repeated": 1}
        # the two records of the id are neighbours across a batch boundary: compared as one
        c = kb.upsert([Entity(id="2", label="Beta"), Entity(id="1", label="Alpha", description="a"), stored], None,
                      batch=2)
        assert c == {"added": 0, "updated": 0, "unchanged_text": 0, "same": 2}
        assert "1 source records repeat an id" in caplog.text and "first ones: 1" in caplog.text
    with KB.update(tmp_path / "kb") as kb:
        kb.sync([Entity(id="1", label="Alpha", description="a"), stored, Entity(id="2", label="Beta")], None)
    assert (tmp_path / "kb" / "CURRENT").read_text() == live


# -- 6: an interrupted SQL build -------------------------------------------------------------------------------------
@pytest.mark.services
def test_an_interrupted_sql_build_says_it_starts_over(tmp_path: Path, monkeypatch: Any) -> None:
    from glinker.cli import app
    from kb_adapters.sql import SQLAdapter

    eng = server_engine(PG_URL)
    t = _name()
    _exec(eng, f"CREATE TABLE {t} (id INT PRIMARY KEY, name TEXT)",
          f"INSERT INTO {t} SELECT g, 'company ' || g FROM generate_series(1, 50) g")
    real = SQLAdapter.iter_entities

    def interrupted(self: Any) -> Any:
        for i, e in enumerate(real(self)):
            if i == 20:
                raise KeyboardInterrupt
            yield e

    monkeypatch.setattr(SQLAdapter, "iter_entities", interrupted)
    try:
        out = tmp_path / "kb"
        res = CliRunner().invoke(app, ["kb", "build", "-a", "sql", "--model", "none", "-s", PG_URL, "--table", t,
                                       "-o", 'columns={"label": "name"}', "--chunk-size", "5", "--out", str(out)])
        assert res.exit_code == 130, res.output
        assert "cannot resume" in res.output and "build from the start" in res.output
        assert "to resume" not in res.output
        assert not list(out.glob(".staging-*"))  # what the message says: nothing kept
    finally:
        _drop(eng, t)
        eng.dispose()


# -- 7, 8: column names -------------------------------------------------------------------------------------------
@pytest.mark.services
@pytest.mark.parametrize("server", sorted(SERVERS))
def test_columns_with_spaces_are_quoted_and_other_names_point_to_a_query(server: str) -> None:
    eng = server_engine(SERVERS[server])
    t = _name()
    q = '"' if server == "postgres" else "`"
    _exec(eng, f"CREATE TABLE {t} (id INT PRIMARY KEY, {q}Company Name{q} VARCHAR(64), {q}Other-Names{q} "
               f"VARCHAR(64))", f"INSERT INTO {t} VALUES (1, 'Acme Corp', 'ACME|Acme Inc')")
    try:
        ents = list(load_adapter("sql", SERVERS[server], table=t,
                                 columns={"label": "Company Name", "aliases": "Other-Names"}).iter_entities())
        assert [(e.id, e.label, e.aliases) for e in ents] == [("1", "Acme Corp", ["ACME", "Acme Inc"])]
        with pytest.raises(ConfigError) as ei:
            load_adapter("sql", SERVERS[server], table=t, columns={"label": "Name (EN)"})
        assert "invalid SQL identifier" in str(ei.value) and "query=" in ei.value.fix and " AS name" in ei.value.fix
        for bad in ('Name" --', "Name;", " Name", "Name  x"):
            with pytest.raises(ConfigError):
                load_adapter("sql", SERVERS[server], table=t, columns={"label": bad})
    finally:
        _drop(eng, t)
        eng.dispose()


@pytest.mark.services
def test_mariadb_column_names_match_whatever_their_case() -> None:
    eng = server_engine(MYSQL_URL)
    t = _name()
    _exec(eng, f"CREATE TABLE {t} (CompanyID INT PRIMARY KEY, CompanyName VARCHAR(64), Description TEXT, "
               f"Extra1 TEXT)", f"INSERT INTO {t} VALUES (7, 'Initech', 'software', 'x')")
    try:
        ad = load_adapter("sql", MYSQL_URL, table=t, columns={"id": "companyid", "label": "companyname"},
                          extra_columns=["extra1"])
        [e] = list(ad.iter_entities())
        assert (e.id, e.label, e.description, e.extra) == ("7", "Initech", "software", {"Extra1": "x"})
    finally:
        _drop(eng, t)
        eng.dispose()


@pytest.mark.services
def test_postgres_column_names_keep_their_case_and_the_error_names_the_column() -> None:
    eng = server_engine(PG_URL)
    t = _name()
    _exec(eng, f'CREATE TABLE {t} ("CompanyID" INT PRIMARY KEY, name TEXT)', f"INSERT INTO {t} VALUES (7, 'Initech')")
    try:
        with pytest.raises(KBError) as ei:
            list(load_adapter("sql", PG_URL, table=t, columns={"id": "companyid", "label": "name"}).iter_entities())
        assert "did you mean 'CompanyID'" in str(ei.value) and "case-sensitive" in ei.value.fix
        # every unknown column in one error (three typos took three runs), placed at the first
        with pytest.raises(KBError) as ei:
            list(load_adapter("sql", PG_URL, table=t, columns={"id": "CompanyId", "label": "nmae",
                                                                "description": "descr"}).iter_entities())
        msg = str(ei.value)
        assert "column 'CompanyId' (for id) (did you mean 'CompanyID'?); column 'nmae' (for label) (did you mean " \
               "'name'?); column 'descr' (for description) not in the source (columns: CompanyID, name)" in msg, msg
        assert ei.value.where.startswith("sql.columns.id")
        ad = load_adapter("sql", PG_URL, table=t, columns={"id": "CompanyID", "label": "name"})
        assert [e.id for e in ad.iter_entities()] == ["7"]
    finally:
        _drop(eng, t)
        eng.dispose()


# -- 9: materialized views, and no progress bar in a log ----------------------------------------------------------
@pytest.mark.services
def test_postgres_materialized_views_are_named_in_the_table_hint() -> None:
    eng = server_engine(PG_URL)
    schema = _name("glk_s")
    _exec(eng, f"CREATE SCHEMA {schema}", f"CREATE TABLE {schema}.base (id INT PRIMARY KEY, name TEXT)",
          f"INSERT INTO {schema}.base VALUES (1, 'Acme')",
          f"CREATE MATERIALIZED VIEW {schema}.companies_mv AS SELECT id, name FROM {schema}.base")
    try:
        with pytest.raises(KBError) as ei:
            list(load_adapter("sql", PG_URL, table=f"{schema}.companies_vm",
                              columns={"label": "name"}).iter_entities())
        assert f"did you mean '{schema}.companies_mv'" in str(ei.value) and "companies_mv" in ei.value.fix
        ents = list(load_adapter("sql", PG_URL, table=f"{schema}.companies_mv",
                                 columns={"label": "name"}).iter_entities())
        assert [e.label for e in ents] == ["Acme"]
    finally:
        _exec(eng, f"DROP SCHEMA {schema} CASCADE")
        eng.dispose()


@pytest.mark.services
def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    eng = server_engine(PG_URL)
    t = _name()
    _exec(eng, f"CREATE TABLE {t} (id INT PRIMARY KEY, name TEXT)", f"INSERT INTO {t} VALUES (1, 'Acme')")
    try:
        res = glinker_cli("kb", "build", "-a", "sql", "--model", "none", "-s", PG_URL, "--table", t,
                          "-o", 'columns={"label": "nmae"}', "--out", str(tmp_path / "kb"))
        assert res.returncode == 2 and "'nmae'" in res.stderr and "did you mean 'name'" in res.stderr
        assert "ent/s" not in res.stderr and "entities:" not in res.stderr, res.stderr
        res = glinker_cli("kb", "build", "-a", "sql", "--model", "none", "-s", PG_URL, "--table", t,
                          "-o", 'columns={"label": "name"}', "--out", str(tmp_path / "kb"))
        assert res.returncode == 0 and "ent/s" not in res.stderr, res.stderr
    finally:
        _drop(eng, t)
        eng.dispose()


def test_an_output_recorded_with_the_kb_block_as_written_still_resumes(tmp_path: Path, monkeypatch: Any) -> None:
    """Run records held a kb: block as written until 2026-12-04 (now: as read, path absolute, secrets hidden): an
    output of then resumes; a record of another KB is still refused."""
    import hashlib

    import glinker
    from glinker.cli.link import run_link

    monkeypatch.setenv("GLINKER_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    _companies_db(tmp_path / "companies.db", [(1, "Acme Corp", "maker", "", 5.0)])
    pipe = tmp_path / "p.yaml"
    pipe.write_text(PIPELINE.format(source="sqlite:///companies.db", table="companies", refresh="always"))
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": str(i), "text": "Acme Corp met."}) + "\n" for i in range(3)))
    out = tmp_path / "out.jsonl"
    run_link(src, pipe, out)
    p = glinker.load_pipeline(str(pipe))
    res = p.resource_ident(kb_as_written=True)
    p.close()
    legacy = hashlib.sha256(json.dumps({"kb": res["kb"], "model": res["model"]}, sort_keys=True,
                                       default=str).encode()).hexdigest()[:16]
    record = out.with_name(out.name + ".run.json")
    for contents, ok in ((legacy, True), ("0123456789abcdef", False)):
        rec = json.loads(record.read_text())
        assert rec["contents"] != legacy and "_legacy_contents" not in rec
        record.write_text(json.dumps({**rec, "contents": contents}))
        out.write_text(out.read_text().splitlines(keepends=True)[0])
        if ok:
            assert run_link(src, pipe, out)["written"] == 2
        else:
            with pytest.raises(ConfigError, match="written by another pipeline"):
                run_link(src, pipe, out)
            record.write_text(json.dumps(rec))


def test_url_credentials_are_read_as_sqlalchemy_reads_them() -> None:
    """A user name may hold '@' (Azure's user@server): accepted, and its password masked; an '@' in the password is
    refused wherever it is (after a '?' too), without showing the password."""
    from glinker.io import redact
    from kb_adapters.sql import parse_url

    azure = "postgresql://user@srv:s3cret@srv.postgres.database.azure.com/db"
    u = parse_url(azure)
    assert (u.username, u.password, u.host) == ("user@srv", "s3cret", "srv.postgres.database.azure.com")
    assert "s3cret" not in redact(azure) and redact(azure).startswith("postgresql://user@srv:***@")
    for bad in ("postgresql://u:p?s@s@host/db", "postgresql+psycopg2://postgres:p@ss@127.0.0.1:5432/test"):
        with pytest.raises(KBError) as ei:
            parse_url(bad)
        assert "its password (masked here) holds an unencoded '@'" in ei.value.message
        assert "p?s" not in ei.value.message and "p@ss" not in ei.value.message
