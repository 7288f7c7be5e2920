from pathlib import Path

from glinker.pipeline.reference import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "yaml-reference.md"


def test_checked_in_yaml_reference_is_current():
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/yaml-reference.md is stale: run `python -m glinker.pipeline.reference docs/yaml-reference.md`")


def test_reference_lists_every_builtin_stage_and_setting():
    text = render()
    for key in ("given_mentions", "regex_mentions", "merge_mentions", "`batch_size`", "`output`"):
        assert key in text
