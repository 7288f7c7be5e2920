"""Session 37's Wikidata-dump walkthrough: files of another layout read with the wrong adapter are named as such
(pretty-printed JSON, glinker records read as a dump, dump records read as JSONL), and `kb add` on a cut dump says
what to do for an update, not for a build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from glinker.errors import DataError, KBError
from glinker.kb.adapters import load_adapter
from glinker.kb.build import build_kb

RECS = [{"type": "item", "id": f"Q{i}", "labels": {"en": {"language": "en", "value": f"thing {i}"}},
         "descriptions": {}, "aliases": {}, "claims": {}, "sitelinks": {}} for i in range(1, 30)]


def _dump(path: Path, recs=RECS, cut: bool = False) -> Path:
    text = "[\n" + ",\n".join(json.dumps(r) for r in recs) + "\n]\n"
    if cut:
        text = text[: len(text) // 2].rsplit("\n", 1)[0] + "\n"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("indent", [2, 4])
def test_a_pretty_printed_json_array_is_named(tmp_path, indent):
    """`json.dump(entities, f, indent=2)`: 'N bad records skipped ... the source yielded no entities' and a fix naming
    the filters; now one error at once, with the conversion."""
    p = tmp_path / "pretty.json"
    p.write_text(json.dumps(RECS, indent=indent), encoding="utf-8")
    with pytest.raises(DataError, match="pretty-printed JSON") as ei:
        list(load_adapter("wikidata", str(p), workers=0).iter_entities())
    assert "jq -c '.[]'" in ei.value.fix
    # a dump (one entity a line) and NDJSON are not taken for it
    assert len(list(load_adapter("wikidata", str(_dump(tmp_path / "d.json")), workers=0).iter_entities())) == 29
    nd = tmp_path / "nd.json"
    nd.write_text("".join(json.dumps(r) + "\n" for r in RECS), encoding="utf-8")
    assert len(list(load_adapter("wikidata", str(nd), workers=0).iter_entities())) == 29


def test_other_records_read_as_a_dump_are_named_not_blamed_on_the_filters(tmp_path):
    """glinker's own JSONL read with -a wikidata: every record 'filtered out: label' and a fix naming the filters."""
    p = tmp_path / "mine.jsonl"
    p.write_text('{"id": "Q1", "label": "Alpha"}\n{"id": "Q2", "label": "Beta"}\n', encoding="utf-8")
    with pytest.raises(KBError) as ei:
        build_kb(load_adapter("wikidata", str(p), workers=0), tmp_path / "kb", None)
    assert "0 filtered out" in str(ei.value) and "every record was bad" in ei.value.fix
    assert "not a Wikidata entity" in ei.value.fix and "-a jsonl" in ei.value.fix


def test_dump_records_in_a_jsonl_file_are_told_to_use_the_wikidata_adapter(tmp_path):
    """wikibase-dump-filter output named .jsonl (kb add picks the jsonl adapter by the name): "field 'aliases': an
    object, not a list" with no hint; a glinker record's `labels` ({lang: text}) is still read."""
    p = tmp_path / "wd.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in RECS), encoding="utf-8")
    with pytest.raises(DataError, match="a Wikidata entity record") as ei:
        list(load_adapter("jsonl", str(p)).iter_entities())
    assert "-a wikidata" in ei.value.fix and ei.value.where == f"{p}:1"
    mine = tmp_path / "mine.jsonl"
    mine.write_text(json.dumps({"id": "Q1", "label": "Paris", "labels": {"fr": "Paris", "de": "Paris"}}) + "\n")
    assert [e.labels for e in load_adapter("jsonl", str(mine)).iter_entities()] == [{"fr": "Paris", "de": "Paris"}]


def test_kb_add_of_a_cut_dump_says_what_an_update_keeps(tmp_path):
    """The build's fix ('every entity read before the cut was kept: the build resumes') was shown by kb add, which
    has no build to resume (and with --prune writes nothing)."""
    from glinker.cli import app

    runner = CliRunner()
    kb = tmp_path / "kb"
    r = runner.invoke(app, ["kb", "build", "-a", "wikidata", "-s", str(_dump(tmp_path / "d.json")), "--model", "none",
                            "--out", str(kb)])
    assert r.exit_code == 0, r.output
    cut = _dump(tmp_path / "cut.json", cut=True)
    for extra, says in (([], "what this run wrote is written again unchanged"), (["--prune"], "--prune this run wrote nothing")):
        r = runner.invoke(app, ["kb", "add", str(kb), "-s", str(cut), *extra])
        said = r.output + str(r.exception)
        assert r.exit_code != 0 and "does not end with ']'" in said and says in said, said
        assert "the build resumes" not in said


def test_the_detections_follow_the_layout_and_the_mapping(tmp_path):
    """A stream of indented objects (`jq .`) gets `jq -c .`, not `jq -c '.[]'` (which would print field values);
    a JSONL record whose mapped `labels` key holds glinker labels is read though its raw `labels` look like a dump's."""
    p = tmp_path / "stream.json"
    p.write_text("".join(json.dumps(r, indent=2) + "\n" for r in RECS), encoding="utf-8")
    with pytest.raises(DataError, match="pretty-printed") as ei:
        list(load_adapter("wikidata", str(p), workers=0).iter_entities())
    assert "jq -c '.'" in ei.value.fix
    mine = tmp_path / "m.jsonl"
    mine.write_text(json.dumps({"id": "Q1", "label": "Universe", "names": {"de": "Universum"},
                                "labels": {"en": {"language": "en", "value": "Universe"}}}) + "\n")
    ents = list(load_adapter("jsonl", str(mine), mapping={"labels": "names"}, keep_extra=True).iter_entities())
    assert ents[0].labels == {"de": "Universum"}


def test_a_build_resumed_after_its_reading_keeps_the_skip_counts(tmp_path, encoder):
    """Killed while embedding, then resumed: the manifest's skipped_by_reason was {} (the resumed run read nothing),
    where an uninterrupted build of the same dump records {'kind': 1}."""
    from typing import Any

    from glinker.kb import KB

    recs = [*RECS, {"type": "property", "id": "P31", "labels": {"en": {"language": "en", "value": "instance of"}}}]
    dump = _dump(tmp_path / "d.json", recs)

    class Killed:
        fingerprint, dim = encoder.fingerprint, encoder.dim

        def encode_entities(self, texts: Any, batch_size: int = 64) -> Any:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_kb(load_adapter("wikidata", str(dump), workers=0), tmp_path / "kb", Killed())
    build_kb(load_adapter("wikidata", str(dump), workers=0), tmp_path / "kb", encoder)
    build_kb(load_adapter("wikidata", str(dump), workers=0), tmp_path / "whole", encoder)
    for kb in ("kb", "whole"):
        with KB.open(tmp_path / kb) as k:
            assert k.manifest.source["skipped_by_reason"] == {"kind": 1}, kb
