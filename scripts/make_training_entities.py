"""Write the KB entities used for the linking part of training (FB15k-237 Wikidata, places, vital articles,
plus the AIDA-train entities' labels and surface forms) as glinker Entity JSONL.

The AIDA-train surface forms become aliases, and their counts (how often each form links to the entity in the
training split) become ``alias_counts``: the KB's p(entity | mention) prior. Only the train split is read.

    python scripts/make_training_entities.py --out runs/training-entities.jsonl [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_wikidata_sample import data_dir, sample_entities  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    data = data_dir(args.data)
    ents = {e.id: e for e in sample_entities(data)}
    with open(data / "kb" / "aida_train_entities.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            qid = r.get("qid") or r.get("wikidata_qid")
            if not qid:
                continue
            counts = {s: float(n) for s, n in (r.get("mentions") or {}).items() if s and n}  # form -> count in train
            if qid in ents:
                e = ents[qid]
                e.aliases = list(dict.fromkeys(e.aliases + [s for s in counts if s != e.label]))
                e.alias_counts = counts
            else:
                from glinker.types import Entity

                label = r.get("label") or r.get("wikidata_label") or (r.get("title") or "").replace("_", " ")
                if label:
                    ents[qid] = Entity(id=qid, label=label, aliases=[s for s in counts if s != label],
                                       alias_counts=counts)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".entities-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for e in ents.values():
            f.write(e.model_dump_json(exclude_defaults=True) + "\n")
    os.replace(tmp, out)
    print(f"{len(ents)} entities -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
