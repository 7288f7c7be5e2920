"""The shipped training recipes stay valid configurations (a typo in a key is an error, not a silent default)."""

from __future__ import annotations

from pathlib import Path

import pytest

RECIPES = sorted((Path(__file__).resolve().parents[2] / "examples" / "train").glob("*.yaml"))


def test_there_are_recipes():
    assert len(RECIPES) >= 3


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_validates(path):
    from glinker.model.train.config import load_train_config

    cfg = load_train_config(path)
    assert cfg.train.steps > 0 and cfg.data
    if cfg.model.from_checkpoint:   # fine-tuning stages name their packaged bases, so `--ship` can take the delta
        assert cfg.model.text_encoder and cfg.model.labels_encoder
