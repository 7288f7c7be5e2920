"""The KB adapter contract and the registry that finds adapters through the ``glinker.kb_adapters`` entry points.

An adapter turns one source (a dump, a table, a file) into a stream of :class:`glinker.types.Entity`. Built-in
adapters are registered exactly like a third party's: an entry point in the ``glinker.kb_adapters`` group.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from glinker.errors import ConfigError, KBError, closest
from glinker.types import Entity

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "glinker.kb_adapters"
MAX_KEPT_PROBLEMS = 1000  # the report keeps the first problems verbatim and counts the rest
MAX_LOGGED_PROBLEMS = 20  # bad records logged one by one; a corrupt dump can hold millions


@dataclass
class AdapterReport:
    """What an adapter saw while streaming: entities yielded, records skipped on purpose, bad records."""

    read: int = 0
    yielded: int = 0
    skipped: int = 0
    bad: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, where: str, message: str) -> None:
        """Count one bad record and keep its place and reason (the first MAX_KEPT_PROBLEMS verbatim)."""
        self.bad += 1
        if len(self.problems) < MAX_KEPT_PROBLEMS:
            self.problems.append(f"{where}: {message}")
        if self.bad <= MAX_LOGGED_PROBLEMS:
            log.warning("skipped bad record at %s: %s", where, message)
        if self.bad == MAX_LOGGED_PROBLEMS:
            log.warning("further bad records are counted, not logged one by one (the build's report lists the "
                        "first %d)", MAX_KEPT_PROBLEMS)

    def bad_record(self, err: Any, where: str, on_error: str) -> None:
        """Apply an adapter's ``on_error`` policy to a bad record: re-raise ``err``, or count it and go on."""
        if on_error == "raise":
            raise err
        self.problem(err.where or where, err.message)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary for the manifest."""
        return {"read": self.read, "yielded": self.yielded, "skipped": self.skipped, "bad": self.bad,
                "problems": self.problems[:50]}


class AdapterOptions(BaseModel):
    """Base of every adapter's options: unknown keys are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _split_comma_lists(cls, data: Any) -> Any:
        # the CLI passes list options as "a,b,c"; accept that for every list[str] option
        if isinstance(data, dict):
            for key, val in list(data.items()):
                f = cls.model_fields.get(key)
                if f is not None and isinstance(val, str) and getattr(f.annotation, "__origin__", None) is list:
                    data[key] = [v.strip() for v in val.split(",") if v.strip()]
        return data


@runtime_checkable
class KBAdapter(Protocol):
    """One source of entities. ``__init__(source, **options)`` is light; ``iter_entities`` streams."""

    name: ClassVar[str]
    options_model: ClassVar[type[AdapterOptions]]
    report: AdapterReport

    def iter_entities(self) -> Iterator[Entity]:
        """Stream every entity of the source, in a stable order, without loading the source whole."""
        ...

    def estimate_count(self) -> int | None:
        """A cheap estimate of how many entities the source holds (None when unknown)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Source and options, JSON-ready and without secrets, for the KB manifest."""
        ...


def parse_options(adapter: str, model: type[AdapterOptions], options: dict[str, Any]) -> AdapterOptions:
    """Validate adapter options; an unknown or ill-typed option is a ConfigError naming it and the fix."""
    known = check_option_names(adapter, model, options)
    try:
        return model(**options)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"invalid value for option {loc!r}: {err['msg']}", where=f"{adapter}.{loc}",
                          fix=f"valid options: {', '.join(known)}") from None


def check_option_names(adapter: str, model: type[AdapterOptions], options: Any) -> list[str]:
    """The option names ``model`` knows; an unknown key of ``options`` is a ConfigError naming it (with the closest
    name) and the valid ones."""
    known = list(model.model_fields)
    for key in options:
        if key not in model.model_fields:
            hint = closest(str(key), known)
            raise ConfigError(f"unknown option {key!r} for the {adapter} adapter",
                              where=f"{adapter}.{key}",
                              fix=(f"did you mean {hint!r}? " if hint else "") + f"valid options: {', '.join(known)}")
    return known


def available_adapters() -> dict[str, str]:
    """Adapter name -> ``module:Class`` for every installed ``glinker.kb_adapters`` entry point."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def get_adapter_class(name: str) -> type[KBAdapter]:
    """Load the adapter class registered under ``name`` in the entry-point group."""
    from importlib.metadata import entry_points

    eps = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name not in eps:
        hint = closest(name, eps)
        raise ConfigError(f"no KB adapter named {name!r}", where="adapter",
                          fix=(f"did you mean {hint!r}? " if hint else "")
                          + f"installed adapters: {', '.join(sorted(eps)) or 'none'}; third-party adapters register "
                          f"an entry point in the {ENTRY_POINT_GROUP!r} group")
    try:
        cls = eps[name].load()
    except ImportError as e:
        raise KBError(f"the {name!r} adapter could not be imported: {e}", where=eps[name].value,
                      fix="install the package that provides it (pip install -e . for the built-in ones)") from e
    return cls


def load_adapter(name: str, source: str, **options: Any) -> KBAdapter:
    """Instantiate the adapter ``name`` on ``source`` with validated ``options``."""
    cls = get_adapter_class(name)
    return cls(source, **options)  # type: ignore[call-arg]


def check_adapter_options(name: str, options: dict[str, Any]) -> None:
    """Check an adapter's name and options without reading its source (``glinker pipeline validate``): an unknown
    adapter or option, an ill-typed value, or a value the adapter refuses before connecting (an adapter may define
    a ``check_options(options)`` classmethod for that) is a ConfigError whose ``where`` names the option
    (``adapter``, ``<adapter>.<option>[.<key>]``)."""
    cls = get_adapter_class(name)
    check = getattr(cls, "check_options", None)
    if callable(check):
        check(dict(options))
        return
    model = getattr(cls, "options_model", None)
    if isinstance(model, type) and issubclass(model, AdapterOptions):
        parse_options(name, model, dict(options))


def canonical_source(name: str, source: str, base_dir: str | os.PathLike[str] | None = None) -> str:
    """The source as adapter ``name`` reads it, for keying a cache of what it reads: a relative path made absolute
    (two folders' ``companies.db`` are two sources), through the adapter's ``canonical_source`` classmethod when it
    has one; the source as given otherwise. ``base_dir`` (a pipeline file's folder): a relative file path, or the
    file of a relative ``sqlite:///`` URL, that exists there is read from there, as the pipeline's other relative
    paths; else from the working folder."""
    source = relative_to(source, base_dir) if base_dir is not None else source
    canon = getattr(get_adapter_class(name), "canonical_source", None)
    return canon(source) if callable(canon) else source


def relative_to(source: str, base_dir: str | os.PathLike[str]) -> str:
    """``source`` with a relative file path (or a ``sqlite:///`` URL's relative file) that exists under
    ``base_dir`` made absolute there; anything else unchanged."""
    if not source:
        return source
    head, sep, rest = source.partition(":///")
    if sep and head.lower().startswith("sqlite") and "://" not in rest:  # sqlite:///rel.db (sqlite:////abs.db: abs)
        path, q, query = rest.partition("?")
        if path and not path.startswith(("/", ":memory:", "file:")) and not os.path.isabs(path) \
                and os.path.isfile(os.path.join(base_dir, path)):
            return f"{head}:///{os.path.abspath(os.path.join(base_dir, path))}{q}{query}"
        return source
    if "://" in source or os.path.isabs(os.path.expanduser(source)):
        return source
    found = os.path.join(base_dir, os.path.expanduser(source))
    return os.path.abspath(found) if os.path.exists(found) else source
