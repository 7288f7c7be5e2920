"""The `glinker` console script reads -v/-vv after the command too (errors say "run with -vv")."""

from __future__ import annotations

import json
import subprocess
import sys

from glinker.cli import verbosity_first


def test_verbosity_flags_after_the_command_are_read():
    assert verbosity_first(["kb", "build", "-vv", "--out", "x"]) == ["-vv", "kb", "build", "--out", "x"]
    assert verbosity_first(["-v", "kb", "info"]) == ["-v", "kb", "info"]
    assert verbosity_first(["kb", "info", "--verbose", "k"]) == ["--verbose", "kb", "info", "k"]
    assert verbosity_first(["ner", "-l", "x", "--", "-v"]) == ["ner", "-l", "x", "--", "-v"]   # after --: data
    assert verbosity_first(["ner", "-l", "x", "-vx"]) == ["ner", "-l", "x", "-vx"]             # not a flag of ours
    r = subprocess.run([sys.executable, "-m", "glinker", "kb", "info", "/nonexistent/kb", "-vv"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "No such option" not in r.stderr and "/nonexistent/kb" in r.stderr, r.stderr


def test_stopped_runs_say_what_a_rerun_does(tmp_path, monkeypatch):
    """`kb build` stopped by SIGTERM said nothing (exit 143); `glinker link -o out.json` stopped promised a resume
    that a .json/.html output does not do."""
    import glinker.cli.link as link_cli
    import glinker.kb.build as build
    from typer.testing import CliRunner

    from glinker.cli import app
    from glinker.cli.stopping import Terminated

    def stopped(*a, **k):
        raise Terminated()

    src = tmp_path / "e.jsonl"
    src.write_text('{"id": "Q90", "label": "Paris"}\n', encoding="utf-8")
    monkeypatch.setattr(build, "build_kb", stopped)
    r = CliRunner().invoke(app, ["kb", "build", "-a", "jsonl", "-s", str(src), "--model", "none",
                                 "--out", str(tmp_path / "kb")])
    assert r.exit_code == 143 and "terminated (SIGTERM): what was built is kept; run the same command again" in r.output

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(link_cli, "run_link", interrupted)
    (tmp_path / "p.yaml").write_text("name: t\nstages:\n  m: {type: regex_mentions, patterns: {c: Paris}}\n")
    (tmp_path / "in.txt").write_text("Paris\n")
    for out in ("o.json", "o.jsonl"):  # (a .json/.html output resumes too now: tests/core/test_s37_page_resume.py)
        r = CliRunner().invoke(app, ["link", "-p", str(tmp_path / "p.yaml"), str(tmp_path / "in.txt"),
                                     "-o", str(tmp_path / out)])
        assert r.exit_code == 130 and "run the same command again to resume" in r.output, r.output


def test_ner_reads_jsonl_from_standard_input_and_eval_el_refuses_pipeline_overrides(tmp_path):
    from pathlib import Path

    ckpt = Path(__file__).resolve().parents[1] / "fixtures" / "gliner" / "modernbert"
    r = subprocess.run([sys.executable, "-m", "glinker", "ner", "-m", str(ckpt), "-l", "person", "-"],
                       input='{"id": "d1", "text": "Maria Lopez met Acme."}\n', capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout.strip().splitlines()[-1])
    assert rec["id"] == "d1" and rec["text"] == "Maria Lopez met Acme."   # not the JSON line read as text
    gold = tmp_path / "g.jsonl"
    gold.write_text(json.dumps({"id": "a", "text": "Paris.", "mentions": [
        {"start": 0, "end": 5, "mention": "Paris", "wikidata_qid": "Q90"}]}) + "\n")
    r = subprocess.run([sys.executable, "-m", "glinker", "eval", "el", "--data", str(gold), "--predictions",
                        str(gold), "--kb", "/no/kb"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--kb-ids /no/kb" in r.stderr, r.stderr
