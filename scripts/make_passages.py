"""Join the sentences of an NER set into longer passages, to measure how a model copes with inputs longer than
the windows it was trained on (docs/model.md, "Long texts").

    .venv/bin/python scripts/make_passages.py --data ../shared/data/ner/train/conll2003 --split dev \
        --drop-types else --words 0,48,80 --out runs/passages
    .venv/bin/glinker eval ner --data runs/passages --window-words 32

Reads the dataset's ``{split}.json`` (``sentence`` + ``entities`` with character ``pos``), keeps sentences of at
least ``--min-words`` words (CoNLL's "-DOCSTART-" and score lines are not prose), and writes one dataset folder per
``--words`` value: ``sentences`` for 0, else ``passages-<N>``, whose texts are consecutive sentences joined by a
space until they reach N words, entity offsets shifted to match. Same gold entities in every folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_typed_mentions import write_json_atomic  # noqa: E402


def join_sentences(sentences: list[dict], words: int) -> list[dict]:
    """Consecutive sentences joined into passages of at least ``words`` words (the last may be shorter)."""
    if words <= 0:
        return sentences
    out: list[dict] = []
    cur: dict | None = None
    for x in sentences:
        if cur is None:
            cur = {"sentence": x["sentence"], "entities": list(x["entities"])}
        else:
            off = len(cur["sentence"]) + 1
            cur["sentence"] += " " + x["sentence"]
            cur["entities"] += [{**e, "pos": [e["pos"][0] + off, e["pos"][1] + off]} for e in x["entities"]]
        if len(cur["sentence"].split()) >= words:
            out.append(cur)
            cur = None
    if cur is not None:
        out.append(cur)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="an NER dataset folder (GLiNER/UniNER JSON)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--drop-types", default="", help="comma-separated entity types to leave out (e.g. else)")
    ap.add_argument("--min-words", type=int, default=4, help="keep sentences of at least this many words")
    ap.add_argument("--words", default="0,48,80", help="passage lengths to write (0: the sentences themselves)")
    ap.add_argument("--out", required=True, help="folder for the dataset folders")
    a = ap.parse_args()
    src = Path(a.data) / f"{a.split}.json"
    try:
        data = json.loads(src.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"{src}: cannot read it as a GLiNER/UniNER JSON list ({e})")
    drop = {t for t in a.drop_types.split(",") if t}
    sentences = []
    for i, x in enumerate(data):
        if not isinstance(x, dict) or "sentence" not in x or "entities" not in x:
            sys.exit(f"{src}: record {i} has no 'sentence' and 'entities'")
        if len(x["sentence"].split()) >= a.min_words:
            sentences.append({"sentence": x["sentence"],
                              "entities": [e for e in x["entities"] if e["type"] not in drop]})
    labels = sorted({e["type"] for x in sentences for e in x["entities"]})
    for n in (int(w) for w in a.words.split(",")):
        folder = Path(a.out) / ("sentences" if n <= 0 else f"passages-{n}")
        folder.mkdir(parents=True, exist_ok=True)
        items = join_sentences(sentences, n)
        write_json_atomic(folder / "test.json", items)
        write_json_atomic(folder / "labels.json", labels)
        print(f"{folder}: {len(items)} texts, {sum(len(x['entities']) for x in items)} entities")


if __name__ == "__main__":
    main()
