"""A KB URL's password stays hidden in `pipeline show` and `validate` when a ${VAR} in that URL is unset."""

from __future__ import annotations

import os
import subprocess
import sys

PIPE = """name: p
kb:
  adapter: sql
  source: postgresql://u:S3cretPW@db:5432/${S29_UNSET_DB}
  options: {table: entities}
stages:
  m: {type: alias_mentions}
"""


def test_an_unset_variable_does_not_show_the_password(tmp_path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(PIPE)
    env = {k: v for k, v in os.environ.items() if k != "S29_UNSET_DB"}
    for cmd in ("show", "validate"):
        r = subprocess.run([sys.executable, "-m", "glinker", "pipeline", cmd, str(f)], capture_output=True, text=True,
                           env=env, cwd=tmp_path)
        out = r.stdout + r.stderr
        assert "S3cretPW" not in out and "u:***@db" in out, (cmd, out)
