"""Alias folding of Greek accents and Arabic harakat (fold version 2), stores folded by an older glinker (read as
they were, with a warning; folded again by an update), and last names of people in scripts without letter case."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from .conftest import build_records_kb, kb_info_line, refold_store

from glinker.kb import KB
from glinker.kb.adapters import load_adapter
from glinker.kb.build import build_kb
from glinker.kb.store import FOLD_VERSION, fold_accents, fold_key, name_part, normalize_alias, written_as_name
from glinker.types import Entity

RECORDS = [
    {"id": "E6", "label": "Αθήνα", "aliases": ["Οδυσσέας Ελύτης"]},
    {"id": "E7", "label": "مُحَمَّد"},
    {"id": "E8", "label": "القاهرة"},
    {"id": "E15", "label": "Zürich"},
    {"id": "E30", "label": "عبد الفتاح السيسي", "types": ["Q5"]},
    {"id": "E31", "label": "नरेंद्र मोदी", "types": ["Q5"]},
    {"id": "E32", "label": "جامعة القاهرة"},  # untyped, without letter case: cannot show it is a name
]


@pytest.mark.parametrize("key,expect", [
    ("zürich", "zurich"), ("łódź", "lodz"), ("αθήνα", "αθηνα"), (normalize_alias("ΑΘΗΝΑ"), "αθηνα"),
    ("ὁ ἀθηναῖος", "ο αθηναιος"), ("ϊ", "ι"), ("مُحَمَّد", "محمد"), ("الْقَاهِرَة", "القاهرة"), ("هٰذا", "هذا"),
    ("أحمد", "أحمد"), ("москва", "москва"), ("й", "й"), ("東京", "東京"), ("म्यूनिख", "म्यूनिख"),
])
def test_fold_key(key, expect):
    assert fold_key(key) == expect
    assert fold_key(expect) == expect


def test_the_old_fold_is_kept_for_older_stores():
    assert fold_accents("αθήνα") == "αθήνα" and fold_accents("مُحَمَّد") == "مُحَمَّد" and fold_accents("zürich") == "zurich"


@pytest.fixture()
def kb_dir(tmp_path: Path) -> Path:
    return build_records_kb(RECORDS, tmp_path)


QUERIES = ["αθηνα", normalize_alias("ΑΘΗΝΑ"), "محمد", "مُحَمَّد", "zurich", normalize_alias("ΟΔΥΣΣΕΑΣ ΕΛΥΤΗΣ")]
NEW = {"αθηνα": ["E6"], "محمد": ["E7"], "مُحَمَّد": ["E7"], "zurich": ["E15"], "οδυσσεασ ελυτησ": ["E6"]}
OLD = {"zurich": ["E15"]}


def _mentions(kb: Path, text: str) -> list[str]:
    from glinker.pipeline import Pipeline, loads_spec

    [ms] = Pipeline(loads_spec(f"name: t\nkb: {kb}\nstages:\n  m: {{type: alias_mentions}}\n"))([text])
    return [m.text for m in ms]


TEXT = "ΑΘΗΝΑ, محمد, Zurich"


def test_a_new_store_folds_greek_and_arabic(kb_dir: Path) -> None:
    with KB.open(kb_dir) as kb:
        assert kb.store.fold_version == FOLD_VERSION == 5 and kb.store.get_meta("folds") == 5
        assert kb.store.lookup_folded(QUERIES) == NEW
    assert _mentions(kb_dir, TEXT) == ["ΑΘΗΝΑ", "محمد", "Zurich"]


def _fold_as_before(kb_dir: Path) -> None:
    """Make the store what glinker wrote before fold versions: folds = true, keys folded with fold_accents."""
    refold_store(kb_dir, fold_accents, "true")


def test_an_older_store_answers_as_before_says_so_and_is_folded_again_by_an_update(kb_dir, caplog) -> None:
    _fold_as_before(kb_dir)
    with caplog.at_level(logging.WARNING), KB.open(kb_dir) as kb:  # read-only: its own fold, same answers
        assert kb.store.fold_version == 1 and kb.store.has_folds
        assert kb.store.lookup_folded(QUERIES) == OLD
        assert sorted(kb.store.folded_vocab()) == ["zurich"]
    assert "folded before Greek accents and Arabic harakat" in caplog.text and "glinker kb add" in caplog.text
    assert _mentions(kb_dir, TEXT) == ["Zurich"]
    caplog.clear()
    with caplog.at_level(logging.WARNING), KB.open(kb_dir, writable=True) as kb:  # kb add, link-stats...
        assert kb.store.fold_version == FOLD_VERSION and kb.store.migrated
        assert kb.store.lookup_folded(QUERIES) == NEW
    assert "folding the alias keys again" in caplog.text
    with KB.open(kb_dir) as kb:
        assert kb.store.get_meta("folds") == FOLD_VERSION and kb.store.lookup_folded(QUERIES) == NEW
    assert _mentions(kb_dir, TEXT) == ["ΑΘΗΝΑ", "محمد", "Zurich"]


def test_an_older_latin_only_store_opens_without_a_warning(tmp_path: Path, caplog) -> None:
    src = tmp_path / "kb.jsonl"
    src.write_text(json.dumps({"id": "E15", "label": "Zürich"}) + "\n", encoding="utf-8")
    build_kb(load_adapter("jsonl", str(src)), tmp_path / "kb", None)
    _fold_as_before(tmp_path / "kb")
    with caplog.at_level(logging.WARNING), KB.open(tmp_path / "kb") as kb:
        assert kb.store.fold_version == 1 and kb.store.lookup_folded(["zurich"]) == OLD
    assert "folded before" not in caplog.text


@pytest.mark.parametrize("label,types,expect", [
    ("عبد الفتاح السيسي", ["Q5"], "السيسي"), ("नरेंद्र मोदी", ["Q5"], "मोदी"), ("Μελίνα Μερκούρη", ["Q5"], "μερκούρη"),
    ("جامعة القاهرة", [], None),  # no letter case and no type: a phrase as much as a name
    ("नरेंद्र मोदी", ["Q515"], None), ("安倍 晋三", ["Q5"], None),  # family name first: no last name
    ("Elie Wiesel", [], "wiesel"), ("University of Pisa", [], None),
])
def test_names_in_scripts_without_letter_case(label, types, expect):
    got = name_part(Entity(id="x", label=label, types=types))
    assert got == (normalize_alias(expect) if expect else None)


def test_written_as_name_takes_scripts_without_letter_case():
    assert written_as_name("عبد الفتاح السيسي") and written_as_name("नरेंद्र मोदी") and written_as_name("Elie Wiesel")
    assert not written_as_name("University of Pisa") and not written_as_name("Cairo and the Nile")


def test_people_found_by_a_last_name_in_arabic(kb_dir: Path, tmp_path: Path) -> None:
    from glinker.model.testing import build_tiny_checkpoint
    from glinker.pipeline import Pipeline, loads_spec
    from glinker.types import Document

    with KB.open(kb_dir) as kb:
        assert kb.store.lookup_name_parts(["السيسي", "मोदी", "القاهرة"]) == {"السيسي": ["E30"], "मोदी": ["E31"]}
    model = build_tiny_checkpoint(tmp_path / "m", text_encoder="bert")
    p = Pipeline(loads_spec(f"name: t\nmodel: {model}\nkb: {kb_dir}\nstages:\n  m: {{type: given_mentions}}\n"
                            "  a: {type: alias_candidates, input: m, name_parts: true}\n"))
    text = "التقى السيسي"
    [row] = p([Document(id="d", text=text, meta={"mentions": [{"start": 6, "end": 12}]})])
    assert [c.entity_id for c in row[0].candidates] == ["E30"]
    text = "मोदी ने कहा"  # vowel signs are marks: the one-word mention is still a name
    [row] = p([Document(id="h", text=text, meta={"mentions": [{"start": 0, "end": 4}]})])
    assert [c.entity_id for c in row[0].candidates] == ["E31"]


def test_kb_info_names_the_fold_version(kb_dir) -> None:
    def folds() -> str:
        return kb_info_line(kb_dir, "folds")

    assert "version 5" in folds() and "Greek" in folds()
    _fold_as_before(kb_dir)
    assert "version 1" in folds() and "refolds" in folds()
