"""`glinker eval el --pipeline`: a linking pipeline's output scored against AIDA-format gold."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from glinker.cli import app

GOLD = [
    {"id": "a1", "text": "Paris is in France, not in Zorblax.",
     "mentions": [{"start": 0, "end": 5, "mention": "Paris", "wikipedia_title": "Paris", "wikidata_qid": "Q90"},
                  {"start": 12, "end": 18, "mention": "France", "wikipedia_title": "France", "wikidata_qid": "Q142"},
                  {"start": 27, "end": 34, "mention": "Zorblax"}]},
    {"id": "a2", "text": "Steve Jobs met Paris, Texas.",
     "mentions": [{"start": 0, "end": 10, "mention": "Steve Jobs", "wikipedia_title": "Steve_Jobs",
                   "wikidata_qid": "Q19837"},
                  {"start": 15, "end": 27, "mention": "Paris, Texas", "wikipedia_title": "Paris,_Texas",
                   "wikidata_qid": "Q830149"}]},
]


def test_eval_el_runs_a_pipeline(tmp_path, tiny_model, tiny_kb):
    data = tmp_path / "gold.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in GOLD))
    for name, mentions in (("e2e", "alias_mentions"), ("ed", "given_mentions")):
        p = tmp_path / f"{name}.yaml"
        p.write_text(f"name: {name}\nkb: {tiny_kb}\nstages:\n  m: {{type: {mentions}}}\n"
                     "  a: {type: alias_candidates, input: m}\n"
                     "  r: {type: rescore, input: a, weights: {popularity: 1.0}}\n"
                     "  links: {type: select, input: r}\n")
    ids = tmp_path / "ids.txt"
    ids.write_text("Q90\nQ142\nQ19837\n")
    r = CliRunner().invoke(app, ["eval", "el", "-p", str(tmp_path / "e2e.yaml"), "--data", str(data),
                                 "--kb-ids", str(ids)])
    assert r.exit_code == 0, r.output
    # alias mentions find Paris, France, Steve Jobs, "Paris, Texas" (longest); all four are linked correctly
    assert r.output.strip().splitlines()[-1] == "el_f1=1.0000 ed_acc=1.0000 kb_coverage=0.7500"
    r = CliRunner().invoke(app, ["eval", "el", "-p", str(tmp_path / "ed.yaml"), "--data", str(data)])
    assert r.exit_code == 0, r.output
    assert "NIL accuracy         1.0000  (1/1)" in r.output
    assert r.output.strip().splitlines()[-1] == "el_f1=1.0000 ed_acc=1.0000 kb_coverage=n/a"


def test_gold_mention_twin_keeps_step_with_the_shipped_pipeline():
    """ED accuracy is reported for pipelines/wikidata.yaml through its gold-mention twin: same candidate stages,
    weights and NIL threshold, so a re-tuned shipped pipeline cannot leave the twin measuring something else."""
    from glinker.pipeline.spec import load_spec

    root = Path(__file__).resolve().parents[2]
    shipped = load_spec(root / "pipelines" / "wikidata.yaml").stages
    twin = load_spec(root / "tests" / "link" / "eval_pipelines" / "wikidata_gold_mentions.yaml").stages
    for name in ("by_alias", "by_vector", "rescored", "links"):
        assert twin[name].type == shipped[name].type and twin[name].params == shipped[name].params, name
    assert {n for n, s in shipped.items() if s.type.endswith("_candidates")} == \
        {n for n, s in twin.items() if s.type.endswith("_candidates")}


def test_several_files_score_as_one_set_and_repeated_ids_are_refused(tmp_path, tiny_model, tiny_kb):
    """Separately numbered files (the ELEVANT OKE train splits both start at id 0) score as one set with
    `--data A --data B`; concatenated into one file, the repeated ids are an error naming the line, not documents
    silently merged."""
    a, b, both = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "both.jsonl"
    a.write_text(json.dumps({**GOLD[0], "id": "0"}) + "\n")
    b.write_text(json.dumps({**GOLD[1], "id": "0"}) + "\n")
    both.write_text(a.read_text() + b.read_text())
    p = tmp_path / "e2e.yaml"
    p.write_text(f"name: e2e\nkb: {tiny_kb}\nstages:\n  m: {{type: alias_mentions}}\n"
                 "  a: {type: alias_candidates, input: m}\n"
                 "  r: {type: rescore, input: a, weights: {popularity: 1.0}}\n"
                 "  links: {type: select, input: r}\n")
    save = tmp_path / "saved.jsonl"
    r = CliRunner().invoke(app, ["eval", "el", "-p", str(p), "--data", str(a), "--data", str(b), "--save", str(save)])
    assert r.exit_code == 0, r.output
    assert "InKB gold mentions   4" in r.output and "documents            2" in r.output
    assert r.output.strip().splitlines()[-1].startswith("el_f1=1.0000")
    assert [json.loads(x)["id"] for x in save.read_text().splitlines()] == ["a:0", "b:0"]
    r = CliRunner().invoke(app, ["eval", "el", "-p", str(p), "--data", str(both)])
    assert r.exit_code != 0
    flat = " ".join(r.output.split())
    assert "occurs twice" in flat and "both.jsonl:2" in flat.replace(" ", "") and "--data A --data B" in flat
