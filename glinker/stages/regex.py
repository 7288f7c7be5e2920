"""Mentions matched by regular expressions, one label per pattern (IDs, codes, dates, ...)."""

from __future__ import annotations

import re
from typing import Any, Sequence

from pydantic import Field, field_validator

from glinker.pipeline.stage import DOCUMENTS, Stage, StageParams
from glinker.types import Document, Mention


class RegexMentionsParams(StageParams):
    patterns: dict[str, str] = Field(description="Label → Python regular expression; group 1, if any, is the span.", min_length=1)
    ignore_case: bool = Field(default=False, description="Match case-insensitively.")

    @field_validator("patterns")
    @classmethod
    def _compile(cls, v: dict[str, str]) -> dict[str, str]:
        for label, pat in v.items():
            try:
                re.compile(pat)
            except re.error as e:
                raise ValueError(f"pattern for {label!r} is not a valid regex: {e}") from None
        return v


class RegexMentions(Stage):
    """Find mentions with regular expressions; the label of a match is its pattern's key."""

    type_name = "regex_mentions"
    Params = RegexMentionsParams
    accepts = (DOCUMENTS,)
    produces = "mentions"
    summary = "mentions matched by regular expressions"

    def warm_up(self) -> None:
        p: RegexMentionsParams = self.params  # type: ignore[assignment]
        flags = re.IGNORECASE if p.ignore_case else 0
        self._compiled = [(label, re.compile(pat, flags)) for label, pat in p.patterns.items()]

    def run(self, documents: Sequence[Document], inputs: Sequence[Any]) -> list[list[Mention]]:
        out = []
        for d_i, doc in enumerate(documents):
            ms = []
            for label, rx in self._compiled:
                for m in rx.finditer(doc.text):
                    g = 1 if rx.groups else 0
                    s, e = m.span(g)
                    if e > s:
                        ms.append(Mention(start=s, end=e, text=doc.text[s:e], label=label, doc_index=d_i))
            ms.sort(key=lambda m: (m.start, -m.end))
            out.append(ms)
        return out
