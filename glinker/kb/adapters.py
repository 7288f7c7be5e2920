"""The KB adapter contract and the registry that finds adapters through the ``glinker.kb_adapters`` entry points.

An adapter turns one source (a dump, a table, a file) into a stream of :class:`glinker.types.Entity`. Built-in
adapters are registered exactly like a third party's: an entry point in the ``glinker.kb_adapters`` group.
"""

from __future__ import annotations

import enum
import hashlib
import inspect
import json
import logging
import os
import re
import types
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, Union, get_args, get_origin, runtime_checkable

from pydantic import BaseModel, ConfigDict, SecretBytes, SecretStr, ValidationError, model_validator

from glinker.errors import ConfigError, DataError, GlinkerError, KBError, closest
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
        """Apply an adapter's ``on_error`` policy to a bad record: re-raise ``err`` (its fix saying that ``-o
        on_error=skip`` skips such records, when it does not yet), or count it and go on."""
        if on_error == "raise":
            fix = getattr(err, "fix", None)
            if hasattr(err, "fix") and "on_error=skip" not in (fix or ""):
                err.fix = (f"{fix}; " if fix else "mend the record in the source; ") + \
                    "-o on_error=skip skips such records"
                if hasattr(err, "render"):
                    err.args = (err.render(),)
            raise err
        self.problem(err.where or where, err.message)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary for the manifest."""
        return {"read": self.read, "yielded": self.yielded, "skipped": self.skipped, "bad": self.bad,
                "problems": self.problems[:50]}


_WIDE_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"),
              (b"\xfe\xff", "UTF-16"))


def wide_unicode(head: bytes) -> str | None:
    """The encoding of a file that starts with ``head`` (its first bytes, 64 or so) when it is UTF-16 or UTF-32
    text, else None: ``"UTF-16"`` / ``"UTF-32"`` for a byte-order mark (Excel's and Notepad's "Unicode text"),
    ``"UTF-16LE"``, ``"UTF-16BE"``, ``"UTF-32LE"`` or ``"UTF-32BE"`` for text without one (UTF-16 when its first
    character is Latin: the NUL bytes between its letters give it away; UTF-16 of other scripts without a mark is
    not told from UTF-8 here, and fails as invalid UTF-8). The names are both Python codecs and ``iconv -f`` names.

    The one detection of the readers of UTF-8 text: ``glinker link``'s input, the JSONL adapter (which refuse such a
    file, saying so) and the CSV adapter (which reads it in that encoding)."""
    for bom, enc in _WIDE_BOMS:
        if head.startswith(bom):
            return enc
    h = head[:64]
    if len(h) < 2 or b"\x00" not in h[:4]:
        return None

    def nul_share(start: int, step: int) -> float:
        part = h[start::step]
        return part.count(0) / len(part) if part else 0.0

    if len(h) >= 4 and (h[0] or h[1]) and nul_share(2, 4) == nul_share(3, 4) == 1.0:  # U+0000-U+FFFF, 4 bytes each
        return "UTF-32LE"
    if len(h) >= 4 and (h[2] or h[3]) and nul_share(0, 4) == nul_share(1, 4) == 1.0:
        return "UTF-32BE"
    if h[0] and not h[1] and nul_share(1, 2) >= 0.5:
        return "UTF-16LE"
    if h[1] and not h[0] and nul_share(0, 2) >= 0.5:
        return "UTF-16BE"
    return None


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
        """Source and options, JSON-ready, for the KB manifest (the values of secret options, see
        :func:`secret_options`, are recorded as ``***``)."""
        ...


# -- secret options ------------------------------------------------------------------------------------------------

MASK = "***"
"""How a secret option's value is shown (pipeline validate, run records, messages, the KB manifest)."""

# a name that says it holds a secret, as the whole name or after a prefix (db_password, x_api_key, github_auth_token):
# not any name ending in "_token" (sep_token, pad_token, min_token are settings, not secrets)
_SECRET_NAME = re.compile(r"(?:^|_)(?:password|passwd|pwd|secret|secret_key|client_secret|api_key|apikey|access_key|"
                          r"private_key|credentials?|auth_token|access_token|refresh_token|bearer_token|"
                          r"authorization|cookie)$|^token$")


def is_secret_name(name: str) -> bool:
    """Whether an option's name says it holds a secret, for every adapter: ``password``, ``passwd``, ``pwd``,
    ``secret``, ``secret_key``, ``client_secret``, ``api_key``/``apikey``, ``access_key``, ``private_key``,
    ``credential(s)``, ``token``, ``auth_token``, ``access_token``, ``refresh_token``, ``bearer_token``,
    ``authorization``, ``cookie``, case-insensitive, as the whole name or after a prefix (``db_password``,
    ``x_api_key``, ``apiKey``); ``sep_token`` or ``pad_token`` is not one."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(name)).lower()
    return bool(_SECRET_NAME.search(re.sub(r"[^a-z0-9]+", "_", words).strip("_")))


def _holds_secret_type(annotation: Any) -> bool:
    if annotation in (SecretStr, SecretBytes):
        return True
    return any(_holds_secret_type(a) for a in get_args(annotation))


def _option_secrets(adapter: Any) -> tuple[set[str], set[str]]:
    """One walk of the options ``adapter`` (a class, an instance, or None) has: the names it declares secret (its
    ``secret_options`` class attribute and the ``SecretStr``/``SecretBytes`` fields of its ``options_model``), and
    the names of its ``options_model`` fields that :func:`is_secret_name` finds secret."""
    cls = adapter if isinstance(adapter, type) or adapter is None else type(adapter)
    declared = {str(k) for k in (getattr(cls, "secret_options", None) or ())}
    named: set[str] = set()
    model = getattr(cls, "options_model", None)
    for key, f in (getattr(model, "model_fields", None) or {}).items():
        if _holds_secret_type(f.annotation):
            declared.add(key)
        if is_secret_name(key):
            named.add(key)
    return declared, named


def declared_secrets(adapter: Any) -> frozenset[str]:
    """The option names ``adapter`` (a class, an instance, or None) declares secret: its ``secret_options`` class
    attribute and the ``SecretStr``/``SecretBytes`` fields of its ``options_model``."""
    return frozenset(_option_secrets(adapter)[0])


def secret_options(adapter: Any, names: Iterable[str] = ()) -> frozenset[str]:
    """The secret option names of ``adapter`` (a class, an instance, or None when unknown) among its declared ones
    and ``names``: its ``secret_options`` class attribute, the ``SecretStr`` fields of its ``options_model``
    (:func:`declared_secrets`), and every name :func:`is_secret_name` finds secret."""
    declared, named = _option_secrets(adapter)
    return frozenset(declared | named | {str(k) for k in names if is_secret_name(str(k))})


def _unset(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _maskable(value: Any) -> bool:
    """Whether a secret option's value is hidden: a setting (True/False, a number) or an unset value is not."""
    return not _unset(value) and not isinstance(value, (bool, int, float))


def _mask_nested(value: Any) -> Any:
    """``value`` (an option's value) with the values of its secret-named keys, at any depth, shown as ``***``
    (``{'headers': {'Authorization': 'Bearer ...'}}``)."""
    if isinstance(value, (SecretStr, SecretBytes)):
        return "" if not value.get_secret_value() else MASK
    if isinstance(value, Mapping):
        return {k: MASK if is_secret_name(str(k)) and _maskable(v) else _mask_nested(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask_nested(v) for v in value]
    return value


def mask_secrets(adapter: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with the values of ``adapter``'s secret options (see :func:`secret_options`), and of secret-named
    keys in nested mappings and lists, shown as ``***``; True/False, numbers and unset values are shown as they
    are."""
    secret = secret_options(adapter, options)
    out: dict[str, Any] = {}
    for k, v in options.items():
        if isinstance(v, (SecretStr, SecretBytes)):
            out[k] = "" if not v.get_secret_value() else MASK
        else:
            out[k] = MASK if k in secret and _maskable(v) else _mask_nested(v)
    return out


def _value_hash(value: Any) -> str:
    if isinstance(value, (SecretStr, SecretBytes)):
        value = value.get_secret_value()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    raw = json.dumps(value, sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()[:16]


def keyed_options(adapter: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` as a cache, build or resume key holds them: the options ``adapter`` declares secret
    (:func:`declared_secrets`: how the source is reached, so a rotated key keeps the cache) left out; an option
    whose name only says it may be a secret (:func:`is_secret_name`) kept as a hash of its value (it may well
    change what is read); the others as they are."""
    declared = declared_secrets(adapter)
    guessed = secret_options(adapter, options)
    out: dict[str, Any] = {}
    for k, v in options.items():
        if k in declared:
            continue
        out[k] = _value_hash(v) if k in guessed and _maskable(v) else v
    return out


def described(adapter: Any) -> dict[str, Any]:
    """``adapter.describe()`` with its secret options' values shown as ``***`` (what the KB manifest records)."""
    from glinker.io import redact

    d = dict(adapter.describe())
    if isinstance(d.get("source"), str):  # a URL's password and secret query parameters
        d["source"] = redact(d["source"])
    if isinstance(d.get("options"), Mapping):
        d["options"] = mask_secrets(adapter, d["options"])
    return d


# -- options -------------------------------------------------------------------------------------------------------

def parse_options(adapter: str, model: type[BaseModel], options: dict[str, Any]) -> Any:
    """Validate adapter options; an unknown or ill-typed option is a ConfigError naming it and the fix (for a value
    outside a fixed set, the allowed values)."""
    known = check_option_names(adapter, model, options)
    try:
        return model(**options)
    except ValidationError as e:
        raise _invalid_value(adapter, model, e, known) from None


def _invalid_value(adapter: str, model: type[BaseModel] | None, e: ValidationError, known: list[str]) -> ConfigError:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    field = (getattr(model, "model_fields", None) or {}).get(str(err["loc"][0])) if err["loc"] else None
    allowed = _allowed_values(field.annotation) if field is not None else None
    if allowed:
        fix = f"allowed values for {err['loc'][0]}: {', '.join(repr(v) for v in allowed)}"
    elif err.get("type") == "value_error":  # the option's own check refused a value of the right type: its message
        fix = f"give {loc} a value the message above allows"  # says what (e.g. an encoding Python knows)
    elif field is not None:
        fix = f"give {loc} a value of type {_type_name(field.annotation)}"
    else:
        fix = f"valid options: {', '.join(known)}"
    return ConfigError(f"invalid value for option {loc!r}: {err['msg']}", where=f"{adapter}.{loc}", fix=fix)


def _allowed_values(annotation: Any) -> list[Any] | None:
    """The values an option's type allows when it names them (a Literal, an Enum, a list of either); else None."""
    origin = get_origin(annotation)
    if origin is Literal:
        return list(get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [m.value for m in annotation]
    if origin in (list, set, frozenset, tuple):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        return _allowed_values(args[0]) if len(args) == 1 else None
    if origin in (Union, types.UnionType):
        vals: list[Any] = []
        for a in get_args(annotation):
            if a is type(None):
                continue
            sub = _allowed_values(a)
            if sub is None:
                return None
            vals += sub
        return vals or None
    return None


def _type_name(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def check_option_names(adapter: str, model: type[BaseModel], options: Any) -> list[str]:
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


# -- the registry --------------------------------------------------------------------------------------------------

BUILTIN_ADAPTERS: dict[str, str] = {
    "wikidata": "kb_adapters.wikidata:WikidataAdapter",
    "sql": "kb_adapters.sql:SQLAdapter",
    "jsonl": "kb_adapters.jsonl:JSONLAdapter",
    "csv": "kb_adapters.csv:CSVAdapter",
}
"""The built-in adapters: their names always read with these classes, whatever else is installed."""

_WARNED: set[Any] = set()


def _warn_once(key: Any, msg: str, *args: Any) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(msg, *args)


def _entry_points() -> list[Any]:
    """Every installed entry point of the ``glinker.kb_adapters`` group (tests replace this)."""
    from importlib.metadata import entry_points

    return list(entry_points(group=ENTRY_POINT_GROUP))


def _dist(ep: Any) -> str | None:
    """``name version`` of the distribution that registers ``ep``, when known."""
    try:
        d = getattr(ep, "dist", None)
        return f"{d.name} {d.version}" if d is not None and d.name else None
    except Exception:  # noqa: BLE001 - broken metadata: the entry point is named without it
        return None


def _ep_said(ep: Any) -> str:
    """An entry point as messages name it: ``name = module:attr (package version)``."""
    dist = _dist(ep)
    return f"{ep.name} = {ep.value}" + (f" (distribution {dist})" if dist else "")


def _registry() -> dict[str, Any]:
    """Adapter name -> entry point. A built-in name always resolves to the built-in adapter (a third party's entry
    point of that name is ignored, with a warning naming its package); of two third-party entry points of one
    name, the one of the package first by name is used, with a warning naming both (each warning once a process)."""
    from importlib.metadata import EntryPoint

    table: dict[str, Any] = {n: EntryPoint(n, v, ENTRY_POINT_GROUP) for n, v in BUILTIN_ADAPTERS.items()}
    others: dict[str, list[Any]] = {}
    for ep in _entry_points():
        if ep.name in BUILTIN_ADAPTERS:
            if ep.value == BUILTIN_ADAPTERS[ep.name]:
                table[ep.name] = ep  # the installed one: it knows its package
            else:
                _warn_once(("builtin", ep.name, ep.value),
                           "KB adapter entry point %s ignored: %r is a built-in adapter, which that name always reads "
                           "with (the package should register its adapter under another name)", _ep_said(ep), ep.name)
            continue
        same = others.setdefault(ep.name, [])
        if all(o.value != ep.value for o in same):  # one package found twice on the path is one adapter
            same.append(ep)
    for name, eps in others.items():
        eps.sort(key=lambda e: (_dist(e) or "~", e.value))
        table[name] = eps[0]
        if len(eps) > 1:
            _warn_once(("clash", name, tuple(e.value for e in eps)),
                       "two installed packages register a KB adapter named %r: %s; using the first (uninstall one, or "
                       "have one register its adapter under another name)", name, " and ".join(map(_ep_said, eps)))
    return table


def available_adapters() -> dict[str, str]:
    """Adapter name -> ``module:Class`` for every installed ``glinker.kb_adapters`` entry point (as resolved: the
    built-in names to the built-in adapters)."""
    return {name: ep.value for name, ep in _registry().items()}


def adapter_label(adapter: Any) -> str:
    """``the <name> adapter (<module>:<Class>)``, for messages about an adapter's own failures."""
    cls = adapter if isinstance(adapter, type) else type(adapter)
    return f"the {_adapter_name(cls)} adapter ({cls.__module__}:{cls.__qualname__})"


def _adapter_name(adapter: Any) -> str:
    cls = adapter if isinstance(adapter, type) else type(adapter)
    return str(getattr(cls, "name", None) or cls.__name__)


def _shadowing_package(ep: Any) -> str | None:
    """Where a foreign ``kb_adapters`` package that hides the built-in adapters comes from (a user's folder of that
    name in the working folder, which ``python -m`` and scripts put first on ``sys.path``), or None."""
    import sys

    if not str(ep.value).startswith("kb_adapters.") or ep.value not in BUILTIN_ADAPTERS.values():
        return None
    mod = sys.modules.get("kb_adapters")
    where = getattr(mod, "__file__", None) or next(iter(getattr(mod, "__path__", []) or []), None)
    if mod is None or where is None:
        return None
    ours = Path(__file__).resolve().parents[2] / "kb_adapters"
    found = Path(where).resolve()
    found = found.parent if found.name == "__init__.py" else found
    return None if found == ours else str(found)


def get_adapter_class(name: str) -> type[KBAdapter]:
    """Load the adapter class registered under ``name`` in the entry-point group: a KBError naming the entry point
    (``module:attr``) and its package when it cannot be imported, is not a class, or lacks ``iter_entities`` or
    ``describe``."""
    eps = _registry()
    if name not in eps:
        hint = closest(name, eps)
        raise ConfigError(f"no KB adapter named {name!r}", where="adapter",
                          fix=(f"did you mean {hint!r}? " if hint else "")
                          + f"installed adapters: {', '.join(sorted(eps)) or 'none'}; third-party adapters register "
                          f"an entry point in the {ENTRY_POINT_GROUP!r} group")
    ep = eps[name]
    dist = _dist(ep)
    try:
        obj = ep.load()
    except Exception as e:  # whatever a plugin's module raises at import is said as the plugin's
        log.debug("loading the KB adapter entry point %s failed", _ep_said(ep), exc_info=True)
        missing = isinstance(e, ImportError)
        shadow = _shadowing_package(ep) if missing else None
        if shadow is not None:
            raise KBError(f"the KB adapter {name!r} (entry point {_ep_said(ep)}) could not be imported: the package "
                          f"'kb_adapters' is taken from {shadow}, not from glinker's installation: {type(e).__name__}: "
                          f"{e}", where="adapter",
                          fix=f"run from another folder (python -m and scripts put the working folder first on "
                              f"sys.path) or rename {shadow}") from e
        raise KBError(f"the KB adapter {name!r} (entry point {_ep_said(ep)}) could not be "
                      f"{'imported' if missing else 'loaded'}: {type(e).__name__}: {e}", where="adapter",
                      fix=(f"reinstall {dist.split()[0]}, or install what it needs" if dist and missing else
                           "install the package that provides it (pip install -e . for the built-in ones)"
                           if missing else f"its module raised while being imported: mend what it says (an unset "
                           f"variable, a missing file), or report it to the authors of "
                           f"{dist.split()[0] if dist else ep.value.split(':')[0]}; -vv shows the traceback")) from e
    if not isinstance(obj, type):
        raise KBError(f"the KB adapter entry point {_ep_said(ep)} is {type(obj).__name__} {str(obj)[:40]!r}, not an "
                      "adapter class", where="adapter",
                      fix="point the entry point at the adapter class (`name = \"package.module:Class\"` under "
                          f"[project.entry-points.{ENTRY_POINT_GROUP!r}]) and reinstall the package")
    lacking = [m for m in ("iter_entities", "describe") if not callable(getattr(obj, m, None))]
    if lacking:
        raise KBError(f"the KB adapter {name!r} (entry point {_ep_said(ep)}) has no {' and no '.join(lacking)} method",
                      where="adapter",
                      fix="an adapter class defines iter_entities() (yielding glinker.types.Entity) and describe() "
                          "(a JSON-ready dict: adapter, source, options); see 'Writing an adapter' in docs/kb.md")
    own = getattr(obj, "name", None)
    if isinstance(own, str) and own and own != name:
        raise _misnamed(name, ep, f"its class's name is {own!r}")
    return obj


def _misnamed(name: str, ep: Any, what: str) -> KBError:
    """An adapter registered under one name that calls itself another: a KB built with it records the other name,
    which `kb add` and a pipeline's KB then cannot load."""
    return KBError(f"the KB adapter entry point {_ep_said(ep)} is registered as {name!r} but {what}: a KB built with "
                   f"it records that name, which `glinker kb add` and pipelines look up and do not find",
                   where="adapter",
                   fix=f"give the class name = {name!r} and have describe() return 'adapter': {name!r} (or register the "
                       f"entry point under the class's name) and reinstall the package")


def load_adapter(name: str, source: str, **options: Any) -> KBAdapter:
    """Instantiate the adapter ``name`` on ``source`` with ``options`` checked as ``glinker pipeline validate``
    checks them (:func:`check_adapter_options`). An adapter's own failure to start is a ConfigError (options it
    refuses) or a KBError naming the adapter; an adapter without a ``report`` gets an empty one."""
    cls = get_adapter_class(name)
    check_adapter_options(name, options, cls=cls)
    try:
        ad = cls(source, **options)  # type: ignore[call-arg]
    except GlinkerError:
        raise
    except TypeError as e:
        log.debug("%s refused its options", adapter_label(cls), exc_info=True)
        key = _named_option(str(e), options)
        raise ConfigError(f"{adapter_label(cls)} refused its options {sorted(options)}: TypeError: {e}",
                          where=f"{name}.{key}" if key else name,
                          fix="check the options (-o key=value, a pipeline kb block's options:) against the "
                              "adapter's documentation") from e
    except Exception as e:  # an adapter's own error is said with the adapter's name
        from glinker.io import redact

        log.debug("%s failed to start", adapter_label(cls), exc_info=True)
        raise KBError(f"{adapter_label(cls)} failed to open {redact(str(source))}: {type(e).__name__}: {e}",
                      where=f"{name}.source", fix="check the source and the options (-vv shows the traceback)") from e
    if getattr(ad, "report", None) is None:
        ad.report = AdapterReport()  # type: ignore[misc]
    try:
        said = ad.describe().get("adapter")
    except Exception:  # noqa: BLE001 - a describe() that fails is said where a build calls it
        said = name
    if said != name:
        raise _misnamed(name, _registry()[name], f"describe() returns 'adapter': {said!r}")
    return ad  # type: ignore[no-any-return]


def _named_option(message: str, options: Mapping[str, Any]) -> str | None:
    """The one option ``message`` names (as a word), if exactly one; else None."""
    named = [k for k in options if re.search(rf"(?<![\w]){re.escape(str(k))}(?![\w])", message)]
    return str(named[0]) if len(named) == 1 else None


def check_adapter_options(name: str, options: dict[str, Any], *, cls: type | None = None) -> None:
    """Check an adapter's name and options without reading its source (``glinker pipeline validate``, and
    :func:`load_adapter` before every build): an unknown adapter or option, an ill-typed value, or a value the
    adapter refuses before connecting (an adapter may define a ``check_options(options)`` classmethod for that; else
    its ``options_model`` is parsed; else its constructor's parameters name the options it takes) is a ConfigError
    whose ``where`` names the option (``adapter``, ``<adapter>.<option>[.<key>]``). An adapter with none of these
    gets a warning that its options are not checked."""
    cls = cls if cls is not None else get_adapter_class(name)
    check = getattr(cls, "check_options", None)
    model = getattr(cls, "options_model", None)
    model = model if isinstance(model, type) and issubclass(model, BaseModel) else None
    try:
        if callable(check):
            check(dict(options))
        elif model is not None:
            parse_options(name, model, dict(options))
        else:
            _check_by_signature(name, cls, options)
    except GlinkerError:
        raise
    except ValidationError as e:  # a check_options that builds its model itself
        raise _invalid_value(name, model, e, list(getattr(model, "model_fields", None) or ())) from None
    except Exception as e:  # an adapter's own exception: said as a refused option
        log.debug("%s refused its options", adapter_label(cls), exc_info=True)
        key = _named_option(str(e), options)
        raise ConfigError(f"{adapter_label(cls)} refused its options: {type(e).__name__}: {e}",
                          where=f"{name}.{key}" if key else name,
                          fix="correct the option" + (f" {key!r}" if key else "s")
                              + " (the adapter's check_options raised a plain exception; adapters report a bad "
                              "option as glinker.errors.ConfigError(where='<adapter>.<option>'))") from e


def _check_by_signature(name: str, cls: type, options: Mapping[str, Any]) -> None:
    """Options of an adapter with neither ``check_options`` nor ``options_model``: checked against the names its
    constructor takes; one that takes ``**options`` gets a warning that they are not checked."""
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):  # no signature to read (a C type): nothing to check against
        params = None
    if params is not None and (not params or params[0].kind not in (
            inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.VAR_POSITIONAL)):
        raise KBError(f"{adapter_label(cls)} cannot be constructed as cls(source, **options)", where="adapter",
                      fix="give the adapter class an __init__(self, source, **options)")
    if params is None or any(p.kind is p.VAR_KEYWORD for p in params):
        if options:
            _warn_once(("unchecked", name, tuple(sorted(map(str, options)))),
                       "%s declares no options_model or check_options: its options (%s) are passed on unchecked (a "
                       "misspelt one is not caught)", adapter_label(cls), ", ".join(sorted(map(str, options))))
        return
    takes = [p.name for p in params[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in options:
        if key not in takes:
            hint = closest(str(key), takes)
            raise ConfigError(f"unknown option {key!r} for the {name} adapter", where=f"{name}.{key}",
                              fix=(f"did you mean {hint!r}? " if hint else "")
                              + (f"valid options: {', '.join(takes)}" if takes else
                                 f"{adapter_label(cls)} takes no options"))


# -- reading -------------------------------------------------------------------------------------------------------

class AdapterError(KBError):
    """An adapter's own exception (not a glinker error) raised while it streamed, said with the adapter's name and
    how many entities it gave before. Where Python allows it, the error is also an instance of the original
    exception's class (``except ConnectionError`` still catches it); the original is its ``__cause__``."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.render()

    def __reduce__(self) -> Any:  # pickled as a plain KBError (the combined class is made at run time)
        return (_kb_error, (self.message, self.where, self.fix))


def _kb_error(message: str, where: str | None, fix: str | None) -> KBError:
    return KBError(message, where=where, fix=fix)


_FAILURE_TYPES: dict[type, type] = {}


def adapter_failure(adapter: Any, exc: BaseException, count: int) -> KBError:
    """The KBError for ``exc``, raised by ``adapter`` after it yielded ``count`` entities."""
    msg = f"{adapter_label(adapter)} failed after {count:,} entities: {type(exc).__name__}: {exc}"
    where = f"{_adapter_name(adapter)}.source"
    fix = ("check the source and the adapter's options (-vv shows the traceback); "
           + ("a build keeps the entities read before the failure and resumes after them when run again"
              if getattr(adapter, "resumable", True) else
              "this adapter's source is read again from the start when the build is run again"))
    base = type(exc)
    try:
        kind = _FAILURE_TYPES.get(base)
        if kind is None:
            kind = type("AdapterError", (AdapterError, base), {"__module__": __name__})
            _FAILURE_TYPES[base] = kind
        # made as the original was (its __init__ with its arguments, whatever they are), so its attributes survive:
        # an OSError's errno, strerror and filename, a requests.HTTPError's response, a custom class's own
        args: tuple[Any, ...] = exc.args
        if isinstance(exc, OSError) and exc.errno is not None:
            args = (exc.errno, exc.strerror)
            if exc.filename is not None or exc.filename2 is not None:
                args += (exc.filename, None, exc.filename2)
        err = kind.__new__(kind, *args)
        try:
            base.__init__(err, *args)
        except Exception:  # an __init__ whose parameters are not its args: its attributes are copied
            log.debug("%s(*args) failed: its attributes are copied only", base.__name__, exc_info=True)
        err.__dict__.update(getattr(exc, "__dict__", {}))
        err.message, err.where, err.fix = msg, where, fix
        err.args = (err.render(),)
        if not isinstance(err, base):
            raise TypeError(base.__name__)
        return err  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001 - a class Python cannot combine (another layout, a final class) or make
        return AdapterError(msg, where=where, fix=fix)


def read_entities(adapter: Any) -> Iterator[Entity]:
    """Stream ``adapter.iter_entities()`` checked: an item that is not a :class:`glinker.types.Entity` is a
    DataError naming the adapter and the item's number; the adapter's own exception (not a glinker error, which
    passes unchanged) a KBError naming the adapter and how many entities it gave (:func:`adapter_failure`).
    Closing this iterator closes the adapter's."""
    n = 0
    it: Any = None
    try:
        try:
            it = iter(adapter.iter_entities())
        except GlinkerError:
            raise
        except Exception as e:
            log.debug("%s failed", adapter_label(adapter), exc_info=True)
            raise adapter_failure(adapter, e, 0) from e
        while True:
            try:
                e = next(it)
            except StopIteration:
                return
            except GlinkerError:
                raise
            except Exception as exc:  # the adapter's own error, said with its name
                log.debug("%s failed", adapter_label(adapter), exc_info=True)
                raise adapter_failure(adapter, exc, n) from exc
            n += 1
            if not isinstance(e, Entity):
                raise DataError(f"{adapter_label(adapter)} yielded {type(e).__name__} {str(e)[:60]!r} as item {n:,}, "
                                "not a glinker.types.Entity", where=f"{_adapter_name(adapter)}.source",
                                fix="the adapter's iter_entities must yield glinker.types.Entity objects (e.g. "
                                    "Entity(id=..., label=...), or Entity(**record) for a dict)")
            yield e
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def canonical_source(name: str, source: str, base_dir: str | os.PathLike[str] | None = None) -> str:
    """The source as adapter ``name`` reads it, for keying a cache of what it reads: a relative path made absolute
    (two folders' ``companies.db`` are two sources), through the adapter's ``canonical_source`` classmethod when it
    has one; the source as given otherwise. ``base_dir`` (a pipeline file's folder): a relative file path, or the
    file of a relative ``sqlite:///`` URL, that exists there is read from there, as the pipeline's other relative
    paths; else from the working folder."""
    source = relative_to(source, base_dir) if base_dir is not None else source
    canon = getattr(get_adapter_class(name), "canonical_source", None)
    return canon(source) if callable(canon) else source


def _file_parts(source: str) -> tuple[str, str, str] | None:
    """``source`` as ``(before, path, after)`` around the file path it names (``before + path + after == source``):
    a plain path (``before`` and ``after`` empty), or a ``sqlite:///`` URL's file (``sqlite:///rel.db``,
    ``sqlite:////abs.db``; a driver such as ``sqlite+pysqlite`` too; ``after``: its ``?query``); None where it names
    no file: another URL, an in-memory or ``file:`` URI SQLite database, an empty source."""
    if not source:
        return None
    head, sep, rest = source.partition(":///")
    if sep and head.lower().startswith("sqlite"):
        path, q, query = rest.partition("?")
        if not path or path.startswith((":memory:", "file:")) or "://" in rest:
            return None
        return f"{head}{sep}", path, q + query
    if "://" in source:
        return None
    return "", source, ""


def _found_under(path: str, base_dir: str | os.PathLike[str], sqlite: bool) -> str | None:
    """The absolute path of relative ``path`` under ``base_dir`` when it exists there (for a SQLite URL's file: a
    file; a plain path has its ``~`` expanded first: then absolute, so never looked for there), else None."""
    if sqlite:
        if path.startswith("/") or os.path.isabs(path):
            return None
        found = os.path.join(base_dir, path)
        return os.path.abspath(found) if os.path.isfile(found) else None
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return None
    found = os.path.join(base_dir, path)
    return os.path.abspath(found) if os.path.exists(found) else None


def source_file(source: str, base_dir: str | os.PathLike[str] | None = None) -> str | None:
    """The file a KB source names: the source itself when it is a file path, the file of a ``sqlite:///`` URL
    (``sqlite:///rel.db``: ``rel.db``; ``sqlite:////abs.db``: ``/abs.db``), or None where it names no file
    (another URL, an in-memory or ``file:`` URI SQLite database, an empty source). A relative one that exists under
    ``base_dir`` (a pipeline file's folder) is returned absolute, as it is read from there; otherwise as named
    (read from the working folder; ``~`` is left for the caller to expand, as a plain path's is when read).
    :func:`relative_to` writes the source with this file."""
    parts = _file_parts(source)
    if parts is None:
        return None
    before, path, _ = parts
    if before:  # a URL's path is percent-encoded ('?' as %3F), as SQLAlchemy reads it
        from urllib.parse import unquote

        path = unquote(path)
    found = _found_under(path, base_dir, bool(before)) if base_dir is not None else None
    return found if found is not None else path


def relative_to(source: str, base_dir: str | os.PathLike[str]) -> str:
    """``source`` with a relative file path (or a ``sqlite:///`` URL's relative file) that exists under
    ``base_dir`` made absolute there (see :func:`source_file`); anything else unchanged."""
    parts = _file_parts(source)
    if parts is None:
        return source
    before, path, after = parts
    found = _found_under(path, base_dir, bool(before))
    return source if found is None else f"{before}{found}{after}"
