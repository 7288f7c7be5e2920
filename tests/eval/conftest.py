"""Shared fixtures: the real data folder (``GLINKER_DATA``, default ``<repo>/../shared/data``), skipped when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def data_root() -> Path:
    return Path(os.environ.get("GLINKER_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def data() -> Path:
    root = data_root()
    if not (root / "ner").is_dir() and not (root / "el").is_dir():
        pytest.skip(f"real data not found at {root} (set GLINKER_DATA)")
    return root

