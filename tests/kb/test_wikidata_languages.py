"""Wikidata languages: a fallback label takes its own language's description; a requested language no entity is
named in (``eng`` for ``en``) is reported after the dump."""

from __future__ import annotations

import logging
from pathlib import Path

from glinker.kb.adapters import load_adapter
from glinker.types import Entity
from kb_adapters.wikidata import write_dump


def test_a_fallback_label_brings_its_description(tmp_path: Path) -> None:
    p = tmp_path / "d.json"
    e = Entity(id="Q5", label="", labels={"fr": "être humain", "de": "Mensch"},
               descriptions={"de": "Art", "fr": "espèce"})
    write_dump([e], p, lang="fr")
    (got,) = load_adapter("wikidata", str(p), languages="en", workers=0).iter_entities()
    assert (got.label, got.description) == ("Mensch", "Art")  # the sorted fallback (de), with de's description
    (got,) = load_adapter("wikidata", str(p), languages="fr,de", workers=0).iter_entities()
    assert (got.label, got.description) == ("être humain", "espèce")  # requested languages as before


def test_a_language_that_names_no_entity_is_reported(tmp_path: Path, caplog) -> None:
    p = tmp_path / "d.json"
    write_dump([Entity(id=f"Q{i}", label=f"thing {i}") for i in range(1, 1201)], p)
    with caplog.at_level(logging.WARNING, logger="kb_adapters.wikidata"):
        ents = list(load_adapter("wikidata", str(p), languages="eng", workers=0).iter_entities())
    assert len(ents) == 1200 and ents[0].label == "thing 1"  # named by the fallback
    assert "none of the 1200 entities kept has a label in 'eng'" in caplog.text and "en, de" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kb_adapters.wikidata"):
        list(load_adapter("wikidata", str(p), languages="en,de", workers=2).iter_entities())
    assert "'de'" in caplog.text and "'en'" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kb_adapters.wikidata"):
        list(load_adapter("wikidata", str(p), languages="en", workers=0).iter_entities())
    assert "has a label in" not in caplog.text


def test_a_small_dump_is_counted_and_checked_as_a_large_one(tmp_path: Path, caplog, monkeypatch) -> None:
    """The shipped demo dump (300 entities, gzip): the first estimate said ~200 (the decompressor had read the whole
    file ahead, so 200 sampled lines looked like all of it) and a mistyped language went unreported below 1,000
    entities."""
    demo = Path(__file__).resolve().parents[2] / "examples" / "demo_kb" / "wikidata-demo.json.gz"
    ad = load_adapter("wikidata", str(demo), languages="eng", workers=0)
    with caplog.at_level(logging.WARNING, logger="kb_adapters.wikidata"):
        n = len(list(ad.iter_entities()))
    assert ad.estimate_count() == n == 300
    assert "none of the 300 entities kept has a label in 'eng'" in caplog.text
    # a large gzip dump: estimated from a sample, within a few percent
    import gzip

    big = tmp_path / "big.json.gz"
    write_dump([Entity(id=f"Q{i}", label=f"thing {i}", description=f"a thing numbered {i * 7919 % 100003}")
                for i in range(1, 60001)], tmp_path / "big.json")
    with open(tmp_path / "big.json", "rb") as src, gzip.open(big, "wb", compresslevel=1) as dst:
        dst.write(src.read())
    assert load_adapter("wikidata", str(big), workers=0).estimate_count() == 60000  # under the sample: counted
    import kb_adapters.wikidata as wd

    monkeypatch.setattr(wd, "ESTIMATE_SAMPLE_BYTES", big.stat().st_size // 4)
    est = load_adapter("wikidata", str(big), workers=0).estimate_count()
    assert est is not None and est != 60000 and abs(est - 60000) / 60000 < 0.25, est
