"""`import glinker` stays light: no torch, transformers or faiss (their import alone costs seconds)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "faiss", "sqlalchemy", "networkx", "numpy", "pydantic")


def _loaded_after(code: str) -> set[str]:
    r = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                       capture_output=True, text=True, check=True)
    return set(json.loads(r.stdout.strip().splitlines()[-1]))


def test_import_glinker_loads_nothing_heavy():
    mods = _loaded_after("import glinker")
    assert not [m for m in HEAVY if m in mods]


def test_validating_a_pipeline_loads_no_model_library():
    mods = _loaded_after("import glinker.pipeline as p; p.loads_spec('name: x\\nstages:\\n  a: {type: regex_mentions, patterns: {y: a}}')")
    assert not [m for m in ("torch", "transformers", "faiss") if m in mods]


def test_cli_help_loads_no_validation_or_model_library():
    # `glinker --help` and every sub-command's help read no KB adapter, schema or model module: pydantic alone took
    # ~70 ms of a 140 ms `import glinker.cli` while one KB command's option list imported the adapters
    mods = _loaded_after("import glinker.cli")
    assert not [m for m in HEAVY if m in mods]
    assert "glinker.kb.adapters" not in mods
