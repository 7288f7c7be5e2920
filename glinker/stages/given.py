"""Mentions given with the documents (gold spans, another system's NER): ``meta.mentions`` or ``meta.spans``."""

from __future__ import annotations

import logging
from typing import Any, Sequence

from pydantic import Field

from glinker.errors import DataError
from glinker.model.words import split_words
from glinker.pipeline.stage import DOCUMENTS, Stage, StageParams
from glinker.types import Document, Mention

log = logging.getLogger(__name__)


class GivenMentionsParams(StageParams):
    field: str = Field(default="mentions", description="Key in each document's `meta` holding the spans: a list of {start, end[, label][, text]} or [start, end] pairs: character offsets (code points, end exclusive; an empty or blank span is left out, with a warning); a span's `text`, when given, must be `text[start:end]` (UTF-16 or UTF-8 offsets are named as such).")
    default_label: str | None = Field(default=None, description="Label for spans that carry none.")


SPAN_FIX = ("spans are {start, end} character offsets (Python's: code points, end exclusive) with 0 <= start < end "
            "<= len(text), an optional string label and an optional text (text[start:end], checked)")


def _other_units(text: str, start: Any, end: Any, said: str) -> str | None:
    """What offsets ``start``-``end`` count when, read so, they span ``said`` in ``text``: "UTF-16 code units" (what
    JavaScript, Java and .NET count) or "UTF-8 bytes"; None when neither."""
    if not (isinstance(start, int) and isinstance(end, int)) or isinstance(start, bool) or isinstance(end, bool) \
            or not 0 <= start < end:
        return None
    for name, codec, width in (("UTF-16 code units", "utf-16-le", 2), ("UTF-8 bytes", "utf-8", 1)):
        try:
            if text.encode(codec)[start * width:end * width].decode(codec) == said:
                return name
        except UnicodeError:  # the offsets cut a character there
            continue
    return None


def _units_fix(units: str) -> str:
    codec, o = ("utf-16-le", "2 * o") if units.startswith("UTF-16") else ("utf-8", "o")
    return (f"the offsets count {units}, glinker counts Python characters (code points): convert each offset o "
            f"to len(text.encode('{codec}')[:{o}].decode('{codec}'))")


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
        skipped: list[str] = []
        for d_i, doc in enumerate(documents):
            spans = doc.meta.get(p.field, [])
            if not isinstance(spans, list):
                raise DataError(f"meta.{p.field} of document {doc.id!r} is a {type(spans).__name__}, not a list of "
                                "spans", where=f"document id {doc.id!r}: meta.{p.field}",
                                fix='give a list: [{"start": 0, "end": 5}] or [[0, 5]]')
            ms: list[Mention] = []
            for j, sp in enumerate(spans):
                # a span's own text, when it gives one, is checked against the document's text at its offsets
                said: Any = None
                if isinstance(sp, dict):
                    start, end, label = sp.get("start"), sp.get("end"), sp.get("label", p.default_label)
                    said = sp.get("text")
                elif isinstance(sp, (list, tuple)) and len(sp) >= 2:
                    start, end = sp[0], sp[1]
                    label = sp[2] if len(sp) > 2 else p.default_label
                else:
                    start = end = label = None
                where = f"document id {doc.id!r}: meta.{p.field}[{j}]"
                if said is not None and not isinstance(said, str):
                    raise DataError(f"span {j} of document {doc.id!r} has a text of type {type(said).__name__}",
                                    where=where, fix=SPAN_FIX)
                if not (isinstance(start, int) and isinstance(end, int) and not isinstance(start, bool)
                        and not isinstance(end, bool) and 0 <= start <= end <= len(doc.text)
                        and (label is None or isinstance(label, str))):
                    units = _other_units(doc.text, start, end, said) if said is not None else None
                    raise DataError(f"span {j} of document {doc.id!r} is invalid: {sp!r:.200} (text has "
                                    f"{len(doc.text)} chars)", where=where,
                                    fix=_units_fix(units) if units else SPAN_FIX)
                found = doc.text[start:end]
                if said is not None and said != found:
                    units = _other_units(doc.text, start, end, said)
                    raise DataError(f"span {j} of document {doc.id!r} says its text is {said!r:.80}, but the document's "
                                    f"text at {start}-{end} is {found!r:.80}", where=where,
                                    fix=_units_fix(units) if units else
                                    "give the offsets of that text in the document's text (Python's: code points, "
                                    "end exclusive), or fix the span's text")
                if start == end or not split_words(found).words:
                    # nothing to link (gold files hold such spans: glinker's evaluation reads them as misses), so it
                    # is left out with a warning instead of stopping the run
                    skipped.append(f"{where} ({start}-{end}, {found!r:.40})")
                    continue
                ms.append(Mention(start=start, end=end, text=found, label=label, doc_index=d_i))
            out.append(ms)
        if skipped:
            log.warning("stage %r: %d given spans are empty or cover no word (only spaces or invisible characters) and "
                        "are left out, e.g. %s", self.name, len(skipped), skipped[0])
        return out
