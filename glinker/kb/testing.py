"""The shared conformance suite every KB adapter passes, built-in or third-party.

Subclass :class:`AdapterConformance` in a pytest module, set ``adapter_name`` and implement ``make_adapter``,
which writes the given entities into your source format and returns an adapter reading them::

    class TestMyAdapter(AdapterConformance):
        adapter_name = "mine"
        def make_adapter(self, entities, tmp_path, **options): ...

Every assertion says what it expected and what it got. Under pytest, importing :mod:`glinker.kb` first registers
this module for pytest's assertion rewriting (values shown in failures, with diffs); a plugin whose tests import
this module some other way first can call ``pytest.register_assert_rewrite("glinker.kb.testing")`` in its
``conftest.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from glinker.errors import ConfigError
from glinker.kb.adapters import KBAdapter, get_adapter_class
from glinker.types import Entity

SAMPLE_ENTITIES: list[Entity] = [
    Entity(id="Q90", label="Paris", aliases=["City of Light", "Paname"], description="capital of France",
           types=["Q515", "Q5119"], popularity=300),
    Entity(id="Q830149", label="Paris", aliases=["Paris, Texas"], description="city in Texas, United States",
           types=["Q515"], popularity=40),
    Entity(id="Q167646", label="Paris", description="son of Priam in Greek mythology", types=["Q22988604"],
           popularity=80),
    Entity(id="Q72", label="Zürich", aliases=["Zurich", "Züri"], description="city in Switzerland",
           types=["Q515"], popularity=200),
    Entity(id="Q1490", label="東京", aliases=["Tokyo"], description="capital of Japan", types=["Q1549591"],
           popularity=250),
    Entity(id="Q42", label="Douglas Adams", aliases=["Douglas Noël Adams"], description="", types=["Q5"],
           popularity=94),
    Entity(id="Q7", label="a \"quoted\", comma; name", description="line\nbreak, tab\t and | pipe-free text",
           types=[], popularity=0),
]


def core(e: Entity) -> tuple[Any, ...]:
    """The fields every adapter must carry through unchanged (aliases compared as a set)."""
    return (e.id, e.label, e.description, tuple(sorted(e.aliases)), tuple(e.types), float(e.popularity))


class AdapterConformance:
    """Inherited pytest tests: registration, protocol, round trip, homonyms, streaming, reports, option errors."""

    adapter_name: str = ""
    entities: list[Entity] = SAMPLE_ENTITIES

    def make_adapter(self, entities: list[Entity], tmp_path: Path, **options: Any) -> KBAdapter:
        """Write ``entities`` into the adapter's source format under ``tmp_path`` and return an adapter on it."""
        raise NotImplementedError

    def test_registered_through_entry_point(self, tmp_path: Path) -> None:
        cls = get_adapter_class(self.adapter_name)
        got = type(self.make_adapter(self.entities, tmp_path))
        assert got is cls, (f"the entry point {self.adapter_name!r} loads {cls.__module__}:{cls.__qualname__}, but "
                            f"make_adapter returned a {got.__module__}:{got.__qualname__}")

    def test_satisfies_protocol(self, tmp_path: Path) -> None:
        adapter = self.make_adapter(self.entities, tmp_path)
        lacking = [m for m in ("name", "options_model", "report", "iter_entities", "estimate_count", "describe")
                   if not hasattr(adapter, m)]
        assert isinstance(adapter, KBAdapter), f"the adapter lacks {', '.join(lacking)} of the KBAdapter protocol"
        assert adapter.name == self.adapter_name, \
            f"the adapter's name is {adapter.name!r}, its entry point's {self.adapter_name!r}"

    def test_round_trip_core_fields(self, tmp_path: Path) -> None:
        got = list(self.make_adapter(self.entities, tmp_path).iter_entities())
        wrong = [type(e).__name__ for e in got if not isinstance(e, Entity)]
        assert not wrong, f"iter_entities yielded {', '.join(sorted(set(wrong)))} items, not glinker.types.Entity"
        want = sorted(map(core, self.entities))
        have = sorted(map(core, got))
        assert have == want, ("the entities read back differ from those written (id, label, description, aliases, "
                              "types, popularity): missing " + repr([w for w in want if w not in have])
                              + ", unexpected " + repr([h for h in have if h not in want]))

    def test_keeps_every_homonym(self, tmp_path: Path) -> None:
        got = list(self.make_adapter(self.entities, tmp_path).iter_entities())
        paris = sorted(e.id for e in got if e.label == "Paris")
        assert paris == ["Q167646", "Q830149", "Q90"], f"the entities labelled 'Paris' read back are {paris}"

    def test_streams_lazily_and_repeatably(self, tmp_path: Path) -> None:
        adapter = self.make_adapter(self.entities, tmp_path)
        it = adapter.iter_entities()
        assert isinstance(it, Iterator), \
            f"iter_entities returned a {type(it).__name__}, not an iterator (write it as a generator: yield)"
        first = next(it)
        assert isinstance(first, Entity), f"iter_entities yielded a {type(first).__name__}, not an Entity"
        it.close()  # type: ignore[attr-defined]
        a = [core(e) for e in adapter.iter_entities()]
        b = [core(e) for e in adapter.iter_entities()]
        assert a == b, "two readings of the same source gave different entities or another order"
        assert len(a) == len(self.entities), f"a reading gave {len(a)} entities, {len(self.entities)} were written"

    def test_report_counts(self, tmp_path: Path) -> None:
        adapter = self.make_adapter(self.entities, tmp_path)
        n = sum(1 for _ in adapter.iter_entities())
        rep = adapter.report
        assert n == len(self.entities), f"iter_entities gave {n} entities, {len(self.entities)} were written"
        assert rep.yielded == n, (f"report.yielded is {rep.yielded} after {n} entities (set self.report = "
                                  "AdapterReport() at the start of iter_entities and count each yield)")
        assert rep.bad == 0, f"report.bad is {rep.bad} for a source without bad records: {rep.problems[:3]}"

    def test_estimate_count(self, tmp_path: Path) -> None:
        est = self.make_adapter(self.entities, tmp_path).estimate_count()
        assert est is None or (len(self.entities) / 3 <= est <= len(self.entities) * 3), \
            f"estimate_count() is {est} for {len(self.entities)} entities (return None when it cannot tell)"

    def test_describe_is_json(self, tmp_path: Path) -> None:
        d = self.make_adapter(self.entities, tmp_path).describe()
        assert isinstance(d, dict), f"describe() returned a {type(d).__name__}, not a dict"
        assert d.get("adapter") == self.adapter_name, \
            f"describe()['adapter'] is {d.get('adapter')!r}, the adapter's name is {self.adapter_name!r}"
        try:
            json.dumps(d)
        except (TypeError, ValueError) as e:
            raise AssertionError(f"describe() is not JSON-ready: {e}") from None

    def test_unknown_option_is_a_config_error(self, tmp_path: Path) -> None:
        import pytest

        with pytest.raises(ConfigError) as ei:
            self.make_adapter(self.entities, tmp_path, no_such_option_xyz=1)
        assert "no_such_option_xyz" in str(ei.value), f"the ConfigError does not name the option: {ei.value}"

    def test_empty_source(self, tmp_path: Path) -> None:
        adapter = self.make_adapter([], tmp_path)
        got = list(adapter.iter_entities())
        assert got == [], f"an empty source gave {len(got)} entities"
