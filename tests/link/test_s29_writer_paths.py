"""A pipeline file names the files its writers write (audit finding 3): `pipeline validate` and `pipeline show` list
them, and a `write_links` stage refuses to append to or replace an existing file it did not make (a shell's rc
file, someone's document), while new files and re-runs onto its own output are written as before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import glinker
from glinker.errors import ConfigError
from glinker.stages.writers import GENERATOR_META, foreign_output

from .conftest import write_entities

TEXTS = ["Steve Jobs founded Apple in California.", "John Smith lives in Berlin and works for Google."]

# no model: an alias-only KB read from a JSONL source beside the pipeline file
PIPE = """name: writer-paths
kb: {{adapter: jsonl, source: entities.jsonl, cache: "{cache}"}}
stages:
  mentions: {{type: alias_mentions}}
  cands: {{type: alias_candidates, input: mentions}}
  links: {{type: select, input: cands}}
  out: {{type: write_links, input: links, path: "{path}"{extra}}}
"""

# what a user's own files hold, for each format's writer
VICTIMS = {
    "jsonl": "export IMPORTANT=1\nalias ll='ls -l'\n",
    "json": '{"editor.fontSize": 14}\n',
    "html": "<!DOCTYPE html>\n<html><head><title>my notes</title></head><body>notes</body></html>\n",
}


def pipeline_file(tmp_path: Path, path: Path | str, extra: str = "") -> Path:
    write_entities(tmp_path / "entities.jsonl")
    f = tmp_path / "pipe.yaml"
    # (the cache named in full: a relative one is read from the working folder, the repository in a test run)
    f.write_text(PIPE.format(path=path, extra=extra, cache=tmp_path / "kbcache"), encoding="utf-8")
    return f


def link(pipe_file: Path) -> None:
    with glinker.load_pipeline(str(pipe_file)) as p:
        p.link(TEXTS, batch_size=1)


@pytest.mark.parametrize("fmt,extra", [("jsonl", ", format: jsonl, append: true"), ("jsonl", ", format: jsonl"),
                                       ("json", ", format: json"), ("html", ", format: html")],
                         ids=["jsonl-append", "jsonl-replace", "json", "html"])
def test_a_writer_refuses_a_file_it_did_not_make(tmp_path, fmt, extra):
    """The audit's reproduction: `append: true` onto a stand-in rc file appended a JSON line whose `$(...)` ran at
    the next login; `format: html` replaced the file with a page. Now the run stops before writing, the file is
    unchanged, and the error names the stage (at its line), the path and the fix."""
    victim = tmp_path / "fake_bashrc"
    victim.write_text(VICTIMS[fmt], encoding="utf-8")
    f = pipeline_file(tmp_path, victim, extra)
    with pytest.raises(ConfigError) as e:
        link(f)
    msg = e.value.render()
    assert f"stage 'out' ({f}:7)" in msg and str(victim) in msg, msg
    assert ("will not append to" if "append" in extra else "will not replace") in msg
    assert "another path" in msg or "new file" in msg
    assert "delete the file" in msg
    assert victim.read_text(encoding="utf-8") == VICTIMS[fmt]  # not a byte changed


def test_foreign_output_tells_a_writers_files_from_others(tmp_path):
    """What each format's check takes as its own: the records the writers write, an empty file, a JSONL first line
    cut by an interrupted write, the empty JSON array a writer starts with, a page with the generator marker or
    one written before the marker; and what it does not."""
    f = tmp_path / "f"

    def why(text: str, fmt: str) -> str | None:
        f.write_text(text, encoding="utf-8")
        return foreign_output(f, fmt)

    rec = json.dumps({"id": "d0", "text": "Paris", "links": [], "meta": {}})
    assert why("", "jsonl") is None and why("", "html") is None
    assert why(rec + "\n", "jsonl") is None
    assert why(rec[:20], "jsonl") is None  # the first write, cut: repaired by the writer
    assert why('{"id": 7, "name": "settings"}', "jsonl")  # one whole JSON line, not a record: not taken as cut
    assert why('{"text": "Paris"}\n', "jsonl")  # an input file (no links): not an output
    assert why("export X=1\n", "jsonl") and why("[1, 2]\n", "jsonl")
    assert why("[\n\n]\n", "json") is None and why(f"[\n{rec}\n]\n", "json") is None
    assert why(f"[\n{rec[:30]}", "json") is None  # an item cut by an interrupted write
    assert why('{"a": 1}\n', "json") and why("[1, 2]\n", "json")
    assert why(f"<!DOCTYPE html>\n<html><head>{GENERATOR_META}</head></html>", "html") is None
    assert why(VICTIMS["html"], "html") and why("plain text", "html")
    assert foreign_output(tmp_path / "missing.jsonl", "jsonl") is None
    assert foreign_output("/dev/null", "jsonl") is None  # not a regular file: nothing there to destroy


@pytest.mark.parametrize("fmt", ["jsonl", "json", "html"])
def test_new_files_and_reruns_onto_the_writers_own_output_still_work(tmp_path, fmt):
    out = tmp_path / f"out.{fmt}"
    f = pipeline_file(tmp_path, out, ", append: true" if fmt == "jsonl" else "")
    link(f)  # a new file
    first = out.read_text(encoding="utf-8")
    assert first.strip()
    if fmt == "html":
        assert GENERATOR_META in first  # the marker that lets a later run replace it
    link(f)  # a second process onto its own output: JSONL appended, JSON and HTML replaced
    again = out.read_text(encoding="utf-8")
    if fmt == "jsonl":
        assert [json.loads(x)["text"] for x in again.splitlines()] == TEXTS + TEXTS
    else:
        assert again == first
    if fmt == "html":  # a page written before the marker was added is still the writer's own
        out.write_text(first.replace(GENERATOR_META, ""), encoding="utf-8")
        link(f)
        assert out.read_text(encoding="utf-8") == first
    out.write_text("", encoding="utf-8")  # an empty file is started
    link(f)
    assert out.stat().st_size > 0


def glinker_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "glinker", *args], capture_output=True, text=True, cwd=cwd)


def test_validate_and_show_list_the_files_a_pipeline_writes_and_reads(tmp_path):
    """`glinker pipeline validate` said `OK` and named no path: a user saw nothing of the file it would append to.
    Now every file written (the writer's, the KB cache folder) and read (the KB source) is listed, absolute, and a
    file the writer will refuse is a warning."""
    victim = tmp_path / "fake_bashrc"
    victim.write_text(VICTIMS["jsonl"], encoding="utf-8")
    f = pipeline_file(tmp_path, victim, ", format: jsonl, append: true")
    r = glinker_cli("pipeline", "validate", str(f), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"writes {victim}  [stage 'out' (write_links, jsonl): exists and" in r.stdout
    assert f"writes {tmp_path / 'kbcache'}" in r.stdout  # the cache folder the KB is built in
    assert f"reads  {tmp_path / 'entities.jsonl'}" in r.stdout
    assert f"warning: stage 'out' (write_links, jsonl) will refuse to write {victim}" in r.stderr
    r = glinker_cli("pipeline", "show", str(f), cwd=tmp_path)
    assert r.returncode == 0 and f"writes {victim}" in r.stdout
    r = glinker_cli("pipeline", "show", "--format", "dot", str(f), cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith('digraph "writer-paths" {')
    assert f"//   writes {victim}" in r.stdout  # as dot comments: still a graph Graphviz reads

    # relative to the working folder, as the run writes it; a new file is no warning; a control character in a
    # path is shown escaped (a carriage return would hide the real path on a terminal)
    f.write_text(PIPE.format(path="sub/out\\r.html", extra="", cache=tmp_path / "kbcache"), encoding="utf-8")
    r = glinker_cli("pipeline", "validate", str(f), cwd=tmp_path)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    assert f"writes '{tmp_path}/sub/out\\r.html'  [stage 'out' (write_links, html): new]" in r.stdout


def test_a_page_begun_before_the_generator_marker_is_continued_on_resume(tmp_path):
    """An HTML page a writer began before pages carried the generator marker keeps its documents when a resumed run
    continues it (it was started anew: 3 documents became 0)."""
    from glinker.stages.writers import HTMLWriter
    from glinker.types import LinkedDocument

    p = tmp_path / "page.html"
    HTMLWriter(p).write([LinkedDocument(id=str(i), text=f"doc {i}") for i in range(3)])
    p.write_text(p.read_text(encoding="utf-8").replace(GENERATOR_META, ""), encoding="utf-8")  # as written before
    w = HTMLWriter(p, continue_existing=True, keep=3)
    w.write([LinkedDocument(id="3", text="doc 3")])
    page = p.read_text(encoding="utf-8")
    assert w._file.count == 4 and page.count('<section class="gl-doc"') == 4 and "doc 0" in page and "doc 3" in page


@pytest.mark.parametrize("name", ["notes.txt", "page.html", "data.json"])
def test_glinker_link_refuses_an_output_it_did_not_write(tmp_path, name):
    """`glinker link -o FILE` on a file glinker did not write: refused before anything is appended or replaced (a
    `.txt` output is written as JSONL, so `-o notes.txt` appended JSON lines to the user's notes)."""
    from glinker.cli.link import run_link

    pipe = pipeline_file(tmp_path, tmp_path / "unused.jsonl")
    src = tmp_path / "in.txt"
    src.write_text(TEXTS[0] + "\n")
    out = tmp_path / name
    mine = {"notes.txt": "buy milk\n", "page.html": VICTIMS["html"], "data.json": VICTIMS["json"]}[name]
    out.write_text(mine)
    for resume in (True, False):
        with pytest.raises(ConfigError, match="is not one glinker link writes") as ei:
            run_link(src, pipe, out, resume=resume)
        assert ei.value.where == "--output" and out.read_text() == mine
    out.unlink()  # a new file, then a re-run onto its own output: written as before
    run_link(src, pipe, out)
    run_link(src, pipe, out)
    assert out.stat().st_size > 0
