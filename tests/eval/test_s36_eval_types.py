"""`glinker eval ner` reads type names as training does (session 36, a fine-tuning walkthrough): " Location " and
"location" are one type (training merged them, eval prompted and scored both, so the two F1s of one checkpoint
disagreed), and a record asked about no type (``"label": []``, which training accepts) is scored, not a crash."""

from __future__ import annotations

import json

from glinker.eval import datasets as D
from glinker.eval.ner import evaluate_ner, predict_dataset

RECORDS = [
    {"tokenized_text": ["John", "Smith", "lives", "in", "Köln", "."],
     "ner": [[0, 1, "Person"], [4, 4, " Location "]]},
    {"tokenized_text": ["Mary", "works", "at", "ACME", "in", "Berlin", "."],
     "ner": [[0, 0, "person"], [3, 3, "ORGANIZATION"], [5, 5, "location"]]},
    {"tokenized_text": ["Anna", "met", "Bob", "."], "ner": [[0, 0, "person"], [2, 2, "Person "]],
     "label": ["Person "]},
    {"tokenized_text": ["Nothing", "here"], "ner": [], "label": []},
]
GOLD = {"John Smith": "person", "Köln": "location", "Mary": "person", "ACME": "organization", "Berlin": "location",
        "Anna": "person", "Bob": "person"}


def _oracle(calls):
    """A predict callable that finds every gold name whose type it was asked about (by its lower-cased name)."""

    def predict(texts, labels):
        calls.append(list(labels))
        out = []
        for t in texts:
            ents = []
            for name, typ in GOLD.items():
                i = t.find(name)
                if i >= 0 and typ in labels:
                    ents.append({"start": i, "end": i + len(name), "label": typ, "score": 0.9})
            out.append(ents)
        return out

    return predict


def test_type_spellings_are_one_type_and_an_empty_label_list_predicts_nothing(tmp_path):
    f = tmp_path / "mine.json"
    f.write_text(json.dumps(RECORDS), encoding="utf-8")
    (ds,) = D.load_ner_datasets(f)
    calls: list = []
    preds = predict_dataset(_oracle(calls), ds)
    # each type prompted once, cleaned and lower-cased; the record with an empty list is asked nothing
    assert sorted(map(sorted, calls)) == [["location", "organization", "person"], ["person"]]
    assert preds[3] == []
    report = evaluate_ner(_oracle([]), [ds])
    [r] = report.results
    assert (r.scores.tp, r.scores.fp, r.scores.fn) == (7, 0, 0)  # "Köln" typed " Location " matches "location"
    assert r.gold_types_not_prompted == 0  # "Person " prompted, gold "person": one type
    assert r.sentences == 4


def test_the_cli_scores_a_record_with_an_empty_label_list(tmp_path):
    from typer.testing import CliRunner

    from glinker.cli import app
    from glinker.model.testing import build_tiny_checkpoint

    tiny_checkpoint = build_tiny_checkpoint(tmp_path / "tiny", text_encoder="bert")

    f = tmp_path / "mine.json"
    f.write_text(json.dumps(RECORDS), encoding="utf-8")
    r = CliRunner().invoke(app, ["eval", "ner", "-m", str(tiny_checkpoint), "-d", str(f)])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().splitlines()[-1].startswith("avg_micro_f1=")
