"""Model precision as a setting: ``settings.dtype`` / ``--dtype`` / ``load_pipeline(dtype=)``, and ``dtype="auto"``."""

from __future__ import annotations

import json

import pytest
import torch

import glinker
from glinker.errors import ConfigError
from glinker.model import BiEncoder
from glinker.model import biencoder as bienc


@pytest.fixture
def fresh_auto(monkeypatch):
    """auto_dtype's cache emptied, and ``bf16_speedup`` replaced by the returned setter's value."""
    monkeypatch.setattr(bienc, "_AUTO", {})
    speed = {"x": None}
    monkeypatch.setattr("glinker.model.scoring.bf16_speedup", lambda device="cpu": speed["x"])

    def set_speedup(x):
        speed["x"] = x
        bienc._AUTO.clear()

    return set_speedup


@pytest.mark.parametrize("speedup, want", [(3.5, torch.bfloat16), (2.0, torch.bfloat16), (1.9, torch.float32),
                                           (0.03, torch.float32), (None, torch.float32)])
def test_auto_dtype_follows_the_measured_bf16_speed(fresh_auto, speedup, want):
    fresh_auto(speedup)
    assert bienc.auto_dtype("cpu") == want


def test_from_pretrained_auto_keeps_the_fingerprint(fresh_auto, tiny_model):
    fresh_auto(4.0)
    ref = BiEncoder.from_pretrained(tiny_model)
    m = BiEncoder.from_pretrained(tiny_model, dtype="auto")
    assert m.dtype == torch.bfloat16 and ref.dtype == torch.float32
    assert m.fingerprint == ref.fingerprint  # KBs and banks the float32 model encoded still match
    fresh_auto(1.0)
    assert BiEncoder.from_pretrained(tiny_model, dtype="AUTO").dtype == torch.float32
    with pytest.raises(ConfigError, match="auto"):
        BiEncoder.from_pretrained(tiny_model, dtype="bf16")


def _model_of(pipe):
    pipe.warm_up()
    models = [v for v in pipe.context._resources.values() if isinstance(v, BiEncoder)]
    assert len(models) == 1
    return models[0]


def test_pipeline_setting_and_override(pipeline, tmp_path):
    base = glinker.load_pipeline(str(pipeline))
    assert "dtype" not in base.identity()["settings"]  # unset: the identity (and resumable outputs) as before
    y = tmp_path / "bf16.yaml"
    y.write_text(pipeline.read_text().replace("settings: {batch_size: 2}", "settings: {batch_size: 2, dtype: bfloat16}"))
    bf = glinker.load_pipeline(str(y))
    assert bf.identity()["settings"]["dtype"] == "bfloat16"
    assert bf.fingerprint() != base.fingerprint()
    assert _model_of(bf).dtype == torch.bfloat16
    assert _model_of(base).dtype == torch.float32  # not the bfloat16 copy: dtype is part of the shared model's key
    over = glinker.load_pipeline(str(y), dtype="torch.float32")
    assert over.spec.header.settings.dtype == "float32" and _model_of(over).dtype == torch.float32
    # the links agree with float32's on the tiny model (scores within bfloat16 rounding)
    texts = ["John Smith lives in Berlin and works for Google."]
    a, b = base.link(texts)[0].links, bf.link(texts)[0].links
    assert a and [(x.mention.start, x.mention.end, x.entity_id) for x in a] == [
        (x.mention.start, x.mention.end, x.entity_id) for x in b]
    for x, z in zip(a, b):
        assert x.confidence == pytest.approx(z.confidence, abs=0.05)


def test_bad_dtype_is_refused_before_loading(pipeline, tmp_path):
    with pytest.raises(ConfigError, match="dtype must be one of float32, bfloat16, float16, auto") as e:
        glinker.load_pipeline(str(pipeline), dtype="half")
    assert "auto" in (e.value.fix or "")
    y = tmp_path / "bad.yaml"
    y.write_text(pipeline.read_text().replace("settings: {batch_size: 2}", "settings: {batch_size: 2, dtype: fp8}"))
    with pytest.raises(glinker.errors.PipelineError, match="dtype"):
        glinker.load_pipeline(str(y))


def test_link_resume_refuses_another_dtype(pipeline, tmp_path):
    from glinker.cli.link import run_link

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n"
                           for i, t in enumerate(["John Smith lives in Berlin.", "Google in Berlin."])))
    out = tmp_path / "out.jsonl"
    assert run_link(src, pipeline, out, dtype="bfloat16")["written"] == 2
    src.write_text(src.read_text() + json.dumps({"id": "d2", "text": "Berlin again."}) + "\n")
    with pytest.raises(ConfigError, match="written by another"):
        run_link(src, pipeline, out)  # float32 now: the two halves would differ in precision
    assert run_link(src, pipeline, out, dtype="bfloat16")["written"] == 1
