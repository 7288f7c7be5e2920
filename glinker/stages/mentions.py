"""Mention detection: with the bi-encoder (typed labels, threshold) and with the KB's alias dictionary
(longest normalised match)."""

from __future__ import annotations

import json
import logging
import re
import time
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Sequence

from pydantic import Field, field_validator, model_validator

from glinker.pipeline.stage import DOCUMENTS, Stage, StageParams
from glinker.stages.records import MENTIONS, with_vector
from glinker.stages.resources import (ENCODER_SECONDS, KBRef, check_folds, load_model, open_kb, predict_encoded,
                                      span_vectors, window_cache)
from glinker.types import Document, Mention

log = logging.getLogger(__name__)


class BiencoderMentionsParams(StageParams):
    labels: list[str] | dict[str, str] | None = Field(
        default=None,
        description="Entity types to detect: a list of names, or name -> description (the description is the prompt). "
                    "Or give `labels_file` or `label_bank` instead.")
    labels_file: str | None = Field(
        default=None, description="A file of labels (one a line, or .json: a list or {name: description}); relative "
                                  "to the pipeline file. Encoded at warm-up.")
    label_bank: str | None = Field(
        default=None, description="A label bank folder (`glinker labels build`, any number of labels, FAISS-backed "
                                  "above 100k): vectors computed once, memory-mapped; built with this stage's model.")
    threshold: float = Field(default=0.5, ge=0.0, le=1.0, description="Minimum span score.")
    flat_ner: bool = Field(default=True, description="No overlapping mentions.")
    multi_label: bool = Field(default=False, description="Allow several labels per span.")
    batch_size: int = Field(default=16, ge=1, description="Model windows per forward pass.")
    model: str | None = Field(default=None, description="Bi-encoder for this stage (default: the pipeline's `model`).")
    span_vectors: bool = Field(
        default=True, description="Attach each mention's span vector (dense retrieval and re-scoring reuse it).")

    @field_validator("labels")
    @classmethod
    def _non_empty(cls, v: Any) -> Any:
        if v is not None and not v:
            raise ValueError("give at least one label")
        return v

    @model_validator(mode="after")
    def _one_label_source(self) -> "BiencoderMentionsParams":
        given = [k for k in ("labels", "labels_file", "label_bank") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of labels, labels_file, label_bank (got {', '.join(given) or 'none'})")
        return self


class BiencoderMentions(Stage):
    """Detect typed mentions with the GLiNER bi-encoder; label vectors are encoded once at warm-up."""

    type_name = "biencoder_mentions"
    Params = BiencoderMentionsParams
    accepts = (DOCUMENTS,)
    produces = MENTIONS
    summary = "typed mentions found by the bi-encoder"

    def warm_up(self) -> None:
        p: BiencoderMentionsParams = self.params  # type: ignore[assignment]
        self.model = load_model(self.context, p.model)
        if p.label_bank is not None:
            from glinker.errors import ModelError
            from glinker.model import LabelBank

            self.bank = LabelBank.load(self.context.resolve_path(p.label_bank))
            try:
                self.bank.check_model(self.model.fingerprint, self.model.dim)
            except ModelError as e:
                raise ModelError(f"{e.message} ({p.label_bank})", where=f"stage {self.name!r}: label_bank",
                                 fix=f"rebuild it with this stage's model: glinker labels build LABELS -m MODEL "
                                 f"-o {p.label_bank}") from None
        else:
            from glinker.model.labels import read_labels_file

            labels = p.labels if p.labels is not None else read_labels_file(self.context.resolve_path(p.labels_file))
            self.bank = self.model.encode_labels(labels)

    def run(self, documents: Sequence[Document], inputs: Sequence[Any]) -> list[list[Mention]]:
        p: BiencoderMentionsParams = self.params  # type: ignore[assignment]
        t0 = time.perf_counter()
        texts = [d.text for d in documents]
        cache = window_cache(self.context)
        preds = predict_encoded(self.model, texts, self.bank, p.threshold, p.flat_ner, p.multi_label,
                                p.batch_size, cache) if p.span_vectors else None
        if preds is not None:  # one forward pass: the span vectors come from the cached word vectors
            vecs = span_vectors(self.model, texts, [[(e["start"], e["end"]) for e in ents] for ents in preds],
                                batch_size=p.batch_size, cache=cache)
        else:
            preds = self.model.predict(texts, self.bank, threshold=p.threshold, flat_ner=p.flat_ner,
                                       multi_label=p.multi_label, batch_size=p.batch_size)
            vecs = None
            ENCODER_SECONDS["seconds"] += time.perf_counter() - t0
            if p.span_vectors:  # span_vectors counts its own encoder time
                vecs = span_vectors(self.model, texts, [[(e["start"], e["end"]) for e in ents] for ents in preds],
                                    batch_size=p.batch_size, cache=cache)
        out: list[list[Mention]] = []
        for d_i, ents in enumerate(preds):
            ms: list[Mention] = []
            for j, e in enumerate(ents):
                m = Mention(start=e["start"], end=e["end"], text=e["text"], label=e["label"], score=float(e["score"]),
                            doc_index=d_i)
                ms.append(with_vector(m, vecs[d_i][j]) if vecs is not None else m)
            out.append(ms)
        return out


_WORD = re.compile(r"\w+(?:[-'’.&]\w+)*\.?|[^\w\s]", re.UNICODE)
_ASCII_CAPITAL = re.compile(r"[A-Z0-9]")


_WEEKDAYS = frozenset("monday tuesday wednesday thursday friday saturday sunday".split())


def _title_case(word: str) -> bool:
    """A capitalised word with lower-case letters ("Senate") that can continue a name: not an all-caps headline
    word ("SENATE"), not a weekday (news writes "in Berlin Monday")."""
    return word[:1].isupper() and any(c.islower() for c in word) and word.rstrip(".").lower() not in _WEEKDAYS


def _first_word(key: str) -> str:
    """The first word of a normalised alias key, as the alias-mention tokenizer splits it."""
    m = _WORD.search(key)
    return m.group() if m else key


class AliasMentionsParams(StageParams):
    kb: KBRef | None = Field(default=None, description="KB whose aliases are matched (default: the pipeline's `kb`).")
    max_words: int = Field(default=6, ge=1, le=32, description="Longest alias tried, in words.")
    min_chars: int = Field(default=2, ge=1, description="Shortest alias matched, in characters.")
    require_capital: bool = Field(
        default=True, description="Only match spans that contain an upper-case letter or a digit (skips common words).")
    stopwords: list[str] = Field(default_factory=lambda: ["the", "a", "an", "i", "it", "he", "she", "we", "they",
                                                          "us", "in", "on", "at", "of", "and", "or", "to", "is"],
                                 description="Single words never matched (compared normalised).")
    leading_articles: list[str] = Field(
        default_factory=lambda: ["the"],
        description="Words dropped from the start of a match when the rest is an alias too (\"the Netherlands\" "
                    "-> \"Netherlands\", as AIDA, ELEVANT and Wikipedia anchors mark names); [] keeps them.")
    skip_common_nouns: bool = Field(
        default=True,
        description="Skip a capitalised match whose entities all have lower-case labels (\"world\", \"radio\"): in "
                    "running text it is part of a longer name (\"2002 World Cup\", \"BBC Radio 4\") or a title, "
                    "not the concept.")
    min_link_prob: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="Skip a form whose link probability in the KB's link statistics (`glinker kb link-stats`: how "
                    "often the form was a gold mention where this stage matched it in an annotated corpus) is below "
                    "this (\"June\", \"Division\"); forms without statistics are kept. 0 turns it off.")
    link_prob_min_seen: int = Field(
        default=3, ge=1, description="Only forms matched at least this often in that corpus are judged by it.")
    skip_name_fragments: bool = Field(
        default=False,
        description="Skip a match directly followed by a Title-case word (\"United States\" in \"United States "
                    "Senate\", \"Bayern\" in \"Bayern Munich\" when only \"Bayern\" is an alias): part of a longer "
                    "name the KB lacks, which strong-match evaluation counts as a wrong mention.")
    fold_accents: bool = Field(
        default=True,
        description="Also match names written without the accents of their Latin letters (\"Zurich\" for the "
                    "alias Zürich; `alias_candidates` finds them the same way). A KB built before accent folding "
                    "existed (2026-12-03) has none until an update opens it (`glinker kb info` shows `folds`).")
    label: str | None = Field(default=None, description="Label given to the mentions.")


class AliasMentions(Stage):
    """Mentions where the text matches a KB label or alias: the longest match wins, left to right; names are
    compared normalised (NFKC, case-folded, whitespace collapsed), like the KB's alias index."""

    type_name = "alias_mentions"
    Params = AliasMentionsParams
    accepts = (DOCUMENTS,)
    produces = MENTIONS
    summary = "mentions matching KB aliases (longest match)"

    def warm_up(self) -> None:
        from glinker.kb.store import normalize_alias

        p: AliasMentionsParams = self.params  # type: ignore[assignment]
        self.kb = open_kb(self.context, p.kb)
        if p.fold_accents:
            check_folds(self.context, self.kb, self.name)

        def vocab() -> frozenset[str]:
            return frozenset(self.kb.store.alias_vocab() + (self.kb.store.folded_vocab() if p.fold_accents else []))

        self.vocab = self.context.resource(("alias-vocab", id(self.kb), p.fold_accents), vocab)
        self.starts = self.context.resource(("alias-first-words", id(self.kb), p.fold_accents),
                                            lambda: frozenset(_first_word(k) for k in self.vocab))
        self.stop = {s.casefold() for s in p.stopwords}
        self.articles = {normalize_alias(a) for a in p.leading_articles}
        self.common: dict[str, bool] = {}
        self.rare: dict[str, bool] = {}

    def _common_noun(self, key: str) -> bool:
        """True when every entity named ``key`` has a label without capitals (a concept, not a name)."""
        if key not in self.common:
            labels = self.kb.store.labels_of_alias(key)
            # lower-case letters and no capital ("apple"); a label without letter case (東京, "", digits) is no noun
            self.common[key] = bool(labels) and all(lb == lb.lower() and lb != lb.upper() for lb in labels)
        return self.common[key]

    def _rarely_linked(self, key: str) -> bool:
        """True when the KB's link statistics say the form is seldom a mention (see ``min_link_prob``)."""
        p: AliasMentionsParams = self.params  # type: ignore[assignment]
        if key not in self.rare:
            linked, seen = self.kb.store.link_stats([key]).get(key, (0, 0))
            self.rare[key] = seen >= p.link_prob_min_seen and linked < p.min_link_prob * seen
        return self.rare[key]

    def _names(self, key: str, surface: str) -> bool:
        """Whether a matched span names KB entities here (see ``skip_common_nouns`` and ``min_link_prob``)."""
        p: AliasMentionsParams = self.params  # type: ignore[assignment]
        if p.skip_common_nouns and surface != surface.lower() and self._common_noun(key):
            return False
        return not (p.min_link_prob > 0 and self._rarely_linked(key))

    def run(self, documents: Sequence[Document], inputs: Sequence[Any]) -> list[list[Mention]]:
        from glinker.kb.store import fold_accents, normalize_alias

        p: AliasMentionsParams = self.params  # type: ignore[assignment]
        fold = p.fold_accents and self.kb.store.has_folds
        out = []
        for d_i, doc in enumerate(documents):
            text = doc.text
            toks = [(m.start(), m.end()) for m in _WORD.finditer(text)]
            # capitals[i]: tokens before i with an upper-case letter or a digit (require_capital, one pass)
            capitals = [0]
            ascii_text = text.isascii()
            for s, e in toks:
                # (a letter of a script without case, e.g. CJK, counts: such names have no capital to require)
                capitals.append(capitals[-1] + (_ASCII_CAPITAL.search(text, s, e) is not None if ascii_text else
                                                any(c.isupper() or c.isdigit() or (c.isalpha() and c == c.upper()
                                                                                   and c == c.lower())
                                                    for c in text[s:e])))
            # A span's key starts with its first token's key when normalising cannot join characters across
            # tokens (ASCII or NFKC text): then tokens that begin no alias are skipped at once, same result.
            prune = ascii_text or unicodedata.is_normalized("NFKC", text)
            ms: list[Mention] = []
            i = 0
            while i < len(toks):
                if prune:
                    fw = _first_word(normalize_alias(text[toks[i][0]:toks[i][1]]))
                    if fw not in self.starts and not (fw.endswith(".") and fw[:-1] in self.starts) and not (
                            fold and not fw.isascii() and _first_word(fold_accents(fw)) in self.starts):
                        i += 1
                        continue
                hit = None
                for n in range(min(p.max_words, len(toks) - i), 0, -1):
                    s, e = toks[i][0], toks[i + n - 1][1]
                    if e - s < p.min_chars:
                        continue
                    surface = text[s:e]
                    if p.require_capital and capitals[i + n] == capitals[i]:
                        continue
                    key = normalize_alias(surface)
                    if n == 1 and key in self.stop:
                        continue
                    if fold and key not in self.vocab and not key.isascii():
                        key = fold_accents(key)  # "Málaga" for a KB that only knows "Malaga"
                    if key in self.vocab and self._names(key, surface):
                        hit = (s, e, n)
                        break
                    # "U.S." at a sentence end: try without the trailing period too (only one attached to the
                    # word: "Reuters ." is the shorter span "Reuters", not "Reuters " with its space)
                    if surface.endswith(".") and len(surface) > 1 and not surface[-2].isspace() \
                            and e - 1 - s >= p.min_chars:
                        short = normalize_alias(surface[:-1])
                        if short in self.vocab and self._names(short, surface):
                            hit = (s, e - 1, n)
                            break
                if hit is None:
                    i += 1
                    continue
                s, e, n = hit
                if p.skip_name_fragments and i + n < len(toks) and text[e:toks[i + n][0]].isspace() \
                        and _title_case(text[toks[i + n][0]:toks[i + n][1]]):
                    i += 1
                    continue
                if n > 1 and normalize_alias(text[toks[i][0]:toks[i][1]]) in self.articles \
                        and normalize_alias(text[toks[i + 1][0]:e]) in self.vocab:
                    s = toks[i + 1][0]
                ms.append(Mention(start=s, end=e, text=text[s:e], label=p.label, doc_index=d_i))
                i += n
            out.append(ms)
        return out


def count_link_stats(kb: str | Path, documents: Iterable[Any], **params: Any) -> tuple[dict[str, tuple[int, int]], int]:
    """Link statistics of a KB's forms over an annotated corpus (:class:`glinker.eval.datasets.ELDocument`s, e.g.
    ``iter_el``): for every span ``alias_mentions`` (with ``params``, never filtering by earlier statistics) matches
    inside a document's evaluation span, the form's ``seen`` count grows and, when a gold mention (linked or NIL)
    has exactly that span, its ``linked`` count too. Returns (normalised form -> (linked, seen), documents read)."""
    from glinker.kb.store import normalize_alias
    from glinker.pipeline import Pipeline, loads_spec

    stage = {**params, "type": "alias_mentions", "kb": str(Path(kb).resolve()), "min_link_prob": 0.0}
    pipe = Pipeline(loads_spec(f"name: link-stats\nstages:\n  m: {json.dumps(stage)}\n"))
    stats: dict[str, list[int]] = {}
    n_docs = 0
    batch: list[Any] = []

    def flush() -> None:
        for doc, ms in zip(batch, pipe([Document(id=d.id, text=d.text) for d in batch])):
            gold = {(g.start, g.end) for g in doc.mentions}
            lo, hi = doc.evaluation_span
            for m in ms:
                if lo <= m.start and m.end <= hi:
                    s = stats.setdefault(normalize_alias(m.text), [0, 0])
                    s[0] += (m.start, m.end) in gold
                    s[1] += 1
        batch.clear()

    for doc in documents:
        batch.append(doc)
        n_docs += 1
        if len(batch) == 256:
            flush()
    flush()
    return {k: (a, b) for k, (a, b) in stats.items()}, n_docs
