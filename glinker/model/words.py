"""Word splitting, subword tokenization with ``words_mask``, and long-text windows (gliner-compatible)."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# Every combining mark (Unicode categories Mn, Mc, Me; Unicode 14.0, the data of Python 3.11): accents, the vowel
# signs and viramas of Indic scripts, Thai vowels and tones, Arabic harakat, Hebrew points, variation selectors. A
# mark belongs to the letter before it, so no word, mention or span may begin or end between the two. A regex
# character class body (ranges), precomputed so that nothing is derived from unicodedata at import or first use;
# tests/model/test_fix27_ml_marks.py checks it against the running Python's data. The marks outside the Basic
# Multilingual Plane are kept apart: a class of BMP characters only is checked much faster by `re`.
COMBINING_MARKS_BMP = (
    "\u0300-\u036f\u0483-\u0489\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7\u0610-\u061a\u064b-\u065f"
    "\u0670\u06d6-\u06dc\u06df-\u06e4\u06e7\u06e8\u06ea-\u06ed\u0711\u0730-\u074a\u07a6-\u07b0\u07eb-\u07f3"
    "\u07fd\u0816-\u0819\u081b-\u0823\u0825-\u0827\u0829-\u082d\u0859-\u085b\u0898-\u089f\u08ca-\u08e1"
    "\u08e3-\u0903\u093a-\u093c\u093e-\u094f\u0951-\u0957\u0962\u0963\u0981-\u0983\u09bc\u09be-\u09c4"
    "\u09c7\u09c8\u09cb-\u09cd\u09d7\u09e2\u09e3\u09fe\u0a01-\u0a03\u0a3c\u0a3e-\u0a42\u0a47\u0a48"
    "\u0a4b-\u0a4d\u0a51\u0a70\u0a71\u0a75\u0a81-\u0a83\u0abc\u0abe-\u0ac5\u0ac7-\u0ac9\u0acb-\u0acd"
    "\u0ae2\u0ae3\u0afa-\u0aff\u0b01-\u0b03\u0b3c\u0b3e-\u0b44\u0b47\u0b48\u0b4b-\u0b4d\u0b55-\u0b57"
    "\u0b62\u0b63\u0b82\u0bbe-\u0bc2\u0bc6-\u0bc8\u0bca-\u0bcd\u0bd7\u0c00-\u0c04\u0c3c\u0c3e-\u0c44"
    "\u0c46-\u0c48\u0c4a-\u0c4d\u0c55\u0c56\u0c62\u0c63\u0c81-\u0c83\u0cbc\u0cbe-\u0cc4\u0cc6-\u0cc8"
    "\u0cca-\u0ccd\u0cd5\u0cd6\u0ce2\u0ce3\u0d00-\u0d03\u0d3b\u0d3c\u0d3e-\u0d44\u0d46-\u0d48\u0d4a-\u0d4d"
    "\u0d57\u0d62\u0d63\u0d81-\u0d83\u0dca\u0dcf-\u0dd4\u0dd6\u0dd8-\u0ddf\u0df2\u0df3\u0e31\u0e34-\u0e3a"
    "\u0e47-\u0e4e\u0eb1\u0eb4-\u0ebc\u0ec8-\u0ecd\u0f18\u0f19\u0f35\u0f37\u0f39\u0f3e\u0f3f\u0f71-\u0f84"
    "\u0f86\u0f87\u0f8d-\u0f97\u0f99-\u0fbc\u0fc6\u102b-\u103e\u1056-\u1059\u105e-\u1060\u1062-\u1064"
    "\u1067-\u106d\u1071-\u1074\u1082-\u108d\u108f\u109a-\u109d\u135d-\u135f\u1712-\u1715\u1732-\u1734"
    "\u1752\u1753\u1772\u1773\u17b4-\u17d3\u17dd\u180b-\u180d\u180f\u1885\u1886\u18a9\u1920-\u192b"
    "\u1930-\u193b\u1a17-\u1a1b\u1a55-\u1a5e\u1a60-\u1a7c\u1a7f\u1ab0-\u1ace\u1b00-\u1b04\u1b34-\u1b44"
    "\u1b6b-\u1b73\u1b80-\u1b82\u1ba1-\u1bad\u1be6-\u1bf3\u1c24-\u1c37\u1cd0-\u1cd2\u1cd4-\u1ce8\u1ced\u1cf4"
    "\u1cf7-\u1cf9\u1dc0-\u1dff\u20d0-\u20f0\u2cef-\u2cf1\u2d7f\u2de0-\u2dff\u302a-\u302f\u3099\u309a"
    "\ua66f-\ua672\ua674-\ua67d\ua69e\ua69f\ua6f0\ua6f1\ua802\ua806\ua80b\ua823-\ua827\ua82c\ua880\ua881"
    "\ua8b4-\ua8c5\ua8e0-\ua8f1\ua8ff\ua926-\ua92d\ua947-\ua953\ua980-\ua983\ua9b3-\ua9c0\ua9e5\uaa29-\uaa36"
    "\uaa43\uaa4c\uaa4d\uaa7b-\uaa7d\uaab0\uaab2-\uaab4\uaab7\uaab8\uaabe\uaabf\uaac1\uaaeb-\uaaef"
    "\uaaf5\uaaf6\uabe3-\uabea\uabec\uabed\ufb1e\ufe00-\ufe0f\ufe20-\ufe2f"
)
COMBINING_MARKS_ASTRAL = (
    "\U000101fd\U000102e0\U00010376-\U0001037a\U00010a01-\U00010a03\U00010a05\U00010a06\U00010a0c-\U00010a0f"
    "\U00010a38-\U00010a3a\U00010a3f\U00010ae5\U00010ae6\U00010d24-\U00010d27\U00010eab\U00010eac"
    "\U00010f46-\U00010f50\U00010f82-\U00010f85\U00011000-\U00011002\U00011038-\U00011046\U00011070"
    "\U00011073\U00011074\U0001107f-\U00011082\U000110b0-\U000110ba\U000110c2\U00011100-\U00011102"
    "\U00011127-\U00011134\U00011145\U00011146\U00011173\U00011180-\U00011182\U000111b3-\U000111c0"
    "\U000111c9-\U000111cc\U000111ce\U000111cf\U0001122c-\U00011237\U0001123e\U000112df-\U000112ea"
    "\U00011300-\U00011303\U0001133b\U0001133c\U0001133e-\U00011344\U00011347\U00011348\U0001134b-\U0001134d"
    "\U00011357\U00011362\U00011363\U00011366-\U0001136c\U00011370-\U00011374\U00011435-\U00011446\U0001145e"
    "\U000114b0-\U000114c3\U000115af-\U000115b5\U000115b8-\U000115c0\U000115dc\U000115dd\U00011630-\U00011640"
    "\U000116ab-\U000116b7\U0001171d-\U0001172b\U0001182c-\U0001183a\U00011930-\U00011935\U00011937\U00011938"
    "\U0001193b-\U0001193e\U00011940\U00011942\U00011943\U000119d1-\U000119d7\U000119da-\U000119e0\U000119e4"
    "\U00011a01-\U00011a0a\U00011a33-\U00011a39\U00011a3b-\U00011a3e\U00011a47\U00011a51-\U00011a5b"
    "\U00011a8a-\U00011a99\U00011c2f-\U00011c36\U00011c38-\U00011c3f\U00011c92-\U00011ca7"
    "\U00011ca9-\U00011cb6\U00011d31-\U00011d36\U00011d3a\U00011d3c\U00011d3d\U00011d3f-\U00011d45\U00011d47"
    "\U00011d8a-\U00011d8e\U00011d90\U00011d91\U00011d93-\U00011d97\U00011ef3-\U00011ef6\U00016af0-\U00016af4"
    "\U00016b30-\U00016b36\U00016f4f\U00016f51-\U00016f87\U00016f8f-\U00016f92\U00016fe4\U00016ff0\U00016ff1"
    "\U0001bc9d\U0001bc9e\U0001cf00-\U0001cf2d\U0001cf30-\U0001cf46\U0001d165-\U0001d169\U0001d16d-\U0001d172"
    "\U0001d17b-\U0001d182\U0001d185-\U0001d18b\U0001d1aa-\U0001d1ad\U0001d242-\U0001d244"
    "\U0001da00-\U0001da36\U0001da3b-\U0001da6c\U0001da75\U0001da84\U0001da9b-\U0001da9f\U0001daa1-\U0001daaf"
    "\U0001e000-\U0001e006\U0001e008-\U0001e018\U0001e01b-\U0001e021\U0001e023\U0001e024\U0001e026-\U0001e02a"
    "\U0001e130-\U0001e136\U0001e2ae\U0001e2ec-\U0001e2ef\U0001e8d0-\U0001e8d6\U0001e944-\U0001e94a"
    "\U000e0100-\U000e01ef"
)
COMBINING_MARKS = COMBINING_MARKS_BMP + COMBINING_MARKS_ASTRAL

# emoji skin-tone modifiers (symbols, not marks) stay with their emoji like a mark
_MARKS = COMBINING_MARKS + "\U0001f3fb-\U0001f3ff"
# characters no word is made of alone (control and format characters such as a byte-order mark, a zero-width space,
# a soft hyphen or a direction mark; combining marks with no letter before them, after a space or at the start):
# the tokenizers drop them or give them nothing of a word, and as a "word" of their own they became entities (a BOM
# tagged as a location, a lone vowel sign as a city); they are skipped, and stay in the text between the words. A
# mark written after a letter or symbol is never skipped: it is in that word (see word_re)
_INVISIBLE = frozenset(("Cc", "Cf", "Mn", "Mc", "Me"))
POOLINGS = ("first", "last", "mean", "max")


@functools.cache
def word_re() -> re.Pattern[str]:
    """gliner's WhitespaceTokenSplitter pattern (``\\w+(?:[-_]\\w+)*|\\S``: Unicode ``\\w``, hyphen/underscore
    compounds stay one word), except that combining marks, emoji skin tones and the zero-width (non-)joiners stay
    in the word they are written in: decomposed "Jose" + U+0301 is one word as "José" is, and so are Hindi
    "म्यूनिख" and Arabic "مُحَمَّد" (gliner cuts them at every mark ``\\w`` does not match and scores the
    lone marks as words); an emoji keeps its variation selector and skin tone, and an emoji sequence joined by
    zero-width joiners is one word. Text without them splits exactly as in gliner. Compiled at first use (the
    character class is large), not at import."""
    m = f"[\\w{_MARKS}\u200c\u200d]*"
    nj = f"[{_MARKS}]*"
    return re.compile(rf"\w{m}(?:[-_]\w{m})*|\S{nj}(?:\u200d\S{nj})*[\u200c\u200d]*")


def __getattr__(name: str) -> Any:
    if name == "WORD_RE":  # the word pattern, as a module attribute (compiled on first access)
        return word_re()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class SplitText:
    """A text split into words with character offsets into the original string."""

    text: str
    words: list[str]
    starts: list[int]
    ends: list[int]


def split_words(text: str) -> SplitText:
    """Split ``text`` into words as gliner's whitespace splitter does, except for the marks and joiners above, and
    that a "word" of invisible characters only (a byte-order mark, a zero-width space, a control character, a
    combining mark with no letter before it) is no word: no span starts or ends on it."""
    words, starts, ends = [], [], []
    for m in word_re().finditer(text):
        w = m.group()
        if all(unicodedata.category(ch) in _INVISIBLE for ch in w):
            continue
        words.append(w)
        starts.append(m.start())
        ends.append(m.end())
    return SplitText(text, words, starts, ends)


def words_mask_from_word_ids(word_ids: Sequence[int | None], pooling: str = "first") -> list[int]:
    """1-based word index on the selected subtokens, 0 elsewhere (gliner's ``prepare_word_mask``, except that
    the index is the word's own: a word the tokenizer gives no token gets no vector, instead of every later word
    taking its predecessor's place as gliner's running count does)."""
    mask: list[int] = []
    prev: int | None = None
    n = len(word_ids)
    for i, wid in enumerate(word_ids):
        if wid is None:
            mask.append(0)
        else:
            first = wid != prev
            seen = wid + 1
            last = (word_ids[i + 1] if i + 1 < n else None) != wid
            pick = (
                pooling in ("mean", "max") or (pooling == "first" and first) or (pooling == "last" and last)
            )
            mask.append(seen if pick else 0)
        prev = wid
    return mask


def tokenize_words(
    tokenizer: Any, word_lists: Sequence[Sequence[str]], pooling: str = "first"
) -> dict[str, Any]:
    """Tokenize pre-split texts like gliner (truncation at the tokenizer limit, longest padding).

    Returns ``input_ids``, ``attention_mask``, ``words_mask`` (torch tensors) and ``cut`` (per text: the
    tokenizer hit its limit and dropped trailing words, which then get zero vectors as in gliner).
    """
    import torch

    lists = [list(w) if len(w) else ["[PAD]"] for w in word_lists]
    enc = tokenizer(lists, is_split_into_words=True, return_tensors="pt", truncation=True, padding="longest")
    masks, cut = [], []
    limit = getattr(tokenizer, "model_max_length", None)
    lengths = enc["attention_mask"].sum(1).tolist()
    for i, words in enumerate(lists):
        wids = enc.word_ids(i)
        masks.append(words_mask_from_word_ids(wids, pooling))
        last = max((w for w in wids if w is not None), default=-1)
        # a word without subtokens (a lone combining mark) is not a cut; a full sequence missing the tail is
        cut.append(bool(limit) and lengths[i] >= limit and last < len(words) - 1)
    return {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "words_mask": torch.tensor(masks, dtype=torch.long),
        "cut": cut,
    }


def subtoken_counts(tokenizer: Any, word_lists: Sequence[Sequence[str]]) -> list[list[int]]:
    """Number of subtokens of every word, without truncation (used to plan windows for long texts)."""
    if not word_lists:
        return []
    # verbose=False: counting a long text is deliberate, not the "sequence longer than the maximum" mistake that
    # transformers warns about (the windows planned from these counts fit the encoder)
    enc = tokenizer(
        [list(w) for w in word_lists], is_split_into_words=True, add_special_tokens=False, truncation=False,
        verbose=False,
    )
    out = []
    for i, words in enumerate(word_lists):
        counts = [0] * len(words)
        for wid in enc.word_ids(i):
            if wid is not None:
                counts[wid] += 1
        out.append(counts)
    return out


class WordMemo:
    """Word splits and subtoken counts of recently read texts, so that reading one text several times (a linking
    pipeline's mention stage, then the span vectors of its own and of the dictionary's mentions) splits and
    tokenizes it once. Keyed by the text itself; bounded by the characters it holds (least recently used texts
    go first); the counts are dropped when the tokenizer changes. Thread-safe; split and count results are shared,
    never changed."""

    def __init__(self, max_chars: int = 1 << 20) -> None:
        from collections import OrderedDict

        from glinker.locks import fork_safe_lock

        self.max_chars = max_chars
        self.chars = 0
        self.items: OrderedDict[str, list[Any]] = OrderedDict()  # text -> [SplitText, counts or None]
        self.tokenizer: Any = None
        self._lock = fork_safe_lock()

    def _entry(self, text: str) -> list[Any]:
        with self._lock:
            e = self.items.get(text)
            if e is not None:
                self.items.move_to_end(text)
                return e
        e = [split_words(text), None]
        if len(text) > self.max_chars:
            return e
        with self._lock:
            old = self.items.get(text)
            if old is not None:
                return old
            self.items[text] = e
            self.chars += len(text)
            while self.chars > self.max_chars:
                self.chars -= len(self.items.popitem(last=False)[0])
        return e

    def split(self, text: str) -> SplitText:
        """``split_words(text)``, remembered."""
        return self._entry(text)[0]  # type: ignore[no-any-return]

    def counts(self, tokenizer: Any, splits: Sequence[SplitText]) -> list[list[int]]:
        """``subtoken_counts(tokenizer, [s.words for s in splits])``, remembered for the texts held. The caller
        holds the tokenizer's lock (as for ``subtoken_counts``)."""
        with self._lock:
            if tokenizer is not self.tokenizer:
                for e in self.items.values():
                    e[1] = None
                self.tokenizer = tokenizer
        # (a text over the bound is not held: its split, given here, is counted as it is, not split again)
        entries = [self._entry(sp.text) if len(sp.text) <= self.max_chars else [sp, None] for sp in splits]
        todo = [i for i, e in enumerate(entries) if e[1] is None]
        if todo:
            got = subtoken_counts(tokenizer, [splits[i].words for i in todo])
            for i, c in zip(todo, got):
                entries[i][1] = c
        return [e[1] for e in entries]


@dataclass
class Window:
    """A contiguous word range ``[start, end)`` of one text that is encoded as one sequence."""

    text_index: int
    start: int
    end: int
    cut: bool = False  # True when words after ``end`` were dropped (truncate mode)
    extra: dict = field(default_factory=dict)


def plan_windows(
    counts: Sequence[int], max_words: int, max_tokens: int, overlap: int
) -> list[tuple[int, int]]:
    """Cover all words with windows of at most ``max_words`` words and ``max_tokens`` subtokens, overlapping.

    A single word longer than ``max_tokens`` gets a window of its own (its tail is then cut by the tokenizer).
    """
    n = len(counts)
    if n == 0:
        return [(0, 0)]
    wins: list[tuple[int, int]] = []
    start = 0
    while True:
        end, tok = start, 0
        while end < n and end - start < max_words and (tok + counts[end] <= max_tokens or end == start):
            tok += counts[end]
            end += 1
        wins.append((start, end))
        if end >= n:
            return wins
        nxt = max(start + 1, end - overlap)
        # keep the overlap from eating the whole window when words are long
        start = nxt if nxt > start else end
