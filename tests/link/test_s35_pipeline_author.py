"""A pipeline author's findings (session 35): rescore given candidates of another KB said nothing while scoring
their features 0; merge_mentions kept the unlabelled copy of a span two detectors found."""

from __future__ import annotations

import logging


def _pipeline(tmp_path, stages: str):
    import glinker

    (tmp_path / "a.jsonl").write_text('{"id": "Q1", "label": "Acme", "popularity": 5}\n')
    (tmp_path / "b.jsonl").write_text('{"id": "C1", "label": "Acme", "popularity": 9}\n')
    f = tmp_path / "p.yaml"
    f.write_text("name: t\nmodel: none\nkb: {adapter: jsonl, source: a.jsonl, cache: ca}\nstages:\n" + stages)
    return glinker.load_pipeline(str(f))


def test_rescore_says_when_candidates_are_not_in_its_kb(tmp_path, caplog):
    stages = ("  m: {type: alias_mentions}\n"
              "  co: {type: alias_candidates, input: m, kb: {adapter: jsonl, source: b.jsonl, cache: cb}}\n"
              "  r: {type: rescore, input: co, weights: {alias: 1.0, popularity: 1.0}}\n")
    with caplog.at_level(logging.WARNING):
        _pipeline(tmp_path, stages).link(["Acme opened."])
    said = [r.getMessage() for r in caplog.records if "not in its KB" in r.getMessage()]
    assert len(said) == 1 and "stage 'r': 1 candidate(s)" in said[0] and "e.g. C1" in said[0], caplog.text
    own = ("  m: {type: alias_mentions}\n  co: {type: alias_candidates, input: m}\n"
           "  r: {type: rescore, input: co, weights: {alias: 1.0, popularity: 1.0}}\n")
    caplog.clear()
    (tmp_path / "own").mkdir()
    with caplog.at_level(logging.WARNING):
        _pipeline(tmp_path / "own", own).link(["Acme opened."])
    assert not [r for r in caplog.records if "not in its KB" in r.getMessage()]


def test_merge_mentions_keeps_the_label_of_either_copy_of_a_span(tmp_path):
    """[dictionary, ner] merged with the dictionary first kept its copy without a label, so `type` scored 0 and
    name rules reading "person" saw none; the label now comes from the copy that has one, in any policy."""
    for overlap in ("first_input", "keep_all", "longest", "highest_score"):
        stages = ("  dictionary: {type: alias_mentions}\n"
                  "  given: {type: regex_mentions, patterns: {organization: 'Acme'}}\n"
                  f"  mentions: {{type: merge_mentions, inputs: [dictionary, given], overlap: {overlap}}}\n")
        d = tmp_path / overlap
        d.mkdir()
        res = _pipeline(d, stages).run_batch(["Acme opened."])
        (m,) = res.outputs["mentions"][0]
        assert (m.text, m.label) == ("Acme", "organization"), overlap
        assert res.outputs["dictionary"][0][0].label is None  # the input stage's own record is not changed


def test_a_typo_in_a_stage_kb_block_is_said_as_in_the_pipeline_kb_block(tmp_path):
    """`kb: {..., refrsh: always}` on a stage gave "stages.m.kb.str: Input should be a valid string" and "unknown key
    'refrsh' for stage 'm'" (its keys listed), where the pipeline's own kb block says the key and its closest name."""
    from glinker.errors import PipelineError
    from glinker.pipeline.spec import load_spec

    (tmp_path / "b.jsonl").write_text('{"id": "C1", "label": "Acme"}\n')
    f = tmp_path / "p.yaml"
    f.write_text("name: t\nmodel: none\nstages:\n  m:\n    type: alias_mentions\n"
                 "    kb: {adapter: jsonl, source: b.jsonl, refrsh: always}\n")
    try:
        load_spec(f)
        raise AssertionError("accepted")
    except PipelineError as e:
        (p,) = e.problems
        assert p.code == "E211" and "unknown key 'refrsh' at stages.m.kb.refrsh" in p.message, e
        assert p.line == 6 and "did you mean 'refresh'" in p.fix


def test_an_unset_variable_of_a_kb_block_is_placed_at_its_key(tmp_path, monkeypatch):
    import glinker
    from glinker.errors import GlinkerError

    monkeypatch.delenv("GLINKER_TEST_UNSET_SRC", raising=False)
    f = tmp_path / "p.yaml"
    f.write_text("name: t\nmodel: none\nkb:\n  adapter: jsonl\n  source: ${GLINKER_TEST_UNSET_SRC}\n  cache: c\n"
                 "stages:\n  m: {type: alias_mentions}\n")
    try:
        glinker.load_pipeline(str(f)).link(["Acme"])
        raise AssertionError("linked")
    except GlinkerError as e:
        assert e.where == f"kb ({f}:5, source)", e.where
        assert "GLINKER_TEST_UNSET_SRC is not set" in e.message and "unset, with no default" in e.message


def test_stage_names_yaml_reads_as_booleans_or_numbers_are_said(tmp_path):
    """`yes:` became a stage named True (validated, output 'True'); `inputs: [on, 2024]` was "must be a non-empty
    list" with no word of why."""
    from glinker.errors import PipelineError
    from glinker.pipeline.spec import load_spec

    f = tmp_path / "p.yaml"
    f.write_text("name: t\nmodel: none\nstages:\n  on: {type: regex_mentions, patterns: {year: '[0-9]{4}'}}\n"
                 "  m: {type: merge_mentions, inputs: [on, 2024]}\n")
    try:
        load_spec(f)
        raise AssertionError("accepted")
    except PipelineError as e:
        said = {p.line: p.message for p in e.problems}
        assert "the stage name True is not text" in said[4] and "True, 2024 read as booleans or numbers" in said[5]


def test_validate_counts_its_warnings_and_strict_fails_on_them(tmp_path):
    """A pipeline whose KB folder is missing printed a warning, then plain "OK" (exit 0), though a run stops on it;
    --strict makes such warnings an exit 2 (for CI checks of pipeline files)."""
    from typer.testing import CliRunner

    from glinker.cli import app

    f = tmp_path / "p.yaml"
    f.write_text("name: t\nmodel: none\nkb: nowhere_kb\nstages:\n  m: {type: alias_mentions}\n")
    r = CliRunner().invoke(app, ["pipeline", "validate", str(f)])
    assert r.exit_code == 0 and "(1 warning(s) above)" in r.stdout
    r = CliRunner().invoke(app, ["pipeline", "validate", "--strict", str(f)])
    assert r.exit_code == 2 and "1 warning(s) in pipeline" in r.stderr and "OK" not in r.stdout


def test_a_variable_outside_a_kb_block_is_said_to_stay_as_written(tmp_path, caplog):
    """`path: "${OUT_DIR:-o}/side.jsonl"` on a writer made a folder named `${OUT_DIR:-o}` without a word (only kb
    blocks expand variables, as documented)."""
    from glinker.pipeline.spec import load_spec

    f = tmp_path / "p.yaml"
    f.write_text("name: t\nmodel: none\nstages:\n  m: {type: regex_mentions, patterns: {year: '[0-9]{4}'}}\n"
                 "  w: {type: regex_mentions, patterns: {x: '${OUT_DIR:-o}'}}\n")
    with caplog.at_level(logging.WARNING):
        load_spec(f)
    assert f"{f}:5: stage 'w': patterns names an environment variable" in caplog.text, caplog.text


def test_validate_strict_counts_warnings_said_while_reading_the_file(tmp_path):
    from typer.testing import CliRunner

    from glinker.cli import app

    f = tmp_path / "p.yaml"
    f.write_text("name: t\nmodel: none\nstages:\n  m: {type: regex_mentions, patterns: {year: '${Y}'}}\n")
    r = CliRunner().invoke(app, ["pipeline", "validate", "--strict", str(f)])
    assert r.exit_code == 2 and "1 warning(s) in pipeline" in r.stderr, r.output
