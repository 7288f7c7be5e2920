"""Session 38, a plugin author's walkthrough: what they hit, each reproduced here first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from glinker.errors import DataError
from glinker.kb.adapters import load_adapter


def _records(n: int, bad_at: int | None = None) -> str:
    rows = []
    for i in range(1, n + 1):
        rows.append({"label": f"entity {i}"} if i == bad_at else {"id": f"E{i}", "label": f"entity {i}"})
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_the_fix_of_a_bad_record_resumes_the_build(tmp_path: Path, caplog: Any) -> None:
    """A build stopped at a bad record said "-o on_error=skip skips such records" and that it resumes; run again
    with that option it removed the stored entities as "an interrupted build of another source" (on_error was
    part of the resume key). Mending the bad line in the file (size and mtime change) started over too."""
    from glinker.kb import KB
    from glinker.kb.build import build_kb

    src = tmp_path / "big.jsonl"
    src.write_text(_records(3000, bad_at=2001), encoding="utf-8")
    with pytest.raises(DataError, match="2001"):
        build_kb(load_adapter("jsonl", str(src)), tmp_path / "kb", None, chunk_size=100)
    with caplog.at_level("INFO"):
        build_kb(load_adapter("jsonl", str(src), on_error="skip"), tmp_path / "kb", None, chunk_size=100)
    assert "removing" not in caplog.text and "2000 entities already stored are read past" in caplog.text
    with KB.open(tmp_path / "kb") as kb:
        assert len(kb) == 2999

    # the other way: mend the line, the build resumes after what it stored
    kb2 = tmp_path / "kb2"
    src.write_text(_records(3000, bad_at=2001), encoding="utf-8")
    with pytest.raises(DataError):
        build_kb(load_adapter("jsonl", str(src)), kb2, None, chunk_size=100)
    src.write_text(_records(3000), encoding="utf-8")
    caplog.clear()
    with caplog.at_level("INFO"):
        build_kb(load_adapter("jsonl", str(src)), kb2, None, chunk_size=100)
    assert "2000 entities already stored are read past" in caplog.text and "starting the build over" not in caplog.text
    with KB.open(kb2) as kb:
        assert len(kb) == 3000


def test_an_edited_file_whose_stored_part_changed_starts_over(tmp_path: Path, caplog: Any) -> None:
    """Without the file's size and mtime in the resume key, what was stored is what guards a resume: an edit
    inside the stored part (a label changed) starts the build over and the KB holds the edit."""
    from glinker.kb import KB
    from glinker.kb.build import build_kb

    src = tmp_path / "k.jsonl"
    src.write_text(_records(3000, bad_at=2001), encoding="utf-8")
    with pytest.raises(DataError):
        build_kb(load_adapter("jsonl", str(src)), tmp_path / "kb", None, chunk_size=100)
    rows = _records(3000).replace('"entity 17"', '"entity seventeen"')
    src.write_text(rows, encoding="utf-8")
    with caplog.at_level("INFO"):
        build_kb(load_adapter("jsonl", str(src)), tmp_path / "kb", None, chunk_size=100)
    assert "starting the build over" in caplog.text
    with KB.open(tmp_path / "kb") as kb:
        assert len(kb) == 3000 and kb.get(["E17"])[0].label == "entity seventeen"


def test_a_bad_record_raised_through_the_report_says_how_to_skip_such_records() -> None:
    """The docs' adapter example raised DataError("no string 'uid'") through rep.bad_record without a fix: the
    user saw no fix and no on_error hint (the built-in adapters give both)."""
    from glinker.kb.adapters import AdapterReport

    rep = AdapterReport()
    with pytest.raises(DataError) as ei:
        rep.bad_record(DataError("no string 'uid'", where="acme.tsv: record 3"), "acme.tsv: record 3", "raise")
    assert ei.value.fix == "mend the record in the source; -o on_error=skip skips such records"
    assert "fix: mend the record" in str(ei.value)
    with pytest.raises(DataError) as ei:
        rep.bad_record(DataError("x", where="w", fix="give it a uid"), "w", "raise")
    assert ei.value.fix == "give it a uid; -o on_error=skip skips such records"
    with pytest.raises(DataError) as ei:  # a fix that already says it is kept as it is
        rep.bad_record(DataError("x", where="w", fix="-o on_error=skip skips them"), "w", "raise")
    assert ei.value.fix == "-o on_error=skip skips them"
    rep.bad_record(DataError("x", where="w"), "w", "skip")
    assert rep.bad == 1


def test_names_written_with_characters_that_do_not_show_find_their_entities(tmp_path: Path, caplog: Any) -> None:
    """Session 38, a long-document user: "Ber\\xadlin" (a soft hyphen of PDF text) and "Par\\u200bis" were found as
    mentions but got no alias candidate; fold version 5 drops the characters that do not show. A store folded
    before is read as it was, with a warning naming what it misses, and refolded by an update."""

    from glinker.kb import KB
    from glinker.kb.build import build_kb
    from glinker.kb.store import FOLD_VERSION
    from glinker.pipeline import Pipeline, loads_spec

    src = tmp_path / "k.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "Q64", "label": "Berlin"}, {"id": "Q90", "label": "Paris"},
        {"id": "Q1", "label": "Mi\u200cKhaham"}]), encoding="utf-8")
    build_kb(load_adapter("jsonl", str(src)), tmp_path / "kb", None)
    spec = (f"name: t\nkb: {tmp_path / 'kb'}\nstages:\n  m: {{type: alias_mentions}}\n"
            "  c: {type: alias_candidates, input: m}\n")
    text = "Par\u200bis and Ber\u00adlin, \u200eBerlin\u200f and MiKhaham."
    with Pipeline(loads_spec(spec)) as p:
        got = {m.mention.text: [c.entity_id for c in m.candidates] for m in p.run_batch([text]).outputs["c"][0]}
    assert got.get("Par\u200bis") == ["Q90"] and got.get("Ber\u00adlin") == ["Q64"], got
    assert got.get("Berlin") == ["Q64"] and got.get("MiKhaham") == ["Q1"], got
    assert FOLD_VERSION == 5
    # a store folded with version 4, read-only: answers as before, with the warning; an update refolds it
    from glinker.kb.store import fold_key_v4

    from .conftest import refold_store

    refold_store(tmp_path / "kb", fold_key_v4, "4")
    with caplog.at_level("WARNING"), KB.open(tmp_path / "kb") as kb:
        assert kb.store.fold_version == 4 and kb.store.lookup_folded(["par\u200bis"]) == {}
    assert "characters that do not show" in caplog.text
    with KB.open(tmp_path / "kb", writable=True) as kb:
        assert kb.store.fold_version == 5 and kb.store.lookup_folded(["par\u200bis"]) == {"par\u200bis": ["Q90"]}


def test_the_alias_dictionary_compiles_its_patterns_once() -> None:
    """Review: moving code above _patterns left its @functools.cache on another class: every non-ASCII document
    compiled the token patterns again."""
    from glinker.stages.mentions import _patterns

    assert _patterns() is _patterns() and hasattr(_patterns, "cache_info")
