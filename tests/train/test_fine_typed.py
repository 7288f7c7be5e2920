"""scripts/make_fine_typed.py: KB fine types on the gold spans of coarse NER sets, checked against the coarse tag."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_fine_typed.py"


def _conllu(sentences: list[list[tuple[str, str]]]) -> str:
    return "\n".join("".join(f"{i}\t{w}\t{t}\n" for i, (w, t) in enumerate(s)) for s in sentences)


def _setup(tmp_path: Path, wikineural: list, wikiann: list, eval_sentence: str, ents: list[dict]) -> list[str]:
    """A shared-data folder with the two coarse sets, one ``ner/eval`` sentence and a KB entity file; the script's
    command line (without the options under test)."""
    data = tmp_path / "data"
    for name in ("wikineural_en", "wikiann_en"):
        (data / "ner" / "train" / name).mkdir(parents=True)
    (data / "kb").mkdir()
    ev = data / "ner" / "eval" / "Wiki"
    ev.mkdir(parents=True)
    (ev / "test.json").write_text(json.dumps([{"sentence": eval_sentence, "entities": []}]))
    (ev / "labels.json").write_text(json.dumps(["city"]))
    (data / "ner" / "train" / "wikineural_en" / "val.conllu").write_text(_conllu(wikineural))
    (data / "ner" / "train" / "wikiann_en" / "train.conllu").write_text(_conllu(wikiann))
    (tmp_path / "ents.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ents))
    return [sys.executable, str(SCRIPT), "--data", str(data), "--entities", str(tmp_path / "ents.jsonl")]


def test_fine_types_replace_coarse_tags_only_where_they_agree(tmp_path):
    s1 = [("Danube", "B-LOC"), ("beat", "O"), ("Real", "B-ORG"), ("Madrid", "I-ORG"), ("and", "O"),
          ("John", "B-PER"), ("Doe", "I-PER"), ("at", "O"), ("Euro", "B-MISC"), ("96", "I-MISC")]
    s2 = [("Paris", "B-PER"), ("Hilton", "I-PER"), ("met", "O"), ("Danube", "B-LOC"), ("fans", "O")]
    s3 = [("Paris", "B-PER"), ("smiled", "O"), ("at", "O"), ("Paris", "B-LOC"), (".", "O")]
    s4 = [("Paris", "B-LOC"), ("is", "O"), ("big", "O")]     # counts for "city" on LOC, then dropped
    s5 = [("Nobody", "B-PER"), ("came", "O")]                 # no fine type: the sentence is not written
    ents = [{"id": "Q1653", "label": "Danube", "description": "river in Central Europe"},
            {"id": "Q8682", "label": "Real Madrid", "description": "association football club in Madrid, Spain"},
            {"id": "Q90", "label": "Paris", "description": "capital city of France"}]
    # the eval sentence shares its words with s4: s4 is dropped
    base = _setup(tmp_path, [s1, s2, s3], [s4, s5], "Paris is big", ents)
    out = tmp_path / "out" / "train.json"
    r = subprocess.run(base + ["--out", str(out), "--min-count", "1", "--purity", "0.6"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())
    assert "1 dropped for a 13-gram shared with ner/eval" in r.stdout
    assert [ex["tokenized_text"][0] for ex in got] == ["Danube", "Paris", "Paris"]
    assert got[0]["ner"] == [[0, 0, "river"], [2, 3, "association football club"], [5, 6, "person"]]
    assert got[0]["ignore"] == [[8, 9]]                       # MISC: neither positive nor negative
    # "city" is on LOC 2 times of 3 (>= 0.6): kept on the LOC span, never put on the PER one
    assert got[2]["ner"] == [[0, 0, "person"], [3, 3, "city"]]
    r = subprocess.run(base + ["--out", str(out), "--min-count", "1", "--purity", "0.8"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr   # 2/3 < 0.8: "city" is a name clash too often to be trusted
    assert all("city" not in [t for *_, t in ex["ner"]] for ex in json.loads(out.read_text()))


def test_resolve_gives_homonyms_the_type_their_coarse_tag_allows(tmp_path):
    s1 = [("Lyon", "B-LOC"), ("is", "O"), ("old", "O")]
    s2 = [("Boston", "B-LOC"), ("is", "O"), ("cold", "O")]          # Boston: a city and a rock band
    s3 = [("Boston", "B-ORG"), ("played", "O"), ("Kansas", "B-ORG")]  # ORG: neither type agrees
    s4 = [("Kansas", "B-ORG"), ("toured", "O")]
    ents = [{"id": "Q456", "label": "Lyon", "description": "city in France"},
            {"id": "Q100", "label": "Boston", "description": "city in Massachusetts"},
            {"id": "Q1", "label": "Boston", "description": "American rock band"},
            {"id": "Q2", "label": "Kansas", "description": "American rock band"}]
    out = tmp_path / "out.json"
    base = _setup(tmp_path, [s1, s2, s3], [s4], "unrelated words only", ents) + ["--out", str(out), "--min-count", "1"]
    r = subprocess.run(base, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert [ex["ner"] for ex in json.loads(out.read_text())] == [
        [[0, 0, "city"]], [[0, 0, "organization"], [2, 2, "rock band"]], [[0, 0, "rock band"]]]
    r = subprocess.run(base + ["--resolve"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = [ex["ner"] for ex in json.loads(out.read_text())]
    assert got[1] == [[0, 0, "city"]]                                # LOC: only "city" agrees
    assert got[2] == [[0, 0, "rock band"], [2, 2, "rock band"]]      # ORG: only "rock band" agrees
