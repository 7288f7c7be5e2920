"""scripts/make_wiki_ner.py: KB-typed open-type NER sentences from encyclopedia extracts, decontaminated."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_wiki_ner.py"


@pytest.fixture(scope="module")
def mod():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("make_wiki_ner", SCRIPT)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def test_annotate_longest_match_ambiguity_and_unlabelled_runs(mod):
    names = {("New", "York", "City"): {"city"}, ("New", "York"): {"state"}, ("Paris",): {"city", "person"},
             ("It", "is"): {"city"}, ("Hudson",): {"river"}}
    words = "It is said that New York City lies on the Hudson near Albert Smith and Paris .".split()
    typed, bad = mod.annotate(words, names, None, common={"it", "is"})
    assert typed == [[4, 6, "city"], [10, 10, "river"]]   # the longest name wins; "It is" is two common words
    assert bad == [[12, 13], [15, 15]]                    # "Albert Smith" (no KB name) and "Paris" (two types)
    own = (("photosynthesis",), "process")                # the article's own title matches in any case
    typed, bad = mod.annotate("Photosynthesis feeds plants .".split(), names, own, common=set())
    assert typed == [[0, 0, "process"]] and bad == []


def test_script_keeps_typed_sentences_and_drops_contaminated(tmp_path):
    data = tmp_path / "data"
    (data / "kb" / "vital_articles").mkdir(parents=True)
    extract = ("The Danube flows through Vienna and Budapest before it reaches the Black Sea . "
               "Many visitors from Jorvik and Qwerty Town and Zzyzx Harbour come each year to see Vienna . "
               "The Danube is the second longest river in Europe after the Volga and it is very old indeed .")
    (data / "kb" / "vital_articles" / "summaries_en-us.json").write_text(json.dumps(
        {"Danube": {"title": "Danube", "extract": extract, "description": "River in Europe"}}))
    ev = data / "ner" / "eval" / "Wiki"
    ev.mkdir(parents=True)   # its sentence shares 13 words with the third extract sentence: that one is dropped
    sent = "Scholars say the Danube is the second longest river in Europe after the Volga and it is very old indeed"
    (ev / "test.json").write_text(json.dumps([{"sentence": sent, "entities": []}]))
    (ev / "labels.json").write_text(json.dumps(["river"]))
    ents = [{"id": "Q1653", "label": "Danube", "description": "river in Central Europe", "extra": {"enwiki": "Danube"}},
            {"id": "Q1741", "label": "Vienna", "description": "capital of Austria"},
            {"id": "Q1781", "label": "Budapest", "description": "capital city of Hungary"},
            {"id": "Q166", "label": "Black Sea", "description": "marginal sea of the Atlantic Ocean"},
            {"id": "Q626", "label": "Volga", "description": "river in Russia"}]
    (tmp_path / "ents.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ents))
    out = tmp_path / "out" / "train.json"
    r = subprocess.run([sys.executable, str(SCRIPT), "--data", str(data), "--entities", str(tmp_path / "ents.jsonl"),
                        "--out", str(out), "--min-count", "1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "1 dropped for a 13-gram shared with ner/eval" in r.stdout
    got = {" ".join(ex["tokenized_text"][:2]): ex for ex in json.loads(out.read_text())}
    assert set(got) == {"The Danube", "Many visitors"}
    first = got["The Danube"]
    w = first["tokenized_text"]
    assert {(" ".join(w[s:e + 1]), t) for s, e, t in first["ner"]} == {
        ("Danube", "river"), ("Vienna", "city"), ("Budapest", "city"), ("Black Sea", "marginal sea")}
    assert first["ignore"] == []
    # the unlabelled names of the second sentence are left out of the loss, not taught as negatives
    w = got["Many visitors"]["tokenized_text"]
    assert [" ".join(w[s:e + 1]) for s, e in got["Many visitors"]["ignore"]] == ["Jorvik", "Qwerty Town", "Zzyzx Harbour"]
    r = subprocess.run([sys.executable, str(SCRIPT), "--data", str(data), "--entities", str(tmp_path / "ents.jsonl"),
                        "--out", str(out), "--min-count", "1", "--min-ratio", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert [ex["tokenized_text"][1] for ex in json.loads(out.read_text())] == ["Danube"]
