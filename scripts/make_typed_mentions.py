"""Open-type NER training data from an entity-linking corpus: each linked mention is labelled with a fine type
taken from its entity's description ("English footballer" -> "footballer", "city in Germany" -> "city").

    .venv/bin/python scripts/make_typed_mentions.py --el ../shared/data/el/aida/aida_train.jsonl \
        --entities runs/training-entities.jsonl --out runs/aida-typed/train.json

Why: the offline NER training sets hold a handful of coarse types (person, location, ...) and one small open-type
set (880 Pile-NER passages); a zero-shot model needs many fine types in real contexts. Only training documents
are read (AIDA train). Mentions that get no type (NIL, not in the KB, unusable description, adjectival forms) are
written as ``"ignore"`` ranges, which the trainer leaves out of the loss instead of teaching them as negatives.
Output: GLiNER JSON (``tokenized_text`` + ``ner`` word spans + ``ignore``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CUT = re.compile(r"\s(?:in|of|from|for|at|on|by|and|or|with|who|which|that|based|located|published|founded|"
                 r"established|born|owned|operating|serving|near|since|between|during|whose)\s|[,;:(]")
SKIP_WORDS = {"a", "an", "the", "former", "retired", "professional", "first", "second", "third", "fourth", "fifth",
              "sixth", "seventh", "eighth", "ninth", "tenth", "11th", "main", "major", "largest", "one"}
UNUSABLE = ("wikimedia", "disambiguation", "family name", "given name", "surname", "year", "calendar", "date",
            "list of", "article", "category", "template", "season")


# heads too general to teach as a type ("branch of biology" -> "branch"): the mention is left untyped
GENERIC = set("""type form branch study process group system part period unit class collection order structure
body series method style measure area act art set concept use number practice field technique change object
property operation division line range view activity representation term position being force work sense ability
model size piece component condition grouping member shape mechanism principle belief management plan design
procedure transition conversion removal prevention destruction termination accumulation decomposition variety
stage rule quantity function head place domain learning people thing item kind entity way means state
phenomenon material substance product name event broad term""".split()) | {"broad term"}
# fine types that mean the same kind of thing as a more common one (a country described as a "federal republic")
SYNONYMS = {t: "country" for t in ("republic", "constitutional monarchy", "federal republic", "sovereign state",
                                    "island country", "island republic", "kingdom", "islamic republic", "nation",
                                    "federal constitutional monarchy", "principality", "monarchy",
                                    "federal parliamentary republic", "unitary state", "landlocked country")}
SYNONYMS.update({t: "city" for t in ("capital", "capital city", "metropolis", "second-largest city", "largest city",
                                     "county seat", "municipality", "town", "global city", "megacity")})
PARTICIPLES = {"spoken", "made", "written", "known", "seen", "built", "led", "held", "sung", "drawn", "grown", "used",
               "found", "given", "taken", "run", "set"}


def type_phrase(description: str) -> str | None:
    """The type head of a Wikidata-style description, lower-cased; None when there is no usable one."""
    d = " " + (description or "").strip() + " "
    d = CUT.split(d, maxsplit=1)[0].strip()
    words = all_words = d.split()
    # drop leading modifiers: demonyms and names (capitalised), years/ordinals ("20th-century"), articles,
    # superlatives ("darkest colour")
    while len(words) > 1 and (words[0][:1].isupper() or words[0][:1].isdigit() or words[0].lower() in SKIP_WORDS
                              or words[0].endswith("-century") or len(words[0]) > 5 and words[0].endswith("est")):
        words = words[1:]
    if words and (words[0][:1].isupper() or words[0][:1].isdigit()) and words[0].lower() not in SYNONYMS:
        words = []
    if not words:  # "Prime Minister of Israel": the capitalised words are the type
        words = [w for w in all_words if w.lower() not in SKIP_WORDS and not w[:1].isdigit()]
    if len(words) > 4:
        return None
    # a participle ends the noun phrase: "film directed", "language spoken", "landmass comprising the continents"
    for i, w in enumerate(words[1:], 1):
        lw = w.lower()
        if lw in PARTICIPLES or len(lw) > 4 and (lw.endswith("ed") or lw.endswith("ing")):
            words = words[:i]
            break
    phrase = " ".join(words).lower().strip(" .-")
    if not phrase or any(u in phrase for u in UNUSABLE) or not re.search(r"[a-z]{3}", phrase):
        return None
    if phrase in GENERIC or phrase.split()[-1] in GENERIC and len(words) == 1:
        return None
    return SYNONYMS.get(phrase, phrase)


def write_json_atomic(path: str | Path, obj: object) -> Path:
    """Write ``obj`` as JSON through a temporary file renamed into place (no half-written file on a crash)."""
    from glinker.io import atomic_write

    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, json.dumps(obj), fsync=False)
    return dest


def main() -> None:
    from glinker.eval.datasets import iter_el
    from glinker.model.words import split_words

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--el", required=True, help="AIDA or ELEVANT JSONL (training documents only)")
    ap.add_argument("--entities", required=True, help="KB entity JSONL (id, label, description)")
    ap.add_argument("--out", required=True, help="output GLiNER JSON file")
    ap.add_argument("--max-words", type=int, default=32, help="window length in words")
    ap.add_argument("--min-count", type=int, default=2, help="keep types seen on at least this many mentions")
    ap.add_argument("--min-ratio", type=float, default=0.0,
                    help="drop windows with fewer typed mentions than this many times their untyped ones")
    ap.add_argument("--numeric", action="store_true",
                    help="also label dates, years, times, money, percentages, quantities, durations and ages by "
                         "pattern (numeric_spans.py); other words with digits become ignore ranges")
    a = ap.parse_args()
    if a.numeric:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from numeric_spans import TYPES as NUMERIC_TYPES, merge_numeric

    ents: dict[str, tuple[str, str | None]] = {}
    with open(a.entities, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                e = json.loads(line)
                ents[e["id"]] = (e.get("label") or "", type_phrase(e.get("description") or ""))
    raw_types: dict[str, dict[tuple[int, int], str]] = {}  # AIDA's CoNLL class of each mention, when given
    with open(a.el, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                raw_types[str(d.get("id"))] = {(m["start"], m["end"]): m.get("ner_type") for m in d.get("mentions", [])
                                               if "start" in m}
    docs = []
    counts: Counter[str] = Counter()
    for doc in iter_el(a.el):
        ner_type = raw_types.get(doc.id, {})
        sp = split_words(doc.text)
        first = {s: i for i, s in enumerate(sp.starts)}
        last = {e: i for i, e in enumerate(sp.ends)}
        typed, untyped = [], []
        for m in doc.mentions:
            label, t = ents.get(m.entity_id, ("", None))
            # adjectival mentions ("German" -> Germany) are not instances of the entity's type
            if t and m.text.lower() != label.lower() and ner_type.get((m.start, m.end)) == "MISC":
                t = None
            ws, we = first.get(m.start), last.get(m.end)
            if ws is None or we is None:
                continue
            (typed if t else untyped).append((ws, we, t))
            if t:
                counts[t] += 1
        if a.numeric:
            typed_n, ign = merge_numeric(sp.words, [list(x) for x in typed], [[s, e] for s, e, _ in untyped])
            counts.update(t for _, _, t in typed_n if t in NUMERIC_TYPES)
            counts.subtract(t for x in typed if (t := x[2]) and list(x) not in typed_n)  # (given way to a date)
            typed, untyped = [tuple(x) for x in typed_n], [(s, e, None) for s, e in ign]
        docs.append((sp.words, typed, untyped))
    keep = {t for t, c in counts.items() if c >= a.min_count}
    out, n_spans = [], 0
    for words, typed, untyped in docs:
        bad = untyped + [s for s in typed if s[2] not in keep]
        for lo in range(0, len(words), a.max_words):
            hi = lo + a.max_words
            win = [[s - lo, e - lo, t] for s, e, t in typed if s >= lo and e < hi and t in keep]
            cut = [m for m in typed if m[0] < lo <= m[1] or m[0] < hi <= m[1]]  # mentions across the window edge
            ign = [[max(s, lo) - lo, min(e, hi - 1) - lo] for s, e, _ in bad + cut if s < hi and e >= lo]
            if win and len(win) >= a.min_ratio * len(ign):
                out.append({"tokenized_text": words[lo:hi], "ner": win, "ignore": ign})
                n_spans += len(win)
    dest = write_json_atomic(a.out, out)
    top = ", ".join(f"{t} ({c})" for t, c in Counter({t: counts[t] for t in keep}).most_common(15))
    print(f"{len(out)} windows, {n_spans} typed mentions, {len(keep)} types -> {dest}\nmost frequent: {top}")


if __name__ == "__main__":
    main()
