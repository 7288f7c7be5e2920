"""A company KB read from its database, as a data engineer's walkthrough met it (session 36), on real PostgreSQL
and MariaDB servers: binary columns, a column feeding two fields, batch_size 0, a table of another schema, alias
table options, missing rights, a server that never greets, and a `kb add --prune` whose source is lost mid-read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from glinker.errors import ConfigError, DataError, KBError, SourceUnavailable
from glinker.kb.adapters import load_adapter

from .conftest import MYSQL_URL, PG_URL, server_engine
from .test_sql_sources import _drop, _exec, _name, glinker_cli

pytestmark = pytest.mark.services


def test_binary_columns_are_read_as_their_text_mariadb() -> None:
    eng = server_engine(MYSQL_URL)
    t = _name()
    _exec(eng, f"CREATE TABLE {t} (id INT PRIMARY KEY, name VARBINARY(100), descr BLOB, tag VARBINARY(8))",
          f"INSERT INTO {t} VALUES (1, 'Plain Co', 'a company', 'x'), (2, X'436166C3A9204E6F6972205341', NULL, 'y'), "
          f"(3, X'FF00FE', 'bad bytes', X'FF')")
    try:
        ad = load_adapter("sql", MYSQL_URL, table=t, columns={"label": "name", "description": "descr"},
                          extra_columns=["tag"], on_error="skip")
        ents = list(ad.iter_entities())
        assert [(e.id, e.label, e.description) for e in ents] == [("1", "Plain Co", "a company"),
                                                                   ("2", "Café Noir SA", "")]
        assert ents[0].extra == {"tag": "x"}
        assert ad.report.bad == 1 and "binary data that is not UTF-8 text" in str(ad.report.problems[0])
        with pytest.raises(DataError) as ei:
            list(load_adapter("sql", MYSQL_URL, table=t, columns={"label": "name"}).iter_entities())
        assert "field label (column 'name')" in str(ei.value) and "holds binary data" in str(ei.value)
        assert "CONVERT(" in ei.value.fix
    finally:
        _drop(eng, t)
        eng.dispose()


def test_a_binary_uuid_id_is_told_to_be_hexed_and_bytea_is_text_postgres() -> None:
    eng = server_engine(MYSQL_URL)
    t = _name()
    _exec(eng, f"CREATE TABLE {t} (id BINARY(16) PRIMARY KEY, name VARCHAR(20))",
          f"INSERT INTO {t} VALUES (X'9A1B2C3D4E5F60718293A4B5C6D7E8F9', 'Acme')")
    try:
        with pytest.raises(DataError) as ei:
            list(load_adapter("sql", MYSQL_URL, table=t, columns={"label": "name"}).iter_entities())
        assert "field 'id'" in str(ei.value) and "HEX(col)" in ei.value.fix
    finally:
        _drop(eng, t)
        eng.dispose()
    eng = server_engine(PG_URL)
    t = _name()
    _exec(eng, f"CREATE TABLE {t} (id INT PRIMARY KEY, name TEXT, notes BYTEA)",
          f"INSERT INTO {t} VALUES (1, 'Acme', convert_to('first notes', 'UTF8'))")
    try:
        ad = load_adapter("sql", PG_URL, table=t, columns={"label": "name", "description": "notes"})
        [e] = list(ad.iter_entities())
        assert e.description == "first notes"  # was '<memory at 0x...>', another text every read
    finally:
        _drop(eng, t)
        eng.dispose()


def test_one_column_feeds_two_fields_and_batch_size_is_at_least_one() -> None:
    eng = server_engine(PG_URL)
    t = _name()
    _exec(eng, f'CREATE TABLE {t} ("Vendor Name" TEXT)', f"INSERT INTO {t} VALUES ('Initech'), ('Hooli')")
    try:
        ad = load_adapter("sql", PG_URL, table=t, columns={"id": "Vendor Name", "label": "Vendor Name",
                                                           "aliases": "Vendor Name"})
        assert sorted((e.id, e.label, tuple(e.aliases)) for e in ad.iter_entities()) == [
            ("Hooli", "Hooli", ("Hooli",)), ("Initech", "Initech", ("Initech",))]
        with pytest.raises(ConfigError) as ei:
            load_adapter("sql", PG_URL, table=t, batch_size=0)
        assert "batch_size" in str(ei.value)
    finally:
        _drop(eng, t)
        eng.dispose()


def test_a_table_of_another_schema_and_alias_table_options_are_named() -> None:
    eng = server_engine(PG_URL)
    schema = _name("glk_s")
    _exec(eng, f"CREATE SCHEMA {schema}", f'CREATE TABLE {schema}."Products" (id INT PRIMARY KEY, name TEXT)',
          f'INSERT INTO {schema}."Products" VALUES (1, \'Widget\')',
          f"CREATE TABLE {schema}.product_alias (product_ref INT, alias TEXT)",
          f"INSERT INTO {schema}.product_alias VALUES (1, 'Widgy')")
    try:
        with pytest.raises(KBError) as ei:  # not in the default schema: found in its own, said with it
            list(load_adapter("sql", PG_URL, table="Products", columns={"label": "name"}).iter_entities())
        assert f"did you mean '{schema}.Products'" in str(ei.value)
        with pytest.raises(KBError) as ei:
            list(load_adapter("sql", PG_URL, table=f"{schema}.Prodcts", columns={"label": "name"}).iter_entities())
        assert f"did you mean '{schema}.Products'" in str(ei.value)
        opts = {"table": f"{schema}.Products", "columns": {"label": "name"}}
        with pytest.raises(KBError) as ei:
            list(load_adapter("sql", PG_URL, alias_table=f"{schema}.product_alais", alias_key="product_ref",
                              **opts).iter_entities())
        assert ei.value.where == "sql.alias_table" and "product_alias" in str(ei.value)
        with pytest.raises(KBError) as ei:
            list(load_adapter("sql", PG_URL, alias_table=f"{schema}.product_alias", alias_key="productref",
                              **opts).iter_entities())
        assert ei.value.where == "sql.alias_key" and "did you mean 'product_ref'" in str(ei.value)
        [e] = load_adapter("sql", PG_URL, alias_table=f"{schema}.product_alias", alias_key="product_ref",
                           **opts).iter_entities()
        assert e.aliases == ["Widgy"]
    finally:
        _exec(eng, f"DROP SCHEMA {schema} CASCADE")
        eng.dispose()


def test_a_table_without_read_rights_says_the_grant_mariadb() -> None:
    eng = server_engine(MYSQL_URL)
    ok, no, user = _name(), _name(), _name("glk_u")
    _exec(eng, f"CREATE TABLE {ok} (id INT PRIMARY KEY, name VARCHAR(20))", f"CREATE TABLE {no} (id INT PRIMARY KEY)",
          f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'", f"GRANT SELECT ON test.{ok} TO '{user}'@'%'")
    try:
        url = MYSQL_URL.replace("root@", f"{user}:pw@")
        assert [e.label for e in load_adapter("sql", url, table=ok, columns={"label": "name"}).iter_entities()] == []
        with pytest.raises(KBError) as ei:
            list(load_adapter("sql", url, table=no, columns={"label": "id"}).iter_entities())
        assert ei.value.where == "sql.table" and "GRANT SELECT ON" in ei.value.fix, str(ei.value)
    finally:
        _exec(eng, f"DROP USER '{user}'@'%'")
        _drop(eng, ok, no)
        eng.dispose()


def test_a_server_that_never_greets_is_waited_for_once(monkeypatch: Any) -> None:
    import kb_adapters.sql as sql

    monkeypatch.setattr(sql, "CONNECT_TIMEOUT", 1)
    calls = []
    real = sql.SQLAdapter._greeting_check

    def counted(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(sql.SQLAdapter, "_greeting_check", counted)
    ad = load_adapter("sql", "mysql+pymysql://root@127.0.0.1:5432/test", table="t")  # PostgreSQL's port: no greeting
    for step in (ad.estimate_count, lambda: list(ad.iter_entities())):
        with pytest.raises(SourceUnavailable, match="greeting"):
            step()
    assert len(calls) == 1


def test_kb_add_prune_reads_the_whole_source_before_writing(tmp_path: Path) -> None:
    """The source lost mid-read (here a bad line after 9,000 good ones, past the first write batch) leaves the KB as
    it was: the records read before it were written in place, batch by batch, before."""
    src = tmp_path / "ents.jsonl"
    src.write_text("".join(json.dumps({"id": f"e{i}", "label": f"Name {i}"}) + "\n" for i in range(9000)))
    r = glinker_cli("kb", "build", "-a", "jsonl", "-s", str(src), "--model", "none", "--out", str(tmp_path / "kb"))
    assert r.returncode == 0, r.stderr
    new = tmp_path / "new.jsonl"
    new.write_text("".join(json.dumps({"id": f"e{i}", "label": f"Renamed {i}"}) + "\n" for i in range(9000))
                   + "{not json\n")
    r = glinker_cli("kb", "add", str(tmp_path / "kb"), "-s", str(new), "--prune")
    assert r.returncode != 0 and "new.jsonl:9001" in r.stderr, r.stderr
    from glinker.kb import KB

    with KB.open(tmp_path / "kb") as kb:
        [e0] = kb.get(["e0"])
        assert e0.label == "Name 0" and len(kb) == 9000


def test_review_mends_text_in_binary_alias_case_grant_and_memo() -> None:
    """Binary text with a no-break space, a soft hyphen or an emoji joiner is text; alias table columns match in any
    case where the database's names do (MariaDB); PostgreSQL's refusal to read a table says the GRANT; a refused
    connection is not remembered (only a greeting that never came is)."""
    eng = server_engine(MYSQL_URL)
    t, a = _name(), _name()
    _exec(eng, f"CREATE TABLE {t} (CompanyID INT PRIMARY KEY, name VARBINARY(100))",
          f"CREATE TABLE {a} (CompanyID INT, Alias VARCHAR(40))",
          f"INSERT INTO {t} VALUES (1, X'41434D45C2A0436F7270'), (2, X'536F6674C2AD77617265'), "
          "(3, X'F09F91A8E2808DF09F91A9')", f"INSERT INTO {a} VALUES (1, 'ACME')")
    try:
        ad = load_adapter("sql", MYSQL_URL, table=t, columns={"id": "CompanyID", "label": "name"}, alias_table=a,
                          alias_key="companyid", alias_column="alias")
        ents = list(ad.iter_entities())
        assert [e.label for e in ents] == ["ACME\u00a0Corp", "Soft\u00adware", "\U0001f468\u200d\U0001f469"]
        assert ents[0].aliases == ["ACME"]
    finally:
        _drop(eng, t, a)
        eng.dispose()
    eng = server_engine(PG_URL)
    t, role = _name(), _name("glk_r")
    _exec(eng, f"CREATE TABLE {t} (id INT PRIMARY KEY, name TEXT)", f"CREATE ROLE {role} LOGIN")
    try:
        url = PG_URL.replace("postgres@", f"{role}@")
        with pytest.raises(KBError) as ei:
            list(load_adapter("sql", url, table=t, columns={"label": "name"}).iter_entities())
        assert ei.value.where == "sql.table" and f"GRANT SELECT ON {t}" in ei.value.fix, str(ei.value)
    finally:
        _drop(eng, t)
        _exec(eng, f"DROP ROLE {role}")
        eng.dispose()
    ad = load_adapter("sql", "mysql+pymysql://root@127.0.0.1:1/test", table="t")  # nothing listens: refused at once
    with pytest.raises(SourceUnavailable):
        ad.estimate_count()
    assert ad._greeting_failed is None


def test_spooled_changes_read_back_exactly_and_leave_no_file(tmp_path: Path) -> None:
    import datetime

    from glinker.kb.store import SpooledEntities
    from glinker.types import Entity

    when = datetime.datetime(2024, 1, 2, 3, 4, 5)
    with SpooledEntities(tmp_path) as sp:
        sp["a"] = Entity(id="a", label="A1")
        sp["b"] = Entity(id="b", label="B", extra={"since": when})
        sp["a"] = Entity(id="a", label="A2")  # the last record of an id counts
        sp["c"] = Entity(id="c", label="C")
        sp.pop("c")  # its last record equals the stored one: not a change
        sp.written()
        got = list(sp)
        assert [(e.id, e.label) for e in got] == [("b", "B"), ("a", "A2")] and len(sp) == 2
        assert got[0].extra == {"since": when} and list(sp) == got  # exact, and read again alike
    assert not list(tmp_path.iterdir())


def test_a_killed_syncs_spool_file_is_removed_by_the_next(tmp_path: Path) -> None:
    from glinker.kb.store import SpooledEntities

    dead = tmp_path / ".sync-spool-999999999-abc.pkl"  # no such process
    dead.write_bytes(b"x")
    live = tmp_path / f".sync-spool-{__import__('os').getppid()}-abc.pkl"  # a live process's (the test runner's parent)
    live.write_bytes(b"x")
    with SpooledEntities(tmp_path) as sp:
        sp.written()
    assert not dead.exists() and live.exists()


def test_postgres_schema_without_usage_says_the_schema_grant() -> None:
    eng = server_engine(PG_URL)
    schema, role = _name("glk_s"), _name("glk_r")
    _exec(eng, f"CREATE SCHEMA {schema}", f"CREATE TABLE {schema}.companies (id INT PRIMARY KEY, name TEXT)",
          f"CREATE ROLE {role} LOGIN", f"GRANT SELECT ON {schema}.companies TO {role}")
    try:
        url = PG_URL.replace("postgres@", f"{role}@")
        with pytest.raises(KBError) as ei:
            list(load_adapter("sql", url, table=f"{schema}.companies", columns={"label": "name"}).iter_entities())
        assert f"GRANT USAGE ON SCHEMA {schema}" in (ei.value.fix or ""), str(ei.value)
    finally:
        _exec(eng, f"DROP SCHEMA {schema} CASCADE", f"DROP ROLE {role}")
        eng.dispose()
