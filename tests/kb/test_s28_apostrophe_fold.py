"""Apostrophe look-alikes in the alias fold (fold version 3): "O’Brien" in the text finds the alias O'Brien and
the other way round, for every character written for an apostrophe; stores folded with version 2 are read as they
were (with a warning only when they hold such keys) and folded again by an update."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from glinker.kb import KB
from glinker.kb.store import APOSTROPHES, FOLD_VERSION, fold_key, fold_key_v2, normalize_alias

from .conftest import build_records_kb, kb_info_line, refold_store

# each alias written with one apostrophe kind; the text below writes it with another
RECORDS = [
    {"id": "E1", "label": "O'Brien"},                   # U+0027
    {"id": "E2", "label": "McDonald’s"},                # U+2019
    {"id": "E3", "label": "Côte d'Ivoire"},             # U+0027, with an accent
    {"id": "E4", "label": "Kamʼianets-Podilskyi"},      # U+02BC modifier letter apostrophe
    {"id": "E5", "label": "Ma‘alot"},                   # U+2018
    {"id": "E6", "label": "D`Artagnan"},                # U+0060 backtick
    {"id": "E7", "label": "L´Oréal"},                   # U+00B4 acute (NFKC: a space and a combining acute)
    {"id": "E8", "label": "Ｏ＇Neill"},                  # U+FF07 full-width (NFKC: "'")
    {"id": "E9", "label": "Sana′a"},                    # U+2032 prime
    {"id": "E10", "label": "Hawaiʻi"},                  # U+02BB ʻokina
    {"id": "E11", "label": "Zürich"},                   # no apostrophe
]

# (the text, the mention alias_mentions finds, the entity): each written with another apostrophe than its alias
CASES = [
    ("I met O’Brien there.", "O’Brien", "E1"),
    ("I met Oʼbrien there.", "Oʼbrien", "E1"),
    ("I met O`Brien there.", "O`Brien", "E1"),          # ASCII text: the backtick is folded too
    ("I met O´Brien there.", "O´Brien", "E1"),
    ("We ate at McDonald's today.", "McDonald's", "E2"),
    ("We ate at McDonald‘s today.", "McDonald‘s", "E2"),
    ("She flew to Côte d’Ivoire.", "Côte d’Ivoire", "E3"),
    ("She flew to Cote d’Ivoire.", "Cote d’Ivoire", "E3"),  # accents and apostrophe folded together
    ("They left Kam'ianets-Podilskyi.", "Kam'ianets-Podilskyi", "E4"),
    ("They left Kam’ianets-Podilskyi.", "Kam’ianets-Podilskyi", "E4"),
    ("A town: Ma'alot today.", "Ma'alot", "E5"),
    ("A town: Ma’alot today.", "Ma’alot", "E5"),
    ("He read D'Artagnan yesterday.", "D'Artagnan", "E6"),
    ("He read D’Artagnan yesterday.", "D’Artagnan", "E6"),
    ("Shares of L'Oreal rose.", "L'Oreal", "E7"),
    ("Shares of L’Oréal rose.", "L’Oréal", "E7"),
    ("Mr O’Neill said so.", "O’Neill", "E8"),
    ("Mr O'Neill said so.", "O'Neill", "E8"),
    ("Flights to Sana'a resumed.", "Sana'a", "E9"),
    ("Flights to Sana’a resumed.", "Sana’a", "E9"),
    ("Welcome to Hawai'i now.", "Hawai'i", "E10"),
    ("Welcome to Hawai‘i now.", "Hawai‘i", "E10"),
    ("The winner was O’Brien.", "O’Brien", "E1"),        # a period ends the name's token: tried without it
    ("It rained in Hawai'i.", "Hawai'i", "E10"),
]


@pytest.fixture()
def kb_dir(tmp_path: Path) -> Path:
    return build_records_kb(RECORDS, tmp_path)


def _mentions(kb: Path, *texts: str, **params) -> list[list[str]]:
    from tests.link.conftest import alias_mention_texts

    return alias_mention_texts(kb, *texts, **params)


def _candidates(kb: Path, texts: list[tuple[str, str]]) -> list[list[str]]:
    """The candidate ids ``alias_candidates`` (default options) gives each (text, mention) given as a mention."""
    from glinker.pipeline import Pipeline, loads_spec
    from glinker.types import Document

    p = Pipeline(loads_spec(f"name: t\nkb: {kb}\nstages:\n  m: {{type: given_mentions}}\n"
                            "  a: {type: alias_candidates, input: m}\n"))
    docs = [Document(id=str(i), text=t, meta={"mentions": [{"start": t.index(m), "end": t.index(m) + len(m)}]})
            for i, (t, m) in enumerate(texts)]
    return [[c.entity_id for c in row[0].candidates] for row in p(docs)]


@pytest.mark.parametrize("key,expect,v2", [
    ("o’brien", "o'brien", "o’brien"), ("o‘brien", "o'brien", "o‘brien"), ("oʼbrien", "o'brien", "oʼbrien"),
    ("o`brien", "o'brien", "o`brien"), (normalize_alias("O´Brien"), "o'brien", "o brien"),
    (normalize_alias("´s-Hertogenbosch"), "'s-hertogenbosch", "\u0301s-hertogenbosch"),
    ("o′brien", "o'brien", "o′brien"), ("hawaiʻi", "hawai'i", "hawaiʻi"), (normalize_alias("Ｏ＇Neill"), "o'neill", "o'neill"),
    ("côte d’ivoire", "cote d'ivoire", "cote d’ivoire"), ("москва’s", "москва's", "москва’s"),
    ("o'brien", "o'brien", "o'brien"), ("zürich", "zurich", "zurich"), ("αθήνα", "αθηνα", "αθηνα"),
    ("new york", "new york", "new york"),
])
def test_the_fold_reads_every_apostrophe_as_one(key, expect, v2):
    assert FOLD_VERSION == 5  # (5: characters that do not show dropped too, tests/kb/test_s38_*)
    assert fold_key(key) == expect and fold_key(expect) == expect
    assert fold_key_v2(key) == v2  # the fold of version 2 is kept, as it was, for the stores folded with it


def test_alias_mentions_match_another_apostrophe(kb_dir: Path) -> None:
    got = _mentions(kb_dir, *[t for t, _, _ in CASES])
    assert got == [[m] for _, m, _ in CASES]
    # no fold, no match across apostrophe kinds (the same text, each written as its alias is, still matches)
    assert _mentions(kb_dir, "I met O’Brien there.", "I met O'Brien there.", fold_accents=False) == [[], ["O'Brien"]]


def test_alias_candidates_find_another_apostrophe(kb_dir: Path) -> None:
    assert _candidates(kb_dir, [(t, m) for t, m, _ in CASES]) == [[e] for _, _, e in CASES]


def _fold_as_version_2(kb_dir: Path) -> None:
    """Make the store what glinker wrote with fold version 2: folds = 2, keys folded with fold_key_v2."""
    refold_store(kb_dir, fold_key_v2, "2")


V2_QUERIES = ["o’brien", "mcdonald's", "cote d’ivoire", "cote d'ivoire", "zurich", "l oreal", "hawai'i"]
# what a version 2 store answered: accents folded, apostrophes not ("L´Oréal" lost its acute-apostrophe)
V2 = {"cote d'ivoire": ["E3"], "zurich": ["E11"], "l oreal": ["E7"]}
V3 = {"o’brien": ["E1"], "mcdonald's": ["E2"], "cote d’ivoire": ["E3"], "cote d'ivoire": ["E3"], "zurich": ["E11"],
      "hawai'i": ["E10"]}


def test_a_version_2_store_answers_as_before_says_so_and_is_folded_again_by_an_update(kb_dir, caplog) -> None:
    _fold_as_version_2(kb_dir)
    with caplog.at_level(logging.WARNING), KB.open(kb_dir) as kb:  # read-only: its own fold, same answers
        assert kb.store.fold_version == 2 and kb.store.has_folds
        assert kb.store.lookup_folded(V2_QUERIES) == V2
        assert kb.store.labels_of_alias("o’brien") == []
    assert "apostrophe look-alikes" in caplog.text and "glinker kb add" in caplog.text
    assert "Greek accents" not in caplog.text  # what it misses, and only that
    # the alias stages answer as they did with fold version 2 (measured with it): only the full-width "＇", which
    # NFKC made "'" already, matches across apostrophe kinds
    as_before = [["O'Neill"] if m == "O'Neill" else [] for _, m, _ in CASES]
    assert _mentions(kb_dir, *[t for t, _, _ in CASES]) == as_before
    assert _candidates(kb_dir, [(t, m) for t, m, _ in CASES]) == [["E8"] if x else [] for x in as_before]
    assert _mentions(kb_dir, "Cote d'Ivoire", "Zurich") == [["Cote d'Ivoire"], ["Zurich"]]
    caplog.clear()
    with caplog.at_level(logging.WARNING), KB.open(kb_dir, writable=True) as kb:  # kb add, link-stats...
        assert kb.store.fold_version == FOLD_VERSION and kb.store.migrated
        assert kb.store.lookup_folded(V2_QUERIES) == V3
    assert "folding the alias keys again" in caplog.text and "apostrophe" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING), KB.open(kb_dir) as kb:
        assert kb.store.get_meta("folds") == FOLD_VERSION and kb.store.lookup_folded(V2_QUERIES) == V3
        assert kb.store.labels_of_alias("o’brien") == ["O'Brien"]
    assert "folded before" not in caplog.text
    assert _mentions(kb_dir, *[t for t, _, _ in CASES]) == [[m] for _, m, _ in CASES]


@pytest.mark.parametrize("label", ["Zürich", "Αθήνα", "東京", "Rock-n-Roll"])
def test_a_version_2_store_without_such_keys_opens_without_a_warning(tmp_path: Path, caplog, label) -> None:
    kb_dir = build_records_kb([{"id": "E1", "label": label}], tmp_path)
    _fold_as_version_2(kb_dir)
    with caplog.at_level(logging.WARNING), KB.open(kb_dir) as kb:
        assert kb.store.fold_version == 2 < FOLD_VERSION  # older than the fold of today, and nothing to say
    assert "folded before" not in caplog.text
    with KB.open(kb_dir, writable=True) as kb:  # an update still brings it to the fold of today
        assert kb.store.fold_version == FOLD_VERSION and kb.store.get_meta("folds") == FOLD_VERSION


# a key with an apostrophe of any kind: one with "'" is found in text with "’" only with fold version 3 too
@pytest.mark.parametrize("label", ["O’Brien", "Oʼbrien", "O`Brien", "O´Brien", "´s-Hertogenbosch", "O′Brien",
                                   "O‘Brien", "Hawaiʻi", "O'Brien", "Rock 'n' Roll",
                                   "Tverʹ", "Tver‛", "Saꞌa", "Sa՚a"])  # (and the rarer look-alikes)
def test_a_version_2_store_with_such_keys_warns(tmp_path: Path, caplog, label) -> None:
    kb_dir = build_records_kb([{"id": "E1", "label": "Zürich"}, {"id": "E2", "label": label}], tmp_path)
    _fold_as_version_2(kb_dir)
    with caplog.at_level(logging.WARNING), KB.open(kb_dir) as kb:
        assert kb.store.fold_version == 2
    assert "folded before apostrophe look-alikes" in caplog.text


def test_kb_info_names_the_fold_version(kb_dir) -> None:
    def folds() -> str:
        return kb_info_line(kb_dir, "folds")

    assert "version 5" in folds() and "apostrophe" in folds() and "geresh" in folds() and "soft hyphens" in folds()
    _fold_as_version_2(kb_dir)
    assert "version 2 of 5" in folds() and "not apostrophe" in folds() and "refolds" in folds()


def test_a_version_1_store_names_each_fold_it_misses(tmp_path: Path, caplog) -> None:
    from glinker.kb.store import fold_accents

    kb_dir = build_records_kb([{"id": "E1", "label": "Αθήνα"}, {"id": "E2", "label": "O’Brien"}], tmp_path)
    refold_store(kb_dir, fold_accents, "true")  # what glinker wrote before fold versions
    with caplog.at_level(logging.WARNING), KB.open(kb_dir) as kb:
        assert kb.store.fold_version == 1 and kb.store.lookup_folded(["o'brien", "αθηνα"]) == {}
    assert "folded before Greek accents and Arabic harakat" in caplog.text
    assert "and before apostrophe look-alikes" in caplog.text
    with KB.open(kb_dir, writable=True) as kb:
        assert kb.store.fold_version == FOLD_VERSION
        assert kb.store.lookup_folded(["o'brien", "αθηνα"]) == {"o'brien": ["E2"], "αθηνα": ["E1"]}


def test_a_sentence_final_name_without_its_accents(tmp_path: Path) -> None:
    """"Málaga." at the end of a sentence, for a KB that only knows "Malaga": the folded first word without its
    period starts a key (it was looked up with the period only)."""
    from tests.link.conftest import alias_mention_texts

    kb = build_records_kb([{"id": "M1", "label": "Malaga"}, {"id": "M2", "label": "Sao Paulo"}], tmp_path)
    assert alias_mention_texts(kb, "He flew to Málaga.", "Then São Paulo.") == [["Málaga"], ["São Paulo"]]


# ---- a Greek tonos written apart, and the rarer apostrophe look-alikes ------------------------------------------

TONOS_APART = ["\u0384", "\u1ffd", "\u00b4"]  # Greek tonos, Greek oxia, the acute: NFKC writes each " \u0301"


@pytest.mark.parametrize("tonos", TONOS_APART, ids=["tonos", "oxia", "acute"])
def test_a_tonos_written_apart_before_a_greek_vowel_is_its_accent(tonos) -> None:
    """Legacy Greek writes the accent of a capital apart, before it ("΄Αγιος" for "Άγιος"): that is no apostrophe
    (fold version 2 matched "Ο ΄Αγιος Νικόλαος" with Ο Άγιος Νικόλαος; v3 read an apostrophe there). Before anything
    else than a Greek vowel (the tonos is only ever on a vowel) it stands for an apostrophe."""
    def fold(name: str) -> str:
        key = fold_key(normalize_alias(name))
        assert fold_key(key) == key
        return key

    assert fold(f"Ο {tonos}Αγιος Νικόλαος") == fold("Ο Άγιος Νικόλαος") == "ο αγιοσ νικολαοσ"
    assert fold(f"{tonos}Ολυμπος") == fold("Όλυμπος") == "ολυμποσ"  # at the start of a key too
    assert fold(f"Ο {tonos}Ηλιος") == "ο ηλιοσ" and fold(f"{tonos}ώρα") == "ωρα"
    assert fold(f"Ο{tonos}Μπράιαν") == fold("Ο'Μπράιαν") == "ο'μπραιαν"  # before a consonant: an apostrophe
    assert fold(f"σ{tonos} αγαπώ") == fold("Σ’ αγαπώ") == "σ' αγαπω"  # the Greek elision
    assert fold(f"O{tonos}Brien") == "o'brien" and fold(f"{tonos}s-Hertogenbosch") == "'s-hertogenbosch"
    assert fold(f"L{tonos}Oréal") == "l'oreal"


def test_alias_stages_match_a_greek_name_with_its_tonos_written_apart(tmp_path: Path) -> None:
    kb = build_records_kb([{"id": "G1", "label": "Ο Άγιος Νικόλαος"}, {"id": "G2", "label": "Όλυμπος"},
                           {"id": "G3", "label": "Ο'Μπράιαν"}], tmp_path)
    texts = [("Πήγαμε στον Ο ΄Αγιος Νικόλαος χθες.", "Ο ΄Αγιος Νικόλαος", "G1"),
             ("Πήγαμε στον Ο \u1ffdΑγιος Νικόλαος χθες.", "Ο \u1ffdΑγιος Νικόλαος", "G1"),
             ("Ο ΄Ολυμπος είναι ψηλός.", "΄Ολυμπος", "G2"),
             ("Ήρθε ο Ο΄Μπράιαν.", "Ο΄Μπράιαν", "G3")]
    assert _mentions(kb, *[t for t, _, _ in texts]) == [[m] for _, m, _ in texts]
    assert _candidates(kb, [(t, m) for t, m, _ in texts]) == [[e] for _, _, e in texts]


@pytest.mark.parametrize("apostrophe,name", [
    ("\u201b", "single high-reversed-9 quotation mark"),
    ("\u02b9", "modifier letter prime: Russian soft sign in transliteration, Greek numeral sign by NFKC"),
    ("\ua78c", "Latin saltillo"), ("\ua78b", "Latin capital saltillo (case-folded to the small one)"),
    ("\u055a", "Armenian apostrophe"), ("\u0374", "Greek numeral sign (NFKC: modifier letter prime)"),
])
def test_the_rarer_apostrophe_look_alikes_are_folded(apostrophe, name) -> None:
    assert fold_key(normalize_alias(f"Tver{apostrophe}")) == "tver'", name
    assert fold_key(normalize_alias(f"Sa{apostrophe}a")) == "sa'a", name


def test_the_hebrew_geresh_and_gershayim_are_read_as_the_keyboards_write_them() -> None:
    """Fold version 4: ׳ and ״, which Hebrew typed on a keyboard writes ' and " (ג׳ is "j"; ארה״ב "U.S."), fold to
    them; a version 3 store keeps its own fold (fold_key_v3: no Hebrew marks folded)."""
    from glinker.kb.store import fold_key_v3

    key = normalize_alias("ג׳ורג׳ בוש")
    assert fold_key(key) == "ג'ורג' בוש" and fold_key_v3(key) == key
    assert fold_key(normalize_alias("ארה״ב")) == 'ארה"ב' == fold_key('ארה"ב')


def test_hebrew_names_match_with_either_mark(tmp_path: Path) -> None:
    kb = build_records_kb([{"id": "H1", "label": "ארה״ב"}, {"id": "H2", "label": 'צה"ל'},
                           {"id": "H3", "label": "ג׳ורג׳ בוש"}], tmp_path)
    got = _mentions(kb, 'ארה"ב אמרה', "ארה״ב אמרה", 'צה"ל אמר', "צה״ל אמר", "ג'ורג' בוש אמר", "ג׳ורג׳ בוש אמר")
    assert got == [['ארה"ב'], ["ארה״ב"], ['צה"ל'], ["צה״ל"], ["ג'ורג' בוש"], ["ג׳ורג׳ בוש"]]
    # a store folded with version 3 answers as it did (no match across the marks), says what it misses, and an
    # update folds it again
    from glinker.kb.store import fold_key_v3

    refold_store(kb, fold_key_v3, "3")
    with KB.open(kb) as k:
        assert k.store.fold_version == 3
    assert _mentions(kb, 'ארה"ב אמרה', "ג'ורג' בוש אמר") == [[], []]
    assert "geresh" in kb_info_line(kb, "folds") and "version 3 of 5" in kb_info_line(kb, "folds")
    with KB.open(kb, writable=True) as k:
        assert k.store.fold_version == FOLD_VERSION and k.store.migrated
    assert _mentions(kb, 'ארה"ב אמרה') == [['ארה"ב']]


def test_alias_stages_match_the_rarer_look_alikes(tmp_path: Path) -> None:
    kb = build_records_kb([{"id": "R1", "label": "Tver'"}, {"id": "A1", "label": "Sa'a"},
                           {"id": "K1", "label": "Κωνσταντίνος Β'"}], tmp_path)
    texts = [("He lived in Tverʹ then.", "Tverʹ", "R1"), ("He lived in Tver‛ then.", "Tver‛", "R1"),
             ("Visit Saꞌa now.", "Saꞌa", "A1"), ("Visit Sa՚a now.", "Sa՚a", "A1"),
             ("Ο Κωνσταντίνος Βʹ ήρθε.", "Κωνσταντίνος Βʹ", "K1")]
    assert _mentions(kb, *[t for t, _, _ in texts]) == [[m] for _, m, _ in texts]
    assert _candidates(kb, [(t, m) for t, m, _ in texts]) == [[e] for _, _, e in texts]


def test_kb_info_names_exactly_the_apostrophes_it_folds(kb_dir) -> None:
    """`kb info` lists the characters read as an apostrophe: each of them, and only those, is."""
    import re
    import unicodedata

    line = kb_info_line(kb_dir, "folds")
    listed = re.search(r"with any of (.*?) for an apostrophe", line)
    assert listed, line
    chars = listed.group(1).split(" ")
    assert all(fold_key(normalize_alias(f"o{c}brien")) == "o'brien" for c in chars), chars
    # and no other character of the Basic Multilingual Plane is, but those that NFKC and case folding make one of
    # them (the Greek tonos and oxia written apart: the acute; the capital saltillo, the full-width grave...), and
    # the Hebrew geresh, which the line names apart
    from glinker.kb.store import HEBREW_MARKS

    assert "geresh" in line
    keys = {normalize_alias(c) for c in chars} | {c for c, to in HEBREW_MARKS.items() if to == "'"}
    folded = {c for c in map(chr, range(0x20, 0x10000)) if normalize_alias(c) not in keys
              and fold_key(normalize_alias(f"o{c}brien")) == "o'brien"}
    assert folded == set(), sorted(f"U+{ord(c):04X} {unicodedata.name(c, '?')}" for c in folded)


@pytest.mark.parametrize("mark", ["'", *APOSTROPHES], ids=lambda c: f"U+{ord(c):04X}")
def test_the_stale_fold_query_finds_a_key_with_each_apostrophe(mark) -> None:
    """The query that tells a v2 store holds keys fold 3 reads otherwise is generated from APOSTROPHES: a key with
    any of them (as NFKC writes it into a key) is found, one with none is not."""
    import sqlite3

    from glinker.kb.store import _FOLD_NEWS

    _what, query, args = _FOLD_NEWS[3]
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE aliases (rid INTEGER, norm TEXT)")
    db.executemany("INSERT INTO aliases VALUES (?, ?)", [(1, "zurich"), (2, "kamianets")])
    assert db.execute(query, args).fetchone() is None
    db.execute("INSERT INTO aliases VALUES (3, ?)", (normalize_alias(f"o{mark}brien"),))
    assert db.execute(query, args).fetchone() is not None
