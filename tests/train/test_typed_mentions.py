"""scripts/make_typed_mentions.py: fine types from entity descriptions, AIDA mentions -> GLiNER JSON windows."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_typed_mentions.py"


@pytest.fixture(scope="module")
def mod():
    spec = importlib.util.spec_from_file_location("make_typed_mentions", SCRIPT)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


@pytest.mark.parametrize("desc,expected", [
    ("English footballer", "footballer"),
    ("city in Germany", "city"),
    ("association football club in Madrid, Spain", "association football club"),
    ("44th president of the United States", "president"),
    ("American politician (born 1961)", "politician"),
    ("20th-century French novelist", "novelist"),
    ("Prime Minister of Israel (1996-1999)", "prime minister"),
    ("Wikimedia disambiguation page", None),
    ("family name", None),
    ("", None),
    ("very long winding descriptive text here", None),
    ("1968 film by Stanley Kubrick", "film"),                        # leading year dropped
    ("language spoken primarily in Mexico", "language"),            # a participle ends the noun phrase
    ("landmass comprising the continents of Europe and Asia", "landmass"),
    ("darkest color", "color"),                                     # superlative modifier
    ("branch of biology", None),                                    # too general a head
    ("federal republic in Central Europe", "country"),              # synonym of a common type
    ("capital of France", "city"),
])
def test_type_phrase(mod, desc, expected):
    assert mod.type_phrase(desc) == expected


def test_windows_from_aida(tmp_path):
    text = "Beckham joined Madrid . Germany beat Italy . German fans cheered ."
    def span(s):
        i = text.index(s + " ")  # "German " is the adjective, not the start of "Germany"
        return i, i + len(s)
    mentions = []
    for s, qid, cls in (("Beckham", "Q1", "PER"), ("Madrid", "Q2", "ORG"), ("Germany", "Q3", "LOC"),
                        ("Italy", "Q4", "LOC"), ("German", "Q3", "MISC")):
        a, b = span(s)
        mentions.append({"start": a, "end": b, "mention": s, "ner_type": cls, "wikipedia_title": s,
                         "wikidata_qid": qid})
    (tmp_path / "aida.jsonl").write_text(json.dumps({"id": "d1", "text": text, "mentions": mentions}) + "\n")
    ents = [{"id": "Q1", "label": "David Beckham", "description": "English footballer"},
            {"id": "Q2", "label": "Real Madrid", "description": "association football club in Madrid, Spain"},
            {"id": "Q3", "label": "Germany", "description": "country in Central Europe"},
            {"id": "Q4", "label": "Italy", "description": "country in Southern Europe"}]
    (tmp_path / "ents.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ents))
    out = tmp_path / "out" / "train.json"
    r = subprocess.run([sys.executable, str(SCRIPT), "--el", str(tmp_path / "aida.jsonl"), "--entities",
                        str(tmp_path / "ents.jsonl"), "--out", str(out), "--min-count", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert len(data) == 1
    words = data[0]["tokenized_text"]
    got = {(" ".join(words[s:e + 1]), t) for s, e, t in data[0]["ner"]}
    # "German" (MISC, not the entity's name) is an adjective, not a country: left out
    assert got == {("Beckham", "footballer"), ("Madrid", "association football club"), ("Germany", "country"),
                   ("Italy", "country")}
    assert [words[s:e + 1] for s, e in data[0]["ignore"]] == [["German"]]  # out of the loss, not a negative
