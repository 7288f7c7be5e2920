"""Mentions given with the documents (gold spans, another system's NER): ``meta.mentions`` or ``meta.spans``."""

from __future__ import annotations

from typing import Any, Sequence

from pydantic import Field

from glinker.errors import DataError
from glinker.pipeline.stage import DOCUMENTS, Stage, StageParams
from glinker.types import Document, Mention


class GivenMentionsParams(StageParams):
    field: str = Field(default="mentions", description="Key in each document's `meta` holding the spans: a list of {start, end[, label]} or [start, end] pairs.")
    default_label: str | None = Field(default=None, description="Label for spans that carry none.")


class GivenMentions(Stage):
    """Use the spans that come with each document as its mentions; offsets are checked against the text."""

    type_name = "given_mentions"
    Params = GivenMentionsParams
    accepts = (DOCUMENTS,)
    produces = "mentions"
    summary = "mentions from spans given in document meta"

    def run(self, documents: Sequence[Document], inputs: Sequence[Any]) -> list[list[Mention]]:
        p: GivenMentionsParams = self.params  # type: ignore[assignment]
        out = []
        for d_i, doc in enumerate(documents):
            spans = doc.meta.get(p.field, [])
            if not isinstance(spans, list):
                raise DataError(f"meta.{p.field} of document {doc.id!r} is a {type(spans).__name__}, not a list of "
                                "spans", where=f"document {doc.id}: meta.{p.field}",
                                fix='give a list: [{"start": 0, "end": 5}] or [[0, 5]]')
            ms = []
            for j, sp in enumerate(spans):
                if isinstance(sp, dict):
                    start, end, label = sp.get("start"), sp.get("end"), sp.get("label", p.default_label)
                elif isinstance(sp, (list, tuple)) and len(sp) >= 2:
                    start, end = sp[0], sp[1]
                    label = sp[2] if len(sp) > 2 else p.default_label
                else:
                    start = end = label = None
                if not (isinstance(start, int) and isinstance(end, int) and not isinstance(start, bool)
                        and not isinstance(end, bool) and 0 <= start <= end <= len(doc.text)
                        and (label is None or isinstance(label, str))):
                    raise DataError(f"span {j} of document {doc.id!r} is invalid: {sp!r} (text has {len(doc.text)} chars)",
                                    where=f"document {doc.id}: meta.{p.field}[{j}]",
                                    fix="spans are {start, end} character offsets with 0 <= start <= end <= len(text), "
                                        "and an optional string label")
                ms.append(Mention(start=start, end=end, text=doc.text[start:end], label=label, doc_index=d_i))
            out.append(ms)
        return out
