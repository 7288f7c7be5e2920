"""`glinker link -o out.html` / `-o out.json` resume as a `.jsonl` output does (session 37's Wikidata walkthrough:
an interrupted run to a page linked everything again, while the README said link runs resume)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glinker.cli.link import run_link
from glinker.io import done_path

PIPE = "name: t\nstages:\n  m: {type: regex_mentions, patterns: {cap: '[A-Z][a-z]+'}}\n"


def _setup(tmp_path: Path, n: int = 7) -> tuple[Path, Path]:
    (tmp_path / "p.yaml").write_text(PIPE, encoding="utf-8")
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"d{i}", "text": f"Doc {i} names Paris and Rome."}) + "\n"
                           for i in range(n)), encoding="utf-8")
    return tmp_path / "p.yaml", src


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, batches: int) -> None:
    """Let ``batches`` batches be written, then stop the run as Ctrl-C would."""
    from glinker.stages import writers

    calls = {"n": 0}
    for cls in (writers.HTMLWriter, writers.JSONWriter):
        real = cls.write

        def write(self, batch, _real=real):
            if calls["n"] >= batches:
                raise KeyboardInterrupt
            calls["n"] += 1
            return _real(self, batch)

        monkeypatch.setattr(cls, "write", write)


@pytest.mark.parametrize("name", ["out.html", "out.json"])
def test_an_interrupted_page_resumes_after_the_documents_it_holds(tmp_path, monkeypatch, name):
    pipe, src = _setup(tmp_path)
    whole = tmp_path / ("whole" + Path(name).suffix)
    assert run_link(src, pipe, whole, batch_size=2)["written"] == 7
    out = tmp_path / name
    with monkeypatch.context() as m:
        _interrupt_after(m, 2)
        with pytest.raises(KeyboardInterrupt):
            run_link(src, pipe, out, batch_size=2)
    assert len(done_path(out).read_text().splitlines()) == 4
    counts = run_link(src, pipe, out, batch_size=2)
    assert counts["skipped_done"] == 4 and counts["written"] == 3
    assert out.read_bytes() == whole.read_bytes()  # the same file as one uninterrupted run
    if name.endswith(".json"):
        assert [d["id"] for d in json.loads(out.read_text())] == [f"d{i}" for i in range(7)]
    again = run_link(src, pipe, out, batch_size=2)  # done: nothing linked again
    assert again["written"] == 0 and again["skipped_done"] == 7 and out.read_bytes() == whole.read_bytes()
    # --no-resume writes it anew; another input at the same place is refused, as for JSONL
    assert run_link(src, pipe, out, batch_size=2, resume=False)["written"] == 7
    assert out.read_bytes() == whole.read_bytes()
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "x", "text": "Another Text"}) + "\n", encoding="utf-8")
    from glinker.errors import DataError

    with pytest.raises(DataError, match="not the one"):
        run_link(other, pipe, out, batch_size=2)


def test_a_page_holding_fewer_documents_than_recorded_links_the_rest_again(tmp_path, monkeypatch):
    """Killed between the page's write and the record's (or a page cut by hand): the documents the page lacks are
    linked again, not skipped."""
    pipe, src = _setup(tmp_path)
    whole = tmp_path / "whole.html"
    run_link(src, pipe, whole, batch_size=2)
    out = tmp_path / "out.html"
    with monkeypatch.context() as m:
        _interrupt_after(m, 2)
        with pytest.raises(KeyboardInterrupt):
            run_link(src, pipe, out, batch_size=2)
    rec = done_path(out)
    rec.write_text(rec.read_text() + json.dumps({"id": "d4", "text": ""}) + "\n")  # recorded, not on the page
    counts = run_link(src, pipe, out, batch_size=2)
    assert counts["skipped_done"] == 4 and counts["written"] == 3 and out.read_bytes() == whole.read_bytes()


def test_a_page_written_before_the_record_is_replaced_not_refused(tmp_path):
    """A page without OUT.done.jsonl (written before this release, or by --no-resume's predecessor) and a changed
    pipeline: the run was refused as a mix of two pipelines, though nothing of the page would be kept."""
    pipe, src = _setup(tmp_path)
    out = tmp_path / "out.html"
    run_link(src, pipe, out, batch_size=2)
    done_path(out).unlink()
    other = tmp_path / "p2.yaml"
    other.write_text(PIPE.replace("[A-Z][a-z]+", "[A-Z][a-z]{2,}"), encoding="utf-8")
    assert run_link(src, other, out, batch_size=2)["written"] == 7
    assert len(done_path(out).read_text().splitlines()) == 7
    # with the record, another pipeline is refused as for JSONL
    from glinker.errors import ConfigError

    with pytest.raises(ConfigError, match="another pipeline"):
        run_link(src, pipe, out, batch_size=2)
