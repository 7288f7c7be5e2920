"""The file a KB source names (one helper for the pipeline's validate check and for reading a source beside the
pipeline file), and the secret options of an adapter found in one walk of its options model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Optional

import pytest
from pydantic import SecretStr

from glinker.kb import adapters
from glinker.kb.adapters import AdapterOptions, declared_secrets, relative_to, secret_options

# -- the file a source names -----------------------------------------------------------------------------------


@pytest.fixture
def places(tmp_path: Path, monkeypatch: Any) -> tuple[Path, Path]:
    """A pipeline folder holding ``here.db`` and ``ents.jsonl`` (and a folder ``sub``), and another working folder."""
    base = tmp_path / "project"
    (base / "sub").mkdir(parents=True)
    (base / "here.db").write_bytes(b"")
    (base / "ents.jsonl").write_text("")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return base, cwd


def test_source_file_names_the_file_of_a_path_or_a_sqlite_url(places: tuple[Path, Path]) -> None:
    from glinker.kb.adapters import source_file

    base, _ = places
    cases = {
        "ents.jsonl": str(base / "ents.jsonl"),  # beside the pipeline file: read from there
        "sub": str(base / "sub"),  # a plain path may be a folder (a dump split in parts)
        "missing.jsonl": "missing.jsonl",  # not there: as named, read from the working folder
        "/abs/x.jsonl": "/abs/x.jsonl",
        "~/x.jsonl": "~/x.jsonl",  # ~ is the caller's to expand (then absolute: never looked for beside)
        "sqlite:///here.db": str(base / "here.db"),
        "sqlite+pysqlite:///here.db?mode=ro": str(base / "here.db"),
        "sqlite:///missing.db": "missing.db",
        "sqlite:///sub": "sub",  # a SQLite URL names a file, not a folder
        "sqlite:////abs/c.db": "/abs/c.db",
        "sqlite://": None,  # in memory
        "sqlite:///:memory:": None,
        "sqlite:///file:x.db?mode=ro&uri=true": None,
        "postgresql://u:p@host/db": None,
        "https://example.org/ents.jsonl": None,
        "": None,
    }
    for source, expected in cases.items():
        assert source_file(source, base) == expected, source
    # without a base folder: the file as named
    assert source_file("ents.jsonl") == "ents.jsonl" and source_file("sqlite:///here.db?x=1") == "here.db"
    assert source_file("sqlite://") is None


def test_relative_to_writes_the_source_with_the_file_source_file_finds(places: tuple[Path, Path]) -> None:
    from glinker.kb.adapters import source_file

    base, _ = places
    assert relative_to("ents.jsonl", base) == str(base / "ents.jsonl")
    assert relative_to("sqlite:///here.db", base) == f"sqlite:///{base / 'here.db'}"
    assert relative_to("sqlite+pysqlite:///here.db?mode=ro", base) == f"sqlite+pysqlite:///{base / 'here.db'}?mode=ro"
    for unchanged in ("missing.jsonl", "~/x.jsonl", "/abs/x.jsonl", "sqlite:///missing.db", "sqlite:///sub",
                      "sqlite:////abs/c.db", "sqlite://", "sqlite:///:memory:", "postgresql://u@h/db", ""):
        assert relative_to(unchanged, base) == unchanged, unchanged
    for source in ("ents.jsonl", "sqlite:///here.db", "sqlite:///here.db?mode=ro", "missing.jsonl", "sub"):
        found = source_file(source, base)
        assert found is not None and found in relative_to(source, base)


def _kb_spec(base: Path, adapter: str, source: str) -> Any:
    from glinker.pipeline import load_spec

    options = "  options: {table: companies}\n" if adapter == "sql" else ""
    (base / "p.yaml").write_text("name: t\nkb:\n  adapter: " + adapter + "\n  source: '" + source + "'\n"
                                 + options + "stages:\n  m: {type: regex_mentions, patterns: {x: 'X'}}\n")
    return load_spec(base / "p.yaml")


def test_validate_checks_a_kb_source_through_source_file(places: tuple[Path, Path], monkeypatch: Any) -> None:
    """`pipeline validate`'s check of a kb: block's source asks source_file which file it names (it split
    sqlite:/// URLs itself, beside relative_to)."""
    from glinker.pipeline.spec import resource_problems

    base, cwd = places
    asked: list[str] = []
    real = adapters.source_file  # (missing before: the check split sqlite:/// URLs itself)

    def spy(source: str, base_dir: Any = None) -> Any:
        asked.append(source)
        return real(source, base_dir)

    monkeypatch.setattr(adapters, "source_file", spy)
    for source in ("sqlite:///here.db", "ents.jsonl", "sqlite:///:memory:"):
        assert not resource_problems(_kb_spec(base, "sql" if "sqlite" in source else "jsonl", source),
                                     check_paths=True), source
    assert asked == ["sqlite:///here.db", "ents.jsonl", "sqlite:///:memory:"]
    [w] = resource_problems(_kb_spec(base, "sql", "sqlite:///gone.db?mode=ro"), check_paths=True)
    assert w.code == "E252" and "'gone.db'" in w.message and str(base) in w.message and str(cwd) in w.message
    (cwd / "gone.db").write_bytes(b"")  # in the working folder: read from there
    assert not resource_problems(_kb_spec(base, "sql", "sqlite:///gone.db"), check_paths=True)
    [w] = resource_problems(_kb_spec(base, "jsonl", "nope.jsonl"), check_paths=True)
    assert "'nope.jsonl'" in w.message
    home = Path(os.path.expanduser("~"))
    if home.is_dir():
        name = f"glinker_fix27_{os.getpid()}.jsonl"
        assert not (home / name).exists()
        [w] = resource_problems(_kb_spec(base, "jsonl", f"~/{name}"), check_paths=True)
        assert f"'~/{name}'" in w.message  # named as written


# -- secret options: one walk --------------------------------------------------------------------------------------


class _Opts(AdapterOptions):
    password: Optional[SecretStr] = None
    token_file: Optional[str] = None
    db_password: Optional[str] = None
    dsn: Optional[str] = None
    api_key: Optional[str] = None
    kinds: list[str] = []


class _Adapter:
    name: ClassVar[str] = "fix27"
    options_model = _Opts
    secret_options: ClassVar[frozenset[str]] = frozenset({"dsn"})


class _Bare:
    name: ClassVar[str] = "bare"


def test_declared_and_secret_options_are_unchanged() -> None:
    for adapter in (_Adapter, _Adapter()):
        assert declared_secrets(adapter) == {"password", "dsn"}
        assert secret_options(adapter) == {"password", "dsn", "db_password", "api_key"}
        assert secret_options(adapter, ["x_api_key", "kinds", "sep_token"]) == {"password", "dsn", "db_password",
                                                                                "api_key", "x_api_key"}
    for adapter in (None, _Bare, _Bare()):
        assert declared_secrets(adapter) == frozenset()
        assert secret_options(adapter, ["token", "region"]) == {"token"}
    assert isinstance(secret_options(_Adapter), frozenset) and isinstance(declared_secrets(_Adapter), frozenset)


def test_secret_options_walk_the_options_model_once() -> None:
    """secret_options walked the options model's fields twice (once itself, once through declared_secrets)."""
    walks: list[int] = []

    class CountingModel:
        @property
        def model_fields(self) -> dict[str, Any]:
            walks.append(1)
            return _Opts.model_fields

    class Counted(_Adapter):
        options_model = CountingModel()  # type: ignore[assignment]

    assert secret_options(Counted) == {"password", "dsn", "db_password", "api_key"} and len(walks) == 1
    walks.clear()
    assert declared_secrets(Counted) == {"password", "dsn"} and len(walks) == 1
