"""scripts/make_passages.py: sentences joined into passages keep every entity on the same characters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_passages.py"


def test_passages_keep_entity_offsets_and_drop_short_sentences(tmp_path):
    sents = [
        ("John Smith lives in Paris today .", [("John Smith", "person"), ("Paris", "location")]),
        ("-DOCSTART- x", []),
        ("Google opened an office in Berlin .", [("Google", "organization"), ("Berlin", "location")]),
        ("The weather was cold in Oslo .", [("Oslo", "location"), ("weather", "else")]),
    ]
    data = [{"sentence": s, "entities": [{"name": n, "type": t, "pos": [s.index(n), s.index(n) + len(n)]}
                                         for n, t in ents]} for s, ents in sents]
    src = tmp_path / "conll"
    src.mkdir()
    (src / "dev.json").write_text(json.dumps(data))
    out = subprocess.run([sys.executable, str(SCRIPT), "--data", str(src), "--split", "dev", "--drop-types", "else",
                          "--words", "0,12", "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    sentences = json.loads((tmp_path / "out" / "sentences" / "test.json").read_text())
    passages = json.loads((tmp_path / "out" / "passages-12" / "test.json").read_text())
    assert len(sentences) == 3  # the 2-word line is left out
    assert [len(p["sentence"].split()) for p in passages] == [14, 7]
    for items in (sentences, passages):
        got = [(x["sentence"][e["pos"][0]:e["pos"][1]], e["type"]) for x in items for e in x["entities"]]
        assert got == [("John Smith", "person"), ("Paris", "location"), ("Google", "organization"),
                       ("Berlin", "location"), ("Oslo", "location")]
    assert json.loads((tmp_path / "out" / "passages-12" / "labels.json").read_text()) == [
        "location", "organization", "person"]
