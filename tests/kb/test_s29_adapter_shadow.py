"""A folder named ``kb_adapters`` in the working folder hides the built-in adapters of an installed glinker from
``python -m glinker`` and scripts (the working folder comes first on ``sys.path``): the error says where the foreign
package comes from and what to do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# glinker imported as from site-packages (a path entry after the working folder), not through the editable finder
# of a development install, which would find kb_adapters.jsonl whatever package holds the name
BUILD = (
    "import sys\n"
    "sys.meta_path[:] = [f for f in sys.meta_path if 'Editable' not in getattr(f, '__name__', type(f).__name__)]\n"
    f"sys.path[:] = ['', {str(ROOT)!r}] + [p for p in sys.path if p and '__editable__' not in p]\n"
    "from glinker.cli import main\n"
    "sys.argv = ['glinker', 'kb', 'build', '--adapter', 'jsonl', '--source', 'e.jsonl', '--model', 'none', '--out', 'kb']\n"
    "main()\n"
)


def test_a_kb_adapters_folder_in_the_working_folder_is_named(tmp_path) -> None:
    (tmp_path / "e.jsonl").write_text(json.dumps({"id": "E1", "label": "Ada Lovelace"}) + "\n")
    (tmp_path / "kb_adapters").mkdir()
    (tmp_path / "kb_adapters" / "__init__.py").write_text("# a user's own package of that name\n")
    r = subprocess.run([sys.executable, "-c", BUILD], cwd=tmp_path, capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "is taken from" in out and str(tmp_path / "kb_adapters") in out and "run from another folder" in out, out
    (tmp_path / "kb_adapters").rename(tmp_path / "mine")  # elsewhere, the same build works
    r = subprocess.run([sys.executable, "-c", BUILD], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
