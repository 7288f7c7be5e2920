"""The stage registry: built-in stages by name, third-party stages through the ``glinker.stages`` entry points.

A pipeline file can only name registered types; it can never import an arbitrary class.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING, Any, overload

from glinker.errors import ConfigError

if TYPE_CHECKING:
    from glinker.pipeline.stage import Stage

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "glinker.stages"

# name -> "module:Class"; imported only when a pipeline uses the name.
BUILTIN_STAGES: dict[str, str] = {
    "given_mentions": "glinker.stages.given:GivenMentions",
    "regex_mentions": "glinker.stages.regex:RegexMentions",
    "spacy_mentions": "glinker.stages.spacy_mentions:SpacyMentions",
    "merge_mentions": "glinker.stages.merge:MergeMentions",
    "biencoder_mentions": "glinker.stages.mentions:BiencoderMentions",
    "alias_mentions": "glinker.stages.mentions:AliasMentions",
    "alias_candidates": "glinker.stages.candidates:AliasCandidates",
    "fuzzy_candidates": "glinker.stages.candidates:FuzzyCandidates",
    "dense_candidates": "glinker.stages.candidates:DenseCandidates",
    "merge_candidates": "glinker.stages.candidates:MergeCandidates",
    "rescore": "glinker.stages.rescore:Rescore",
    "select": "glinker.stages.select:Select",
    "write_links": "glinker.stages.output:WriteLinks",
}

_WARNED: set[tuple[str, ...]] = set()
"""Warnings about installed entry points already given in this process (each is said once, not per registry)."""


def _warn_once(key: tuple[str, ...], msg: str, *args: Any) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(msg, *args)


def class_path(cls: type) -> str:
    """``module:QualifiedName`` of a class (how entry points and messages name it)."""
    return f"{cls.__module__}:{cls.__qualname__}"


def is_builtin_class(cls: type) -> bool:
    """Whether ``cls`` is glinker's own (a built-in stage): every other stage class is a plugin's."""
    mod = getattr(cls, "__module__", "") or ""
    return mod == "glinker" or mod.startswith("glinker.")


def _ep_dist(ep: Any) -> tuple[str, str] | None:
    d = getattr(ep, "dist", None)
    if d is None:
        return None
    try:
        return str(d.name), str(d.version)
    except Exception:  # noqa: BLE001 - broken metadata: the distribution is unknown, not an error
        return None


def _is_prefix(missing: str, module_name: str) -> bool:
    """Whether the module not found is ``module_name`` itself or one of its parent packages."""
    return module_name == missing or module_name.startswith(missing + ".")


def _ep_source(ep: Any) -> str:
    """How messages name an entry point: ``name = module:Class`` of distribution ``dist version``."""
    d = _ep_dist(ep)
    return f"{ep.name} = {ep.value} (distribution {d[0]} {d[1]})" if d else f"{ep.name} = {ep.value}"


_PACKAGES: dict[str, list[str]] | None = None


def distribution_of(cls: type) -> tuple[str, str] | None:
    """(name, version) of the installed distribution that provides ``cls``'s module, or None (a script, a notebook,
    a folder on sys.path). Read from the ``glinker.stages`` entry points first (what a stage plugin declares), then
    from the installed distributions' top-level packages."""
    module = getattr(cls, "__module__", "") or ""
    top = module.split(".")[0]
    if not top or top == "__main__":
        return None
    try:
        # the entry point of this class, else of its module, else of its top-level package
        found: dict[int, tuple[str, str]] = {}
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            ep_module = ep.value.partition(":")[0].strip()
            rank = 0 if ep.value.replace(" ", "") == class_path(cls) else 1 if ep_module == module else \
                2 if ep_module.split(".")[0] == top else None
            d = _ep_dist(ep) if rank is not None else None
            if rank is not None and d is not None:
                found.setdefault(rank, d)
        if found:
            return found[min(found)]
        global _PACKAGES
        if _PACKAGES is None:
            _PACKAGES = metadata.packages_distributions()
        for name in _PACKAGES.get(top, []):
            return name, metadata.version(name)
    except Exception:  # unreadable metadata: no version to record
        log.debug("no distribution found for %s", cls, exc_info=True)
    return None


def stage_origin(cls: type) -> dict[str, Any] | None:
    """Where a plugin stage class comes from, for the pipeline's fingerprint and for messages: ``{"class":
    "module:Class", "distribution": name, "version": v}`` (no distribution: a script's or a notebook's class);
    None for a built-in stage."""
    if is_builtin_class(cls):
        return None
    d = distribution_of(cls)
    return {"class": class_path(cls), "distribution": d[0] if d else None, "version": d[1] if d else None}


def plugin_note(cls: type) -> str:
    """"class m:C of distribution d v" (or "class m:C, module m" without one): names a plugin's code in messages."""
    o = stage_origin(cls) or {"class": class_path(cls)}
    dist = f" of distribution {o['distribution']} {o['version']}" if o.get("distribution") else ""
    return f"class {o['class']}{dist}"


def check_stage_class(obj: Any, what: str) -> None:
    """Raise ConfigError (E231) unless ``obj`` is a :class:`Stage` subclass whose ``Params`` is a
    :class:`StageParams` subclass, which defines ``run``, whose ``accepts`` is a tuple of kinds and whose
    ``produces`` is a kind; ``what`` says where it came from (an entry point, a register_stage call)."""
    from glinker.pipeline.stage import Stage, StageParams

    if not (isinstance(obj, type) and issubclass(obj, Stage)):
        kind = f"class {class_path(obj)}" if isinstance(obj, type) else f"{type(obj).__name__} object {obj!r}"
        raise ConfigError(f"{what}: {kind} is not a glinker Stage subclass", code="E231",
                          fix="derive the class from glinker.pipeline.Stage (see docs/stages.md)")
    params = getattr(obj, "Params", None)
    if not (isinstance(params, type) and issubclass(params, StageParams)):
        shown = class_path(params) if isinstance(params, type) else repr(params)
        raise ConfigError(f"{what}: the Params of stage class {class_path(obj)} is {shown}, not a subclass of "
                          "glinker.pipeline.StageParams (a plain pydantic model would let a misspelt YAML key "
                          "through unnoticed)", code="E231",
                          fix=f"in module {obj.__module__}, derive {getattr(params, '__name__', 'Params')} from "
                              "glinker.pipeline.StageParams instead of pydantic.BaseModel")
    if getattr(obj, "run", None) is Stage.run:  # it would fail at its first batch with a bare NotImplementedError
        raise ConfigError(f"{what}: stage class {class_path(obj)} does not define run(documents, inputs), the method "
                          "that processes a batch", code="E231",
                          fix=f"in module {obj.__module__}, define `def run(self, documents, inputs):` on "
                              f"{obj.__qualname__}, returning one entry per document (see docs/stages.md)")
    accepts = getattr(obj, "accepts", None)
    if isinstance(accepts, str):  # `accepts = (CANDIDATES)`: parentheses without a comma make no tuple
        raise ConfigError(f"{what}: stage class {class_path(obj)} has accepts = {accepts!r}, a string, not a tuple "
                          "of kinds (a tuple of one kind needs a trailing comma)", code="E231",
                          fix=f"in module {obj.__module__}, write `accepts = ({accepts!r},)` on {obj.__qualname__} "
                              "(e.g. `accepts = (CANDIDATES,)`)")
    if not (isinstance(accepts, (tuple, list, set, frozenset)) and accepts
            and all(isinstance(k, str) and k for k in accepts)):
        raise ConfigError(f"{what}: stage class {class_path(obj)} has accepts = {accepts!r}, not a tuple of kinds",
                          code="E231",
                          fix=f"in module {obj.__module__}, set accepts on {obj.__qualname__} to the kinds it reads, "
                              "e.g. `accepts = (CANDIDATES,)` or `accepts = (DOCUMENTS,)` (see docs/stages.md)")
    produces = getattr(obj, "produces", None)
    if not (isinstance(produces, str) and produces):
        raise ConfigError(f"{what}: stage class {class_path(obj)} has produces = {produces!r}, not a kind",
                          code="E231",
                          fix=f"in module {obj.__module__}, set produces on {obj.__qualname__} to the one kind it "
                              "writes, a string such as `produces = CANDIDATES` (see docs/stages.md)")


def check_type_name(name: Any, cls: type) -> None:
    """Raise ConfigError (E231) unless ``name``, the type name ``cls`` is registered under, is a name a pipeline file
    can give as its ``type:``: a non-empty string without ``:`` (one with ``:`` reads as an import path, E230)."""
    if not name:
        raise ConfigError(f"stage class {class_path(cls)} has no type_name", code="E231",
                          fix="set type_name = '...' on the class, or pass a name")
    if not isinstance(name, str) or ":" in name:
        raise ConfigError(f"stage class {class_path(cls)}: type name {name!r} cannot be named by a pipeline file ("
                          "a `type:` with ':' reads as an import path, which pipeline files cannot import)",
                          code="E231",
                          fix="give the class a type_name of letters, digits and '_' (e.g. "
                              f"{_suggest_name(name)!r}), or pass one: register_stage(cls, name=...)")


def _suggest_name(name: Any) -> str:
    """``name`` made a valid type name: "acme:tags" -> "acme_tags"."""
    s = re.sub(r"[^A-Za-z0-9_]+", "_", str(name)).strip("_")
    return s or "my_stage"


class StageRegistry:
    """Maps stage type names to classes, loading built-ins and entry points lazily."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Stage]] = {}
        self._paths: dict[str, str] = dict(BUILTIN_STAGES)
        self._eps: dict[str, Any] = {}  # name -> the entry point used for it
        self._plugins_loaded = False

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in BUILTIN_STAGES:
                d = _ep_dist(ep)
                _warn_once(("builtin", ep.name, ep.value, d[0] if d else ""),
                           "entry point %s ignored: %r is a built-in stage type, which a plugin cannot replace "
                           "(rename the entry point in that distribution's metadata)", _ep_source(ep), ep.name)
                continue
            first = self._eps.get(ep.name)
            if first is not None:
                if first.value != ep.value or _ep_dist(first) != _ep_dist(ep):
                    _warn_once(("duplicate", ep.name, first.value, ep.value),
                               "two entry points provide stage type %r: %s is used, %s is ignored (uninstall one of "
                               "the distributions, or rename one entry point)", ep.name, _ep_source(first),
                               _ep_source(ep))
                continue
            self._eps[ep.name] = ep
            self._paths.setdefault(ep.name, ep.value)

    def _holder(self, key: str) -> str | None:
        """What ``key`` is registered to now (for refusing a silent replacement), or None when it is free."""
        old = self._classes.get(key)
        ep = self._eps.get(key)
        if old is not None:
            if ep is not None and ep.value == class_path(old):
                return f"the entry point {_ep_source(ep)}"
            return f"class {class_path(old)}"
        if ep is not None:
            return f"the entry point {_ep_source(ep)}"
        return None

    def register(self, cls: type[Stage], name: str | None = None, *, replace: bool = False) -> type[Stage]:
        """Register a stage class in this process (tests, notebooks). Returns the class.

        A name provided by an installed entry point is refused (ConfigError E232) unless ``replace`` is true; one
        registered to another class in this process is replaced with a warning (a test's local class, a module
        imported under two names), silently with ``replace``. Registering the same class again is a no-op, and so is registering a class
        of the same ``module:QualifiedName`` (a notebook cell run again, a module reloaded: the new definition
        replaces the old one)."""
        check_stage_class(cls, f"register_stage({getattr(cls, '__name__', cls)!r})")
        key = name or cls.type_name
        check_type_name(key, cls)
        if key in BUILTIN_STAGES and not is_builtin_class(cls):
            raise ConfigError(f"{key!r} is a built-in stage type; {cls.__name__} cannot replace it",
                              fix="give the class another type_name")
        self._load_plugins()
        old = self._classes.get(key)
        if old is cls:
            return cls
        ep = self._eps.get(key)
        same = (old is not None and class_path(old) == class_path(cls)) or (
            old is None and ep is not None and ep.value.partition(":")[0] == cls.__module__
            and ep.value.partition(":")[2] in (cls.__name__, cls.__qualname__))  # the entry point's own class
        holder = self._holder(key)
        if holder is not None and not same and not replace and not holder.startswith("the entry point"):
            # another class registered in this process (a test's local class, a module imported under two names):
            # replaced, as it always was, but said
            log.warning("stage type %r: %s replaces %s, registered before in this process (pass replace=True to "
                        "say it is meant)", key, class_path(cls), holder)
            replace = True
        if holder is not None and not same and not replace:
            raise ConfigError(f"stage type {key!r} is already registered to {holder}; register_stage would silently "
                              f"replace it with class {class_path(cls)}", code="E232",
                              fix="give the class another type_name (or register it under another name), or pass "
                                  "replace=True to replace the registered one on purpose")
        if holder is not None and not same:
            log.info("stage type %r: %s replaces %s (replace=True)", key, class_path(cls), holder)
        self._classes[key] = cls
        return cls

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(set(self._paths) | set(self._classes))

    def builtin_names(self) -> list[str]:
        return sorted(BUILTIN_STAGES)

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._classes or name in self._paths

    def get(self, name: str) -> type[Stage]:
        """The class registered as ``name``; raises ConfigError (E230) if unknown, E231 if not importable or not a
        proper stage class."""
        if name in self._classes:
            return self._classes[name]
        self._load_plugins()
        target = self._paths.get(name)
        if target is None:
            raise ConfigError(f"unknown stage type {name!r}", code="E230")
        ep = self._eps.get(name)
        origin = f"entry point {_ep_source(ep)}" if ep is not None and ep.value == target else f"stage type {name!r}"
        module_name, _, attr = target.partition(":")
        dist = _ep_dist(ep) if ep is not None and ep.value == target else None
        package = dist[0] if dist else f"the package that provides {module_name!r}"
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except ImportError as e:
            missing = getattr(e, "name", None)
            if isinstance(e, ModuleNotFoundError) and missing and not _is_prefix(missing, module_name):
                # the plugin's module is there; something it imports is not (a dependency of the plugin)
                raise ConfigError(f"{origin}: its module {module_name!r} imports {missing!r}, which is not "
                                  f"installed", code="E231",
                                  fix=f"install what {package} needs (pip install {missing.split('.')[0]}, or "
                                      f"reinstall {package} with its dependencies)") from e
            raise ConfigError(f"{origin} points to {target!r}, which cannot be imported: {e}", code="E231",
                              fix=f"reinstall {package}" if dist else
                              "install the package that provides it, or fix its entry point") from e
        except AttributeError as e:
            raise ConfigError(f"{origin} points to {target!r}, but module {module_name!r} has no {attr!r}: {e}",
                              code="E231", fix=f"correct the entry point's module:Class in {package}'s metadata and "
                              "reinstall it, or define the class in that module") from e
        except Exception as e:  # the plugin's module fails as it is imported: its bug, named as such
            log.debug("importing %s failed", module_name, exc_info=True)
            raise ConfigError(f"{origin}: importing {module_name!r} failed: {type(e).__name__}: {e}",
                              code="E231", fix=f"fix or update {package} (glinker -vv shows the traceback)") from e
        if name in self._classes:  # the module registered it as it was imported (register_stage in the module)
            return self._classes[name]
        check_stage_class(obj, origin)
        if not obj.type_name:
            obj.type_name = name
        self._classes[name] = obj
        return obj


registry = StageRegistry()
"""The process-wide stage registry."""


@overload
def register_stage(cls: type[Stage], *, name: str | None = None, replace: bool = False) -> type[Stage]: ...
@overload
def register_stage(cls: None = None, *, name: str | None = None,
                   replace: bool = False) -> Callable[[type[Stage]], type[Stage]]: ...


def register_stage(cls: type[Stage] | None = None, *, name: str | None = None,
                   replace: bool = False) -> Any:
    """Class decorator: register a Stage subclass under its ``type_name`` (or ``name``) in this process.

    ``@register_stage`` or ``register_stage(MyStage)``. A name an installed entry point provides is refused (E232)
    unless ``replace=True`` (``@register_stage(replace=True)``); a name registered to another class in this process
    is taken over with a warning (none with ``replace=True``); built-in type names cannot be taken."""
    if cls is None:
        return lambda c: registry.register(c, name, replace=replace)
    return registry.register(cls, name, replace=replace)
