"""gliner-compatible API (aliases of predict / encode_labels, to/eval, hub options), eval mode during inference,
argument validation and loading messages (docs/model.md, "Coming from gliner")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from glinker.errors import ConfigError, DataError, ModelError
from glinker.model import BiEncoder, LabelBank
from glinker.model.testing import build_tiny_checkpoint

from _tiny import LABELS, TEXTS


@pytest.fixture(scope="module")
def token_model(tmp_path_factory):
    """A token-level model: its scoring needs the label embeddings E themselves (a dense model)."""
    return BiEncoder.from_pretrained(
        build_tiny_checkpoint(tmp_path_factory.mktemp("tok") / "m", "modernbert", seed=2, span_mode="token_level"))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _set_config(d: Path, **kv) -> None:
    cfg = json.loads((d / "gliner_config.json").read_text())
    cfg.update(kv)
    (d / "gliner_config.json").write_text(json.dumps(cfg))


# ---- A. gliner-style methods ---------------------------------------------------------------------------------
def test_gliner_aliases_equal_predict_in_gliners_positional_order(model):
    for flat, th, multi in ((True, 0.5, False), (False, 0.3, True), (True, 0.3, True)):
        want = model.predict(TEXTS, LABELS, th, flat, multi)  # predict's own order: threshold before flat_ner
        assert any(want), "the settings must find entities for the comparison to mean something"
        # gliner's order: (texts, labels, flat_ner, threshold, multi_label)
        assert model.batch_predict_entities(TEXTS, LABELS, flat, th, multi) == want
        assert model.inference(TEXTS, LABELS, flat, th, multi) == want
        # batch_size is gliner's 6th (another batching pads differently: scores move by float rounding)
        assert model.inference(TEXTS, LABELS, flat, th, multi, 1) == model.predict(TEXTS, LABELS, th, flat, multi, 1)
        assert model.inference(TEXTS, LABELS, flat_ner=flat, threshold=th, multi_label=multi) == want
        for t in TEXTS:
            one = model.predict([t], LABELS, th, flat, multi)[0]
            got = model.predict_entities(t, LABELS, flat, th, multi)
            assert got == one and isinstance(got, list) and hasattr(got, "truncated")
    assert model.predict_entities(TEXTS[0], LABELS) == model.predict([TEXTS[0]], LABELS)[0]  # same defaults
    assert model.inference(TEXTS[0], LABELS) == model.predict([TEXTS[0]], LABELS)  # a str is one text, as gliner


def test_gliner_aliases_pass_predict_keywords_and_gliner_defaults(model):
    long = " ".join(["John Smith works at Google in London ."] * 12)  # > window_words: chunked
    want = model.predict([long], LABELS, 0.3, long_text="truncate", batch_size=2)
    assert model.batch_predict_entities([long], LABELS, threshold=0.3, long_text="truncate", batch_size=2) == want
    assert model.predict_entities(long, LABELS, threshold=0.3, long_text="truncate") == want[0]
    # gliner's own options at their defaults are accepted; switched on they are refused, naming the option
    assert model.inference(TEXTS, LABELS, return_class_probs=False, packing_config=None,
                           input_spans=None) == model.predict(TEXTS, LABELS)
    with pytest.raises(ConfigError, match="return_class_probs") as e:
        model.predict_entities(TEXTS[0], LABELS, return_class_probs=True)
    assert "return_class_probs" in e.value.where and e.value.fix
    with pytest.raises(ConfigError, match="unknown keyword argument 'thresh'") as e:
        model.batch_predict_entities(TEXTS, LABELS, thresh=0.3)
    assert "batch_size" in e.value.fix
    with pytest.raises(DataError, match="one text") as e:
        model.predict_entities(TEXTS, LABELS)
    assert e.value.where == "text" and "inference" in e.value.fix


def test_predict_takes_labels_keyword(model):
    assert model.predict(TEXTS, labels=LABELS, threshold=0.3) == model.predict(TEXTS, LABELS, threshold=0.3)
    bank = model.encode_labels(LABELS)
    assert model.predict(TEXTS, labels=bank) == model.predict(TEXTS, bank)
    with pytest.raises(ConfigError, match="labels given twice") as e:
        model.predict(TEXTS, LABELS, labels=LABELS)
    assert e.value.where == "labels" and e.value.fix
    with pytest.raises(DataError, match="no labels given"):
        model.predict(TEXTS)


def test_batch_predict_with_embeds_takes_a_bank_or_gliner_label_embeddings(model):
    want = model.predict(TEXTS, LABELS, threshold=0.3)
    bank = model.encode_labels(LABELS)
    assert model.batch_predict_with_embeds(TEXTS, bank, LABELS, threshold=0.3) == want
    assert model.batch_predict_with_embeds(TEXTS, bank, threshold=0.3) == want  # names from the bank
    # gliner's label embeddings E (the pooled label-encoder output; gliner's model.encode_labels)
    _p, E = model._encode_prompt_texts(LABELS, 256, want_e=True)
    assert model.batch_predict_with_embeds(TEXTS, E, LABELS, True, 0.3) == want
    assert model.batch_predict_with_embeds(TEXTS, E.numpy(), LABELS, threshold=0.3) == want
    assert model.predict_with_embeds(TEXTS[1], E, LABELS, threshold=0.3) == model.predict([TEXTS[1]], LABELS,
                                                                                           threshold=0.3)[0]
    # the bank built from E holds the same P as encode_labels
    built = model._bank_from_embeddings(E, LABELS)
    assert built.names == LABELS and torch.allclose(built.vectors, bank.vectors, atol=1e-6)


def test_batch_predict_with_embeds_on_a_model_that_scores_with_E(token_model):
    want = token_model.predict(TEXTS, LABELS, threshold=0.3)
    assert any(want)
    _p, E = token_model._encode_prompt_texts(LABELS, 256, want_e=True)
    assert token_model.batch_predict_with_embeds(TEXTS, E, LABELS, threshold=0.3) == want
    assert token_model.batch_predict_with_embeds(TEXTS, token_model.encode_labels(LABELS), threshold=0.3) == want


def test_batch_predict_with_embeds_names_what_is_wrong(model):
    _p, E = model._encode_prompt_texts(LABELS, 256, want_e=True)
    cases = [
        ((E, None), "labels", "names of its rows"),
        ((E, LABELS[:3]), "labels", "3 label names for 4 rows"),
        ((E, ["person", "person", "date", "x"]), "labels", "given twice"),
        ((E[:, :10], LABELS), "labels_embeddings", r"\(4, 10\)"),
        ((LABELS, LABELS), "labels_embeddings", "must be a LabelBank or a"),
        ((None, LABELS), "labels_embeddings", "must be a LabelBank or a"),
        ((model.encode_labels(LABELS), ["date", "person"]), "labels", "not the label bank's names"),
    ]
    for (emb, names), where, msg in cases:
        with pytest.raises(DataError, match=msg) as e:
            model.batch_predict_with_embeds(TEXTS, emb, names)
        assert e.value.where == where and e.value.fix
    with pytest.raises(DataError, match="must be a LabelBank") as e:
        model.batch_predict_with_embeds(TEXTS, "person", LABELS)
    assert "encode_labels" in e.value.fix


def test_to_and_eval_return_the_model_and_keep_its_state_consistent(tiny):
    m = BiEncoder.from_pretrained(tiny)
    fp = m.fingerprint
    bank = m.encode_labels(LABELS)
    before = m.predict(TEXTS, bank, threshold=0.3)  # fills the bank's scoring cache (float32, cpu)
    assert m.eval() is m and not m.net.training
    assert m.to("cpu") is m and m.device == torch.device("cpu")
    assert m.predict(TEXTS, bank, threshold=0.3) == before
    assert m.to(dtype=torch.bfloat16) is m
    assert m.dtype == torch.bfloat16 and next(m.net.parameters()).dtype == torch.bfloat16
    assert m.fingerprint == fp  # the checkpoint's identity: the bank still matches
    cast = BiEncoder.from_pretrained(tiny, dtype="bfloat16")

    def fresh():  # the same label vectors without the scoring matrices cached on ``bank``
        return LabelBank(bank.names, bank.prompts, bank.vectors, bank.model_fingerprint)

    # the cached float32 scoring matrices are not reused for the bfloat16 network
    assert m.predict(TEXTS, bank, threshold=0.3) == cast.predict(TEXTS, fresh(), threshold=0.3)
    assert m.to(torch.float32) is m and m.dtype == torch.float32  # a dtype alone, as torch's Module.to
    # (the weights keep their bfloat16 rounding: the same as a bfloat16 load cast back)
    assert m.predict(TEXTS, bank, threshold=0.3) == cast.to(torch.float32).predict(TEXTS, fresh(), threshold=0.3)
    assert m.train() is m and m.net.training and m.eval() is m
    with pytest.raises(ConfigError, match="meta") as e:
        m.to("meta")
    assert e.value.where == "device"
    with pytest.raises(ConfigError, match="is not one of float32, bfloat16, float16") as e:
        m.to(dtype="int8")
    assert e.value.where == "dtype"
    assert m.device == torch.device("cpu") and m.dtype == torch.float32  # refused calls changed nothing


def test_from_pretrained_passes_hub_options_to_snapshot_download(tmp_path, tiny, monkeypatch):
    """A hub id: the checkpoint's snapshot gets all four options; an encoder named by hub id (its tokenizer not
    in the checkpoint) gets cache_dir, token and local_files_only (revision is the checkpoint repository's)."""
    import huggingface_hub

    snap = _copy(tiny, tmp_path / "snapshot")
    enc = _copy(tiny, tmp_path / "encoder-snapshot")
    (snap / "tokenizer.json").unlink()
    (snap / "tokenizer_config.json").unlink()
    _set_config(snap, model_name="some-org/text-encoder")
    calls = []

    def fake(repo_id, **kw):
        calls.append((repo_id, kw))
        return str({"some-org/model": snap, "some-org/text-encoder": enc}[repo_id])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    m = BiEncoder.from_pretrained("some-org/model", revision="v1", cache_dir=tmp_path / "hf", token="hf_x",
                                  local_files_only=True)
    assert [c[0] for c in calls] == ["some-org/model", "some-org/text-encoder"]
    ck, ek = calls[0][1], calls[1][1]
    assert (ck["revision"], ck["cache_dir"], ck["token"], ck["local_files_only"]) == (
        "v1", str(tmp_path / "hf"), "hf_x", True)
    assert "revision" not in ek and (ek["cache_dir"], ek["token"], ek["local_files_only"]) == (
        str(tmp_path / "hf"), "hf_x", True)
    assert m.predict(TEXTS, LABELS, threshold=0.3) == BiEncoder.from_pretrained(tiny).predict(TEXTS, LABELS,
                                                                                              threshold=0.3)
    with pytest.raises(ConfigError, match="local_files_only must be") as e:
        BiEncoder.from_pretrained("some-org/model", local_files_only="yes")
    assert e.value.where == "local_files_only"


def test_from_pretrained_map_location_and_unknown_keywords(tiny):
    m = BiEncoder.from_pretrained(tiny, map_location="cpu")
    assert m.device == torch.device("cpu")
    with pytest.raises(ConfigError, match="disagree") as e:
        BiEncoder.from_pretrained(tiny, device="cpu", map_location="cuda")
    assert e.value.where == "map_location"
    with pytest.raises(ConfigError, match="unknown keyword argument.*'force_downlaod'") as e:
        BiEncoder.from_pretrained(tiny, force_downlaod=True)
    for name in ("revision", "cache_dir", "token", "local_files_only", "map_location", "device", "dtype"):
        assert name in e.value.fix


# ---- B. eval mode --------------------------------------------------------------------------------------------
def test_inference_runs_in_eval_mode_and_restores_the_callers_mode(tiny):
    m = BiEncoder.from_pretrained(tiny)
    want = m.predict(TEXTS, LABELS, threshold=0.3)
    bank = m.encode_labels(LABELS)
    ents = m.encode_entities(["Paris: capital of France", "Google: a company"])
    spans = [[(0, 10)], [(0, 5)], [(0, 11)]]
    vecs = m.span_vectors(TEXTS, spans)
    # training mode, with the label encoder kept in eval mode as the trainer does for a frozen encoder
    m.net.train()
    m.net.token_rep_layer.labels_encoder.eval()
    modes = {n: mod.training for n, mod in m.net.named_modules()}
    for _ in range(3):  # dropout would make every call differ
        assert m.predict(TEXTS, LABELS, threshold=0.3) == want
        assert m.predict_entities(TEXTS[0], LABELS, threshold=0.3) == m.eval().predict([TEXTS[0]], LABELS,
                                                                                         threshold=0.3)[0]
        m.net.train()
        m.net.token_rep_layer.labels_encoder.eval()
        assert torch.equal(m.encode_labels(LABELS).vectors, bank.vectors)
        assert np.array_equal(m.encode_entities(["Paris: capital of France", "Google: a company"]), ents)
        assert all(np.array_equal(a, b) for a, b in zip(m.span_vectors(TEXTS, spans), vecs))
    assert {n: mod.training for n, mod in m.net.named_modules()} == modes  # every module's own mode back
    assert m.net.training and not m.net.token_rep_layer.labels_encoder.training


def test_dropout_is_really_on_in_training_mode(tiny):
    """The determinism test above means something: the tiny model's forward pass does vary in training mode."""
    m = BiEncoder.from_pretrained(tiny)
    enc = m.labels_tokenizer(LABELS, return_tensors="pt", padding="longest")
    m.net.train()
    with torch.no_grad():
        a = m.net.prompt(m.net.encode_label_tokens(enc["input_ids"], enc["attention_mask"]))
        b = m.net.prompt(m.net.encode_label_tokens(enc["input_ids"], enc["attention_mask"]))
    assert not torch.equal(a, b)


# ---- C. argument validation ----------------------------------------------------------------------------------
def test_batch_sizes_are_checked(model):
    for bad in ("8", None, 2.5, 0, -1, True):
        with pytest.raises(ConfigError, match="batch_size must be a whole number") as e:
            model.predict(TEXTS, LABELS, batch_size=bad)
        assert e.value.where == "batch_size" and e.value.fix
    assert model.predict(TEXTS, LABELS, batch_size=np.int64(8)) == model.predict(TEXTS, LABELS)
    for call in (lambda b: model.encode_labels(LABELS, batch_size=b),
                 lambda b: model.encode_entities(["Paris"], batch_size=b),
                 lambda b: model.inference(TEXTS, LABELS, batch_size=b)):
        for bad in (0, "8", None):
            with pytest.raises(ConfigError, match="batch_size") as e:
                call(bad)
            assert e.value.where == "batch_size"


def test_encode_labels_to_checks_its_sizes(tmp_path, model):
    with pytest.raises(ConfigError, match="chunk_size must be") as e:
        model.encode_labels_to(LABELS, tmp_path / "b", chunk_size="big")
    assert e.value.where == "chunk_size"
    with pytest.raises(ConfigError, match="batch_size must be") as e:
        model.encode_labels_to(LABELS, tmp_path / "b", batch_size=0)
    assert e.value.where == "batch_size"


def test_encode_entities_names_the_bad_item(model):
    with pytest.raises(DataError, match="list of texts, not NoneType") as e:
        model.encode_entities(None)
    assert e.value.where == "texts"
    with pytest.raises(DataError, match="item 0 is a int") as e:
        model.encode_entities([1, 2])
    assert e.value.where == "texts[0]"
    with pytest.raises(DataError, match="item 1 is a NoneType") as e:
        model.encode_entities(["Paris", None])
    assert e.value.where == "texts[1]"
    with pytest.raises(DataError, match="surrogate") as e:
        model.encode_entities(["ok", "bad \ud800"])
    assert e.value.where == "texts[1]"
    assert model.encode_entities(("Paris", "Berlin")).shape == (2, model.dim)


def test_predict_names_a_text_that_is_not_a_string(model):
    with pytest.raises(DataError, match="texts must be strings; item 1 is a int") as e:
        model.predict(["Paris", 3], LABELS)
    assert e.value.where == "texts[1]"


def test_gliner_config_that_is_not_an_object_is_a_model_error(tmp_path, tiny):
    d = _copy(tiny, tmp_path / "list-config")
    (d / "gliner_config.json").write_text(json.dumps([{"max_width": 4}]))
    with pytest.raises(ModelError, match="holds a JSON list, not an object") as e:
        BiEncoder.from_pretrained(d)
    assert e.value.where.endswith("gliner_config.json") and e.value.fix


@pytest.mark.parametrize("device", ["meta", "xpu", "cpux", 3.5])
def test_unsupported_devices_are_refused_before_loading(tmp_path, device):
    with pytest.raises(ConfigError) as e:  # checked before the (missing) checkpoint is even looked at
        BiEncoder.from_pretrained(tmp_path / "no-such-model", device=device)
    assert e.value.where == "device" and "cuda" in e.value.fix
    with pytest.raises(ConfigError) as e:
        BiEncoder.from_pretrained(tmp_path / "no-such-model", map_location=device)
    assert e.value.where == "map_location"


def test_threshold_numpy_scalars_and_0d_tensors_are_taken_as_floats(model):
    for th in (np.float64(0.3), np.float32(0.3), torch.tensor(0.3), torch.tensor(0.3, dtype=torch.float64),
               np.array(0.3), np.int64(1), torch.tensor(0)):
        assert model.predict(TEXTS, LABELS, threshold=th) == model.predict(TEXTS, LABELS, threshold=float(th))
    assert model.inference(TEXTS, LABELS, True, np.float32(0.3)) == model.predict(TEXTS, LABELS,
                                                                                 float(np.float32(0.3)))
    for th in (True, np.bool_(True), torch.tensor(True), "0.5", torch.tensor([0.3]), np.array([0.3]),
               float("nan"), torch.tensor(1.5), None, [0.5]):
        with pytest.raises(ConfigError, match="threshold must be a number from 0 to 1") as e:
            model.predict(TEXTS, LABELS, threshold=th)
        assert e.value.where == "threshold"


def test_per_text_labels_given_as_tuples(model):
    per = [["person", "location"], ["location"], ["organization", "date", "person"]]
    want = model.predict(TEXTS, per, threshold=0.3)
    assert any(want)
    assert model.predict(TEXTS, tuple(per), threshold=0.3) == want
    assert model.predict(TEXTS, tuple(tuple(x) for x in per), threshold=0.3) == want
    assert model.predict(TEXTS, tuple(LABELS), threshold=0.3) == model.predict(TEXTS, LABELS, threshold=0.3)
    with pytest.raises(DataError, match="one label set per text") as e:
        model.predict(TEXTS, tuple(per[:2]))
    assert e.value.where == "labels"
    with pytest.raises(DataError, match="labels must be strings; item 0 is a list") as e:
        model.predict(TEXTS, [[["person"]], ["x"], ["y"]])
    assert e.value.where == "labels[0][0]" and "one list (or tuple, or dict) of names per text" in e.value.fix


# ---- D. loading messages -------------------------------------------------------------------------------------
def test_a_weights_file_is_refused_with_its_folder_named(tiny):
    with pytest.raises(ModelError, match="model.safetensors is a file") as e:
        BiEncoder.from_pretrained(tiny / "model.safetensors")
    assert repr(str(tiny)) in e.value.fix
    with pytest.raises(ModelError, match="is a file"):
        BiEncoder.from_pretrained(str(tiny / "gliner_config.json"))


def test_an_empty_path_is_refused(tmp_path, tiny, monkeypatch):
    monkeypatch.chdir(tiny)  # "" must not silently load the current folder, even when it is a checkpoint
    for bad in ("", "  "):
        with pytest.raises(ConfigError, match="empty") as e:
            BiEncoder.from_pretrained(bad)
        assert e.value.where == "path_or_hub_id"
    with pytest.raises(ConfigError, match="not NoneType"):
        BiEncoder.from_pretrained(None)
    assert BiEncoder.from_pretrained(".").dim == 48  # an explicit "." still works


def test_missing_tokenizer_files_are_named(tmp_path, tiny, monkeypatch):
    import huggingface_hub

    # tokenizer_config.json without tokenizer.json: not transformers' "need sentencepiece" text
    a = _copy(tiny, tmp_path / "no-tokenizer-json")
    (a / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match="tokenizer files are missing from the checkpoint folder") as e:
        BiEncoder.from_pretrained(a)
    assert "sentencepiece" not in str(e.value) and "tokenizer.json" in e.value.fix
    # neither file, and model_name a build folder that is gone: not shown as a hub repo id
    b = _copy(tiny, tmp_path / "no-tokenizer")
    (b / "tokenizer.json").unlink()
    (b / "tokenizer_config.json").unlink()
    _set_config(b, model_name=str(tmp_path / "build" / "text-encoder"))
    with pytest.raises(ModelError, match="text tokenizer files are missing from the checkpoint folder") as e:
        BiEncoder.from_pretrained(b)
    assert "does not exist" in str(e.value) and "Repo id" not in str(e.value)
    # model_name a hub id that cannot be fetched: the same explanation, with the hub's error
    _set_config(b, model_name="some-org/text-encoder")

    def offline(repo_id, **kw):
        raise OSError("offline: no cached snapshot")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ModelError, match="missing from the checkpoint folder.*could not be fetched.*offline"):
        BiEncoder.from_pretrained(b)
    # the label tokenizer folder gone, labels_encoder naming nothing that exists
    c = _copy(tiny, tmp_path / "no-label-tokenizer")
    shutil.rmtree(c / "labels_tokenizer")
    _set_config(c, labels_encoder=str(tmp_path / "gone" / "label-encoder"))
    with pytest.raises(ModelError, match="label tokenizer files are missing .*no labels_tokenizer/ folder"):
        BiEncoder.from_pretrained(c)
    # unchanged: model_name naming a real local encoder folder loads from it
    src = _copy(tiny, tmp_path / "text-encoder-src")
    _set_config(b, model_name=str(src))
    again = BiEncoder.from_pretrained(b)
    assert again.predict(TEXTS, LABELS, threshold=0.3) == BiEncoder.from_pretrained(tiny).predict(
        TEXTS, LABELS, threshold=0.3)


def test_label_bank_built_from_embeddings_can_be_saved(tmp_path, model):
    _p, E = model._encode_prompt_texts(LABELS, 256, want_e=True)
    bank = model._bank_from_embeddings(E, dict(zip(LABELS, LABELS)))
    bank.save(tmp_path / "bank")
    again = LabelBank.load(tmp_path / "bank")
    assert model.predict(TEXTS, again, threshold=0.3) == model.predict(TEXTS, LABELS, threshold=0.3)


def test_eval_mode_holds_while_any_thread_predicts(model):
    """Two threads predicting with a model left in training mode: the first to finish gave the modes back while
    the other still ran, whose later batches then ran with dropout (random scores)."""
    import threading

    want = None
    model.net.train()
    try:
        with model._eval_mode():
            want = model.predict(TEXTS, LABELS, threshold=0.3, batch_size=1)
        a_in, a_done = threading.Event(), threading.Event()
        got = {}

        def first():
            def hold(*_):
                a_in.set()
            got["a"] = model.predict(TEXTS[:1], LABELS, threshold=0.3, batch_size=1, on_window=hold)
            a_done.set()

        def second():
            a_in.wait(30)

            def wait_for_a(*_):
                a_done.wait(30)  # the first thread ends while this one is between its batches
            got["b"] = model.predict(TEXTS, LABELS, threshold=0.3, batch_size=1, on_window=wait_for_a)

        tb = threading.Thread(target=second)
        ta = threading.Thread(target=first)
        tb.start()
        ta.start()
        ta.join(60)
        tb.join(60)
        assert got["b"] == want and got["a"] == want[:1]
        assert model.net.training  # the caller's mode is back once both ended
    finally:
        model.net.eval()
