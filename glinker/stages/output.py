"""Writers as a pipeline stage: linked documents to JSONL (appended and flushed per batch), JSON or a
self-contained HTML page (rewritten atomically after every batch, so a crash leaves the last complete page)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import Field

from glinker.pipeline.stage import Stage, StageParams
from glinker.stages.records import LINKS
from glinker.types import Document


class WriteLinksParams(StageParams):
    path: str = Field(description="Output file; relative paths resolve against the current directory.")
    format: Literal["auto", "jsonl", "json", "html"] = Field(
        default="auto", description="auto picks by the file extension (.jsonl, .json, .html).")
    append: bool = Field(default=False, description="JSONL: append to an existing file instead of replacing it.")
    title: str = Field(default="glinker: linked documents", description="HTML page title.")


class WriteLinks(Stage):
    """Write the linked documents of each batch and pass them on unchanged."""

    type_name = "write_links"
    Params = WriteLinksParams
    accepts = (LINKS,)
    produces = LINKS
    summary = "write links to JSONL, JSON or HTML (passes them on)"

    def warm_up(self) -> None:
        p: WriteLinksParams = self.params  # type: ignore[assignment]
        self.path = Path(os.path.expanduser(p.path))
        fmt = p.format
        if fmt == "auto":
            suf = self.path.suffix.lower()
            fmt = {".jsonl": "jsonl", ".json": "json", ".html": "html", ".htm": "html"}.get(suf, "jsonl")
        self.fmt = fmt
        self.docs: list[Any] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "jsonl" and not p.append and self.path.exists():
            self.path.unlink()

    def run(self, documents: Sequence[Document], inputs: Sequence[Any]) -> list[Any]:
        from glinker.io import to_jsonable, write_json, write_jsonl

        p: WriteLinksParams = self.params  # type: ignore[assignment]
        batch = inputs[0]
        if self.fmt == "jsonl":
            write_jsonl(self.path, batch, append=True)
        else:
            self.docs.extend(to_jsonable(d) for d in batch)
            if self.fmt == "json":
                write_json(self.path, self.docs)
            else:
                from glinker.stages.writers import render_html

                tmp = self.path.with_name(self.path.name + ".tmp")
                tmp.write_text(render_html(self.docs, title=p.title), encoding="utf-8")
                os.replace(tmp, self.path)
        return batch

    def count(self, output: Any) -> int:
        return len(output)
