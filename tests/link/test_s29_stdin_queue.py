"""Ctrl-C on `glinker link - --queue ...` while standard input is still open: the input's read-ahead thread is
blocked in a read, and the run must end with its usual message and exit status, not with "Fatal Python error:
_enter_buffered_busy" (the thread held the lock of ``sys.stdin.buffer``, which the interpreter takes at shutdown)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

import pytest

from .conftest import REDIS_URL

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils timeout")
def test_ctrl_c_with_standard_input_still_open_ends_cleanly(pipeline, tmp_path, redis_job):
    out = tmp_path / "out.jsonl"
    cmd = " ".join(shlex.quote(x) for x in [sys.executable, "-m", "glinker", "link", "-p", str(pipeline), "-", "-o",
                                             str(out), "--queue", REDIS_URL, "--job", redis_job])
    # the input pipe stays open (the reader waits for a second line, no worker answers), then SIGINT as Ctrl-C sends
    r = subprocess.run(f"(echo '{{\"id\": \"a\", \"text\": \"Paris is nice.\"}}'; sleep 20) | timeout -s INT 12 {cmd}",
                       shell=True, capture_output=True, text=True, timeout=90)
    assert "Fatal Python error" not in r.stderr, r.stderr
    assert r.returncode == 124 and "interrupted" in r.stderr, r.stderr  # (124: timeout's status for a stopped command)
