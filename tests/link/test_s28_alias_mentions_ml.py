"""alias_mentions next to apostrophes that are letters (Arabic and Hebrew ayin and hamza: "Gama'a", "Qur'an"; a
match ended before them as before a Turkish clitic), before Korean particles ("서울에서", "삼성전자가": names with a
particle attached were never found), and with one-character CJK names (``min_chars``)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from .conftest import alias_mention_texts, build_records_kb

mentions = alias_mention_texts  # (the texts of the mentions alias_mentions finds in each text)

RECORDS = [
    # short names that an apostrophe of a transliteration used to cut out of a longer word
    {"id": "A1", "label": "Gama"}, {"id": "A2", "label": "Sana"}, {"id": "A3", "label": "Ba"},
    {"id": "A4", "label": "Shi"}, {"id": "A5", "label": "Qur"}, {"id": "A6", "label": "Ka"},
    {"id": "A7", "label": "Ja"}, {"id": "A8", "label": "Giv"}, {"id": "A11", "label": "Sa"},
    {"id": "A12", "label": "Mas"},
    {"id": "A9", "label": "Gama'a al-Islamiyya"}, {"id": "A10", "label": "Sana'a"},
    # clitics and elisions that must keep working
    {"id": "T1", "label": "İstanbul"}, {"id": "T2", "label": "Ankara"}, {"id": "T3", "label": "Diyarbakır"},
    {"id": "T4", "label": "Google"}, {"id": "T5", "label": "Obama"}, {"id": "T6", "label": "Erdoğan"},
    {"id": "T7", "label": "Paris"}, {"id": "T8", "label": "NATO"}, {"id": "T9", "label": "IBM"},
    {"id": "T10", "label": "L'Oréal"}, {"id": "T11", "label": "Don"}, {"id": "T12", "label": "Descartes"},
    {"id": "T13", "label": "İzmir"}, {"id": "T14", "label": "Atatürk"},
    # Korean
    {"id": "K1", "label": "서울"}, {"id": "K2", "label": "삼성전자"}, {"id": "K3", "label": "문재인"},
    {"id": "K4", "label": "김정은"}, {"id": "K5", "label": "경기"}, {"id": "K6", "label": "경기도"},
    {"id": "K7", "label": "대만"}, {"id": "K8", "label": "부산"}, {"id": "K9", "label": "부산에서"},
    {"id": "K10", "label": "삼성 전자"},
    # one-character CJK names
    {"id": "C1", "label": "宋"}, {"id": "C2", "label": "京"},
]


@pytest.fixture(scope="module")
def kb(tmp_path_factory) -> Path:
    return build_records_kb(RECORDS, tmp_path_factory.mktemp("s28kb"))


def test_an_apostrophe_for_ayin_or_hamza_is_no_clitic_boundary(kb):
    """No "Gama" out of "Gama'a", no "Qur" out of "Qur'an": a vowel after a vowel across the apostrophe, or a part
    after it that is no possessive and no Turkish suffix, belongs to the word."""
    got = mentions(kb, "Gama'a claimed it.", "The Ba'ath party; Shi'a pilgrims; the Qur'an; the Ka'ba.",
                   "Ja'far went to Giv'at Shmuel.", "GAMA'A AND THE BA'ATH",
                   # (a part ending in a vowel and "h", as the ta marbuta is written; a close vowel followed by a
                   # letter that follows none in a Turkish suffix)
                   "Fighting in Sa'dah and Sa'dah's airport; Mas'ud Barzani.")
    assert got == [[], [], [], [], []]


def test_a_longer_alias_over_the_apostrophe_wins(kb):
    # (the clitic boundary is an option of the longest match, not a cut)
    assert mentions(kb, "The Gama'a al-Islamiyya was strong in Sana'a.", "SANA'A") == [
        ["Gama'a al-Islamiyya", "Sana'a"], ["SANA'A"]]


def test_clitics_elisions_and_contractions_as_before(kb):
    got = mentions(kb, "İstanbul'da, Ankara'ya, Diyarbakır'a, Erdoğan'ın, Paris'te, NATO'ya, ANKARA'DA, Paris'inde.",
                   "Google'a, Obama'nın, Obama's, IBM's, IBM'S, d'IBM, L'Oréal.",
                   "Don't. DON'T. Descartes'a, Descartes'owi.",
                   # capitals: "İ" lower-cases with a combining dot; NFD text writes "ü" as "u" and a mark
                   "PARİS'İN SOKAKLARI, İZMİR'İ GÖRDÜM, " + unicodedata.normalize("NFD", "Atatürk'ün evi"))
    assert got == [["İstanbul", "Ankara", "Diyarbakır", "Erdoğan", "Paris", "NATO", "ANKARA", "Paris"],
                   ["Google", "Obama", "Obama", "IBM", "IBM", "IBM", "L'Oréal"],
                   ["Descartes", "Descartes"], ["PARİS", "İZMİR", unicodedata.normalize("NFD", "Atatürk")]]


def test_korean_names_before_particles(kb):
    got = mentions(kb, "문재인은 서울에서 삼성전자가 발표한 계획을 IBM의 대표와 논의했다.",
                   "김정은은 대만에서 왔다. 서울.", "서울에서는 삼성 전자와")
    assert got == [["문재인", "서울", "삼성전자", "IBM"], ["김정은", "대만", "서울"], ["서울", "삼성 전자"]]


def test_a_whole_korean_word_that_is_an_alias_wins(kb):
    # "부산에서" and "경기도" are aliases; "경기" and "부산" too
    assert mentions(kb, "부산에서 경기도에서 부산은 경기는") == [["부산에서", "경기도", "부산", "경기"]]


def test_korean_words_are_split_before_particles_only(kb):
    """No name out of the middle of a word, nor before a syllable that is no particle ("서울대학교", "경기장")."""
    assert mentions(kb, "서울대학교 경기장 삼성전자주식회사 문재인정부 서울특별시") == [[]]


def test_korean_tokens():
    from glinker.stages.mentions import _CAN_END, _CAN_START, _tokenize

    text = "서울에서는 이가 은 IBM의. 서울대"
    toks, cost, edge = _tokenize(text)
    assert [text[s:e] for s, e in toks] == ["서울", "에서", "는", "이", "가", "은", "IBM", "의.", "서울대"]
    assert cost == [4, 0, 0, 4, 0, 4, 4, 0, 4]
    both = _CAN_START | _CAN_END
    assert edge == [both, _CAN_END, _CAN_END, both, _CAN_END, both, both, _CAN_END, both]


def test_skipping_tokens_that_begin_no_key_changes_nothing(kb, monkeypatch):
    """A Korean key whose first word ends with particles ("김정은", "대만", "부산에서") begins with their stem, as
    the text's words do: the quick checks find what trying every span finds."""
    import glinker.stages.mentions as m

    texts = ["김정은은 대만에서 왔다. 부산에서 경기도에서 서울에서는 삼성 전자와 IBM의",
             "Gama'a al-Islamiyya in Sana'a, İstanbul'da, Obama'nın, L'Oréal"]
    quick = mentions(kb, *texts)
    monkeypatch.setattr(m, "_unstable_tokens", lambda text, toks, ascii_text: list(range(len(toks))))
    assert mentions(kb, *texts) == quick
    assert sum(map(len, quick)) == 12


def test_one_character_cjk_names_need_min_chars_one(kb):
    """A Han character counts as one character: at the default min_chars 2 a one-character name is not matched (it
    would match inside every word that holds the character); min_chars 1 matches it, inside words too."""
    text = "宋朝的首都不在北京。"
    assert mentions(kb, text) == [[]]
    assert mentions(kb, text, min_chars=1) == [["宋", "京"]]


def test_polish_endings_after_a_french_vowel_digraph(tmp_path):
    """"Rousseau'a" is Polish for Rousseau's (the ending after a silent "eau"), not an ayin: the match ends before
    the apostrophe; "Sana'a" and "Gama'a" stay whole."""
    kb = build_records_kb([{"id": "F1", "label": "Rousseau"}, {"id": "F2", "label": "Montesquieu"},
                           {"id": "F3", "label": "Cocteau"}, {"id": "F4", "label": "Sana"}], tmp_path)
    got = alias_mention_texts(kb, "Filozofia Rousseau'a jest znana.", "Według Montesquieu'a władza.",
                              "Filmy Cocteau'a.", "Dzięki Rousseau'owi.", "Sana'a is a city.")
    assert got == [["Rousseau"], ["Montesquieu"], ["Cocteau"], ["Rousseau"], []]
