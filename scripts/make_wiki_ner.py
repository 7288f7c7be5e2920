"""Open-type NER training data from encyclopedia text and a KB: sentences of the Wikipedia Vital Articles
extracts with every mention of a KB entity labelled by the fine type of its description ("1968 film by Stanley
Kubrick" -> "film", "city in Texas" -> "city"), found by longest exact match of the entity names.

    .venv/bin/python scripts/make_wiki_ner.py --data ../shared/data --entities runs/training-entities.jsonl \
        --out runs/wiki-typed/train.json

Why: the offline open-type NER set is small (880 Pile-NER passages); a zero-shot model needs many fine types in
real contexts. Distant supervision leaves entities the KB lacks unlabelled, and an unlabelled span would be taught
as a negative, so the likely mentions that get no type (capitalised word runs after the first word that no KB name
covers, names whose entities disagree on the type, types too rare to keep) are written as ``"ignore"`` ranges,
which the trainer leaves out of the loss; ``--min-ratio`` can still drop sentences with many of them.

Decontamination: the extracts are general Wikipedia lead sections, not the evaluation sets, but CrossNER's texts
are Wikipedia sentences too; every sentence sharing a word 13-gram with any sentence of ``ner/eval`` is dropped
(and counted in the report). Output: GLiNER JSON (``tokenized_text`` + ``ner`` word spans), written atomically.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_typed_mentions import type_phrase, write_json_atomic  # noqa: E402
from make_wikidata_sample import data_dir  # noqa: E402
from numeric_spans import merge_numeric  # noqa: E402

SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
MAX_NAME_WORDS = 8
ADJ = re.compile(r"(?:ian|ians|an|ese|ish|ans|ean|ic|i|-based)$")
NGRAM = 13


def ngrams(words: list[str]) -> Iterator[tuple[str, ...]]:
    """The lower-cased word NGRAM-grams of a sentence (the whole sentence when it is shorter)."""
    low = [w.lower() for w in words]
    return (tuple(low[i:i + NGRAM]) for i in range(max(1, len(low) - NGRAM + 1)))


def load_names(entities: Path) -> tuple[dict[tuple[str, ...], set[str | None]], dict[str, str | None]]:
    """Entity names (label + Wikidata aliases, as word tuples) -> the set of their entities' types; and the type
    of each entity with an English Wikipedia title, by title."""
    from glinker.model.words import split_words

    names: dict[tuple[str, ...], set[str | None]] = defaultdict(set)
    by_title: dict[str, str | None] = {}
    with open(entities, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            e = json.loads(line)
            t = type_phrase(e.get("description") or "")
            label = e.get("label") or ""
            forms = {label} | set(e.get("aliases") or [])
            # AIDA surface forms include demonyms and headline capitals ("German", "BOSTON"): not names of the type
            forms -= {f for f in e.get("alias_counts") or {} if f != label and (f.isupper() or ADJ.search(f))}
            for form in forms:
                w = split_words(form).words
                if (not w or len(w) > MAX_NAME_WORDS or len(form) < 3 or not form[:1].isupper() and
                        not form[:1].isdigit() or not re.search(r"[A-Za-z]{2}", form)):
                    continue
                names[tuple(w)].add(t)
            title = (e.get("extra") or {}).get("enwiki")
            if title:
                by_title[title] = t
    return names, by_title


def eval_ngrams(data: Path) -> set[tuple[str, ...]]:
    from glinker.eval.datasets import find_ner_datasets, read_ner_dataset
    from glinker.model.words import split_words

    grams: set[tuple[str, ...]] = set()
    for ds in find_ner_datasets(data / "ner" / "eval"):
        for ex in read_ner_dataset(ds).examples:
            grams.update(ngrams(split_words(ex.text).words))
    return grams


def annotate(words: list[str], names: dict, own: tuple[tuple[str, ...], str | None] | None,
             common: set[str]) -> tuple[list[list], list[list[int]]]:
    """Longest-match typed spans of one sentence, and the untyped likely mentions as ``[start, end]`` ranges.

    ``common``: words often seen in lower case; a name made only of them ("It is", "School") is not matched.
    """
    typed: list[list] = []
    bad: list[list[int]] = []
    i, n = 0, len(words)
    while i < n:
        hit = None
        for j in range(min(n, i + MAX_NAME_WORDS), i, -1):
            k = tuple(words[i:j])
            if own and tuple(x.lower() for x in k) == own[0]:
                hit = (j, {own[1]})
                break
            if k in names and not all(x.lower() in common for x in k):
                hit = (j, names[k])
                break
        if hit:
            j, types = hit
            if len(types) == 1 and None not in types:
                typed.append([i, j - 1, next(iter(types))])
            else:
                bad.append([i, j - 1])
            i = j
            continue
        if i > 0 and words[i][:1].isupper():  # a capitalised run no KB name covers: a likely unlabelled entity
            start = i
            while i < n and (words[i][:1].isupper() or words[i] in {"of", "the", "de"} and i + 1 < n
                             and words[i + 1][:1].isupper()):
                i += 1
            bad.append([start, i - 1])
            continue
        i += 1
    return typed, bad


def data_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments every distant-supervision script takes: the shared data, the KB entities, the output."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="the shared data folder (default: $GLINKER_DATA or ../shared/data)")
    ap.add_argument("--entities", required=True, help="KB entity JSONL (scripts/make_training_entities.py)")
    ap.add_argument("--out", required=True, help="output GLiNER JSON file")
    return ap


def main() -> None:
    from glinker.model.words import split_words

    ap = data_parser(__doc__)
    ap.add_argument("--min-ratio", type=float, default=0.0,
                    help="drop sentences with fewer typed mentions than this many times their ignored ranges")
    ap.add_argument("--min-count", type=int, default=3, help="keep types seen on at least this many mentions")
    ap.add_argument("--max-per-type", type=int, default=800,
                    help="skip a sentence once every type in it has this many kept mentions (places dominate the KB)")
    ap.add_argument("--numeric", action="store_true",
                    help="also label dates, years, times, money, percentages, quantities, durations and ages by "
                         "pattern (numeric_spans.py); other words with digits become ignore ranges")
    a = ap.parse_args()
    data = data_dir(a.data)

    names, by_title = load_names(Path(a.entities))
    with open(data / "kb" / "vital_articles" / "summaries_en-us.json", encoding="utf-8") as f:
        articles = json.load(f)
    lower, upper = Counter(), Counter()
    for art in articles.values():
        for w in split_words(art.get("extract") or "").words:
            (lower if w.islower() else upper)[w.lower()] += 1
    common = {w for w, c in lower.items() if c >= 3 and 4 * c >= c + upper[w]}
    sentences = []
    for title, art in articles.items():
        t = by_title.get(title.replace(" ", "_"), by_title.get(title))
        if t is None:
            t = type_phrase(art.get("description") or "")
        own = (tuple(w.lower() for w in split_words(art.get("title") or title).words), t)
        for s in SENT.split(art.get("extract") or ""):
            w = split_words(s).words
            if 5 <= len(w) <= 80:
                typed, bad = annotate(w, names, own, common)
                if a.numeric:
                    typed, bad = merge_numeric(w, typed, bad)
                sentences.append((w, typed, bad))
    counts = Counter(t for _, typed, _ in sentences for _, _, t in typed)
    grams = eval_ngrams(data)
    out, n_spans, n_contaminated = [], 0, 0
    kept_types: Counter[str] = Counter()
    random.Random(0).shuffle(sentences)
    for w, typed, bad in sentences:
        keep = [s for s in typed if counts[s[2]] >= a.min_count]
        bad = sorted(bad + [[s, e] for s, e, t in typed if counts[t] < a.min_count])
        if not keep or len(keep) < a.min_ratio * len(bad) or all(kept_types[t] >= a.max_per_type for _, _, t in keep):
            continue
        if any(g in grams for g in ngrams(w)):
            n_contaminated += 1
            continue
        out.append({"tokenized_text": w, "ner": keep, "ignore": bad})
        n_spans += len(keep)
        kept_types.update(t for _, _, t in keep)
    dest = write_json_atomic(a.out, out)
    top = ", ".join(f"{t} ({c})" for t, c in kept_types.most_common(25))
    n_ign = sum(len(ex["ignore"]) for ex in out)
    print(f"{len(sentences)} sentences read, {len(out)} kept ({n_contaminated} dropped for a 13-gram shared with "
          f"ner/eval), {n_spans} typed mentions, {n_ign} ignored ranges, {len(kept_types)} types -> {dest}\n"
          f"most frequent: {top}")


if __name__ == "__main__":
    main()
