"""Every `glinker eval` command in docs/evaluation.md uses options that exist (checked by the real parser)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from glinker.cli import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "evaluation.md"


def doc_commands() -> list[list[str]]:
    text = DOC.read_text(encoding="utf-8")
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in block.splitlines():
            if line.startswith("glinker eval"):
                cmds.append(shlex.split(line)[1:])
    return cmds


def test_documented_commands_parse():
    cmds = doc_commands()
    assert len(cmds) >= 6
    runner = CliRunner()
    for args in cmds:
        # --help is eager: the parser still rejects any unknown option before printing help
        r = runner.invoke(app, args + ["--help"])
        assert r.exit_code == 0, (args, r.output)
        assert "No such option" not in r.output
    bad = runner.invoke(app, ["eval", "ner", "--no-such-flag", "--help"])
    assert bad.exit_code != 0
