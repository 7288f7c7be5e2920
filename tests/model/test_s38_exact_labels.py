"""Session 38: an IVF label index leaves the labels with the smallest vectors out of its lists; they are scored
exactly for every span (the generic labels, person or location, that the lists nearest a span miss most)."""

from __future__ import annotations

import json

import pytest
import torch

from glinker.errors import ConfigError
from glinker.model import LabelBank
from glinker.model.scoring import score_rows, score_rows_ivf, score_rows_topk

faiss = pytest.importorskip("faiss")


def _bank(C: int = 6000, D: int = 24, seed: int = 0) -> LabelBank:
    g = torch.Generator().manual_seed(seed)
    prompts = torch.randn(C, D, generator=g) * (0.2 + torch.rand(C, 1, generator=g))  # norms spread out
    names = [str(i) for i in range(C)]
    return LabelBank(names, names, prompts)


def test_the_smallest_labels_are_left_out_of_the_lists_and_read_by_every_row():
    bank = _bank().build_index("IVF48,Flat", exact_share=0.05)
    C = len(bank)
    norms = bank.vectors.norm(dim=1)
    want = torch.sort(torch.topk(norms, 300, largest=False).indices).values
    rows, vecs = bank.exact_labels()
    assert torch.equal(rows, want) and torch.equal(vecs, bank.vectors[want])
    assert int(bank.faiss_index().ntotal) == C - 300
    lists = bank.ivf_lists()
    assert lists.always == 1 and torch.equal(lists.ids[-1], want) and lists.centroids.shape[0] == 48
    assert sum(len(i) for i in lists.ids) == C and len(torch.cat(lists.ids).unique()) == C
    g = torch.Generator().manual_seed(1)
    reps = torch.randn(800, 24, generator=g) * 0.5
    # one probed list: every row still gets every exact label above the threshold
    r, c, _ = score_rows_ivf(reps, lists, 0.3, 1, C, C)
    r0, c0, _ = score_rows(reps, bank.vectors, 0.3)
    exact = torch.isin(c0, want)
    assert exact.any()
    got = set(zip(r.tolist(), c.tolist()))
    assert all((a, b) in got for a, b in zip(r0[exact].tolist(), c0[exact].tolist()))
    # every list probed: exhaustive scoring; the FAISS search merged with the exact labels: the same pairs
    r1, c1, p1 = score_rows_ivf(reps, lists, 0.3, 48, C, C)
    assert torch.equal(r1, r0) and torch.equal(c1, c0)
    for nprobe, k in ((4, 8), (12, 64)):
        bank.nprobe = nprobe
        r2, c2, p2 = score_rows_topk(reps, bank.vectors, 0.3, k, bank.search)
        r3, c3, p3 = score_rows_ivf(reps, lists, 0.3, nprobe, k, C)
        assert r2.numel() and torch.equal(r2, r3) and torch.equal(c2, c3) and torch.allclose(p2, p3, atol=1e-6)
        r4, c4, _ = score_rows_ivf(reps, lists, 0.3, nprobe, k, C, lowp=torch.bfloat16)
        assert torch.equal(r4, r3) and torch.equal(c4, c3)


def test_exact_share_zero_and_bad_values():
    bank = _bank().build_index("IVF48,Flat", exact_share=0)
    assert bank.exact_labels()[0].numel() == 0 and bank.ivf_lists().always == 0
    assert int(bank.faiss_index().ntotal) == len(bank)
    with pytest.raises(ConfigError, match="exact_share"):
        _bank().build_index("IVF48,Flat", exact_share=1.0)
    # other indexes hold every label
    flat = _bank(C=500).build_index("Flat")
    assert int(flat.faiss_index().ntotal) == 500 and flat.exact_labels()[0].numel() == 0


def test_a_saved_bank_keeps_its_exact_labels_in_the_index_and_its_lean_lists(tmp_path, monkeypatch):
    from glinker.model import labels as lab

    bank = _bank().build_index("IVF48,Flat")  # the default share
    assert bank.exact_labels()[0].numel() == 300
    bank.save(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / lab.BANK_JSON).read_text())
    assert meta["exact_labels"] == 300
    again = LabelBank.load(tmp_path / "b")
    full = again.ivf_lists()
    assert full.always == 1 and torch.equal(full.ids[-1], bank.exact_labels()[0])
    lean = LabelBank.load(tmp_path / "b").ivf_lists(lowp=torch.bfloat16)
    assert lean.lean and lean.always == 1
    monkeypatch.setattr(faiss, "read_index", lambda *a: pytest.fail("the index was read"))
    third = LabelBank.load(tmp_path / "b")
    lists = third.ivf_lists(lowp=torch.bfloat16)
    assert lists.always == 1 and torch.equal(third.exact_labels()[0], full.ids[-1])
    g = torch.Generator().manual_seed(2)
    reps = torch.randn(600, 24, generator=g) * 0.5
    a = score_rows_ivf(reps, full, 0.3, 6, 32, len(bank), lowp=torch.bfloat16)
    b = score_rows_ivf(reps, lists, 0.3, 6, 32, len(bank), lowp=torch.bfloat16)
    assert a[0].numel() and all(torch.equal(x, y) for x, y in zip(a, b))


def test_the_default_nprobe_of_an_index_with_exact_labels_is_an_eighth():
    from glinker.model.labels import default_nprobe

    assert default_nprobe(512) == 192 and default_nprobe(512, exact=True) == 64
    assert default_nprobe(4096, exact=True) == 512 and default_nprobe(48, exact=True) == 48


def test_labels_build_sets_the_share_and_rebuilds_an_index_built_before(tmp_path):
    """`glinker labels build --exact-share` on a bank whose index scores no label exactly (built before session 38,
    here with --exact-share 0) rebuilds the index without encoding again; `labels info` says how many it scores."""
    from typer.testing import CliRunner

    from glinker.cli import app
    from tests.model.test_label_bank_build import CKPT

    (tmp_path / "labels.txt").write_text("".join(f"label number {i}\n" for i in range(400)), encoding="utf-8")
    base = ["labels", "build", str(tmp_path / "labels.txt"), "-m", CKPT, "-o", str(tmp_path / "bank"),
            "--index", "IVF8,Flat"]
    r = CliRunner().invoke(app, [*base, "--exact-share", "0"])
    assert r.exit_code == 0, r.output
    info = CliRunner().invoke(app, ["labels", "info", str(tmp_path / "bank")])
    assert json.loads(info.stdout)["exact_labels"] == 0
    r = CliRunner().invoke(app, base)  # no share given: the index there is kept
    assert r.exit_code == 0 and json.loads(r.stdout.strip().splitlines()[-1])["index_s"] == 0.0
    vectors = (tmp_path / "bank" / "vectors.npy").stat().st_mtime_ns
    r = CliRunner().invoke(app, [*base, "--exact-share", "0.05"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "bank" / "vectors.npy").stat().st_mtime_ns == vectors  # not encoded again
    info = CliRunner().invoke(app, ["labels", "info", str(tmp_path / "bank")])
    assert json.loads(info.stdout)["exact_labels"] == 20
    bank = LabelBank.load(tmp_path / "bank")
    assert bank.ivf_lists().always == 1 and int(bank.faiss_index().ntotal) == 380


def test_an_index_nearly_as_large_as_its_bank_leaves_out_no_more_than_it_can_spare():
    """Review: leaving 5% out of 520 labels for IVF512 left 494 to train 512 lists: the build failed after encoding
    (it built before). The count left out keeps at least one label a list; shares are rounded as written."""
    from glinker.model.labels import exact_count

    assert exact_count("IVF512,Flat", 520, 0.05) == 8 and exact_count("IVF512,Flat", 512, 0.05) == 0
    assert exact_count("IVF8,Flat", 100, 0.07) == 7  # not ceil(7.000000000000001) = 8
    assert exact_count("Flat", 1000, 0.05) == 0 and exact_count("IVF8,Flat", 1000, 0) == 0
    bank = _bank(C=520, D=8).build_index("IVF512,Flat")
    assert int(bank.faiss_index().ntotal) == 512 and bank.exact_labels()[0].numel() == 8
