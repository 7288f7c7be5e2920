"""`spacy_mentions`: a real spaCy pipeline (blank, an entity ruler, one saved to a folder) finds the mentions
that the linking stages then link; bad models and pattern files are named."""

from __future__ import annotations

import json

import pytest

from glinker.errors import ConfigError
from glinker.types import Document

from .conftest import TEXTS

spacy = pytest.importorskip("spacy")

PATTERNS = [{"label": "PERSON", "pattern": "Steve Jobs"}, {"label": "ORG", "pattern": "Google"},
            {"label": "GPE", "pattern": [{"LOWER": "paris"}]}, {"label": "GPE", "pattern": "Berlin"}]

LINKING = """name: s
model: {model}
kb: {kb}
stages:
  mentions: {{type: spacy_mentions, {mentions}}}
  a: {{type: alias_candidates, input: mentions}}
  r: {{type: rescore, input: a, weights: {{biencoder: 0.5, popularity: 1.0, alias: 1.0}}}}
  links: {{type: select, input: r}}
"""


def run(tmp_path, tiny_model, tiny_kb, mentions: str, texts=TEXTS):
    import glinker

    p = tmp_path / "s.yaml"
    p.write_text(LINKING.format(model=tiny_model, kb=tiny_kb, mentions=mentions))
    pipe = glinker.load_pipeline(str(p))
    return pipe, pipe.link(texts)


def test_blank_pipeline_with_patterns_finds_mentions_that_get_linked(tmp_path, tiny_model, tiny_kb):
    pipe, docs = run(tmp_path, tiny_model, tiny_kb,
                     "model: 'blank:en', patterns: " + json.dumps(PATTERNS)
                     + ", labels: {PERSON: person, ORG: organization, GPE: location}")
    got = {(d.text[ln.mention.start:ln.mention.end], ln.mention.label, ln.entity_id) for d in docs for ln in d.links}
    assert ("Steve Jobs", "person", "Q19837") in got and ("Google", "organization", "Q95") in got
    assert ("Berlin", "location", "Q64") in got and ("Paris", "location", "Q90") in got
    ms = pipe.stages["mentions"].run([Document(id="x", text="In Paris and paris.")], [])[0]
    assert [(m.start, m.end, m.text) for m in ms] == [(3, 8, "Paris"), (13, 18, "paris")]


def test_labels_list_filters_and_a_saved_pipeline_folder_loads(tmp_path, tiny_model, tiny_kb):
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns(PATTERNS)
    nlp.to_disk(tmp_path / "my_spacy")
    _, docs = run(tmp_path, tiny_model, tiny_kb, "model: my_spacy, labels: [ORG]")   # relative to the YAML
    got = {(ln.mention.text, ln.mention.label) for d in docs for ln in d.links}
    assert got == {("Google", "ORG")}


def test_patterns_file_with_a_bad_line_is_named(tmp_path, tiny_model, tiny_kb):
    (tmp_path / "pat.jsonl").write_text(json.dumps(PATTERNS[0]) + "\n{oops\n")
    with pytest.raises(ConfigError) as ei:
        run(tmp_path, tiny_model, tiny_kb, "model: 'blank:en', patterns: pat.jsonl")
    assert ei.value.where.endswith("pat.jsonl:2")


@pytest.mark.parametrize("mentions,needle,fix", [
    ("model: no_such_spacy_model_xyz", "cannot load 'no_such_spacy_model_xyz'", "spacy download"),
    ("model: 'blank:en'", "has no entity recognizer", "patterns"),
])
def test_unusable_models_are_named_with_the_fix(tmp_path, tiny_model, tiny_kb, mentions, needle, fix):
    with pytest.raises(ConfigError) as ei:
        run(tmp_path, tiny_model, tiny_kb, mentions)
    assert needle in ei.value.message and fix in ei.value.fix and "spacy_mentions" in ei.value.where


@pytest.mark.parametrize("mentions", ["model: 'blank:en'", "labels: [PERSON]"])
def test_pipeline_validate_takes_a_spacy_model_name(tmp_path, tiny_model, tiny_kb, mentions):
    """`model` of spacy_mentions is what spacy.load takes: validate checked it as a bi-encoder (E251, exit 2)."""
    from typer.testing import CliRunner

    from glinker.cli import app

    p = tmp_path / "s.yaml"
    p.write_text(LINKING.format(model=tiny_model, kb=tiny_kb, mentions=mentions))
    res = CliRunner().invoke(app, ["pipeline", "validate", str(p)])
    assert res.exit_code == 0 and "E251" not in res.output, res.output
