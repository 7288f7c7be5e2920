"""Commands shown in the README and getting-started guide run as written; shipped pipelines validate."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs" / "getting-started.md"]


def _doc_commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S):
            for line in block.splitlines():
                cmd = line.split("  #")[0].strip()
                if re.match(r"^(\.venv/bin/)?glinker (pipeline|--help)", cmd):
                    found.append((doc.name, cmd.split("|")[0].strip()))
    return found


COMMANDS = _doc_commands()


def test_docs_show_commands():
    assert len(COMMANDS) >= 5


@pytest.mark.parametrize("doc,cmd", COMMANDS, ids=[c for _, c in COMMANDS])
def test_documented_command_runs(doc, cmd):
    args = shlex.split(cmd)[1:]
    r = subprocess.run([sys.executable, "-m", "glinker", *args], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f"{doc}: `{cmd}` failed:\n{r.stderr}"


@pytest.mark.parametrize("path", sorted((ROOT / "pipelines").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_pipeline_validates(path):
    from glinker.pipeline import load_spec

    spec = load_spec(path)
    assert spec.stages


def test_readme_python_snippet_runs():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Douglas Adams" in r.stdout and "1952" in r.stdout
