"""Run a validated pipeline: batches of documents move through the stages in topological order.

Each stage gets the batch's documents and the outputs of its inputs; the runner records per-stage wall
time, calls and produced item counts.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from contextlib import contextmanager
from os import PathLike
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from pydantic import ValidationError

from glinker.errors import ConfigError, DataError, GlinkerError, PipelineError, StageError
from glinker.io import free_id
from glinker.locks import fork_safe_lock, torch_guarded
from glinker.pipeline.graph import render_dot, render_text, topological_order
from glinker.pipeline.registry import is_builtin_class, plugin_note, stage_origin
from glinker.pipeline.spec import PipelineSpec, checked_batch_size, checked_dtype, load_spec, resource_problems
from glinker.pipeline.stage import DOCUMENTS, PipelineContext, Stage
from glinker.stages.records import CANDIDATES, LINKS, MENTIONS, MentionCandidates
from glinker.types import Candidate, Document, Link, LinkedDocument, Mention, checked_meta

KIND_SHAPES = {
    MENTIONS: "a list of glinker.types.Mention per document (offsets within its text)",
    CANDIDATES: "a list of glinker.stages.records.MentionCandidates per document",
    LINKS: "one glinker.types.LinkedDocument per document",
}


def _kind_of(x: Any) -> str:
    if isinstance(x, list):
        odd = next((y for y in x if not isinstance(y, (Mention, MentionCandidates))), None)
        return f"a list holding a {type(odd).__name__}" if odd is not None else "a list"
    return f"a {type(x).__name__}"


def _is_number(v: Any) -> bool:
    """A real number (an int, a float, a numpy float; not a bool, not NaN): what scores are sorted and compared as."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and not math.isnan(v)


log = logging.getLogger(__name__)

GC_GEN0_THRESHOLD = 10_000
"""The youngest generation's collection threshold while a frozen-GC run is on (Python's default: 700)."""


@dataclass
class StageStats:
    """Cumulative counters of one stage."""

    seconds: float = 0.0
    calls: int = 0
    items: int = 0
    warm_up_seconds: float = 0.0


@dataclass
class RunStats:
    """Counters of a pipeline run: documents, batches and per-stage statistics."""

    documents: int = 0
    batches: int = 0
    seconds: float = 0.0
    stages: dict[str, StageStats] = field(default_factory=dict)

    def table(self) -> str:
        """A small text table of per-stage time and counts."""
        total = sum(s.seconds for s in self.stages.values()) or 1e-12
        rows = [f"{'stage':<24}{'calls':>7}{'items':>10}{'seconds':>10}{'share':>8}"]
        for name, s in self.stages.items():
            rows.append(f"{name:<24}{s.calls:>7}{s.items:>10}{s.seconds:>10.3f}{100 * s.seconds / total:>7.1f}%")
        rows.append(f"{self.documents} documents in {self.batches} batches, {self.seconds:.3f} s")
        return "\n".join(rows)

    def as_dict(self) -> dict[str, Any]:
        return {"documents": self.documents, "batches": self.batches, "seconds": self.seconds,
                "stages": {k: vars(v).copy() for k, v in self.stages.items()}}


def kb_ident(m: Any) -> dict[str, Any]:
    """What a KB directory is, from its manifest ``m``: its counts, source, vector model, index, entity-text template
    and its build and last update times (a rebuild or an update is another KB, and so is the same source embedded
    through another template; a copy of the directory is the same KB)."""
    return {"counts": m.counts, "source": m.source, "model": m.model_fingerprint, "factory": m.factory,
            "nprobe": m.nprobe, "template": m.template, "created": m.created, "updated": m.updated}


@dataclass
class BatchResult:
    """One batch's documents and every stage's output; ``output`` is the pipeline's result stage's."""

    documents: list[Document]
    outputs: dict[str, Any]
    output_name: str
    kind: str = ""  # what the output stage produces (mentions, candidates, links...)

    @property
    def output(self) -> Any:
        return self.outputs[self.output_name]


def as_document(item: Any, index: int, ids: Iterator[int] | None = None) -> Document:
    """Coerce a str, dict or Document into a Document, checked (:func:`checked_document`; errors name the input
    position). A document without an id gets the next of ``ids`` (default: its position ``index``); a Document
    given without one, a copy with it."""
    doc = checked_document(item, index)
    if doc.id is None:
        doc = doc.model_copy(update={"id": str(next(ids) if ids is not None else index)})
    return doc


def _documents_arg(documents: Any) -> Any:
    """The documents argument of ``run``/``run_batch``/``link``: one str, dict or Document on its own is one
    document (not a sequence of characters or keys); otherwise an iterable of documents, not None or bytes (iterated
    as ints)."""
    if isinstance(documents, (str, dict, Document)):
        return [documents]
    if documents is None or isinstance(documents, (bytes, bytearray, memoryview)) or \
            not hasattr(documents, "__iter__"):
        raise DataError(f"documents must be a list (or another iterable) of documents, not "
                        f"{type(documents).__name__}", where="input",
                        fix="pass e.g. ['Paris is in France.'] or [{'id': 'a', 'text': '...'}]; decode bytes first")
    return documents


def record_meta(rec: dict[str, Any], text_field: str = "text") -> dict[str, Any]:
    """The ``meta`` of an input record, as ``glinker link`` reads a JSONL line: every field but ``id`` and the text
    (``{"id", "text", "mentions"}``: an AIDA-style record's gold spans are ``meta.mentions``, where
    ``given_mentions`` reads them), with the record's own ``meta`` mapping merged over them (its keys win)."""
    meta = {k: v for k, v in rec.items() if k not in ("id", text_field)}
    if isinstance(rec.get("meta"), dict):
        meta = {**{k: v for k, v in meta.items() if k != "meta"}, **rec["meta"]}
    return meta


_FIELD_FIXES = {
    "id": "ids are strings or whole numbers, e.g. {'id': 'a', 'text': '...'}",
    "text": "documents are strings, or dicts whose `text` is the text as a string",
    "meta": "meta is a mapping, e.g. {'text': '...', 'meta': {'source': 'web'}}",
}


def checked_document(item: Any, index: int) -> Document:
    """``item`` (a str, dict or Document) as a Document, its id as given (None: none), checked as far as can be
    without linking it: its type, its ``text`` (a string, no lone surrogate), its ``id`` (a string or a whole
    number, a numpy integer too; no lone surrogate), ``meta`` (a mapping of what a linked record can hold:
    :func:`glinker.types.checked_meta`, numpy scalars becoming Python values). A dict's keys other than ``id``,
    ``text`` and ``meta`` go into its meta, as ``glinker link`` reads a JSONL record (:func:`record_meta`). Errors
    name its position (``input[9]``)."""
    from glinker.io import check_text

    if isinstance(item, Document):
        doc = item
    elif isinstance(item, str):
        doc = Document(text=item)
    elif isinstance(item, dict):
        fields = item
        for k in ("id", "text"):  # pydantic would decode bytes silently (in whatever encoding they are not)
            if isinstance(item.get(k), (bytes, bytearray, memoryview)):
                raise DataError(f"document {index} has a{'n' if k == 'id' else ''} {k} of bytes",
                                where=f"input[{index}].{k}",
                                fix=f"decode it first (e.g. value.decode('utf-8')); {_FIELD_FIXES[k]}")
        if item.get("meta", {}) is None:  # JSON null: no meta, as a record without the key
            item = {k: v for k, v in item.items() if k != "meta"}
            fields = item
        if any(k not in ("id", "text", "meta") for k in item):
            if item.get("meta") is not None and not isinstance(item["meta"], dict):
                raise DataError(f"document {index} has a meta of type {type(item['meta']).__name__}",
                                where=f"input[{index}].meta", fix=_FIELD_FIXES["meta"])
            fields = {k: item[k] for k in ("id", "text") if k in item}
            fields["meta"] = record_meta(item)
        try:
            doc = Document.model_validate(fields)
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(map(str, first["loc"]))
            top = str(first["loc"][0]) if first["loc"] else ""
            if first["type"] == "missing" and top == "text":
                others = [k for k, v in item.items() if isinstance(v, str) and k != "id"]
                msg = "document {} has no `text`{}".format(
                    index, f" (its string fields: {', '.join(map(str, others[:5]))})" if others else "")
            else:
                msg = f"document {index} is invalid: {loc}: {first['msg']}"
            raise DataError(msg, where=f"input[{index}]" + (f".{top}" if top else ""),
                            fix=_FIELD_FIXES.get(top, "documents are strings or dicts with a `text` field")) from None
    else:
        raise DataError(f"document {index} has type {type(item).__name__}", where=f"input[{index}]",
                        fix="pass strings, dicts with `text`, or glinker.Document objects")
    # a Document made with model_construct (or changed since) skips pydantic's checks
    if not isinstance(doc.text, str):
        raise DataError(f"document {index} has a text of type {type(doc.text).__name__}", where=f"input[{index}].text",
                        fix=_FIELD_FIXES["text"])
    if not isinstance(doc.meta, dict):
        raise DataError(f"document {index} has a meta of type {type(doc.meta).__name__}",
                        where=f"input[{index}].meta", fix=_FIELD_FIXES["meta"])
    if doc.id is not None and not isinstance(doc.id, str):
        raise DataError(f"document {index} has an id of type {type(doc.id).__name__}", where=f"input[{index}].id",
                        fix="ids are strings (or whole numbers in a dict)")
    check_text(doc.text, f"input[{index}].text")
    if doc.id is not None:
        check_text(doc.id, f"input[{index}].id")  # written with the links: Unicode text
    meta = checked_meta(doc.meta, f"input[{index}].meta")
    if meta is not doc.meta:  # numpy scalars became Python values: a copy (the caller's Document is not changed)
        doc = doc.model_copy(update={"meta": meta})
    return doc


# The locks below (and the models' and caches' locks) start free in a child forked while another thread held them
# (glinker.locks): the child's first batch does not wait for a thread it does not have.
_RUN_LOCKS = fork_safe_lock()


def _run_lock(context: PipelineContext) -> Any:
    """The lock that lets one batch at a time run on the pipelines sharing ``context`` (they share its caches)."""
    lock = getattr(context, "_run_lock", None)
    if lock is None:
        with _RUN_LOCKS:
            lock = getattr(context, "_run_lock", None)
            if lock is None:
                lock = context._run_lock = fork_safe_lock()  # type: ignore[attr-defined]
    return lock


def _pipeline_path(path: Any) -> Any:
    """The path ``load_pipeline`` was given, ``~`` expanded; a ConfigError for what names no file (None, bytes, a
    number, an empty string, a NUL character), which pathlib or the YAML reader said as a bare TypeError."""
    import os

    fix = "give the pipeline file's path, e.g. glinker.load_pipeline('pipelines/demo.yaml')"
    if not isinstance(path, (str, PathLike)):
        raise ConfigError(f"takes the pipeline file's path (a str or path), not {type(path).__name__}",
                          where="load_pipeline(path)", fix=fix)
    name = os.fspath(path)
    if not isinstance(name, str) or not name or "\x00" in name:
        said = "is empty" if name == "" else "holds a NUL character" if isinstance(name, str) else "is bytes"
        raise ConfigError(f"the pipeline path {said}", where="load_pipeline(path)", fix=fix)
    return os.path.expanduser(name) if name.startswith("~") else path


class Pipeline:
    """A runnable pipeline. Construction is light; models and KBs load on first use (or ``warm_up()``)."""

    def __init__(self, spec: PipelineSpec, *, context: PipelineContext | None = None) -> None:
        self.spec = spec
        h = spec.header
        self.context = context or PipelineContext(model=h.model, kb=h.kb, base_dir=spec.base_dir,
                                                  device=h.settings.device, settings=h.settings.model_dump())
        if not getattr(self.context, "kb_places", None):
            self.context.kb_places = dict(spec.kb_places)
        missing = resource_problems(spec, self.context.model, self.context.kb)
        if missing:  # a stage with neither its own KB/model nor the pipeline's: say so now, not at the first batch
            raise PipelineError(missing, source=spec.source)
        self.order = topological_order(spec.stages)
        self.stages: dict[str, Stage] = {n: spec.stages[n].cls(n, spec.stages[n].params, self.context)
                                         for n in self.order}
        self.stats = RunStats(stages={n: StageStats() for n in self.order})
        # default document ids: the documents without one, numbered in the order this object reads them, across
        # calls; an own id that such a number could become later (_ids_ahead) is kept until the numbering passes it
        self._next_n = 0
        self._ahead: set[int] = set()  # own ids read that are a number not generated yet
        self._ahead_k: dict[int, set[str]] = {}  # own ids read of the form N#k, N not generated yet (rare)
        self._ahead_capped = False
        self._ids_lock = fork_safe_lock()
        # one batch at a time, whichever threads call: the stages (plugins too) keep per-batch state, and the window
        # cache holds the running batch's word vectors (docs/linking.md, "Using glinker in a service")
        self._lock = _run_lock(self.context)
        self._gc_threshold: tuple[int, ...] | None = None  # set while warm_up(freeze_gc=True) raised gen 0's
        self._origins: dict[str, dict[str, Any]] | None = None  # plugin stages' class and version (identity())

    # construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path, *, model: str | None = None, kb: str | None = None,
                  batch_size: int | None = None, device: str | None = None, dtype: str | None = None,
                  check_resources: bool = True) -> "Pipeline":
        """Load, validate and build a pipeline from a YAML file; keyword arguments override its settings
        (``batch_size``: a whole number from 1 to 100,000, else a ConfigError; ``dtype``: float32, bfloat16, float16
        or auto, the ``settings.dtype`` of the file). With ``check_resources`` (the
        default) the resources it names are checked as ``glinker pipeline validate`` checks them, before anything
        loads: a model name that is no shipped model, folder or hub id, and a KB folder, label file or label bank
        that does not exist are a PipelineError listing each with its line and fix (which the first batch would
        otherwise meet); ``check_resources=False`` leaves them to the first batch (a KB built after loading)."""
        if batch_size is not None:
            batch_size = checked_batch_size(batch_size)
        path = _pipeline_path(path)
        if device is not None:  # a typo is said now, as dtype and batch_size are (the first batch blamed the file's
            from glinker.model.biencoder import device_named  # line); one this machine lacks at first use, as before

            device_named(device, where="device")
        spec = load_spec(path)
        h = spec.header
        # paths given here (a command line's --model/--kb) are the caller's: relative to the current directory, not
        # to the pipeline file as the YAML's own paths are
        for arg, value in (("model", model), ("kb", kb)):
            if value is not None and not isinstance(value, (str, PathLike)):
                raise ConfigError(f"{arg}= takes a {'KB folder' if arg == 'kb' else 'model name or folder'} (a str or "
                                  f"path), not a {type(value).__name__}", where=f"load_pipeline({arg}=...)",
                                  fix="a KB read from its source is a `kb:` block of the pipeline file "
                                      "(docs/yaml-reference.md)" if arg == "kb" else
                                      "e.g. model='glinker-bi-minilm' or a checkpoint folder")
        if model is not None:
            h.model = str(Path(model).expanduser().absolute()) if Path(model).expanduser().exists() else model
            spec.header_lines.pop("model", None)  # its problems are the option's, not the file's line
        if kb is not None:
            h.kb = str(Path(kb).expanduser().absolute())
            spec.header_lines.pop("kb", None)
            own = [n for n, st in spec.stages.items() if getattr(st.params, "kb", None) is not None]
            if own:
                log.warning("--kb %s replaces the pipeline's kb; stage(s) %s name their own and keep it", kb,
                            ", ".join(own))
        if batch_size is not None:
            h.settings.batch_size = batch_size
        if device is not None:
            h.settings.device = device
        if dtype is not None:
            h.settings.dtype = checked_dtype(dtype)
        if check_resources:
            problems = [p for p in resource_problems(spec, check_paths=True, unused=False, sources=False)
                        if p.code != "E254"]  # a hub id that looks like a local path: said by `pipeline validate`
            if problems:
                raise PipelineError(problems, source=spec.source)
        return cls(spec)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def output_name(self) -> str:
        return self.spec.output

    def describe(self, fmt: str = "text") -> str:
        """The DAG as text or Graphviz dot."""
        if fmt == "dot":
            return render_dot(self.spec.stages, self.spec.output, self.name)
        return render_text(self.spec.stages, self.spec.output)

    def identity(self) -> dict[str, Any]:
        """What :meth:`fingerprint` hashes (without resources), as data: the stages (type, inputs, parameters),
        the output and the settings that decide results; cluster workers name what differs from it."""
        h = self.spec.header
        # dtype only when set: the identity of a pipeline without it is what it was before the setting existed
        settings = {k: v for k, v in h.settings.model_dump(mode="json").items()
                    if k not in ("device", "batch_size", "log_every") and not (k == "dtype" and v is None)}
        stages = {n: {"type": st.type, "inputs": st.inputs,
                      "params": st.params.model_dump(mode="json") if st.params is not None else None}
                  for n, st in self.spec.stages.items()}
        for n, origin in self._plugin_origins().items():  # built-in stages: as before (their outputs still resume)
            stages[n].update(origin)
        return {"stages": stages, "output": self.spec.output, "settings": settings}

    def _plugin_origins(self) -> dict[str, dict[str, Any]]:
        """Each plugin (non built-in) stage's class (``module:Class``) and the distribution and version that provide
        it (:func:`glinker.pipeline.registry.stage_origin`): a plugin upgrade changes what the stage outputs, so it
        changes the pipeline's identity (a resumed run, or a cluster worker with another version, is refused)."""
        if self._origins is None:
            self._origins = {n: o for n, st in self.spec.stages.items()
                             if st.cls is not None and (o := stage_origin(st.cls)) is not None}
        return self._origins

    def fingerprint(self, resources: bool = False) -> str:
        """A short hash of what decides this pipeline's output: its stages (types, inputs, parameters; a plugin
        stage's class and its distribution's version too), output and settings other than where and how fast it runs (device, batch_size, log_every); with ``resources``
        (after warm-up) also the loaded models' fingerprints and the KBs' identities (:func:`kb_ident`). Cluster
        workers compare it so that one job is never linked by two pipelines."""
        import hashlib
        import json

        ident: dict[str, Any] = self.identity()
        if resources:
            found = []
            for value in list(self.context._resources.values()):
                fp = getattr(value, "fingerprint", None)
                man = getattr(value, "manifest", None)
                if isinstance(fp, str):
                    found.append(f"model:{fp}")
                elif man is not None and hasattr(man, "counts"):
                    found.append("kb:" + json.dumps(kb_ident(man), sort_keys=True, default=str))
            ident["resources"] = sorted(found)
        blob = json.dumps(ident, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def resource_ident(self, kb_as_written: bool = False) -> dict[str, Any]:
        """What the pipeline's KBs and models are, read without loading them: each KB directory's manifest (entity
        counts, source, vector model, index, entity-text template, build and update times: :func:`kb_ident`), a KB
        read from its source by its definition, a model by its shipped manifest, its local checkpoint's config and
        weight sizes, or its hub id. A cluster job's coordinator and
        workers compare it, so that a worker given another KB or model (or a coordinator given a KB that does not
        exist) is found before any document is linked. Raises the KB's error when a KB directory is missing."""
        import hashlib
        import json

        from glinker.kb.kb import current_generation
        from glinker.kb.manifest import Manifest
        from glinker.model import shipped

        ctx = self.context
        kbs: dict[str, Any] = {}     # stage -> what its KB is (the same KB copied to another path is the same)
        models: dict[str, Any] = {}  # stage -> what its model is
        where: dict[str, str] = {}   # "kb:<stage>" / "model:<stage>" -> the path or name given here (for messages)
        for name_, st in self.spec.stages.items():
            p = st.params
            fields = type(p).model_fields if p is not None else {}
            ref = (getattr(p, "kb", None) or ctx.kb) if "kb" in fields else None
            if isinstance(ref, str):
                found = Path(ctx.resolve_path(ref) or ref)
                if not found.is_dir():  # said as a local run says it: where it was looked for, and how to build it
                    from glinker.errors import KBError
                    from glinker.pipeline.spec import missing_kb

                    msg, fix = missing_kb(ref, Path(self.spec.base_dir), found)
                    raise KBError(f"stage {name_!r}: {msg}", where=str(self.spec.source), fix=fix)
                gen = current_generation(found)
                m = Manifest.load(gen / "manifest.json")
                kbs[name_] = kb_ident(m)
                where[f"kb:{name_}"] = ref
            elif ref is not None:  # as read: ${VARS} expanded, a relative file made absolute, no password
                from glinker.stages.resources import shown_kb

                shown = (ref if isinstance(ref, dict) else ref.model_dump(mode="json")) if kb_as_written else \
                    shown_kb(ref, self.spec.base_dir)  # as written: how run records held it before 2026-12-04
                kbs[name_] = json.loads(json.dumps(shown, default=str))
                where[f"kb:{name_}"] = "read from its source"
            model = (getattr(p, "model", None) or ctx.model) if "model" in fields else None
            if model and str(model).lower() != "none":
                path = Path(ctx.resolve_path(model) or model)
                if shipped.is_shipped(model) and not path.is_dir():
                    models[name_] = hashlib.sha256((shipped.SHIPPED_ROOT / model / shipped.MANIFEST).read_bytes()
                                                   ).hexdigest()[:16]
                elif path.is_dir():
                    cfg = path / "gliner_config.json"
                    weights = sorted((f.name, f.stat().st_size) for f in path.iterdir()
                                     if f.suffix in (".safetensors", ".bin", ".pt"))
                    models[name_] = hashlib.sha256((cfg.read_bytes() if cfg.is_file() else b"")
                                                   + json.dumps(weights).encode()).hexdigest()[:16]
                else:
                    models[name_] = f"hub:{model}"
                where[f"model:{name_}"] = str(model)
        return {"kb": kbs, "model": models, "where": where}

    def warm_up(self, freeze_gc: bool = False) -> None:
        """Load every stage's heavy state now (otherwise it happens before the first batch).

        ``freeze_gc`` then moves every object alive (torch, transformers, the loaded KBs: ~440k objects) out of
        the cyclic garbage collector's sight (``gc.freeze()``), so the full collections that the stages'
        allocations trigger stop re-scanning them: measured at 61k entities, the non-encoder time fell from
        20% to 15% of the total. It also raises the youngest generation's threshold from 700 to
        GC_GEN0_THRESHOLD allocations: a batch allocates ~150k candidate records that reference counting frees,
        and the collections they triggered cost 0.57 s of 2.7 s of non-encoder time on 100 AIDA documents
        (0.21 s after). It is process-wide, which is why only the CLI commands (which own their process) ask for
        it; a long-running service can do the same once after warm-up."""
        with self._lock, torch_guarded():  # warming up runs torch too (the labels are encoded)
            self._warm_stages()
        if freeze_gc:
            import gc

            gc.collect()
            gc.freeze()
            th = gc.get_threshold()
            if th[0] and th[0] < GC_GEN0_THRESHOLD:
                self._gc_threshold = th
                gc.set_threshold(GC_GEN0_THRESHOLD, *th[1:])
            log.debug("gc.freeze(): %d objects moved to the permanent generation", gc.get_freeze_count())

    @contextmanager
    def gc_frozen(self) -> Iterator[Pipeline]:
        """``warm_up(freeze_gc=True)`` for the duration of a ``with`` block, then ``gc.unfreeze()`` and the
        previous thresholds (also when the block fails), so a caller that goes on in the same process collects
        as before."""
        self.warm_up(freeze_gc=True)
        try:
            yield self
        finally:
            import gc

            gc.unfreeze()
            if self._gc_threshold is not None:
                gc.set_threshold(*self._gc_threshold)
                self._gc_threshold = None

    def _warm_stages(self) -> None:
        for n in self.order:
            stage = self.stages[n]
            if not stage._warm:
                t0 = time.perf_counter()
                try:
                    stage.ensure_warm()
                except GlinkerError as e:
                    raise self._located(e, n) from None
                except Warning:  # one the program made an error (StaleKBWarning): its own to catch, as it is
                    raise
                except Exception as e:
                    log.debug("stage %r failed to warm up", n, exc_info=True)
                    from glinker.locks import LOAD_INTERRUPTED, RESTART_FIX

                    fix = RESTART_FIX if LOAD_INTERRUPTED.is_set() else "check the stage's model/kb settings"
                    if not is_builtin_class(type(stage)):
                        fix = (f"check the stage's settings; the error comes from the plugin's code ("
                               f"{plugin_note(type(stage))}): run with -vv for its traceback and report it to that "
                               "package's authors")
                    raise StageError(f"warm-up failed: {type(e).__name__}: {e}", where=self._where(n),
                                     fix=fix) from e
                self.stats.stages[n].warm_up_seconds += time.perf_counter() - t0

    def _where(self, name: str) -> str:
        st = self.spec.stages[name]
        return f"stage {name!r} ({self.spec.source}:{st.line})" if st.line else f"stage {name!r}"

    def _located(self, e: GlinkerError, name: str) -> GlinkerError:
        """``e`` (raised inside stage ``name``) with the stage and its line added to its place, once."""
        # an error a kb block's source gave is placed at that block ("kb (file:line, options.table)")
        where, own = e.where or "", f"stage {name!r}"
        if not isinstance(e, PipelineError) and not where.startswith(("stage ", "kb ")):
            e.where = f"{self._where(name)}: {where}" if where else self._where(name)
            e.args = (e.render(),)
        elif (where.startswith(own) and not where.startswith((self._where(name), own + " kb"))):
            # the stage named itself: its line added (a place in its kb block has the block's line already)
            e.where = self._where(name) + where[len(own):]
            e.args = (e.render(),)
        return e

    def _check_output(self, name: str, stage: Stage, docs: list[Document], out: Any) -> None:
        """A stage returns one entry per document, of its declared kind: checked here so that a wrong custom stage
        is named, rather than the stage that reads its output (or nothing, when results went missing). A plugin's
        (non built-in) output is checked item by item: mentions (offsets within the text, ``text`` equal to
        ``doc.text[start:end]``), MentionCandidates, Candidates and their numeric scores, links."""
        cls = type(stage)
        plugin = not is_builtin_class(cls)

        def bad(msg: str, fix: str | None = None) -> StageError:
            shape = (f"run() returns a list with one entry per input document, in order; a {stage.produces!r} stage "
                     "gives " + KIND_SHAPES.get(stage.produces, "entries of its declared kind"))
            if plugin:
                return StageError(f"{cls.__name__}.run returned {msg}: this is the output of the plugin's code, "
                                  f"{plugin_note(cls)}", where=self._where(name),
                                  fix=f"{fix or shape} (fix module {cls.__module__}, or report it to its authors; "
                                      "docs/stages.md describes the records)")
            return StageError(f"{cls.__name__}.run returned {msg}", where=self._where(name), fix=fix or shape)

        if not isinstance(out, list):
            raise bad(f"a {type(out).__name__}, not a list")
        if len(out) != len(docs):
            raise bad(f"{len(out)} entries for a batch of {len(docs)} documents")
        if not plugin:
            return  # built-in stages are tested; a plugin's output is checked item by item
        if stage.produces == MENTIONS:
            for d, (doc, row) in enumerate(zip(docs, out)):
                if not isinstance(row, list) or not all(isinstance(m, Mention) for m in row):
                    raise bad(f"for document {d} {_kind_of(row)}, not a list of glinker.types.Mention")
                for m in row:
                    self._check_mention(m, doc, d, "a mention", bad)
        elif stage.produces == CANDIDATES:
            for d, (doc, row) in enumerate(zip(docs, out)):
                if not isinstance(row, list) or not all(isinstance(mc, MentionCandidates) for mc in row):
                    raise bad(f"for document {d} {_kind_of(row)}, not a list of MentionCandidates")
                for mc in row:
                    if not isinstance(mc.mention, Mention):
                        raise bad(f"for document {d} a MentionCandidates whose mention is a "
                                  f"{type(mc.mention).__name__}, not a glinker.types.Mention",
                                  "MentionCandidates(mention, candidates): the mention is a glinker.types.Mention")
                    self._check_mention(mc.mention, doc, d, "a MentionCandidates' mention", bad)
                    self._check_candidates(mc.candidates, f"mention {mc.mention.text!r} "
                                           f"({mc.mention.start}-{mc.mention.end}) of document {d}", bad)
        elif stage.produces == LINKS:
            for d, (doc, ld) in enumerate(zip(docs, out)):
                if not isinstance(ld, LinkedDocument):
                    raise bad(f"for document {d} {_kind_of(ld)}, not a glinker.types.LinkedDocument")
                if not isinstance(ld.links, list) or not all(isinstance(link, Link) for link in ld.links):
                    raise bad(f"for document {d} a LinkedDocument whose links are not a list of glinker.types.Link",
                              "LinkedDocument(id=doc.id, text=doc.text, links=[Link(mention=..., entity_id=...)])")
                for link in ld.links:
                    if not isinstance(link.mention, Mention):
                        raise bad(f"for document {d} a link whose mention is a {type(link.mention).__name__}, not a "
                                  "glinker.types.Mention")
                    self._check_mention(link.mention, doc, d, "a link's mention", bad)
                    self._check_candidates(link.candidates, f"the link of {link.mention.text!r} "
                                           f"({link.mention.start}-{link.mention.end}) in document {d}", bad)

    @staticmethod
    def _check_mention(m: Mention, doc: Document, d: int, what: str, bad: Any) -> None:
        s, e = m.start, m.end
        if not all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in (s, e)):
            # a model_construct'ed or mutated record skips pydantic's checks
            raise bad(f"for document {d} {what} whose start/end are {s!r}/{e!r}, not integers")
        if s < 0 or e > len(doc.text) or s >= e:
            raise bad(f"for document {d} {what} at {s}-{e}, outside its {len(doc.text)}-character text or empty",
                      "mentions are character offsets (end exclusive) with 0 <= start < end <= len(doc.text)")
        if m.text != doc.text[s:e]:
            raise bad(f"for document {d} {what} at {s}-{e} whose text is {m.text!r}, but the document's text there "
                      f"is {doc.text[s:e]!r}", "build mentions with text=doc.text[start:end] (offsets into the "
                      "original string: a mention's text is always the text it spans)")
        if m.score is not None and not _is_number(m.score):
            raise bad(f"for document {d} {what} at {s}-{e} whose score is {m.score!r} (a {type(m.score).__name__}), "
                      "not a number", "a mention's score is a float, or None")

    @staticmethod
    def _check_candidates(cands: Any, whose: str, bad: Any) -> None:
        fix = ("candidates are glinker.types.Candidate records (entity_id, label, description, source, "
               "scores: {name: float}, score: float), ordered best first")
        if not isinstance(cands, list):
            raise bad(f"for {whose} candidates that are a {type(cands).__name__}, not a list", fix)
        for c in cands:
            if not isinstance(c, Candidate):
                raise bad(f"for {whose} a candidate that is a {type(c).__name__}, not a glinker.types.Candidate", fix)
            if not isinstance(c.entity_id, str) or not c.entity_id:
                raise bad(f"for {whose} a candidate whose entity_id is {c.entity_id!r}, not an entity id", fix)
            if not _is_number(c.score):
                raise bad(f"for {whose} candidate {c.entity_id!r} with score {c.score!r} (a "
                          f"{type(c.score).__name__}), not a number", fix)
            scores = c.scores
            if not isinstance(scores, dict) or not all(isinstance(k, str) and _is_number(v)
                                                       for k, v in scores.items()):
                raise bad(f"for {whose} candidate {c.entity_id!r} whose scores are {scores!r}, not a mapping of "
                          "names to numbers", fix)

    # running ------------------------------------------------------------------------------------------------
    def run_batch(self, documents: Sequence[Document]) -> BatchResult:
        """Run one batch through every stage. Thread-safe: batches asked for by several threads at once run one
        after the other (each on its caller's thread), and each gives what it gives alone. Documents may be
        strings, dicts or Documents, checked as :meth:`link` checks them; one without an id gets its position in
        the batch."""
        from glinker.stages.resources import clear_window_cache

        documents = list(_documents_arg(documents))
        if not all(isinstance(d, Document) and d.id is not None for d in documents):
            documents = [as_document(d, i) for i, d in enumerate(documents)]

        with self._lock, torch_guarded():
            clear_window_cache(self.context)  # a batch reads only the word vectors it encoded itself
            try:
                return self._run_batch(documents)
            finally:
                clear_window_cache(self.context)  # and an idle pipeline holds none

    def _run_batch(self, documents: Sequence[Document]) -> BatchResult:
        self._warm_stages()
        t_batch = time.perf_counter()
        docs = list(documents)
        outputs: dict[str, Any] = {DOCUMENTS: docs}
        for n in self.order:
            st = self.spec.stages[n]
            stage = self.stages[n]
            ins = [outputs[i] for i in st.inputs]
            t0 = time.perf_counter()
            try:
                out = stage.run(docs, ins)
            except GlinkerError as e:
                raise self._located(e, n) from None
            except Exception as e:
                # a bug, not bad input: the traceback goes to the log (glinker -vv), the message to the user
                log.debug("stage %r failed", n, exc_info=True)
                if is_builtin_class(type(stage)):
                    fix = ("an unexpected error in the stage (a bug): run with -vv for its traceback and report it "
                           "with the input; the input batch is unchanged")
                else:  # a plugin's code failed: its authors are the ones to tell, not glinker's
                    fix = (f"an unexpected error in the plugin stage's code ({plugin_note(type(stage))}): run with "
                           "-vv for its traceback and report it, with the input, to that package's authors; the "
                           "input batch is unchanged")
                raise StageError(f"{type(e).__name__}: {e}", where=self._where(n), fix=fix) from e
            self._check_output(n, stage, docs, out)
            s = self.stats.stages[n]
            s.seconds += time.perf_counter() - t0
            s.calls += 1
            s.items += stage.count(out)
            outputs[n] = out
        self.stats.batches += 1
        self.stats.documents += len(docs)
        self.stats.seconds += time.perf_counter() - t_batch
        return BatchResult(docs, outputs, self.spec.output, self.stages[self.spec.output].produces)

    def _documents(self, items: Iterable[Any]) -> Iterator[Document]:
        """``items`` (str, dict or Document) as Documents with their ids: each is checked (:func:`checked_document`)
        and one without an id gets the pipeline's next number (``"0"``, ``"1"``, ... across calls), or ``N#2``
        (``N#3``, ...) when a document of ``items``, or of an earlier call, has ``N`` (``N#2``, ...) as its own id;
        a Document given without an id is copied, not changed. A list or tuple is checked whole before the first
        document is yielded: a bad item fails before anything is linked. Any other iterable is read as it is
        consumed (a stream): a generated id then avoids the own ids read before it only. A generated id is never
        an id the pipeline has read or generated before (up to ``IDS_AHEAD_CAP`` own ids kept for later calls)."""
        whole = isinstance(items, (list, tuple))
        checked: Iterable[Document] = [checked_document(x, i) for i, x in enumerate(items)] if whole else \
            (checked_document(x, i) for i, x in enumerate(items))
        taken: set[str] = {d.id for d in checked if d.id is not None} if whole else set()
        for own in taken:
            self._read_id(own)
        for doc in checked:
            if doc.id is None:
                doc = doc.model_copy(update={"id": self._new_id(taken)})
            elif not whole:
                taken.add(doc.id)
                self._read_id(doc.id)
            yield doc

    IDS_AHEAD_CAP = 100_000
    """Own ids (of the form a generated id has, ``N`` or ``N#k``, with ``N`` not generated yet) kept for the calls
    after the one that read them, at most (~6 MB); past it, a generated id may be one of a later one's."""

    def _read_id(self, own: str) -> None:
        """Keep ``own`` (a document's own id) when a later document without an id could be numbered as it."""
        number, sep, k = own.partition("#")
        if not (number.isascii() and number.isdigit() and (number == "0" or number[0] != "0")) \
                or sep and not (k.isascii() and k.isdigit()):
            return  # not a form a generated id has
        n = int(number)
        with self._ids_lock:
            if n < self._next_n:
                return  # a number already given out: never generated again
            if len(self._ahead) + len(self._ahead_k) < self.IDS_AHEAD_CAP:
                if sep:
                    self._ahead_k.setdefault(n, set()).add(own)
                else:
                    self._ahead.add(n)
            elif not self._ahead_capped:
                self._ahead_capped = True
                log.info("%s: over %d own ids that a document without an id could be numbered as; from here a "
                         "generated id may repeat one of them", self.name, self.IDS_AHEAD_CAP)

    def _new_id(self, taken: set[str]) -> str:
        """The next generated id: the next number, or ``N#k`` when it is an own id of this call (``taken``) or of
        an earlier one; added to ``taken``."""
        with self._ids_lock:
            n = self._next_n
            self._next_n += 1
            earlier = self._ahead_k.pop(n, set())
            if n in self._ahead:
                self._ahead.discard(n)
                earlier.add(str(n))
        if not earlier:
            return free_id(n, taken)
        key = free_id(n, taken | earlier)
        taken.add(key)
        return key

    def run(self, documents: Iterable[Any], *, batch_size: int | None = None) -> Iterator[BatchResult]:
        """Stream documents (str, dict or Document) through the pipeline, one batch at a time; one str, dict or
        Document on its own is one document (not a sequence of characters or keys). A list or tuple is checked whole
        before its first batch runs, and its documents without an id never get another's own id
        (:meth:`_documents`). ``batch_size`` (default: the pipeline's ``settings.batch_size``) is a whole number
        from 1 to 100,000, checked here (a ConfigError), before any batch."""
        documents = _documents_arg(documents)
        bs = self.spec.header.settings.batch_size if batch_size is None else checked_batch_size(batch_size)
        return self._batches(documents, bs)

    def _batches(self, documents: Iterable[Any], bs: int) -> Iterator[BatchResult]:
        log_every = self.spec.header.settings.log_every
        batch: list[Document] = []
        seen = 0
        next_log = log_every
        for doc in self._documents(documents):
            batch.append(doc)
            if len(batch) >= bs:
                seen += len(batch)
                yield self.run_batch(batch)
                batch = []
                if log_every and seen >= next_log:
                    log.info("%s: %d documents", self.name, seen)
                    next_log += log_every
        if batch:
            seen += len(batch)
            yield self.run_batch(batch)
        # a long run's last count at INFO; a call of a few documents (a service's request) at DEBUG, not a line each
        log.log(logging.INFO if log_every and seen >= log_every else logging.DEBUG, "%s: %d documents", self.name, seen)

    def __call__(self, documents: Iterable[Any], *, batch_size: int | None = None) -> list[Any]:
        """Run all documents and return the output stage's result, one entry per document. Every document is checked
        before the first is linked (a bad one is a DataError naming its position, ``input[9]``, and nothing is
        linked); thread-safe (:meth:`run_batch`)."""
        documents = _documents_arg(documents)
        if not isinstance(documents, (list, tuple)):
            documents = list(documents)  # the results are a list anyway: the input is checked whole first
        out: list[Any] = []
        for res in self.run(documents, batch_size=batch_size):
            value = res.output
            out.extend(value if isinstance(value, list) else [value])
        return out

    def link(self, texts: Iterable[Any], *, batch_size: int | None = None) -> list[Any]:
        """Link texts: the output stage's result per document, in order (a ``LinkedDocument`` for a pipeline that
        ends in ``select``/``write_links``; a list of ``Mention`` or of ``MentionCandidates`` for one that stops
        before). Texts are strings, ``glinker.Document``s or dicts with ``text`` (and ``id``, ``meta``; other keys
        go into ``meta``, as ``glinker link`` reads a JSONL record). Every document is checked before any is linked:
        its ``id``, ``text`` and ``meta`` (numpy scalars become Python values; what a linked record cannot hold is a
        DataError naming ``input[i]`` and the key).

        Documents without an id are numbered in the order this pipeline object reads them, across calls (0, 1,
        ...: a second call goes on where the first stopped); a number that is a document's own id, in this call or
        an earlier one, becomes ``N#2`` (``N#3``, ...). So a generated id never repeats an id the pipeline read or
        generated before, and what a ``write_links`` stage writes over several calls holds each generated id once;
        a document's own id is kept as given, even where it is one generated in an earlier call. Several threads may
        call it at once: their batches run one at a time, and each call returns what it returns alone
        (docs/linking.md, "Using glinker in a service")."""
        return self(texts, batch_size=batch_size)

    def __reduce__(self) -> Any:
        """A pipeline is not pickled (it holds open KBs, models and locks): another process loads it from its file."""
        raise TypeError(f"a Pipeline cannot be pickled (it holds open KBs, models and locks): in another process, "
                        f"load it from its file instead, glinker.load_pipeline({str(self.spec.source)!r}); a "
                        "fork-started process may use this one as it is (docs/linking.md, \"Using glinker in a "
                        "service\")")

    def close(self) -> None:
        """Release what the stages opened: each warmed-up stage's :meth:`Stage.close` (once, in reverse run order;
        an error in one is logged and the others are still closed), then the KB databases and what was read from
        them (loaded models stay cached; another pipeline may share them). The stages warm up again if the pipeline
        is used after this. Call it on the thread that ran the batches (a stage may hold thread-bound connections);
        a batch running on another thread finishes first."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        for n in reversed(self.order):
            stage = self.stages[n]
            if not getattr(stage, "_opened", False):
                continue
            stage._opened = False
            stage._warm = False
            try:
                stage.close()
            except Exception as e:  # one stage's failed close does not keep the others open
                who = "" if is_builtin_class(type(stage)) else f" (plugin {plugin_note(type(stage))})"
                log.error("%s: close() failed%s: %s: %s", self._where(n), who, type(e).__name__, e,
                          exc_info=log.isEnabledFor(logging.DEBUG))
        with self.context._lock:
            for key, value in list(self.context._resources.items()):
                if isinstance(key, tuple) and key[0] == "model":
                    continue
                closer = getattr(value, "close", None)
                if callable(closer) and getattr(value, "manifest", None) is not None:  # a KB
                    closer()
                del self.context._resources[key]
        for stage in self.stages.values():
            stage._warm = False

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
