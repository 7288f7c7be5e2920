"""A third-party stage package used by the tests: registered only through its entry-point metadata."""

from __future__ import annotations

import re
from typing import Any, Sequence

from pydantic import Field

from glinker.pipeline import Stage, StageParams
from glinker.types import Document, Mention


class CapsParams(StageParams):
    min_length: int = Field(default=2, ge=1)
    label: str = "capitalized"


class CapitalizedWords(Stage):
    """Every capitalized word becomes a mention."""

    accepts = ("documents",)
    produces = "mentions"
    Params = CapsParams
    warmed = 0

    def warm_up(self) -> None:
        type(self).warmed += 1
        self._rx = re.compile(r"\b[A-Z]\w{%d,}" % (self.params.min_length - 1))

    def run(self, documents: Sequence[Document], inputs: Sequence[Any]) -> list[list[Mention]]:
        return [[Mention(start=m.start(), end=m.end(), text=m.group(), label=self.params.label, doc_index=i)
                 for m in self._rx.finditer(d.text)] for i, d in enumerate(documents)]


class SummaryParams(StageParams):
    pass


class MentionSummary(Stage):
    """Fan-in: per document, how many mentions each input found, and their union of surface texts."""

    accepts = ("mentions",)
    produces = "summary"
    Params = SummaryParams
    max_inputs = None

    def run(self, documents: Sequence[Document], inputs: Sequence[Any]) -> list[dict]:
        return [{"counts": [len(inp[i]) for inp in inputs],
                 "texts": sorted({m.text for inp in inputs for m in inp[i]})} for i in range(len(documents))]

    def count(self, output: Any) -> int:
        return len(output)
