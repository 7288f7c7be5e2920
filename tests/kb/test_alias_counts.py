"""Alias counts (how often a surface form refers to an entity) and the p(entity | mention) prior they give:
through the real adapters, a real KB build and the real SQLite store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from glinker.errors import DataError
from glinker.kb import KB
from glinker.kb.adapters import load_adapter
from glinker.kb.build import build_kb
from glinker.kb.kb import STORE, current_generation
from glinker.kb.store import normalized_counts
from glinker.types import Entity

# three entities called England; two carry corpus counts, one only a plain alias list
RECORDS = [
    {"id": "Q21", "label": "England", "aliases": ["ENG"], "description": "country",
     "alias_counts": {"England": 60, "ENGLAND": 6, "English": 32}},
    {"id": "Q47762", "label": "England national football team", "description": "football team",
     "alias_counts": {"England": 30, "Three Lions": 2}},
    {"id": "Q5", "label": "England", "aliases": ["England, Arkansas"], "description": "city in Arkansas"},
    {"id": "Q90", "label": "Paris", "description": "capital of France"},
]


def write_records(path: Path, records: list[dict] = RECORDS) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture()
def counted_kb(tmp_path: Path) -> Path:
    build_kb(load_adapter("jsonl", str(write_records(tmp_path / "kb.jsonl"))), tmp_path / "kb", None)
    return tmp_path / "kb"


def test_counts_are_stored_and_give_p_e_given_m_over_homonyms(counted_kb: Path) -> None:
    with KB.open(counted_kb) as kb:
        assert kb.manifest.counts["alias_counts"] == 4  # england x2, english, three lions
        p = kb.prior(["England", "  england ", "English", "Three Lions", "Paris", "nowhere"])
        # "England" and "ENGLAND" are one key: 60 + 6 for the country, 30 for the team; the Arkansas city has none
        assert p["England"] == pytest.approx({"Q21": 66 / 96, "Q47762": 30 / 96})
        assert p["  england "] == p["England"]
        assert p["English"] == {"Q21": 1.0} and p["Three Lions"] == {"Q47762": 1.0}
        assert "Paris" not in p and "nowhere" not in p  # no counts: no prior
        assert sum(p["England"].values()) == pytest.approx(1.0)
        # every counted form is an alias too, even when the record did not list it
        assert kb.lookup_alias("three lions") == ["Q47762"]
        assert set(kb.lookup_alias("England")) == {"Q21", "Q47762", "Q5"}
        (e,) = kb.get(["Q47762"])
        assert e.alias_counts == {"England": 30, "Three Lions": 2} and e.aliases == []


def test_updates_and_removals_change_the_prior(counted_kb: Path) -> None:
    with KB.open(counted_kb, writable=True) as kb:
        kb.upsert([Entity(id="Q47762", label="England national football team",
                          alias_counts={"England": 66, "Three Lions": 2})], None)
        assert kb.prior(["England"])["England"] == pytest.approx({"Q21": 0.5, "Q47762": 0.5})
        kb.remove(["Q21"])
        assert kb.prior(["England"])["England"] == {"Q47762": 1.0}
        assert "English" not in kb.prior(["English"])
        kb.upsert([Entity(id="Q47762", label="England national football team")], None)  # counts dropped
        assert kb.prior(["England", "Three Lions"]) == {}
        assert kb.manifest.counts["alias_counts"] == 0


def test_kb_built_before_alias_counts_still_opens_and_gives_no_prior(tmp_path: Path) -> None:
    plain = [{k: v for k, v in r.items() if k != "alias_counts"} for r in RECORDS]
    build_kb(load_adapter("jsonl", str(write_records(tmp_path / "kb.jsonl", plain))), tmp_path / "kb", None)
    # the store layout of earlier releases: no alias_counts table at all
    db = sqlite3.connect(current_generation(tmp_path / "kb") / STORE)
    db.execute("DROP TABLE alias_counts")
    db.commit()
    db.close()
    with KB.open(tmp_path / "kb") as kb:
        assert not kb.store.has_alias_counts
        assert kb.prior(["England"]) == {} and kb.store.alias_count_pairs() == 0
        assert set(kb.lookup_alias("England")) == {"Q21", "Q5"}
        assert kb.get(["Q21"])[0].alias_counts == {}
    # opened for writing, the old store gains the table and takes counts from then on
    with KB.open(tmp_path / "kb", writable=True) as kb:
        kb.upsert([Entity(id="Q21", label="England", alias_counts={"England": 3})], None)
        assert kb.prior(["England"]) == {"England": {"Q21": 1.0}}


def test_plain_alias_lists_give_no_prior(tmp_path: Path) -> None:
    src = write_records(tmp_path / "kb.jsonl", [{"id": "Q1", "label": "A", "aliases": "B|C"}])
    build_kb(load_adapter("jsonl", str(src)), tmp_path / "kb", None)
    with KB.open(tmp_path / "kb") as kb:
        assert kb.lookup_alias("c") == ["Q1"] and kb.prior(["A", "B", "C"]) == {}
        assert kb.manifest.counts["alias_counts"] == 0


def test_jsonl_mapping_and_bad_counts(tmp_path: Path) -> None:
    src = write_records(tmp_path / "a.jsonl", [{"qid": "Q1", "name": "A", "forms": {"A": 2, "Ay": "3"}}])
    [e] = load_adapter("jsonl", str(src), mapping={"id": "qid", "label": "name", "alias_counts": "forms"}).iter_entities()
    assert e.alias_counts == {"A": 2.0, "Ay": 3.0} and "forms" not in e.extra
    bad = write_records(tmp_path / "b.jsonl", [{"id": "Q1", "label": "A", "alias_counts": {"A": -1}}])
    with pytest.raises(DataError) as ei:
        list(load_adapter("jsonl", str(bad)).iter_entities())
    assert "alias_counts" in str(ei.value)


def test_csv_cells_give_counts(tmp_path: Path) -> None:
    src = tmp_path / "kb.csv"
    src.write_text('id,label,alias_counts\nQ21,England,"England=60|ENGLAND=6|A=B=2"\nQ5,England,\n'
                   'Q9,X,"X=many"\n', encoding="utf-8")
    ents = list(load_adapter("csv", str(src), on_error="skip").iter_entities())
    assert [e.id for e in ents] == ["Q21", "Q5"]  # Q9's count is not a number: reported, skipped
    assert ents[0].alias_counts == {"England": 60.0, "ENGLAND": 6.0, "A=B": 2.0} and ents[1].alias_counts == {}
    assert normalized_counts(ents[0].alias_counts) == {"england": 66.0, "a=b": 2.0}


def test_sql_child_table_counts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kb.db'}"
    db = sqlite3.connect(tmp_path / "kb.db")
    db.executescript("""
        CREATE TABLE ents (id TEXT, label TEXT, alias_counts TEXT);
        CREATE TABLE forms (entity_id TEXT, alias TEXT, n INTEGER);
        INSERT INTO ents VALUES ('Q21', 'England', 'Engl=1'), ('Q47762', 'England national football team', NULL);
        INSERT INTO forms VALUES ('Q21', 'England', 60), ('Q21', 'Blighty', NULL), ('Q47762', 'England', 30);
    """)
    db.commit()
    db.close()
    ad = load_adapter("sql", url, table="ents", alias_table="forms", alias_count_column="n")
    build_kb(ad, tmp_path / "kb", None)
    with KB.open(tmp_path / "kb") as kb:
        p = kb.prior(["england", "engl", "blighty"])
        assert set(p) == {"england", "engl"} and p["engl"] == {"Q21": 1.0}
        assert p["england"] == pytest.approx({"Q21": 60 / 90, "Q47762": 30 / 90})
        assert kb.lookup_alias("blighty") == ["Q21"]
