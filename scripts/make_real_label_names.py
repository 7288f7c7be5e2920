"""Write a label list of real names from ../shared/data, one label a line, for the label-bank measurements of
issue 7 (`docs/bench/labels.md`, session 38: `banks/real100k` is its first 99,999 lines, `banks/real600k` all of
it, 597,485 labels; a name beginning with "#", a comment in a labels file, is left out).

    python scripts/make_real_label_names.py --data ../shared/data --out runs/real-names.txt
    head -99999 runs/real-names.txt > runs/real-names-100k.txt
    glinker labels build runs/real-names-100k.txt -o banks/real100k --index none

In this order, each name once (whitespace collapsed, at most 120 characters): 25 common entity types, the type
names of the shared NER training sets (lower-cased), FB15k-237's Wikidata descriptions, labels and aliases,
Vital-Articles titles and short descriptions, AIDA-train entity labels and mention forms, the partial title list,
then every place name (English, native and the multilingual `names`). Nothing from the shared data is written
into the repository: the list goes where --out says (runs/ is git-ignored).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

COMMON = ["person", "organization", "location", "city", "country", "company", "date", "event", "product", "disease",
          "drug", "chemical", "gene", "protein", "law", "work of art", "language", "nationality", "political party",
          "sports team", "award", "film", "book", "song", "vehicle"]


def _ner_types(data: Path) -> Iterator[str]:
    for f in sorted(glob.glob(str(data / "ner" / "train" / "*" / "*.json"))):
        try:
            rows = json.loads(Path(f).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for r in rows if isinstance(rows, list) else [rows]:
            if not isinstance(r, dict):
                continue
            for key in ("ner", "entities"):
                for e in r.get(key) or []:
                    if isinstance(e, list) and len(e) >= 3:
                        yield str(e[2]).lower()
                    elif isinstance(e, dict):
                        yield str(e.get("label") or e.get("type", "")).lower()


def names(data: Path) -> Iterator[str]:
    """Every name, in the order of the module docstring (repeats included)."""
    yield from COMMON
    yield from _ner_types(data)
    fb = json.loads((data / "kb" / "fb15k237_wikidata" / "entity2wikidata.json").read_text(encoding="utf-8"))
    for v in fb.values():
        yield v.get("description")
        yield v.get("label")
        yield from v.get("alternatives") or []
    va = json.loads((data / "kb" / "vital_articles" / "summaries_en-us.json").read_text(encoding="utf-8"))
    for title, v in va.items():
        yield title
        yield v.get("description")
    with open(data / "kb" / "aida_train_entities.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            yield r.get("label")
            yield from r.get("mentions") or {}
    with open(data / "kb" / "title2qid_partial.tsv", encoding="utf-8") as f:
        for line in f:
            yield line.split("\t")[0].replace("_", " ")
    with open(data / "kb" / "places" / "places.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            yield r.get("name")
            yield r.get("native")
            yield from r.get("names") or []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if not (a.data / "kb" / "places" / "places.jsonl").is_file():
        sys.exit(f"{a.data}: no kb/places/places.jsonl here; pass --data with the shared data folder")
    seen: set[str] = set()
    out: list[str] = []
    for s in names(a.data):
        if not isinstance(s, str):
            continue
        s = " ".join(s.split())
        if s and len(s) <= 120 and s not in seen and not s.startswith("#"):
            seen.add(s)
            out.append(s)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(a.out.name + ".tmp")
    tmp.write_text("\n".join(out) + "\n", encoding="utf-8")
    os.replace(tmp, a.out)
    print(json.dumps({"out": str(a.out), "labels": len(out)}))


if __name__ == "__main__":
    main()
