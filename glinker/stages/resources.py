"""Heavy resources shared by the linking stages through ``PipelineContext.resource``: the bi-encoder, the KB,
batched span vectors and entity vectors. Everything heavy is imported inside functions.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import logging
import os
import re
import sys
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from glinker.errors import ConfigError, DataError, GlinkerError, KBError, SourceUnavailable
from glinker.io import cache_folder, cache_root
from glinker.locks import fork_safe_lock, model_loading
from glinker.pipeline.stage import PipelineContext

log = logging.getLogger(__name__)

ENCODER_SECONDS = {"seconds": 0.0}
"""Wall time spent in text-encoder forward passes by the linking stages (read by benchmarks/el_speed.py)."""

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` (so pipeline files can name a database without a password)."""
    def sub(m: re.Match[str]) -> str:
        v = os.environ.get(m.group(1))
        if v is None:
            if m.group(2) is None:
                from glinker.io import redact

                raise ConfigError(f"environment variable {m.group(1)} is not set", where=redact(value),
                                  fix=f"export {m.group(1)}=..., or write ${{{m.group(1)}:-default}}")
            return m.group(2)
        return v
    return _ENV.sub(sub, value)


class KBSource(BaseModel):
    """A KB read straight from a source (e.g. a SQL table) at warm-up, built into a cache folder."""

    model_config = ConfigDict(extra="forbid")

    adapter: str = Field(description="KB adapter: sql, jsonl, csv, wikidata or an installed one.")
    source: str = Field(description="SQLAlchemy URL or file path; ${VAR:-default} is expanded.")
    options: dict[str, Any] = Field(default_factory=dict, description="Adapter options, e.g. table, columns.")
    cache: str | None = Field(default=None, description="Folder for the built KB (default: $GLINKER_CACHE/kb/<hash>); "
                              "relative to the pipeline file; ${VAR:-default} is expanded. It holds one source's "
                              "KB: opened with another source (adapter, URL or path, options), it is rebuilt from "
                              "it, with a warning.")
    refresh: Literal["always", "if_missing"] = Field(
        default="always", description="Re-read the source at every warm-up (always) or only when no KB is cached.")
    template: str = Field(default="{label}: {description}", description="Entity text template for the encoder.")


KBRef = str | KBSource


def check_folds(context: PipelineContext, kb: Any, stage: str) -> None:
    """Warn once per KB when a stage would fold accents but the KB (built before accent folding, opened read-only)
    has no folded keys: "Zurich" then finds nothing where the KB says "Zürich"."""
    if kb.store.has_folds:
        return

    def warn() -> bool:
        log.warning("stage %r: fold_accents is on but KB %s was built before accent folding: names written without "
                    "their accents are not matched; any update adds the folded keys (`glinker kb link-stats`, "
                    "`glinker kb add`), or rebuild it", stage, kb.root)
        return True

    context.resource(("no-folds-warned", id(kb)), warn)


def shown_kb(ref: Any, base_dir: Path | None = None) -> Any:
    """A pipeline's KB as it will be read, for run records and messages: a KB read from its source with its
    ${VARS} expanded (another table is another KB), a relative file path made absolute (another folder's
    ``sqlite:///companies.db`` is another KB; found in ``base_dir``, the pipeline file's folder, when it is there),
    the password of its URL and the values of its secret options (``api_key``, ``password``..., see
    :func:`glinker.kb.adapters.secret_options`) hidden as ``***``."""
    if ref is None or isinstance(ref, str):
        return ref
    from glinker.io import redact

    d = ref.model_dump() if isinstance(ref, KBSource) else dict(ref)
    # a value naming an unset variable is shown as written: the run's warm-up says it, at the kb block's line
    d = {k: _expand_or_written(v) for k, v in d.items()}
    if isinstance(d.get("options"), dict):
        from glinker.kb.adapters import mask_secrets

        d["options"] = mask_secrets(_adapter_class(d.get("adapter")), d["options"])
    if isinstance(d.get("source"), str):
        try:
            from glinker.kb.adapters import canonical_source

            d["source"] = canonical_source(str(d.get("adapter")), d["source"], base_dir)
        except GlinkerError:  # an adapter not installed: said when the KB is read
            pass
        d["source"] = redact(d["source"])
    return d


def _adapter_class(name: Any) -> Any:
    """The adapter class named ``name``, or None when it cannot be loaded (said when the KB is read)."""
    try:
        from glinker.kb.adapters import get_adapter_class

        return get_adapter_class(str(name))
    except GlinkerError:
        return None


def resolve_model_name(context: PipelineContext, model: str | None) -> str:
    name = model or context.model
    if not name:
        raise ConfigError("no model given", where="model",
                          fix="set `model:` at the top of the pipeline file or on the stage")
    return name


_LOADED_MODELS: weakref.WeakValueDictionary[tuple, Any] = weakref.WeakValueDictionary()
"""The bi-encoders loaded in this process, by what was loaded (see :func:`load_model`); an entry goes when the last
pipeline holding its model is gone."""
_LOADED_MODELS_LOCK = fork_safe_lock()  # this and the caches' locks start free in a forked child (glinker.locks)


def _checkpoint_stamp(path: str) -> tuple:
    """The files of a checkpoint folder with their sizes and modification times: a model saved again into the same
    folder (a fine-tuning run) is another model, loaded anew rather than shared. () for a hub id."""
    p = Path(path)
    if not p.is_dir():
        return ()
    stamp = []
    for f in sorted(p.iterdir()):
        try:
            st = f.stat()
        except OSError:
            continue
        if f.is_file():
            stamp.append((f.name, st.st_size, st.st_mtime_ns))
    return tuple(stamp)


def load_model(context: PipelineContext, model: str | None) -> Any:
    """The bi-encoder named by the stage or the pipeline: shared by every stage naming it, and by every pipeline of
    the process that loads the same checkpoint (the same folder, unchanged since, or shipped model or hub id) on the
    same device with the same ``window_words`` and ``dtype``: two pipelines from one YAML file hold one copy of the weights.
    Nothing a pipeline does changes a loaded model (``Pipeline.close`` keeps it; the model is freed when the last
    pipeline using it is), and a model may be used from several threads at once (its tokenizer calls are
    serialized: ``BiEncoder._tokenizing``). Code that changes a pipeline's model (``.to()``, training, ``lowp``)
    changes it for every pipeline sharing it."""
    name = resolve_model_name(context, model)

    def factory() -> Any:
        with model_loading():  # one load at a time in the process (transformers' lazy imports: MODEL_LOAD_LOCK)
            return load()

    def load() -> Any:
        from glinker.model import BiEncoder
        from glinker.model import shipped

        path = context.resolve_path(name)
        local = Path(str(path)).expanduser().is_dir()
        if shipped.is_shipped(name) and not local:
            path = str(shipped.materialize(name))
        where = str(Path(str(path)).expanduser().absolute()) if Path(str(path)).expanduser().exists() else str(path)
        device = "cpu" if context.device is None else str(context.device)
        key = (where, device, window, dtype, _checkpoint_stamp(where))
        with _LOADED_MODELS_LOCK:  # two pipelines warming up at once load it once
            m = _LOADED_MODELS.get(key)
            if m is not None:
                log.info("model %s: sharing the copy already loaded in this process", name)
                return m
            m = BiEncoder.from_pretrained(path, device=context.device, window_words=window, dtype=dtype)
            _LOADED_MODELS[key] = m
            _MODEL_NAMES[m] = where if local else name  # a folder by its absolute path, as a KB records it
        log.info("loaded model %s (dim %d, windows of %d words, %s)", name, m.dim, m.window_words,
                 str(m.dtype).removeprefix("torch."))
        return m

    window = context.settings.get("window_words")
    dtype = context.settings.get("dtype")
    if dtype == "auto":  # by what it is here: auto and bfloat16 share one copy where auto picks bfloat16
        from glinker.model.biencoder import auto_dtype

        dtype = str(auto_dtype(context.device or "cpu")).removeprefix("torch.")
    return context.resource(("model", name, context.device, window, dtype), factory)


def open_kb(context: PipelineContext, kb: KBRef | None, model: str | None = None) -> Any:
    """The KB named by the stage or the pipeline: a KB directory, or a :class:`KBSource` built on first use."""
    ref: KBRef | None = kb if kb is not None else context.kb
    if ref is None:
        raise ConfigError("no knowledge base given", where="kb",
                          fix="set `kb:` at the top of the pipeline file or on the stage")
    if isinstance(ref, dict):
        ref = KBSource.model_validate(ref)
    if isinstance(ref, KBSource):
        key = ("kb-source", ref.model_dump_json())
        name = model or context.model
        # the model loads first: context.resource is not re-entrant
        encoder = load_model(context, model) if name and name.lower() != "none" else None
        src: KBSource = ref

        def build() -> Any:
            try:
                return _build_source_kb(context, src, name, encoder)
            except GlinkerError as e:  # said at the kb block (and its option), not at the first stage using it
                raise _at_kb_block(context, src, e) from None
            except Warning:  # one the program made an error (StaleKBWarning): its own to catch, as it is
                raise
            except Exception as e:  # a driver's or adapter's own error: named at the kb block too
                log.debug("reading the KB source failed", exc_info=True)
                raise _at_kb_block(context, src, KBError(
                    f"building the KB from its source failed: {type(e).__name__}: {e}", where=f"{src.adapter}.source",
                    fix="check the kb block's source and options (run with -vv for the traceback)")) from e

        return context.resource(key, build)

    def factory() -> Any:
        from glinker.kb import KB

        path = context.resolve_path(str(ref))
        if not Path(path).is_dir():
            from glinker.pipeline.spec import missing_kb

            msg, fix = missing_kb(str(ref), context.base_dir, Path(path))
            raise ConfigError(msg, where="kb", fix=fix)
        return KB.open(path)

    return context.resource(("kb", str(ref)), factory)


def _expand_or_written(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _expand_or_written(x) for k, x in v.items()}
    try:
        return _expand_all(v)
    except ConfigError:
        return v


def _expanded(v: Any, where: str) -> Any:
    """:func:`_expand_all` of a kb block's value, an unset variable said at that key (``sql.source``, ``cache``),
    which places it at the block's line (:func:`_at_kb_block`) and says where its value came from."""
    try:
        return _expand_all(v)
    except ConfigError as e:
        e.where = where
        e.args = (e.render(),)
        raise


def _expand_all(v: Any) -> Any:
    if isinstance(v, str):
        return expand_env(v)
    if isinstance(v, dict):
        return {k: _expand_all(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_expand_all(x) for x in v]
    return v


def kb_option_path(where: str | None, adapter: str) -> tuple[str, ...]:
    """The key of a kb block that an adapter's error names by its ``where``: ``sql.columns.label`` -> (options,
    columns, label), ``sql.source`` -> (source,), ``adapter`` -> (adapter,); () when it names none."""
    w = (where or "").split(" ", 1)[0]
    if w in ("adapter", "cache"):
        return (w,)
    if w.startswith(adapter + "."):
        rest = w[len(adapter) + 1:]
        return ("source",) if rest == "source" else ("options", *rest.split("."))
    return ()


def env_note(block: dict[str, Any], path: tuple[str, ...]) -> str:
    """Where the value at ``path`` of a kb block (as written: ``${VAR}`` unexpanded) came from when it, or the option
    holding it, names environment variables: `` (from the environment: ${VAR}: VAR='value')``; '' for a value
    written in the file. A URL's password and a secret option's value are hidden."""
    from glinker.io import redact

    secret = False
    if len(path) >= 2 and path[0] == "options":
        from glinker.kb.adapters import secret_options

        secret = str(path[1]) in secret_options(_adapter_class(block.get("adapter")), [str(path[1])])
    for n in range(len(path), 0, -1):
        raw: Any = block
        for k in path[:n]:
            raw = raw.get(k) if isinstance(raw, dict) else None
        if not isinstance(raw, str) or "${" not in raw:
            continue
        said = []
        for m in _ENV.finditer(raw):
            v = os.environ.get(m.group(1))
            if secret:
                shown = f"{'unset, so its default' if v is None else m.group(1) + '='} '***'"
            else:
                shown = ("unset, with no default" if m.group(2) is None else f"unset, so its default {m.group(2)!r}") \
                    if v is None else f"{m.group(1)}={redact(v) if path[0] == 'source' else v!r}"
            said.append(f"${{{m.group(1)}}}: {shown}")
        if said:
            return f" (from the environment: {'; '.join(said)})"
    return ""


_CLI_OPTION = re.compile(r"-o ([A-Za-z_]+)=('[^']*'|\"[^\"]*\"|[^\s,;)]+)")


def _as_yaml_value(v: str) -> str:
    """A shell-quoted ``-o`` value as a YAML value: a mapping or list as written (``{"id": "code"}``), a scalar
    quoted where YAML would read it otherwise (``'|'``, ``','``, a query with quotes)."""
    import yaml

    if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
        v = v[1:-1]
    try:
        if isinstance(yaml.safe_load(v), (dict, list)):
            return v
    except yaml.YAMLError:
        pass
    dumped = yaml.safe_dump(v, default_flow_style=True, width=1 << 16, allow_unicode=True)
    return dumped.strip().removesuffix("\n...").strip()


def _at_kb_block(context: PipelineContext, src: KBSource, e: GlinkerError) -> GlinkerError:
    """``e``, raised while reading a kb block's source, placed at that block (its file and line, and the option it
    names: ``kb (pipeline.yaml:21, options.table)``) and saying which of its values came from environment variables.
    The pipeline records the places (``PipelineContext.kb_places``); without them the block is named alone."""
    places: dict[str, str] = (getattr(context, "kb_places", None) or {}).get(src.model_dump_json(), {})
    owner = places.get("@", "kb")
    if (e.where or "").startswith(owner + " "):
        return e  # placed already
    path = kb_option_path(e.where, src.adapter)
    dotted = ".".join(path)
    at = next((places[k] for n in range(len(path), -1, -1) if (k := ".".join(path[:n])) in places), None)
    block = f"{owner} ({at}{', ' + dotted if dotted else ''})" if at else f"{owner} {dotted}".rstrip()
    # a place in the source's data (a file and line, a row, a field) is kept after the block: it is where to look
    e.where = f"{block}, reading {e.where}" if e.where and not path else block
    e.message += env_note(src.model_dump(), path) if path else ""
    if e.fix and "-o " in e.fix:  # an adapter's fix says the command line's options: also as the block writes them
        opts = [f"{m.group(1)}: {_as_yaml_value(m.group(2))}" for m in _CLI_OPTION.finditer(e.fix)]
        if opts:
            e.fix += f" (in the pipeline: under the kb block's options, {'; '.join(opts)})"
    e.args = (e.render(),)
    return e


SAY_SYNC_ROWS = 1000
"""A pipeline's source sync that embeds at least this many rows says so at the default log level (it takes minutes
on a CPU); a smaller one is logged at info level when done."""


def _build_source_kb(context: PipelineContext, src: KBSource, name: str | None, encoder: Any) -> Any:
    from glinker.io import redact
    from glinker.kb import KB
    from glinker.kb.adapters import (
        canonical_source,
        get_adapter_class,
        keyed_options,
        load_adapter,
        read_entities,
    )
    from glinker.cluster import encoding_identity
    from glinker.kb.build import build_kb
    from glinker.kb.kb import writing

    # a relative file path (sqlite:///companies.db, companies.jsonl) is read from the pipeline file's folder when
    # it is there, else from the working folder: keyed (and read) by its absolute path, so two folders' files never
    # share a cache
    url = canonical_source(src.adapter, _expanded(src.source, f"{src.adapter}.source"), context.base_dir)
    options = {k: _expanded(v, f"{src.adapter}.{k}") for k, v in src.options.items()}
    # the cache is keyed by what is read, not by the password or key it is read with (a rotated password or API key
    # keeps the cache): the URL's password and the declared secret options are left out; an option only named like a
    # secret is keyed by a hash of its value
    key = {"a": src.adapter, "s": redact(url), "o": keyed_options(get_adapter_class(src.adapter), options),
           "t": src.template, "m": encoding_identity(encoder) if encoder is not None else None}
    ident = json.dumps(key, sort_keys=True, default=str)
    # a cache: folder names ${VARS} as source and options do (two tables, two folders); it holds one source's KB; a
    # relative one is beside the pipeline file (PipelineContext.new_path)
    out = Path(context.new_path(_expanded(src.cache, "cache"))) if src.cache else \
        cache_root() / "kb" / hashlib.sha256(ident.encode()).hexdigest()[:16]
    cache_folder(out.parent, "cache" if src.cache else None)
    with _locked(out.parent / f".{out.name}.lock"):  # processes starting together build it once, in turn
        other = _other_source(out, key) if (out / "CURRENT").is_file() else None
        if other:  # as a source of its own would get a folder of its own: built anew, never synced into another's
            log.warning("the cached KB %s was built from another source (%s): rebuilding it from this one (a cache "
                        "folder holds one source's KB: give each source its own `cache:`, e.g. with its ${VAR} in "
                        "the name, or leave `cache:` out)", out, other)
        if src.refresh == "if_missing" and (out / "CURRENT").is_file() and not other:
            return KB.open(out)
        adapter = load_adapter(src.adapter, url, **options)
        try:
            built = (out / "CURRENT").is_file()
            why = _not_syncable(out, encoder, name, src.template) if built and not other else None
            if built and not other and why is None:
                # read the source again; only new, changed and removed rows touch the KB (and the encoder), in a
                # new generation: processes already serving from the KB keep theirs, whole. Under the KB's writer
                # lock from the reading on (another process writing it, a `kb add`, is waited for): the changes are
                # read against what the KB holds when they are written
                try:
                    with writing(out, "a pipeline's source sync", wait=True, share=True), \
                            contextlib.ExitStack() as spooled:
                        # read against the live KB first: a start where nothing changed copies nothing (the new and
                        # changed records wait in a file in the KB folder, not in memory)
                        with KB.open(out) as live:
                            changed, seen = live.store.changed(read_entities(adapter), live.template, spool=out)
                            spooled.callback(changed.close)  # type: ignore[union-attr]
                            gone = bool(live.store.all_ids() - seen)
                            embed = live.store.new_texts(changed, live.template) \
                                if encoder is not None and len(changed) >= SAY_SYNC_ROWS else 0
                        if changed or gone or not seen:
                            if embed >= SAY_SYNC_ROWS:  # minutes on a CPU: said at the default level
                                log.warning("syncing the KB %s with its %s source: %s new or changed texts to embed",
                                            out, src.adapter, f"{embed:,}")
                            with KB.update(out) as kb:
                                c = kb.sync(changed, encoder, source=adapter, seen=seen)
                        else:
                            c = {"added": 0, "updated": 0, "unchanged_text": 0, "removed": 0, "same": len(seen)}
                except SourceUnavailable as e:  # the server is down: serve from the last sync rather than not at all
                    synced = out / SYNCED
                    when = synced.read_text(encoding="utf-8").strip() if synced.is_file() else "time unknown"
                    said = f"{e.message}; linking with the cached KB {out} as of its last sync ({when})"
                    log.warning("%s", said)
                    import warnings

                    from glinker.errors import StaleKBWarning

                    warnings.warn(said, StaleKBWarning, stacklevel=2)
                    return KB.open(out)
                _write_synced(out, key)
                embedded = f" ({c['updated']} re-embedded)" if encoder is not None else ""  # alias-only: no vectors
                log.info("KB %s synced with its %s source: %d added, %d changed%s, %d removed, %d the same", out,
                         src.adapter, c["added"], c["updated"] + c["unchanged_text"], embedded, c["removed"],
                         c["same"])
            else:
                # once per source and model: minutes for a big table, so said at the default log level
                every = "embedded" if encoder is not None else "read into an alias-only KB, no vectors"
                if why is not None:  # the same source, read by another model or template: every row again
                    log.warning("rebuilding this pipeline's KB %s from its %s source: %s, so every row is %s "
                                "again (later starts only sync what changed)", out, src.adapter, why, every)
                elif not other:
                    log.warning("building this pipeline's KB from its %s source into %s (first start: every row is "
                                "%s; later starts only sync what changed)", src.adapter, out, every)
                build_kb(adapter, out, encoder, model_name=_model_path(context, name), template=src.template,
                         resume=False, progress=sys.stderr.isatty(), wait=True)
                _write_synced(out, key)
        finally:
            close = getattr(adapter, "close", None)
            if close is not None:
                close()
    return KB.open(out)


def _model_path(context: PipelineContext, name: str | None) -> str | None:
    """How a source KB's manifest names its model: a local folder by its absolute path (a relative one is the
    pipeline file's, as the model is loaded), a shipped name or hub id as it is."""
    if not name or name.lower() == "none":
        return name
    path = Path(str(context.resolve_path(name))).expanduser()
    return str(path.absolute()) if path.is_dir() else name


SYNCED = "SYNCED"
"""A source KB's file with the time its source was last read whole (a sync that changed nothing publishes nothing)."""


SOURCE_KEY = "SOURCE_KEY"
"""A source KB's file with the key of the source it was built from and is synced with (adapter, URL or path without
its password, options without their declared secrets: :func:`glinker.kb.adapters.keyed_options`)."""


def _write_synced(out: Path, key: dict[str, Any]) -> None:
    from glinker.io import atomic_write
    from glinker.kb.manifest import now

    for name, text in ((SOURCE_KEY, json.dumps(_source_part(key), sort_keys=True)),
                       (SYNCED, now())):
        atomic_write(out / name, text + "\n", fsync=False)


def _source_part(key: dict[str, Any]) -> dict[str, Any]:
    """The source half of a source KB's key (adapter, source, options) as JSON reads it back (what SOURCE_KEY holds)."""
    return json.loads(json.dumps({k: key[k] for k in ("a", "s", "o")}, sort_keys=True, default=str))


def _other_source(out: Path, key: dict[str, Any]) -> str | None:
    """What differs between the source the cached KB at ``out`` was built from and this one (``key``, as
    :func:`_build_source_kb` keys a source), or None when it is the same: from its :data:`SOURCE_KEY`, or for a cache
    written before that file, the adapter and source its manifest records."""
    now = _source_part(key)
    try:
        built = json.loads((out / SOURCE_KEY).read_text(encoding="utf-8"))
    except FileNotFoundError:
        from glinker.kb import KB

        try:
            with KB.open(out) as kb:
                m = kb.manifest.source or {}
        except Exception:  # an unreadable cache: rebuilt by the build (see _not_syncable)
            return None
        if not m.get("adapter") and not m.get("source"):
            return None
        # the manifest records every option, parsed, secrets as ***: those the block gives are compared
        from glinker.kb.adapters import MASK

        recorded = m.get("options") if isinstance(m.get("options"), dict) else {}

        def norm(v: Any) -> Any:
            return v.strip() if isinstance(v, str) else v

        given = {k: v for k, v in now["o"].items() if k in recorded and recorded[k] != MASK
                 and not (isinstance(v, str) and v.startswith("sha256:"))}
        now["o"] = {k: norm(v) for k, v in given.items()}
        built = {"a": m.get("adapter"), "s": m.get("source"), "o": {k: norm(recorded[k]) for k in given}}
    except (OSError, ValueError):
        return None
    said = {"a": "adapter", "s": "source"}
    diffs = [f"{said[k]} {built.get(k)!r}, now {now[k]!r}" for k in ("a", "s") if built.get(k) != now[k]]
    if built.get("o") != now["o"]:
        was, new = built.get("o") or {}, now["o"]
        diffs += [f"{k}={was.get(k)!r}, now {new.get(k)!r}" for k in sorted(set(was) | set(new))
                  if was.get(k) != new.get(k)]
    return "; ".join(diffs) or None


def _not_syncable(out: Path, encoder: Any, model: str | None, template: str) -> str | None:
    """Why the cached KB at ``out`` cannot be synced, in words (it was built by another model or with another
    template, or it cannot be read), or None when a sync suffices."""
    from glinker.kb import KB

    try:
        with KB.open(out) as kb:
            m = kb.manifest
    except Exception as e:  # an unreadable cache is rebuilt
        return f"the cached KB cannot be read ({e})"
    now_fp = encoder.fingerprint if encoder is not None else None
    if m.model_fingerprint != now_fp:
        was = (f"model {m.model or '?'} (fingerprint {m.model_fingerprint[:12]})" if m.model_fingerprint
               else "no model (alias-only)")
        now = f"model {model or '?'} (fingerprint {now_fp[:12]})" if now_fp else "no model (alias-only)"
        return f"the model changed: its vectors were made by {was}, this pipeline links with {now}"
    if m.template != template:
        return f"the entity text template changed: {m.template!r}, now {template!r}"
    if encoder is not None and m.vectors_dtype is not None:
        from glinker.cluster import model_dtype

        now_dtype = model_dtype(encoder)
        if m.vectors_dtype != now_dtype:
            return (f"the precision changed: its vectors were embedded in {m.vectors_dtype}, this pipeline runs the "
                    f"model in {now_dtype} (settings.dtype)")
    return None


def _locked(path: Path) -> Any:
    """An exclusive lock on ``path`` (waits for the holder)."""
    from glinker.io import locked

    return locked(path, wait=True)


# ---- span vectors ----------------------------------------------------------------------------------------------

def span_vectors(model: Any, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]],
                 batch_size: int = 16, cache: "WindowCache | None" = None) -> list[Any]:
    """(n_spans, D) float32 span vectors per text, with every needed window encoded once per batch of windows
    (not once per text), or taken from ``cache`` when an earlier stage of the batch encoded it. As
    ``BiEncoder.span_vectors``: a span is read as the words it touches (one that cuts a word is widened to it), and
    one that covers no word (only spaces or invisible characters) is a DataError, not a zero vector (which found
    arbitrary entities)."""
    import numpy as np
    import torch

    from glinker.model.words import split_words

    out = [np.zeros((len(s), model.dim), dtype=np.float32) for s in spans]
    live = [i for i, s in enumerate(spans) if s]
    if not live:
        return out
    splits = [model._words.split(texts[i]) if spans[i] else split_words("") for i in range(len(texts))]
    wins = model._windows(splits, "chunk", None)
    by_text: dict[int, list[int]] = {}
    for wi, w in enumerate(wins):
        by_text.setdefault(w.text_index, []).append(wi)
    win_starts = {i: [wins[q].start for q in qs] for i, qs in by_text.items()}
    todo: dict[int, list[tuple[int, int, int, int]]] = {}  # window -> (text, span j, local start, local end)
    for i in live:
        sp = splits[i]
        for j, (cs, ce) in enumerate(spans[i]):
            ws = bisect.bisect_right(sp.ends, cs)
            we = bisect.bisect_left(sp.starts, ce) - 1
            if ws >= len(sp.words) or we < ws or i not in by_text:
                raise DataError(f"the span {cs}-{ce} ({texts[i][cs:ce]!r:.40}) of the batch's document {i} covers no "
                                "word (only spaces or invisible characters): it has no span vector",
                                fix="mentions cover at least one word: fix the stage or the spans that give it")
            cand = by_text[i]  # this text's windows, in word order (starts and ends both increase)
            starts = win_starts[i]
            k = max(0, bisect.bisect_right(starts, ws) - 1)
            best, best_margin = cand[k], None
            while k >= 0 and wins[cand[k]].end - 1 >= we:  # every window holding the span: the most context wins
                margin = min(ws - wins[cand[k]].start, wins[cand[k]].end - 1 - we)
                if best_margin is None or margin > best_margin:
                    best, best_margin = cand[k], margin
                k -= 1
            w = wins[best]
            ls, le = max(ws, w.start) - w.start, min(we, w.end - 1) - w.start
            todo.setdefault(best, []).append((i, j, ls, le))
    if cache is not None:  # windows an earlier stage encoded in this batch: one span-layer pass for all of them
        # each window's vectors read once: a second read could find it evicted meanwhile
        found = {q: cache.get((texts[wins[q].text_index], wins[q].start, wins[q].end)) for q in todo}
        hits = {q: xw for q, xw in found.items() if xw is not None}
        if hits:
            t0 = time.perf_counter()
            with torch.inference_mode():
                xs, starts, ends, dest, off = [], [], [], [], 0
                for q, xw in hits.items():  # the windows' word vectors end to end; spans index into them by offset
                    for i, j, ls, le in todo.pop(q):
                        starts.append(off + ls)
                        ends.append(off + le)
                        dest.append((i, j))
                    xs.append(xw)
                    off += xw.shape[0]
                x = torch.cat(xs)
                v = model.net.span_reps_at(x, torch.tensor(starts, device=model.device),
                                           torch.tensor(ends, device=model.device)).float().cpu().numpy()
            for k, (i, j) in enumerate(dest):
                out[i][j] = v[k]
            ENCODER_SECONDS["seconds"] += time.perf_counter() - t0
    order = sorted(todo, key=lambda q: wins[q].end - wins[q].start)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b0 in range(0, len(order), batch_size):
            bq = order[b0:b0 + batch_size]
            x, _, _ = model._encode_windows(splits, [wins[q] for q in bq])
            rows, st, en = [], [], []
            for r, q in enumerate(bq):
                if cache is not None:
                    w = wins[q]
                    cache.put((texts[w.text_index], w.start, w.end), x[r, : w.end - w.start])
                for (_i, _j, ls, le) in todo[q]:
                    rows.append(r)
                    st.append(ls)
                    en.append(le)
            # (row, word) -> row of the flattened batch, so the network's span_reps_at serves both paths
            base = torch.tensor(rows, device=model.device) * x.shape[1]
            v = model.net.span_reps_at(x.reshape(-1, x.shape[-1]), base + torch.tensor(st, device=model.device),
                                       base + torch.tensor(en, device=model.device)).float().cpu().numpy()
            k = 0
            for q in bq:
                for (i, j, _ls, _le) in todo[q]:
                    out[i][j] = v[k]
                    k += 1
    ENCODER_SECONDS["seconds"] += time.perf_counter() - t0
    return out


# ---- entity vectors --------------------------------------------------------------------------------------------

class _LockedLRU:
    """An LRU map shared by the threads of a process: lookups and stores under one lock, the KB read outside it."""

    def __init__(self, size: int) -> None:
        self.cache: OrderedDict[str, Any] = OrderedDict()
        self.size = size
        self._lock = fork_safe_lock()  # the cache's reads and writes (not the KB's)

    def _cached(self, ids: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
        """(id -> value for the cached ids, the other ids), each id once."""
        out: dict[str, Any] = {}
        missing = []
        with self._lock:
            for e in dict.fromkeys(ids):
                v = self.cache.get(e)
                if v is None:
                    missing.append(e)
                else:
                    self.cache.move_to_end(e)
                    out[e] = v
        return out, missing

    def _store(self, out: dict[str, Any], items: Iterable[tuple[str, Any]]) -> None:
        with self._lock:
            for k, v in items:
                out[k] = v
                self.cache[k] = v
            while len(self.cache) > self.size:
                self.cache.popitem(last=False)


_NO_VECTOR = object()
"""What :class:`EntityVectors` caches for an entity the loaded index has no vector of."""


class EntityVectors(_LockedLRU):
    """Entity vectors by id, read back from the KB's FAISS index (never re-encoded), with an LRU cache. An entity
    the loaded index has no vector of (an update that stored it has not written its vector yet, or wrote it after
    this process loaded the index) has none here: its biencoder feature is 0 (said once, with what to do)."""

    def __init__(self, kb: Any, model: Any = None, cache_size: int = 200_000) -> None:
        super().__init__(cache_size)
        self.kb = kb
        self.model = model
        self._warned = False

    def get(self, ids: Sequence[str]) -> dict[str, Any]:
        """id -> (D,) float32 vector for the ids found in the KB index."""
        import numpy as np

        out, missing = self._cached(ids)
        if missing:
            rid_of = self.kb.rids(missing)
            found = [e for e in missing if e in rid_of]
            if found:
                vecs, ok = self.kb.index().reconstruct_found(np.asarray([rid_of[e] for e in found], dtype=np.int64))
                have = [e for e, k in zip(found, ok) if k]
                lack = [e for e, k in zip(found, ok) if not k]
                self._store(out, [*zip(have, vecs), *((e, _NO_VECTOR) for e in lack)])
                if lack and not self._warned:
                    self._warned = True
                    self._say_missing(lack)
        return {e: v for e, v in out.items() if v is not _NO_VECTOR}

    def _say_missing(self, lack: list[str]) -> None:
        pend = self.kb.store.pending()
        if pend and getattr(self.kb, "pending_at_open", 0):
            return  # said when the KB was opened
        shown = ", ".join(lack[:3]) + (", ..." if len(lack) > 3 else "")
        if pend:
            log.warning("KB %s holds entities without a vector yet (%s): an update stored them and was interrupted "
                        "(or is still running) before writing their vectors (%d index changes pending); their "
                        "biencoder feature is 0 until it is finished: run the update again (`glinker kb add ...`; "
                        "any `glinker kb add` or `kb remove` with the KB's model finishes it), then restart this "
                        "process", self.kb.root, shown, len(pend))
        else:
            log.warning("KB %s was updated in place since this process loaded its vector index: entities it added "
                        "(%s) have no vector here, so their biencoder feature is 0; restart this process to read "
                        "them (update with `glinker kb add --atomic` to keep running processes consistent)",
                        self.kb.root, shown)


_MODEL_NAMES: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
"""The name each loaded bi-encoder was asked for (a shipped name loads from its materialized folder), for messages."""


def check_kb_vectors(kb: Any, model: Any, where: str) -> None:
    """A KBError naming the stage when the KB has no vectors or was built by another model (or by other weights
    of the same model: see :meth:`glinker.kb.KB.check_model`)."""
    try:
        name = _MODEL_NAMES.get(model)
    except TypeError:  # (a model object that takes no weak reference)
        name = None
    try:
        kb.check_model(model.fingerprint, name or getattr(model, "source", None) or None)
    except KBError as e:
        raise KBError(e.message, where=f"{where}: {e.where}", fix=e.fix) from None


# ---- entity records --------------------------------------------------------------------------------------------

class EntityCache(_LockedLRU):
    """Entity records by id from one KB, fetched in one query per batch and kept in an LRU cache."""

    def __init__(self, kb: Any, size: int = 200_000) -> None:
        super().__init__(size)
        self.kb = kb

    def get(self, ids: Sequence[str]) -> dict[str, Any]:
        out, missing = self._cached(ids)
        if missing:
            self._store(out, ((ent.id, ent) for ent in self.kb.get(missing)))
        return out


def entity_cache(context: PipelineContext, kb: Any) -> EntityCache:
    return context.resource(("entity-cache", id(kb)), lambda: EntityCache(kb))  # type: ignore[no-any-return]


def entity_vectors(context: PipelineContext, kb: Any) -> EntityVectors:
    return context.resource(("entity-vectors", id(kb)), lambda: EntityVectors(kb))  # type: ignore[no-any-return]


# ---- one encoder pass per batch --------------------------------------------------------------------------------

class WindowCache:
    """Word vectors of recently encoded model windows, keyed by (text, window start, window end), so the stages
    of one batch encode each text once (mentions, their span vectors, dense retrieval, re-scoring).

    Bounded by the words it holds, not by the window count, so a model reading short windows (``window_words``)
    keeps a whole batch as a long-window model does (65,536 words of the shipped model's 256-float vectors: ~67 MB). The pipeline
    empties it before and after every batch (:func:`clear_window_cache`): a window is only ever taken from the
    batch that encoded it (a window encoded in another batch, padded with other texts, differs in the last float
    digits, so a result would depend on what ran before it), and an idle pipeline holds none. ``get``, ``put`` and
    ``clear`` are atomic."""

    def __init__(self, max_words: int = 65_536) -> None:
        self.max_words = max_words
        self.words = 0
        self.items: OrderedDict[tuple[str, int, int], Any] = OrderedDict()
        self._lock = fork_safe_lock()

    def get(self, key: tuple[str, int, int]) -> Any:
        with self._lock:
            return self.items.get(key)

    def put(self, key: tuple[str, int, int], value: Any) -> None:
        with self._lock:
            old = self.items.pop(key, None)
            if old is not None:
                self.words -= len(old)
            self.items[key] = value
            self.words += len(value)
            while self.words > self.max_words and len(self.items) > 1:
                self.words -= len(self.items.popitem(last=False)[1])

    def clear(self) -> None:
        with self._lock:
            self.items.clear()
            self.words = 0


WINDOW_CACHE = "window-cache"
"""The key of a pipeline's :class:`WindowCache` among its context's resources."""


def window_cache(context: PipelineContext) -> WindowCache:
    return context.resource(WINDOW_CACHE, WindowCache)  # type: ignore[no-any-return]


def clear_window_cache(context: PipelineContext) -> None:
    """Empty the context's window cache, if it has one (the runner, at both ends of every batch)."""
    cache = context._resources.get(WINDOW_CACHE)
    if cache is not None:
        cache.clear()


_WINDOW_WATCH: ContextVar[Callable[[str, Any], None] | None] = ContextVar("glinker_window_watch", default=None)


@contextlib.contextmanager
def watching_windows(watch: Callable[[str, Any], None]) -> Iterator[None]:
    """Within the block, ``watch(text, window)`` is told of every window the model reads for a document's mentions
    in this thread (``window.start``/``end``: its words), so a caller can show how far a huge document is read
    (``glinker link``). A pipeline runs its stages in the calling thread, one batch at a time."""
    token = _WINDOW_WATCH.set(watch)
    try:
        yield
    finally:
        _WINDOW_WATCH.reset(token)


def window_watch(texts: Sequence[str]) -> Callable[[Any, Any], None] | None:
    """The model's ``on_window`` hook that tells the watch of :func:`watching_windows` about ``texts``' windows;
    None outside such a block."""
    watch = _WINDOW_WATCH.get()
    if watch is None:
        return None
    return lambda w, _x: watch(texts[w.text_index], w)


def predict_encoded(model: Any, texts: Sequence[str], bank: Any, threshold: float, flat_ner: bool,
                    multi_label: bool, batch_size: int, cache: WindowCache,
                    label_top_k: int | None = None) -> list[list[dict]] | None:
    """``model.predict`` for span bi-encoders, keeping every window's word vectors in ``cache`` for the span
    vectors asked for later in the batch. None when the model is not a plain span model (then use predict)."""
    if model.net.dense or getattr(model.net, "span_mode", "markerV0") == "token_level":
        return None
    t0 = time.perf_counter()
    watch = window_watch(texts)

    def keep(w: Any, x: Any) -> None:
        cache.put((texts[w.text_index], w.start, w.end), x)
        if watch is not None:
            watch(w, x)

    results = model.predict(list(texts), bank, threshold=threshold, flat_ner=flat_ner, multi_label=multi_label,
                            batch_size=batch_size, on_window=keep, label_top_k=label_top_k)
    ENCODER_SECONDS["seconds"] += time.perf_counter() - t0
    return [list(r) for r in results]
