"""Union of several mention sets; overlaps resolved by policy."""

from __future__ import annotations

from typing import Any, Literal, Sequence

from pydantic import Field

from glinker.pipeline.stage import Stage, StageParams
from glinker.types import Document, Mention


class MergeMentionsParams(StageParams):
    overlap: Literal["keep_all", "first_input", "longest", "highest_score"] = Field(
        default="keep_all", description="What to do with overlapping spans: keep all, prefer earlier inputs, the longest span, or the best score.")


class MergeMentions(Stage):
    """Merge the mentions of several inputs per document; identical spans are kept once (the first copy, with
    the label of a later one when it has none, and that copy's score when it has none either)."""

    type_name = "merge_mentions"
    Params = MergeMentionsParams
    accepts = ("mentions",)
    produces = "mentions"
    min_inputs = 1
    max_inputs = None
    summary = "union of mention sets"

    def run(self, documents: Sequence[Document], inputs: Sequence[Any]) -> list[list[Mention]]:
        policy = self.params.overlap  # type: ignore[attr-defined]
        out = []
        for d_i in range(len(documents)):
            ranked: list[tuple[int, Mention]] = [(rank, m) for rank, inp in enumerate(inputs) for m in inp[d_i]]
            if policy == "longest":
                ranked.sort(key=lambda rm: (-(rm[1].end - rm[1].start), rm[0]))
            elif policy == "highest_score":
                ranked.sort(key=lambda rm: (-(rm[1].score or 0.0), rm[0]))
            kept: list[Mention] = []
            seen: dict[tuple[int, int], int] = {}  # span -> its place in kept
            for _, m in ranked:
                key = (m.start, m.end)
                if key in seen:
                    # the same span from another input: kept once, with the label one of its copies gives (a
                    # dictionary match has none, the model's copy says "person", which type and name rules read),
                    # and that copy's score with it (the label's probability) where the kept copy has none
                    i = seen[key]
                    if kept[i].label is None and m.label is not None:
                        kept[i] = kept[i].model_copy(update={"label": m.label, "score": kept[i].score
                                                             if kept[i].score is not None else m.score})
                    continue
                if policy != "keep_all" and any(m.start < k.end and k.start < m.end for k in kept):
                    continue
                seen[key] = len(kept)
                kept.append(m)
            kept.sort(key=lambda m: (m.start, -m.end))
            out.append(kept)
        return out
