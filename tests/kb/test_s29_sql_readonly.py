"""The sql adapter's ``query`` cannot write to the database: the one-SELECT check refuses a ';' that some database
would read as the end of the statement (PostgreSQL's ``E'\\''``, ``$$``, nested comments; MySQL's backslashes, ``#``
and backticks...), and every read runs in a read-only session, so what a single SELECT may still write (a function, a
sequence) and a second statement that got past the check (a DROP TABLE and a COMMIT) both fail, on real PostgreSQL
and MariaDB servers and on SQLite, and the table stays."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from glinker.errors import ConfigError, KBError
from glinker.kb.adapters import load_adapter

from .conftest import MYSQL_URL, PG_URL, server_engine

REPORTED = ("SELECT E'\\'' AS id) s; DROP TABLE {t}; COMMIT; SELECT * FROM (SELECT 'C9' AS id, 'Name' AS name")
"""The audit's query: PostgreSQL reads E'\\'' as one quote, so the DROP and COMMIT ran as statements of their own."""


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _exec(engine: Any, *statements: str) -> None:
    from sqlalchemy import text

    with engine.begin() as c:
        for st in statements:
            c.execute(text(st))


def _scalar(engine: Any, statement: str) -> Any:
    from sqlalchemy import text

    with engine.connect() as c:
        return c.execute(text(statement)).scalar()


def _past_the_check(url: str, query: str) -> Any:
    """An adapter that runs ``query`` although the one-SELECT check would refuse it (what a check that missed a
    construct would let through): the read-only session alone must keep the database unchanged."""
    ad = load_adapter("sql", url, query="SELECT 'x' AS id, 'y' AS name", columns={"label": "name"})
    ad.options.query = query
    return ad


def _read(ad: Any) -> list[str]:
    try:
        return [e.id for e in ad.iter_entities()]
    finally:
        ad.close()


PG, MY, LITE, MS = ("postgresql://u@h/db", "mysql+pymysql://u@h/db", "sqlite:///:memory:",
                     "mssql+pyodbc://u@h/db?driver=x")
OTHER = "oracle+oracledb://u@h/db"
"""URLs of each database (no connection is made: the check runs when the adapter is created); OTHER: a database
whose rules the check does not know, where every database's rules apply at once."""


@pytest.mark.parametrize(("query", "urls"), [
    (REPORTED.format(t="victim"), [PG]),                                            # PostgreSQL E'' strings
    ("SELECT $$'$$ AS id; DROP TABLE victim; SELECT '$$'", [PG]),                  # PostgreSQL dollar quoting
    ("SELECT 1 AS id /* /* */ ' */ ; DROP TABLE victim; SELECT '", [PG, MS]),      # nested comments
    ("SELECT '\\'' AS id; DROP TABLE victim; SELECT ''", [MY]),                    # MySQL backslash escapes
    ("SELECT 1 AS id # '\n; DROP TABLE victim; -- '", [MY]),                      # MySQL # comments
    ("SELECT 1 AS id, 2 --1; DROP TABLE victim", [MY]),                             # MySQL: '--1' is no comment
    ("SELECT 1 AS `x'`; DROP TABLE victim; SELECT '", [MY, LITE]),                  # backticks
    ("SELECT 1 AS [x']; DROP TABLE victim; SELECT '", [MS, LITE]),                  # brackets
    ("SELECT 1 AS id /*!50000 ; DROP TABLE victim */", [MY]),                       # MySQL runs /*! ... */
    ("SELECT 1 AS id -- c\r' ; \n; DROP TABLE victim; SELECT '", [MY, LITE]),      # '--' ends at LF there...
    ("SELECT 1 AS id -- c\r; DROP TABLE victim\n", [PG]),                         # ...PostgreSQL ends it at a lone CR
    ("SELECT 'a\\' AS id; DROP TABLE victim; SELECT ''", [PG]),                     # standard_conforming_strings off
])
def test_a_semicolon_some_database_reads_as_an_end_is_refused(query: str, urls: list[str]) -> None:
    """Refused on each database that reads the ';' as an end, and where the database is not known."""
    for url in [*urls, OTHER]:
        with pytest.raises(ConfigError, match="one SELECT") as ei:
            load_adapter("sql", url, query=query)
        assert ei.value.where == "sql.query"


@pytest.mark.parametrize(("query", "url"), [
    ("SELECT `id`, `name`, REPLACE(`aliases`, ';', '|') AS aliases FROM `comp`", MY),
    ("SELECT `id`, GROUP_CONCAT(`alias` SEPARATOR ';') AS aliases FROM `aliases` GROUP BY `id` # all", MY),
    ("SELECT id, name, REPLACE(aliases, ';', '|') AS aliases FROM comp WHERE tags[1] = 'org'", PG),
    ("SELECT [Id] AS id, STRING_AGG([Alias], ';') AS aliases FROM [dbo].[Aliases] GROUP BY [Id]", MS),
    ("SELECT id, name FROM t WHERE note NOT LIKE '%;%' AND data #> '{a}' IS NOT NULL", PG),
    ("SELECT id, name, REPLACE(aliases, '|', ';') AS aliases FROM t WHERE name ~ '^\\w+'", PG),
    ("SELECT id, name, $$a;b$$ AS x FROM t", PG),
    ("SELECT id, name FROM t --comment; not code", PG),
    ("SELECT id, name FROM t --comment; not code", LITE),
    ("SELECT [id], `name`, 'a;b' AS x FROM t", LITE),
])
def test_a_query_read_as_one_statement_on_its_own_database_is_accepted(query: str, url: str) -> None:
    """The check reads the query with the rules of the database the URL names: what is ordinary syntax there (MySQL
    backticks, SQL Server's [Id], PostgreSQL's tags[1], #> and regex backslashes) is fine next to a ';' literal.
    ``glinker pipeline validate`` (no URL yet) takes what one database at least reads as one statement."""
    load_adapter("sql", url, query=query)
    from glinker.kb.adapters import check_adapter_options

    check_adapter_options("sql", {"query": query})


def test_a_semicolon_after_a_dash_dash_with_no_space_names_it() -> None:
    """MySQL reads '--comment;' as two minus signs: the ';' ends the statement, and the message says why."""
    for url in (MY, OTHER):
        with pytest.raises(ConfigError, match="'--comment'.*no comment in MySQL") as ei:
            load_adapter("sql", url, query="SELECT id, name FROM t --comment; not code")
        assert ei.value.where == "sql.query"


@pytest.mark.parametrize("query", [
    "SELECT id, REPLACE(name, ';', '|') AS name FROM t WHERE note <> 'it''s; fine' /* a ; here */",
    "-- the companies; all of them\nSELECT id, name FROM t -- last; line",
    "SELECT id, name FROM t WHERE name LIKE '%\\_%'",  # a backslash, but no ';' anywhere
    "SELECT id, tags[1] AS name FROM t;",               # '[' and a final ';', which is dropped
])
def test_a_semicolon_every_database_reads_as_quoted_is_accepted(query: str) -> None:
    load_adapter("sql", "sqlite:///:memory:", query=query)


def test_the_reported_postgresql_bypass_leaves_the_table(tmp_path: Path) -> None:
    eng = server_engine(PG_URL)
    t, seq = _name("glk_victim"), _name("glk_seq")
    _exec(eng, f"CREATE TABLE {t} (id text, name text)", f"INSERT INTO {t} VALUES ('a', 'A; one')",
          f"CREATE SEQUENCE {seq}")
    try:
        with pytest.raises(ConfigError, match="one SELECT"):  # the check, with PostgreSQL's rules
            load_adapter("sql", PG_URL, query=REPORTED.format(t=t), columns={"label": "name"})
        # a second statement past the check: the transaction is read-only, the DROP fails, the COMMIT never comes
        with pytest.raises(KBError, match="read-only transaction"):
            _read(_past_the_check(PG_URL, REPORTED.format(t=t)))
        assert _scalar(eng, f"SELECT count(*) FROM {t}") == 1
        # one SELECT that writes: a sequence's nextval (not undone by a rollback)
        with pytest.raises(KBError, match="read-only transaction"):
            _read(load_adapter("sql", PG_URL, query=f"SELECT nextval('{seq}')::text AS id, 'n' AS name",
                               columns={"label": "name"}))
        assert _scalar(eng, f"SELECT is_called FROM {seq}") is False
        # reads still work, a ';' in a string included
        assert _read(load_adapter("sql", PG_URL, query=f"SELECT id, REPLACE(name, ';', ',') AS name FROM {t}",
                                  columns={"label": "name"})) == ["a"]
        # per transaction only: the adapter's pooled connection itself is left read-write (nothing a pooler such
        # as pgbouncer would hand to another client), its transactions are read-only
        ad = load_adapter("sql", PG_URL, table=t, columns={"label": "name"})
        try:
            with ad._connect() as c:
                assert c.exec_driver_sql("SHOW transaction_read_only").scalar() == "on"
                c.rollback()
                cur = c.connection.dbapi_connection.cursor()
                cur.execute("SHOW default_transaction_read_only")
                assert cur.fetchone()[0] == "off"
        finally:
            ad.close()
    finally:
        _exec(eng, f"DROP TABLE IF EXISTS {t}", f"DROP SEQUENCE IF EXISTS {seq}")
        eng.dispose()


def test_mariadb_reads_write_nothing() -> None:
    from sqlalchemy.exc import DBAPIError

    eng = server_engine(MYSQL_URL)
    t, fn, seq = _name("glk_victim"), _name("glk_wipe"), _name("glk_seq")
    # MyISAM: not transactional, so a write is kept even when the read's transaction is rolled back
    _exec(eng, f"CREATE TABLE {t} (id varchar(10), name varchar(10)) ENGINE=MyISAM",
          f"INSERT INTO {t} VALUES ('a', 'A')", f"CREATE SEQUENCE {seq}")
    try:
        try:
            _exec(eng, f"CREATE FUNCTION {fn}() RETURNS INT MODIFIES SQL DATA BEGIN DELETE FROM {t}; RETURN 1; END")
        except DBAPIError as e:
            pytest.skip(f"cannot create a function here: {e.orig}")
        for q in (f"SELECT CAST({fn}() AS CHAR) AS id, 'n' AS name",          # a function that deletes
                  f"SELECT CAST(NEXTVAL({seq}) AS CHAR) AS id, 'n' AS name"):  # a sequence
            with pytest.raises(KBError, match="READ ONLY transaction"):
                _read(load_adapter("sql", MYSQL_URL, query=q, columns={"label": "name"}))
        # PyMySQL runs one statement per call unless the URL asks for more (CLIENT.MULTI_STATEMENTS): with it, a
        # second statement past the check is refused by the read-only transaction
        # (a DML statement: a DDL one would first commit the read-only transaction; the check keeps both out)
        stacked = f"SELECT 'C1' AS id, 'n' AS name) s; DELETE FROM {t}; COMMIT; SELECT * FROM (SELECT 'C9' AS id, 'N' AS name"
        with pytest.raises(KBError, match="READ ONLY transaction"):
            _read(_past_the_check(MYSQL_URL + "?client_flag=65536", stacked))
        assert _scalar(eng, f"SELECT count(*) FROM {t}") == 1
        assert _scalar(eng, f"SELECT NEXTVAL({seq})") == 1  # never taken before
        assert _read(load_adapter("sql", MYSQL_URL, table=t, columns={"label": "name"})) == ["a"]
        ad = load_adapter("sql", MYSQL_URL, table=t, columns={"label": "name"})
        try:  # per transaction only: the session's own setting stays read-write
            with ad._connect() as c:
                c.exec_driver_sql("SELECT 1").scalar()
                c.rollback()
                cur = c.connection.dbapi_connection.cursor()
                cur.execute("SELECT @@session.tx_read_only")
                assert cur.fetchone()[0] == 0
        finally:
            ad.close()
    finally:
        _exec(eng, f"DROP FUNCTION IF EXISTS {fn}", f"DROP TABLE IF EXISTS {t}", f"DROP SEQUENCE IF EXISTS {seq}")
        eng.dispose()


def test_sqlite_connections_are_query_only(tmp_path: Path) -> None:
    from sqlalchemy.exc import OperationalError

    db = tmp_path / "kb.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE companies (id TEXT, name TEXT)")
    con.execute("INSERT INTO companies VALUES ('C1', 'Acme')")
    con.commit()
    con.close()
    ad = load_adapter("sql", f"sqlite:///{db}", table="companies", columns={"label": "name"})
    try:
        assert [e.id for e in ad.iter_entities()] == ["C1"]
        with ad._connect() as c:  # what every read of the adapter runs on
            assert c.exec_driver_sql("PRAGMA query_only").scalar() == 1
            with pytest.raises(OperationalError, match="readonly"):
                c.exec_driver_sql("DELETE FROM companies")
    finally:
        ad.close()
    assert sqlite3.connect(db).execute("SELECT count(*) FROM companies").fetchone() == (1,)


def test_read_only_false_lets_a_query_create_temporary_tables() -> None:
    """PostgreSQL refuses any CREATE in a read-only transaction, temporary tables included: a query calling a
    function that builds one runs with ``read_only: false`` (and only then)."""
    eng = server_engine(PG_URL)
    fn = _name("glk_rows")
    _exec(eng, f"""CREATE FUNCTION {fn}() RETURNS TABLE (id text, name text) LANGUAGE plpgsql AS $f$
        BEGIN
            CREATE TEMP TABLE scratch ON COMMIT DROP AS SELECT 'C1'::text AS id, 'Acme'::text AS name;
            RETURN QUERY SELECT s.id, s.name FROM scratch s;
        END $f$""")
    try:
        query = f"SELECT id, name FROM {fn}()"
        with pytest.raises(KBError, match="read-only transaction"):
            _read(load_adapter("sql", PG_URL, query=query, columns={"label": "name"}))
        assert _read(load_adapter("sql", PG_URL, query=query, columns={"label": "name"}, read_only=False)) == ["C1"]
    finally:
        _exec(eng, f"DROP FUNCTION IF EXISTS {fn}()")
        eng.dispose()


def test_a_database_that_refuses_the_setting_is_read_with_a_warning(caplog) -> None:
    from kb_adapters.sql import _READ_ONLY, _set_read_only

    class Refusing:
        def cursor(self):
            return self

        def execute(self, statement):
            raise RuntimeError("syntax error at or near CHARACTERISTICS")

        def rollback(self):
            self.rolled_back = True

        def close(self):
            pass

    conn = Refusing()
    with caplog.at_level("WARNING", logger="kb_adapters.sql"):
        assert _set_read_only(conn, _READ_ONLY["postgresql"], "postgresql://u:***@h/db") is False
    assert conn.rolled_back and "could not make the connection read-only" in caplog.text
    assert "u:***@h" in caplog.text


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite", "mssql", None, "any"])
def test_a_non_ascii_name_before_dollars_and_transaction_words_are_refused(dialect) -> None:
    """PostgreSQL reads "x€$$" as one name; the guard read a dollar-quoted string there and let a stacked
    `; COMMIT; DROP TABLE` past (the review dropped a table: read-only per transaction ends at that COMMIT). Now the
    name is read as PostgreSQL reads it, and a query holding a ';' may name no transaction-control word at all."""
    from kb_adapters.sql import _check_query

    bypass = ("SELECT 'a' AS id, 'n' AS name, 1 AS x€$$) s; COMMIT; DROP TABLE victim; "
              "SELECT * FROM (SELECT 'C9' AS id, 'N' AS name, 1 AS y --$$")
    with pytest.raises(ConfigError):
        _check_query(bypass, dialect)
    with pytest.raises(ConfigError, match="'COMMIT' \\(transaction control\\)"):
        _check_query("SELECT 'a;b' AS id, 'commit' AS name FROM t", dialect)
    # a ';' literal without such a word, and such a word without a ';', stay fine
    assert _check_query("SELECT id, REPLACE(aliases, ';', '|') AS aliases FROM t", dialect)
    assert _check_query("SELECT id, CASE WHEN x THEN 'a' END AS name FROM t", dialect)


def test_the_review_bypass_leaves_the_table_on_postgresql() -> None:
    from sqlalchemy import text

    eng = server_engine(PG_URL)
    table = f"s29_victim_{uuid.uuid4().hex[:8]}"
    with eng.begin() as c:
        c.execute(text(f"CREATE TABLE {table} (id text)"))
    try:
        q = (f"SELECT 'a' AS id, 'n' AS name, 1 AS x€$$) s; COMMIT; DROP TABLE {table}; "
             "SELECT * FROM (SELECT 'C9' AS id, 'N' AS name, 1 AS y --$$")
        with pytest.raises(ConfigError):
            load_adapter("sql", PG_URL, query=q, columns={"label": "name"})
        with eng.connect() as c:
            assert c.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0  # still there
    finally:
        with eng.begin() as c:
            c.execute(text(f"DROP TABLE IF EXISTS {table}"))
        eng.dispose()
