"""Third-party stages come in through the `glinker.stages` entry points of an installed distribution."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from glinker.pipeline.registry import StageRegistry

REPO = Path(__file__).resolve().parents[2]


def test_entry_point_stage_is_found(fresh_registry: StageRegistry):
    assert "test_caps" in fresh_registry.names()
    cls = fresh_registry.get("test_caps")
    assert cls.__module__ == "glinker_test_plugin" and cls.type_name == "test_caps"


def test_plugin_cannot_shadow_builtin(fresh_registry: StageRegistry):
    from glinker.stages.regex import RegexMentions

    assert fresh_registry.get("regex_mentions") is RegexMentions


def test_without_the_plugin_the_type_is_unknown():
    assert "test_caps" not in StageRegistry().names()


def test_cli_validates_plugin_pipeline(tmp_path, plugin_path):
    f = tmp_path / "p.yaml"
    f.write_text("name: plug\nstages:\n  c: {type: test_caps}\n  s: {type: test_summary, inputs: [c]}\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_path), str(REPO)]))
    r = subprocess.run([sys.executable, "-m", "glinker", "pipeline", "validate", str(f)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "2 stage(s)" in r.stdout and "c -> s" in r.stdout
