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


def test_train_cli_refuses_an_unknown_ship_format(tmp_path):
    from typer.testing import CliRunner

    from glinker.cli import app

    r = CliRunner().invoke(app, ["train", "--config", str(RECIPES[0]), "--ship", str(tmp_path / "m"),
                                 "--ship-format", "int4"])
    assert r.exit_code != 0
    assert "int8-diff" in r.output and "int4" in r.output
    assert not (tmp_path / "m").exists()


def test_train_cli_checks_its_paths_and_stop_at_before_training(tmp_path):
    from typer.testing import CliRunner

    from glinker.cli import app

    f = tmp_path / "afile"
    f.write_text("x")
    for extra, hint in ((["--set", f"output_dir={f}"], "output_dir"), (["--export", str(f)], "--export"),
                        (["--stop-at", "0"], "--stop-at")):
        r = CliRunner().invoke(app, ["train", "--config", str(RECIPES[0]), *extra])
        assert r.exit_code == 2 and hint in r.output, (extra, r.output)


def test_a_set_that_adds_an_unknown_top_level_key_is_named_as_the_set(tmp_path):
    """`--set settings.dtype=auto` (no such section) was blamed on line 1 of the config file."""
    from glinker.errors import ConfigError
    from glinker.model.train.config import load_train_config

    cfg = tmp_path / "t.yaml"
    cfg.write_text("output_dir: runs/x\nmodel: {text_encoder: a, labels_encoder: b}\ndata: []\n")
    with pytest.raises(ConfigError) as ei:
        load_train_config(cfg, {"settings.dtype": "auto"})
    assert ei.value.where == "--set settings.dtype" and "settings" in ei.value.message
