"""Mention detection: with the bi-encoder (typed labels, threshold) and with the KB's alias dictionary
(longest normalised match)."""

from __future__ import annotations

import bisect
import functools
import itertools
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
                                      span_vectors, window_cache, window_watch)
from glinker.types import Document, Mention

log = logging.getLogger(__name__)


class BiencoderMentionsParams(StageParams):
    labels: list[str] | dict[str, str] | None = Field(
        default=None,
        description="Entity types to detect: a list of names, or name -> description (the description is the prompt). "
                    "Or give `labels_file` or `label_bank` instead.")
    labels_file: str | None = Field(
        default=None, description="A file of labels (one a line; .json: a list or {name: description}; .jsonl: one "
                                  "{name, description} a line); relative to the pipeline file. Encoded at warm-up.")
    label_bank: str | None = Field(
        default=None, description="A label bank folder (`glinker labels build`, any number of labels, FAISS-backed "
                                  "above 100k): vectors computed once, memory-mapped; built with this stage's model.")
    threshold: float = Field(default=0.5, ge=0.0, le=1.0, description="Keep spans scoring above this.")
    flat_ner: bool = Field(default=True, description="No overlapping mentions.")
    multi_label: bool = Field(default=False, description="Allow several labels per span.")
    batch_size: int = Field(default=16, ge=1, description="Model windows per forward pass.")
    model: str | None = Field(default=None, description="Bi-encoder for this stage (default: the pipeline's `model`).")
    span_vectors: bool = Field(
        default=True, description="Attach each mention's span vector (dense retrieval and re-scoring reuse it).")
    label_top_k: int | None = Field(
        default=None, ge=0, description="Labels retrieved per span from a bank's index before exact scoring (unset: 64 "
                                        "for banks of 100k labels or more, every label below); 0 scores every label "
                                        "exactly (slower, no retrieval miss).")
    nprobe: int | None = Field(
        default=None, ge=1, description="Lists of an IVF label index searched per span (unset: 1/8 of them, or "
                                        "3/8 for an index built before its smallest labels were scored exactly); "
                                        "fewer is faster and misses more of what exhaustive scoring finds.")

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
        if p.nprobe is not None:
            self.bank.nprobe = p.nprobe

    def run(self, documents: Sequence[Document], inputs: Sequence[Any]) -> list[list[Mention]]:
        p: BiencoderMentionsParams = self.params  # type: ignore[assignment]
        t0 = time.perf_counter()
        texts = [d.text for d in documents]
        cache = window_cache(self.context)
        preds = predict_encoded(self.model, texts, self.bank, p.threshold, p.flat_ner, p.multi_label,
                                p.batch_size, cache, label_top_k=p.label_top_k) if p.span_vectors else None
        if preds is not None:  # one forward pass: the span vectors come from the cached word vectors
            preds = [whole_apostrophe_names(t, ents) for t, ents in zip(texts, preds)]
            vecs = span_vectors(self.model, texts, [[(e["start"], e["end"]) for e in ents] for ents in preds],
                                batch_size=p.batch_size, cache=cache)
        else:
            preds = self.model.predict(texts, self.bank, threshold=p.threshold, flat_ner=p.flat_ner,
                                       multi_label=p.multi_label, batch_size=p.batch_size,
                                       on_window=window_watch(texts), label_top_k=p.label_top_k)
            preds = [whole_apostrophe_names(t, ents) for t, ents in zip(texts, preds)]
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


def _name_after_apostrophe(text: str, i: int) -> int | None:
    """The end of the name that goes on at ``i`` after an apostrophe ("'Gorman", "’Neal-Smith"): a capitalised word
    of letters (with their combining marks, hyphenated parts), never a possessive or contraction ('S, 's) nor a
    single letter; None when there is none."""
    if i + 1 >= len(text) or text[i] not in "'’" or not text[i + 1].isupper():
        return None

    def letters(j: int) -> int:
        while j < len(text) and (text[j].isalpha() or unicodedata.combining(text[j])):
            j += 1
        return j

    j = letters(i + 1)
    if j - (i + 1) < 2 or text[i + 1:j].upper() in _CAPS_CLITICS:  # 'S, 'LL (WORLD WAR I'S), a single letter
        return None
    while j + 1 < len(text) and text[j] == "-" and text[j + 1].isupper():  # O'Brien-McCarthy, not O'Brien-led
        j = letters(j + 1)
        if j - 1 >= 0 and text[j - 1].isupper() and (j - 2 < 0 or text[j - 2] == "-"):  # O'Brien-O'Connor
            j = _name_after_apostrophe(text, j) or j
    return j


_CAPS_CLITICS = frozenset({"S", "LL", "VE", "RE", "D", "M", "T", "NT"})


def _crosses(a: int, b: int, s: int, end: int, stop: int) -> bool:
    """Whether span [a, b) overlaps the text [end, stop) that extends [s, end) without lying inside that text or
    holding the whole extended span [s, stop)."""
    return a < stop and b > end and not (end <= a and b <= stop) and not (a <= s and b >= stop)


def whole_apostrophe_names(text: str, ents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The model's spans with a name cut at its apostrophe made whole: the model reads "O'Brien" as three words (O,
    ', Brien: gliner's word pattern) and often ends the span at "O" ("Tim O" for "Tim O'Gorman"). A span whose last
    word is one capital letter, followed at once by an apostrophe and a capitalised word, is extended over that word
    (not over a possessive after it: "Tim O'Brien's" gives "Tim O'Brien"), unless another span overlaps the added
    word without lying inside it (the extension would overlap it: both are kept as they were). A span inside the
    addition ("Brien" found on its own) is dropped, and of spans that become the same (span, label) the best scored
    is kept. ``ents`` itself is returned when nothing changed."""
    added: list[tuple[int, int]] = []  # (old end, new end) of each extension
    out: list[dict[str, Any]] = []
    for e in ents:
        s, end = e["start"], e["end"]
        if end > s and text[end - 1].isupper() and (end - s == 1 or not text[end - 2].isalnum()):
            stop = _name_after_apostrophe(text, end)
            if stop is not None and not any(_crosses(o["start"], o["end"], s, end, stop) for o in ents if o is not e):
                e = {**e, "end": stop, "text": text[s:stop]}
                added.append((end, stop))
        out.append(e)
    if not added:
        return ents
    out = [e for e in out if not any(a <= e["start"] and e["end"] <= b for a, b in added)]
    best: dict[tuple, dict[str, Any]] = {}
    for e in out:  # the same span and label twice (a cut span and the whole one, nested): the best score
        k = (e["start"], e["end"], e.get("label"))
        if k not in best or (e.get("score") or 0.0) > (best[k].get("score") or 0.0):
            best[k] = e
    return [e for e in out if best[(e["start"], e["end"], e.get("label"))] is e]


# Tokens of the alias dictionary match. A word is a run of \w and combining marks (a mark belongs to its letter: a
# match never ends between "o" and the U+0308 of a decomposed "Köln", nor inside Hindi "रामायण"), joined by - ' ’ . &
# ("Jean-Pierre", "AT&T", "U.S."); any other character but a space is a token of its own. ASCII text takes the plain
# pattern (no marks there), which is faster.
_WORD_ASCII = re.compile(r"\w+(?:[-'’.&]\w+)*\.?|[^\w\s]")
# Scripts written without spaces between words (Han, Hiragana, Katakana, Bopomofo, Thai, Lao, Khmer, Myanmar): every
# character (with its marks) is a token, so that the longest match finds "北京大学" and "北京" inside "我在北京大学读书".
# Hangul is not among them: Korean puts spaces between words (a word is cut before the particles that end it
# instead: ``KOREAN_PARTICLES``).
_SPACELESS = ("\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u19e0-\u19ff\u3005-\u3007\u3021-\u3029\u3031-\u3035"
              "\u3038-\u303c\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua9e0-\ua9ff"
              "\uaa60-\uaa7f\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f")
_APOSTROPHES = "'’"
_ASCII_CAPITAL = re.compile(r"[A-Z0-9]")
# A token's cost against max_words, in quarter words: a word 4, a character of a script written without spaces 1
# (max_words 6 tries names of up to 24 such characters), a word after an apostrophe inside a token 0 (it is part of
# the same word: "Côte d'Ivoire" is two words, as before).
_WORD_COST, _CHAR_COST = 4, 1
_LIMITS_KEPT = 100_000  # distinct tokens whose alias-start limit alias_mentions remembers (then starts afresh)
_UNLIMITED = 1 << 30
_CAN_START, _CAN_END = 1, 2


@functools.cache
def _ignorable_token() -> re.Pattern[str]:
    """A token made of characters that do not show only (``glinker.kb.store.IGNORABLES``), compiled at first use."""
    from glinker.kb.store import IGNORABLES

    return re.compile(f"[{re.escape(IGNORABLES)}]+")


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """(the token pattern of non-ASCII text, the pattern of a token's pieces, what makes a token split into
    pieces): compiled at first use, the class of combining marks being large."""
    from glinker.kb.store import IGNORABLES
    from glinker.model.words import COMBINING_MARKS as M

    # characters that do not show (a soft hyphen, a zero-width space) between two word characters are inside the
    # word ("Ber\xadlin" is one token, whose key folds to "berlin"); elsewhere each is a token of its own
    w = rf"\w(?:[\w{M}]|[{re.escape(IGNORABLES)}]+(?=\w))*"
    token = re.compile(rf"{w}(?:[-'’.&]{w})*\.?|[^\w\s][{M}]*")
    piece = re.compile(rf"(?P<c>[{_SPACELESS}][{M}]*)|(?P<a>['’])|[^'’{_SPACELESS}]+")
    return token, piece, re.compile(rf"['’{_SPACELESS}]")


# Korean particles (josa) and copula endings written attached to the word before them ("서울에서", "삼성전자가",
# "문재인은", "IBM의"): a match may end before up to three of them at the end of a word (the longest match still
# takes the whole word when it is an alias: "서울에서" itself). Case and topic markers, postpositions, the
# copula; combinations of them ("에서는" = 에서 + 는, "과의", "이라는" = 이 + 라는) need no entry of their own, but
# "에게서" and "한테서" do ("서" alone is no particle). Left out: "다", "라", "나" (endings of many names:
# "캐나다", "아시아나"; "이나", "라는", "이다" are in), and longer verb endings.
KOREAN_PARTICLES = (
    "이", "가", "은", "는", "을", "를", "의", "에", "에서", "에게", "에게서", "께", "께서", "한테", "한테서",
    "와", "과", "도", "로", "으로", "로서", "으로서", "로써", "으로써", "만", "까지", "부터", "처럼", "보다", "마다",
    "조차", "이나", "랑", "이랑", "하고", "이며", "이고", "라는", "라고", "이다", "였다", "이었다", "입니다")


@functools.cache
def _korean_particles() -> re.Pattern[str]:
    """One to three Korean particles before a character that is no word character (groups: each particle). The
    particles are grouped by their first syllable ("이(?:었다|나|...)?|가|..."): ``re`` then skips the other
    characters fast."""
    first: dict[str, list[str]] = {}
    for p in sorted(KOREAN_PARTICLES, key=len, reverse=True):
        first.setdefault(p[0], []).append(p[1:])
    one = "|".join(c + (f"(?:{'|'.join(r for r in rest if r)}){'?' if '' in rest else ''}" if any(rest) else "")
                   for c, rest in first.items())
    return re.compile(rf"({one})({one})?({one})?(?!\w)")


_HANGUL = re.compile("[\uac00-\ud7a3]")
# keys that no fold changes, though they are no NFD: Hangul syllables (and ASCII but the backtick, an apostrophe
# to fold version 3)
_NO_FOLD = re.compile("[\x00-\x5f\x61-\x7f\uac00-\ud7a3]*")


def _ends_word(text: str, m: re.Match[str], e: int) -> bool:
    """Whether the particles ``m`` end the word that ends at ``e`` (a period after them is the word's own)."""
    return m.end() == e or m.end() == e - 1 and text[e - 1] == "."


def _word_particles(text: str, s: int, e: int) -> re.Match[str] | None:
    """The Korean particles that end the word ``text[s:e]``, after at least one character of it: the match that
    begins first (see :func:`_korean_particles`), or None."""
    for m in _korean_particles().finditer(text, s + 1, e):
        if _ends_word(text, m, e):
            return m
    return None


def _korean_stem(word: str) -> str:
    """``word`` without the Korean particles that end it: the first token the alias-mention tokenizer makes of it
    ("서울에서" -> "서울")."""
    if _HANGUL.search(word) is not None and (m := _word_particles(word, 0, len(word))) is not None:
        return word[:m.start()]
    return word


# the part after an apostrophe that makes an English contraction ("don't", "we'll", "they're", "I've", "I'd", "I'm",
# "ma'am", "int'l", "it's"): no match starts on it, and none ends before it but for the possessive "s"
_CONTRACTIONS = frozenset(("t", "ll", "re", "ve", "d", "m", "am", "l", "s"))
# elided articles and prepositions in words all in capitals ("L'IBM", "D'ITALIA"): where a match may start after
# the apostrophe (in other capitalised words the name cannot be told from the prefix)
_CAPITAL_ELISIONS = frozenset(("L", "D", "QU", "J", "S", "C", "N", "M", "T", "DELL", "DALL", "NELL", "SULL", "ALL"))
# The part after an apostrophe (lower-cased) that makes a clitic a match may end before: the English and Dutch
# possessive "s", Turkish case and other suffixes ("İstanbul'da", "Diyarbakır'a", "Erdoğan'ın", "Ankara'ya",
# "Obama'nın", "Türkiye'deki", "1990'larda"), German "Grimm'sche", and the Polish endings of foreign names
# ("Descartes'a", "Shakespeare'owi", "Wilde'em", "Kennedy'ego"). Any other part after an apostrophe belongs to the
# word: an Arabic or Hebrew transliteration writes ayin and hamza so ("Qur'an", "Ka'ba", "Ja'far", "Giv'at"), and so
# does Uzbek ("O'zbekiston"); Cyrillic after an apostrophe is Ukrainian ("Прип'ять"). A Turkish suffix that
# begins with a close vowel is that vowel alone or goes on with n, m, y or z ("Paris'i", "Paris'inde", "Erdoğan'ın",
# "Paris'imiz"; not the "ud" of "Mas'ud"), and none ends in a vowel and "h", as transliterations of the Arabic ta
# marbuta do ("Sa'dah", "Ma'lah"): such parts belong to the word too.
_CLITIC = re.compile(r"(?![^h]*[aeıiouü]h$)(?:[cçdlmnsty].*|[ae]|[ıiuü](?:[nmyz].*)?|owie?|e(?:m|mu|go)|om|ach|ami|ów)")
# After a vowel other than "e", a Turkish suffix begins with one of these consonants (Turkish puts a buffer "y",
# "n" or "s" between two vowels: "Ankara'ya", "Obama'nın", "Ankara'sı"; "t" and "ç" follow voiceless consonants),
# as does the possessive "s": a vowel after a vowel is ayin or hamza ("Gama'a", "Sana'a", "Ba'ath", "Shi'a",
# "Hawai'i"). A final "e" is often silent in a name Turkish writes as it is pronounced ("Google'a", "George'un").
_AFTER_VOWEL = frozenset("cdlmnsy")
_STEM_VOWELS = frozenset("aiouı")  # (letters without their accents: "ö" and "ü" are "o" and "u" here)
# ... but after two vowels, the Polish endings of a French name whose last vowel is written with two or three
# letters and not pronounced apart ("Rousseau'a", "Montesquieu'a", "Cocteau'owi", "Rousseau'em"): "au", "eu", "ou"
# end no Arabic transliteration before an ayin
_POLISH_AFTER_DIGRAPH = frozenset(("a", "owi", "em", "ego", "emu", "om"))
_DIGRAPH_ENDS = ("au", "eu", "ou")


def _clitic(stem: str, tail: str, capitals: bool) -> bool:
    """Whether a match may end after ``stem`` where the same word goes on with an apostrophe and ``tail``: ``tail``
    is a clitic written in lower case (or the word is all in capitals, "IBM'S", "İSTANBUL'DA") that is no English
    contraction (see ``_CLITIC``, ``_AFTER_VOWEL``)."""
    # (a period after the word: "Don't."; "İ" lower-cases to "i" and a combining dot, "PARİS'İN"; NFD text writes
    # "ü" as "u" and a mark, "Atatürk'ün")
    low = unicodedata.normalize("NFC", tail).lower().replace("\u0307", "").removesuffix(".")
    if not (tail.islower() or capitals) or low in _CONTRACTIONS and low != "s" or _CLITIC.fullmatch(low) is None:
        return False
    last = unicodedata.normalize("NFD", unicodedata.normalize("NFC", stem[-3:])[-1].lower())[0]
    return last not in _STEM_VOWELS or low[0] in _AFTER_VOWEL \
        or low in _POLISH_AFTER_DIGRAPH and stem.lower().endswith(_DIGRAPH_ENDS)


def _tokenize(text: str) -> tuple[list[tuple[int, int]], list[int], list[int] | None]:
    """The tokens of ``text`` as (start, end) offsets, each token's cost (see ``_WORD_COST``), and where a match may
    start and end (bits ``_CAN_START``, ``_CAN_END``; None: at every token).

    A word that holds an apostrophe or characters of a script written without spaces is cut into pieces: each such
    character is a piece, each apostrophe another, the rest of the word between them a piece. A match may start and
    end at every piece but an apostrophe, except that it starts after an apostrophe only when the word before it is
    lower-case (an elided article: "d'IBM", "l'İstanbul", "qu'Obama", "dell'Italia"; not "O'Neill" or "D'Alema")
    and ends before one only when the word after it is a clitic written in lower case (or the whole word is in
    capitals): the possessive "s" or a Turkish suffix ("IBM's", "IBM'S", "İstanbul'da", "Diyarbakır'a"; not the
    "O" of "O'Neill", not the "Gama" of the Arabic "Gama'a" or the "Qur" of "Qur'an": ``_clitic``). English
    contractions are no such places ("Don't", "we'll", "THEY'VE": ``_CONTRACTIONS``), and in a word all in capitals
    a match starts after an apostrophe only after an elided article (``_CAPITAL_ELISIONS``: "L'IBM"). Such a place
    is an option, never a cut: a longer alias over the apostrophe ("McDonald's", "Sana'a") is matched whole.

    A word that ends with Korean particles (``KOREAN_PARTICLES``: "서울에서", "삼성전자가", "IBM의") is cut into
    its stem and one piece for each particle: a match may end after the stem and after each particle (the whole
    word stays an alias too), and starts only at the stem. A match never starts or ends inside a word otherwise,
    nor between a letter and its marks."""
    ascii_text = text.isascii()
    words = _WORD_ASCII if ascii_text else _patterns()[0]
    spans = [m.span() for m in words.finditer(text)]
    if ascii_text and "'" not in text:  # the common case: plain words
        return spans, [_WORD_COST] * len(spans), None
    _, pieces_re, splits = _patterns()
    # the words with a character to cut at (an apostrophe inside a word, not a quote mark of its own)
    starts = [s for s, _ in spans]
    cut: list[int] = []
    for m in splits.finditer(text):
        k = bisect.bisect_right(starts, m.start()) - 1
        if k >= 0 and m.start() < spans[k][1] and text[spans[k][0]] not in _APOSTROPHES and (not cut or cut[-1] != k):
            cut.append(k)
    # the words that end with Korean particles (and have no piece of the kinds above)
    korean: dict[int, re.Match[str]] = {}
    if not ascii_text and _HANGUL.search(text) is not None:
        for m in _korean_particles().finditer(text):  # (the first match in a word that ends it begins first)
            k = bisect.bisect_right(starts, m.start()) - 1
            if k < 0 or m.start() >= spans[k][1]:
                continue
            s, e = spans[k]
            if m.start() == s:  # the word begins with particles: look for some that leave a stem
                if (found := _word_particles(text, s, e)) is not None:
                    korean[k] = found
            elif _ends_word(text, m, e):
                korean[k] = m
        if korean:
            apart = set(cut)
            korean = {k: m for k, m in korean.items() if k not in apart}
            cut = sorted((*cut, *korean))
    if not cut:
        return spans, [_WORD_COST] * len(spans), None
    both = _CAN_START | _CAN_END
    toks: list[tuple[int, int]] = []
    cost: list[int] = []
    edge: list[int] = []
    last = 0
    for k in cut:
        toks += spans[last:k]
        cost += [_WORD_COST] * (k - last)
        edge += [both] * (k - last)
        last = k + 1
        s, e = spans[k]
        if k in korean:  # the stem, then each particle (the last one takes a period that ends the word)
            m = korean[k]
            toks.append((s, m.start()))
            cost.append(_WORD_COST)
            edge.append(both)
            ends = [g for g in (m.end(1), m.end(2), m.end(3)) if g >= 0]
            ends[-1] = e
            toks += [(m.start(), ends[0]), *zip(ends, ends[1:])]
            cost += [0] * len(ends)
            edge += [_CAN_END] * len(ends)
            continue
        word = text[s:e]
        pieces = [(p.start() + s, p.end() + s, p.group(), p.lastgroup) for p in pieces_re.finditer(word)]
        capitals = word.isupper()
        for j, (ps, pe, _, kind) in enumerate(pieces):
            toks.append((ps, pe))
            if kind == "a":  # an apostrophe: no match starts or ends on it
                cost.append(0)
                edge.append(0)
                continue
            after = j > 0 and pieces[j - 1][3] == "a"
            cost.append(_CHAR_COST if kind == "c" else 0 if after else _WORD_COST)
            ok = both
            if after and (pieces[j][2].lower() in _CONTRACTIONS or not (
                    pieces[j - 2][2].islower() or capitals and pieces[j - 2][2] in _CAPITAL_ELISIONS)):
                ok &= ~_CAN_START
            if j + 2 < len(pieces) and pieces[j + 1][3] == "a" and not _clitic(pieces[j][2], pieces[j + 2][2],
                                                                               capitals):
                ok &= ~_CAN_END
            edge.append(ok)
    toks += spans[last:]
    cost += [_WORD_COST] * (len(spans) - last)
    edge += [both] * (len(spans) - last)
    return toks, cost, edge


@functools.cache
def _chars_only() -> re.Pattern[str]:
    """A key made of characters of scripts written without spaces only, none of them a mark (Thai vowel signs are
    marks: "กรุงเทพ" is not one)."""
    from glinker.model.words import COMBINING_MARKS as M

    return re.compile(f"(?:(?![{M}])[{_SPACELESS}])+")


@functools.cache
def _same_tokens() -> dict[int, str]:
    """Characters that NFKC maps to one character that tokenizes alike (not a joiner of words, not a mark, a word
    character or not as the original): full-width and half-width forms ("，" -> ",", "Ａ" -> "A", "ｶ" -> "カ"), CJK
    compatibility ideographs, small and vertical forms. Computed at first use."""
    cut = _patterns()[2]
    out: dict[int, str] = {}
    for lo, hi in ((0x2000, 0x2BFF), (0x3000, 0x33FF), (0xF900, 0xFAFF), (0xFE10, 0xFE6F), (0xFF00, 0xFFEF)):
        for cp in range(lo, hi + 1):
            c = chr(cp)
            d = unicodedata.normalize("NFKC", c)
            if d == c or len(d) != 1 or c.isspace() or d.isspace() or d in "-'’.&" \
                    or unicodedata.category(d)[0] == "M" or _is_word_char(c) != _is_word_char(d) \
                    or (cut.match(c) is None) != (cut.match(d) is None):
                continue
            out[cp] = d
    return out


def _is_word_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def _unstable_tokens(text: str, toks: list[tuple[int, int]], ascii_text: bool) -> list[int]:
    """The indices of the tokens whose normalisation (NFKC) may change how a span over them tokenizes."""
    if ascii_text or unicodedata.is_normalized("NFKC", text):
        return []
    same = _same_tokens()
    if unicodedata.is_normalized("NFKC", text.translate(same)):
        return []
    return [k for k, (s, e) in enumerate(toks) if not unicodedata.is_normalized("NFKC", text[s:e].translate(same))]


_WEEKDAYS = frozenset("monday tuesday wednesday thursday friday saturday sunday".split())


def _title_case(word: str) -> bool:
    """A capitalised word with lower-case letters ("Senate") that can continue a name: not an all-caps headline
    word ("SENATE"), not a weekday (news writes "in Berlin Monday")."""
    return word[:1].isupper() and any(c.islower() for c in word) and word.rstrip(".").lower() not in _WEEKDAYS


def _first_word(key: str) -> str:
    """The first token of a normalised alias key, as the alias-mention tokenizer splits it (see ``_tokenize``)."""
    if key.isascii() and "'" not in key:
        m = _WORD_ASCII.search(key)
        return m.group() if m else key
    token, pieces, cut = _patterns()
    m = (_WORD_ASCII if key.isascii() else token).search(key)
    if m is None:
        return key
    word = m.group()
    if word[0] in _APOSTROPHES or cut.search(word) is None:
        return word
    return pieces.match(word).group()  # type: ignore[union-attr]  # (the pieces cover every word)


def _start_limits(keys: Iterable[str]) -> tuple[dict[str, int], frozenset[str]]:
    """(the first token of every alias key -> the most tokens a span from a token with that key is tried, the first
    two tokens of every key that begins with a character of a script written without spaces). For such a
    character, the most tokens of a key that begins with it (normalising an NFKC text keeps its tokens), and a span
    longer than one is tried only when its first two tokens begin a key (most pairs of Han characters begin none);
    other first tokens are not limited (counting their keys' tokens would slow the warm-up, for nothing)."""
    out: dict[str, int] = {}
    pairs: set[str] = set()
    token, _, cut = _patterns()
    chars = _chars_only()
    for k in keys:
        if k.isascii() and "'" not in k:
            m = _WORD_ASCII.search(k)
            fw, n = (m.group(), _UNLIMITED) if m else (None, 0)
        elif cut.search(k) is None:  # no character of a script without spaces, no apostrophe
            m = token.search(k)
            fw, n = (_korean_stem(m.group()), _UNLIMITED) if m else (None, 0)
        elif chars.fullmatch(k):  # characters of scripts without spaces only ("北京大学"): one token each
            fw, n = k[0], len(k)
            if n > 1:
                pairs.add(k[:2])
        else:
            spans, cost, _ = _tokenize(k)
            fw, n = (k[spans[0][0]:spans[0][1]], len(spans)) if spans else (None, 0)
            if n and cost[0] != _CHAR_COST:
                n = _UNLIMITED
            elif n > 1:
                pairs.add(k[:spans[1][1]])
        if fw is not None and out.get(fw, 0) < n:
            out[fw] = n
    return out, frozenset(pairs)


class AliasMentionsParams(StageParams):
    kb: KBRef | None = Field(default=None, description="KB whose aliases are matched (default: the pipeline's `kb`).")
    max_words: int = Field(default=6, ge=1, le=32, description="Longest alias tried, in words.")
    min_chars: int = Field(
        default=2, ge=1,
        description="Shortest alias matched, in characters. A Han, Kana or Hangul character counts one, as any other: "
                    "one-character names (宋, 京) are not matched at the default; with 1 they are, and in Chinese "
                    "and Japanese also inside any longer word that is no alias (those scripts are matched character "
                    "by character).")
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
        description="Also match names written without the accents of their Latin or Greek letters or the vowel "
                    "marks of Arabic, or with another apostrophe (\"Zurich\" for the alias Zürich, \"ΑΘΗΝΑ\" for "
                    "Αθήνα, \"O’Brien\" for O'Brien and the other way round, ’ ‘ ʼ ʻ ´ ′ and the backtick being "
                    "read as ', and Hebrew with ' and \" for the geresh and gershayim; Greek and Arabic in KBs "
                    "built or updated since 2026-12-04, apostrophes since fold version 3, Hebrew marks since 4, "
                    "characters that do not show (\"Ber\\u00adlin\" with a soft hyphen) since 5, `docs/kb.md`; `alias_candidates` finds them the same way). A KB built before accent folding "
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
        self.starts, self.pairs = self.context.resource(("alias-first-words", id(self.kb), p.fold_accents),
                                                        lambda: _start_limits(self.vocab))
        self.stop = {s.casefold() for s in p.stopwords}
        self.articles = {normalize_alias(a) for a in p.leading_articles}
        self.common: dict[str, bool] = {}
        self.rare: dict[str, bool] = {}
        self._limits: tuple[Any, dict[str, int]] = (None, {})

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
        from glinker.kb.store import normalize_alias

        p: AliasMentionsParams = self.params  # type: ignore[assignment]
        fold = p.fold_accents and self.kb.store.has_folds
        store_fold = self.kb.store.fold  # the fold the store's keys were made with

        def fold_key(key: str) -> str:  # (a fold changes no Hangul syllable, and decomposing them is slow)
            return key if _NO_FOLD.fullmatch(key) is not None else store_fold(key)

        budget = p.max_words * _WORD_COST
        starts, pairs, vocab, stop = self.starts, self.pairs, self.vocab, self.stop
        # a token's limit (the most tokens of a key that begins with it; 0: none begins so), remembered across
        # batches for the same alias table: most tokens of a text are common words seen before
        if self._limits[0] is not starts or len(self._limits[1]) > _LIMITS_KEPT:
            self._limits = (starts, {})
        known = self._limits[1]
        max_words, min_chars, require_capital = p.max_words, p.min_chars, p.require_capital
        can_start, can_end, char_cost = _CAN_START, _CAN_END, _CHAR_COST
        out = []
        for d_i, doc in enumerate(documents):
            text = doc.text
            toks, cost, edge = _tokenize(text)
            # reach[k]: total cost of the tokens before k (the span i..j-1 costs reach[j] - reach[i]); without
            # pieces (edge None) every token is a word
            reach = list(itertools.accumulate(cost, initial=0)) if edge is not None else []
            # capitals[i]: tokens before i with an upper-case letter or a digit (require_capital, one pass)
            capitals = [0]
            ascii_text = text.isascii()
            for s, e in toks:
                # (a letter of a script without case, e.g. CJK, counts: such names have no capital to require)
                capitals.append(capitals[-1] + (_ASCII_CAPITAL.search(text, s, e) is not None if ascii_text else
                                                any(c.isupper() or c.isdigit() or (c.isalpha() and c == c.upper()
                                                                                   and c == c.lower())
                                                    for c in text[s:e])))
            # A span's key starts with its first token's key, and has as many tokens, when normalising changes no
            # token or only maps characters to ones that tokenize alike (full-width "，" to ","): then tokens that
            # begin no alias are skipped at once, and spans are tried no longer than the keys that begin alike, same
            # result. Spans over a token normalising changes otherwise ("…", "™", "½") are all tried.
            unstable = _unstable_tokens(text, toks, ascii_text)
            n_toks = len(toks)
            unstable.append(n_toks)
            u = 0
            pieces = edge is not None
            ms: list[Mention] = []
            i = 0
            while i < n_toks:
                if pieces and not edge[i] & can_start:  # type: ignore[index]
                    i += 1
                    continue
                while unstable[u] < i:
                    u += 1
                stable = unstable[u] - i  # spans of up to this many tokens are normalised token by token
                if stable:  # no longer than the longest key that begins with this token's key
                    tok = text[toks[i][0]:toks[i][1]]
                    most = known.get(tok)
                    if most is None:
                        fw = _first_word(normalize_alias(tok))
                        # (only a character of a script without spaces has a limit, and such a key is its own fold)
                        most = starts.get(fw, 0)
                        if not most and fw.endswith("."):
                            most = starts.get(fw[:-1], 0)
                        if not most and fold and (not fw.isascii() or "`" in fw):
                            ffw = _first_word(fold_key(fw))
                            most = starts.get(ffw, 0)
                            if not most and ffw.endswith("."):  # "Málaga." for a KB that only knows "Malaga"
                                most = starts.get(ffw[:-1], 0)
                        known[tok] = most
                    if not most and i + stable == n_toks:  # no key begins so (the common case): next token
                        i += 1
                        continue
                # the most tokens a span from i may hold within max_words (a word piece after an apostrophe costs
                # nothing inside its word, a whole word at the start of a span)
                longest = bisect.bisect_right(reach, reach[i] + budget - (_WORD_COST if cost[i] == 0 else 0)) - 1 - i \
                    if pieces else min(max_words, n_toks - i)
                tried = range(longest, 0, -1)
                if stable:
                    most = min(most, longest, stable)
                    if most > 1 and cost[i] == char_cost:  # a longer span only where two characters begin a key
                        two = normalize_alias(text[toks[i][0]:toks[i + 1][1]])
                        if two not in pairs and not (two.endswith(".") and two[:-1] in pairs) and not (
                                fold and fold_key(two) in pairs):
                            most = 1
                    tried = range(most, 0, -1) if stable >= longest else itertools.chain(
                        range(longest, stable, -1), range(most, 0, -1))
                hit = None
                for n in tried:
                    if pieces and not edge[i + n - 1] & can_end:  # type: ignore[index]
                        continue
                    s, e = toks[i][0], toks[i + n - 1][1]
                    if not ascii_text and (_ignorable_token().fullmatch(text, s, toks[i][1]) or
                                           _ignorable_token().fullmatch(text, toks[i + n - 1][0], e)):
                        continue  # a mark that does not show is no part of a name at its ends ("Berlin\u200f")
                    if e - s < min_chars:
                        continue
                    surface = text[s:e]
                    if require_capital and capitals[i + n] == capitals[i]:
                        continue
                    key = normalize_alias(surface)
                    if n == 1 and key in stop:
                        continue
                    if fold and key not in vocab and (not key.isascii() or "`" in key):
                        key = fold_key(key)  # "Málaga" for a KB that only knows "Malaga", "O`Brien" for "O'Brien"
                    if key in vocab and self._names(key, surface):
                        hit = (s, e, n)
                        break
                    # "U.S." at a sentence end: try without the trailing period too (only one attached to the
                    # word: "Reuters ." is the shorter span "Reuters", not "Reuters " with its space)
                    if surface.endswith(".") and len(surface) > 1 and not surface[-2].isspace() \
                            and e - 1 - s >= min_chars:
                        short = normalize_alias(surface[:-1])
                        if fold and short not in vocab and (not short.isascii() or "`" in short):
                            short = fold_key(short)  # "Málaga." and "O’Brien." too
                        if short in vocab and self._names(short, surface):
                            hit = (s, e - 1, n)
                            break
                if hit is None:
                    i += 1
                    continue
                s, e, n = hit
                if p.skip_name_fragments and i + n < n_toks and text[e:toks[i + n][0]].isspace() \
                        and _title_case(text[toks[i + n][0]:toks[i + n][1]]):
                    i += 1
                    continue
                if n > 1 and normalize_alias(text[toks[i][0]:toks[i][1]]) in self.articles \
                        and (not pieces or edge[i + 1] & can_start) \
                        and normalize_alias(text[toks[i + 1][0]:e]) in vocab:
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
