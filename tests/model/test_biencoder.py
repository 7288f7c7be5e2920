"""Checkpoint round-trips, strictness, LabelBank, scoring exactness, long texts, span vectors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _conformance import FIXTURES

from glinker.errors import ConfigError, DataError, ModelError
from glinker.model import BiEncoder, LabelBank
from glinker.model.scoring import dense_logits, score_candidates
from glinker.model.testing import build_tiny_checkpoint

from _tiny import LABELS, TEXTS


def test_tiny_checkpoint_is_gliner_shaped_and_logits_have_both_signs(tiny, model):
    names = sorted(p.name for p in tiny.iterdir())
    assert names == [
        "gliner_config.json",
        "labels_tokenizer",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    cfg = json.loads((tiny / "gliner_config.json").read_text())
    assert cfg["labels_encoder"] and cfg["span_mode"] == "markerV0" and cfg["encoder_config"]["model_type"]
    lg = model.dense_logits([t.split() for t in TEXTS], LABELS)
    assert float(lg.min()) < -1 and float(lg.max()) > 1
    assert model.dim == 48


@pytest.mark.parametrize("kind", ["bert", "deberta"])
def test_other_text_encoders_build_and_predict(tmp_path, kind):
    m = BiEncoder.from_pretrained(build_tiny_checkpoint(tmp_path / kind, kind))
    out = m.predict(TEXTS, LABELS, threshold=0.3)
    assert len(out) == 3 and sum(len(x) for x in out) > 0


def test_save_load_roundtrip_both_formats(tmp_path, model):
    fp = model.fingerprint
    for safe in (True, False):
        d = model.save_pretrained(tmp_path / f"rt{safe}", safe_serialization=safe)
        assert (d / ("model.safetensors" if safe else "pytorch_model.bin")).is_file()
        again = BiEncoder.from_pretrained(d)
        assert again.fingerprint == fp
        assert again.predict(TEXTS, LABELS, threshold=0.4) == model.predict(TEXTS, LABELS, threshold=0.4)
    assert not list(tmp_path.glob(".*tmp-*"))  # atomic save leaves no temp folder


def test_fingerprint_changes_with_weights(tmp_path, tiny):
    a = BiEncoder.from_pretrained(tiny)
    b = BiEncoder.from_pretrained(build_tiny_checkpoint(tmp_path / "other", "modernbert", seed=1))
    assert len(a.fingerprint) == 64 and a.fingerprint != b.fingerprint


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_strict_key_checking(tmp_path, tiny):
    from safetensors.torch import load_file, save_file

    d = _copy(tiny, tmp_path / "extra")
    sd = load_file(str(d / "model.safetensors"))
    sd["span_rep_layer.surprise"] = torch.zeros(1)
    save_file(sd, str(d / "model.safetensors"))
    with pytest.raises(ModelError, match="unexpected keys: span_rep_layer.surprise"):
        BiEncoder.from_pretrained(d)
    d2 = _copy(tiny, tmp_path / "missing")
    sd = load_file(str(d2 / "model.safetensors"))
    del sd["prompt_rep_layer.0.weight"]
    save_file(sd, str(d2 / "model.safetensors"))
    with pytest.raises(ModelError, match="missing keys: prompt_rep_layer.0.weight"):
        BiEncoder.from_pretrained(d2)


def test_pickled_objects_are_refused(tmp_path, tiny):
    d = _copy(tiny, tmp_path / "evil")
    (d / "model.safetensors").unlink()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, str(d / "pytorch_model.bin"))
    with pytest.raises(ModelError, match="could not read the weights"):
        BiEncoder.from_pretrained(d)


def test_bad_checkpoints_give_clear_errors(tmp_path, tiny):
    with pytest.raises(ModelError, match="not found"):
        BiEncoder.from_pretrained(tmp_path / "nope")
    d = _copy(tiny, tmp_path / "uni")
    cfg = json.loads((d / "gliner_config.json").read_text())
    cfg["labels_encoder"] = None
    cfg["labels_encoder_config"] = None
    (d / "gliner_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="uni-encoder") as e:
        BiEncoder.from_pretrained(d)
    assert "labels_encoder" in e.value.where and e.value.fix
    (d / "gliner_config.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        BiEncoder.from_pretrained(d)


def test_label_bank_save_load_and_predict(tmp_path, model):
    bank = model.encode_labels(LABELS)
    assert bank.names == LABELS and bank.vectors.shape == (4, 48) and bank.vectors.dtype == torch.float32
    bank.save(tmp_path / "bank")
    again = LabelBank.load(tmp_path / "bank", mmap=True)
    assert again.names == LABELS and torch.equal(again.vectors, bank.vectors)
    assert model.predict(TEXTS, again, threshold=0.4) == model.predict(TEXTS, LABELS, threshold=0.4)
    with pytest.raises(DataError, match="not a label bank"):
        LabelBank.load(tmp_path)
    desc = model.encode_labels({"person": "a human being", "place": "a city or country"})
    assert desc.names == ["person", "place"] and desc.prompts == ["a human being", "a city or country"]


def test_bank_from_another_model_is_refused(tmp_path, model):
    other = BiEncoder.from_pretrained(build_tiny_checkpoint(tmp_path / "o", "bert", seed=3))
    with pytest.raises(ModelError, match="different model"):
        model.predict(TEXTS, other.encode_labels(LABELS))


def test_encode_entities_matches_bank_and_is_order_independent(model):
    texts = [
        "Paris: capital of France",
        "x",
        "Google: an American technology company founded in 1998",
        "Berlin",
    ]
    v = model.encode_entities(texts, batch_size=2)
    assert v.shape == (4, 48) and v.dtype == np.float32
    bank = model.encode_labels(texts)
    assert np.allclose(v, bank.vectors.numpy(), atol=1e-5)
    single = model.encode_entities([texts[2]])
    assert np.allclose(single[0], v[2], atol=1e-5)
    assert model.encode_entities([]).shape == (0, 48)


@pytest.mark.parametrize("budget", [64, 4096, 10**9])
def test_chunked_scoring_equals_dense(budget):
    g = torch.Generator().manual_seed(0)
    span = torch.randn(3, 7, 4, 16, generator=g)
    valid = torch.rand(3, 7, 4, generator=g) > 0.3
    P = torch.randn(50, 16, generator=g)
    cmask = torch.rand(3, 50, generator=g) > 0.2
    for t in (0.01, 0.5, 0.97):
        c = score_candidates(span, valid, P, t, cmask, budget_bytes=budget)
        probs = torch.sigmoid(dense_logits(span, P))
        probs = probs.masked_fill(~valid[..., None], 0).masked_fill(~cmask[:, None, None, :], float("-inf"))
        b, s, k, cc = torch.where(probs > t)
        assert torch.equal(c.b, b) and torch.equal(c.s, s) and torch.equal(c.k, k) and torch.equal(c.c, cc)
        assert torch.allclose(c.score, probs[b, s, k, cc], atol=1e-6, rtol=0)  # GEMM blocking rounding only
    assert len(score_candidates(span, valid, P, 1.0)) == 0


def test_per_text_labels_and_duplicates(model):
    out = model.predict(TEXTS[:2], [["person", "person", "location"], {"org": "organization"}], threshold=0.2)
    assert {e["label"] for e in out[0]} <= {"person", "location"}
    assert {e["label"] for e in out[1]} <= {"org"}
    with pytest.raises(DataError, match="one label set per text"):
        model.predict(TEXTS, [["person"]], threshold=0.5)
    with pytest.raises(DataError, match="have the same description"):
        model.predict(TEXTS, {"a": "same", "b": "same"})


def test_long_text_is_chunked_not_truncated(model):
    sent = "Maria Lopez from Acme Corp met the United Nations in Berlin."
    n_rep = 12  # ~140 words, more than max_len=64
    text = " ".join([sent] * n_rep)
    ref = model.predict([sent], LABELS, threshold=0.3, flat_ner=False)[0]
    out = model.predict([text], LABELS, threshold=0.3, flat_ner=False)[0]
    assert not out.truncated and out.windows > 2
    assert out and all(text[e["start"] : e["end"]] == e["text"] for e in out)
    # every repetition far from a window edge is found like the single sentence (same spans and labels)
    last = model.predict([text], LABELS, threshold=0.3, long_text="truncate")[0]
    assert last.truncated and max(e["end"] for e in last) <= len(" ".join([sent] * 6))
    assert max(e["end"] for e in out) > len(text) - len(sent)
    assert {(e["text"], e["label"]) for e in out} >= {
        (e["text"], e["label"]) for e in ref if e["score"] > 0.9
    }
    with pytest.raises(ConfigError):
        model.predict([text], LABELS, long_text="wrap")


def test_window_words_chunks_long_texts_into_shorter_windows(tiny, model):
    sent = "Maria Lopez from Acme Corp met the United Nations in Berlin."   # 11 words
    text = " ".join([sent] * 4)
    narrow = BiEncoder.from_pretrained(tiny, window_words=12)
    assert narrow.window_words == 12 and model.window_words == model.max_len == 64
    assert narrow.fingerprint == model.fingerprint          # an inference setting: label and KB vectors are the same
    out = narrow.predict([text], LABELS, threshold=0.3, flat_ner=False)[0]
    assert model.predict([text], LABELS, threshold=0.3)[0].windows == 1
    assert out.windows >= 4 and not out.truncated
    assert max(e["end"] for e in out) > len(text) - len(sent)
    # a text that fits one window is scored exactly as without the setting
    one = narrow.predict([sent], LABELS, threshold=0.3, flat_ner=False)[0]
    ref = model.predict([sent], LABELS, threshold=0.3, flat_ner=False)[0]
    assert [(e["start"], e["end"], e["label"], round(e["score"], 5)) for e in one] == \
        [(e["start"], e["end"], e["label"], round(e["score"], 5)) for e in ref]
    # the checkpoint's own key does the same; 0 restores max_len
    cfg = json.loads((tiny / "gliner_config.json").read_text())
    assert BiEncoder.from_pretrained(tiny, window_words=0).window_words == 64
    d = tiny.parent / "windowed"
    shutil.copytree(tiny, d, dirs_exist_ok=True)
    (d / "gliner_config.json").write_text(json.dumps({**cfg, "window_words": 12}))
    assert BiEncoder.from_pretrained(d).window_words == 12


def test_long_text_scores_do_not_depend_on_the_threshold(tiny):
    """Overlapping windows: each span is scored by the window that sees it best, whatever the threshold (a run at
    0.05 filtered to >= t returns what a run at t returns; it did not when the best window scored the span below t)."""
    narrow = BiEncoder.from_pretrained(tiny, window_words=12)
    text = " ".join(["Maria Lopez from Acme Corp met the United Nations in Berlin."] * 5)
    for flat in (True, False):
        low = narrow.predict([text], LABELS, threshold=0.05, flat_ner=flat, multi_label=not flat)[0]
        assert low.windows >= 5
        for t in sorted({round(e["score"] + 1e-4, 4) for e in low})[::3]:  # just above scores: where it showed
            at = narrow.predict([text], LABELS, threshold=t, flat_ner=flat, multi_label=not flat)[0]
            kept = [e for e in low if e["score"] >= t]
            assert [(e["start"], e["end"], e["label"]) for e in at] == [(e["start"], e["end"], e["label"]) for e in kept]
            # the same window's score: equal up to float32 rounding (on AMX CPUs the exact re-scoring of the pairs
            # the bf16 pre-filter keeps runs in batches shaped by the threshold: 0.58766526 vs 0.58766532 seen);
            # another window's score differs by far more
            assert [e["score"] for e in at] == pytest.approx([e["score"] for e in kept], rel=1e-6, abs=1e-7)


def test_span_vectors_score_like_predict(model):
    bank = model.encode_labels(LABELS)
    ents = model.predict(TEXTS, bank, threshold=0.3, flat_ner=False, multi_label=True)
    spans = [[(e["start"], e["end"]) for e in es] for es in ents]
    vecs = model.span_vectors(TEXTS, spans)
    n = 0
    for es, v in zip(ents, vecs):
        assert v.shape == (len(es), 48) and v.dtype == np.float32
        for e, row in zip(es, v):
            p = torch.sigmoid(torch.tensor(row) @ bank.vectors[bank.index_of(e["label"])])
            assert abs(float(p) - e["score"]) < 1e-4
            n += 1
    assert n > 0
    with pytest.raises(DataError, match="covers no word"):
        model.span_vectors(["abc def"], [[(3, 4)]])


def test_word_memo_splits_and_counts_each_text_once_and_stays_bounded(model, monkeypatch):
    import copy

    from glinker.model import words

    real = words.subtoken_counts
    calls: list[int] = []
    monkeypatch.setattr(words, "subtoken_counts", lambda tok, wl: calls.append(len(wl)) or real(tok, wl))
    memo = words.WordMemo(max_chars=60)
    a, b = "Maria Lopez met the United Nations.", "Berlin is big."
    sa, sb = memo.split(a), memo.split(b)
    assert memo.split(a) is sa and sa == words.split_words(a)
    with model._tokenizing:
        got = memo.counts(model.tokenizer, [sa, sb])
        assert got == real(model.tokenizer, [sa.words, sb.words]) and calls == [2]
        assert memo.counts(model.tokenizer, [sb, sa]) == got[::-1] and calls == [2]   # remembered
        other = copy.deepcopy(model.tokenizer)
        assert memo.counts(other, [sa]) == got[:1] and calls == [2, 1]   # another tokenizer: counted again
    memo.split("Oslo.")     # 35 + 14 + 5 characters held, a used last
    memo.split("x " * 12)   # 24 more: the least recently used text (b) goes, then a
    assert list(memo.items) == ["Oslo.", "x " * 12] and memo.chars == 29
    memo.split("y" * 100)   # longer than the whole memo: split, not kept
    assert memo.chars <= 60 and "y" * 100 not in memo.items
    # a model reads a text once for predict and its span vectors; a copy of the model has a memo of its own
    calls.clear()
    texts = [t + " (memo)" for t in TEXTS]
    ents = model.predict(texts, LABELS, threshold=0.3)
    model.span_vectors(texts, [[(e["start"], e["end"]) for e in es] for es in ents])
    assert calls == [len(texts)]
    assert "_word_memo" not in copy.deepcopy(model).__dict__


def test_import_glinker_stays_light():
    code = (
        "import sys, glinker, glinker.model; print(any(m in sys.modules for m in ('torch', 'transformers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_fixture_checkpoint_is_self_contained():
    d = FIXTURES / "modernbert"
    assert (d / "labels_tokenizer" / "tokenizer_config.json").is_file()
    m = BiEncoder.from_pretrained(d)
    assert "golden-src" in m.config["labels_encoder"]  # the source folder is gone; nothing resolved it


def test_checkpoint_without_labels_tokenizer_resolves_labels_encoder(tmp_path, tiny, model):
    d = _copy(tiny, tmp_path / "old-style")
    shutil.move(str(d / "labels_tokenizer"), str(tmp_path / "label-encoder-src"))
    cfg = json.loads((d / "gliner_config.json").read_text())
    cfg["labels_encoder"] = str(tmp_path / "label-encoder-src")  # gliner <= 0.2.27 layout: resolved by name
    (d / "gliner_config.json").write_text(json.dumps(cfg))
    old = BiEncoder.from_pretrained(d)
    assert old.predict(TEXTS, LABELS, threshold=0.4) == model.predict(TEXTS, LABELS, threshold=0.4)
    cfg["labels_encoder"] = str(tmp_path / "nowhere")
    (d / "gliner_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="label tokenizer"):
        BiEncoder.from_pretrained(d)


def test_an_encoder_named_by_hub_id_is_fetched_without_transformers_retries(tmp_path, tiny, monkeypatch):
    """A checkpoint naming its label encoder by hub id: the tokenizer files come through huggingface_hub (which
    fails at once offline), never through transformers' loaders, which retry ~30 s per file offline."""
    import huggingface_hub
    import transformers

    d = _copy(tiny, tmp_path / "hub-named")
    src = tmp_path / "label-encoder-src"
    shutil.move(str(d / "labels_tokenizer"), str(src))
    cfg = json.loads((d / "gliner_config.json").read_text())
    cfg["labels_encoder"] = "some-org/some-encoder"
    (d / "gliner_config.json").write_text(json.dumps(cfg))
    asked, loaded = [], []

    def offline(repo_id, **kw):
        asked.append(repo_id)
        raise OSError("offline: no cached snapshot")

    real = transformers.AutoTokenizer.from_pretrained.__func__

    def only_folders(cls, src_, *a, **kw):
        loaded.append(src_)
        assert Path(src_).is_dir(), f"transformers asked to resolve {src_!r}"
        return real(cls, src_, *a, **kw)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", classmethod(only_folders))
    with pytest.raises(ModelError, match="label tokenizer from some-org/some-encoder.*offline"):
        BiEncoder.from_pretrained(d)
    assert asked == ["some-org/some-encoder"]
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: str(src))  # a cached snapshot
    assert BiEncoder.from_pretrained(d).config["labels_encoder"] == "some-org/some-encoder"
    assert str(src) in loaded


def test_predict_names_bad_labels_and_thresholds(model):
    for bad in ([], {}, None, ["", "person"], ["person", "  "], 5):
        with pytest.raises(DataError):
            model.predict(TEXTS, bad)
    for th in (None, -0.1, 1.5, "0.5", True):
        with pytest.raises(ConfigError, match="threshold"):
            model.predict(TEXTS, LABELS, threshold=th)


def test_saved_bank_files_are_readable_like_any_file(tmp_path, model):
    """The metadata goes through a temporary file (atomic), which must not keep mkstemp's owner-only mode: a bank
    on shared storage is read by other users and containers."""
    import os
    import stat

    model.encode_labels(LABELS).save(tmp_path / "bank")
    modes = {f.name: stat.S_IMODE(os.stat(f).st_mode) for f in (tmp_path / "bank").iterdir()}
    assert len(set(modes.values())) == 1, modes


def test_api_misuse_gets_glinker_errors(tiny, model, tmp_path):
    from glinker.errors import GlinkerError

    with pytest.raises(ConfigError, match="dtype 'float33'"):
        BiEncoder.from_pretrained(tiny, dtype="float33")
    with pytest.raises(DataError, match="texts must be a string or a list"):
        model.predict(None, LABELS)
    with pytest.raises(ConfigError, match="overlap"):
        model.predict(TEXTS, LABELS, overlap=-1)
    (tmp_path / "model.safetensors").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        model.save_pretrained(tmp_path / "model.safetensors")
    with pytest.raises(GlinkerError, match="checkpoint folder not found"):
        BiEncoder.from_pretrained(str(tmp_path / "nonexistent-dir") + "/")
    with pytest.raises(GlinkerError, match="checkpoint folder not found"):
        BiEncoder.from_pretrained("nonexistent-dir/")
    with pytest.raises(GlinkerError, match="did you mean the shipped model 'glinker-bi-minilm'"):
        BiEncoder.from_pretrained("glinker-bi-minilmx")
