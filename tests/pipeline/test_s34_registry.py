"""Stage classes that could never run are refused where they are registered (or their entry point is loaded), not
at the pipeline's first check or batch: ``accepts`` a plain string, ``produces`` not a kind, a type name a pipeline
file cannot name, no ``run``. And a missing required stage key says what the key holds, as an invalid value does."""

from __future__ import annotations

import importlib
import sys
import uuid
from typing import Any

import pytest

from glinker.errors import ConfigError, PipelineError
from glinker.pipeline import Pipeline, Stage, StageParams, loads_spec
from glinker.pipeline.registry import StageRegistry
from glinker.stages.records import CANDIDATES

from tests.pipeline.test_stage_plugins import make_dist

YAML = "name: t\nstages:\n  m: {type: regex_mentions, patterns: {x: 'P\\w+'}}\n  b: {type: boost, input: m}\n"


class P(StageParams):
    pass


def boost(**attrs: Any) -> type[Stage]:
    """A candidates -> candidates stage class named ``boost``, with ``attrs`` set on it."""

    class Boost(Stage):
        type_name = "boost"
        accepts = (CANDIDATES,)
        produces = CANDIDATES
        Params = P

        def run(self, documents: Any, inputs: Any) -> Any:
            return inputs[0]

    for k, v in attrs.items():
        setattr(Boost, k, v)
    return Boost


def test_accepts_a_plain_string_is_refused_at_registration():
    """`accepts = (CANDIDATES)` (no trailing comma) is the string 'candidates': it was registered, then the pipeline
    spelt it letter by letter (`accepts c, a, n, d, ...`), and a matching kind got through by a substring test."""
    from glinker.pipeline import register_stage, registry

    reg = StageRegistry()
    with pytest.raises(ConfigError) as e:
        reg.register(boost(accepts=(CANDIDATES)))  # the mistake under test: no tuple
    assert e.value.code == "E231" and "accepts = 'candidates'" in e.value.message and "not a tuple" in e.value.message
    assert "Boost" in e.value.message and "accepts = ('candidates',)" in e.value.fix
    assert "boost" not in reg
    with pytest.raises(ConfigError) as e:  # the process-wide register_stage too
        register_stage(boost(accepts=CANDIDATES))
    assert e.value.code == "E231" and "boost" not in registry._classes
    for bad in ((), [1], ("",), None):
        with pytest.raises(ConfigError, match="not a tuple of kinds"):
            reg.register(boost(accepts=bad))
    reg.register(boost(accepts=[CANDIDATES]))  # a list of kinds works as well as a tuple
    with pytest.raises(PipelineError) as e:
        Pipeline(loads_spec(YAML, reg=reg, source="t.yaml"))
    p = e.value.problems[0]
    assert p.code == "E243" and "accepts candidates but its input 'm' produces mentions" in p.message


def test_produces_must_be_a_kind():
    reg = StageRegistry()
    for bad in ((CANDIDATES,), "", None):
        with pytest.raises(ConfigError) as e:
            reg.register(boost(produces=bad))
        assert e.value.code == "E231" and "produces" in e.value.message and "produces = CANDIDATES" in e.value.fix


def test_a_stage_without_run_is_refused_at_registration():
    """It registered, then failed at its first batch with `[E300] ... NotImplementedError: ` blaming its authors."""
    class NoRun(Stage):
        type_name = "t_norun"
        Params = P

    reg = StageRegistry()
    with pytest.raises(ConfigError) as e:
        reg.register(NoRun)
    assert e.value.code == "E231" and "NoRun" in e.value.message and "does not define run" in e.value.message
    assert "def run(self, documents, inputs)" in e.value.fix and "t_norun" not in reg

    class Inherits(boost()):  # run inherited from a stage class that defines it: fine
        type_name = "t_inherits"

    assert reg.register(Inherits) is Inherits


def test_a_type_name_a_pipeline_file_cannot_name_is_refused():
    """One with ':' was registered, then a pipeline using it failed with "looks like an import path", whose fix said
    to register the class (done already). Names a pipeline file can give (`acme-tags`, `acme.tags` once registered)
    stay registrable: programs register such names."""
    reg = StageRegistry()
    for bad in ("acme:tags", ""):
        with pytest.raises(ConfigError) as e:
            reg.register(boost(type_name=bad))
        assert e.value.code == "E231"
    with pytest.raises(ConfigError) as e:
        reg.register(boost(type_name="acme:tags"))
    assert "'acme:tags'" in e.value.message and "import path" in e.value.message and "Boost" in e.value.message
    assert "'acme_tags'" in e.value.fix
    with pytest.raises(ConfigError, match="cannot be named by a pipeline file"):  # a name given to register too
        reg.register(boost(type_name="t_fine"), "acme:tags")
    assert "acme:tags" not in reg and "t_fine" not in reg
    for fine in ("t_Fine_2", "acme-tags", "acme.tags"):
        reg.register(boost(type_name=fine))
        assert fine in reg
    spec = loads_spec("name: t\nkb: k\nstages:\n  m: {type: regex_mentions, patterns: {x: 'P\\w+'}}\n"
                      "  c: {type: alias_candidates, input: m}\n  b: {type: acme-tags, input: c}\n",
                      source="t.yaml", reg=reg)
    assert spec.stages["b"].type == "acme-tags"


BAD_SRC = '''
from glinker.pipeline import Stage, StageParams

class Stringy(Stage):
    accepts = ("documents")
    produces = "mentions"
    Params = StageParams

    def run(self, documents, inputs):
        return [[] for _ in documents]

class NoRun(Stage):
    accepts = ("documents",)
    produces = "mentions"
    Params = StageParams
'''


def test_an_entry_points_class_goes_through_the_same_checks(tmp_path, monkeypatch):
    tag = uuid.uuid4().hex[:8]
    stringy, norun, pkg = f"t_stringy_{tag}", f"t_norun_{tag}", f"badpkg_{tag}"
    make_dist(tmp_path, "bad-dist", "0.1", pkg, BAD_SRC, {stringy: f"{pkg}:Stringy", norun: f"{pkg}:NoRun"})
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    try:
        reg = StageRegistry()
        with pytest.raises(PipelineError) as e:
            loads_spec(f"name: x\nstages:\n  a: {{type: {stringy}}}\n", reg=reg, source="x.yaml")
        p = e.value.problems[0]
        assert p.code == "E231" and p.line == 3 and "entry point" in p.message and "a string" in p.message
        assert "accepts = ('documents',)" in p.fix
        with pytest.raises(PipelineError) as e:
            loads_spec(f"name: x\nstages:\n  a: {{type: {norun}}}\n", reg=reg, source="x.yaml")
        p = e.value.problems[0]
        assert p.code == "E231" and "does not define run" in p.message and "bad-dist 0.1" in p.message
    finally:
        sys.modules.pop(pkg, None)  # the package of this test's folder, gone with it


def test_a_missing_required_key_says_what_it_holds():
    """docs/stages.md: the first sentence of a key's description is shown in errors about the key; a missing
    required key showed only `add `patterns:` here`."""
    with pytest.raises(PipelineError) as e:
        loads_spec("name: t\nstages:\n  r: {type: regex_mentions}\n", source="miss.yaml")
    p = e.value.problems[0]
    assert p.code == "E221" and p.line == 3 and "'stages.r.patterns' is missing" in p.message
    assert p.fix == ("add `patterns:` here (expected dict — Label → Python regular expression; group 1, if any, is "
                     "the span)")
    # as an invalid value's fix says it
    with pytest.raises(PipelineError) as e:
        loads_spec("name: t\nstages:\n  r: {type: regex_mentions, patterns: 3}\n", source="miss.yaml")
    assert "Label → Python regular expression" in e.value.problems[0].fix


def test_a_missing_key_of_a_field_without_description_keeps_the_short_fix():
    class Bare(StageParams):
        size: int

    reg = StageRegistry()
    reg.register(boost(type_name="t_bare", Params=Bare, accepts=("documents",)))
    with pytest.raises(PipelineError) as e:
        loads_spec("name: t\nstages:\n  r: {type: t_bare}\n", reg=reg, source="bare.yaml")
    assert e.value.problems[0].fix == "add `size:` here (expected int)"
