"""`glinker link` on UTF-16/UTF-32 input: refused at once, naming the file and the iconv that converts it, with
--skip-bad too (such a file was linked as NUL-interleaved text, or every line was blamed on Latin-1); a line holding
NUL bytes is a bad line of its own."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from glinker.cli import app
from glinker.cli.link import iter_input, run_link
from glinker.errors import DataError

LINES = ["IBM ist gut", "Ich wohne in München.", "IBM two"]

PIPE = """name: enc
model: none
kb:
  adapter: jsonl
  source: {kb}
stages:
  mentions: {{type: alias_mentions}}
  cands: {{type: alias_candidates, input: mentions}}
  links: {{type: select, input: cands}}
"""


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GLINKER_CACHE", str(tmp_path / "cache"))
    kb = tmp_path / "ents.jsonl"
    kb.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in (
        {"id": "E1", "label": "München"}, {"id": "E4", "label": "IBM"})), encoding="utf-8")
    p = tmp_path / "p.yaml"
    p.write_text(PIPE.format(kb=kb))
    return p


def link(pipeline: Path, src: Path, out: Path, *extra: str):
    return CliRunner().invoke(app, ["link", "-p", str(pipeline), str(src), "-o", str(out), "--no-progress", *extra])


@pytest.mark.parametrize("encoding,named", [
    ("utf-16", "UTF-16"),          # with its byte-order mark (Notepad's and Excel's "Unicode")
    ("utf-16-le", "UTF-16LE"),     # without one: the NUL bytes between Latin letters
    ("utf-16-be", "UTF-16BE"),
    ("utf-32", "UTF-32"),
    ("utf-32-le", "UTF-32LE"),
])
@pytest.mark.parametrize("suffix", ["txt", "jsonl"])
def test_utf16_and_utf32_input_is_refused_at_once_with_the_right_fix(pipeline: Path, tmp_path: Path, encoding: str,
                                                                   named: str, suffix: str) -> None:
    text = "\n".join(json.dumps({"id": str(i), "text": t}, ensure_ascii=False) if suffix == "jsonl" else t
                     for i, t in enumerate(LINES)) + "\n"
    src = tmp_path / f"in.{suffix}"
    src.write_bytes(text.encode(encoding))
    out = tmp_path / "out.jsonl"
    for extra in ((), ("--skip-bad",)):
        res = link(pipeline, src, out, *extra)
        assert res.exit_code == 2, res.output
        assert f"{src}: the input is {named} text" in res.output, res.output
        assert f"iconv -f {named} -t UTF-8 {src} > in.utf8.{suffix}" in res.output
        assert "latin1" not in res.output
        assert not out.exists()  # refused before anything is linked (or a run record written)
    # the fix given works
    fixed = tmp_path / f"in.utf8.{suffix}"
    fixed.write_bytes(src.read_bytes().decode(named.lower().replace("utf-", "utf_")).encode("utf-8"))
    assert run_link(fixed, pipeline, out)["written"] == 3
    linked = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [d["text"] for d in linked] == LINES
    assert [[ln["entity_id"] for ln in d["links"]] for d in linked] == [["E4"], ["E1"], ["E4"]]


def test_utf16_is_refused_through_gzip_and_standard_input(pipeline: Path, tmp_path: Path) -> None:
    data = ("\n".join(LINES) + "\n").encode("utf-16")
    gz = tmp_path / "in.txt.gz"
    gz.write_bytes(gzip.compress(data))
    out = tmp_path / "out.jsonl"
    res = link(pipeline, gz, out)
    assert res.exit_code == 2 and "the input is UTF-16 text" in res.output
    assert f"gunzip -c {gz} | iconv -f UTF-16 -t UTF-8 > in.utf8.txt" in res.output
    for fmt in ("auto", "txt"):  # an explicit --format does not peek early: the reader refuses it
        r = subprocess.run([sys.executable, "-m", "glinker", "link", "-p", str(pipeline), "-", "-o", str(out),
                            "--format", fmt], input=data, capture_output=True, env=os.environ, timeout=300, check=False)
        err = r.stderr.decode()
        assert r.returncode == 2 and "-: the input is UTF-16 text" in err, err
        assert "iconv -f UTF-16 -t UTF-8" in err
        assert not out.exists() or out.read_text() == ""  # nothing linked (--format txt: refused by the reader)
    plain = tmp_path / "x.txt"
    plain.write_bytes("\n".join(LINES).encode("utf-16-le"))
    with pytest.raises(DataError, match="UTF-16LE text"):  # the reader itself (skip_bad or not), as tests use it
        list(iter_input(plain, "txt", True))


def test_a_line_with_nul_bytes_is_a_bad_line(pipeline: Path, tmp_path: Path) -> None:
    """A NUL byte never is UTF-8 text: the line is named (or skipped with --skip-bad), never linked as garbage."""
    for suffix, lines in (("txt", [b"IBM ist gut", b"IB\x00M\x00", b"IBM two"]),
                          ("jsonl", [b'{"id": "a", "text": "IBM ist gut"}', b'{"id": "b", "text": "I\x00BM"}',
                                     b'{"id": "c", "text": "IBM two"}'])):
        src = tmp_path / f"nul.{suffix}"
        src.write_bytes(b"\n".join(lines) + b"\n")
        out = tmp_path / f"out_{suffix}.jsonl"
        res = link(pipeline, src, out)
        assert res.exit_code == 2 and f"{src}:2: the line holds NUL bytes" in res.output, res.output
        assert "iconv -f UTF-16 -t UTF-8" in res.output
        assert len(out.read_text().splitlines()) == 1  # the line before it is linked and kept
        problems: list[str] = []
        assert run_link(src, pipeline, out, skip_bad=True) == {"written": 1, "skipped_done": 1, "bad": 1}
        texts = [json.loads(x)["text"] for x in out.read_text(encoding="utf-8").splitlines()]
        assert texts == ["IBM ist gut", "IBM two"] and not any("\x00" in t for t in texts)
        assert [n for n, _ in iter_input(src, suffix, True, problems=problems)] == [1, 3]
        assert problems and "NUL bytes" in problems[0]


def test_utf8_input_with_and_without_bom_is_still_read(pipeline: Path, tmp_path: Path) -> None:
    for bom in (b"", b"\xef\xbb\xbf"):
        src = tmp_path / "u8.txt"
        src.write_bytes(bom + ("\n".join(LINES) + "\n").encode("utf-8"))
        out = tmp_path / "u8.jsonl"
        assert run_link(src, pipeline, out, resume=False)["written"] == 3
