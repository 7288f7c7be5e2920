"""The bfloat16 pre-filter of span x label scoring: its error bound holds and results equal float32 scoring."""

from __future__ import annotations

import math

import pytest
import torch

from glinker.model import scoring
from glinker.model.scoring import LowpLabels, logit_threshold, lowp_prefilter, score_rows


def _data(seed: int, n: int, C: int, D: int, scale: float, relu: bool) -> tuple:
    g = torch.Generator().manual_seed(seed)
    reps = torch.randn(n, D, generator=g) * scale
    if relu:  # folded scoring multiplies non-negative hidden activations
        reps = reps.relu()
    prompts = torch.randn(C, D, generator=g) / math.sqrt(D)
    bias = torch.randn(C, generator=g) * 2.0
    return reps, prompts, bias


@pytest.mark.parametrize("seed,scale,relu", [(0, 1.0, False), (1, 5.0, True), (2, 0.1, False), (3, 30.0, True)])
def test_bound_holds_for_every_pair(seed, scale, relu):
    reps, prompts, bias = _data(seed, 300, 200, 257, scale, relu)
    lab = LowpLabels.build(prompts, bias, torch.bfloat16)
    exact = torch.cat([reps, torch.ones(reps.shape[0], 1)], dim=1).double() @ torch.cat(
        [prompts, bias[:, None]], dim=1
    ).double().T
    for lt in (-3.0, 0.0, 2.0):
        low = lab.prepare_rows(reps, lt, rows=320)
        assert torch.equal(low[:300, :257], reps.to(torch.bfloat16)) and bool((low[300:] == 0).all())
        out = low @ lab.vectors_t
        assert not bool((out[300:] > 0).any())  # padding rows never survive
        out = out[:300].float()
        # the guarantee: a pair whose logit is above lt (minus the float32 margin) is never filtered out
        must_pass = exact > lt - scoring._MARGIN
        assert bool((out[must_pass] > 0).all())
        # and the filter does filter: most pairs far below the threshold are dropped
        far = exact < lt - 10.0
        if bool(far.any()):
            assert float((out[far] > 0).float().mean()) < 0.5


@pytest.mark.parametrize("shape", [(7, 13), (64, 1000), (3, 8)])
def test_positive_positions_equals_nonzero(shape):
    g = torch.Generator().manual_seed(sum(shape))
    x = (torch.randn(*shape, generator=g) - 1.5).to(torch.bfloat16)
    x.view(-1)[0] = -0.0
    want = torch.nonzero((x > 0).reshape(-1), as_tuple=True)[0]
    assert torch.equal(scoring.positive_positions(x), want)
    assert scoring.positive_positions(torch.zeros(*shape, dtype=torch.bfloat16)).numel() == 0


@pytest.mark.parametrize("threshold", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("seed,scale,relu", [(0, 1.0, False), (1, 4.0, True), (4, 12.0, False)])
def test_prefiltered_scoring_equals_float32(threshold, seed, scale, relu):
    reps, prompts, bias = _data(seed, 400, 300, 129, scale, relu)
    lab = LowpLabels.build(prompts, bias, torch.bfloat16)
    r0, c0, p0 = score_rows(reps, prompts, threshold, bias)
    r1, c1, p1 = score_rows(reps, prompts, threshold, bias, lowp=lab, budget_bytes=4 * 400 * 64)  # chunks
    assert len(r0) > 0
    assert torch.equal(r0, r1) and torch.equal(c0, c1)
    assert float((p0 - p1).abs().max()) <= 1e-6


def test_prefilter_near_the_threshold_and_with_class_mask():
    """Logits packed around the threshold (the hardest case: nearly all pairs survive) and per-text labels."""
    g = torch.Generator().manual_seed(7)
    reps = torch.randn(256, 64, generator=g)
    prompts = torch.randn(256, 64, generator=g) * 1e-3  # every logit within ~0.01 of the bias
    bias = torch.full((256,), logit_threshold(0.5)) + torch.randn(256, generator=g) * 1e-3
    row_b = torch.arange(256) % 3
    mask = torch.rand(3, 256, generator=g) > 0.5
    lab = LowpLabels.build(prompts, bias, torch.bfloat16)
    r0, c0, p0 = score_rows(reps, prompts, 0.5, bias, row_b, mask)
    r1, c1, p1 = score_rows(reps, prompts, 0.5, bias, row_b, mask, lowp=lab)
    assert 0 < len(r0) < 256 * 256
    assert torch.equal(r0, r1) and torch.equal(c0, c1)
    assert float((p0 - p1).abs().max()) <= 1e-6


def test_prefilter_can_be_turned_off_and_forced(monkeypatch):
    monkeypatch.setenv("GLINKER_PREFILTER", "off")
    assert lowp_prefilter("cpu") is None
    monkeypatch.setenv("GLINKER_PREFILTER", "bf16")
    info = lowp_prefilter("cpu")
    assert info is not None and info.dtype == torch.bfloat16 and info.speedup > 0


@pytest.mark.parametrize("fold", [True, False])
def test_model_predict_with_prefilter_equals_float32(tmp_path, monkeypatch, fold):
    """The model's gathered path (all span widths in shared bfloat16 buffers, several buffers when the budget
    is small, per-text label sets) finds the float32 entities with the float32 scores."""
    from glinker.model import BiEncoder
    from glinker.model.testing import build_tiny_checkpoint

    model = BiEncoder.from_pretrained(build_tiny_checkpoint(tmp_path / "m", "modernbert", seed=2))
    labels = [f"{a} {b}" for a in ("city", "person", "river", "company", "award") for b in range(60)]
    texts = [
        "john smith was born in london and works for google in paris",
        "maria lopez of acme corp met the president of france in berlin on march",
        "the united nations and new york times",
    ]
    sets = [labels[:200], labels[50:], labels[::2]]
    model.lowp = False
    want = model.predict(texts, labels, threshold=0.6, flat_ner=False, multi_label=True)
    want_sets = model.predict(texts, sets, threshold=0.6, flat_ner=False, multi_label=True)
    assert sum(map(len, want)) > 0 and sum(map(len, want_sets)) > 0
    monkeypatch.setenv("GLINKER_PREFILTER", "bf16")
    monkeypatch.setattr(scoring, "LOWP_MIN_WORK", 0)
    monkeypatch.setattr(scoring, "DEFAULT_BUDGET_BYTES", 8000)  # buffers of LOWP_ROW_BLOCK rows
    monkeypatch.setattr(scoring, "LOWP_ROW_BLOCK", 16)
    monkeypatch.setattr(scoring, "LOWP_ROW_TAIL", 8)
    model.lowp = True
    model._fold = fold
    for texts_labels, expect in ((labels, want), (sets, want_sets)):
        got = model.predict(texts, texts_labels, threshold=0.6, flat_ner=False, multi_label=True)
        for g_, w_ in zip(got, expect):  # equal sets (scores equal to ~1 ulp may tie in either order)
            gs = {(e["start"], e["end"], e["label"]): e["score"] for e in g_}
            ws = {(e["start"], e["end"], e["label"]): e["score"] for e in w_}
            assert gs.keys() == ws.keys()
            assert all(abs(gs[k] - ws[k]) <= 1e-6 for k in ws)


def test_model_prefilter_edge_thresholds(tmp_path, monkeypatch):
    """Threshold 0 (every pair) and 1 (none) give the float32 results with the pre-filter forced on."""
    from glinker.model import BiEncoder
    from glinker.model.testing import build_tiny_checkpoint

    model = BiEncoder.from_pretrained(build_tiny_checkpoint(tmp_path / "m", "bert", seed=4))
    labels = [f"person {i}" for i in range(130)]
    text = ["john smith was born in london"]
    model.lowp = False
    want = {t: model.predict(text, labels, threshold=t, flat_ner=False, multi_label=True) for t in (0.0, 1.0)}
    monkeypatch.setenv("GLINKER_PREFILTER", "bf16")
    monkeypatch.setattr(scoring, "LOWP_MIN_WORK", 0)
    model.lowp = True
    for t, w in want.items():
        got = model.predict(text, labels, threshold=t, flat_ner=False, multi_label=True)
        key = [(e["start"], e["end"], e["label"]) for e in got[0]]
        assert sorted(key) == sorted((e["start"], e["end"], e["label"]) for e in w[0])
        assert (len(key) == 0) == (t == 1.0)


def test_exact_pairs_dense_rows_in_chunks():
    """Rows with many surviving labels are scored by row x labels products, in budget-sized row chunks."""
    g = torch.Generator().manual_seed(11)
    reps, prompts = torch.randn(50, 16, generator=g), torch.randn(40, 16, generator=g)
    bias = torch.randn(40, generator=g)
    r = torch.arange(50).repeat_interleave(40)
    c = torch.arange(40).repeat(50)
    sparse_r, sparse_c = torch.tensor([3, 3, 7]), torch.tensor([1, 5, 2])  # one or two labels: dot products
    want = torch.sigmoid(reps @ prompts.T + bias)
    for rr, cc in ((r, c), (sparse_r, sparse_c)):
        for budget in (4 * 40 * 3, scoring.DEFAULT_BUDGET_BYTES):  # 3 rows per chunk, or all at once
            got_r, got_c, p = scoring.exact_pairs(reps.__getitem__, rr, cc, prompts, bias, 0.5, budget)
            keep = want[rr, cc] > 0.5
            assert torch.equal(got_r, rr[keep]) and torch.equal(got_c, cc[keep])
            assert float((p - want[rr, cc][keep]).abs().max()) <= 1e-6


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float64"])
def test_models_of_other_dtypes_score_dense_rows_through_the_prefilter(tmp_path, monkeypatch, dtype):
    """A model loaded in another dtype, many labels, a threshold low enough that some span keeps more than
    LOWP_MAX_SURVIVORS of them (its row is scored by a row x labels product): that product crashed on mixing the
    model's dtype with float32 ("expected m1 and m2 to have the same dtype")."""
    from glinker.model import BiEncoder
    from glinker.model.testing import build_tiny_checkpoint

    ckpt = build_tiny_checkpoint(tmp_path / "m", "bert", seed=4)
    labels = [f"person {i}" for i in range(300)]
    texts = ["john smith was born in london and works for google in paris"] * 3
    monkeypatch.setenv("GLINKER_PREFILTER", "bf16")
    monkeypatch.setattr(scoring, "LOWP_MIN_WORK", 0)
    want = BiEncoder.from_pretrained(ckpt).predict(texts, labels, threshold=0.3, flat_ner=False, multi_label=True)
    model = BiEncoder.from_pretrained(ckpt, dtype=dtype)
    got = model.predict(texts, labels, threshold=0.3, flat_ner=False, multi_label=True)
    assert sum(map(len, want)) > 100 and len(got) == len(texts)
    if dtype == "float64":  # the same model in more precision: the same entities
        assert [{(e["start"], e["end"], e["label"]) for e in r} for r in got] == \
            [{(e["start"], e["end"], e["label"]) for e in r} for r in want]
