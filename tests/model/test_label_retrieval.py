"""Retrieval scoring (FAISS top-k labels per span) against exhaustive scoring, and the label-bank index."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from glinker.errors import ConfigError, DataError
from glinker.model import BiEncoder, LabelBank
from glinker.model.scoring import score_rows, score_rows_ivf, score_rows_topk
from glinker.model.testing import build_tiny_checkpoint

faiss = pytest.importorskip("faiss")

TEXTS = [
    "Alice met Bob in Paris on Monday and they visited the old museum near the river.",
    "The company opened a new office in Berlin while the team played football at the stadium.",
    "A small red boat sailed north past the bridge, and the mayor of the city gave a speech.",
]


def _labels(n: int) -> list[str]:
    adj = "red blue green old new big small north south east west royal public private".split()  # noqa: SIM905
    noun = "person city river team company museum bridge boat office mayor speech stadium".split()  # noqa: SIM905
    return [f"{adj[i % len(adj)]} {noun[(i // len(adj)) % len(noun)]} {i}" for i in range(n)]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> BiEncoder:
    d = build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "bert", "bert")
    return BiEncoder.from_pretrained(d)


def _key(res):
    return [[(e["start"], e["end"], e["label"]) for e in ents] for ents in res]


def _assert_same(a, b):
    assert _key(a) == _key(b)
    for ea, eb in zip(a, b):
        for x, y in zip(ea, eb):
            assert x["score"] == pytest.approx(y["score"], abs=1e-5)


def _max_above(model, bank, threshold):
    """The largest number of labels above ``threshold`` for any valid span (exhaustive logits)."""
    from glinker.model.words import split_words

    words = [split_words(t).words for t in TEXTS]
    logits = model.dense_logits(words, bank.prompts)  # (B, W, K, C)
    return int((torch.sigmoid(logits) > threshold).sum(-1).max())


def test_score_rows_topk_exact_flat_equals_score_rows():
    g = torch.Generator().manual_seed(0)
    reps = torch.randn(300, 16, generator=g)
    prompts = torch.randn(2000, 16, generator=g) * 0.6
    t = 0.9
    r0, c0, p0 = score_rows(reps, prompts, t)
    per_row = torch.bincount(r0, minlength=300).max().item()
    assert 0 < per_row < 2000  # the test is meaningful: some but not all labels pass
    bank = LabelBank([str(i) for i in range(2000)], [str(i) for i in range(2000)], prompts)
    bank.build_index("Flat")
    r1, c1, p1 = score_rows_topk(reps, prompts, t, per_row, bank.search, budget_bytes=4096)
    assert torch.equal(r0, r1) and torch.equal(c0, c1)
    assert torch.allclose(p0, p1, atol=1e-6)
    # too small a k loses candidates: the comparison above can fail
    r2, _, _ = score_rows_topk(reps, prompts, t, 1, bank.search)
    assert r2.numel() < r0.numel()


def test_ivf_lists_scored_by_matrix_products_equal_searching_the_index():
    """score_rows_ivf (rows grouped by the IVF list they probe, each list one matrix product) returns what
    searching the same FAISS IVF-Flat index and re-scoring the hits returns: the same algorithm, computed faster."""
    g = torch.Generator().manual_seed(0)
    C = 6000
    prompts = torch.randn(C, 24, generator=g)
    reps = torch.randn(900, 24, generator=g) * 0.4
    bank = LabelBank([str(i) for i in range(C)], [str(i) for i in range(C)], prompts).build_index("IVF48,Flat")
    lists = bank.ivf_lists()
    assert lists is not None and sum(len(i) for i in lists.ids) == C and lists.centroids.shape == (48, 24)
    for nprobe, k, t in ((4, 64, 0.5), (4, 2, 0.5), (12, 5, 0.3), (16, 7, 0.0), (48, C, 0.9)):
        bank.nprobe = nprobe
        r0, c0, p0 = score_rows_topk(reps, prompts, t, k, bank.search)
        r1, c1, p1 = score_rows_ivf(reps, lists, t, nprobe, k, C, budget_bytes=40_000)  # small: chunked too
        assert r0.numel() > 0 and torch.equal(r0, r1) and torch.equal(c0, c1), (nprobe, k, t)
        assert torch.allclose(p0, p1, atol=1e-6)
        # the bfloat16 pre-filter over the lists: the same pairs (it only rules out pairs that cannot pass)
        r3, c3, p3 = score_rows_ivf(reps, lists, t, nprobe, k, C, budget_bytes=40_000, lowp=torch.bfloat16)
        assert torch.equal(r0, r3) and torch.equal(c0, c3), (nprobe, k, t)
        assert torch.allclose(p0, p3, atol=1e-6)
    # every list probed and every label kept: exhaustive scoring
    r2, c2, _ = score_rows(reps, prompts, 0.9)
    assert torch.equal(r1, r2) and torch.equal(c1, c2)
    # other indexes have no lists to score this way
    assert LabelBank(["a", "b"], ["a", "b"], prompts[:2]).build_index("Flat").ivf_lists() is None


def test_ivf_lists_through_the_bf16_prefilter_keep_the_float32_pairs(monkeypatch):
    """Logits like a trained model's (most spans far below the threshold): the bfloat16 product over each list
    rules out nearly every pair, the rest are re-scored in float32, and the pairs are the float32 path's."""
    from glinker.model import scoring

    g = torch.Generator().manual_seed(1)
    C, D = 8000, 64
    prompts = torch.randn(C, D, generator=g) * 0.3
    prompts[:, 0] = 1.0
    reps = torch.randn(2000, D, generator=g)
    reps[:, 0] = -8.0  # logits ~ N(-8, 2.4): ~0.1% of the pairs above 0.3
    bank = LabelBank([str(i) for i in range(C)], [str(i) for i in range(C)], prompts).build_index("IVF64,Flat")
    lists = bank.ivf_lists()
    used = []
    real = scoring._ivf_lowp_pairs
    monkeypatch.setattr(scoring, "_ivf_lowp_pairs", lambda *a: used.append(real(*a)) or used[-1])
    for nprobe, k, t in ((8, 64, 0.3), (8, 2, 0.3), (64, C, 0.5), (16, 5, 0.02)):
        used.clear()
        r0, c0, p0 = score_rows_ivf(reps, lists, t, nprobe, k, C)
        r1, c1, p1 = score_rows_ivf(reps, lists, t, nprobe, k, C, lowp=torch.bfloat16)
        assert r0.numel() > 0 and torch.equal(r0, r1) and torch.equal(c0, c1), (nprobe, k, t)
        assert torch.allclose(p0, p1, atol=1e-6)
        filtered = [u for u in used if u is not None]
        if t >= 0.3:
            assert len(filtered) > 0.9 * len(used) > 0  # the pre-filter did the work
        else:
            assert len(filtered) < len(used)  # too many pairs survive at 0.02: float32 blocks instead


def test_predict_through_ivf_lists_equals_the_faiss_search(model, monkeypatch):
    t = 0.5
    bank = model.encode_labels(_labels(3000)).build_index("IVF32,Flat")
    bank.nprobe = 6
    assert bank.ivf_lists() is not None
    gemm = model.predict(TEXTS, bank, threshold=t, label_top_k=64)
    assert sum(map(len, gemm)) > 0
    monkeypatch.setattr(bank, "ivf_lists", lambda **k: None)  # searched through FAISS instead
    _assert_same(gemm, model.predict(TEXTS, bank, threshold=t, label_top_k=64))


def test_predict_retrieved_equals_exhaustive_with_flat_index(model):
    t = 0.5
    bank = model.encode_labels(_labels(600))
    need = _max_above(model, bank, t)
    assert 0 < need < len(bank)
    exhaustive = model.predict(TEXTS, bank, threshold=t, label_top_k=0)
    assert sum(map(len, exhaustive)) > 0
    bank.build_index("Flat")
    retrieved = model.predict(TEXTS, bank, threshold=t, label_top_k=need)
    _assert_same(retrieved, exhaustive)
    # a plain label list gets a temporary exact index
    listed = model.predict(TEXTS, _labels(600), threshold=t, label_top_k=need)
    _assert_same(listed, exhaustive)


def test_explicit_top_k_on_a_small_bank_without_index_is_exact(model, tmp_path, monkeypatch):
    """label_top_k on a bank below the retrieval threshold with no index: an exact index for this process (the
    default approximate index could miss a span's best label), nothing written into the bank's folder."""
    from glinker.model import labels as lab

    t = 0.5
    bank = model.encode_labels(_labels(600))
    need = _max_above(model, bank, t)
    exhaustive = model.predict(TEXTS, bank, threshold=t, label_top_k=0)
    bank.save(tmp_path / "bank")
    back = LabelBank.load(tmp_path / "bank")
    monkeypatch.setattr(lab, "large_factory", lambda n: "IVF8,Flat")  # what a large bank would get
    _assert_same(model.predict(TEXTS, back, threshold=t, label_top_k=need), exhaustive)
    assert back.index_factory == "Flat"
    assert sorted(p.name for p in (tmp_path / "bank").iterdir()) == ["label_bank.json", "vectors.npy"]


def test_predict_automatic_retrieval_above_bank_threshold(model, tmp_path):
    t = 0.6
    bank = model.encode_labels(_labels(400))
    assert 0 < _max_above(model, bank, t) <= 64  # the default k retrieves every label above threshold
    exhaustive = model.predict(TEXTS, bank, threshold=t)
    assert sum(map(len, exhaustive)) > 0
    assert not bank.has_index
    bank.index_threshold = 100  # now "large": predict retrieves through a lazily built index
    auto = model.predict(TEXTS, bank, threshold=t)
    assert bank.has_index and bank.index_factory == "Flat"
    _assert_same(auto, exhaustive)
    # the index is saved beside the vectors and read back lazily
    bank.save(tmp_path / "bank")
    assert (tmp_path / "bank" / "labels.faiss").is_file()
    back = LabelBank.load(tmp_path / "bank")
    assert back.has_index and back.index_factory == "Flat"
    back.index_threshold = 100
    _assert_same(model.predict(TEXTS, back, threshold=t), auto)
    assert back.faiss_index().ntotal == len(bank)


def test_retrieval_threshold_is_the_banks_or_the_default(model, monkeypatch):
    from glinker.model import labels as lab

    bank = model.encode_labels(_labels(10))
    for prefilter in ("off", "bf16"):  # the same on every CPU: retrieval through IVF is faster than exhaustive
        monkeypatch.setenv("GLINKER_PREFILTER", prefilter)
        assert model.retrieval_threshold(bank) == lab.DEFAULT_INDEX_THRESHOLD
    bank.index_threshold = 5  # a bank's own threshold wins
    assert model.retrieval_threshold(bank) == 5


def test_retrieval_agreement_with_a_few_thousand_labels(model):
    """Measured agreement of an approximate (HNSW) index with small k against exhaustive scoring."""
    t = 0.5
    bank = model.encode_labels(_labels(3000))
    exhaustive = model.predict(TEXTS, bank, threshold=t, label_top_k=0)
    bank.build_index("HNSW32")
    retrieved = model.predict(TEXTS, bank, threshold=t, label_top_k=64)
    spans_a = {(i, e["start"], e["end"]): e["label"] for i, r in enumerate(exhaustive) for e in r}
    spans_b = {(i, e["start"], e["end"]): e["label"] for i, r in enumerate(retrieved) for e in r}
    keys = set(spans_a) | set(spans_b)
    assert keys
    agree = sum(spans_a.get(k) == spans_b.get(k) for k in keys) / len(keys)
    assert agree >= 0.9, agree


def test_stale_index_is_rejected_and_errors_are_clear(model, tmp_path):
    bank = model.encode_labels(_labels(50)).build_index("Flat")
    bank.save(tmp_path / "a")
    other = model.encode_labels(_labels(60)).build_index("Flat")
    other.save(tmp_path / "b")
    (tmp_path / "b" / "labels.faiss").replace(tmp_path / "a" / "labels.faiss")
    with pytest.raises(DataError, match="label index holds"):
        LabelBank.load(tmp_path / "a").faiss_index()
    with pytest.raises(ConfigError, match="factory"):
        bank.build_index("NoSuchIndex7")
    with pytest.raises(ConfigError, match="label_top_k"):
        model.predict(TEXTS, bank, label_top_k=-1)
    with pytest.raises(ConfigError, match="shared"):
        model.predict(TEXTS[:2], [["a", "b"], ["c"]], label_top_k=1)
    # saving a bank without an index removes a stale index file
    model.encode_labels(_labels(50)).save(tmp_path / "a")
    assert not (tmp_path / "a" / "labels.faiss").exists()


def test_write_batches_builds_a_memory_mapped_bank(tmp_path):
    g = torch.Generator().manual_seed(1)
    v = torch.randn(1000, 8, generator=g)
    names = [f"l{i}" for i in range(1000)]
    bank = LabelBank.write_batches(
        tmp_path / "b", names, names, (v[i : i + 300] for i in range(0, 1000, 300)), 8
    )
    assert len(bank) == 1000 and torch.equal(bank.vectors, v)
    assert bank.search(v[:4].numpy(), 1)[:, 0].tolist() == [int(torch.argmax(v @ v[i])) for i in range(4)]
    with pytest.raises(DataError, match="label vectors for"):
        LabelBank.write_batches(tmp_path / "c", names, names, [v[:10]], 8)


def test_mips_to_l2_transform_is_exact_and_kept_across_save(tmp_path):
    """[p, sqrt(M^2-|p|^2)] vs [q, 0]: nearest in L2 == largest inner product (exactly, with an exact index)."""
    import numpy as np

    from glinker.model.labels import build_faiss_index, search_index, uses_mips_transform

    g = torch.Generator().manual_seed(3)
    # norms spread widely, as projected label vectors' are: the transform must not favour short or long rows
    p = torch.randn(5000, 24, generator=g) * torch.rand(5000, 1, generator=g).mul(3).add(0.2)
    q = torch.randn(200, 24, generator=g).numpy()
    truth = torch.topk(torch.as_tensor(q) @ p.T, 10).indices.numpy()
    flat = build_faiss_index(p, "Flat", mips="l2")
    assert flat.d == 25 and flat.metric_type == faiss.METRIC_L2
    assert np.array_equal(np.sort(search_index(flat, q, 10), 1), np.sort(truth, 1))
    assert uses_mips_transform("HNSW32") and uses_mips_transform("HNSW32,SQ8")
    assert not uses_mips_transform("Flat") and not uses_mips_transform("IVF64_HNSW32,Flat")
    assert not uses_mips_transform("HNSW32", "ip")
    with pytest.raises(ConfigError, match="metric"):
        uses_mips_transform("Flat", "cosine")
    names = [f"l{i}" for i in range(len(p))]
    bank = LabelBank(names, names, p).build_index("HNSW32")  # auto: a graph index gets the transform
    assert bank.faiss_index().d == 25
    bank.save(tmp_path / "bank")
    back = LabelBank.load(tmp_path / "bank")
    assert back.faiss_index().d == 25  # the extra dimension says how to query it
    got = back.search(q, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)]) >= 0.9


def test_large_banks_default_to_an_inverted_file_scored_by_matrix_products():
    from glinker.model.labels import DEFAULT_NPROBE, large_factory

    assert large_factory(10_000) == "Flat" and large_factory(100_000) == "IVF512,Flat"
    assert large_factory(1_000_000) == "IVF4096,Flat" and DEFAULT_NPROBE == 64
    assert large_factory(12_000) == "IVF64,Flat" and large_factory(10_001) == "IVF32,Flat"
    g = torch.Generator().manual_seed(3)
    C = 12_000
    bank = LabelBank([str(i) for i in range(C)], [str(i) for i in range(C)], torch.randn(C, 8, generator=g))
    assert bank.default_factory() == "IVF64,Flat" and bank.build_index().ivf_lists() is not None


def _saved_ivf_bank(tmp_path, C=6000, D=32, factory="IVF48,Flat", seed=0):
    g = torch.Generator().manual_seed(seed)
    prompts = torch.randn(C, D, generator=g) * 0.3
    prompts[:, 0] = 1.0
    names = [str(i) for i in range(C)]
    LabelBank(names, names, prompts).build_index(factory).save(tmp_path / "bank")
    return tmp_path / "bank"


def test_lean_ivf_lists_score_as_the_index_lists_and_are_read_without_the_index(tmp_path, monkeypatch):
    """With the pre-filter's dtype, a saved IVF index's lists are written beside it in bfloat16 once and then
    memory-mapped (no float32 copy of the lists, the FAISS index not read): the same pairs and scores as the
    index's own lists, through the pre-filter, its float32 fall-back blocks, and without the pre-filter."""
    from glinker.model import labels as lab
    from glinker.model import scoring

    d = _saved_ivf_bank(tmp_path)
    full = LabelBank.load(d).ivf_lists()
    assert not full.lean and not (d / lab.BANK_IVF_LOWP).exists()
    first = LabelBank.load(d)
    lean = first.ivf_lists(lowp=torch.bfloat16)
    assert lean.lean and (d / lab.BANK_IVF_LOWP / "rows.npy").is_file()
    assert first._faiss_index is None  # the float32 lists were let go
    # a later process maps the saved lists and never reads the index
    monkeypatch.setattr(faiss, "read_index", lambda *a: pytest.fail("the index was read"))
    again = LabelBank.load(d)
    lists = again.ivf_lists(lowp=torch.bfloat16)
    assert lists.lean and again.ivf_lists(lowp=torch.bfloat16) is lists
    assert torch.equal(lists.centroids, full.centroids)
    assert all(torch.equal(a, b) for a, b in zip(lists.ids, full.ids))
    g = torch.Generator().manual_seed(3)
    reps = torch.randn(1500, 32, generator=g)
    reps[:, 0] = -7.0
    C = len(again)
    for nprobe, k, t, low in ((8, 64, 0.3, torch.bfloat16), (8, 2, 0.3, torch.bfloat16), (48, C, 0.5, torch.bfloat16),
                              (16, 5, 0.02, torch.bfloat16), (8, 64, 0.3, None)):
        r0, c0, p0 = score_rows_ivf(reps, full, t, nprobe, k, C, lowp=low)
        r1, c1, p1 = score_rows_ivf(reps, lists, t, nprobe, k, C, lowp=low)
        assert r0.numel() > 0 and torch.equal(r0, r1) and torch.equal(c0, c1), (nprobe, k, t, low)
        assert torch.equal(p0, p1)
    monkeypatch.setattr(scoring, "LOWP_MAX_SURVIVORS", 0.0)  # every block falls back to float32 (gathered rows)
    r0, c0, p0 = score_rows_ivf(reps, full, 0.3, 8, 64, C, lowp=torch.bfloat16)
    r1, c1, p1 = score_rows_ivf(reps, lists, 0.3, 8, 64, C, lowp=torch.bfloat16)
    assert r0.numel() > 0 and torch.equal(r0, r1) and torch.equal(c0, c1) and torch.equal(p0, p1)


def test_lean_ivf_lists_follow_a_replaced_index(tmp_path, monkeypatch):
    """Saved low-precision lists belong to one index: writing a new index removes them, and lists left beside an
    index replaced by other means are recognised as stale and written again from it."""
    from glinker.model import labels as lab

    d = _saved_ivf_bank(tmp_path)
    LabelBank.load(d).ivf_lists(lowp=torch.bfloat16)
    assert (d / lab.BANK_IVF_LOWP).is_dir()
    bank = LabelBank.load(d)
    bank.build_index("IVF32,Flat").save_index(d)
    assert not (d / lab.BANK_IVF_LOWP).exists()
    lean = LabelBank.load(d).ivf_lists(lowp=torch.bfloat16)
    assert lean.lean and lean.centroids.shape[0] == 32
    # another index copied over labels.faiss (the lists saved beside it are the old index's)
    other = _saved_ivf_bank(tmp_path / "o", factory="IVF16,Flat")
    (d / lab.BANK_INDEX).write_bytes((other / lab.BANK_INDEX).read_bytes())
    lists = LabelBank.load(d).ivf_lists(lowp=torch.bfloat16)
    assert lists.lean and lists.centroids.shape[0] == 16
    assert torch.equal(lists.centroids, LabelBank.load(other).ivf_lists().centroids)
    # a damaged saved copy is ignored with a warning: the index is read instead
    (d / lab.BANK_IVF_LOWP / "rows.npy").write_bytes(b"garbage")
    assert not LabelBank.load(d)._read_ivf_lowp(torch.bfloat16)
    assert LabelBank.load(d).ivf_lists(lowp=torch.bfloat16).lean  # and written again
    # a folder that cannot be written: the index's float32 lists, as before
    monkeypatch.setattr(lab.os, "access", lambda *a: False)
    import shutil

    shutil.rmtree(d / lab.BANK_IVF_LOWP)
    assert not LabelBank.load(d).ivf_lists(lowp=torch.bfloat16).lean


def test_predict_through_lean_ivf_lists_equals_the_index_lists(model, tmp_path, monkeypatch):
    from glinker.model import scoring

    monkeypatch.setenv("GLINKER_PREFILTER", "bf16")
    scoring._LOWP.clear()
    info = scoring.lowp_prefilter("cpu")
    if info is None:
        pytest.skip("no bfloat16 products on this CPU")
    bank = model.encode_labels(_labels(3000)).build_index("IVF32,Flat")
    bank.nprobe = 6
    bank.save(tmp_path / "b")
    full = LabelBank.load(tmp_path / "b")
    full.nprobe = 6
    monkeypatch.setattr(full, "_write_ivf_lowp", lambda *a: None)
    want = model.predict(TEXTS, full, threshold=0.5, label_top_k=64)
    assert sum(map(len, want)) > 0 and not full._ivf.lean
    lean = LabelBank.load(tmp_path / "b")
    lean.nprobe = 6
    _assert_same(want, model.predict(TEXTS, lean, threshold=0.5, label_top_k=64))
    assert lean._ivf.lean
    scoring._LOWP.clear()


def test_a_bank_saved_with_its_index_maps_its_lean_lists_in_the_same_process(tmp_path):
    """An index built here and saved (save or save_index) backs the bank: asking for the lean lists writes them
    beside it from the index in memory, then lets that index go."""
    from glinker.model import labels as lab

    g = torch.Generator().manual_seed(5)
    prompts = torch.randn(3000, 16, generator=g)
    names = [str(i) for i in range(3000)]
    bank = LabelBank(names, names, prompts).build_index("IVF8,Flat")
    full = bank.ivf_lists()
    assert bank.ivf_lists(lowp=torch.bfloat16) is full  # no folder: the index's own lists
    bank.save(tmp_path / "a")
    lean = bank.ivf_lists(lowp=torch.bfloat16)
    assert lean.lean and bank._faiss_index is None and (tmp_path / "a" / lab.BANK_IVF_LOWP).is_dir()
    assert all(torch.equal(x, y) for x, y in zip(lean.ids, full.ids))
    assert bank.search(prompts[:2], 1).shape == (2, 1)  # the index is read again when searched
    other = LabelBank.load(tmp_path / "a")
    other.build_index("IVF4,Flat").save_index(tmp_path / "a")
    assert other.ivf_lists(lowp=torch.bfloat16).lean and other.ivf_lists(lowp=torch.bfloat16).centroids.shape[0] == 4


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_lean_lists_of_a_half_precision_bank_score_as_its_index_lists(tmp_path, dtype):
    """A bank kept in float16/bfloat16: the lean lists re-score survivors from its vectors in float32, as the
    index (which holds float32 copies) does."""
    g = torch.Generator().manual_seed(0)
    p = torch.randn(3000, 16, generator=g) * 0.3
    p[:, 0] = 1.0
    names = [str(i) for i in range(3000)]
    bank = LabelBank(names, names, p.to(dtype)).build_index("IVF8,Flat")
    full = bank.ivf_lists()
    reps = torch.randn(200, 16, generator=g)
    reps[:, 0] = -3
    want = score_rows_ivf(reps, full, 0.3, 4, 64, 3000, lowp=torch.bfloat16)
    bank.save(tmp_path / "b")
    lean = bank.ivf_lists(lowp=torch.bfloat16)
    assert lean.lean and want[0].numel() > 0
    for a, b in zip(want, score_rows_ivf(reps, lean, 0.3, 4, 64, 3000, lowp=torch.bfloat16)):
        assert torch.equal(a, b)
    for a, b in zip(score_rows_ivf(reps, full, 0.3, 4, 64, 3000), score_rows_ivf(reps, lean, 0.3, 4, 64, 3000)):
        assert torch.equal(a, b)  # no pre-filter: whole lists gathered


def test_a_lean_copy_put_in_place_by_another_process_first_is_used(tmp_path, monkeypatch):
    from glinker.model import labels as lab

    d = _saved_ivf_bank(tmp_path)
    LabelBank.load(d).ivf_lists(lowp=torch.bfloat16)  # the other process's copy
    bank = LabelBank.load(d)
    real_rmtree = lab.shutil.rmtree
    monkeypatch.setattr(lab.shutil, "rmtree", lambda p, **k: None if Path(p).name == lab.BANK_IVF_LOWP
                        else real_rmtree(p, **k))  # it lands between our removal and our rename
    monkeypatch.setattr(bank, "_read_ivf_lowp", lambda dt, _r=bank._read_ivf_lowp: _r(dt) if calls.append(1) or
                        len(calls) > 1 else None)  # first look: not there yet
    calls: list = []
    lean = bank.ivf_lists(lowp=torch.bfloat16)
    assert lean is not None and lean.lean and not bank._no_lean
    assert not [p for p in d.iterdir() if p.name.startswith(f".{lab.BANK_IVF_LOWP}.")]  # no temporary left
