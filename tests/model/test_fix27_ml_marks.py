"""Combining marks of every script stay in their word in the bi-encoder's word splitter (Devanagari, Arabic, Thai and
Hebrew marks were words of their own: entities came back on lone vowel signs and started inside a letter); text
without marks still splits exactly as gliner's."""

from __future__ import annotations

import re
import subprocess
import sys
import unicodedata

import pytest

from glinker.model.words import COMBINING_MARKS, COMBINING_MARKS_ASTRAL, COMBINING_MARKS_BMP, split_words

GLINER = re.compile(r"\w+(?:[-_]\w+)*|\S")


def _marks_of(body: str) -> set[int]:
    out: set[int] = set()
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            out.update(range(ord(body[i]), ord(body[i + 2]) + 1))
            i += 3
        else:
            out.add(ord(body[i]))
            i += 1
    return out


def test_the_table_is_every_combining_mark():
    table = _marks_of(COMBINING_MARKS)
    assert COMBINING_MARKS == COMBINING_MARKS_BMP + COMBINING_MARKS_ASTRAL
    assert max(_marks_of(COMBINING_MARKS_BMP)) < 0x10000 <= min(_marks_of(COMBINING_MARKS_ASTRAL))
    assert all(unicodedata.category(chr(c)) in ("Mn", "Mc", "Me") for c in table)
    if unicodedata.unidata_version != "14.0.0":  # the table is Unicode 14.0's (Python 3.11)
        pytest.skip(f"this Python has Unicode {unicodedata.unidata_version}")
    assert table == {c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) in ("Mn", "Mc", "Me")}


@pytest.mark.parametrize("text,words", [
    ("मैं नई दिल्ली में रहता हूँ और म्यूनिख गया।", ["मैं", "नई", "दिल्ली", "में", "रहता", "हूँ", "और", "म्यूनिख", "गया", "।"]),
    ("وقابلت مُحَمَّد هناك", ["وقابلت", "مُحَمَّد", "هناك"]),
    ("ฉันอยู่กรุงเทพ มาสองปี", ["ฉันอยู่กรุงเทพ", "มาสองปี"]),
    ("שָׁלוֹם עֲלֵיכֶם", ["שָׁלוֹם", "עֲלֵיכֶם"]),
    ("Ko\u0308ln und Jose\u0301", ["Ko\u0308ln", "und", "Jose\u0301"]),
    # a mark with no letter before it is no word (it stays in the text between the words): gliner makes it one,
    # which the tokenizer may give no token, and an entity came back on it
    ("We met \u0947 yesterday \u20dd\u0301", ["We", "met", "yesterday"]),
    ("\u0301Paris \u2764\ufe0f", ["Paris", "\u2764\ufe0f"]),
])
def test_marks_stay_in_their_word(text, words):
    sp = split_words(text)
    assert sp.words == words
    assert [text[a:b] for a, b in zip(sp.starts, sp.ends)] == words
    # no word begins with a mark; every mark after a letter is in a word
    assert all(unicodedata.category(text[a])[0] != "M" for a in sp.starts)
    inside = {i for a, b in zip(sp.starts, sp.ends) for i in range(a, b)}
    assert all(i in inside for i, c in enumerate(text) if unicodedata.category(c)[0] == "M" and i
               and not text[i - 1].isspace() and unicodedata.category(text[i - 1])[0] != "M")


def test_text_without_marks_splits_as_gliner():
    for text in ("José García, well-known co_op e-mail! 東京 🙂", "Москва и Αθήνα: 北京大学，ＳＯＮＹ 1,5 a.b.c",
                 "مرحبا بكم في القاهرة", "  tabs\tand\nnew lines  "):
        assert not any(unicodedata.category(c)[0] == "M" for c in text)
        assert split_words(text).words == GLINER.findall(text)


def test_the_pattern_is_compiled_at_first_use_not_at_import():
    code = ("import glinker, sys; assert 'glinker.model.words' not in sys.modules; "
            "import glinker.model.words as w; assert w.word_re.cache_info().currsize == 0; "
            "w.split_words('x'); assert w.word_re.cache_info().currsize == 1; assert w.WORD_RE is w.word_re()")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_entity_on_a_lone_mark_or_inside_a_letter(model):
    """Every span scored (threshold 0, overlaps kept) starts and ends on whole words: never on a vowel sign,
    virama or haraka of its own, never between a letter and its marks."""
    texts = ["मैं नई दिल्ली में रहता हूँ", "We met \u0947 yesterday. Paris is in France.", "وقابلت مُحَمَّد هناك",
             "ฉันอยู่กรุงเทพ มาสองปี", "שָׁלוֹם ירושלים"]
    preds = model.predict(texts, ["location", "person"], threshold=0.0, flat_ner=False, multi_label=True)
    for text, ents in zip(texts, preds):
        sp = split_words(text)
        assert ents
        for e in ents:
            assert e["start"] in sp.starts and e["end"] in sp.ends, (text, e)
            assert unicodedata.category(text[e["start"]])[0] != "M"
            assert e["end"] == len(text) or unicodedata.category(text[e["end"]])[0] != "M"
