"""Third-party KB adapters as a plugin developer writes them: secrets, errors from adapter code, `kb add`'s adapter,
option checking, entry-point name clashes and the conformance suite's failure messages.

The adapters are defined here and registered without installing a package: ``importlib.metadata.entry_points`` is
replaced, for the ``glinker.kb_adapters`` group only, by the built-in entry points plus this file's."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from pydantic import SecretStr, field_validator
from typer.testing import CliRunner

import glinker.kb.adapters as adapters_mod
from glinker.errors import ConfigError, DataError, KBError, PipelineError
from glinker.kb.adapters import AdapterOptions, AdapterReport, ENTRY_POINT_GROUP, load_adapter
from glinker.types import Entity

PLUGIN = "glk_test_plugins"
BROKEN = "glk_test_broken_plugin"


# -- the plugin's adapters --------------------------------------------------------------------------------------

class SecretOptions(AdapterOptions):
    api_key: str | None = None
    token: SecretStr | None = None
    dsn: str | None = None
    kinds: list[str] = []
    mode: Literal["fast", "slow"] = "fast"
    sep_token: str | None = None  # a setting, not a secret, whatever its name ends with

    @field_validator("api_key")
    @classmethod
    def _no_spaces(cls, v: str | None) -> str | None:
        if v is not None and " " in v:
            raise ValueError("an API key holds no spaces")
        return v


class SecretAdapter:
    """Reads ``{"uid", "name", "kind"}`` lines. Its constructor checks nothing (glinker must), and its describe()
    shows every option as given (glinker must hide the secrets)."""

    name: ClassVar[str] = "secretive"
    options_model: ClassVar[type[AdapterOptions]] = SecretOptions
    secret_options: ClassVar[frozenset[str]] = frozenset({"dsn"})
    seen_keys: ClassVar[list[Any]] = []
    fail_after: ClassVar[int | None] = None
    fail_with: ClassVar[Any] = ConnectionError
    garbage: ClassVar[bool] = False
    resumable: ClassVar[bool] = True

    def __init__(self, source: str, **options: Any) -> None:
        self.path = Path(source)
        self.opts = dict(options)
        type(self).seen_keys.append(options.get("api_key"))
        self.report = AdapterReport()

    def iter_entities(self) -> Iterator[Entity]:
        self.report = rep = AdapterReport()
        kinds = self.opts.get("kinds") or []
        kinds = kinds.split(",") if isinstance(kinds, str) else kinds
        with open(self.path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                rec = json.loads(line)
                rep.read += 1
                if self.fail_after is not None and rep.yielded >= self.fail_after:
                    raise self.fail_with(f"the export server said 503 at record {i}")
                if kinds and rec["kind"] not in kinds:
                    rep.skipped += 1
                    continue
                rep.yielded += 1
                yield rec if self.garbage else Entity(id=rec["uid"], label=rec["name"])  # type: ignore[misc]

    def estimate_count(self) -> int | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"adapter": self.name, "source": str(self.path.resolve()), "options": dict(self.opts)}


class CheckyAdapter(SecretAdapter):
    """check_options refuses lang 'xx' with a bare ValueError; the constructor takes anything."""

    name: ClassVar[str] = "checky"

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        if options.get("lang") == "xx":
            raise ValueError("lang 'xx' is not a language")


class NoDescribe:
    name: ClassVar[str] = "nodescribe"

    def __init__(self, source: str, **options: Any) -> None:
        self.source = source

    def iter_entities(self) -> Iterator[Entity]:
        yield Entity(id="1", label="one")


class NoReport(NoDescribe):
    """A constructor, iter_entities and describe: no report, no options model, any options."""

    name: ClassVar[str] = "noreport"

    def __init__(self, source: str, **options: Any) -> None:
        self.source, self.options = source, options

    def describe(self) -> dict[str, Any]:
        return {"adapter": self.name, "source": self.source, "options": self.options}


class NoOptions(NoReport):
    name: ClassVar[str] = "noopts"

    def __init__(self, source: str) -> None:
        super().__init__(source)


class RefusingInit(NoReport):
    name: ClassVar[str] = "refusing"

    def __init__(self, source: str, **options: Any) -> None:
        raise TypeError(f"__init__() got an unexpected keyword argument {next(iter(options), '?')!r}")


class ShadowJSONL(NoReport):
    name: ClassVar[str] = "jsonl"


class DupA(NoReport):
    name: ClassVar[str] = "dup"


class DupB(NoReport):
    name: ClassVar[str] = "dup"


class FakeEP:
    """An installed entry point: name, value, group, dist and load()."""

    group = ENTRY_POINT_GROUP

    def __init__(self, name: str, value: str, dist: str | None = None) -> None:
        self.name, self.value = name, value
        self.dist = types.SimpleNamespace(name=dist, version="1.0") if dist else None

    def load(self) -> Any:
        mod, _, attr = self.value.partition(":")
        obj: Any = importlib.import_module(mod)
        for a in attr.split("."):
            obj = getattr(obj, a)
        return obj


BUILTINS = {"wikidata": "kb_adapters.wikidata:WikidataAdapter", "sql": "kb_adapters.sql:SQLAdapter",
            "jsonl": "kb_adapters.jsonl:JSONLAdapter", "csv": "kb_adapters.csv:CSVAdapter"}


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[FakeEP]:
    """This file's adapters registered as the ``acme-glinker`` distribution's entry points (a list to add to)."""
    mod = types.ModuleType(PLUGIN)
    for cls in (SecretAdapter, CheckyAdapter, NoDescribe, NoReport, NoOptions, RefusingInit, ShadowJSONL, DupA,
                DupB):
        setattr(mod, cls.__name__, cls)
    mod.NOT_A_CLASS = 42  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, PLUGIN, mod)
    lib = tmp_path / "plugin_lib"
    lib.mkdir()
    (lib / f"{BROKEN}.py").write_text("raise RuntimeError('GLK_PLUGIN_KEY is not set')\n")
    monkeypatch.syspath_prepend(str(lib))
    eps = [FakeEP(n, v, "glinker") for n, v in BUILTINS.items()] + [
        FakeEP(n, f"{PLUGIN}:{a}", "acme-glinker") for n, a in (
            ("secretive", "SecretAdapter"), ("checky", "CheckyAdapter"), ("nodescribe", "NoDescribe"),
            ("noreport", "NoReport"), ("noopts", "NoOptions"), ("refusing", "RefusingInit"),
            ("notaclass", "NOT_A_CLASS"))] + [
        FakeEP("raising", f"{BROKEN}:X", "acme-glinker"), FakeEP("missing", "glk_no_such_module:X", "acme-glinker")]
    real = importlib.metadata.entry_points

    def entry_points(**kw: Any) -> Any:
        if kw.get("group") == ENTRY_POINT_GROUP:
            return list(eps)
        return real(**kw)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    monkeypatch.setattr(adapters_mod, "_WARNED", set(), raising=False)
    monkeypatch.setattr(SecretAdapter, "seen_keys", [])
    return eps


def records(path: Path, n: int = 10) -> Path:
    path.write_text("".join(json.dumps({"uid": f"E{i}", "name": f"entity {i}", "kind": "ab"[i % 2]}) + "\n"
                            for i in range(n)), encoding="utf-8")
    return path


def cli(*args: str) -> Any:
    from glinker.cli import app

    return CliRunner().invoke(app, list(args))


# -- 1. secret options --------------------------------------------------------------------------------------------

def test_secret_option_names_and_declarations(plugins: list[FakeEP]) -> None:
    from glinker.kb.adapters import get_adapter_class, is_secret_name, mask_secrets, secret_options

    for name in ("password", "passwd", "secret", "token", "api_key", "apikey", "apiKey", "access_key",
                 "credentials", "credential", "private_key", "db_password", "AUTH_TOKEN"):
        assert is_secret_name(name), name
    for name in ("table", "max_tokens", "tokenizer", "keyfile", "mapping", "kinds"):
        assert not is_secret_name(name), name
    cls = get_adapter_class("secretive")
    # declared (dsn), a SecretStr field (token), by name (api_key), by name for any option (db_password)
    assert {"dsn", "token", "api_key", "db_password"} <= secret_options(cls, ["db_password", "kinds"])
    assert "kinds" not in secret_options(cls, ["kinds"])
    assert mask_secrets(cls, {"api_key": "k1", "dsn": "d", "kinds": ["a"], "token": None}) == {
        "api_key": "***", "dsn": "***", "kinds": ["a"], "token": None}


def test_secrets_are_hidden_where_a_kb_block_is_shown(plugins: list[FakeEP], monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    """`pipeline validate`, run records and cluster job identities show the kb block through shown_kb."""
    from glinker.stages.resources import shown_kb

    monkeypatch.setenv("GLK_TEST_API_KEY", "s3cret-token-123")
    block = {"adapter": "secretive", "source": str(records(tmp_path / "e.jsonl")),
             "options": {"api_key": "${GLK_TEST_API_KEY}", "dsn": "db://x", "kinds": ["a"], "db_password": "pw"}}
    shown = shown_kb(block, tmp_path)
    assert shown["options"] == {"api_key": "***", "dsn": "***", "kinds": ["a"], "db_password": "***"}
    assert "s3cret" not in json.dumps(shown)
    # an adapter that is not installed: the names still say which values are secret
    assert shown_kb({**block, "adapter": "not_installed"}, tmp_path)["options"]["api_key"] == "***"


def test_validate_hides_a_secret_from_the_environment_in_its_message(plugins: list[FakeEP],
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    from glinker.pipeline import loads_spec

    monkeypatch.setenv("GLK_TEST_API_KEY", "s3cret token-123")  # refused: it holds a space
    text = (f"name: secret\nkb:\n  adapter: secretive\n  source: {records(tmp_path / 'e.jsonl')}\n  options:\n"
            "    api_key: ${GLK_TEST_API_KEY}\nstages:\n  m: {type: alias_mentions}\n")
    with pytest.raises(PipelineError) as ei:
        loads_spec(text, source="p.yaml")
    said = str(ei.value)
    assert "p.yaml:6" in said and "kb.options.api_key" in said and "GLK_TEST_API_KEY" in said
    assert "s3cret" not in said


def test_a_pipeline_kb_cache_is_kept_when_its_api_key_rotates(plugins: list[FakeEP], monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Also: an alias-only KB (model none) is not said to be embedded, at its first start or its syncs."""
    from glinker.pipeline.stage import PipelineContext
    from glinker.stages.resources import KBSource, open_kb

    monkeypatch.setenv("GLINKER_CACHE", str(tmp_path / "cache"))
    src = records(tmp_path / "e.jsonl")
    with caplog.at_level(logging.INFO, logger="glinker.stages.resources"):
        for dsn in ("d1", "d2"):  # a declared secret (secret_options) is left out of the cache key
            kb = open_kb(PipelineContext(base_dir=tmp_path), KBSource(adapter="secretive", source=str(src),
                                                                      options={"api_key": "k1", "dsn": dsn}),
                         model="none")
            assert len(kb) == 10
            kb.close()
    assert len([p for p in (tmp_path / "cache" / "kb").iterdir() if p.is_dir()]) == 1  # the second start synced
    assert SecretAdapter.seen_keys == ["k1", "k1"]
    assert "first start: every row is embedded" not in caplog.text and "alias-only" in caplog.text
    assert "synced with its secretive source" in caplog.text and "re-embedded" not in caplog.text


def test_the_manifest_hides_secrets_and_an_interrupted_build_resumes_with_a_new_key(
        plugins: list[FakeEP], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    from glinker.kb import KB, build_kb

    src = records(tmp_path / "e.jsonl")
    out = tmp_path / "kb"
    monkeypatch.setattr(SecretAdapter, "fail_after", 4)
    with pytest.raises(KBError):  # a declared secret (dsn) is left out of the resume key: a rotated one resumes
        build_kb(load_adapter("secretive", str(src), api_key="k2", dsn="d1"), out, None, chunk_size=2)
    monkeypatch.setattr(SecretAdapter, "fail_after", None)
    with caplog.at_level(logging.INFO, logger="glinker.kb.build"):
        build_kb(load_adapter("secretive", str(src), api_key="k2", dsn="d2"), out, None, chunk_size=2)
    assert "resuming the interrupted build: 4 entities" in caplog.text
    assert "an interrupted build of another source" not in caplog.text
    with KB.open(out) as kb:
        assert len(kb) == 10 and kb.manifest.source["options"]["api_key"] == "***"
    assert "k2" not in next(out.glob("gen-*/manifest.json")).read_text()


def test_kb_add_asks_for_a_secret_option_again_instead_of_replaying_the_mask(
        plugins: list[FakeEP], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    src = records(tmp_path / "e.jsonl")
    out = tmp_path / "kb"
    res = cli("kb", "build", "-a", "secretive", "-s", str(src), "-o", "api_key=k1", "--model", "none", "--out",
              str(out))
    assert res.exit_code == 0, res.output
    more = records(tmp_path / "more.jsonl", 12)
    res = cli("kb", "add", str(out), "-s", str(more))
    assert isinstance(res.exception, ConfigError), res.output
    assert "api_key" in str(res.exception) and "-o api_key=" in str(res.exception.fix)
    assert "***" not in SecretAdapter.seen_keys
    with caplog.at_level(logging.WARNING):
        res = cli("kb", "add", str(out), "-s", str(more), "-o", "api_key=k2")
    assert res.exit_code == 0, res.output
    assert "added 2" in res.output and SecretAdapter.seen_keys[-1] == "k2"
    assert "differ" not in caplog.text  # the key given again is no change of what is read
    # an adapter that can read without the key (e.g. from its environment) is not refused
    monkeypatch.setattr(SecretAdapter, "optional_secrets", frozenset({"api_key"}), raising=False)
    res = cli("kb", "add", str(out), "-s", str(more))
    assert res.exit_code == 0, res.output
    assert SecretAdapter.seen_keys[-1] is None


# -- 2. errors from adapter code ----------------------------------------------------------------------------------

def test_an_adapter_failing_mid_stream_is_named(plugins: list[FakeEP], monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    from glinker.kb import build_kb

    src = records(tmp_path / "e.jsonl")
    monkeypatch.setattr(SecretAdapter, "fail_after", 3)
    with pytest.raises(KBError) as ei:
        build_kb(load_adapter("secretive", str(src)), tmp_path / "kb", None)
    said = str(ei.value)
    assert "secretive adapter" in said and "SecretAdapter" in said and "failed after 3 entities" in said
    assert "ConnectionError: the export server said 503" in said and ei.value.where == "secretive.source"
    assert isinstance(ei.value, ConnectionError)  # `except ConnectionError` still catches it
    assert isinstance(ei.value.__cause__, ConnectionError)
    # a glinker error raised by the adapter passes unchanged
    monkeypatch.setattr(SecretAdapter, "fail_with", DataError)
    with pytest.raises(DataError) as di:
        build_kb(load_adapter("secretive", str(src)), tmp_path / "kb2", None)
    assert str(di.value).endswith("the export server said 503 at record 3") and "failed after" not in str(di.value)


def test_an_item_that_is_not_an_entity_is_a_data_error_naming_the_adapter(
        plugins: list[FakeEP], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from glinker.kb import build_kb

    monkeypatch.setattr(SecretAdapter, "garbage", True)
    with pytest.raises(DataError) as ei:
        build_kb(load_adapter("secretive", str(records(tmp_path / "e.jsonl"))), tmp_path / "kb", None)
    assert "secretive adapter" in str(ei.value) and "dict" in str(ei.value) and "item 1" in str(ei.value)
    assert "glinker.types.Entity" in str(ei.value)


def test_a_crash_mid_chunk_keeps_the_entities_read(plugins: list[FakeEP], monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Any exception, not only a DataError: the entities of the current chunk are committed, and the re-run
    resumes after them."""
    from glinker.kb import KB, build_kb
    from glinker.kb.build import _stored

    src = records(tmp_path / "e.jsonl")
    out = tmp_path / "kb"
    monkeypatch.setattr(SecretAdapter, "fail_after", 5)
    monkeypatch.setattr(SecretAdapter, "fail_with", RuntimeError)
    with pytest.raises(KBError):
        build_kb(load_adapter("secretive", str(src)), out, None, chunk_size=1000)
    (staging,) = out.glob(".staging-*")
    assert _stored(staging) == 5
    monkeypatch.setattr(SecretAdapter, "fail_after", None)
    with caplog.at_level(logging.WARNING, logger="glinker.kb.build"):
        build_kb(load_adapter("secretive", str(src)), out, None, chunk_size=1000)
    assert "resuming the interrupted build: 5 entities" in caplog.text
    with KB.open(out) as kb:
        assert len(kb) == 10


@pytest.mark.parametrize("name, said", [
    ("raising", f"{BROKEN}:X"),
    ("missing", "glk_no_such_module:X"),
    ("notaclass", f"{PLUGIN}:NOT_A_CLASS"),
    ("nodescribe", f"{PLUGIN}:NoDescribe"),
])
def test_an_entry_point_that_cannot_serve_is_a_kb_error_naming_it(plugins: list[FakeEP], tmp_path: Path,
                                                                  name: str, said: str) -> None:
    from glinker.kb.adapters import check_adapter_options

    for call in (lambda: load_adapter(name, str(tmp_path / "x")), lambda: check_adapter_options(name, {})):
        with pytest.raises(KBError) as ei:
            call()
        assert said in str(ei.value) and "acme-glinker" in str(ei.value), str(ei.value)
        assert ei.value.fix
    if name == "raising":
        assert "RuntimeError: GLK_PLUGIN_KEY is not set" in str(ei.value)
    if name == "notaclass":
        assert "int" in str(ei.value) and "not an adapter class" in str(ei.value)
    if name == "nodescribe":
        assert "describe" in str(ei.value)


def test_construction_errors_and_a_missing_report(plugins: list[FakeEP], tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigError) as ei:
        load_adapter("noopts", str(tmp_path), colour="red")
    assert ei.value.where == "noopts.colour" and "colour" in str(ei.value)
    with pytest.raises(ConfigError) as ei:
        load_adapter("refusing", str(tmp_path), colour="red")
    assert "refusing adapter" in str(ei.value) and "RefusingInit" in str(ei.value) and "colour" in str(ei.value)
    assert ei.value.where == "refusing.colour"
    with caplog.at_level(logging.WARNING, logger="glinker.kb.adapters"):
        ad = load_adapter("noreport", str(tmp_path), anything="goes")
    assert isinstance(ad.report, AdapterReport)
    assert "noreport adapter" in caplog.text and "unchecked" in caplog.text and "anything" in caplog.text


# -- 3. kb add reads with the build's adapter ----------------------------------------------------------------------

def test_kb_add_reads_with_the_adapter_the_kb_was_built_with(plugins: list[FakeEP], tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "kb"
    res = cli("kb", "build", "-a", "secretive", "-s", str(records(tmp_path / "e.jsonl")), "--model", "none",
              "--out", str(out))
    assert res.exit_code == 0, res.output
    # a .jsonl file in the plugin's own format: the jsonl adapter would find no "id" in it
    with caplog.at_level(logging.INFO, logger="glinker.cli.kb"):
        res = cli("kb", "add", str(out), "-s", str(records(tmp_path / "more.jsonl", 13)))
    assert res.exit_code == 0, res.output
    assert "added 3" in res.output
    assert "with the secretive adapter, the one" in caplog.text


# -- 4. options checked the same way everywhere --------------------------------------------------------------------

def test_load_adapter_checks_options_as_validate_does(plugins: list[FakeEP], tmp_path: Path) -> None:
    src = str(records(tmp_path / "e.jsonl"))
    with pytest.raises(ConfigError) as ei:  # the options model, though the adapter's constructor takes anything
        load_adapter("secretive", src, kinds="a", knids="b")
    assert ei.value.where == "secretive.knids" and "did you mean 'kinds'?" in str(ei.value.fix)
    with pytest.raises(ConfigError) as ei:  # the adapter's check_options, raising a bare ValueError
        load_adapter("checky", src, lang="xx")
    assert ei.value.where == "checky.lang" and "lang 'xx' is not a language" in str(ei.value)
    res = cli("kb", "build", "-a", "checky", "-s", src, "-o", "lang=xx", "--model", "none", "--out",
              str(tmp_path / "kb"))
    assert isinstance(res.exception, ConfigError) and "checky.lang" in str(res.exception)
    assert not (tmp_path / "kb").exists()


def test_validate_places_a_check_options_value_error_at_its_line(plugins: list[FakeEP], tmp_path: Path) -> None:
    from glinker.pipeline import loads_spec

    text = (f"name: q\nkb:\n  adapter: checky\n  source: {records(tmp_path / 'e.jsonl')}\n  options:\n"
            "    lang: xx\nstages:\n  m: {type: alias_mentions}\n")
    with pytest.raises(PipelineError) as ei:
        loads_spec(text, source="p.yaml")
    assert [p.line for p in ei.value.problems] == [6]
    assert "lang 'xx' is not a language" in str(ei.value) and "checky adapter" in str(ei.value)


def test_an_invalid_value_names_the_allowed_values(plugins: list[FakeEP], tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        load_adapter("secretive", str(tmp_path), mode="fastest")
    assert ei.value.where == "secretive.mode"
    assert "'fast'" in str(ei.value.fix) and "'slow'" in str(ei.value.fix) and "kinds" not in str(ei.value.fix)
    with pytest.raises(ConfigError) as ei:
        load_adapter("jsonl", str(tmp_path), on_error="maybe")
    assert "'raise'" in str(ei.value.fix) and "'skip'" in str(ei.value.fix) and "mapping" not in str(ei.value.fix)


def test_no_entities_says_the_adapter_filtered_them_out(plugins: list[FakeEP], tmp_path: Path) -> None:
    from glinker.kb import build_kb

    with pytest.raises(KBError) as ei:
        build_kb(load_adapter("secretive", str(records(tmp_path / "e.jsonl")), kinds="zzz"), tmp_path / "kb", None)
    said = str(ei.value)
    assert "10 records read" in said and "10 filtered out" in said
    assert "kinds='zzz'" in str(ei.value.fix) and "on_error=skip" not in str(ei.value.fix)


# -- 5. entry-point name clashes ------------------------------------------------------------------------------------

def test_builtin_names_always_read_with_the_builtins(plugins: list[FakeEP], caplog: pytest.LogCaptureFixture) -> None:
    from glinker.kb.adapters import available_adapters, get_adapter_class
    from kb_adapters.jsonl import JSONLAdapter

    plugins.append(FakeEP("jsonl", f"{PLUGIN}:ShadowJSONL", "evil-glinker"))  # installed after glinker
    with caplog.at_level(logging.WARNING, logger="glinker.kb.adapters"):
        assert get_adapter_class("jsonl") is JSONLAdapter
        assert available_adapters()["jsonl"] == "kb_adapters.jsonl:JSONLAdapter"
    plugins.insert(0, plugins.pop())  # installed before glinker
    assert get_adapter_class("jsonl") is JSONLAdapter
    warned = [r.getMessage() for r in caplog.records if "ShadowJSONL" in r.getMessage()]
    assert len(warned) == 1 and "evil-glinker" in warned[0] and "built-in" in warned[0]


def test_two_plugins_of_one_name_are_warned_about_once(plugins: list[FakeEP],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    from glinker.kb.adapters import get_adapter_class

    plugins += [FakeEP("dup", f"{PLUGIN}:DupB", "zeta-glinker"), FakeEP("dup", f"{PLUGIN}:DupA", "alpha-glinker")]
    with caplog.at_level(logging.WARNING, logger="glinker.kb.adapters"):
        first = get_adapter_class("dup")
        plugins.reverse()  # another install order: the same choice
        assert get_adapter_class("dup") is first is DupA
    warned = [r.getMessage() for r in caplog.records if "'dup'" in r.getMessage()]
    assert len(warned) == 1, warned
    assert "alpha-glinker" in warned[0] and "zeta-glinker" in warned[0] and "DupA" in warned[0] \
        and "DupB" in warned[0]


# -- 6. the conformance suite says what failed ----------------------------------------------------------------------

def test_a_conformance_failure_shows_what_was_expected(tmp_path: Path) -> None:
    import glinker

    (tmp_path / "test_mine.py").write_text('''
import json
from glinker.kb.adapters import AdapterReport
from glinker.kb.testing import AdapterConformance
from glinker.types import Entity


class Forgetful:
    """Never counts what it yields."""
    name = "forgetful"
    options_model = None

    def __init__(self, source, **options):
        self.source = source
        self.report = AdapterReport()

    def iter_entities(self):
        for line in open(self.source):
            yield Entity(**json.loads(line))

    def estimate_count(self):
        return None

    def describe(self):
        return {"adapter": self.name, "source": self.source, "options": {}}


class TestForgetful(AdapterConformance):
    adapter_name = "forgetful"

    def make_adapter(self, entities, tmp_path, **options):
        p = tmp_path / "e.jsonl"
        p.write_text("".join(json.dumps(e.model_dump()) + "\\n" for e in entities))
        return Forgetful(str(p), **options)
''')
    root = str(Path(glinker.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "report_counts",
                        str(tmp_path / "test_mine.py")], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "report.yielded is 0 after 7 entities" in r.stdout, r.stdout
    assert "assert 0 == 7" in r.stdout, r.stdout  # rewritten by pytest: the values, not a bare AssertionError


# -- 7. wording -------------------------------------------------------------------------------------------------------

def test_ctrl_c_on_a_build_that_cannot_resume_reads_right(plugins: list[FakeEP], monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    monkeypatch.setattr(SecretAdapter, "resumable", False)
    monkeypatch.setattr(SecretAdapter, "fail_after", 3)
    monkeypatch.setattr(SecretAdapter, "fail_with", KeyboardInterrupt)
    res = cli("kb", "build", "-a", "secretive", "-s", str(records(tmp_path / "e.jsonl")), "--model", "none",
              "--out", str(tmp_path / "kb"))
    assert res.exit_code == 130, res.output
    assert "a build with the secretive adapter cannot resume" in res.output and "a secretive build" not in res.output
    assert "build from the start" in res.output


# -- 8. review fixes ------------------------------------------------------------------------------------------------

def test_a_ctrl_c_inside_a_chunks_write_resumes_after_the_stored_chunks(
        plugins: list[FakeEP], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """An interrupted write records no position past what was stored, and is not written again: the re-run
    resumes (not "the source changed ... starting over") and ends with every entity."""
    from glinker.kb import KB, build_kb
    from glinker.kb.store import EntityStore

    src = records(tmp_path / "e.jsonl", 20)
    out = tmp_path / "kb"
    real = EntityStore.upsert
    calls = {"n": 0}

    def interrupted(self: Any, ents: Any, *a: Any, **k: Any) -> Any:
        if ents:
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
        return real(self, ents, *a, **k)

    monkeypatch.setattr(EntityStore, "upsert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_kb(load_adapter("secretive", str(src)), out, None, chunk_size=4)
    monkeypatch.setattr(EntityStore, "upsert", real)
    with caplog.at_level(logging.WARNING, logger="glinker.kb.build"):
        build_kb(load_adapter("secretive", str(src)), out, None, chunk_size=4)
    assert "resuming the interrupted build: 4 entities" in caplog.text
    assert "starting the build over" not in caplog.text and "changed" not in caplog.text
    with KB.open(out) as kb:
        assert len(kb) == 20


def test_only_clear_secret_names_are_masked_and_guessed_ones_are_keyed_by_a_hash(plugins: list[FakeEP]) -> None:
    from glinker.kb.adapters import MASK, get_adapter_class, is_secret_name, keyed_options, mask_secrets

    for name in ("sep_token", "pad_token", "min_token", "use_token", "max_tokens", "token_limit"):
        assert not is_secret_name(name), name
    for name in ("token", "auth_token", "access_token", "refresh_token", "bearer_token", "client_secret",
                 "secret_key", "pwd", "x_api_key", "db_password", "apiKey", "github_auth_token"):
        assert is_secret_name(name), name
    cls = get_adapter_class("secretive")
    shown = mask_secrets(cls, {"sep_token": ";", "api_key": "k1", "use_token": True, "password": None,
                               "secret": 3, "headers": {"Authorization": "Bearer abc", "Accept": "json"},
                               "sources": [{"cookie": "sid=1", "url": "u"}]})
    assert shown == {"sep_token": ";", "api_key": MASK, "use_token": True, "password": None, "secret": 3,
                     "headers": {"Authorization": MASK, "Accept": "json"}, "sources": [{"cookie": MASK, "url": "u"}]}
    k1 = keyed_options(cls, {"sep_token": ";", "api_key": "k1", "dsn": "d1"})
    assert "dsn" not in k1 and k1["sep_token"] == ";" and k1["api_key"].startswith("sha256:")
    assert "k1" not in json.dumps(k1)
    assert keyed_options(cls, {"sep_token": ";", "api_key": "k1", "dsn": "d2"}) == k1  # a declared secret rotates
    assert keyed_options(cls, {"sep_token": ";", "api_key": "k2", "dsn": "d1"}) != k1


@pytest.mark.parametrize("options", [{"sep_token": "|"}, {"api_key": "k2"}])
def test_a_pipeline_kb_cache_follows_a_setting_and_a_secret_named_option(
        plugins: list[FakeEP], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, options: dict[str, str]) -> None:
    """refresh: if_missing must not serve the KB of another sep_token (not a secret), nor of another api_key (a
    secret known by its name only, keyed by its value's hash)."""
    from glinker.pipeline.stage import PipelineContext
    from glinker.stages.resources import KBSource, open_kb

    monkeypatch.setenv("GLINKER_CACHE", str(tmp_path / "cache"))
    src = records(tmp_path / "e.jsonl")
    for opts in ({"sep_token": ";", "api_key": "k1"}, {"sep_token": ";", "api_key": "k1", **options}):
        kb = open_kb(PipelineContext(base_dir=tmp_path), KBSource(adapter="secretive", source=str(src),
                                                                  options=opts, refresh="if_missing"), model="none")
        kb.close()
    dirs = [p for p in (tmp_path / "cache" / "kb").iterdir() if p.is_dir()]
    assert len(dirs) == 2
    for d in dirs:
        assert "k1" not in (d / (d / "CURRENT").read_text().strip() / "manifest.json").read_text()


def test_secret_query_parameters_of_a_url_are_hidden() -> None:
    from glinker.io import redact

    for url in ("postgresql+psycopg2://postgres@127.0.0.1:5432/db?password=hunter2",
                "postgresql://u@h/db?sslmode=require&sslpassword=hunter2&application_name=x",
                "mysql://h/db?passwd=hunter2", "mssql://h/db?secret=hunter2;token=hunter2",
                "postgresql://u:hunter2@h/db?token=hunter2#frag"):
        shown = redact(url)
        assert "hunter2" not in shown and "***" in shown, shown
    assert redact("postgresql://u@h/db?sslmode=require&application_name=x") == \
        "postgresql://u@h/db?sslmode=require&application_name=x"
    assert redact("sqlite:///companies.db") == "sqlite:///companies.db"


def test_an_adapter_failure_keeps_the_original_errors_attributes() -> None:
    import errno
    import pickle

    from glinker.kb.adapters import adapter_failure

    class Ad:
        name = "demo"

    class Coded(Exception):
        def __init__(self, code: int, msg: str) -> None:
            super().__init__(code, msg)
            self.code2 = code

    e = adapter_failure(Ad(), OSError(errno.ENOENT, "gone", "x.db"), 3)
    assert isinstance(e, KBError) and isinstance(e, FileNotFoundError)
    assert (e.errno, e.strerror, e.filename) == (errno.ENOENT, "gone", "x.db")
    assert "failed after 3 entities" in str(e) and e.where == "demo.source"
    c = adapter_failure(Ad(), Coded(7, "boom"), 0)
    assert isinstance(c, KBError) and isinstance(c, Coded) and c.code2 == 7 and "Coded" in str(c)
    for err in (e, c):
        back = pickle.loads(pickle.dumps(err))
        assert isinstance(back, KBError) and back.message == err.message


def test_an_adapter_registered_under_another_name_than_its_own_is_refused(plugins: list[FakeEP],
                                                                          tmp_path: Path) -> None:
    """Session 38: an entry point `mismatch = ...:Cls` whose class says name = "something_else" built a KB that
    recorded "something_else", which `kb add` then could not load ("no KB adapter named 'something_else'"). The
    build is refused before it reads anything, naming both names and the package."""
    from glinker.kb.adapters import get_adapter_class

    class Describes(SecretAdapter):  # no name of its own: only describe() says another
        name: ClassVar[str] = ""

        def describe(self) -> dict[str, Any]:
            return {**super().describe(), "adapter": "elsewhere"}

    sys.modules[PLUGIN].Describes = Describes  # type: ignore[attr-defined]
    plugins += [FakeEP("mismatch", f"{PLUGIN}:SecretAdapter", "acme-glinker"),
                FakeEP("describes", f"{PLUGIN}:Describes", "acme-glinker")]
    with pytest.raises(KBError) as ei:
        get_adapter_class("mismatch")
    msg = str(ei.value)
    assert "registered as 'mismatch'" in msg and "'secretive'" in msg and "acme-glinker" in msg
    src = records(tmp_path / "r.jsonl")
    res = cli("kb", "build", "-a", "mismatch", "-s", str(src), "--model", "none", "--out", str(tmp_path / "kb"))
    assert isinstance(res.exception, KBError) and "registered as 'mismatch'" in str(res.exception)
    assert not (tmp_path / "kb").exists()
    with pytest.raises(KBError, match="describe\\(\\) returns 'adapter': 'elsewhere'"):
        load_adapter("describes", str(src))
    assert get_adapter_class("secretive") is SecretAdapter  # registered under its own name: loads
