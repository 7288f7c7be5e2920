"""`glinker eval`: one gold file scores the same as a file or in its folder, --json never replaces an input,
--limit applies to saved predictions, averages say what they cover, per-record label lists, recall@k for links
without candidate lists, and report labels that say what they count."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from glinker.cli import app
from glinker.eval.datasets import NIL, ELDocument, GoldMention, load_ner_datasets
from glinker.eval.el import PredictedLink, evaluate_el
from glinker.eval.ner import PRF, NERReport, NERResult, evaluate_ner, score_predictions_file
from glinker.io import write_jsonl
from glinker.types import Candidate, Link, LinkedDocument, Mention

runner = CliRunner()

SENTS = [
    # "r" at [1, 2] is inside "are": gold off word boundaries (unmatchable in GLiNER's convention)
    {"sentence": "are there any r movies", "entities": [{"name": "r", "type": "rating", "pos": [1, 2]},
                                                        {"name": "r", "type": "rating", "pos": [14, 15]}]},
    {"sentence": "", "entities": []},  # an empty sentence is a sentence of the set
    {"sentence": "Ada Lovelace met Charles Babbage .",
     "entities": [{"name": "Ada Lovelace", "type": "person", "pos": [0, 12]},
                  {"name": "Charles Babbage", "type": "person", "pos": [17, 32]}]},
    {"sentence": "London is big .", "entities": [{"name": "London", "type": "location", "pos": [0, 6]}]},
]


def make_set(root: Path, labels: list[str] | None = ("rating", "person", "location")) -> Path:
    d = root / "movies"
    d.mkdir(parents=True)
    (d / "test.json").write_text(json.dumps(SENTS))
    if labels is not None:
        (d / "labels.json").write_text(json.dumps(list(labels)))
    return d


def oracle_lines(name: str) -> str:
    """Gold as predictions: the off-boundary gold is predicted at its char span too (and cannot match)."""
    return "".join(json.dumps({"dataset": name, "index": i, "text": s["sentence"],
                               "entities": [{"start": e["pos"][0], "end": e["pos"][1], "label": e["type"]}
                                            for e in s["entities"]]}) + "\n" for i, s in enumerate(SENTS))


def run(*args: str):
    return runner.invoke(app, ["eval", *map(str, args)])


def fake_predict(texts, labels):
    return [[{"start": 0, "end": 3, "label": labels[0], "score": 0.9}] if t else [] for t in texts]


# 1. a gold file scores exactly as the same file inside its folder ------------------------------------------


def test_a_benchmark_file_scores_as_its_folder(tmp_path):
    d = make_set(tmp_path / "data")
    (folder,) = load_ner_datasets(d)
    (single,) = load_ner_datasets(d / "test.json")
    assert [e.text for e in single.examples] == [e.text for e in folder.examples] == [s["sentence"] for s in SENTS]
    assert [[(g.start, g.end, g.label) for g in e.spans] for e in single.examples] == \
        [[(g.start, g.end, g.label) for g in e.spans] for e in folder.examples]
    assert single.labels == folder.labels and single.name == folder.name == "movies"  # named as its folder
    preds = tmp_path / "p.jsonl"
    preds.write_text(oracle_lines("movies"))
    a, b = run("ner", "--data", d, "--predictions", preds), run("ner", "--data", d / "test.json", "--predictions", preds)
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    row = next(x for x in a.output.splitlines() if x.startswith("movies"))
    assert row == next(x for x in b.output.splitlines() if x.startswith("movies"))
    assert row.split()[1:4] == ["4", "5", "5"] and "1 gold off word boundaries" in row  # 4 sentences, 5 gold
    assert a.output.splitlines()[-1] == b.output.splitlines()[-1] == "avg_micro_f1=0.8000"
    # --limit picks the same first records either way (the empty sentence included)
    assert [len(x.examples) for x in (load_ner_datasets(d, limit=2)[0], load_ner_datasets(d / "test.json", limit=2)[0])] == [2, 2]


def test_eval_json_without_labels_keeps_every_gold_span(tmp_path):
    """Without labels.json the same file is annotated data prompted with its types, but its gold is untouched."""
    d = make_set(tmp_path / "data", labels=None)
    for src in (d, d / "test.json"):
        (ds,) = load_ner_datasets(src)
        assert len(ds.examples) == 4 and ds.n_entities == 5 and ds.labels == ["rating", "person", "location"]
        assert ds.name == ("movies" if src == d else "test")


@pytest.mark.shared_data
def test_real_benchmark_file_scores_as_its_folder(data):
    f = data / "ner" / "eval" / "mit-movie"
    if not f.is_dir():
        pytest.skip("no mit-movie")
    (a,), (b,) = load_ner_datasets(f), load_ner_datasets(f / "test.json")
    assert (len(a.examples), a.n_entities, a.labels, a.name) == (len(b.examples), b.n_entities, b.labels, b.name)
    assert a.n_entities == 5338


# 2. --json never replaces an input ----------------------------------------------------------------------


def test_json_report_refuses_to_replace_inputs(tmp_path):
    d = make_set(tmp_path / "data")
    preds = tmp_path / "p.jsonl"
    preds.write_text(oracle_lines("movies"))
    before = {p: p.read_bytes() for p in (d / "test.json", d / "labels.json", preds)}
    for data, out, what in [(d, d / "test.json", "is in the evaluation data"),
                            (d, d / "report.json", "is in the evaluation data"),
                            (d / "test.json", d / "test.json", "is in the evaluation data"),
                            (d / "test.json", d / "labels.json", "is in the evaluation data"),
                            (d, preds, "is the --predictions file")]:
        r = run("ner", "--data", data, "--predictions", preds, "--json", out)
        assert r.exit_code == 2 and f"--json {out} {what}" in r.output, r.output
        assert "avg_micro_f1" not in r.output  # refused before any scoring
    assert {p: p.read_bytes() for p in before} == before and not (d / "report.json").exists()
    r = run("ner", "--data", d, "--predictions", preds, "--save-predictions", tmp_path / "again.jsonl")
    assert r.exit_code == 2 and "with --predictions there are none" in r.output  # it would be ignored
    link = tmp_path / "alias.json"  # the same file under another name
    link.symlink_to(d / "test.json")
    r = run("ner", "--data", d / "test.json", "--predictions", preds, "--json", link)
    assert r.exit_code == 2 and "is in the evaluation data" in r.output


def test_el_json_report_refuses_to_replace_inputs_and_is_written_atomically(tmp_path, monkeypatch):
    gold = tmp_path / "gold.jsonl"
    text = "Obama met Merkel ."
    gold.write_text(json.dumps({"id": "a", "text": text, "mentions": [
        {"start": 0, "end": 5, "mention": "Obama", "wikidata_qid": "Q76"}]}) + "\n")
    pred = tmp_path / "links.jsonl"
    write_jsonl(pred, [LinkedDocument(id="a", text=text, links=[
        Link(mention=Mention(start=0, end=5, text="Obama"), entity_id="Q76")])])
    ids = tmp_path / "ids.txt"
    ids.write_text("Q76\n")
    before = {p: p.read_bytes() for p in (gold, pred, ids)}
    for out, what in [(gold, "is in the evaluation data"), (pred, "is the --predictions file"),
                      (ids, "is also --kb-ids")]:
        r = run("el", "--data", gold, "--predictions", pred, "--kb-ids", ids, "--json", out)
        assert r.exit_code == 2 and f"--json {out} {what}" in r.output, r.output
    assert {p: p.read_bytes() for p in before} == before
    import glinker.cli.eval as cli_eval

    replaced = []
    real = os.replace
    monkeypatch.setattr(cli_eval.os, "replace", lambda a, b: (replaced.append((a, b)), real(a, b)))
    out = tmp_path / "report.json"
    out.write_text("old")
    r = run("el", "--data", gold, "--predictions", pred, "--json", out)
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["el_f1"] == 1.0 and json.loads(out.read_text())["run"]["predictions"] == str(pred)
    assert len(replaced) == 1 and Path(replaced[0][1]) == out.resolve()  # a temp file renamed over the report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gold.jsonl", "ids.txt", "links.jsonl", "report.json"]
    # a named pipe (as /dev/stdout may be) is written into, never replaced by a file
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    r = run("el", "--data", gold, "--predictions", pred, "--json", fifo)
    reader.join(10)
    assert r.exit_code == 0, r.output
    assert json.loads(got[0])["el_f1"] == 1.0 and fifo.is_fifo()


# 3. what each average covers; --limit marks every average; the header ---------------------------------------


def test_averages_say_what_they_cover_and_limit_marks_them():
    names = ["CrossNER_AI", "CrossNER_literature", "CrossNER_music", "CrossNER_politics", "CrossNER_science",
             "mit-movie", "mit-restaurant", "conll2003"]
    rep = NERReport([NERResult(n, PRF(tp=1, fp=0, fn=1)) for n in names])
    t = rep.table()
    assert "zero-shot avg: the 7 published sets" in t and "average of the 8 sets run (the last line)" in t
    assert "not comparable" not in t
    rep.limit = 5
    avg_rows = [x for x in rep.table().splitlines() if x.startswith(("zero-shot avg", "average"))]
    assert len(avg_rows) == 2
    assert all(x.endswith("(on --limit 5 sentences per set: not comparable to published figures)") for x in avg_rows)
    assert rep.last_line() == "avg_micro_f1=0.6667 zero_shot_avg=0.6667" and rep.as_dict()["limit"] == 5


def test_cli_header_names_model_threshold_and_data_and_limit(tmp_path, monkeypatch):
    import glinker.cli.eval as cli_eval

    monkeypatch.setattr(cli_eval, "_load_predict", lambda *a, **k: fake_predict)
    d = make_set(tmp_path / "data")
    r = run("ner", "--data", d, "--model", "my-model", "--threshold", "0.3", "--limit", "3")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "model: my-model  threshold: 0.3"
    assert lines[1].startswith(f"data: {d}") and "limit: first 3 sentences per set" in lines[1]
    assert "average of the 1 set run (the last line)" in r.output and "not comparable to published figures" in r.output
    assert lines[-1].startswith("avg_micro_f1=")
    r = run("ner", "--data", d, "--model", "my-model", "--sweep", "0.3,0.5", "--limit", "2")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("model: my-model  thresholds: 0.3, 0.5\n")
    assert "on --limit 2 sentences per set: not comparable to published figures" in r.output
    assert "| average of the 1 set |" in r.output
    assert r.output.splitlines()[-1] == "best_threshold=0.5 avg_micro_f1=0.0000"


# 4. --limit applies to saved predictions as to a model run ------------------------------------------------------


def test_limit_is_honoured_with_saved_predictions(tmp_path, monkeypatch):
    import glinker.cli.eval as cli_eval

    monkeypatch.setattr(cli_eval, "_load_predict", lambda *a, **k: fake_predict)
    d = make_set(tmp_path / "data")
    full = tmp_path / "full.jsonl"
    r = run("ner", "--data", d, "--save-predictions", full)  # predictions for all 4 sentences
    assert r.exit_code == 0, r.output
    limited = run("ner", "--data", d, "--limit", "3")
    rescored = run("ner", "--data", d, "--predictions", full, "--limit", "3")
    assert rescored.exit_code == 0, rescored.output
    row = next(x for x in rescored.output.splitlines() if x.startswith("movies"))
    assert row.split()[1] == "3"  # the first 3 sentences only
    assert row == next(x for x in limited.output.splitlines() if x.startswith("movies"))
    assert rescored.output.splitlines()[-1] == limited.output.splitlines()[-1]
    assert "on --limit 3 sentences per set" in rescored.output
    assert score_predictions_file(full, d, limit=3).results[0].sentences == 3


# 5. a record's own label list is what it is prompted with ------------------------------------------------------


def test_records_with_their_own_label_list_are_prompted_with_it(tmp_path):
    f = tmp_path / "mine.json"
    f.write_text(json.dumps([
        {"tokenized_text": ["Tim", "Cook", "leads", "Apple", "."], "ner": [[0, 1, "person"], [3, 3, "organization"]],
         "label": ["person", "organization", "disease"]},
        {"tokenized_text": ["Aspirin", "treats", "headache", "."], "ner": [[0, 0, "drug"], [2, 2, "disease"]],
         "label": ["Drug", "disease"]},
        {"tokenized_text": ["Paris", "is", "big", "."], "ner": [[0, 0, "location"]]}]))
    (ds,) = load_ner_datasets(f)
    assert ds.labels == ["person", "organization", "disease", "Drug", "drug", "location"]  # every type named
    calls = {}

    def predict(texts, labels):
        for t in texts:
            calls[t] = labels
        return [[] for _ in texts]

    rep = evaluate_ner(predict, [ds])
    assert calls["Tim Cook leads Apple ."] == ["person", "organization", "disease"]
    assert calls["Aspirin treats headache ."] == ["drug", "disease"]  # lower-cased, as every prompt
    assert calls["Paris is big ."] == list(dict.fromkeys(x.lower() for x in ds.labels))  # the union, each type once
    assert rep.results[0].gold_types_not_prompted == 0
    (tmp_path / "labels.json").write_text('["location", "person"]')  # labels.json: for records without a list
    (ds,) = load_ner_datasets(f)
    calls.clear()
    rep = evaluate_ner(predict, [ds])
    assert calls["Paris is big ."] == ["location", "person"] and calls["Tim Cook leads Apple ."][-1] == "disease"


def test_benchmark_folders_are_prompted_with_labels_json_in_one_list(tmp_path):
    d = make_set(tmp_path / "data")
    seen = []
    evaluate_ner(lambda texts, labels: (seen.append((len(texts), labels)), [[] for _ in texts])[1],
                 load_ner_datasets(d))
    assert seen == [(4, ["rating", "person", "location"])]


# 6. recall@k with links that carry no candidate list --------------------------------------------------------------

TEXT = "Obama met Merkel in Berlin ."
OBAMA, MERKEL, BERLIN = (0, 5), (10, 16), (20, 26)


def gold_doc() -> ELDocument:
    return ELDocument("d", TEXT, [GoldMention(*OBAMA, "Obama", "Q76"), GoldMention(*MERKEL, "Merkel", "Q567"),
                                  GoldMention(*BERLIN, "Berlin", "Q64")], (0, len(TEXT)))


def test_a_link_without_candidates_is_its_own_single_candidate():
    preds = [PredictedLink("d", *OBAMA, "Q76", ["Q76", "Q1"]),   # with candidates: hit at 1
             PredictedLink("d", *MERKEL, "Q567"),                 # linked right, no candidate list
             PredictedLink("d", *BERLIN, NIL)]                    # NIL without candidates: a miss
    r = evaluate_el([gold_doc()], preds, ks=(1, 5))
    assert r.ed_acc == pytest.approx(2 / 3)
    assert r.recall_at(1) == pytest.approx(2 / 3) and r.recall_at(1) >= r.ed_acc
    assert r.recall_link_as_candidate == 1 and r.as_dict()["recall_link_as_candidate"] == 1
    assert "1 links without a candidate list count as their own single candidate" in r.summary()
    assert "over the 3 InKB gold mentions" in r.summary()
    # a wrong link without candidates is a wrong single candidate
    r = evaluate_el([gold_doc()], [preds[0], PredictedLink("d", *MERKEL, "Q1")], ks=(1, 5))
    assert r.recall_at(5) == pytest.approx(1 / 3)
    assert evaluate_el([gold_doc()], [PredictedLink("d", *OBAMA, "Q76")]).recall_at(1) is None  # no lists at all


def test_cli_recall_counts_links_saved_without_candidates(tmp_path):
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "d", "text": TEXT, "mentions": [
        {"start": a, "end": b, "mention": TEXT[a:b], "wikidata_qid": q}
        for (a, b), q in ((OBAMA, "Q76"), (MERKEL, "Q567"), (BERLIN, "Q64"))]}) + "\n")
    pred = tmp_path / "links.jsonl"
    write_jsonl(pred, [LinkedDocument(id="d", text=TEXT, links=[
        Link(mention=Mention(start=0, end=5, text="Obama"), entity_id="Q76",
             candidates=[Candidate(entity_id="Q76", score=0.9)]),
        Link(mention=Mention(start=10, end=16, text="Merkel"), entity_id="Q567"),
        Link(mention=Mention(start=20, end=26, text="Berlin"))])])
    r = run("el", "--data", gold, "--predictions", pred, "--ks", "1")
    assert r.exit_code == 0, r.output
    assert "candidate recall@k   @1=0.6667" in r.output
    assert r.output.splitlines()[-1] == "el_f1=0.8000 ed_acc=0.6667 kb_coverage=n/a"


# 7. report labels say what they count ----------------------------------------------------------------------------


def test_el_summary_labels_predictions_and_the_lower_bound():
    preds = [PredictedLink("d", *OBAMA, "Q76"), PredictedLink("d", *MERKEL, NIL), PredictedLink("d", 0, 9, "Q5")]
    r = evaluate_el([gold_doc()], preds, mentions="end-to-end")
    s = r.summary()
    assert "predictions          3  (2 linked, 1 NIL: only linked ones are scored" in s
    assert r.linking.tp + r.linking.fp == 2  # the precision denominator: the linked ones
    ed = next(x for x in s.splitlines() if x.startswith("disambiguation acc"))
    assert "end to end a lower bound" in ed
    gold_run = evaluate_el([gold_doc()], preds, mentions="gold").summary()
    assert "lower bound" not in next(x for x in gold_run.splitlines() if x.startswith("disambiguation acc"))
    unknown = evaluate_el([gold_doc()], preds).summary()  # saved links: said when gold spans lack a prediction
    assert "a lower bound if the links were made end to end: the 1 gold spans" in unknown
    assert r.last_line() == "el_f1=0.4000 ed_acc=0.3333 kb_coverage=n/a"
    assert r.as_dict()["predictions_nil"] == 1 and r.as_dict()["predictions_linked"] == 2


class _Stage:
    def __init__(self, t):
        self.type = t


class _Pipe:
    """A linking pipeline stand-in: links every gold mention to Q76, with a candidate list."""

    name = "fake"
    output_name = "links"

    def __init__(self, types):
        self.spec = type("Spec", (), {"stages": {f"s{i}": _Stage(t) for i, t in enumerate(types)}})()

    def close(self):
        pass

    @contextlib.contextmanager
    def gc_frozen(self):
        yield self

    def run(self, docs, batch_size=None):
        docs = list(docs)
        out = [LinkedDocument(id=d.id, text=d.text, links=[
            Link(mention=Mention(start=m["start"], end=m["end"], text=d.text[m["start"]:m["end"]]), entity_id="Q76",
                 candidates=[Candidate(entity_id="Q76")]) for m in d.meta["mentions"]][:1]) for d in docs]
        yield type("Batch", (), {"documents": docs, "output": out})()


def test_el_cli_says_how_a_pipeline_found_its_mentions(tmp_path, monkeypatch):
    import glinker
    import glinker.cli.eval as cli_eval

    assert cli_eval._mentions_of(_Pipe(["given_mentions", "select"])) == "gold"
    assert cli_eval._mentions_of(_Pipe(["alias_mentions", "select"])) == "end-to-end"
    assert cli_eval._mentions_of(object()) == "end-to-end"
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "d", "text": TEXT, "mentions": [
        {"start": a, "end": b, "mention": TEXT[a:b], "wikidata_qid": q}
        for (a, b), q in ((OBAMA, "Q76"), (MERKEL, "Q567"))]}) + "\n")
    for types, lower in ((["alias_mentions", "select"], True), (["given_mentions", "select"], False)):
        monkeypatch.setattr(glinker, "load_pipeline", lambda path, _t=types, **kw: _Pipe(_t))
        r = run("el", "--data", gold, "--pipeline", "x.yaml")
        assert r.exit_code == 0, r.output
        assert r.output.splitlines()[0].startswith("pipeline: x.yaml")
        ed = next(x for x in r.output.splitlines() if x.startswith("disambiguation acc"))
        assert ("end to end a lower bound" in ed) == lower, ed
        assert r.output.splitlines()[-1] == "el_f1=0.6667 ed_acc=0.5000 kb_coverage=n/a"


def test_ner_gold_notes_count_distinct_gold_like_the_gold_column():
    from glinker.eval.datasets import GoldSpan, NERDataset, NERExample
    from glinker.eval.ner import score_dataset

    text = "Paris is nice"
    ds = NERDataset("x", ["person"], [NERExample(text, [GoldSpan(0, 5, "city"), GoldSpan(0, 5, "City")])])
    r = score_dataset(ds, [[{"start": 0, "end": 3, "label": "city"}] * 2])  # "Par": inside a word, twice
    assert r.gold == 1 and r.gold_types_not_prompted == 1  # one distinct (span, type), as GLiNER's sets count
    assert r.predicted == 1 and r.unaligned_pred == 1
