"""How far the model has read a batch's long documents, window by window: shared by `glinker ner` and `glinker link`,
whose bars count input lines and so stand still while one huge document is read."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

LONG_TEXT_CHARS = 20_000
"""A document of at least this many characters shows how far it is read while the model reads it, window by window
(a bar of its words on a terminal with -o, else an INFO line, with -v, every tenth of them)."""


class LongTextProgress:
    """How far the model has read the long texts (``min_chars`` or more) of one batch: their words read so far
    (windows overlap: a word counts once), on the bar ``make_bar(total, description)`` makes or, without one, in an
    INFO line of ``logger`` every tenth. Fed by the model's ``on_window(window, vectors)`` hook (``window.text_index``
    indexes ``texts``) or by :meth:`see` (a pipeline stage's windows, told by their text)."""

    def __init__(self, texts: Sequence[str], ids: Sequence[Any], make_bar: Callable[[int, str], Any] | None,
                 *, min_chars: int = LONG_TEXT_CHARS, verb: str = "ner", logger: logging.Logger | None = None) -> None:
        from glinker.model.words import split_words

        self.seen = {i: bytearray(len(split_words(t).words)) for i, t in enumerate(texts) if len(t) >= min_chars}
        self.index: dict[str, list[int]] = {}  # a stage's windows come with their text (two documents may share it)
        for i in self.seen:
            self.index.setdefault(texts[i], []).append(i)
        self.total = sum(len(v) for v in self.seen.values())
        self.done = 0
        self.noted = 0  # tenths logged
        self.log = logger or logging.getLogger(__name__)
        self.what = (f"document {ids[next(iter(self.seen))]!r}" if len(self.seen) == 1
                     else f"{len(self.seen)} long documents")
        self.bar = make_bar(self.total, f"{verb} {self.what}") if make_bar is not None and self.seen else None

    def __bool__(self) -> bool:
        return bool(self.seen)

    def see(self, text: str, window: Any) -> None:
        """A window of ``text`` (its words ``window.start`` to ``window.end``) read."""
        for i in self.index.get(text, ()):
            self._read(self.seen[i], window.start, window.end)

    def __call__(self, window: Any, _vectors: Any) -> None:
        seen = self.seen.get(window.text_index)
        if seen is not None:
            self._read(seen, window.start, window.end)

    def _read(self, seen: bytearray, a: int, b: int) -> None:
        new = (b - a) - seen.count(1, a, b)
        if new <= 0:
            return
        seen[a:b] = b"\x01" * (b - a)
        self.done += new
        if self.bar is not None:
            self.bar.update(new)
        elif self.total and self.done * 10 // self.total > self.noted:
            self.noted = self.done * 10 // self.total
            self.log.info("%s: %s of %s words read (%d%%)", self.what, f"{self.done:,}", f"{self.total:,}",
                          100 * self.done // self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
