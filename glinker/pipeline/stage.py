"""The stage protocol: light construction, heavy ``warm_up``, batch ``run``, ``close``, declared input/output kinds.

A stage module must import cheaply (no torch/faiss at module level) so that a pipeline can be validated,
shown and type-checked before any model loads.

Threads: a Pipeline runs one batch at a time (a lock per pipeline), so a stage's ``run`` never runs twice at once.
``glinker serve``, ``glinker link`` and ``glinker worker`` call ``warm_up``, ``run`` and ``close`` on one thread (serve
on its batch thread); through the Python API they run on whichever thread calls ``link``, which may differ call to
call when an application shares a pipeline between threads: a stage that keeps thread-bound objects (an ``sqlite3``
connection) must then open them per thread (docs/linking.md, "Using glinker in a service"). docs/stages.md is the
guide to writing one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

from pydantic import BaseModel, ConfigDict

from glinker.locks import fork_safe_lock
from glinker.types import Document

DOCUMENTS = "documents"
"""The kind (and the reserved input name) of the pipeline's input documents."""


class StageParams(BaseModel):
    """Base of every stage's parameters: unknown keys are errors, never silently dropped, and values keep their
    YAML type (strict: ``"0.5"`` is not a number, ``2.0`` is not a count; an integer is a number)."""

    model_config = ConfigDict(extra="forbid", strict=True)


def placed_path(value: str, base_dir: Path) -> str:
    """``value`` beside the pipeline file (``base_dir``) unless absolute (see :meth:`PipelineContext.new_path`)."""
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else base_dir / p)


class PipelineContext:
    """What stages share: pipeline-level settings and one cache of heavy resources (models, KBs).

    ``resource(key, factory)`` builds a resource once, so two stages naming the same model share one copy.
    """

    def __init__(self, *, model: str | None = None, kb: str | None = None, base_dir: Path | None = None,
                 device: str | None = None, settings: dict[str, Any] | None = None) -> None:
        self.model = model
        self.kb = kb
        self.base_dir = base_dir or Path.cwd()
        self.device = device
        self.settings = dict(settings or {})
        self._resources: dict[Any, Any] = {}
        # KBs read from their source -> where their kb block and its keys are in the pipeline file (errors met when
        # reading the source are said there; PipelineSpec.kb_places)
        self.kb_places: dict[str, dict[str, str]] = {}
        self._lock = fork_safe_lock()  # a resource factory may ask for another resource (free in a forked child)

    def resolve_path(self, value: str | None) -> str | None:
        """Resolve a relative path against the pipeline file's folder when it exists there."""
        if value is None:
            return None
        p = Path(value).expanduser()
        if not p.is_absolute() and (self.base_dir / p).exists():
            return str(self.base_dir / p)
        return str(p)

    def new_path(self, value: str) -> str:
        """Where a relative path the run creates (a KB's ``cache:`` folder) lives: beside the pipeline file, so the
        pipeline finds what it made whichever folder it is run from (a folder of that name in the working folder
        is another pipeline's, or nobody's)."""
        return placed_path(value, self.base_dir)

    def resource(self, key: Any, factory: Callable[[], Any]) -> Any:
        """The resource cached under ``key``, built by ``factory()`` the first time (shared by every stage asking
        with the same key; a KB or model built here is released or kept by ``Pipeline.close``)."""
        with self._lock:
            if key not in self._resources:
                self._resources[key] = factory()
            return self._resources[key]

    def open_kb(self, kb: Any = None, model: str | None = None) -> Any:
        """The knowledge base named ``kb`` (a stage's own ``kb`` parameter: a KB directory or a ``kb:`` source
        block), else the pipeline's: a ``glinker.kb.KB``, opened once per pipeline and shared with the built-in
        stages (a KB read from its source is embedded with ``model``, else the pipeline's). Call it in
        ``warm_up``; ``Pipeline.close`` closes it (do not close it yourself)."""
        from glinker.stages.resources import open_kb

        return open_kb(self, kb, model)

    def load_model(self, model: str | None = None) -> Any:
        """The bi-encoder named ``model`` (a stage's own ``model`` parameter), else the pipeline's: a
        ``glinker.model.BiEncoder``, loaded once per process (pipelines naming the same checkpoint share it) and
        shared with the built-in stages (``Pipeline.close`` keeps it loaded). Call it in ``warm_up``."""
        from glinker.stages.resources import load_model

        return load_model(self, model)


class Stage:
    """Base class of pipeline stages.

    Subclasses set ``type_name``, ``Params`` (a :class:`StageParams`), ``accepts`` (the kinds they read)
    and ``produces`` (the kind they write); ``max_inputs`` is 1 for ``input:`` stages, ``None`` for fan-in.
    """

    type_name: ClassVar[str] = ""
    Params: ClassVar[type[StageParams]] = StageParams
    accepts: ClassVar[tuple[str, ...]] = (DOCUMENTS,)
    produces: ClassVar[str] = "mentions"
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = 1
    summary: ClassVar[str] = ""
    # whether a ``model`` parameter names a bi-encoder (checked by `pipeline validate`, defaulting to the pipeline's
    # model); a stage whose ``model`` is something else (a spaCy pipeline) sets False
    model_is_biencoder: ClassVar[bool] = True

    def __init__(self, name: str, params: StageParams, context: PipelineContext) -> None:
        self.name = name
        self.params = params
        self.context = context
        self._warm = False
        self._opened = False  # warm_up was called (even if it failed): close() is owed

    def warm_up(self) -> None:
        """Load heavy state (models, indexes, connections). Called once before the first batch, and again before
        the next batch after a ``close()``; on the thread that runs the batches."""

    def ensure_warm(self) -> None:
        if not self._warm:
            self._opened = True
            self.warm_up()
            self._warm = True

    def close(self) -> None:
        """Release what ``warm_up`` opened (connections, files, threads). Called once by ``Pipeline.close()`` (and
        when ``glinker serve`` or ``glinker worker`` stops) for every stage whose ``warm_up`` was called, also one
        that raised (so it must cope with state half made), on the thread that ran the batches. The pipeline may be
        used again afterwards: ``warm_up`` is then called again. The default does nothing."""

    def run(self, documents: Sequence[Document], inputs: Sequence[Any]) -> Any:
        """Process one batch. ``inputs`` holds the outputs of the input stages, in declared order."""
        raise NotImplementedError

    @classmethod
    def writes(cls, params: StageParams) -> list[str]:
        """The files a stage with ``params`` writes (as given; relative to the working folder): two stages may not
        write one file, nor a stage the run's own output."""
        return []

    @classmethod
    def reads(cls, params: StageParams) -> list[str]:
        """The files a stage with ``params`` reads, as the pipeline file gives them (a relative path is resolved as
        ``context.resolve_path`` resolves it: beside the pipeline file): ``glinker pipeline validate`` and ``pipeline
        show`` list them, and validation warns about one that does not exist (an error when the pipeline loads).
        The built-in stages' ``kb``, ``model``, ``labels_file``, ``label_bank`` and ``patterns`` are listed without it."""
        return []

    @classmethod
    def written_files(cls, params: StageParams) -> dict[str, str]:
        """:meth:`writes` as absolute paths (what is compared) -> as given (what messages show)."""
        import os

        return {os.path.abspath(os.path.expanduser(f)): f for f in cls.writes(params)}

    def continue_output(self, documents: int) -> None:
        """The run resumes after ``documents`` already in its output (``glinker link`` continuing it): continue the
        files this stage writes instead of starting them anew, keeping as many documents (a stage that wrote more
        before the interruption writes them again). Called before the first batch."""

    def count(self, output: Any) -> int:
        """How many items ``output`` holds, for run statistics (per-document lists are summed)."""
        if isinstance(output, list):
            return sum(len(x) if isinstance(x, list) else 1 for x in output)
        return 0
