"""One error hierarchy for glinker.

Every error carries a stable ``code`` (``E###``), the ``where`` it happened (``file:line`` or a field path)
and a ``fix`` that tells the user what to do. ``str(err)`` renders all three on one readable block, so a CLI
can print it as is and a program can read the parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable


class GlinkerError(Exception):
    """Base class of every error glinker raises on purpose."""

    code: str = "E000"

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None,
                 code: str | None = None) -> None:
        self.message = message
        self.where = where
        self.fix = fix
        if code is not None:
            self.code = code
        super().__init__(self.render())

    def render(self) -> str:
        head = f"[{self.code}] "
        if self.where:
            head += f"{self.where}: "
        text = head + self.message
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


class ConfigError(GlinkerError):
    """A configuration (YAML pipeline, CLI option, training config) is invalid."""

    code = "E100"


@dataclass
class Problem:
    """One problem found while validating a file; several are gathered into a :class:`PipelineError`."""

    code: str
    message: str
    where: str | None = None
    fix: str | None = None
    line: int | None = None

    def render(self) -> str:
        return GlinkerError(self.message, where=self.where, fix=self.fix, code=self.code).render()


class PipelineError(ConfigError):
    """A pipeline file is invalid. ``problems`` lists every problem found, each with its line and fix."""

    code = "E200"

    def __init__(self, problems: Iterable[Problem], *, source: str | None = None, what: str = "pipeline") -> None:
        self.problems = list(problems)
        self.source = source
        first = self.problems[0] if self.problems else Problem("E200", f"invalid {what}")
        summary = f"{len(self.problems)} problem(s) in {what}" + (f" {source}" if source else "")
        body = "\n".join(p.render() for p in self.problems)
        super().__init__(f"{summary}\n{body}", where=None, fix=None, code=first.code)

    def render(self) -> str:  # the problems already carry their own place and fix
        return self.message


class StageError(GlinkerError):
    """A stage failed while running; ``where`` names the stage (and its YAML line when known)."""

    code = "E300"


class ModelError(GlinkerError):
    """A model checkpoint is missing, malformed, or does not match what was asked for."""

    code = "E400"


class KBError(GlinkerError):
    """A knowledge base directory, adapter or source is invalid or inconsistent."""

    code = "E500"


class SourceUnavailable(KBError):
    """A KB's source (a database server) cannot be reached right now; a cached copy may serve meanwhile."""


class StaleKBWarning(UserWarning):
    """A pipeline links with its KB as cached at the last sync because the KB's source (a database server) cannot
    be reached: the links may miss the source's latest rows. Issued with :mod:`warnings` (and logged), so that a
    Python program sees it without configuring logging; a service that must not serve stale data can make it an
    error: ``warnings.simplefilter("error", glinker.errors.StaleKBWarning)``."""


class DataError(GlinkerError):
    """Input data (documents, datasets, dumps) is malformed; ``where`` names the file and line."""

    code = "E600"


class SourceCut(DataError):
    """A dump that ends early (a cut download or copy): a build keeps what it read and resumes after it when the
    whole file is there; ``keep_option`` names the adapter option that publishes what was read instead (``kb add``
    says its own fix: it has no build to resume)."""

    def __init__(self, message: str, *, keep_option: str | None = None, **kw: Any) -> None:
        self.keep_option = keep_option
        super().__init__(message, **kw)


class DependencyError(GlinkerError):
    """An optional dependency needed for the requested feature is not installed."""

    code = "E700"


def closest(name: str, options: Iterable[str]) -> str | None:
    """The option closest to ``name`` (for "did you mean" hints), or None when nothing is close."""
    import difflib

    matches = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return matches[0] if matches else None
