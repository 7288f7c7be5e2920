"""Conformance with gliner 0.2.29 through committed goldens (tests/fixtures/gliner/make_golden.py)."""

from __future__ import annotations

import pytest
import torch
from _conformance import (
    ENCODERS,
    FIXTURES,
    VARIANTS,
    compare_entities,
    conforming_rows,
    load_golden,
    max_logit_diff,
    setting_args,
)

from glinker.model import BiEncoder, scoring
from glinker.model.words import tokenize_words

CASES = ("basic", "long_words", "long_tokens", "dup_labels", "described", "per_text", "unicode")


@pytest.fixture(scope="module", params=ENCODERS)
def ref(request):
    enc = request.param
    return enc, BiEncoder.from_pretrained(FIXTURES / enc), load_golden(FIXTURES / enc / "golden.pt")


@pytest.mark.parametrize("case_name", CASES)
def test_inputs_logits_and_entities(ref, case_name):
    enc, model, golden = ref
    case, differ = conforming_rows(model.tokenizer, golden["cases"][case_name])
    assert len(differ) < len(golden["cases"][case_name]["texts"])
    tok = tokenize_words(model.tokenizer, case["words"])
    assert torch.equal(tok["input_ids"], case["input_ids"][:, : tok["input_ids"].shape[1]])
    assert torch.equal(tok["attention_mask"], case["attention_mask"][:, : tok["input_ids"].shape[1]])
    assert torch.equal(tok["words_mask"], case["words_mask"][:, : tok["input_ids"].shape[1]])
    assert max_logit_diff(model, case) <= 1e-4
    assert len(case["entities"]) == 12
    n_ents = 0
    for key, expected in case["entities"].items():
        got = model.predict(case["texts"], case["labels"], long_text="truncate", **setting_args(key))
        assert compare_entities(got, expected) is None, (enc, case_name, key, compare_entities(got, expected))
        n_ents += sum(len(x) for x in expected)
        for text, ents in zip(case["texts"], got):
            for e in ents:
                assert text[e["start"] : e["end"]] == e["text"]
    assert n_ents > 0  # the golden is not vacuous
    for i in differ:  # each word at its own index: the words after a token-less one keep their vectors
        words = golden["cases"][case_name]["words"][i]
        t = tokenize_words(model.tokenizer, [words])
        ids = model.tokenizer(words, is_split_into_words=True).word_ids()
        firsts = {w + 1 for j, w in enumerate(ids) if w is not None and (j == 0 or ids[j - 1] != w)}
        assert set(t["words_mask"][0].tolist()) - {0} == firsts and max(firsts) == len(words)


def test_long_inputs_are_marked_truncated(ref):
    _, model, golden = ref
    for name in ("long_words", "long_tokens"):
        case = golden["cases"][name]
        got = model.predict(case["texts"], case["labels"], long_text="truncate", threshold=0.5)
        assert got[0].truncated and not got[1].truncated
        full = model.predict(case["texts"], case["labels"], long_text="chunk", threshold=0.5)
        assert not full[0].truncated and full[0].windows > 1


def test_short_texts_chunk_mode_equals_gliner(ref):
    _, model, golden = ref
    case = golden["cases"]["basic"]
    key = next(iter(case["entities"]))
    got = model.predict(case["texts"], case["labels"], **setting_args(key))
    assert compare_entities(got, case["entities"][key]) is None
    assert got[3] == [] and all(not r.truncated for r in got)  # whitespace-only text


def test_label_embeddings_and_bank(ref):
    _, model, golden = ref
    le = golden["label_embeddings"]
    tok = model.labels_tokenizer(le["labels"], return_tensors="pt", padding="longest")
    with torch.inference_mode():
        E = model.net.encode_label_tokens(tok["input_ids"], tok["attention_mask"])
        P_ref = model.net.prompt(le["E"])
    assert float((E - le["E"]).abs().max()) <= 1e-5
    bank = model.encode_labels(le["labels"], batch_size=2)  # several length-sorted batches
    assert bank.names == le["labels"]
    assert float((bank.vectors - P_ref).abs().max()) <= 1e-5
    # predicting with the bank equals gliner's batch_predict_with_embeds
    th = golden["cases"]["basic"]["thresholds"][0]
    got = model.predict(golden["cases"]["basic"]["texts"], bank, threshold=th)
    assert compare_entities(got, golden["with_embeds"]) is None


def test_rnn_weights_are_unused(ref):
    enc, _, golden = ref
    model = BiEncoder.from_pretrained(FIXTURES / enc)
    case = golden["cases"]["basic"]
    before = model.dense_logits(case["words"], case["entity_types"])
    with torch.no_grad():
        for p in model.net.rnn.parameters():
            p.normal_()
    assert torch.equal(before, model.dense_logits(case["words"], case["entity_types"]))


@pytest.mark.parametrize("lowp", [False, True])
@pytest.mark.parametrize("fold", [False, True])
def test_both_scoring_paths_conform(ref, fold, lowp, monkeypatch):
    enc, _, golden = ref
    model = BiEncoder.from_pretrained(FIXTURES / enc)
    model._fold = fold  # folded P (few labels) and explicit span vectors (many labels)
    model.lowp = lowp  # the bfloat16 pre-filter, forced on even for these tiny products
    if lowp:
        monkeypatch.setenv("GLINKER_PREFILTER", "bf16")
        monkeypatch.setattr(scoring, "LOWP_MIN_WORK", 0)
        monkeypatch.setattr(scoring, "LOWP_MIN_LABELS", 0)
    for name in ("basic", "per_text", "unicode"):
        case, _ = conforming_rows(model.tokenizer, golden["cases"][name])
        for key, expected in case["entities"].items():
            got = model.predict(case["texts"], case["labels"], long_text="truncate", **setting_args(key))
            assert compare_entities(got, expected) is None, (name, key)


@pytest.fixture(scope="module", params=VARIANTS)
def variant(request):
    v = request.param
    return v, BiEncoder.from_pretrained(FIXTURES / v), load_golden(FIXTURES / v / "golden.pt")


@pytest.mark.parametrize("case_name", CASES)
def test_variants_conform(variant, case_name):
    """Token-level model and cross-attention fusion ("l2l-l2t-t2t-t2l"): logits and entities."""
    name, model, golden = variant
    case, _ = conforming_rows(model.tokenizer, golden["cases"][case_name])
    assert max_logit_diff(model, case) <= 1e-4
    n_ents = 0
    for key, expected in case["entities"].items():
        got = model.predict(case["texts"], case["labels"], long_text="truncate", **setting_args(key))
        assert compare_entities(got, expected) is None, (
            name,
            case_name,
            key,
            compare_entities(got, expected),
        )
        n_ents += sum(len(x) for x in expected)
    assert n_ents > 0


def test_variant_label_bank_roundtrip(variant, tmp_path):
    _, model, golden = variant
    case = golden["cases"]["basic"]
    bank = model.encode_labels(case["labels"])
    assert bank.embeddings is not None
    bank.save(tmp_path / "b")
    from glinker.model import LabelBank

    again = LabelBank.load(tmp_path / "b")
    key = next(iter(case["entities"]))
    got = model.predict(case["texts"], again, **setting_args(key))
    assert compare_entities(got, case["entities"][key]) is None


def test_unicode_words_without_subtokens_are_not_a_cut(ref):
    _, model, golden = ref
    case = golden["cases"]["unicode"]
    got = model.predict(case["texts"], case["labels"], long_text="truncate", threshold=0.5)
    assert not any(r.truncated for r in got)
