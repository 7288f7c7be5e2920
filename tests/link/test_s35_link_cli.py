"""`glinker link` on a huge document (session 35): it is linked whole, minutes on a CPU, while the bar (which
counts lines) stands still; the command says so when it reads one."""

from __future__ import annotations

import json


def test_a_huge_document_is_said_when_read(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import glinker.cli.link as link_cli
    from glinker.cli import app

    monkeypatch.setattr(link_cli, "LONG_DOCUMENT_CHARS", 40)
    p = tmp_path / "p.yaml"
    p.write_text("name: t\nmodel: none\nstages:\n  m: {type: regex_mentions, patterns: {year: '[0-9]{4}'}}\n")
    src = tmp_path / "in.jsonl"
    docs = [{"id": "a", "text": "short, 1999"}] + [{"id": f"b{i}", "text": "In 2024 " * 10} for i in range(5)]
    src.write_text("".join(json.dumps(d) + "\n" for d in docs))
    r = CliRunner().invoke(app, ["link", "-p", str(p), str(src), "-o", str(tmp_path / "o.jsonl"), "--no-progress"])
    assert r.exit_code == 0, r.output
    said = [ln for ln in r.stderr.splitlines() if "is linked whole" in ln]
    assert len(said) == 3 and said[0].startswith(f"{src}:2: a document of 80 characters"), r.stderr
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 6
