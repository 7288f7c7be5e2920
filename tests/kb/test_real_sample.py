"""The real sample (FB15k-237 Wikidata entities, places, vital articles) built through the wikidata adapter
from a dump in the official layout and through the sql adapter from PostgreSQL: same entities, same results."""

from __future__ import annotations

import importlib.util
import random
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from glinker.kb import KB, build_kb
from glinker.kb.adapters import load_adapter

from .conftest import PG_URL, REPO, drop_tables, server_engine

pytestmark = [pytest.mark.shared_data, pytest.mark.services, pytest.mark.slow]


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("make_wikidata_sample", REPO / "scripts" / "make_wikidata_sample.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


@pytest.fixture(scope="module")
def sample(shared_data: Path, tmp_path_factory: Any) -> Any:
    eng = server_engine(PG_URL)
    mod = _script()
    ents = mod.sample_entities(shared_data)
    tmp = tmp_path_factory.mktemp("sample")
    dump = tmp / "sample.json.gz"
    assert "wrote" in next(mod.iter_main(["dump", "--data", str(shared_data), "--out", str(dump)]))
    table = f"glk_sample_{uuid.uuid4().hex[:8]}"
    mod.write_sql(ents, PG_URL, table)
    yield {"entities": ents, "dump": dump, "table": table, "tmp": tmp}
    drop_tables(eng, table, f"{table}_aliases")
    eng.dispose()


def _sql(tbl: str, **kw: Any) -> Any:
    return load_adapter("sql", PG_URL, columns={"types": "types"}, extra_columns=["enwiki"],
                        alias_table=f"{tbl}_aliases", **kw)


def test_sample_is_real_and_large(sample: Any) -> None:
    ents = sample["entities"]
    assert len(ents) > 50_000 and len({e.id for e in ents}) == len(ents)
    assert sum(1 for e in ents if e.description) > 40_000


def test_wikidata_and_postgres_kbs_are_the_same(sample: Any) -> None:
    tmp, table = sample["tmp"], sample["table"]
    build_kb(load_adapter("wikidata", str(sample["dump"]), workers=2), tmp / "wd", None)
    build_kb(_sql(table, table=table), tmp / "pg", None)
    with KB.open(tmp / "wd") as wd, KB.open(tmp / "pg") as pg:
        assert len(wd) == len(pg) == len(sample["entities"])
        assert wd.manifest.counts["aliases"] == pg.manifest.counts["aliases"]
        ids = [e.id for e in sample["entities"]]
        key = lambda e: (e.id, e.label, e.description, sorted(e.aliases), e.types, e.popularity,
                         e.extra.get("enwiki"))
        for i in range(0, len(ids), 5000):
            assert list(map(key, wd.get(ids[i:i + 5000]))) == list(map(key, pg.get(ids[i:i + 5000])))
        rng = random.Random(0)
        names = [n for e in rng.sample(sample["entities"], 300) for n in e.names()[:2]] + ["Paris", "Georgia"]
        for n in names:
            assert wd.lookup_alias(n) == pg.lookup_alias(n), n
        assert len(wd.lookup_alias("Georgia")) >= 2  # the country and the US state: homonyms kept
        for n in names[:25]:
            assert wd.fuzzy(n[:-1] + "x", limit=5, score_cutoff=70) == pg.fuzzy(n[:-1] + "x", limit=5, score_cutoff=70)


def test_dense_search_results_match(sample: Any, encoder: Any) -> None:
    tmp, table = sample["tmp"], sample["table"]
    build_kb(load_adapter("wikidata", str(sample["dump"]), workers=2, p31_include="Q6256"), tmp / "wdc", encoder)
    build_kb(_sql(table, query=f"SELECT * FROM {table} WHERE types LIKE '%Q6256%'"), tmp / "pgc", encoder)
    with KB.open(tmp / "wdc") as wd, KB.open(tmp / "pgc") as pg:
        assert len(wd) == len(pg) > 200
        queries = ["France", "a country in Africa", "Georgia", "island nation in the Pacific", "Deutschland"]
        s1, i1 = wd.search_text(queries, encoder, k=10)
        s2, i2 = pg.search_text(queries, encoder, k=10)
        assert i1 == i2
        np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-5)
