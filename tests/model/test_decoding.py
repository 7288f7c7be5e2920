"""Greedy decoding: gliner's clash rules and float-noise ties."""

from __future__ import annotations

from glinker.model.decoding import greedy_decode


def test_flat_nested_multilabel_rules():
    c = [(0, 2, 0, 0.9), (0, 2, 1, 0.8), (1, 1, 0, 0.7), (2, 4, 1, 0.6), (5, 5, 0, 0.5)]
    assert greedy_decode(c, flat_ner=True) == [(0, 2, 0, 0.9), (5, 5, 0, 0.5)]
    assert greedy_decode(c, flat_ner=True, multi_label=True) == [
        (0, 2, 0, 0.9),
        (0, 2, 1, 0.8),
        (5, 5, 0, 0.5),
    ]
    # nested: (1,1) inside (0,2) is fine; (2,4) partially overlaps (0,2) and is dropped
    assert greedy_decode(c, flat_ner=False) == [(0, 2, 0, 0.9), (1, 1, 0, 0.7), (5, 5, 0, 0.5)]


def test_float_noise_ties_keep_candidate_order():
    # gliner saw three exactly equal scores and kept candidate order; ours differ by one float32 ulp
    c = [(0, 0, 0, 0.5), (0, 1, 0, 0.5 + 3e-8), (1, 1, 0, 0.5)]
    assert greedy_decode(c) == [(0, 0, 0, 0.5), (1, 1, 0, 0.5)]
    # real differences still order by score
    c = [(0, 0, 0, 0.5), (0, 1, 0, 0.5 + 1e-5), (1, 1, 0, 0.5)]
    assert greedy_decode(c) == [(0, 1, 0, 0.5 + 1e-5)]
