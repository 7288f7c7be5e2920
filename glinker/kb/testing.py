"""The shared conformance suite every KB adapter passes, built-in or third-party.

Subclass :class:`AdapterConformance` in a pytest module, set ``adapter_name`` and implement ``make_adapter``,
which writes the given entities into your source format and returns an adapter reading them::

    class TestMyAdapter(AdapterConformance):
        adapter_name = "mine"
        def make_adapter(self, entities, tmp_path, **options): ...
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
        assert type(self.make_adapter(self.entities, tmp_path)) is cls

    def test_satisfies_protocol(self, tmp_path: Path) -> None:
        adapter = self.make_adapter(self.entities, tmp_path)
        assert isinstance(adapter, KBAdapter)
        assert adapter.name == self.adapter_name

    def test_round_trip_core_fields(self, tmp_path: Path) -> None:
        got = list(self.make_adapter(self.entities, tmp_path).iter_entities())
        assert all(isinstance(e, Entity) for e in got)
        assert sorted(map(core, got)) == sorted(map(core, self.entities))

    def test_keeps_every_homonym(self, tmp_path: Path) -> None:
        got = list(self.make_adapter(self.entities, tmp_path).iter_entities())
        assert sorted(e.id for e in got if e.label == "Paris") == ["Q167646", "Q830149", "Q90"]

    def test_streams_lazily_and_repeatably(self, tmp_path: Path) -> None:
        adapter = self.make_adapter(self.entities, tmp_path)
        it = adapter.iter_entities()
        assert isinstance(it, Iterator)
        first = next(it)
        assert isinstance(first, Entity)
        it.close()  # type: ignore[attr-defined]
        a = [core(e) for e in adapter.iter_entities()]
        b = [core(e) for e in adapter.iter_entities()]
        assert a == b and len(a) == len(self.entities)

    def test_report_counts(self, tmp_path: Path) -> None:
        adapter = self.make_adapter(self.entities, tmp_path)
        n = sum(1 for _ in adapter.iter_entities())
        assert adapter.report.yielded == n == len(self.entities)
        assert adapter.report.bad == 0

    def test_estimate_count(self, tmp_path: Path) -> None:
        est = self.make_adapter(self.entities, tmp_path).estimate_count()
        assert est is None or (len(self.entities) / 3 <= est <= len(self.entities) * 3)

    def test_describe_is_json(self, tmp_path: Path) -> None:
        d = self.make_adapter(self.entities, tmp_path).describe()
        assert d["adapter"] == self.adapter_name
        json.dumps(d)

    def test_unknown_option_is_a_config_error(self, tmp_path: Path) -> None:
        import pytest

        with pytest.raises(ConfigError) as ei:
            self.make_adapter(self.entities, tmp_path, no_such_option_xyz=1)
        assert "no_such_option_xyz" in str(ei.value)

    def test_empty_source(self, tmp_path: Path) -> None:
        adapter = self.make_adapter([], tmp_path)
        assert list(adapter.iter_entities()) == []
