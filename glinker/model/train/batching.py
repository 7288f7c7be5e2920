"""Training batches: source sampling, per-batch label sets with negatives, and span targets.

Batches come from one source at a time (so a dataset's closed label set is never mixed with another's
unannotated types), with random negative labels drawn from every source's type vocabulary.
"""

from __future__ import annotations

import functools
import logging
import random
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glinker.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class Example:
    """Words plus word-level spans ``(start, end_inclusive, label_text)``; ``labels`` extra prompts (negatives);
    ``ignore`` word ranges whose inner spans stay out of the loss (unlabelled likely mentions)."""

    words: list[str]
    spans: list[tuple[int, int, str]]
    labels: list[str] = field(default_factory=list)
    hard_negatives: list[str] = field(default_factory=list)
    ignore: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Source:
    name: str
    kind: str
    weight: float
    examples: list[Example]
    types: list[str]
    _order: list[int] = field(default_factory=list)
    _pos: int = 0

    def draw(self, n: int, rng: random.Random) -> list[Example]:
        out = []
        while len(out) < n:
            if self._pos >= len(self._order):
                self._order = list(range(len(self.examples)))
                rng.shuffle(self._order)
                self._pos = 0
            out.append(self.examples[self._order[self._pos]])
            self._pos += 1
        return out


def _cut(words: list[str], spans: list[tuple[int, int, str]], max_words: int, rng: random.Random,
         ignore: Sequence[tuple[int, int]] = ()) -> tuple[list[str], list[tuple[int, int, str]], list[tuple[int, int]]]:
    """A window of at most ``max_words`` words, placed to keep a random annotated span when cutting; the ignored
    ranges are clipped to it. A span the window cuts becomes an ignored range over its part inside the window: its
    words are no negatives."""
    if len(words) <= max_words:
        return words, spans, list(ignore)
    if spans:
        s, e, _ = spans[rng.randrange(len(spans))]
        lo = max(0, min(s - rng.randrange(0, max(1, max_words - (e - s + 1))), len(words) - max_words))
    else:
        lo = rng.randrange(0, len(words) - max_words + 1)
    hi = lo + max_words
    cut = [(s, e) for s, e, _ in spans if s < hi and e >= lo and not (s >= lo and e < hi)]
    return (words[lo:hi], [(s - lo, e - lo, t) for s, e, t in spans if s >= lo and e < hi],
            [(max(s, lo) - lo, min(e, hi - 1) - lo) for s, e in [*ignore, *cut] if s < hi and e >= lo])


def clean_label(name: str) -> str:
    """A type name as training prompts it: NFKC, invisible (format) characters such as U+200B dropped,
    whitespace collapsed and stripped."""
    s = unicodedata.normalize("NFKC", name)
    s = "".join(c for c in s if unicodedata.category(c) != "Cf")
    return " ".join(s.split())


@functools.lru_cache(maxsize=1 << 16)
def label_key(name: str) -> str:
    """What makes two type names one type: :func:`clean_label`, compared without case."""
    return clean_label(name).casefold()


def canonical_names(counts: dict[str, int]) -> dict[str, str]:
    """For raw type names with their counts (in first-seen order): each name -> the name of its type, the most
    frequent cleaned spelling among the names of one :func:`label_key` (the first seen on a tie)."""
    by_key: dict[str, dict[str, int]] = {}
    for raw, n in counts.items():
        spell = by_key.setdefault(label_key(raw), {})
        spell[clean_label(raw)] = spell.get(clean_label(raw), 0) + n
    best = {k: max(spell, key=lambda x: spell[x]) for k, spell in by_key.items()}  # max keeps the first on a tie
    return {raw: best[label_key(raw)] for raw in counts}


def _merged_note(mapping: dict[str, str], where: dict[str, str] | None = None) -> str:
    """``'person' <- 'Person', ' person '``: the names that were changed, by the type they became (with the file
    each was first seen in, when ``where`` is given)."""
    groups: dict[str, list[str]] = {}
    for raw, name in mapping.items():
        if raw != name:
            groups.setdefault(name, []).append(repr(raw) + (f" ({where[raw]})" if where and raw in where else ""))
    return "; ".join(f"{name!r} <- {', '.join(raws)}" for name, raws in groups.items())


SPLIT_OF_WORD = {"train": "train", "training": "train", "dev": "dev", "val": "dev", "valid": "dev",
                 "validation": "dev", "test": "test"}


def _split_of(f: Path) -> str | None:
    """train / dev / test when a data file's name says so (``train.json``, ``val.conllu``, ``en_test.txt``)."""
    for part in f.stem.lower().replace("-", "_").split("_"):
        if part in SPLIT_OF_WORD:
            return SPLIT_OF_WORD[part]
    return None


def default_split(path: str, split: str | None, section: str, where: str, warn: bool = True) -> str | None:
    """The split a source reads when the config names none: a folder holding split-named files (``train.json``,
    ``dev.json``, ``test.txt``) gives its train files to training and its dev files to ``dev``, never all of them
    (test data must not train by default); a folder of one other split, or of no split names, is read whole; split
    files beside files of no split are an error (set ``split:``)."""
    from glinker.eval.datasets import training_files

    p = Path(path)
    if split is not None or not p.is_dir():
        return split
    files = training_files(p)
    of = {f: _split_of(f) for f in files}
    splits = sorted({s for s in of.values() if s})
    want = "train" if section == "data" else "dev"
    if not splits:
        return None
    if want in splits:
        unnamed = [f.name for f, s in of.items() if s is None]
        if unnamed:  # files of no split beside split-named ones: neither dropped silently nor read with the test data
            raise DataError(f"{p} holds {want} files and files named as no split ({', '.join(unnamed)}): which of "
                            "them to read is not clear", where=where,
                            fix=f"set `split: {want}` to read the {want} files only, or give each file as a source of "
                                "its own (path: folder/file.json)")
        left = [f.name for f, s in of.items() if s != want]
        if left and warn:
            log.warning("%s (%s): reading its %s split only (%s), not %s; set `split:` to choose another", where, p,
                        want, ", ".join(f.name for f, s in of.items() if s == want), ", ".join(left))
        if want == "train" and not training_files(p, "train"):
            return "training"
        return want
    unnamed = [f.name for f, s in of.items() if s is None]
    if len(splits) == 1 and not unnamed and not (section == "data" and splits[0] == "test"):
        log.warning("%s (%s) holds only a %s split (%s): %s on it; set `split: %s` on the source to say so",
                    where, p, splits[0], ", ".join(f.name for f in files),
                    "training" if section == "data" else "scoring", splits[0])
        return None
    raise DataError(f"{p} holds {'/'.join(splits)} files ({', '.join(f.name for f in files)}) but no {want} split: "
                    f"reading all of them would {'train on' if section == 'data' else 'score on'} "
                    + ("test data" if "test" in splits else "other splits"), where=where,
                    fix=f"set `split:` on the source to the split to read (e.g. split: {splits[0]}), or give the "
                        "file itself as `path`")


def _record_where(ex: Any, path: str) -> str:
    """file:line of a training record (GLiNER JSON records are found again by their index; only on errors)."""
    src = ex.source or path
    line = ex.meta.get("line") if isinstance(ex.meta, dict) else None
    if line is None and ex.id is not None and str(ex.id).isdigit() and Path(src).is_file():
        from glinker.eval.datasets import iter_json_records

        try:
            line = next((ln for i, (_, ln) in enumerate(iter_json_records(src)) if i == int(ex.id)), None)
        except DataError:
            line = None
    return f"{src}:{line}" if line else f"{src} (record {ex.id})"


def _check_record(ex: Any, path: str) -> None:
    """What GLiNER JSON allows but a span cannot mean: ``true`` as a word index, a span over an empty word."""
    for j, (s, e, t) in enumerate(ex.spans):
        if isinstance(s, bool) or isinstance(e, bool):
            raise DataError(f"span {j} {[s, e, t]!r} has true/false as a word index", where=_record_where(ex, path),
                            fix="write word indices as integers: [start, end_inclusive, type]")
        blank = [k for k in range(s, e + 1) if not ex.tokens[k].strip()]
        if blank:
            raise DataError(f"span {j} {[s, e, t]!r} covers token {blank[0]} {ex.tokens[blank[0]]!r}, which is empty "
                            "or only whitespace", where=_record_where(ex, path),
                            fix="remove empty tokens from 'tokenized_text' and shift the span indices after them, "
                                "or fix the span")
    for t in [x for _, _, x in ex.spans] + list(ex.labels or []):
        if not clean_label(t):
            raise DataError(f"type {t!r} is only invisible characters or spaces", where=_record_where(ex, path),
                            fix="give the entity type a name")
    for r in ex.ignore:
        if any(isinstance(x, bool) for x in r):
            raise DataError(f"ignore range {list(r)!r} has true/false as a word index", where=_record_where(ex, path),
                            fix="write each ignored range as [start, end] integers")


def ner_examples(path: str, split: str | None, limit: int | None, drop: Sequence[str],
                 rename: dict[str, str]) -> tuple[list[Example], list[str]]:
    """NER examples from any training format glinker reads, with types renamed/dropped.

    Type names that differ only in case, spacing or invisible characters (``person``, ``Person``, `` person ``)
    are one type (its most frequent spelling), with a warning; ``drop``/``rename`` match names the same way."""
    from glinker.eval.datasets import iter_training

    raw: list[Any] = []
    counts: dict[str, int] = {}
    first_file: dict[str, str] = {}
    seen: dict[str, str] = {}  # the source's own types (key -> a name), before dropping and renaming
    dropped = {label_key(t) for t in drop}
    renamed = {label_key(k): v for k, v in rename.items()}

    def name(t: str) -> str:
        return renamed.get(label_key(t), t)

    for ex in iter_training(path, split=split):
        _check_record(ex, path)
        for t in [x for _, _, x in ex.spans] + list(ex.labels or []):
            seen.setdefault(label_key(t), t)
        spans = [(s, e, name(t)) for s, e, t in ex.spans if label_key(t) not in dropped]
        labels = [name(t) for t in (ex.labels or []) if label_key(t) not in dropped]
        for t in [x for _, _, x in spans] + labels:
            counts[t] = counts.get(t, 0) + 1
            first_file.setdefault(t, ex.source or path)
        raw.append((ex, spans, labels))
        if limit and len(raw) >= limit:
            break
    if not raw:
        raise DataError("no training examples found", where=path, fix="check the path and split")
    canon = canonical_names(counts)
    if any(k != v for k, v in canon.items()):
        files = set(first_file.values())
        note = _merged_note(canon, first_file if len(files) > 1 else None)
        log.warning("%s: type names that differ only in case, spacing or invisible characters are one type: %s",
                    path if len(files) > 1 else next(iter(files)), note)
    out = [Example(list(ex.tokens), [(s, e, canon[t]) for s, e, t in spans], [canon[t] for t in labels],
                   ignore=list(ex.ignore)) for ex, spans, labels in raw]
    unknown = sorted(k for k in list(drop) + list(rename) if label_key(k) not in seen)
    if unknown:  # a typo in drop_types / rename_types changes nothing: say so
        log.warning("%s: drop_types/rename_types name types the data does not have: %s (its types: %s)", path,
                    ", ".join(map(repr, unknown)), ", ".join(sorted(seen.values())[:20]))
    return out, list(dict.fromkeys(canon.values()))


def mention_windows(n: int, spans: Sequence[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """Word windows ``[lo, hi)`` of at most ``size`` covering ``n`` words, each cut before a mention it would split.

    A window ends where the next would start a mention rather than inside one (``spans`` hold inclusive word
    ranges); only a mention longer than ``size`` itself is still cut (callers leave its parts out of the loss).
    """
    out, lo = [], 0
    while lo < n:
        hi = min(n, lo + size)
        while True:  # overlapping mentions: the new end may split another one
            crossing = [s for s, e in spans if s < hi <= e]
            if not crossing or min(crossing) <= lo:
                break
            hi = min(crossing)
        out.append((lo, hi))
        lo = hi
    return out


def linking_examples(path: str, entities_path: str, template: str, limit: int | None, max_words: int
                     ) -> tuple[list[Example], list[str]]:
    """Mention → entity-text examples from AIDA/ELEVANT JSONL and a KB entity JSONL.

    Each example is a window of a document; its spans are the mentions whose gold entity the KB holds, labelled
    with the entity's text (``template``). Homonyms sharing a mention's surface form become hard negatives.
    """
    import json

    from glinker.eval.datasets import iter_el
    from glinker.model.words import split_words
    from glinker.types import Entity

    ents: dict[str, str] = {}
    by_alias: dict[str, list[str]] = {}
    with open(entities_path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                e = Entity.model_validate(json.loads(line))
            except Exception as err:
                raise DataError(f"invalid entity record: {err}", where=f"{entities_path}:{i}",
                                fix="one glinker Entity JSON object per line") from None
            ents[e.id] = template.format(label=e.label, description=e.description or e.label).strip()
            for n in e.names():
                by_alias.setdefault(n.lower(), []).append(e.id)
    out: list[Example] = []
    misaligned, first = 0, ""
    for doc in iter_el(path):
        sp = split_words(doc.text)
        if not sp.words:
            continue
        word_of_start = {s: i for i, s in enumerate(sp.starts)}
        word_of_end = {e: i for i, e in enumerate(sp.ends)}
        spans, hard = [], []
        for m in doc.mentions:
            if m.entity_id not in ents:
                continue
            if m.start not in word_of_start or m.end not in word_of_end:  # inside a word: no word span says it
                misaligned += 1
                first = first or f"{doc.text[m.start:m.end]!r} at {m.start}-{m.end} of document {doc.id}"
                continue
            spans.append((word_of_start[m.start], word_of_end[m.end], ents[m.entity_id]))
            hard += [ents[h] for h in by_alias.get(m.text.lower(), []) if h != m.entity_id and h in ents][:5]
        if not spans:
            continue
        # documents are long: windows of at most max_words, cut between mentions
        for lo, hi in mention_windows(len(sp.words), [(s, e) for s, e, _ in spans], max_words):
            win = [(s - lo, e - lo, t) for s, e, t in spans if s >= lo and e < hi]
            cut = [(max(s, lo) - lo, min(e, hi - 1) - lo) for s, e, _ in spans if s < hi and e >= lo
                   and not (s >= lo and e < hi)]
            if win:
                out.append(Example(sp.words[lo:hi], win, [], hard, ignore=cut))
        if limit and len(out) >= limit:
            break
    if misaligned:
        log.warning("%s: dropped %d mentions whose offsets are not on word boundaries (first: %s)", path,
                    misaligned, first)
    if not out:
        raise DataError("no linking examples: no gold entity of the data is in the entity file", where=path,
                        fix="check that `entities` holds the KB the mentions link to")
    return out, list(dict.fromkeys(ents.values()))


@dataclass
class Batch:
    words: list[list[str]]
    labels: list[str]
    targets: Any  # (B, W, K, C) float tensor
    n_words: list[int]
    source: str
    ignore: Any = None  # (B, W, K) bool tensor: spans left out of the loss (inside an ignored range)


class BatchSampler:
    """Draws batches: a source by weight, examples from it, and a label set of positives plus negatives."""

    def __init__(self, sources: list[Source], batch_size: int, max_words: int, max_types: int, negative_types: int,
                 max_width: int, seed: int, pack_words: int = 0, pack_prob: float = 0.5) -> None:
        self.sources = sources
        self.pack_words = pack_words
        self.pack_prob = pack_prob
        self.batch_size = batch_size
        self.max_words = max_words
        self.max_types = max_types
        self.negative_types = negative_types
        self.max_width = max_width
        self.rng = random.Random(seed)
        self.ner_pool = sorted({t for s in sources if s.kind == "ner" for t in s.types})
        self.entity_pool = {s.name: s.types for s in sources if s.kind == "linking"}
        for src in sources:
            _warn_wide(src, max_width)

    def state(self) -> dict:
        return {"rng": self.rng.getstate(), "pos": [(s._order, s._pos) for s in self.sources]}

    def set_state(self, st: dict) -> None:
        v = st["rng"]
        self.rng.setstate((v[0], tuple(v[1]), v[2]))
        for s, (order, pos) in zip(self.sources, st["pos"]):
            s._order, s._pos = list(order), int(pos)

    def __iter__(self) -> Iterator[Batch]:
        while True:
            yield self.next()

    def _pack(self, first: tuple, src: Source, exs: list[Example]) -> tuple:
        """With probability ``pack_prob``, append further examples of the same source to ``first`` until a random
        length between ``max_words`` and ``pack_words`` is reached, so the model also trains on inputs longer than
        one sentence (one annotation scheme throughout: every span of the packed text is annotated alike). Drawn
        examples join ``exs`` (their extra labels count for the batch)."""
        if self.rng.random() >= self.pack_prob:
            return first
        target = self.rng.randint(self.max_words, self.pack_words)
        words, spans, ignore = list(first[0]), list(first[1]), list(first[2])
        while len(words) < target:
            e = src.draw(1, self.rng)[0]
            w, sp, ig = _cut(e.words, e.spans, self.max_words, self.rng, e.ignore)
            if len(words) + len(w) > self.pack_words:
                break
            off = len(words)
            words += w
            spans += [(s + off, t + off, lab) for s, t, lab in sp]
            ignore += [(s + off, t + off) for s, t in ig]
            exs.append(e)
        return words, spans, ignore

    def next(self) -> Batch:
        import torch

        src = self.rng.choices(self.sources, weights=[s.weight for s in self.sources])[0]
        exs = src.draw(self.batch_size, self.rng)
        cut = [_cut(e.words, e.spans, self.max_words, self.rng, e.ignore) for e in exs]
        if self.pack_words > self.max_words and src.kind == "ner":
            cut = [self._pack(c, src, exs) for c in cut]
        # one label per type: names differing only in case, spacing or invisible characters are the same type
        # (never a positive and a negative of one span at once)
        key = label_key
        pos: dict[str, str] = {}
        for _, spans, _ in cut:
            for _, _, t in spans:
                pos.setdefault(key(t), t)
        positives = list(pos.values())
        extra_by: dict[str, str] = {}
        for e in exs:
            for t in e.labels + e.hard_negatives:
                if key(t) not in pos:
                    extra_by.setdefault(key(t), t)
        extra = list(extra_by.values())
        self.rng.shuffle(extra)
        pool = self.ner_pool if src.kind == "ner" else self.entity_pool[src.name]
        neg = [t for t in self.rng.sample(pool, min(len(pool), self.negative_types * 2)) if key(t) not in pos]
        chosen: dict[str, str] = {}
        for t in positives + extra[: self.max_types] + neg[: self.negative_types]:
            chosen.setdefault(key(t), t)
        labels = list(chosen.values())
        labels = labels[: max(self.max_types, len(positives[: self.max_types]))]
        if not labels:
            labels = neg[:1] or pool[:1]
        idx = {key(t): i for i, t in enumerate(labels)}
        words = [w if w else ["."] for w, _, _ in cut]
        n_words = [len(w) for w in words]
        W, K = max(n_words), self.max_width
        tgt = torch.zeros(len(words), W, K, len(labels))
        ign = torch.zeros(len(words), W, K, dtype=torch.bool)
        for b, (_, spans, ignore) in enumerate(cut):
            wide = [(s, e) for s, e, _ in spans if e - s >= K]  # longer than the model's spans: no negatives either
            for lo, hi in [*ignore, *wide]:
                for s in range(lo, hi + 1):
                    ign[b, s, : min(K, hi - s + 1)] = True
            for s, e, t in spans:
                if 0 <= e - s < K and e < n_words[b] and key(t) in idx:
                    tgt[b, s, e - s, idx[key(t)]] = 1.0
                    ign[b, s, e - s] = False
        return Batch(words, labels, tgt, n_words, src.name, ign)


def _warn_wide(src: Source, max_width: int) -> None:
    """One warning for a source's spans wider than ``max_width`` words: no span of the model covers them, so they
    are left out of the loss (their words are no negatives either) and the model cannot learn them."""
    n, first = 0, ""
    for ex in src.examples:
        for s, e, t in ex.spans:
            if e - s + 1 > max_width:
                n += 1
                first = first or f"{' '.join(ex.words[s:e + 1])[:80]!r} ({t}, {e - s + 1} words)"
    if n:
        log.warning("source %s: %d spans are longer than the model's max_width of %d words and cannot be learnt; "
                    "they are left out of the loss (the first: %s)", src.name, n, max_width, first)


def build_sources(cfg_sources: Sequence[Any], max_words: int, section: str = "data") -> list[Source]:
    """Load every configured source of ``section`` (data or dev) into memory (the training sets are small)."""
    out = []
    for i, s in enumerate(cfg_sources):
        name = f"{i}:{Path(s.path).name}"
        if s.kind == "linking":
            if not s.entities:
                raise DataError("a linking source needs `entities` (a KB entity JSONL)", where=f"{section}[{i}]",
                                fix="set entities: path/to/entities.jsonl")
            ex, types = linking_examples(s.path, s.entities, s.template, s.limit, max_words)
        else:
            split = default_split(s.path, s.split, section, f"{section}[{i}]")
            ex, types = ner_examples(s.path, split, s.limit, s.drop_types, s.rename_types)
        if not types:
            raise DataError(f"source {name} has no entity types (no annotated span or label is left"
                            + (" after drop_types" if s.kind != "linking" and s.drop_types else "") + ")",
                            where=f"{section}[{i}] ({s.path})", fix="annotate entities in it, or drop the source")
        log.info("source %s: %d examples, %d types", name, len(ex), len(types))
        out.append(Source(name, s.kind, s.weight, ex, types))
    _one_spelling(out, {src.name: s.path for src, s in zip(out, cfg_sources)})
    return out


def _one_spelling(sources: list[Source], paths: dict[str, str]) -> None:
    """Give a type one name across the NER sources (each is already one within a source): ``Person`` in one file
    and ``person`` in another would be sampled as negatives of each other."""
    ner = [s for s in sources if s.kind == "ner"]
    counts: dict[str, int] = {}
    where: dict[str, str] = {}
    for src in ner:
        for ex in src.examples:
            for t in [x for _, _, x in ex.spans] + ex.labels:
                counts[t] = counts.get(t, 0) + 1
                where.setdefault(t, paths[src.name])
    canon = canonical_names(counts)
    if all(k == v for k, v in canon.items()):
        return
    log.warning("type names that differ only in case, spacing or invisible characters are one type across the "
                "sources: %s", _merged_note(canon, where))
    for src in ner:
        for ex in src.examples:
            ex.spans = [(s, e, canon[t]) for s, e, t in ex.spans]
            ex.labels = [canon[t] for t in ex.labels]
        src.types = list(dict.fromkeys(canon[t] for t in src.types))
