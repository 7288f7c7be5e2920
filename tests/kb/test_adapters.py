"""Every built-in adapter passes the shared conformance suite, plus adapter-specific behaviour."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from glinker.errors import ConfigError, DataError, KBError
from glinker.kb.adapters import available_adapters, load_adapter
from glinker.kb.testing import SAMPLE_ENTITIES, AdapterConformance, core
from glinker.types import Entity
from kb_adapters.wikidata import write_dump

from .conftest import MYSQL_URL, PG_URL, drop_tables, load_sql_tables, server_engine, write_csv, write_jsonl

WD = Path(__file__).resolve().parents[3] / "shared" / "data" / "wikidata_format"


class TestJSONL(AdapterConformance):
    adapter_name = "jsonl"

    def make_adapter(self, entities: list[Entity], tmp_path: Path, **options: Any) -> Any:
        return load_adapter("jsonl", str(write_jsonl(entities, tmp_path / "kb.jsonl")), **options)


class TestCSV(AdapterConformance):
    adapter_name = "csv"

    def make_adapter(self, entities: list[Entity], tmp_path: Path, **options: Any) -> Any:
        return load_adapter("csv", str(write_csv(entities, tmp_path / "kb.csv")), **options)


@pytest.mark.parametrize("suffix", [".json", ".json.gz", ".json.bz2"])
class TestWikidata(AdapterConformance):
    adapter_name = "wikidata"
    suffix = ".json"

    @pytest.fixture(autouse=True)
    def _suffix(self, suffix: str) -> None:
        self.suffix = suffix

    def make_adapter(self, entities: list[Entity], tmp_path: Path, **options: Any) -> Any:
        path = tmp_path / f"dump{self.suffix}"
        write_dump(entities, path)
        options.setdefault("workers", 1)
        return load_adapter("wikidata", str(path), **options)


class _SQLConformance(AdapterConformance):
    adapter_name = "sql"
    url = ""
    child_aliases = False

    @pytest.fixture(autouse=True)
    def _engine(self) -> Any:
        self.engine = server_engine(self.url)
        self.tables: list[str] = []
        yield
        if self.tables:
            drop_tables(self.engine, *self.tables)
        self.engine.dispose()

    def make_adapter(self, entities: list[Entity], tmp_path: Path, **options: Any) -> Any:
        ent_t, al_t = load_sql_tables(self.engine, entities, self.child_aliases)
        self.tables += [ent_t, al_t]
        cols = {"id": "eid", "label": "name", "description": "descr", "types": "type_list", "popularity": "pop"}
        if self.child_aliases:
            options.setdefault("alias_table", al_t)
        else:
            cols["aliases"] = "alias_list"
        return load_adapter("sql", self.url, table=ent_t, columns=cols, **options)


class TestSQLite(_SQLConformance):
    url = "sqlite://"  # replaced per test with a file URL

    @pytest.fixture(autouse=True)
    def _engine(self, tmp_path: Path) -> Any:  # type: ignore[override]
        self.url = f"sqlite:///{tmp_path / 'kb.db'}"
        self.engine = server_engine(self.url)
        self.tables = []
        yield
        self.engine.dispose()


class TestSQLiteChildAliases(TestSQLite):
    child_aliases = True


@pytest.mark.services
class TestPostgres(_SQLConformance):
    url = PG_URL


@pytest.mark.services
class TestPostgresChildAliases(_SQLConformance):
    url = PG_URL
    child_aliases = True


@pytest.mark.services
class TestMariaDB(_SQLConformance):
    url = MYSQL_URL


@pytest.mark.services
class TestMariaDBChildAliases(_SQLConformance):
    url = MYSQL_URL
    child_aliases = True


# -- registry ---------------------------------------------------------------------------------------------------
def test_builtin_adapters_are_entry_points() -> None:
    eps = available_adapters()
    assert {"wikidata", "sql", "jsonl", "csv"} <= set(eps)
    assert eps["wikidata"] == "kb_adapters.wikidata:WikidataAdapter"


def test_unknown_adapter_suggests_closest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        load_adapter("wikidat", str(tmp_path))
    assert "wikidata" in str(ei.value)


def test_missing_source_file(tmp_path: Path) -> None:
    with pytest.raises(KBError) as ei:
        load_adapter("jsonl", str(tmp_path / "nope.jsonl"))
    assert "nope.jsonl" in str(ei.value)


# -- jsonl / csv specifics ---------------------------------------------------------------------------------------
def test_jsonl_bad_line_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "kb.jsonl"
    p.write_text('{"id": "a", "label": "A"}\n{"id": "b", "label": \n{"label": "no id"}\n', encoding="utf-8")
    with pytest.raises(DataError) as ei:
        list(load_adapter("jsonl", str(p)).iter_entities())
    assert f"{p}:2" in str(ei.value)
    ad = load_adapter("jsonl", str(p), on_error="skip")
    assert [e.id for e in ad.iter_entities()] == ["a"]
    assert ad.report.bad == 2 and any(":3" in pr for pr in ad.report.problems)


def test_jsonl_mapping_and_extra_kept(tmp_path: Path) -> None:
    p = tmp_path / "kb.jsonl"
    p.write_text(json.dumps({"qid": "Q1", "name": "One", "url": "http://x", "popularity": 0.87}) + "\n")
    (e,) = load_adapter("jsonl", str(p), mapping={"id": "qid", "label": "name"}).iter_entities()
    assert (e.id, e.label, e.popularity, e.extra) == ("Q1", "One", 0.87, {"url": "http://x"})


def test_jsonl_bad_field_type_names_field(tmp_path: Path) -> None:
    p = tmp_path / "kb.jsonl"
    p.write_text(json.dumps({"id": "Q1", "label": "One", "popularity": -3}) + "\n")
    with pytest.raises(DataError) as ei:
        list(load_adapter("jsonl", str(p)).iter_entities())
    assert "popularity" in str(ei.value) and ":1" in str(ei.value)


def test_csv_tsv_and_mapping(tmp_path: Path) -> None:
    p = tmp_path / "kb.tsv"
    p.write_text("key\tname\tnames\tcountry\nK1\tParis\tParigi;Lutèce\tFR\n", encoding="utf-8")
    (e,) = load_adapter("csv", str(p), delimiter="\t", list_sep=";",
                        mapping={"id": "key", "label": "name", "aliases": "names"}).iter_entities()
    assert (e.id, e.aliases, e.extra) == ("K1", ["Parigi", "Lutèce"], {"country": "FR"})


def test_csv_missing_id_column(tmp_path: Path) -> None:
    p = tmp_path / "kb.csv"
    p.write_text("name\nParis\n")
    with pytest.raises(KBError) as ei:
        list(load_adapter("csv", str(p)).iter_entities())
    assert "id" in str(ei.value) and "mapping" in str(ei.value)


# -- wikidata specifics ------------------------------------------------------------------------------------------
@pytest.fixture
def wd_dir() -> Path:
    if not WD.is_dir():
        pytest.skip(f"wikidata_format samples not found at {WD}")
    return WD


@pytest.mark.parametrize("workers", [0, 2])
def test_wikidata_real_dump_sample(wd_dir: Path, workers: int) -> None:
    ad = load_adapter("wikidata", str(wd_dir / "wikidata_dump_format_sample.json"), languages="en,de",
                      workers=workers)
    ents = {e.id: e for e in ad.iter_entities()}
    assert set(ents) == {"Q42", "Q131261", "Q1", "Q1040"}  # P31 is a property: skipped by default
    q42 = ents["Q42"]
    assert q42.label == "Douglas Adams" and q42.types == ["Q5"] and q42.popularity == 94
    assert q42.extra["enwiki"] == "Douglas Adams"
    assert "Douglas Noël Adams" in q42.aliases and q42.labels["de"] == "Douglas Adams"
    assert "Q515" in ents["Q1040"].types
    assert ad.skipped_by_reason == {"kind": 1} and ad.report.bad == 0


def test_wikidata_gz_mock_dump_old_numeric_ids(wd_dir: Path) -> None:
    ad = load_adapter("wikidata", str(wd_dir / "wdtk-sample-dump-20150815.json.gz"), require_label=False, workers=2)
    ents = list(ad.iter_entities())
    assert len(ents) == 55 and ad.report.skipped == 46  # 46 properties skipped
    assert ents[0].id == "Q1" and ents[0].types == ["Q1454986"]  # numeric-id only in this old dump
    props = load_adapter("wikidata", str(wd_dir / "wdtk-sample-dump-20150815.json.gz"), require_label=False,
                         kinds="property", workers=0)
    assert sum(1 for _ in props.iter_entities()) == 46


def test_wikidata_filters(tmp_path: Path) -> None:
    p = tmp_path / "d.json"
    write_dump(SAMPLE_ENTITIES, p)
    ids = lambda **o: sorted(e.id for e in load_adapter("wikidata", str(p), workers=0, **o).iter_entities())
    assert ids(p31_include="Q515") == ["Q72", "Q830149", "Q90"]
    assert ids(p31_exclude=["Q515", "Q5"]) == ["Q1490", "Q167646", "Q7"]
    assert ids(min_sitelinks=200) == ["Q1490", "Q72", "Q90"]


def test_wikidata_language_fallback(tmp_path: Path) -> None:
    p = tmp_path / "d.json"
    e = Entity(id="Q5", label="", labels={"fr": "être humain", "de": "Mensch"}, descriptions={"de": "Art"})
    write_dump([e], p, lang="fr")
    (got,) = load_adapter("wikidata", str(p), languages="en", workers=0).iter_entities()
    assert got.label == "Mensch"  # no en label: fall back to a stable choice (sorted: de)
    (got,) = load_adapter("wikidata", str(p), languages="fr,de", workers=0).iter_entities()
    assert (got.label, got.description, got.aliases) == ("être humain", "Art", ["Mensch"])
    assert list(load_adapter("wikidata", str(p), languages="en", fallback=False, workers=0).iter_entities()) == []


@pytest.mark.parametrize("workers", [0, 2])
def test_wikidata_malformed_lines_counted_with_line_numbers(tmp_path: Path, workers: int) -> None:
    p = tmp_path / "d.json"
    write_dump(SAMPLE_ENTITIES, p)
    lines = p.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3][: len(lines[3]) // 2]  # a truncated entity line (file line 4)
    lines[5] = "this is not json,"  # line 6
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ad = load_adapter("wikidata", str(p), workers=workers, block_mb=0.001)
    got = [e.id for e in ad.iter_entities()]
    assert len(got) == len(SAMPLE_ENTITIES) - 2
    assert ad.report.bad == 2
    assert any(pr.startswith(f"{p}:4:") for pr in ad.report.problems)
    assert any(pr.startswith(f"{p}:6:") for pr in ad.report.problems)


@pytest.mark.parametrize("suffix", [".json.gz", ".json.bz2"])
def test_wikidata_truncated_archive(tmp_path: Path, suffix: str) -> None:
    many = [Entity(id=f"Q{i}", label=f"entity number {i} " + "x" * (i % 50), popularity=i % 7)
            for i in range(1, 20001)]
    full = tmp_path / f"full{suffix}"
    write_dump(many, full)
    cut = tmp_path / f"cut{suffix}"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    ad = load_adapter("wikidata", str(cut), workers=2, block_mb=0.01)
    kept: list[str] = []
    with pytest.raises(DataError) as ei:
        for e in ad.iter_entities():
            kept.append(e.id)
    assert "truncated" in str(ei.value) and str(cut) in str(ei.value)
    assert 1000 < len(kept) < len(many)
    assert kept == [f"Q{i}" for i in range(1, len(kept) + 1)]  # everything read, in order, nothing lost
    ad2 = load_adapter("wikidata", str(cut), workers=0, allow_truncated=True)
    assert sum(1 for _ in ad2.iter_entities()) >= len(kept)
    assert ad2.report.bad >= 1


# -- sql specifics -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [
    {"table": "ents; DROP TABLE x"}, {"table": "ents", "columns": {"id": 'id" --'}},
    {"table": "ents", "alias_table": "a b"}, {"table": "ents", "extra_columns": ["x);"]},
    {"query": "SELECT 1; DROP TABLE x"}, {"query": "DELETE FROM ents"}, {},
    {"table": "ents", "columns": {"nonfield": "x"}},
])
def test_sql_rejects_injection_through_names(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        load_adapter("sql", "sqlite://", **bad)


def _sql_query_source(url: str) -> None:
    eng = server_engine(url)
    t, a = load_sql_tables(eng, SAMPLE_ENTITIES, child_aliases=False)
    try:
        ad = load_adapter("sql", url, query=f"SELECT eid AS id, name AS label, pop AS popularity FROM {t} "
                                           "WHERE pop >= 100", batch_size=2)
        got = sorted(e.id for e in ad.iter_entities())
        assert got == ["Q1490", "Q72", "Q90"]
        assert ad.estimate_count() == 3
        # a value that looks like SQL is just data (bound parameters)
        evil = Entity(id="x'); DROP TABLE t; --", label="Robert'); DROP TABLE Students;--")
        t2, a2 = load_sql_tables(eng, [evil], child_aliases=True)
        try:
            ad2 = load_adapter("sql", url, table=t2, columns={"id": "eid", "label": "name"}, alias_table=a2)
            assert [core(e)[:2] for e in ad2.iter_entities()] == [(evil.id, evil.label)]
        finally:
            drop_tables(eng, t2, a2)
    finally:
        drop_tables(eng, t, a)
        eng.dispose()


def test_sql_query_sqlite(tmp_path: Path) -> None:
    _sql_query_source(f"sqlite:///{tmp_path / 'q.db'}")


@pytest.mark.services
@pytest.mark.parametrize("url", [PG_URL, MYSQL_URL], ids=["postgres", "mariadb"])
def test_sql_query_servers(url: str) -> None:
    _sql_query_source(url)


def test_sql_unreachable_server_is_clear() -> None:
    ad = load_adapter("sql", "postgresql+psycopg2://nobody@127.0.0.1:1/none", table="t")
    with pytest.raises(KBError) as ei:
        list(ad.iter_entities())
    assert "cannot connect" in str(ei.value)


def test_sql_missing_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    eng = server_engine(url)
    t, _ = load_sql_tables(eng, SAMPLE_ENTITIES[:1], child_aliases=False)
    with pytest.raises(KBError) as ei:
        list(load_adapter("sql", url, table=t, columns={"id": "eid", "label": "nope"}).iter_entities())
    assert "nope" in str(ei.value) and "columns" in str(ei.value)


def test_sql_describe_hides_password() -> None:
    d = load_adapter("sql", "postgresql+psycopg2://user:s3cret@127.0.0.1:5432/db", table="t").describe()
    assert "s3cret" not in json.dumps(d) and "user" in d["source"]


def test_kb_imports_stay_light() -> None:
    import subprocess
    import sys

    code = ("import sys, glinker, glinker.kb, glinker.kb.kb, glinker.kb.store, glinker.kb.adapters, "
            "kb_adapters.wikidata, kb_adapters.sql, glinker.cli.kb; "
            "print(sorted(m for m in ('torch', 'transformers', 'faiss', 'sqlalchemy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_csv_encodings_and_byte_order_mark(tmp_path: Path) -> None:
    """A spreadsheet's "CSV UTF-8" export (byte-order mark first) reads as is; a Latin-1 file stops at the line
    that is not UTF-8, naming the option that reads it."""
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfid,label\nK1,Caf\xc3\xa9\n")
    (e,) = load_adapter("csv", str(bom)).iter_entities()
    assert (e.id, e.label) == ("K1", "Café")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"id,label\nK1,Paris\nK2,Caf\xe9\n")
    with pytest.raises(DataError) as ei:
        list(load_adapter("csv", str(latin)).iter_entities())
    assert f"{latin}:3" in str(ei.value) and "encoding=latin-1" in str(ei.value)
    assert [e.label for e in load_adapter("csv", str(latin), encoding="latin-1").iter_entities()] == ["Paris", "Café"]


def test_jsonl_non_utf8_line_says_so(tmp_path: Path) -> None:
    p = tmp_path / "kb.jsonl"
    p.write_bytes(b'{"id": "a", "label": "A"}\n{"id": "b", "label": "Caf\xe9"}\n')
    with pytest.raises(DataError) as ei:
        list(load_adapter("jsonl", str(p)).iter_entities())
    assert f"{p}:2" in str(ei.value) and "not UTF-8" in str(ei.value) and "iconv" in str(ei.value)


def test_sql_missing_table_and_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    eng = server_engine(url)
    t, _ = load_sql_tables(eng, SAMPLE_ENTITIES[:1], child_aliases=False)
    with pytest.raises(KBError) as ei:
        list(load_adapter("sql", url, table=t + "x").iter_entities())
    assert f"did you mean {t!r}" in str(ei.value) and ei.value.where == "sql.table"
    missing = tmp_path / "nothere.db"
    with pytest.raises(KBError) as ei:
        list(load_adapter("sql", f"sqlite:///{missing}", table=t).iter_entities())
    assert "SQLite database file not found" in str(ei.value)
    assert not missing.exists()  # not created empty on the way


def test_wikidata_compression_by_content_and_checked_options(tmp_path: Path) -> None:
    import gzip
    import lzma

    plain = tmp_path / "d.json"
    write_dump(SAMPLE_ENTITIES, plain)
    want = [e.id for e in load_adapter("wikidata", str(plain), workers=0).iter_entities()]
    renamed = tmp_path / "download"  # gzip without its suffix
    renamed.write_bytes(gzip.compress(plain.read_bytes()))
    assert [e.id for e in load_adapter("wikidata", str(renamed), workers=0).iter_entities()] == want
    xz = tmp_path / "d.json.xz"
    xz.write_bytes(lzma.compress(plain.read_bytes()))
    with pytest.raises(DataError) as ei:
        list(load_adapter("wikidata", str(xz), workers=0).iter_entities())
    assert "xz-compressed" in str(ei.value) and ".gz" in str(ei.value)
    for bad, needle in (({"languages": "english"}, "language code"), ({"kinds": "items"}, "unknown kind"),
                        ({"p31_include": "5"}, "not a QID")):
        with pytest.raises(ConfigError) as ei:
            load_adapter("wikidata", str(plain), **bad)
        assert needle in str(ei.value)
    assert load_adapter("wikidata", str(plain), p31_include="q5,Q515").options.p31_include == ["Q5", "Q515"]


def test_no_entities_says_what_was_skipped(tmp_path: Path) -> None:
    from glinker.kb.build import build_kb

    plain = tmp_path / "d.json"
    write_dump(SAMPLE_ENTITIES, plain)
    with pytest.raises(KBError) as ei:
        build_kb(load_adapter("wikidata", str(plain), workers=0, p31_include="Q999999"), tmp_path / "kb", None)
    assert "skipped: " in str(ei.value) and "require_label" in str(ei.value)


def test_sql_json_alias_cells_bad_query_and_url_hints(tmp_path: Path) -> None:
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path / 'j.db'}"
    eng = server_engine(url)
    with eng.begin() as c:
        c.execute(text("CREATE TABLE jal (id TEXT, name TEXT, al TEXT)"))
        c.execute(text("""INSERT INTO jal VALUES ('g1', 'Globex', '["Globex Inc", "Globex|Co"]'), ('g2', 'Initech', 'Initrode')"""))
    ents = list(load_adapter("sql", url, table="JAL", columns={"label": "name", "aliases": "al"}).iter_entities())
    assert [e.aliases for e in ents] == [["Globex Inc", "Globex|Co"], ["Initrode"]]  # a JSON list is a list
    with pytest.raises(KBError) as ei:
        list(load_adapter("sql", url, query="SELECT id, nmae FROM jal", columns={"label": "name"}).iter_entities())
    assert "the query fails" in str(ei.value) and "nmae" in str(ei.value)
    eng.dispose()
    with pytest.raises(KBError) as ei:
        list(load_adapter("sql", "postgres://u@127.0.0.1/db", table="t").iter_entities())
    assert "postgresql://" in str(ei.value)


@pytest.mark.services
def test_sql_server_that_never_answers_times_out(monkeypatch) -> None:
    """A MySQL URL at PostgreSQL's port: the server accepts the connection and never sends MySQL's greeting."""
    import time

    import kb_adapters.sql as sql

    monkeypatch.setattr(sql, "CONNECT_TIMEOUT", 2)
    t0 = time.monotonic()
    with pytest.raises(KBError) as ei:
        list(load_adapter("sql", "mysql+pymysql://root@127.0.0.1:5432/test", table="t").iter_entities())
    assert "cannot connect" in str(ei.value) and time.monotonic() - t0 < 30


def test_a_truncated_dump_downloaded_again_resumes(tmp_path: Path, caplog: Any) -> None:
    """The promise of the truncation error: the entities read before the cut are kept, and the build of the
    complete file (same path, downloaded again) resumes after them, even with allow_truncated or workers changed."""
    from glinker.kb import KB
    from glinker.kb.build import build_kb

    many = [Entity(id=f"Q{i}", label=f"entity number {i} " + "x" * (i % 50)) for i in range(1, 20001)]
    full = tmp_path / "full.json.gz"
    write_dump(many, full)
    dump = tmp_path / "latest-all.json.gz"
    data = full.read_bytes()
    dump.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError):
        build_kb(load_adapter("wikidata", str(dump), workers=0, block_mb=0.01), tmp_path / "kb", None,
                 chunk_size=1000)
    dump.write_bytes(data)  # the download, finished
    with caplog.at_level("INFO"):
        build_kb(load_adapter("wikidata", str(dump), workers=0, block_mb=0.05, allow_truncated=True),
                 tmp_path / "kb", None, chunk_size=1000)
    assert "resuming the interrupted build" in caplog.text
    with KB.open(tmp_path / "kb") as kb:
        assert len(kb) == len(many)


def test_wikidata_api_answer_is_named(tmp_path: Path) -> None:
    p = tmp_path / "wbgetentities-Q42.json"
    p.write_text(json.dumps({"entities": {"Q42": {"id": "Q42", "type": "item"}}, "success": 1}, indent=1))
    with pytest.raises(DataError) as ei:
        list(load_adapter("wikidata", str(p), workers=0).iter_entities())
    assert "API answer" in str(ei.value) and "not a dump" in str(ei.value)
    from glinker.kb.build import build_kb  # a build of it leaves no half-made folder ("a build was interrupted")

    with pytest.raises(DataError):
        build_kb(load_adapter("wikidata", str(p), workers=0), tmp_path / "kb", None)
    assert not (tmp_path / "kb").exists()


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("mid_line", [True, False])
def test_a_plain_dump_cut_short_is_refused_like_a_cut_archive(tmp_path: Path, workers: int, mid_line: bool) -> None:
    """A plain .json dump cut short (no closing ']') was published as a complete KB, one bad record at most: it is
    refused now as a cut archive is (every entity before the cut given first), or kept with allow_truncated. A file
    of one entity a line without brackets (NDJSON, e.g. from wikibase-dump-filter) needs no ']'."""
    many = [Entity(id=f"Q{i}", label=f"entity number {i}") for i in range(1, 3001)]
    full = tmp_path / "full.json"
    write_dump(many, full)
    cut = tmp_path / "cut.json"
    data = full.read_bytes()
    end = data.index(b"\n", len(data) // 2)  # the end of a line in the middle
    cut.write_bytes(data[: end - 20] if mid_line else data[: end + 1])
    ad = load_adapter("wikidata", str(cut), workers=workers, block_mb=0.01)
    kept: list[str] = []
    with pytest.raises(DataError, match="does not end with"):
        for e in ad.iter_entities():
            kept.append(e.id)
    n = data[:end].count(b"\n") - (1 if mid_line else 0)  # complete entity lines before the cut
    assert kept == [f"Q{i}" for i in range(1, n + 1)]
    ad = load_adapter("wikidata", str(cut), workers=workers, block_mb=0.01, allow_truncated=True)
    assert [e.id for e in ad.iter_entities()] == kept and ad.report.bad == (2 if mid_line else 1)
    nd = tmp_path / "nd.json"
    nd.write_bytes(b"\n".join(x.rstrip(b",") for x in data.splitlines()[1:-1]) + b"\n")
    assert len(list(load_adapter("wikidata", str(nd), workers=workers).iter_entities())) == len(many)


def test_wikidata_mul_names_are_aliases(tmp_path: Path) -> None:
    """Names under the language-independent `mul` code count in every language: kept as aliases (fallback on)."""
    p = tmp_path / "d.json"
    doc = {"id": "Q1", "type": "item", "labels": {"en": {"language": "en", "value": "Acme Corp"},
                                                  "mul": {"language": "mul", "value": "ACME"}},
           "aliases": {"mul": [{"language": "mul", "value": "J. Dupont & Co"}]}, "descriptions": {}, "claims": {},
           "sitelinks": {}}
    p.write_text("[\n" + json.dumps(doc) + "\n]\n")
    (got,) = load_adapter("wikidata", str(p), workers=0).iter_entities()
    assert (got.label, got.aliases) == ("Acme Corp", ["ACME", "J. Dupont & Co"])
    (got,) = load_adapter("wikidata", str(p), workers=0, fallback=False).iter_entities()
    assert got.aliases == []


def test_csv_quotes_headers_delimiters_and_big_cells(tmp_path: Path) -> None:
    """An unclosed quote is named (it read the rest of the file into one cell); duplicate and misnamed columns,
    another delimiter and UTF-16 are named or read; a long description is one cell; errors give the row's line."""
    f = tmp_path / "e.csv"
    f.write_text("id,label,description\nQ1,One,first\nQ2,\"Two,second\nQ3,Three,third\n", encoding="utf-8")
    with pytest.raises(DataError, match="never closed") as e:
        list(load_adapter("csv", str(f)).iter_entities())
    assert f"{f}:3" in str(e.value)
    f.write_text("id,label,aliases,aliases\nQ1,One,a,b\n", encoding="utf-8")
    with pytest.raises(DataError, match="names the column 'aliases' twice"):
        list(load_adapter("csv", str(f)).iter_entities())
    f.write_text("id\tlabel\nQ1\tOne\n", encoding="utf-8")
    with pytest.raises(KBError, match="delimiter=tab"):
        list(load_adapter("csv", str(f)).iter_entities())
    assert [e.label for e in load_adapter("csv", str(f), delimiter="\\t").iter_entities()] == ["One"]
    f.write_bytes("id\tlabel\nQ1\tZürich\n".encode("utf-16"))  # Excel's "Unicode text"
    assert [e.label for e in load_adapter("csv", str(f), delimiter="tab").iter_entities()] == ["Zürich"]
    f.write_text("sku,name\nA1,Acme\n", encoding="utf-8")
    with pytest.raises(KBError, match="mapping names columns the header lacks: label -> 'Name'"):
        list(load_adapter("csv", str(f), mapping={"id": "sku", "label": "Name"}).iter_entities())
    with pytest.raises(ConfigError, match="'descripton', which is not an entity field"):
        load_adapter("csv", str(f), mapping={"id": "sku", "descripton": "name"})
    big = "x" * 200_000
    f.write_text(f"id,label,description,labels\nQ1,One,{big},our own column\nQ2,Two,\"a,b\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        list(load_adapter("csv", str(f)).iter_entities())
    assert f"{f}:3" in str(e.value)  # the row with the open quote, not the long one
    f.write_text(f"id,label,description,labels\nQ1,One,{big},our own column\n", encoding="utf-8")
    [ent] = load_adapter("csv", str(f)).iter_entities()
    assert len(ent.description) == 200_000 and ent.extra["labels"] == "our own column"
    f.write_text("", encoding="utf-8")
    with pytest.raises(KBError, match="the file is empty"):
        list(load_adapter("csv", str(f)).iter_entities())


def test_structured_values_are_named_not_stringified(tmp_path: Path) -> None:
    f = tmp_path / "e.jsonl"
    good = {"id": 1.0, "label": "Acme", "aliases": [{"name": "ACME", "lang": "en"}, "Acme Corp"]}
    f.write_text(json.dumps(good) + "\n")
    [e] = load_adapter("jsonl", str(f)).iter_entities()
    assert e.id == "1" and e.aliases == ["ACME", "Acme Corp"]  # a pandas float id, alias objects by their name
    for bad, msg in [({"label": ["Acme", "ACME"]}, "'label' ('label') is a list, not text"),
                     ({"id": True}, "field 'id' ('id') is a bool"), ({"popularity": float("inf")}, "finite"),
                     ({"aliases": [{"lang": "en"}]}, "object without a name")]:
        f.write_text(json.dumps({**good, **bad}) + "\n")
        with pytest.raises(DataError, match=re.escape(msg)):
            list(load_adapter("jsonl", str(f)).iter_entities())


def test_a_truncated_gzip_source_is_named(tmp_path: Path) -> None:
    import gzip

    full = tmp_path / "e.jsonl.gz"
    with gzip.open(full, "wt") as g:
        for i in range(3000):
            g.write(json.dumps({"id": f"Q{i}", "label": f"entity number {i} " + "x" * (i % 97)}) + "\n")
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(DataError, match="ends early, after") as e:
        list(load_adapter("jsonl", str(cut)).iter_entities())
    assert str(cut) in str(e.value)


def test_sql_uuid_and_numeric_keys_and_queries_with_colons_semicolons_and_comments():
    """PostgreSQL uuid / numeric(10,0) keys are ids; a query may hold ':word' and ';' in its strings and comments."""
    import uuid

    from sqlalchemy import text

    eng = server_engine(PG_URL)
    t = f"glk_keys_{uuid.uuid4().hex[:8]}"
    u = uuid.UUID("0b7c9e2d-0000-4000-8000-000000000001")
    with eng.begin() as c:
        c.execute(text(f"CREATE TABLE {t} (uid uuid PRIMARY KEY, num numeric(10,0), name text, al text)"))
        c.execute(text(f"INSERT INTO {t} VALUES (:u, 1001, 'Acme', 'ACME;Acme Corp'), "
                       f"('0b7c9e2d-0000-4000-8000-000000000002', 1002, '\\:internal test', NULL)"), {"u": u})
    try:
        by_uuid = list(load_adapter("sql", PG_URL, table=t, columns={"id": "uid", "label": "name"}).iter_entities())
        assert [e.id for e in by_uuid] == [str(u), "0b7c9e2d-0000-4000-8000-000000000002"]
        q = (f"-- the products, not the internal ones\nSELECT num AS id, name AS label, REPLACE(al, ';', '|') AS "
             f"aliases, uid::text AS code FROM {t} WHERE name NOT LIKE ':internal%' -- last line comment")
        [e] = list(load_adapter("sql", PG_URL, query=q, extra_columns=["code"]).iter_entities())
        assert (e.id, e.label, e.aliases, e.extra["code"]) == ("1001", "Acme", ["ACME", "Acme Corp"], str(u))
        with pytest.raises(ConfigError, match="one SELECT"):
            load_adapter("sql", PG_URL, query=f"SELECT * FROM {t}; DROP TABLE {t}")
    finally:
        drop_tables(eng, t)


def test_mariadb_alias_table_keys_match_as_the_database_compares_them():
    """MariaDB's default collation matches 'sku-001' and 'SKU-002 ' to the keys SKU-001 and SKU-002: their aliases
    reach those entities (they were dropped silently)."""
    import uuid

    from sqlalchemy import text

    eng = server_engine(MYSQL_URL)
    s, a = f"glk_sku_{uuid.uuid4().hex[:8]}", f"glk_skual_{uuid.uuid4().hex[:8]}"
    with eng.begin() as c:
        c.execute(text(f"CREATE TABLE {s} (sku varchar(20) PRIMARY KEY, name varchar(50))"))
        c.execute(text(f"CREATE TABLE {a} (sku varchar(20), alias varchar(50))"))
        c.execute(text(f"INSERT INTO {s} VALUES ('SKU-001', 'Anvil'), ('SKU-002', 'Rocket'), ('sku-003', 'Magnet')"))
        c.execute(text(f"INSERT INTO {a} VALUES ('sku-001', 'ACME anvil'), ('SKU-002 ', 'ACME rocket'), "
                       f"('SKU-003', 'ACME magnet'), ('SKU-001', 'anvil 1')"))
    try:
        got = {e.id: sorted(e.aliases) for e in load_adapter(
            "sql", MYSQL_URL, table=s, columns={"id": "sku", "label": "name"}, alias_table=a, alias_key="sku",
            alias_column="alias").iter_entities()}
        assert got == {"SKU-001": ["ACME anvil", "anvil 1"], "SKU-002": ["ACME rocket"], "sku-003": ["ACME magnet"]}
    finally:
        drop_tables(eng, s, a)


def test_a_record_without_id_names_its_keys_and_the_mapping_to_write(tmp_path):
    src = tmp_path / "m.jsonl"
    src.write_text('{"sku": "A1", "name": "Acme"}\n')
    with pytest.raises(DataError) as ei:
        list(load_adapter("jsonl", str(src)).iter_entities())
    assert "its keys: sku, name" in str(ei.value) and """-o mapping='{"id": "sku"}'""" in str(ei.value)


def test_a_resumed_build_of_a_changed_dump_starts_over(tmp_path: Path, caplog: Any) -> None:
    """An interrupted build resumed on another dump at the same path (a newer `latest-all.json.gz` with the same
    first bytes) mixed the two silently: the stored entities are checked where the new file holds them, and a
    changed source starts the build over."""
    from glinker.kb import KB
    from glinker.kb.build import build_kb

    week_a = [Entity(id=f"Q{i}", label=f"entity number {i}") for i in range(1, 3001)]
    week_b = [e for e in week_a if e.id != "Q500"]  # one entity deleted before the cut
    dump = tmp_path / "latest-all.json"
    write_dump(week_a, dump)
    data = dump.read_bytes()
    dump.write_bytes(data[: len(data) * 2 // 3])  # interrupted (here: cut) after ~2,000 entities
    with pytest.raises(DataError):
        build_kb(load_adapter("wikidata", str(dump), workers=0), tmp_path / "kb", None, chunk_size=100)
    write_dump(week_b, dump)
    with caplog.at_level("INFO"):
        build_kb(load_adapter("wikidata", str(dump), workers=0), tmp_path / "kb", None, chunk_size=100)
    assert "the source changed since the interrupted build" in caplog.text and "starting the build over" in caplog.text
    with KB.open(tmp_path / "kb") as kb:
        assert len(kb) == len(week_b) and kb.get(["Q500"]) == []


def test_a_resumed_build_checks_the_content_of_what_it_stored(tmp_path: Path, caplog: Any, encoder: Any) -> None:
    """A newer dump with the first 64 KiB of the old one and the same ids, records changed further on: resumed
    with the id check alone it gave a KB of the two dumps (old records before the cut, new ones after); killed
    after reading (while embedding), the re-run read nothing and published the old dump under the new file. Now
    the stored entities' content is checked, and a file changed since it was read is read again to compare."""
    from glinker.kb import KB
    from glinker.kb.build import build_kb

    old = [Entity(id=f"Q{i}", label=f"entity number {i}", description="old") for i in range(1, 3001)]
    new = [e.model_copy(update={"description": "NEW"}) if e.id in ("Q1000", "Q2900") else e for e in old]
    dump = tmp_path / "latest-all.json"
    write_dump(old, dump)
    data = dump.read_bytes()
    dump.write_bytes(data[: len(data) * 2 // 3])  # cut after ~2,000 entities: Q1000 is stored
    with pytest.raises(DataError):
        build_kb(load_adapter("wikidata", str(dump), workers=0), tmp_path / "kb", None, chunk_size=100)
    write_dump(new, dump)
    assert dump.read_bytes()[:65536] == data[:65536]  # the same key: the build resumes
    with caplog.at_level("INFO"):
        build_kb(load_adapter("wikidata", str(dump), workers=0), tmp_path / "kb", None, chunk_size=100)
    assert "not the ones the interrupted build stored" in caplog.text and "starting the build over" in caplog.text
    with KB.open(tmp_path / "kb") as kb:
        assert [e.description for e in kb.get(["Q1000", "Q2900", "Q5"])] == ["NEW", "NEW", "old"]

    class Killed:  # a build killed after reading its source, while embedding
        fingerprint, dim = encoder.fingerprint, encoder.dim

        def encode_entities(self, texts: Any, batch_size: int = 64) -> Any:
            raise KeyboardInterrupt

    write_dump(old, dump)
    with pytest.raises(KeyboardInterrupt):
        build_kb(load_adapter("wikidata", str(dump), workers=0), tmp_path / "kb2", Killed(), chunk_size=100)
    caplog.clear()
    write_dump(old, dump)  # the same dump again (a new mtime): read to compare, and the build goes on
    os.utime(dump, ns=(1, 1))
    with caplog.at_level("INFO"):
        with pytest.raises(KeyboardInterrupt):
            build_kb(load_adapter("wikidata", str(dump), workers=0), tmp_path / "kb2", Killed(), chunk_size=100)
    assert "reading it again to compare" in caplog.text and "starting the build over" not in caplog.text
    write_dump(new, dump)
    caplog.clear()
    with caplog.at_level("INFO"):
        build_kb(load_adapter("wikidata", str(dump), workers=0), tmp_path / "kb2", encoder, chunk_size=100)
    assert "starting the build over" in caplog.text
    with KB.open(tmp_path / "kb2") as kb:
        assert [e.description for e in kb.get(["Q1000", "Q2900", "Q5"])] == ["NEW", "NEW", "old"]


def test_a_pipe_as_source_is_named(tmp_path: Path) -> None:
    """`--source <(zcat dump.gz)` said "source file not found: /dev/fd/63"."""
    r, w = os.pipe()
    try:
        with pytest.raises(KBError, match="is a pipe or device, not a regular file"):
            load_adapter("wikidata", f"/dev/fd/{r}")
        with pytest.raises(KBError, match="is a directory"):
            load_adapter("jsonl", str(tmp_path))
    finally:
        os.close(r)
        os.close(w)
