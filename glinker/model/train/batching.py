"""Training batches: source sampling, per-batch label sets with negatives, and span targets.

Batches come from one source at a time (so a dataset's closed label set is never mixed with another's
unannotated types), with random negative labels drawn from every source's type vocabulary.
"""

from __future__ import annotations

import logging
import random
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
    ranges are clipped to it."""
    if len(words) <= max_words:
        return words, spans, list(ignore)
    if spans:
        s, e, _ = spans[rng.randrange(len(spans))]
        lo = max(0, min(s - rng.randrange(0, max(1, max_words - (e - s + 1))), len(words) - max_words))
    else:
        lo = rng.randrange(0, len(words) - max_words + 1)
    hi = lo + max_words
    return (words[lo:hi], [(s - lo, e - lo, t) for s, e, t in spans if s >= lo and e < hi],
            [(max(s, lo) - lo, min(e, hi - 1) - lo) for s, e in ignore if s < hi and e >= lo])


def ner_examples(path: str, split: str | None, limit: int | None, drop: Sequence[str],
                 rename: dict[str, str]) -> tuple[list[Example], list[str]]:
    """NER examples from any training format glinker reads, with types renamed/dropped."""
    from glinker.eval.datasets import iter_training

    out: list[Example] = []
    types: dict[str, None] = {}
    seen: set[str] = set()  # the source's own types, before dropping and renaming
    dropped = set(drop)
    for ex in iter_training(path, split=split):
        seen.update(t for _, _, t in ex.spans)
        seen.update(ex.labels or [])
        spans = [(s, e, rename.get(t, t)) for s, e, t in ex.spans if t not in dropped]
        labels = [rename.get(t, t) for t in (ex.labels or []) if t not in dropped]
        for _, _, t in spans:
            types.setdefault(t, None)
        for t in labels:
            types.setdefault(t, None)
        out.append(Example(list(ex.tokens), spans, labels, ignore=list(ex.ignore)))
        if limit and len(out) >= limit:
            break
    if not out:
        raise DataError("no training examples found", where=path, fix="check the path and split")
    unknown = sorted((dropped | set(rename)) - seen)
    if unknown:  # a typo in drop_types / rename_types changes nothing: say so
        log.warning("%s: drop_types/rename_types name types the data does not have: %s (its types: %s)", path,
                    ", ".join(map(repr, unknown)), ", ".join(sorted(seen)[:20]))
    return out, list(types)


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
    for doc in iter_el(path):
        sp = split_words(doc.text)
        if not sp.words:
            continue
        word_of_start = {s: i for i, s in enumerate(sp.starts)}
        word_of_end = {e: i for i, e in enumerate(sp.ends)}
        spans, hard = [], []
        for m in doc.mentions:
            if m.entity_id not in ents or m.start not in word_of_start or m.end not in word_of_end:
                continue
            spans.append((word_of_start[m.start], word_of_end[m.end], ents[m.entity_id]))
            hard += [ents[h] for h in by_alias.get(m.text.lower(), []) if h != m.entity_id and h in ents][:5]
        if not spans:
            continue
        # documents are long: keep windows of max_words around the mentions
        for lo in range(0, len(sp.words), max_words):
            hi = lo + max_words
            win = [(s - lo, e - lo, t) for s, e, t in spans if s >= lo and e < hi]
            if win:
                out.append(Example(sp.words[lo:hi], win, [], hard))
        if limit and len(out) >= limit:
            break
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
        positives = list(dict.fromkeys(t for _, spans, _ in cut for _, _, t in spans))
        extra = list(dict.fromkeys(t for e in exs for t in e.labels + e.hard_negatives if t not in positives))
        self.rng.shuffle(extra)
        pool = self.ner_pool if src.kind == "ner" else self.entity_pool[src.name]
        neg = [t for t in self.rng.sample(pool, min(len(pool), self.negative_types * 2)) if t not in positives]
        labels = list(dict.fromkeys(positives + extra[: self.max_types] + neg[: self.negative_types]))
        labels = labels[: max(self.max_types, len(positives[: self.max_types]))]
        if not labels:
            labels = neg[:1] or pool[:1]
        idx = {t: i for i, t in enumerate(labels)}
        words = [w if w else ["."] for w, _, _ in cut]
        n_words = [len(w) for w in words]
        W, K = max(n_words), self.max_width
        tgt = torch.zeros(len(words), W, K, len(labels))
        ign = torch.zeros(len(words), W, K, dtype=torch.bool)
        for b, (_, spans, ignore) in enumerate(cut):
            for lo, hi in ignore:
                for s in range(lo, hi + 1):
                    ign[b, s, : min(K, hi - s + 1)] = True
            for s, e, t in spans:
                if 0 <= e - s < K and e < n_words[b] and t in idx:
                    tgt[b, s, e - s, idx[t]] = 1.0
                    ign[b, s, e - s] = False
        return Batch(words, labels, tgt, n_words, src.name, ign)


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
            ex, types = ner_examples(s.path, s.split, s.limit, s.drop_types, s.rename_types)
        if not types:
            raise DataError(f"source {name} has no entity types (no annotated span or label is left"
                            + (" after drop_types" if s.kind != "linking" and s.drop_types else "") + ")",
                            where=f"{section}[{i}] ({s.path})", fix="annotate entities in it, or drop the source")
        log.info("source %s: %d examples, %d types", name, len(ex), len(types))
        out.append(Source(name, s.kind, s.weight, ex, types))
    return out
