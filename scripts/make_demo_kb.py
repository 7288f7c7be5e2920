"""Write the demo KB shipped in ``examples/demo_kb/``: real Wikidata entities (CC0) from the FB15k-237 Wikidata
records, those named in ``examples/texts.jsonl`` plus their homonyms and near-namesakes, in the official Wikidata
JSON dump layout (``.json.gz``), so ``glinker kb build --adapter wikidata`` reads it like a real dump.

    python scripts/make_demo_kb.py [--data ../shared/data] [--max 300]

Only the FB15k-237 Wikidata entity records are used (labels, descriptions, aliases: Wikidata content, CC0).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from glinker.types import Entity  # noqa: E402
from kb_adapters.wikidata import write_dump  # noqa: E402

QID = re.compile(r"^Q[1-9][0-9]*$")
WORD = re.compile(r"\w+")


def load_fb15k(data: Path) -> list[Entity]:
    recs = json.loads((data / "kb" / "fb15k237_wikidata" / "entity2wikidata.json").read_text(encoding="utf-8"))
    out: dict[str, Entity] = {}
    for rec in recs.values():
        qid, label = rec.get("wikidata_id") or "", rec.get("label") or ""
        if not QID.match(qid) or not label or qid in out:
            continue
        url = rec.get("wikipedia") or ""
        title = url.rsplit("/wiki/", 1)[-1].replace("_", " ") if "/wiki/" in url else None
        aliases = [a for a in dict.fromkeys(rec.get("alternatives") or []) if a and a != label][:20]
        out[qid] = Entity(id=qid, label=label, description=rec.get("description") or "", aliases=aliases,
                          popularity=1 if title else 0, extra={"enwiki": title} if title else {})
    return sorted(out.values(), key=lambda e: int(e.id[1:]))


def select(entities: list[Entity], texts: list[str], limit: int) -> list[Entity]:
    """Entities whose label or alias occurs in a text, then homonyms and entities sharing a name word."""
    blob = "\n".join(texts)
    words = {w.casefold() for w in WORD.findall(blob) if len(w) > 3 and w[0].isupper()}
    named, related = [], []
    for e in entities:
        names = [e.label, *e.aliases]
        if any(len(n) > 2 and re.search(rf"(?<!\w){re.escape(n)}(?!\w)", blob) for n in names):
            named.append(e)
        elif any(w.casefold() in words for n in names[:3] for w in WORD.findall(n)):
            related.append(e)
    named_labels = {e.label.casefold() for e in named}
    related.sort(key=lambda e: (e.label.casefold() not in named_labels, -e.popularity, int(e.id[1:])))
    return sorted(named + related[: max(0, limit - len(named))], key=lambda e: int(e.id[1:]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("GLINKER_DATA") or str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--texts", default=str(ROOT / "examples" / "texts.jsonl"))
    ap.add_argument("--out", default=str(ROOT / "examples" / "demo_kb" / "wikidata-demo.json.gz"))
    ap.add_argument("--max", type=int, default=300)
    args = ap.parse_args()
    data = Path(args.data)
    if not (data / "kb" / "fb15k237_wikidata").is_dir():
        sys.exit(f"FB15k-237 Wikidata records not found under {data}/kb: pass --data or set GLINKER_DATA")
    texts = [json.loads(x)["text"] for x in Path(args.texts).read_text(encoding="utf-8").splitlines() if x.strip()]
    chosen = select(load_fb15k(data), texts, args.max)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = write_dump(chosen, out)
    print(f"wrote {n} entities to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
