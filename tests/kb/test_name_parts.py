"""Name parts: people found by their last name alone ("Wiesel" -> Elie Wiesel), through a real KB build, the real
SQLite store and the alias-candidate stage."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest
from .conftest import build_records_kb

from glinker.kb import KB
from glinker.kb.adapters import load_adapter
from glinker.kb.build import build_kb
from glinker.kb.kb import STORE, current_generation
from glinker.kb.store import name_part, written_as_name
from glinker.types import Entity

RECORDS = [
    {"id": "Q18391", "label": "Elie Wiesel", "description": "writer", "types": ["Q5"], "popularity": 50},
    {"id": "Q9", "label": "Shlomo Wiesel", "description": "shopkeeper", "popularity": 1},  # no types: by its label
    {"id": "Q60", "label": "New York City", "description": "city", "types": ["Q515"]},  # typed, not a human
    {"id": "Q1", "label": "Wiesel", "description": "a surname"},  # one word: it is the alias "wiesel"
    {"id": "Q2", "label": "Ray Houghton (footballer)", "description": "Irish footballer", "types": ["Q5"]},
]


@pytest.mark.parametrize("label,types,expect", [
    ("Elie Wiesel", ["Q5"], "wiesel"), ("Elie Wiesel", [], "wiesel"), ("Elie Wiesel", ["Q515"], None),
    ("Ray Houghton (footballer)", ["Q5"], "houghton"), ("Wiesel", ["Q5"], None), ("Jo Li", ["Q5"], None),
    ("University of Pisa", [], None), ("Louis XIV", ["Q5"], None), ("A B C D E", ["Q5"], None),
    ("José María Aznar López", ["Q5"], "lópez"),
])
def test_name_part(label, types, expect):
    assert name_part(Entity(id="Q1", label=label, types=types)) == expect


def test_written_as_name():
    assert written_as_name("Elie Wiesel") and written_as_name("J. R. R. Tolkien") and written_as_name("AC/DC 2")
    assert not written_as_name("University of Pisa") and not written_as_name("the Beatles")


@pytest.fixture()
def kb_dir(tmp_path: Path) -> Path:
    src = tmp_path / "kb.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    build_kb(load_adapter("jsonl", str(src)), tmp_path / "kb", None)
    return tmp_path / "kb"


def test_built_updated_and_removed_with_the_entities(kb_dir: Path) -> None:
    with KB.open(kb_dir, writable=True) as kb:
        assert kb.store.lookup_name_parts(["wiesel", "houghton", "city", "nobody"]) == {
            "wiesel": ["Q18391", "Q9"], "houghton": ["Q2"]}  # most popular first
        assert kb.store.name_part_count() == 3
        kb.upsert([Entity(id="Q9", label="Shlomo Wiesel-Feig", types=["Q5"])], None)  # not alphabetic now
        kb.remove(["Q18391"])
        assert kb.store.lookup_name_parts(["wiesel"]) == {}
        kb.upsert([Entity(id="Q18391", label="Elie Wiesel", types=["Q5"])], None)
        assert kb.store.lookup_name_parts(["wiesel"]) == {"wiesel": ["Q18391"]}


def test_a_kb_built_before_name_parts_opens_without_them(kb_dir: Path) -> None:
    db = sqlite3.connect(current_generation(kb_dir) / STORE)
    db.execute("DROP TABLE name_parts")
    db.commit()
    db.close()
    with KB.open(kb_dir) as kb:
        assert not kb.store.has_name_parts
        assert kb.store.lookup_name_parts(["wiesel"]) == {} and kb.store.name_part_count() == 0


STAGES = """stages:
  m: {type: given_mentions}
  a: {type: alias_candidates, input: m, name_parts: ON}
"""


def _candidates(model: Path, kb: Path, text: str, *spans, on: str = "true", label: str | None = None):
    from glinker.pipeline import Pipeline, loads_spec
    from glinker.types import Document

    p = Pipeline(loads_spec(f"name: t\nmodel: {model}\nkb: {kb}\n" + STAGES.replace("ON", on)))
    doc = Document(id="d", text=text, meta={"mentions": [{"start": s, "end": e, "label": label} for s, e in spans]})
    [row] = p([doc])
    return [[(c.entity_id, c.scores["alias"]) for c in mc.candidates] for mc in row]


def test_alias_candidates_look_up_last_names_only_when_nothing_else_matches(kb_dir: Path, tmp_path: Path) -> None:
    from glinker.model.testing import build_tiny_checkpoint

    model = build_tiny_checkpoint(tmp_path / "m", text_encoder="bert")
    text = "Houghton scored. Wiesel wrote. Elie Wiesel spoke. houghton"
    got = _candidates(model, kb_dir, text, (0, 8), (17, 23), (0, 8))
    assert got[0] == [("Q2", 0.8)]
    assert got[1] == [("Q1", 1.0)]  # "Wiesel" is an alias: no last-name look-up
    assert _candidates(model, kb_dir, text, (0, 8), on="false") == [[]]
    assert _candidates(model, kb_dir, text, (50, 58)) == [[]]  # not written as a name
    assert _candidates(model, kb_dir, text, (0, 8), label="location") == [[]]  # only people by default
    assert _candidates(model, kb_dir, text, (0, 8), label="person") == [[("Q2", 0.8)]]


def test_name_parts_on_with_a_kb_without_them_warns(kb_dir: Path, tmp_path: Path, caplog) -> None:
    from glinker.model.testing import build_tiny_checkpoint

    db = sqlite3.connect(current_generation(kb_dir) / STORE)
    db.execute("DELETE FROM name_parts")
    db.commit()
    db.close()
    model = build_tiny_checkpoint(tmp_path / "m", text_encoder="bert")
    with caplog.at_level(logging.WARNING):
        assert _candidates(model, kb_dir, "Houghton scored.", (0, 8)) == [[]]
    assert "has no name parts" in caplog.text and "glinker kb build" in caplog.text


@pytest.mark.parametrize("key,expect", [
    ("zürich", "zurich"), ("são paulo", "sao paulo"), ("łódź", "lodz"), ("ørsted", "orsted"), ("paris", "paris"),
    ("málaga", "malaga"), ("москва", "москва"), ("йошкар-ола", "йошкар-ола"), ("東京", "東京"), ("ﬁfa", "ﬁfa"),
])
def test_fold_accents(key, expect):
    from glinker.kb.store import fold_accents

    assert fold_accents(key) == expect


FOLD_RECORDS = [
    {"id": "Q72", "label": "Zürich", "description": "city", "popularity": 9},
    {"id": "Q73", "label": "Zürich Airport", "description": "airport"},
    {"id": "Q174", "label": "São Paulo", "description": "city"},
    {"id": "Q5", "label": "Bjork", "description": "a surname"},  # written without accent in the KB
    {"id": "Q6", "label": "Malaga", "aliases": ["Málaga"], "description": "city"},
    {"id": "Q7", "label": "Muller", "description": "a surname"},
    {"id": "Q8", "label": "café", "description": "a coffee house"},  # a concept: lower-case label
    {"id": "Q9", "label": "Zurich's", "description": "a bar"},
]


@pytest.fixture()
def fold_kb(tmp_path: Path) -> Path:
    return build_records_kb(FOLD_RECORDS, tmp_path)


def test_names_are_found_without_their_accents_and_kept_with_updates(fold_kb: Path) -> None:
    with KB.open(fold_kb, writable=True) as kb:
        st = kb.store
        assert st.has_folds
        assert st.lookup_folded(["zurich", "sao paulo", "björk", "zurich airport", "malaga", "lyon"]) == {
            "zurich": ["Q72"], "sao paulo": ["Q174"], "björk": ["Q5"], "zurich airport": ["Q73"], "malaga": ["Q6"]}
        assert "zurich" in st.folded_vocab() and "malaga" in st.folded_vocab()
        kb.upsert([Entity(id="Q72", label="Zurich")], None)  # renamed: no accented key left
        kb.remove(["Q174"])
        assert st.lookup_folded(["zurich", "sao paulo"]) == {}
        assert st.lookup_folded(["zürich"]) == {"zürich": ["Q72"]}


def test_a_kb_built_before_folded_keys_gets_them_when_opened_for_an_update(fold_kb: Path) -> None:
    db = sqlite3.connect(current_generation(fold_kb) / STORE)
    db.execute("DELETE FROM meta WHERE key='folds'")
    db.execute("DELETE FROM folded")
    db.commit()
    db.close()
    with KB.open(fold_kb) as kb:  # read-only: none to use
        assert not kb.store.has_folds and kb.store.lookup_folded(["zurich"]) == {}
        assert kb.store.folded_vocab() == []
    with KB.open(fold_kb, writable=True) as kb:  # kb add, link-stats...: added from the aliases, once
        assert kb.store.has_folds and kb.store.lookup_folded(["zurich"]) == {"zurich": ["Q72"]}
    with KB.open(fold_kb) as kb:
        assert kb.store.has_folds and sorted(kb.store.folded_vocab()) == ["cafe", "malaga", "sao paulo", "zurich",
                                                                         "zurich airport"]


def test_alias_stages_match_names_written_without_accents(fold_kb: Path) -> None:
    from glinker.pipeline import Pipeline, loads_spec
    from glinker.types import Document

    def run(fold: str) -> list[tuple[str, list[tuple[str, float]]]]:
        p = Pipeline(loads_spec(f"name: t\nkb: {fold_kb}\nstages:\n"
                                f"  m: {{type: alias_mentions, fold_accents: {fold}}}\n"
                                f"  a: {{type: alias_candidates, input: m, fold_accents: {fold}}}\n"))
        [row] = p([Document(id="d", text="From Zurich Airport to Sao Paulo via Malaga and Málaga.")])
        return [(mc.mention.text, [(c.entity_id, c.scores["alias"]) for c in mc.candidates]) for mc in row]

    assert run("true") == [("Zurich Airport", [("Q73", 0.9)]), ("Sao Paulo", [("Q174", 0.9)]),
                           ("Malaga", [("Q6", 1.0)]), ("Málaga", [("Q6", 0.95)])]  # exact matches score as before
    assert run("false") == [("Malaga", [("Q6", 1.0)]), ("Málaga", [("Q6", 0.95)])]


def test_folding_works_from_the_text_side_keeps_common_nouns_out_and_does_not_depend_on_the_batch(fold_kb):
    from glinker.pipeline import Pipeline, loads_spec
    from glinker.types import Document

    p = Pipeline(loads_spec(f"name: t\nkb: {fold_kb}\nstages:\n  m: {{type: alias_mentions}}\n"
                            "  a: {type: alias_candidates, input: m}\n"))

    def run(*texts):
        return [[(mc.mention.text, [(c.entity_id, c.scores["alias"]) for c in mc.candidates]) for mc in row]
                for row in p([Document(id=str(i), text=t) for i, t in enumerate(texts)])]

    # the text has the accent the KB lacks; a capitalised concept stays out however it is written
    assert run("Thomas Müller met Cafe owners at a CAFE.") == [[("Müller", [("Q7", 0.9)])]]
    alone = run("I drank at Zurich's.")
    assert alone == [[("Zurich's", [("Q9", 1.0)])]]
    assert run("I drank at Zurich's.", "I live in Zurich.")[0] == alone[0]  # batched with a folded "Zurich"
