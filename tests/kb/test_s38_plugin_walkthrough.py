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
