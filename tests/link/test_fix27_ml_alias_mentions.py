"""alias_mentions in scripts written without spaces, next to apostrophe clitics and elided articles, and with
combining marks (a multilingual audit: names attached to other text were never found, and matches ended between a
letter and its marks)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from .conftest import alias_mention_texts, build_records_kb

mentions = alias_mention_texts  # (the texts of the mentions alias_mentions finds in each text)

RECORDS = [
    {"id": "E1", "label": "München", "aliases": ["Munich"]},
    {"id": "E2", "label": "İstanbul"},
    {"id": "E4", "label": "IBM"},
    {"id": "E5", "label": "ＳＯＮＹ"},
    {"id": "E7", "label": "مُحَمَّد"},
    {"id": "E8", "label": "القاهرة"},
    {"id": "E9", "label": "नई दिल्ली", "aliases": ["दिल्ली"]},
    {"id": "E10", "label": "म्यूनिख"},
    {"id": "E11", "label": "北京大学", "aliases": ["北大"]},
    {"id": "E12", "label": "北京"},
    {"id": "E13", "label": "東京"},
    {"id": "E19", "label": "Diyarbakır"},
    {"id": "E21", "label": "中华人民共和国国务院"},  # ten characters: longer than max_words words
    {"id": "E22", "label": "Côte d'Ivoire"},
    {"id": "E23", "label": "Neill"},
    {"id": "E24", "label": "Alema"},
    {"id": "E25", "label": "Apple™"},
    {"id": "E26", "label": "กรุงเทพ"},  # Bangkok, Thai: no spaces, vowel signs are marks
    {"id": "F1", "label": "राम"},
    {"id": "F2", "label": "Ko"},
    {"id": "F3", "label": "مد"},
    {"id": "G1", "label": "Don"}, {"id": "G2", "label": "Can"}, {"id": "G3", "label": "Ma"},
    {"id": "G4", "label": "Int"}, {"id": "G5", "label": "RE"}, {"id": "G6", "label": "VE"},
    {"id": "G7", "label": "ISN"},
]


@pytest.fixture(scope="module")
def kb(tmp_path_factory) -> Path:
    return build_records_kb(RECORDS, tmp_path_factory.mktemp("mlkb"))


def test_names_inside_text_written_without_spaces(kb):
    assert mentions(kb, "我在北京大学读书，住在北京。", "北京大学は東京にありません。", "ＳＯＮＹとＩＢＭは東京の会社です。",
                    "ฉันอยู่กรุงเทพมาสองปี") == [
        ["北京大学", "北京"], ["北京大学", "東京"], ["ＳＯＮＹ", "ＩＢＭ", "東京"], ["กรุงเทพ"]]


def test_max_words_counts_characters_of_scripts_without_spaces_as_quarter_words(kb):
    text = "中华人民共和国国务院发布了通知。"
    assert mentions(kb, text) == [["中华人民共和国国务院"]]
    assert mentions(kb, text, max_words=2) == [[]]  # eight characters at most
    assert mentions(kb, text, max_words=3) == [["中华人民共和国国务院"]]
    # "Côte d'Ivoire" is two words, as before: the word after an apostrophe costs nothing inside its word
    assert mentions(kb, "Elle vit en Côte d'Ivoire.", max_words=2) == [["Côte d'Ivoire"]]


def test_text_that_normalisation_changes_is_matched_as_before(kb):
    # "…" and "™" change under NFKC (start-of-key pruning is off around them), "，" and full-width letters map to
    # characters that tokenize alike (pruning stays on): every name is found either way
    assert mentions(kb, "北京……東京", "Apple™ 北京，東京", "ＩＢＭ，北京") == [
        ["北京", "東京"], ["Apple™", "北京", "東京"], ["ＩＢＭ", "北京"]]


def test_clitics_and_elided_articles(kb):
    got = mentions(kb, "Le siège d'IBM est loin de l'İstanbul d'aujourd'hui.",
                   "İstanbul'da yaşıyorum, Diyarbakır'a gittim.",
                   "IBM's office in Istanbul.", "IBM’s office, qu’IBM", "IBM'S OFFICE. L'IBM")
    # (a word all in capitals cannot show which side is the name: both are tried)
    assert got == [["IBM", "İstanbul"], ["İstanbul", "Diyarbakır"], ["IBM", "Istanbul"], ["IBM", "IBM"],
                   ["IBM", "IBM"]]
    # a whole word that is an alias still wins, and a name after an apostrophe is not cut off a longer name:
    # "O'Neill", "D'Alema" (the word before the apostrophe is not a lower-case elided article)
    assert mentions(kb, "Côte d'Ivoire, Shaquille O'Neill, Massimo D'Alema.") == [["Côte d'Ivoire"]]


def test_english_contractions_are_not_cut(kb):
    """Contractions are no clitics: no "Don" in "Don't", no "RE" in "WE'RE" (possessives still are: "IBM's")."""
    texts = ["Don't worry.", "Can't stop.", "Ma'am, Int'l news.", "DON'T PANIC", "ISN'T IT", "THEY'VE WON.",
             "WE'RE HERE", "they're here, we'll see", "Go to IBM's office."]
    assert mentions(kb, *texts, require_capital=False) == [[], [], [], [], [], [], [], [], ["IBM"]]


def test_combining_marks_stay_with_their_letter(kb):
    nfd = unicodedata.normalize("NFD", "Ich war in Köln. Kohl und Ko.")
    assert mentions(kb, nfd) == [["Ko"]]  # never "Ko" out of "Ko\u0308ln" or "Kohl"
    assert mentions(kb, "रामायण एक महाकाव्य है। राम आए।", "قابلت مُدير الشركة") == [["राम"], []]
    assert mentions(kb, "मैं नई दिल्ली में रहता हूँ और म्यूनिख गया।", "زرت القاهرة وقابلت مُحَمَّد هناك.") == [
        ["नई दिल्ली", "म्यूनिख"], ["القاهرة", "مُحَمَّد"]]


def test_plain_text_takes_the_plain_path():
    """ASCII text without apostrophes: every token a whole word of cost one word, no piece boundaries."""
    from glinker.stages.mentions import _tokenize

    toks, cost, edge = _tokenize("IBM and Munich. " * 3)
    assert len(toks) == 9 and set(cost) == {4} and edge is None


def test_skipping_tokens_that_begin_no_key_changes_nothing(kb, monkeypatch):
    """The quick checks (a token that begins no key, spans longer than the keys that begin alike, two characters
    that begin no key) give the same mentions as trying every span."""
    import glinker.stages.mentions as m

    texts = ["我在北京大学读书，住在北京。北大、北京大学和東京。中华人民共和国国务院……北京",
             "ＳＯＮＹとＩＢＭは東京の会社です。Apple™ und IBM's München, l'İstanbul d'IBM",
             "मैं नई दिल्ली में रहता हूँ और म्यूनिख गया। रामायण राम", "زرت القاهرة وقابلت مُحَمَّد هناك.",
             unicodedata.normalize("NFD", "Köln, Ko, Côte d'Ivoire. Munich!") + " ฉันอยู่กรุงเทพ"]
    quick = mentions(kb, *texts)
    monkeypatch.setattr(m, "_unstable_tokens", lambda text, toks, ascii_text: list(range(len(toks))))
    assert mentions(kb, *texts) == quick
    assert sum(map(len, quick)) >= 20
