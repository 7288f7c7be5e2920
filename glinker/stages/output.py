"""Writers as a pipeline stage: linked documents to JSONL, a JSON array or a self-contained HTML page, each
appended to and complete after every batch (a crash leaves every earlier batch in a complete file)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import Field, model_validator

from glinker.pipeline.stage import Stage, StageParams
from glinker.stages.records import LINKS
from glinker.types import Document

log = logging.getLogger(__name__)


class WriteLinksParams(StageParams):
    path: str = Field(description="Output file; relative paths resolve against the current directory.")
    format: Literal["auto", "jsonl", "json", "html"] = Field(
        default="auto", description="auto picks by the file extension (.jsonl, .json, .html, .htm); another "
        "extension needs the format named.")
    append: bool = Field(default=False, description="JSONL: append to an existing file instead of replacing it.")
    title: str = Field(default="glinker: linked documents", description="HTML page title.")
    lang: str | None = Field(
        default=None, description="HTML: the page's language (a BCP 47 tag such as `ar` or `zh-Hant`), when all its "
        "documents share one; each document's text also takes `meta.lang` (or `meta.language`) when given.")

    @model_validator(mode="after")
    def _known_lang(self) -> "WriteLinksParams":
        from glinker.stages.writers import _LANG_TAG

        if self.lang is not None and not _LANG_TAG.fullmatch(self.lang):
            raise ValueError(f"lang {self.lang!r} is not a language tag: use e.g. `ar`, `de`, `zh-Hant`")
        return self

    @model_validator(mode="after")
    def _known_format(self) -> "WriteLinksParams":
        if self.format == "auto" and Path(self.path).suffix.lower() not in _BY_SUFFIX:
            raise ValueError(f"cannot tell the format of {self.path!r} from its extension: name the file .jsonl, "
                             ".json or .html, or set format: jsonl, json or html")
        return self


_BY_SUFFIX = {".jsonl": "jsonl", ".json": "json", ".html": "html", ".htm": "html"}


class WriteLinks(Stage):
    """Write the linked documents of each batch and pass them on unchanged. The file is started at the first batch
    it writes (a run that writes nothing leaves it as it was) and kept complete after every batch (JSONL lines
    appended; a JSON array or an HTML page appended to in place), for as long as the pipeline object lives: repeated
    ``link()`` calls add to it. A resumed ``glinker link`` continues it."""

    type_name = "write_links"
    Params = WriteLinksParams
    accepts = (LINKS,)
    produces = LINKS
    summary = "write links to JSONL, JSON or HTML (passes them on)"

    @classmethod
    def writes(cls, params: Any) -> list[str]:
        return [params.path]

    @classmethod
    def target(cls, params: Any) -> tuple[Path, str]:
        """The file a stage with ``params`` writes (``~`` expanded; relative to the working folder) and its format."""
        path = Path(os.path.expanduser(params.path))
        return path, params.format if params.format != "auto" else _BY_SUFFIX[path.suffix.lower()]

    @classmethod
    def refused(cls, params: Any) -> str | None:
        """Why the file named by ``params`` would be refused as it is now (it exists and this writer kind did not
        make it: :func:`glinker.stages.writers.foreign_output`), or None."""
        from glinker.stages.writers import foreign_output

        return foreign_output(*cls.target(params))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.path, self.fmt = self.target(self.params)
        self.writer: Any = None  # the JSON/HTML writer, kept while the pipeline lives (close() included)
        self.started = False
        self.resumed = False
        self.keep: int | None = None  # documents the run's output holds: the file keeps as many (resumed runs)

    def continue_output(self, documents: int) -> None:
        self.resumed, self.keep = True, documents

    def warm_up(self) -> None:
        """Refuse a file this writer kind did not make before any model loads (checked again at the first write)."""
        self._check_target()

    def _check_target(self) -> None:
        """A pipeline file chooses the path, so the writer appends to or replaces only an output of its own kind (or
        starts a new file): a path naming a shell's rc file or someone's document is refused, not overwritten."""
        from glinker.errors import ConfigError
        from glinker.stages.writers import foreign_output

        p: WriteLinksParams = self.params  # type: ignore[assignment]
        why = foreign_output(self.path, self.fmt)
        if why is not None:
            doing = "append to" if self.fmt == "jsonl" and (p.append or self.resumed) else "replace"
            # the runner places the error at the stage ("stage 'out' (pipe.yaml:7)")
            raise ConfigError(
                f"{self.type_name} will not {doing} {self.path}: the file exists and {why}, so it is not a "
                f"{self.fmt} output of glinker", where=None,
                fix="set the stage's `path:` to a new file (or to this writer's own earlier output), or delete the "
                    "file if it may go; `glinker pipeline validate` lists the files a pipeline writes")

    def run(self, documents: Sequence[Document], inputs: Sequence[Any]) -> list[Any]:
        from glinker.io import keep_lines, write_jsonl

        p: WriteLinksParams = self.params  # type: ignore[assignment]
        batch = inputs[0]
        first, self.started = not self.started, True
        if first:
            self._check_target()  # before anything is cut, repaired or written
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.resumed and not self.path.is_file():
                log.warning("stage %r: %s is missing; it holds only the documents of this resumed run", self.name,
                            self.path)
            elif self.resumed and self.fmt == "jsonl" and self.keep is not None:
                keep_lines(self.path, self.keep)
        if self.fmt == "jsonl":
            write_jsonl(self.path, batch, append=p.append or self.resumed or not first)
        else:
            if self.writer is None:
                from glinker.stages.writers import HTMLWriter, JSONWriter

                self.writer = (JSONWriter(self.path, continue_existing=self.resumed, keep=self.keep)
                               if self.fmt == "json" else
                               HTMLWriter(self.path, title=p.title, continue_existing=self.resumed, keep=self.keep,
                                          lang=p.lang))
            self.writer.write(batch)
        return batch

    def count(self, output: Any) -> int:
        return len(output)
