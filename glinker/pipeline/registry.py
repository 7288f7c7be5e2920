"""The stage registry: built-in stages by name, third-party stages through the ``glinker.stages`` entry points.

A pipeline file can only name registered types; it can never import an arbitrary class.
"""

from __future__ import annotations

import importlib
import logging
from importlib import metadata
from typing import TYPE_CHECKING

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


class StageRegistry:
    """Maps stage type names to classes, loading built-ins and entry points lazily."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Stage]] = {}
        self._paths: dict[str, str] = dict(BUILTIN_STAGES)
        self._plugins_loaded = False

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in BUILTIN_STAGES:
                log.warning("entry point %s=%s ignored: %r is a built-in stage", ep.name, ep.value, ep.name)
                continue
            self._paths.setdefault(ep.name, ep.value)

    def register(self, cls: type[Stage], name: str | None = None) -> type[Stage]:
        """Register a stage class in this process (tests, notebooks). Returns the class."""
        key = name or cls.type_name
        if not key:
            raise ConfigError(f"stage class {cls.__name__} has no type_name",
                              fix="set type_name = '...' on the class, or pass a name")
        if key in BUILTIN_STAGES and not cls.__module__.startswith("glinker."):
            raise ConfigError(f"{key!r} is a built-in stage type; {cls.__name__} cannot replace it",
                              fix="give the class another type_name")
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
        """The class registered as ``name``; raises ConfigError (E230) if unknown or not importable."""
        from glinker.pipeline.stage import Stage

        if name in self._classes:
            return self._classes[name]
        self._load_plugins()
        target = self._paths.get(name)
        if target is None:
            raise ConfigError(f"unknown stage type {name!r}", code="E230")
        module_name, _, attr = target.partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"stage type {name!r} points to {target!r}, which cannot be imported: {e}",
                              code="E231", fix="install the package that provides it, or fix its entry point") from e
        except Exception as e:  # the plugin's module fails as it is imported: its bug, named as such
            log.debug("importing %s failed", module_name, exc_info=True)
            raise ConfigError(f"stage type {name!r}: importing {module_name!r} failed: {type(e).__name__}: {e}",
                              code="E231", fix=f"fix or update the package that provides {module_name!r} (glinker "
                              "-vv shows the traceback)") from e
        if not (isinstance(obj, type) and issubclass(obj, Stage)):
            raise ConfigError(f"stage type {name!r} ({target}) is not a glinker Stage subclass", code="E231",
                              fix="derive the class from glinker.pipeline.Stage")
        if not obj.type_name:
            obj.type_name = name
        self._classes[name] = obj
        return obj


registry = StageRegistry()
"""The process-wide stage registry."""


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Class decorator: register a Stage subclass under its ``type_name``."""
    return registry.register(cls)
