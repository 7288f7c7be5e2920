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


def _quadratic_decode(cands, flat_ner, multi_label):
    """The rule as gliner states it: each candidate, by score, against every entity kept so far."""
    from glinker.model.decoding import _by_score, _clash

    chosen = []
    for i in _by_score(cands, 1e-7):
        s = (cands[i][0], cands[i][1])
        if not any(_clash(s, (o[0], o[1]), flat_ner, multi_label) for o in chosen):
            chosen.append(cands[i])
    return sorted(chosen, key=lambda x: x[0])


def test_indexed_decoding_equals_the_quadratic_rule():
    import random

    rng = random.Random(0)
    for trial in range(200):
        n_words, width = rng.randint(1, 30), rng.randint(1, 12)
        cands = []
        for s in range(n_words):
            for k in range(min(width, n_words - s)):
                for c in range(rng.randint(0, 4)):
                    # coarse scores: many exact ties, which must keep candidate order
                    cands.append((s, s + k, c, rng.randint(1, 20) / 20))
        for flat in (True, False):
            for multi in (True, False):
                assert greedy_decode(cands, flat, multi) == _quadratic_decode(cands, flat, multi), trial


def test_decomposed_accents_stay_in_their_word():
    import re

    from glinker.model.words import split_words

    nfd = "Jose\u0301 Garci\u0301a lives in Sa\u0303o Paulo."
    sp = split_words(nfd)
    assert sp.words == ["Jose\u0301", "Garci\u0301a", "lives", "in", "Sa\u0303o", "Paulo", "."]
    assert [nfd[a:b] for a, b in zip(sp.starts, sp.ends)] == sp.words
    gliner = re.compile(r"\w+(?:[-_]\w+)*|\S")  # text without marks: exactly gliner's words
    plain = "José García, well-known co_op e-mail! 東京 🙂"
    assert split_words(plain).words == [m.group() for m in gliner.finditer(plain)]


def test_invisible_characters_are_no_words_and_emoji_sequences_are_one():
    """A byte-order mark, zero-width space, control character, soft hyphen or direction mark is no word (the
    tokenizers drop them; as words of their own they became invisible entities: a BOM tagged as a location), and
    an emoji keeps its variation selector, skin tone and zero-width-joined parts in one word."""
    from glinker.model.words import split_words

    cases = {
        "\ufeffJohn Smith works at Google.": ["John", "Smith", "works", "at", "Google", "."],
        "John Smith \x07 works \u200b at \u200e Acme": ["John", "Smith", "works", "at", "Acme"],
        # combining marks \w does not match (Thai, Devanagari) stay in their word, never dropped (gliner cuts the
        # word at each of them): a word's last letters are never lost, no span starts or ends inside a letter
        "\u0e08\u0e31\u0e19\u0e17\u0e23\u0e4c": ["\u0e08\u0e31\u0e19\u0e17\u0e23\u0e4c"],
        "\u0926\u0947\u0936": ["\u0926\u0947\u0936"],
        "co\xadoperation": ["co", "operation"],
        "\U0001f468\u200d\U0001f469\u200d\U0001f467 family of Paris": ["\U0001f468\u200d\U0001f469\u200d\U0001f467",
                                                                     "family", "of", "Paris"],
        "I \u2764\ufe0f Paris \U0001f44d\U0001f3fd!": ["I", "\u2764\ufe0f", "Paris", "\U0001f44d\U0001f3fd", "!"],
    }
    for text, words in cases.items():
        sp = split_words(text)
        assert sp.words == words, repr(text)
        assert [text[a:b] for a, b in zip(sp.starts, sp.ends)] == sp.words
