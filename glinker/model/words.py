"""Word splitting, subword tokenization with ``words_mask``, and long-text windows (gliner-compatible)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# gliner's WhitespaceTokenSplitter pattern (Unicode \w, hyphen/underscore compounds stay one word), except that
# combining marks, variation selectors and the zero-width (non-)joiners stay with the word they are written in:
# decomposed text ("Jose\u0301") is one word as its composed form is (gliner splits it, and scores the lone mark as
# a word), an emoji keeps its variation selector and skin tone, and an emoji sequence joined by zero-width joiners
# ("👨\u200d👩\u200d👧") is one word. Text without them splits exactly as in gliner.
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f\ufe00-\ufe0f\U0001f3fb-\U0001f3ff\U000e0100-\U000e01ef"
_MARK = f"[{_MARKS}\u200c\u200d]"
_MARK_NJ = f"[{_MARKS}]"
WORD_RE = re.compile(rf"\w(?:\w|{_MARK})*(?:[-_]\w(?:\w|{_MARK})*)*|\S{_MARK_NJ}*(?:\u200d\S{_MARK_NJ}*)*[\u200c\u200d]*")
# characters no word is made of alone (control and format characters such as a byte-order mark, a zero-width space,
# a soft hyphen or a direction mark): the tokenizers drop them, and as a "word" of their own they became invisible
# entities (a BOM tagged as a location); they are skipped, and stay in the text between the words. Combining marks
# are not among them: Thai, Indic, Arabic and Hebrew marks that \w does not match are words of their own, as in gliner
_INVISIBLE = frozenset(("Cc", "Cf"))
POOLINGS = ("first", "last", "mean", "max")


@dataclass
class SplitText:
    """A text split into words with character offsets into the original string."""

    text: str
    words: list[str]
    starts: list[int]
    ends: list[int]


def split_words(text: str) -> SplitText:
    """Split ``text`` into words as gliner's whitespace splitter does, except for the marks and joiners above, and
    that a "word" of invisible characters only (a byte-order mark, a zero-width space, a control character) is no
    word: no span starts or ends on it."""
    words, starts, ends = [], [], []
    for m in WORD_RE.finditer(text):
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
