"""Fine-typed NER training data from coarse NER sets: every gold PER/ORG/LOC span of WikiNEural and WikiANN whose
exact words name KB entities of one fine type gets that type ("Danube" LOC -> "river", "Real Madrid" ORG ->
"association football club"); the other gold spans keep their coarse type (person, organization, location).

    .venv/bin/python scripts/make_fine_typed.py --data ../shared/data --entities runs/training-entities.jsonl \
        --out runs/fine-typed/train.json

Why: the open-type sets are small and distantly supervised (make_wiki_ner.py finds its spans by name matching,
so it misses mentions); these sets have human or curated span boundaries, and a fine type in their contexts
teaches the label encoder more kinds of entities. A fine type is kept only when it agrees with the coarse tags:
over the whole data, at least ``--purity`` of its spans must carry the coarse tag of the span at hand ("city"
on a PER span is a name clash, not a type) and it must be seen ``--min-count`` times. Only sentences with at
least one fine-typed span are written (the coarse sets themselves stay in the training mix); MISC spans become
``"ignore"`` ranges. Sentences sharing a word 13-gram with ``ner/eval`` are dropped, as in make_wiki_ner.py.
Output: GLiNER JSON (``tokenized_text`` + ``ner`` word spans + ``ignore``), written atomically.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_typed_mentions import write_json_atomic  # noqa: E402
from make_wiki_ner import data_parser, eval_ngrams, load_names, ngrams  # noqa: E402
from make_wikidata_sample import data_dir  # noqa: E402

COARSE = ("person", "organization", "location")
SOURCES = (("wikineural_en", None), ("wikiann_en", "train"))


def main() -> None:
    from glinker.eval.datasets import iter_training

    ap = data_parser(__doc__)
    ap.add_argument("--purity", type=float, default=0.8,
                    help="share of a fine type's spans that must carry the coarse tag it is used on")
    ap.add_argument("--min-count", type=int, default=3, help="keep fine types seen on at least this many spans")
    ap.add_argument("--resolve", action="store_true",
                    help="a name whose KB entities have several types gets the one type among them that agrees with "
                         "the span's coarse tag, when exactly one does (\"Boston\" LOC: city, not the band)")
    a = ap.parse_args()
    data = data_dir(a.data)
    names, _ = load_names(Path(a.entities))

    sentences = []
    seen: dict[str, Counter[str]] = defaultdict(Counter)  # fine type -> coarse tags of its spans
    for name, split in SOURCES:
        for ex in iter_training(data / "ner" / "train" / name, split=split):
            spans = []
            for s, e, t in ex.spans:
                types = names.get(tuple(ex.tokens[s:e + 1]), set())
                fine = next(iter(types)) if len(types) == 1 and None not in types else None
                if fine and t in COARSE:
                    seen[fine][t] += 1
                spans.append((s, e, t, fine, types - {None}))
            sentences.append((ex.tokens, spans, list(ex.ignore)))

    def accepted(fine: str | None, coarse: str) -> bool:
        c = seen.get(fine or "")
        return bool(c) and sum(c.values()) >= a.min_count and c[coarse] >= a.purity * sum(c.values())

    def fine_type(fine: str | None, coarse: str, types: set[str]) -> str:
        if accepted(fine, coarse):
            return fine  # type: ignore[return-value]
        if a.resolve and fine is None and len(types) > 1:  # homonyms: the coarse tag may leave one type standing
            fit = [x for x in types if accepted(x, coarse)]
            if len(fit) == 1:
                return fit[0]
        return coarse

    grams = eval_ngrams(data)
    out, kept, n_contaminated = [], Counter(), 0
    for words, spans, ignore in sentences:
        ner, ign = [], [list(r) for r in ignore]
        for s, e, t, fine, types in spans:
            if t not in COARSE:
                ign.append([s, e])
            else:
                ner.append([s, e, fine_type(fine, t, types)])
        if not any(t not in COARSE for *_, t in ner):
            continue
        if any(g in grams for g in ngrams(words)):
            n_contaminated += 1
            continue
        out.append({"tokenized_text": list(words), "ner": ner, "ignore": sorted(ign)})
        kept.update(t for *_, t in ner if t not in COARSE)
    dest = write_json_atomic(a.out, out)
    top = ", ".join(f"{t} ({c})" for t, c in kept.most_common(25))
    print(f"{len(sentences)} sentences read, {len(out)} kept with a fine type ({n_contaminated} dropped for a "
          f"13-gram shared with ner/eval), {sum(kept.values())} fine-typed spans, {len(kept)} fine types -> {dest}\n"
          f"most frequent: {top}")


if __name__ == "__main__":
    main()
