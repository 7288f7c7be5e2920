from __future__ import annotations

import sys
from pathlib import Path

import pytest

PLUGIN_DIR = Path(__file__).parent / "plugin"


@pytest.fixture
def plugin_path(monkeypatch):
    """Put the test plugin's distribution (package + dist-info with entry points) on sys.path."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    yield PLUGIN_DIR
    sys.modules.pop("glinker_test_plugin", None)


@pytest.fixture
def fresh_registry(plugin_path):
    from glinker.pipeline.registry import StageRegistry

    return StageRegistry()
