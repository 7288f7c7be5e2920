"""Plugin stages as a plugin developer meets them: the thread contract and close() (serve, worker, Pipeline.close),
the registry's refusals and warnings, the checks of a plugin's output, and a plugin's class and version in the
pipeline's fingerprint."""

from __future__ import annotations

import importlib
import json
import logging
import os
import sqlite3
import sys
import threading
import urllib.request
import uuid
from pathlib import Path
from typing import Any, ClassVar

import pytest

from glinker.errors import ConfigError, PipelineError, StageError
from glinker.pipeline import Pipeline, Stage, StageParams, loads_spec
from glinker.pipeline.registry import StageRegistry
from glinker.stages.records import MentionCandidates
from glinker.types import Candidate, Mention

# ---- helpers --------------------------------------------------------------------------------------------------


def make_dist(root: Path, dist: str, version: str, pkg: str, source: str, entry_points: dict[str, str]) -> Path:
    """An installed distribution under ``root``: package ``pkg`` (its ``__init__`` is ``source``) and a dist-info
    declaring ``entry_points`` in the ``glinker.stages`` group."""
    (root / pkg).mkdir(parents=True)
    (root / pkg / "__init__.py").write_text(source)
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[glinker.stages]\n" + "".join(f"{k} = {v}\n"
                                                                          for k, v in entry_points.items()))
    return root


def _forget(root: Path) -> None:
    """Drop the modules of the packages under ``root`` (so that another root's same-named package is imported)."""
    pkgs = {p.name for p in root.iterdir() if p.is_dir() and not p.name.endswith(".dist-info")}
    for name in [m for m in sys.modules if m.split(".")[0] in pkgs]:
        del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture
def on_path():
    """Put distribution roots on sys.path (``add``), or take them off (``remove``); everything undone after."""
    added: list[Path] = []

    class Paths:
        def add(self, root: Path) -> None:
            sys.path.insert(0, str(root))
            added.append(root)
            importlib.invalidate_caches()

        def remove(self, root: Path) -> None:
            sys.path.remove(str(root))
            _forget(root)

    yield Paths()
    for root in added:
        if str(root) in sys.path:
            sys.path.remove(str(root))
        _forget(root)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


class Runs(Stage):
    """A stage class that defines run (register refuses one without): the base of the registry tests' classes."""

    def run(self, documents: Any, inputs: Any) -> list[list[Mention]]:
        return [[] for _ in documents]


class ThreadedStage(Stage):
    """Opens an sqlite3 connection in warm_up (thread-bound), uses it in run, closes it in close()."""

    type_name = "t_sqlite_mentions"
    accepts = ("documents",)
    produces = "mentions"
    Params = StageParams
    events: ClassVar[list[tuple[str, int]]] = []

    def warm_up(self) -> None:
        self.conn = sqlite3.connect(":memory:")
        self.conn.execute("CREATE TABLE t (x)")
        type(self).events.append(("warm_up", threading.get_ident()))

    def run(self, documents: Any, inputs: Any) -> list[list[Mention]]:
        self.conn.execute("SELECT COUNT(*) FROM t").fetchone()
        type(self).events.append(("run", threading.get_ident()))
        return [[] for _ in documents]

    def close(self) -> None:
        self.conn.close()
        type(self).events.append(("close", threading.get_ident()))


def threaded_pipeline() -> Pipeline:
    reg = StageRegistry()
    reg.register(ThreadedStage)
    ThreadedStage.events = []
    return Pipeline(loads_spec("name: t\nstages:\n  db: {type: t_sqlite_mentions}\n", reg=reg, source="t.yaml"))


# ---- 1, 2: threads and close() ---------------------------------------------------------------------------------


def test_serve_warms_up_runs_and_closes_a_stage_on_the_batch_thread():
    """A stage opening sqlite3 in warm_up failed in serve only ("SQLite objects created in a thread can only be
    used in that same thread"): warm_up ran on the main thread, run on the batch thread; nothing was closed."""
    from glinker.serve import Server

    pipe = threaded_pipeline()
    srv = Server(pipe, port=0, max_wait=0.01)
    assert [e for e, _ in ThreadedStage.events] == ["warm_up"]  # loaded before the constructor returned
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{srv.port}/link", data=json.dumps({"text": "Hi"}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200 and json.loads(r.read())["documents"][0]["mentions"] == []
    finally:
        srv.shutdown()
        t.join(timeout=30)
    names = [e for e, _ in ThreadedStage.events]
    assert names == ["warm_up", "run", "close"]
    threads = {tid for _, tid in ThreadedStage.events}
    assert len(threads) == 1 and threads != {threading.get_ident()}


def test_serve_reports_a_failed_warm_up_on_the_callers_thread_and_closes_what_was_opened():
    from glinker.serve import Server

    class Failing(ThreadedStage):
        type_name = "t_failing"
        closed: ClassVar[list[int]] = []

        def warm_up(self) -> None:
            raise RuntimeError("no database")

        def close(self) -> None:
            type(self).closed.append(threading.get_ident())

    reg = StageRegistry()
    reg.register(Failing)
    pipe = Pipeline(loads_spec("name: f\nstages:\n  db: {type: t_failing}\n", reg=reg, source="f.yaml"))
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(StageError, match=r"stage 'db' \(f.yaml:3\).*warm-up failed: RuntimeError: no database"):
        Server(pipe, port=0)
    assert len(Failing.closed) == 1 and Failing.closed != [threading.get_ident()]  # on the batch thread
    assert {t.name for t in threading.enumerate() if t.is_alive()} <= before


def test_pipeline_close_closes_every_warmed_stage_once_and_use_after_warms_again(caplog):
    closed: list[str] = []

    def stage(tname: str, fail: bool = False) -> type[Stage]:
        class S(Stage):
            type_name = tname
            accepts = ("documents",)
            produces = "mentions"
            Params = StageParams

            def run(self, documents: Any, inputs: Any) -> list[list[Mention]]:
                return [[] for _ in documents]

            def close(self) -> None:
                closed.append(self.name)
                if fail:
                    raise OSError("disk gone")
        return S

    reg = StageRegistry()
    reg.register(stage("t_a"))
    reg.register(stage("t_b", fail=True))
    text = "name: c\nstages:\n  a: {type: t_a}\n  b: {type: t_b}\n  m: {type: merge_mentions, inputs: [a, b]}\n"
    pipe = Pipeline(loads_spec(text, reg=reg, source="c.yaml"))
    pipe.close()
    assert closed == []  # never warmed up: nothing to close
    with caplog.at_level(logging.ERROR, logger="glinker.pipeline.runner"), pipe:
        pipe.link(["Hello"])
        pipe.close()
        assert sorted(closed) == ["a", "b"]  # b's failure did not keep a open
    assert sorted(closed) == ["a", "b"]  # __exit__ after close(): not closed twice
    assert any("stage 'b' (c.yaml:4)" in r.getMessage() and "OSError: disk gone" in r.getMessage()
               for r in caplog.records)
    pipe.link(["Again"])  # warms up again
    pipe.close()
    assert sorted(closed) == ["a", "a", "b", "b"]


def test_a_worker_closes_its_pipeline_on_the_thread_that_ran_it():
    redis = pytest.importorskip("redis")
    from glinker.cluster import Worker

    url = os.environ.get("GLINKER_TEST_REDIS", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as e:
        pytest.skip(f"Redis unreachable at {url}: {e}")
    job = "t" + uuid.uuid4().hex[:10]
    w = Worker(threaded_pipeline(), url, job, poll=0.1)
    t = threading.Thread(target=w.run, kwargs={"idle_exit": 0.2}, daemon=True)
    t.start()
    t.join(timeout=60)
    r = redis.Redis.from_url(url)
    keys = list(r.scan_iter(match=f"glinker:{job}:*"))
    if keys:
        r.delete(*keys)
    assert not t.is_alive()
    assert [e for e, _ in ThreadedStage.events] == ["warm_up", "close"]
    assert len({tid for _, tid in ThreadedStage.events}) == 1


# ---- 3: the registry -------------------------------------------------------------------------------------------

STAGE_SRC = '''
from glinker.pipeline import Stage, StageParams

class Caps(Stage):
    accepts = ("documents",)
    produces = "mentions"
    Params = StageParams

    def run(self, documents, inputs):
        return [[] for _ in documents]

class Other(Caps):
    pass
'''


def test_two_entry_points_of_one_name_are_said_once_naming_both(tmp_path, on_path, caplog):
    name, p1, p2 = unique("dup"), unique("pa"), unique("pb")
    on_path.add(make_dist(tmp_path / "a", "first-dist", "1.0", p1, STAGE_SRC, {name: f"{p1}:Caps"}))
    on_path.add(make_dist(tmp_path / "b", "second-dist", "2.0", p2, STAGE_SRC, {name: f"{p2}:Other"}))
    with caplog.at_level(logging.WARNING, logger="glinker.pipeline.registry"):
        StageRegistry().names()
        StageRegistry().names()
    said = [r.getMessage() for r in caplog.records if name in r.getMessage()]
    assert len(said) == 1
    assert "first-dist" in said[0] and "second-dist" in said[0] and "is used" in said[0]


def test_an_entry_point_named_after_a_builtin_is_said_once_per_process_naming_its_distribution(tmp_path, on_path,
                                                                                              caplog):
    dist, pkg = unique("shadow-dist"), unique("ps")
    on_path.add(make_dist(tmp_path, dist, "0.3", pkg, STAGE_SRC, {"select": f"{pkg}:Caps"}))
    with caplog.at_level(logging.WARNING, logger="glinker.pipeline.registry"):
        for _ in range(3):
            reg = StageRegistry()
            assert reg.get("select").__module__ == "glinker.stages.select"
    said = [r.getMessage() for r in caplog.records if "select" in r.getMessage()]
    assert len(said) == 1 and f"{dist} 0.3" in said[0] and "built-in" in said[0]


def test_register_does_not_replace_another_class_silently(caplog):
    reg = StageRegistry()

    class A(Runs):
        type_name = "t_taken"

    class B(Runs):
        type_name = "t_taken"

    assert reg.register(A) is A
    assert reg.register(A) is A  # the same class again: nothing to do
    with caplog.at_level(logging.WARNING, logger="glinker.pipeline.registry"):
        assert reg.register(B) is B  # another class of this process (a test's local class): replaced, and said
    assert reg.get("t_taken") is B and "replaces" in caplog.text and "A" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glinker.pipeline.registry"):
        assert reg.register(A, replace=True) is A and reg.get("t_taken") is A
    assert "replaces" not in caplog.text  # on purpose: not warned


def test_register_refuses_an_entry_point_stages_name_unless_replace(tmp_path, on_path):
    name, pkg = unique("ep"), unique("pe")
    on_path.add(make_dist(tmp_path, "ep-dist", "1.2", pkg, STAGE_SRC, {name: f"{pkg}:Caps"}))

    class Mine(Runs):
        type_name = name

    reg = StageRegistry()
    with pytest.raises(ConfigError) as e:
        reg.register(Mine)
    assert e.value.code == "E232" and "ep-dist 1.2" in e.value.message
    # the entry point's own class (a module decorating its class with register_stage) is not a conflict
    own = importlib.import_module(pkg).Caps
    assert reg.register(own, name) is own and reg.get(name) is own
    assert reg.register(Mine, replace=True) is Mine and reg.get(name) is Mine


def test_register_stage_decorator_takes_replace():
    from glinker.pipeline import register_stage, registry

    name = unique("t_deco")
    try:
        @register_stage
        class First(Runs):
            type_name = name

        @register_stage
        class Second(Runs):  # another class of this process: replaced with a warning
            type_name = name

        assert registry.get(name) is Second and First is not Second

        @register_stage(replace=True)
        class Third(Runs):
            type_name = name

        assert registry.get(name) is Third
    finally:
        registry._classes.pop(name, None)


def test_register_refuses_what_is_not_a_stage_or_has_loose_params():
    from pydantic import BaseModel

    reg = StageRegistry()

    class NotAStage:
        type_name = "t_not"

    with pytest.raises(ConfigError) as e:
        reg.register(NotAStage)  # type: ignore[arg-type]
    assert e.value.code == "E231" and f"{__name__}:" in e.value.message and "NotAStage" in e.value.message

    class Loose(BaseModel):
        threshold: float = 0.5

    class LooseStage(Stage):
        type_name = "t_loose"
        Params = Loose  # type: ignore[assignment]

    with pytest.raises(ConfigError) as e:
        reg.register(LooseStage)
    assert e.value.code == "E231" and "LooseStage" in e.value.message and "StageParams" in e.value.fix
    assert "t_not" not in reg and "t_loose" not in reg


def test_an_entry_point_stage_with_loose_params_is_a_problem_at_its_line(tmp_path, on_path):
    name, pkg = unique("loose"), unique("pl")
    src = STAGE_SRC + "\nfrom pydantic import BaseModel\nclass LP(BaseModel):\n    threshold: float = 0.5\n" \
                      "class Loose(Caps):\n    Params = LP\n"
    on_path.add(make_dist(tmp_path, "loose-dist", "0.1", pkg, src, {name: f"{pkg}:Loose"}))
    with pytest.raises(PipelineError) as e:
        loads_spec(f"name: x\nstages:\n  a: {{type: {name}, threshhold: 0.9}}\n", reg=StageRegistry(),
                   source="x.yaml")
    p = e.value.problems[0]
    assert p.code == "E231" and p.line == 3 and f"{pkg}:Loose" in p.message and "loose-dist" in p.message


def test_a_params_validator_failing_oddly_is_a_problem_at_its_line_not_a_traceback():
    from pydantic import field_validator

    class OddParams(StageParams):
        size: int = 1

        @field_validator("size")
        @classmethod
        def _odd(cls, v: int) -> int:
            raise TypeError("size must be odd")  # not a ValueError: pydantic lets it through

    class Odd(Runs):
        type_name = "t_odd"
        Params = OddParams

    reg = StageRegistry()
    reg.register(Odd)
    with pytest.raises(PipelineError) as e:
        loads_spec("name: x\nstages:\n  a: {type: t_odd, size: 2}\n", reg=reg, source="x.yaml")
    p = e.value.problems[0]
    assert p.code == "E221" and p.line == 3 and "TypeError: size must be odd" in p.message
    assert "OddParams" in p.fix


# ---- 4: checks of a plugin's output ----------------------------------------------------------------------------


def candidates_pipeline(ret: Any) -> Pipeline:
    """Plugin mentions (each capitalised word) -> plugin candidates ``ret(documents, mentions)`` -> built-in select."""
    import re

    class Words(Stage):
        type_name = "t_words"
        accepts = ("documents",)
        produces = "mentions"
        Params = StageParams

        def run(self, documents: Any, inputs: Any) -> list[list[Mention]]:
            return [[Mention(start=m.start(), end=m.end(), text=m.group()) for m in re.finditer(r"[A-Z]\w+", d.text)]
                    for d in documents]

    class Cands(Stage):
        type_name = "t_cands"
        accepts = ("mentions",)
        produces = "candidates"
        Params = StageParams

        def run(self, documents: Any, inputs: Any) -> Any:
            return ret(documents, inputs[0])

    reg = StageRegistry()
    reg.register(Words)
    reg.register(Cands)
    return Pipeline(loads_spec("name: c\nstages:\n  m: {type: t_words}\n  c: {type: t_cands, input: m}\n"
                               "  s: {type: select, input: c}\n", reg=reg, source="c.yaml"))


def good(m: Mention) -> Candidate:
    return Candidate(entity_id="Q1", label=m.text, source="t", scores={"t": 1.0}, score=1.0)


def str_score(m: Mention) -> Candidate:
    c = good(m)
    c.score = "high"  # type: ignore[assignment]
    return c


@pytest.mark.parametrize("ret, msg", [
    (lambda docs, ms: [[MentionCandidates(m, [good(m).model_dump()]) for m in row] for row in ms],  # type: ignore
     "a candidate that is a dict, not a glinker.types.Candidate"),
    (lambda docs, ms: [[MentionCandidates(m, [str_score(m)]) for m in row] for row in ms],
     "candidate 'Q1' with score 'high' (a str), not a number"),
    (lambda docs, ms: [[MentionCandidates(m.model_dump(), []) for m in row] for row in ms],  # type: ignore
     "whose mention is a dict"),
    (lambda docs, ms: [[MentionCandidates(m.model_copy(update={"text": "WRONG"}), [good(m)]) for m in row]
                       for row in ms],
     "at 0-5 whose text is 'WRONG', but the document's text there is 'Paris'"),
])
def test_a_plugins_candidates_are_checked_item_by_item_and_blamed_on_it(ret, msg):
    """A dict among the candidates reached the built-in select ("AttributeError: 'dict' object has no attribute
    'score'", with "(a bug) ... report it"); a mention's wrong text went into the output."""
    with pytest.raises(StageError) as e:
        candidates_pipeline(ret).link(["Paris is nice.", "Rome"])
    err = e.value
    assert err.where == "stage 'c' (c.yaml:4)", err
    assert msg in err.message and "plugin" in err.message and __name__ in err.message
    assert __name__ in err.fix and "select" not in str(err)


def test_a_plugin_mention_whose_text_is_not_its_span_is_named():
    p = candidates_pipeline(lambda docs, ms: [[] for _ in docs])
    p.stages["m"].run = lambda documents, inputs: [[Mention(start=0, end=5, text="Paris")] for _ in documents]
    with pytest.raises(StageError) as e:
        p.link(["Paris", "London is big"])
    assert e.value.where == "stage 'm' (c.yaml:3)"
    assert "for document 1 a mention at 0-5 whose text is 'Paris', but the document's text there is 'Londo'" \
        in e.value.message
    assert p.link(["Paris is nice."])[0].links == []  # a right one passes (no candidates: no links)
    right = candidates_pipeline(lambda docs, ms: [[MentionCandidates(m, [good(m)]) for m in row] for row in ms])
    assert [(ln.mention.text, ln.entity_id) for ln in right.link(["Paris is nice."])[0].links] == [("Paris", "Q1")]


def test_an_error_raised_in_a_plugin_names_the_plugins_module_not_report_it():
    def boom(docs: Any, ms: Any) -> Any:
        raise KeyError("acme backend")

    with pytest.raises(StageError) as e:
        candidates_pipeline(boom).link(["Paris"])
    assert e.value.where == "stage 'c' (c.yaml:4)" and "KeyError" in e.value.message
    assert __name__ in e.value.fix and "package's authors" in e.value.fix


# ---- 5: the fingerprint ----------------------------------------------------------------------------------------


def plugin_fingerprint(tmp_path: Path, on_path: Any, sub: str, version: str, cls: str = "Caps",
                       pkg: str = "fp_plugin_pkg") -> tuple[str, dict[str, Any]]:
    root = make_dist(tmp_path / sub, "fp-plugin", version, pkg, STAGE_SRC, {"fp_caps": f"{pkg}:{cls}"})
    on_path.add(root)
    try:
        p = Pipeline(loads_spec("name: f\nstages:\n  a: {type: fp_caps}\n", reg=StageRegistry(), source="f.yaml"))
        return p.fingerprint(), p.identity()
    finally:
        on_path.remove(root)


def test_a_plugin_stages_class_and_version_are_in_the_fingerprint(tmp_path, on_path):
    """A resume after a plugin upgrade, or a worker with another plugin version, was accepted: the fingerprint
    hashed stage parameters only."""
    from glinker.cluster import _differences

    f1, id1 = plugin_fingerprint(tmp_path, on_path, "v1", "1.0")
    f1b, _ = plugin_fingerprint(tmp_path, on_path, "v1b", "1.0")
    f2, id2 = plugin_fingerprint(tmp_path, on_path, "v2", "2.0")
    f3, _ = plugin_fingerprint(tmp_path, on_path, "v3", "1.0", cls="Other")
    assert id1["stages"]["a"]["class"] == "fp_plugin_pkg:Caps"
    assert (id1["stages"]["a"]["distribution"], id1["stages"]["a"]["version"]) == ("fp-plugin", "1.0")
    assert f1 == f1b and len({f1, f2, f3}) == 3
    assert "a.version ('1.0' there, '2.0' here)" in _differences(id1, id2)
    # outputs of built-in pipelines still resume: their stages' identity is type, inputs and parameters, as before
    p = Pipeline(loads_spec("name: b\nstages:\n  r: {type: regex_mentions, patterns: {year: '\\d{4}'}}\n"))
    assert set(p.identity()["stages"]["r"]) == {"type", "inputs", "params"}


def test_a_resume_after_a_plugin_upgrade_is_refused(tmp_path, on_path, monkeypatch):
    from glinker.cli.link import run_link

    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "1", "text": "Hello"}\n{"id": "2", "text": "World"}\n')
    yml = tmp_path / "p.yaml"
    yml.write_text("name: r\nstages:\n  a: {type: up_caps}\n")
    out = tmp_path / "out.jsonl"
    for version in ("1.0", "2.0"):
        root = make_dist(tmp_path / version, "up-plugin", version, "up_plugin_pkg", STAGE_SRC,
                         {"up_caps": "up_plugin_pkg:Caps"})
        on_path.add(root)
        monkeypatch.setattr("glinker.pipeline.spec.default_registry", StageRegistry())
        if version == "1.0":
            run_link(src, yml, out)
            out.write_text(out.read_text().splitlines(keepends=True)[0])  # interrupted after one document
        else:
            with pytest.raises(ConfigError) as e:
                run_link(src, yml, out)
            assert "pipeline" in str(e.value) and "--no-resume" in str(e.value)
            # session 38: the refusal names the upgrade (it said "the pipeline's stages or settings" only)
            assert "a.version ('1.0' then, '2.0' now)" in str(e.value), str(e.value)
        on_path.remove(root)


def test_glinker_link_and_eval_close_the_pipeline_they_ran(tmp_path, monkeypatch):
    """`glinker link` (run_link) closes its pipeline at the end, also when a bad line stops it: its stages' close()
    ran only under serve, workers and Pipeline.close."""
    from glinker.cli.link import run_link
    from glinker.errors import DataError

    reg = StageRegistry()
    ThreadedStage.events = []
    reg.register(ThreadedStage)
    monkeypatch.setattr("glinker.pipeline.spec.default_registry", reg)
    yml = tmp_path / "p.yaml"
    yml.write_text("name: c\nstages:\n  a: {type: t_sqlite_mentions}\n")
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "1", "text": "Hello"}\n')
    run_link(src, yml, tmp_path / "out.jsonl")
    assert [e for e, _ in ThreadedStage.events] == ["warm_up", "run", "close"]
    src.write_text('{"id": "1", "text": "Hello"}\n{"id": "2", "text": "World"}\nnot json\n')
    with pytest.raises(DataError):
        run_link(src, yml, tmp_path / "out2.jsonl")
    assert [e for e, _ in ThreadedStage.events][-1] == "close"


def test_a_plugin_whose_dependency_is_missing_is_told_from_a_wrong_entry_point(tmp_path, on_path):
    """Session 38: a plugin module importing an uninstalled dependency, a module that does not exist and a missing
    class all said "install the package that provides it, or fix its entry point", without the distribution."""
    dep, pkg = unique("dep_missing"), unique("pd")
    on_path.add(make_dist(tmp_path, "deps-dist", "0.3", pkg, f"import {dep}\n",
                          {"needs_dep": f"{pkg}:Thing", "gone": f"{pkg}_nope:Thing"}))
    pkg2 = unique("pa")
    on_path.add(make_dist(tmp_path / "b", "attr-dist", "0.1", pkg2, STAGE_SRC, {"no_class": f"{pkg2}:Missing"}))
    reg = StageRegistry()
    with pytest.raises(ConfigError) as e:
        reg.get("needs_dep")
    msg, fix = e.value.message, e.value.fix
    assert f"imports {dep!r}, which is not installed" in msg and "deps-dist" in msg, msg
    assert f"pip install {dep}" in fix and "deps-dist" in fix, fix
    with pytest.raises(ConfigError) as e:
        reg.get("gone")
    assert "cannot be imported" in e.value.message and "reinstall deps-dist" in e.value.fix
    with pytest.raises(ConfigError) as e:
        reg.get("no_class")
    assert "has no 'Missing'" in e.value.message and "attr-dist" in e.value.fix


def test_a_failure_in_the_first_batch_does_not_speak_of_earlier_batches(tmp_path, on_path, monkeypatch):
    """Session 38: a stage raising in the very first batch said "earlier batches are written to out.jsonl" of an
    empty file; now it says that nothing was written, and later failures how many documents were."""
    from glinker.cli.link import run_link
    from glinker.errors import StageError

    src = STAGE_SRC + '''
from glinker.errors import StageError as _SE

class Boom(Caps):
    def run(self, documents, inputs):
        if any("boom" in d.text for d in documents):
            raise _SE("the service said no", where="boom")
        return [[] for _ in documents]
'''
    pkg = unique("bp")
    on_path.add(make_dist(tmp_path / "d", "boom-dist", "0.1", pkg, src, {"boom_stage": f"{pkg}:Boom"}))
    monkeypatch.setattr("glinker.pipeline.spec.default_registry", StageRegistry())
    yml = tmp_path / "p.yaml"
    yml.write_text("name: b\nsettings: {batch_size: 2}\nstages:\n  a: {type: boom_stage}\n")
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": "1", "text": "boom"}\n{"id": "2", "text": "x"}\n')
    with pytest.raises(StageError) as e:
        run_link(inp, yml, tmp_path / "o1.jsonl")
    assert "no document was written" in str(e.value) and "earlier" not in str(e.value)
    inp.write_text("".join(f'{{"id": "{i}", "text": "{"boom" if i == 5 else "x"}"}}\n' for i in range(1, 7)))
    with pytest.raises(StageError) as e:
        run_link(inp, yml, tmp_path / "o2.jsonl")
    assert "the 4 documents before are in" in str(e.value), str(e.value)


def test_files_a_plugin_stage_reads_are_listed_and_a_missing_one_is_said(tmp_path, monkeypatch):
    """Session 38: `pipeline validate` said it lists every file a run reads, but a plugin stage's `db: boosts.db`
    was not listed and a misspelt one passed validation, failing only at run time. Stage.reads(params) says them."""
    from typer.testing import CliRunner

    from glinker.cli import app
    from glinker.pipeline.spec import load_spec, pipeline_files, resource_problems
    from pydantic import Field

    class DbParams(StageParams):
        db: str = Field(description="an SQLite file")

    class ReadsDb(Stage):
        accepts = ("documents",)
        produces = "mentions"
        type_name = "reads_db"
        Params = DbParams

        @classmethod
        def reads(cls, params):
            return [params.db]

        def run(self, documents, inputs):
            return [[] for _ in documents]

    reg = StageRegistry()
    reg.register(ReadsDb)
    monkeypatch.setattr("glinker.pipeline.spec.default_registry", reg)
    (tmp_path / "boosts.db").write_bytes(b"")
    yml = tmp_path / "p.yaml"
    yml.write_text("name: r\nstages:\n  b: {type: reads_db, db: boosts.db}\n")
    spec = load_spec(yml)
    assert any(u.mode == "reads" and u.path == str(tmp_path / "boosts.db") and "'b'" in u.by
               for u in pipeline_files(spec))
    assert not resource_problems(spec, check_paths=True)
    yml.write_text("name: r\nstages:\n  b: {type: reads_db, db: nope.db}\n")
    probs = resource_problems(load_spec(yml), check_paths=True)
    assert [p.code for p in probs] == ["E252"] and "'nope.db' does not exist" in probs[0].message
    res = CliRunner().invoke(app, ["pipeline", "validate", str(yml)])
    assert "nope.db" in res.output and "does not exist" in res.output, res.output


def test_pipeline_stages_shows_a_plugins_distribution_keys_and_docstring(tmp_path, on_path, monkeypatch):
    """Session 38: the docs' example stage (no `summary`) showed a blank line in `glinker pipeline stages`, and no
    plugin showed where it came from or its keys (only an E220 error named them)."""
    from typer.testing import CliRunner

    from glinker.cli import app

    src = STAGE_SRC + '''
from pydantic import Field

class TagParams(StageParams):
    label: str = Field(default="hashtag")

class Tags(Caps):
    """Mentions of #hashtags."""
    Params = TagParams
'''
    pkg = unique("tg")
    on_path.add(make_dist(tmp_path, "tags-dist", "1.2", pkg, src, {"tags_stage": f"{pkg}:Tags"}))
    monkeypatch.setattr(importlib.import_module("glinker.pipeline.registry"), "registry", StageRegistry())
    out = CliRunner().invoke(app, ["pipeline", "stages"]).output
    line = next(x for x in out.splitlines() if x.startswith("tags_stage"))
    assert "Mentions of #hashtags." in line and "[plugin: tags-dist 1.2; keys: label]" in line, line
    builtin = next(x for x in out.splitlines() if x.startswith("regex_mentions"))
    assert "plugin" not in builtin
