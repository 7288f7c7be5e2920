"""Shared fixtures of the training tests: a tiny real checkpoint, a small GLiNER JSON training file, a config."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from glinker.model.testing import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", text_encoder="bert")


@pytest.fixture
def train_files(tmp_path):
    data = [
        {"tokenized_text": "john smith works at google in london .".split(), "ner": [[0, 1, "person"], [4, 4, "organization"], [6, 6, "location"]]},
        {"tokenized_text": "paris is the capital of france .".split(), "ner": [[0, 0, "location"], [5, 5, "location"]]},
        {"tokenized_text": "apple inc was founded by steve jobs .".split(), "ner": [[0, 1, "organization"], [5, 6, "person"]]},
        {"tokenized_text": "maria lopez lives in berlin , germany .".split(), "ner": [[0, 1, "person"], [4, 4, "location"], [6, 6, "location"]]},
    ]
    (tmp_path / "train.json").write_text(json.dumps(data))
    return tmp_path


@pytest.fixture
def train_cfg(tmp_path, tiny_ckpt, train_files):
    """``train_cfg(out="run", steps=6, model={...}, **train)``: a TrainConfig on the tiny checkpoint and the file
    above; ``model`` and ``data`` replace those sections' keys, the other keywords go to ``train``."""
    from glinker.model.train import TrainConfig

    def make(out: str = "run", steps: int = 6, model: dict | None = None, data: list | None = None,
             dev: list | None = None, **train):
        return TrainConfig.model_validate({
            "output_dir": str(tmp_path / out), "seed": 3,
            "model": {"from_checkpoint": str(tiny_ckpt), "train_text_layers": -1, "train_label_layers": 0,
                      **(model or {})},
            "data": data if data is not None else [{"path": str(train_files / "train.json")}],
            "dev": dev if dev is not None else [{"path": str(train_files / "train.json")}],
            "train": {"steps": steps, "batch_size": 4, "max_words": 16, "max_types": 5, "negative_types": 1,
                      "others_lr": 3e-3, "encoder_lr": 1e-3, "warmup_ratio": 0.1, "save_every": 3, "log_every": 1,
                      "eval_every": 0, "keep_checkpoints": 5, **train},
            "loss": {"alpha": 0.75, "gamma": 2.0}})

    return make


@pytest.fixture(scope="module")
def fake_package(tmp_path_factory):
    """(site folder, PackagedEncoder): a tiny BERT encoder with its tokenizer as package ``fake_tiny_enc``, which
    ``pkg`` registers (``pkg:fake-tiny-enc``) so that nothing loads a real packaged model."""
    import torch
    from transformers import BertModel

    from glinker.model.packaged import PackagedEncoder, sha256_file
    from glinker.model.testing import _text_config, tiny_tokenizer, tiny_vocab

    site = tmp_path_factory.mktemp("site")
    folder = site / "fake_tiny_enc" / "model"
    folder.mkdir(parents=True)
    (site / "fake_tiny_enc" / "__init__.py").write_text("")
    torch.manual_seed(0)
    BertModel(_text_config("bert", len(tiny_vocab()))).save_pretrained(folder)
    tiny_tokenizer(128).save_pretrained(folder)
    spec = PackagedEncoder(package="fake-tiny-enc", module="fake_tiny_enc", subdir="model",
                           weights="model.safetensors", sha256=sha256_file(folder / "model.safetensors"),
                           upstream="test-org/tiny-bert")
    return site, spec


@pytest.fixture
def pkg(fake_package, monkeypatch, tmp_path):
    from glinker.model import packaged

    site, spec = fake_package
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(packaged.PACKAGED_ENCODERS, "fake-tiny-enc", spec)
    monkeypatch.setenv("GLINKER_CACHE", str(tmp_path / "cache"))
    return spec
