"""Turn the real entities of ../shared/data/kb into (a) a Wikidata dump in the official layout and (b) the same
entities as SQL tables, so one sample can be built through both the wikidata and the sql adapter.

    python scripts/make_wikidata_sample.py dump --out kb_out/sample-dump.json.gz
    python scripts/make_wikidata_sample.py sql --url postgresql+psycopg2://postgres@127.0.0.1/test --table sample

Sources (merged by QID, first source wins for label/description, aliases are unioned): FB15k-237 Wikidata
entities, places with QIDs, Wikipedia Vital Articles mapped to QIDs via title2qid_partial.tsv. Places get P31
country/state/city (Q6256/Q7275/Q515); popularity is the number of known sitelinks (enwiki: 0 or 1), since the
sample carries no sitelink counts. Nothing from the shared data is written into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glinker.types import Entity

PLACE_TYPES = {"country": "Q6256", "state": "Q7275", "city": "Q515"}
_QID = re.compile(r"^Q[1-9][0-9]*$")


def data_dir(arg: str | None) -> Path:
    d = Path(arg or os.environ.get("GLINKER_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
    if not (d / "kb").is_dir():
        sys.exit(f"shared data not found at {d}: pass --data or set GLINKER_DATA")
    return d


def sample_entities(data: Path) -> list[Entity]:
    """The merged sample, in QID order (deterministic)."""
    kb = data / "kb"
    merged: dict[str, dict] = {}

    def put(qid: str, label: str, desc: str, aliases: list[str], types: list[str], enwiki: str | None) -> None:
        label, desc = label.strip(), desc.strip()
        aliases = [a.strip() for a in aliases if a and a.strip()]
        if not _QID.match(qid or "") or not label:
            return
        cur = merged.setdefault(qid, {"label": label, "description": desc, "aliases": [], "types": [],
                                      "enwiki": enwiki})
        if not cur["description"] and desc:
            cur["description"] = desc
        if not cur["enwiki"] and enwiki:
            cur["enwiki"] = enwiki
        for a in [label, *aliases]:
            if a and a != cur["label"] and a not in cur["aliases"]:
                cur["aliases"].append(a)
        for t in types:
            if t not in cur["types"]:
                cur["types"].append(t)

    fb = json.loads((kb / "fb15k237_wikidata" / "entity2wikidata.json").read_text(encoding="utf-8"))
    for rec in fb.values():
        url = rec.get("wikipedia") or ""
        title = url.rsplit("/wiki/", 1)[-1].replace("_", " ") if "/wiki/" in url else None
        put(rec.get("wikidata_id", ""), rec.get("label") or "", rec.get("description") or "",
            list(rec.get("alternatives") or []), [], title)
    with open(kb / "places" / "places.jsonl", encoding="utf-8") as f:
        for line in f:
            p = json.loads(line)
            names = [n for n in [p.get("native"), *(p.get("names") or [])] if n]
            desc = f"{p['type']} in {p['country']}" if p.get("country") and p["type"] != "country" else p["type"]
            put(p.get("qid") or "", p.get("name") or "", desc, names, [PLACE_TYPES[p["type"]]], None)
    title2qid = {}
    with open(kb / "title2qid_partial.tsv", encoding="utf-8") as f:
        for line in f:
            t, _, q = line.rstrip("\n").partition("\t")
            title2qid[t] = q
    vital = json.loads((kb / "vital_articles" / "summaries_en-us.json").read_text(encoding="utf-8"))
    for title, rec in vital.items():
        q = title2qid.get(title)
        if q:
            put(q, rec.get("title") or title, rec.get("description") or "", [], [], title)
    out = []
    for qid in sorted(merged, key=lambda q: int(q[1:])):
        m = merged[qid]
        extra = {"enwiki": m["enwiki"]} if m["enwiki"] else {}
        out.append(Entity(id=qid, label=m["label"], description=m["description"], aliases=m["aliases"],
                          types=m["types"], popularity=1 if m["enwiki"] else 0, extra=extra))
    return out


def write_sql(entities: list[Entity], url: str, table: str) -> tuple[str, str]:
    """Create ``table`` (entities) and ``table``_aliases (one alias per row) and load the sample into them."""
    from sqlalchemy import Column, Float, MetaData, String, Table, Text, create_engine, insert

    from kb_adapters.sql import check_identifier

    check_identifier(table, "--table")
    eng = create_engine(url)
    md = MetaData()
    ents = Table(table, md, Column("id", String(32), primary_key=True), Column("label", Text),
                 Column("description", Text), Column("types", Text), Column("popularity", Float),
                 Column("enwiki", Text))
    als = Table(f"{table}_aliases", md, Column("entity_id", String(32), index=True), Column("alias", Text))
    md.drop_all(eng)
    md.create_all(eng)
    with eng.begin() as c:
        for i in range(0, len(entities), 5000):
            part = entities[i:i + 5000]
            c.execute(insert(ents), [{"id": e.id, "label": e.label, "description": e.description,
                                      "types": "|".join(e.types), "popularity": e.popularity,
                                      "enwiki": e.extra.get("enwiki")} for e in part])
            rows = [{"entity_id": e.id, "alias": a} for e in part for a in e.aliases]
            if rows:
                c.execute(insert(als), rows)
    eng.dispose()
    return ents.name, als.name


def iter_main(argv: list[str] | None = None) -> Iterator[str]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["dump", "sql"])
    ap.add_argument("--data", help="shared data folder (default: $GLINKER_DATA or ../shared/data)")
    ap.add_argument("--out", default="kb_out/sample-dump.json.gz", help="dump path (.json, .json.gz, .json.bz2)")
    ap.add_argument("--url", help="SQLAlchemy URL for 'sql'")
    ap.add_argument("--table", default="glinker_sample", help="entity table name for 'sql'")
    a = ap.parse_args(argv)
    ents = sample_entities(data_dir(a.data))
    if a.what == "dump":
        from kb_adapters.wikidata import write_dump

        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        n = write_dump(ents, a.out)
        yield f"wrote {n:,} entities to {a.out}"
    else:
        if not a.url:
            ap.error("sql needs --url")
        t, al = write_sql(ents, a.url, a.table)
        yield f"loaded {len(ents):,} entities into {t} and {al}"


if __name__ == "__main__":
    for line in iter_main():
        print(line)
