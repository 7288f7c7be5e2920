"""The `glinker` console script reads -v/-vv after the command too (errors say "run with -vv")."""

from __future__ import annotations

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
