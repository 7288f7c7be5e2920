"""pipelines/company_kb_sql.yaml on real SQL servers: the KB is read straight from a table at warm-up."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import pytest

import glinker

REPO = Path(__file__).resolve().parents[2]
SERVERS = {
    "postgresql": os.environ.get("GLINKER_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"),
    "mariadb": os.environ.get("GLINKER_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
COMPANIES = [
    ("c1", "Acme Corp", "maker of everything", "Acme|ACME Corporation", 50.0),
    ("c2", "Acme Bank", "a bank in Portugal", "", 10.0),
    ("c3", "Google", "search company", "Alphabet|Google LLC", 90.0),
]


@pytest.fixture(params=sorted(SERVERS))
def company_table(request, monkeypatch, tmp_path):
    from sqlalchemy import Column, Float, MetaData, String, Table, Text, create_engine, insert, text

    url = SERVERS[request.param]
    try:
        eng = create_engine(url)
        with eng.connect() as c:
            c.execute(text("SELECT 1"))
    except Exception as e:  # no server here: skip, naming why
        pytest.skip(f"{request.param} unreachable at {url}: {type(e).__name__}")
    name = f"glk_companies_{uuid.uuid4().hex[:8]}"
    md = MetaData()
    t = Table(name, md, Column("id", String(16), primary_key=True), Column("name", Text), Column("description", Text),
              Column("aliases", Text), Column("popularity", Float))
    md.create_all(eng)
    with eng.begin() as c:
        c.execute(insert(t), [dict(zip(("id", "name", "description", "aliases", "popularity"), r)) for r in COMPANIES])
    monkeypatch.setenv("GLINKER_SQL_URL", url)
    monkeypatch.setenv("GLINKER_COMPANY_TABLE", name)
    monkeypatch.setenv("GLINKER_CACHE", str(tmp_path / "cache"))
    yield eng, t
    md.drop_all(eng)
    eng.dispose()


def test_company_pipeline_reads_the_table(company_table, tiny_model):
    from sqlalchemy import insert

    eng, t = company_table
    pipe = glinker.load_pipeline(str(REPO / "pipelines" / "company_kb_sql.yaml"), model=str(tiny_model))
    [doc] = pipe.link(["ACME Corporation hired a banker from Acme Bank; Alphabet did not."])
    # the tiny random model decides NIL or not; the ranking is decided by the table's aliases
    got = {(doc.text[ln.mention.start:ln.mention.end], ln.candidates[0].entity_id) for ln in doc.links if ln.candidates}
    assert {("ACME Corporation", "c1"), ("Acme Bank", "c2"), ("Alphabet", "c3")} <= got
    # the table is the source of truth: a new row is seen by the next pipeline load
    with eng.begin() as c:
        c.execute(insert(t), [{"id": "c4", "name": "Initech", "description": "software", "aliases": "",
                               "popularity": 5.0}])
    pipe2 = glinker.load_pipeline(str(REPO / "pipelines" / "company_kb_sql.yaml"), model=str(tiny_model))
    [doc2] = pipe2.link(["Initech and Google."])
    assert {ln.candidates[0].entity_id for ln in doc2.links if ln.candidates} >= {"c4", "c3"}


def test_later_starts_sync_the_cached_kb_with_the_table(company_table, tiny_model, monkeypatch, caplog):
    """A second start does not re-embed the table: new and changed rows are embedded, deleted rows dropped; two
    processes (here threads, each with its own lock handle) starting together build the cache once, in turn;
    `--kb` replaces the pipeline's KB."""
    import threading

    from sqlalchemy import delete, update

    from glinker.model import BiEncoder

    eng, t = company_table
    path = str(REPO / "pipelines" / "company_kb_sql.yaml")
    encoded: list[str] = []
    real = BiEncoder.encode_entities

    def counting(self, texts, batch_size=64):
        encoded.extend(texts)
        return real(self, texts, batch_size)

    monkeypatch.setattr(BiEncoder, "encode_entities", counting)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            glinker.load_pipeline(path, model=str(tiny_model)).warm_up()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert len(encoded) == len(COMPANIES)  # built once; the second start found it and changed nothing
    encoded.clear()
    with eng.begin() as c:
        c.execute(update(t).where(t.c.id == "c2").values(description="a bank in Lisbon"))
        c.execute(delete(t).where(t.c.id == "c3"))
    from glinker.stages import resources

    monkeypatch.setattr(resources, "SAY_SYNC_ROWS", 1)  # a sync embedding many rows says so by default
    pipe = glinker.load_pipeline(path, model=str(tiny_model))
    with caplog.at_level(logging.WARNING, logger="glinker.stages.resources"):
        [doc] = pipe.link(["Acme Bank and Google LLC."])
    assert "with its sql source: 1 new or changed texts to embed" in caplog.text
    assert encoded == ["Acme Bank: a bank in Lisbon"]  # only the changed row
    with eng.begin() as c:  # a popularity refresh: stored, nothing embedded, nothing said of embedding
        c.execute(update(t).values(popularity=42.0))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glinker.stages.resources"):
        glinker.load_pipeline(path, model=str(tiny_model)).warm_up()
    assert "to embed" not in caplog.text and encoded == ["Acme Bank: a bank in Lisbon"]
    assert not any(c.entity_id == "c3" for ln in doc.links for c in ln.candidates)  # deleted: gone
    kb_dir = pipe.stages["by_alias"].kb.root
    # a start where the table did not change reads it against the KB and writes no new generation
    live = (kb_dir / "CURRENT").read_text()
    glinker.load_pipeline(path, model=str(tiny_model)).warm_up()
    assert (kb_dir / "CURRENT").read_text() == live and not list(kb_dir.glob(".update-*"))
    other = glinker.load_pipeline(path, model=str(tiny_model), kb=str(kb_dir))
    assert other.spec.header.kb == str(kb_dir)
    [doc] = other.link(["Acme Bank"])
    assert doc.links and doc.links[0].candidates[0].entity_id == "c2"


def test_a_start_while_the_database_is_down_links_with_the_cached_kb(company_table, tiny_model, monkeypatch,
                                                                       caplog):
    import warnings

    from glinker.errors import SourceUnavailable, StaleKBWarning
    from kb_adapters.sql import SQLAdapter

    path = str(REPO / "pipelines" / "company_kb_sql.yaml")
    glinker.load_pipeline(path, model=str(tiny_model)).warm_up()  # the cache, built while the server is up

    def down(self):
        raise SourceUnavailable("cannot connect to the server: Connection refused", where="sql.source")

    monkeypatch.setattr(SQLAdapter, "_connect", down)
    # a Python program sees it without configuring logging (a warning), and a service may make it an error
    with pytest.warns(StaleKBWarning, match="linking with the cached KB .* as of its last sync"):
        [doc] = glinker.load_pipeline(path, model=str(tiny_model)).link(["ACME Corporation and Google."])
    assert {ln.candidates[0].entity_id for ln in doc.links if ln.candidates} >= {"c1", "c3"}
    assert "linking with the cached KB" in caplog.text and "Connection refused" in caplog.text
    assert "as of its last sync (20" in caplog.text  # when the source was last read whole
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleKBWarning)
        with pytest.raises(StaleKBWarning):
            glinker.load_pipeline(path, model=str(tiny_model)).warm_up()
