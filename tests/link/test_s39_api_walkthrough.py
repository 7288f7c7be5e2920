"""Session 39, a Python-API embedding developer's walkthrough: what they hit, each reproduced here first."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import glinker
from glinker.errors import ConfigError
from glinker.types import Mention


@pytest.mark.parametrize("bad", [None, 123, b"pipelines/demo.yaml", "", "p.yaml\x00"])
def test_load_pipeline_says_what_names_no_file(bad: Any) -> None:
    """None was "load_yaml needs text or path" (ValueError), 123 and bytes a pathlib TypeError, a NUL "embedded
    null byte", "" "it is a folder" with an empty name."""
    with pytest.raises(ConfigError) as ei:
        glinker.load_pipeline(bad)
    assert ei.value.where == "load_pipeline(path)" and "load_pipeline('pipelines/demo.yaml')" in ei.value.fix


def test_load_pipeline_expands_home(pipeline: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """kb='~/...' was expanded, the pipeline path itself was not ("pipeline file not found")."""
    monkeypatch.setenv("HOME", str(pipeline.parent))
    assert glinker.load_pipeline(f"~/{pipeline.name}").name == "t"


def test_an_unknown_device_is_refused_at_load(pipeline: Path) -> None:
    """device='gpu0' loaded, and the first link() blamed line 12 of the YAML, which says nothing of a device."""
    with pytest.raises(ConfigError, match="unknown torch device 'gpu0'") as ei:
        glinker.load_pipeline(str(pipeline), device="gpu0")
    assert ei.value.where == "device"


def test_a_records_meta_is_a_copy_all_the_way_down(pipeline: Path) -> None:
    """The record's meta was dict(input meta): appending to its list changed the caller's input."""
    p = glinker.load_pipeline(str(pipeline))
    given = {"tags": ["a"], "source": {"feed": "x"}}
    rec = p.link([{"text": "Paris is in France.", "meta": given}])[0]
    rec.meta["tags"].append("changed")
    rec.meta["source"]["feed"] = "changed"
    assert given == {"tags": ["a"], "source": {"feed": "x"}}


def test_a_merged_span_takes_the_models_label_with_its_score() -> None:
    """A dictionary match that the model found too came out with the model's label and score null."""
    from glinker.pipeline.stage import PipelineContext
    from glinker.stages.merge import MergeMentions
    from glinker.types import Document

    stage = MergeMentions("m", MergeMentions.Params(overlap="first_input"), PipelineContext())
    dictionary = [Mention(start=0, end=5, text="Paris")]
    model = [Mention(start=0, end=5, text="Paris", label="city", score=0.83)]
    out = stage.run([Document(id="0", text="Paris is")], [[dictionary], [model]])[0]
    assert [(m.label, m.score) for m in out] == [("city", 0.83)]
    scored = [Mention(start=0, end=5, text="Paris", score=0.5)]  # a kept copy's own score stays
    out = stage.run([Document(id="0", text="Paris is")], [[scored], [model]])[0]
    assert [(m.label, m.score) for m in out] == [("city", 0.5)]


def test_a_small_link_call_logs_no_info_line(pipeline: Path, caplog: Any) -> None:
    """Every link() call logged "t: N documents" at INFO: a service logging at INFO got a line per request."""
    p = glinker.load_pipeline(str(pipeline))
    with caplog.at_level(logging.INFO, logger="glinker"):
        p.link(["Paris is in France.", "Berlin."])
    assert "t: 2 documents" not in caplog.text
    with caplog.at_level(logging.DEBUG, logger="glinker"):
        p.link(["Paris is in France."])
    assert "t: 1 documents" in caplog.text


def test_eval_el_json_names_the_pipelines_own_model_and_kb(pipeline: Path, tmp_path: Path) -> None:
    """Session 39, a data scientist's walkthrough: the report's `run` said model null and kb null whenever they came
    from the YAML (only --model/--kb overrides were recorded)."""
    import json

    from typer.testing import CliRunner

    from glinker.cli import _load_groups, app

    _load_groups()
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "d", "text": "Paris is in France.", "mentions": [
        {"start": 0, "end": 5, "mention": "Paris", "wikidata_qid": "Q90"}]}) + "\n")
    out = tmp_path / "rep.json"
    r = CliRunner().invoke(app, ["eval", "el", "--pipeline", str(pipeline), "--data", str(gold), "--json", str(out)])
    assert r.exit_code == 0, r.output
    run = json.loads(out.read_text())["run"]
    spec = glinker.load_pipeline(str(pipeline)).spec.header
    assert run["model"] == spec.model and run["kb"] == spec.kb and run["kb"]
