"""`glinker eval ner|el`: help, scoring saved predictions, the missing-model error, pipelines."""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

import glinker
from glinker.cli import app
from glinker.io import read_done_ids, write_jsonl
from glinker.types import Link, LinkedDocument, Mention

runner = CliRunner()


@pytest.mark.parametrize("args", [["eval", "--help"], ["eval", "ner", "--help"], ["eval", "el", "--help"]])
def test_help(args):
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "Usage" in r.output


def make_ner_data(root):
    d = root / "tiny"
    d.mkdir(parents=True)
    recs = [{"sentence": "Ada Lovelace met Charles Babbage .",
             "entities": [{"name": "Ada Lovelace", "type": "person", "pos": [0, 12]},
                          {"name": "Charles Babbage", "type": "person", "pos": [17, 32]}]}]
    (d / "test.json").write_text(json.dumps(recs))
    (d / "labels.json").write_text('["person"]')
    return d


def test_ner_scores_saved_predictions(tmp_path):
    make_ner_data(tmp_path / "data")
    pred = tmp_path / "p.jsonl"
    pred.write_text(json.dumps({"dataset": "tiny", "index": 0, "text": "Ada Lovelace met Charles Babbage .",
                                "entities": [{"start": 0, "end": 12, "label": "person"}]}) + "\n")
    out = tmp_path / "r.json"
    r = runner.invoke(app, ["eval", "ner", "--data", str(tmp_path / "data"), "--predictions", str(pred),
                            "--json", str(out)])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert lines[-1] == "avg_micro_f1=0.6667"
    assert any(line.startswith("tiny") and "100.0%" in line and "50.0%" in line for line in lines)
    assert json.loads(out.read_text())["datasets"][0]["tp"] == 1


def test_ner_missing_model_is_a_clear_error(tmp_path):
    make_ner_data(tmp_path / "data")
    r = runner.invoke(app, ["eval", "ner", "--data", str(tmp_path / "data"), "--model", str(tmp_path / "nope")])
    assert r.exit_code == 2
    assert "E400" in r.output and "fix:" in r.output


def test_ner_default_model_unavailable_says_what_to_pass(tmp_path, monkeypatch):
    """Whether or not the default model ships yet, its absence must produce a clear error."""
    from glinker.errors import ModelError
    from glinker.model import biencoder

    def missing(path, **kw):
        raise ModelError(f"checkpoint folder not found: {path}", where=str(path))

    monkeypatch.setattr(biencoder.BiEncoder, "from_pretrained", staticmethod(missing))
    make_ner_data(tmp_path / "data")
    r = runner.invoke(app, ["eval", "ner", "--data", str(tmp_path / "data")])
    assert r.exit_code == 2
    assert "default model 'glinker-bi-minilm' is not available" in r.output and "--model" in r.output


def test_ner_bad_data_folder(tmp_path):
    r = runner.invoke(app, ["eval", "ner", "--data", str(tmp_path), "--predictions", str(tmp_path / "x")])
    assert r.exit_code == 2 and "E600" in r.output


TEXT = "Obama met Merkel in Berlin ."


def make_el_data(tmp_path):
    f = tmp_path / "gold.jsonl"
    docs = [{"id": "a", "text": TEXT, "mentions": [
        {"start": 0, "end": 5, "mention": "Obama", "wikidata_qid": "Q76", "wikipedia_title": "Barack Obama"},
        {"start": 10, "end": 16, "mention": "Merkel", "wikidata_qid": "Q567", "wikipedia_title": "Angela Merkel"},
        {"start": 20, "end": 26, "mention": "Berlin", "wikidata_qid": None, "wikipedia_title": None}]},
        {"id": "b", "text": TEXT, "mentions": []}]
    f.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return f


def linked_a() -> LinkedDocument:
    return LinkedDocument(id="a", text=TEXT, links=[
        Link(mention=Mention(start=0, end=5, text="Obama"), entity_id="Q76", confidence=0.9),
        Link(mention=Mention(start=10, end=16, text="Merkel"), entity_id="Q1", confidence=0.4),
        Link(mention=Mention(start=20, end=26, text="Berlin"))])


def test_el_scores_saved_links(tmp_path):
    gold = make_el_data(tmp_path)
    pred = tmp_path / "links.jsonl"
    write_jsonl(pred, [linked_a()])
    kb = tmp_path / "kb.txt"
    kb.write_text("Q76\n")
    r = runner.invoke(app, ["eval", "el", "--data", str(gold), "--predictions", str(pred), "--kb-ids", str(kb)])
    assert r.exit_code == 0, r.output
    # tp=1 fp=1 fn=1 -> P=R=F1=0.5; ed 1/2; coverage 1/2; Berlin (NIL gold) left NIL
    assert r.output.strip().splitlines()[-1] == "el_f1=0.5000 ed_acc=0.5000 kb_coverage=0.5000"
    assert "NIL accuracy         1.0000" in r.output


def test_el_needs_exactly_one_source(tmp_path):
    gold = make_el_data(tmp_path)
    r = runner.invoke(app, ["eval", "el", "--data", str(gold)])
    assert r.exit_code == 2 and "exactly one" in r.output


def test_el_pipeline_without_links_says_not_available(tmp_path):
    gold = make_el_data(tmp_path)
    y = tmp_path / "p.yaml"
    y.write_text("name: mentions-only\nstages:\n  mentions: {type: given_mentions}\n")
    r = runner.invoke(app, ["eval", "el", "--data", str(gold), "--pipeline", str(y)])
    assert r.exit_code == 2
    assert "not available yet" in r.output and "mentions-only" in r.output


@dataclass
class _Batch:
    documents: list
    output: list


class _FakePipeline:
    """Stands in for a linking pipeline: links every gold mention span to Q76."""

    name = "fake"
    output_name = "links"

    class spec:  # noqa: N801 - what the run record reads
        class header:  # noqa: N801
            model = None
            kb = None

    def __init__(self):
        self.seen: list[str] = []

    def fingerprint(self) -> str:
        return "fake-1"

    def close(self) -> None:
        self.closed = True

    def resource_ident(self) -> dict:
        return {"kb": {}, "model": {}, "where": {}}

    @contextlib.contextmanager
    def gc_frozen(self):
        yield self

    def run(self, docs, batch_size=None):
        docs = list(docs)
        for i in range(0, len(docs), 1):
            batch = docs[i:i + 1]
            self.seen += [d.id for d in batch]
            yield _Batch(batch, [LinkedDocument(id=d.id, text=d.text, links=[
                Link(mention=Mention(start=m["start"], end=m["end"], text=d.text[m["start"]:m["end"]]),
                     entity_id="Q76") for m in d.meta["mentions"]]) for d in batch])


def test_el_pipeline_run_saves_and_resumes(tmp_path, monkeypatch):
    gold = make_el_data(tmp_path)
    fake = _FakePipeline()
    monkeypatch.setattr(glinker, "load_pipeline", lambda path, **kw: fake)
    save = tmp_path / "out.jsonl"
    write_jsonl(save, [LinkedDocument(id="b", text=TEXT)])  # a previous run already did "b"
    r = runner.invoke(app, ["eval", "el", "--data", str(gold), "--pipeline", "x.yaml", "--save", str(save)])
    assert r.exit_code != 0 and "has no run record" in r.output  # (which run wrote it cannot be checked)
    from glinker.cli.link import run_ident

    # the record that run would have written beside it
    save.with_name("out.jsonl.run.json").write_text(json.dumps({**run_ident(fake, None, None), "data": gold},
                                                               default=str))
    r = runner.invoke(app, ["eval", "el", "--data", str(gold), "--pipeline", "x.yaml", "--save", str(save)])
    assert r.exit_code == 0, r.output
    assert fake.seen == ["a"] and read_done_ids(save) == {"a", "b"} and fake.closed  # its stages' close() ran
    # Obama right, Merkel wrong (FN+FP), Berlin is NIL gold linked to Q76 (FP): P=1/3 R=1/2
    assert r.output.strip().splitlines()[-1] == "el_f1=0.4000 ed_acc=0.5000 kb_coverage=n/a"


def test_el_refuses_links_of_other_documents_and_a_stale_save(tmp_path, monkeypatch):
    gold = make_el_data(tmp_path)
    pred = tmp_path / "links.jsonl"
    for docs, msg in [([LinkedDocument(id="x1", text=TEXT)], "none of the 1 linked documents' ids is a gold"),
                      ([LinkedDocument(id="a", text="Another text.")], "has another text in the links"),
                      ([], "no linked documents")]:
        pred.write_text("")
        write_jsonl(pred, docs)
        r = runner.invoke(app, ["eval", "el", "--data", str(gold), "--predictions", str(pred)])
        assert r.exit_code == 2 and msg in r.output, r.output
    fake = _FakePipeline()
    monkeypatch.setattr(glinker, "load_pipeline", lambda path, **kw: fake)
    save = tmp_path / "out.jsonl"
    r = runner.invoke(app, ["eval", "el", "--data", str(gold), "--pipeline", "x.yaml", "--save", str(save)])
    assert r.exit_code == 0, r.output
    other = tmp_path / "other.jsonl"
    other.write_text(gold.read_text().replace("Obama met", "Obama saw"))
    r = runner.invoke(app, ["eval", "el", "--data", str(other), "--pipeline", "x.yaml", "--save", str(save)])
    assert r.exit_code == 2 and "written by another evaluation run" in r.output  # not resumed into the old links
    assert "--save" in r.output and "--output" not in r.output
    # the same data read with a larger --limit: the saved links are kept and the rest linked
    save2 = tmp_path / "limited.jsonl"
    fake.seen.clear()
    r = runner.invoke(app, ["eval", "el", "--data", str(gold), "--pipeline", "x.yaml", "--save", str(save2),
                            "--limit", "1"])
    assert r.exit_code == 0 and fake.seen == ["a"], r.output
    r = runner.invoke(app, ["eval", "el", "--data", str(gold), "--pipeline", "x.yaml", "--save", str(save2)])
    assert r.exit_code == 0 and fake.seen == ["a", "b"] and read_done_ids(save2) == {"a", "b"}, r.output


def test_ner_predictions_are_not_saved_into_the_data(tmp_path):
    ckpt = Path(__file__).resolve().parents[1] / "fixtures" / "gliner" / "deberta"
    d = make_ner_data(tmp_path / "data")
    before = (d / "test.json").read_text()
    r = runner.invoke(app, ["eval", "ner", "--data", str(d), "--model", str(ckpt), "--save-predictions",
                            str(d / "test.json")])
    assert r.exit_code == 2 and "is in the evaluation data" in r.output
    assert (d / "test.json").read_text() == before


def test_ner_runs_a_real_checkpoint(tmp_path):
    """The tiny random gliner checkpoint from the model tests goes through the real predict API."""
    ckpt = Path(__file__).resolve().parents[1] / "fixtures" / "gliner" / "deberta"
    if not (ckpt / "gliner_config.json").is_file():
        pytest.skip("tiny gliner fixture missing")
    make_ner_data(tmp_path / "data")
    saved = tmp_path / "p.jsonl"
    r = runner.invoke(app, ["eval", "ner", "--data", str(tmp_path / "data"), "--model", str(ckpt),
                            "--threshold", "0.5", "--batch-size", "2", "--save-predictions", str(saved)])
    assert r.exit_code == 0, r.output
    last = r.output.strip().splitlines()[-1]
    assert re.fullmatch(r"avg_micro_f1=\d\.\d{4}", last)
    rescored = runner.invoke(app, ["eval", "ner", "--data", str(tmp_path / "data"), "--predictions", str(saved)])
    assert rescored.output.strip().splitlines()[-1] == last


def test_ner_scores_annotated_bio_data(tmp_path):
    """A user's own annotations in CoNLL-2003's layout are an evaluation set: words joined by spaces, prompted
    with every type the data holds (or the folder's labels.json)."""
    d = tmp_path / "mine"
    d.mkdir()
    (d / "test.txt").write_text("-DOCSTART- -X- -X- O\n\nAda NNP B-NP B-PER\nLovelace NNP I-NP I-PER\n"
                                "met VBD B-VP O\nLondon NNP B-NP B-LOC\n. . O O\n", encoding="utf-8")
    (d / "train.txt").write_text("Paris NNP B-NP B-LOC\n", encoding="utf-8")  # another split: not read
    pred = tmp_path / "p.jsonl"
    pred.write_text(json.dumps({"dataset": "mine", "index": 0, "text": "Ada Lovelace met London .",
                                "entities": [{"start": 0, "end": 12, "label": "person"}]}) + "\n")
    r = runner.invoke(app, ["eval", "ner", "--data", str(d), "--predictions", str(pred)])
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1] == "avg_micro_f1=0.6667"
    from glinker.eval.datasets import load_ner_datasets

    (ds,) = load_ner_datasets(d)
    assert ds.labels == ["person", "location"] and [g.text for g in ds.examples[0].spans] == ["Ada Lovelace", "London"]
    r = runner.invoke(app, ["eval", "ner", "--data", str(d / "test.txt"), "--predictions", str(pred)])
    assert r.exit_code == 0 and r.output.strip().splitlines()[-1] == "avg_micro_f1=0.6667"  # the file, named "test"
    (ds,) = load_ner_datasets(d / "train.txt")  # a file is read whatever its name
    assert ds.name == "train" and ds.labels == ["location"]
    (d / "labels.json").write_text('["person", "location", "organization"]')
    assert load_ner_datasets(d)[0].labels == ["person", "location", "organization"]
    r = runner.invoke(app, ["eval", "ner", "--data", str(d), "--split", "dev", "--predictions", str(pred)])
    assert r.exit_code == 2 and "no dev file in" in r.output and "test.txt, train.txt" in r.output


def test_ner_data_not_utf8_or_with_bom_and_empty_predictions(tmp_path):
    d = make_ner_data(tmp_path / "data")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = runner.invoke(app, ["eval", "ner", "--data", str(d), "--predictions", str(empty)])
    assert r.exit_code == 2 and "no prediction lines" in r.output  # not a score of 0
    raw = (d / "test.json").read_bytes()
    (d / "test.json").write_bytes(b"\xef\xbb\xbf" + raw)  # a byte-order mark (Windows editors) is read
    pred = tmp_path / "p.jsonl"
    pred.write_text(json.dumps({"dataset": "tiny", "index": 0, "text": "Ada Lovelace met Charles Babbage .",
                                "entities": []}) + "\n")
    assert runner.invoke(app, ["eval", "ner", "--data", str(d), "--predictions", str(pred)]).exit_code == 0
    (d / "test.json").write_bytes(raw.replace(b"Ada", b"Ad\xe9", 1))  # latin-1
    r = runner.invoke(app, ["eval", "ner", "--data", str(d), "--predictions", str(pred)])
    assert r.exit_code == 2 and f"{d / 'test.json'}:1: not UTF-8" in r.output
    bio = tmp_path / "test.conll"
    bio.write_bytes(b"Paris B-LOC\n\nCaf\xe9 O\n")
    r = runner.invoke(app, ["eval", "ner", "--data", str(bio), "--predictions", str(pred)])
    assert r.exit_code == 2 and f"{bio}:3: not UTF-8" in r.output


def test_threshold_sweep_equals_separate_runs(tmp_path):
    """One pass at the lowest threshold, filtered, gives exactly what a run at each threshold gives."""
    from glinker.eval.datasets import read_ner_dataset
    from glinker.eval.ner import evaluate_ner, sweep_thresholds
    from glinker.model import BiEncoder

    ckpt = Path(__file__).resolve().parents[1] / "fixtures" / "gliner" / "deberta"
    if not (ckpt / "gliner_config.json").is_file():
        pytest.skip("tiny gliner fixture missing")
    d = tmp_path / "data" / "tiny"
    d.mkdir(parents=True)
    recs = [{"sentence": s, "entities": [{"name": s.split()[0], "type": "person", "pos": [0, len(s.split()[0])]}]}
            for s in ["John Smith works at Google in London .", "Paris is the capital of France .",
                      "Apple Inc was founded by Steve Jobs", "the committee met in geneva and berlin ."]]
    (d / "dev.json").write_text(json.dumps(recs))
    (d / "labels.json").write_text('["person", "location", "organization"]')
    m = BiEncoder.from_pretrained(ckpt)
    ds = [read_ner_dataset(d, split="dev")]

    def at(t):
        return lambda texts, labels: m.predict(texts, labels, threshold=t, flat_ner=True)

    scores = sorted(e["score"] for r in at(0.0)([x["sentence"] for x in recs], ["person", "location", "organization"])
                    for e in r)
    ts = [round(scores[len(scores) * q // 4], 4) for q in (1, 2, 3)]
    swept = sweep_thresholds(at(0.0), ds, [0.0, *ts])
    counts = [rep.results[0].predicted for rep in swept.values()]
    assert len(set(counts)) > 1  # the thresholds really change the predictions
    for t, rep in swept.items():
        direct = evaluate_ner(at(t), ds)
        assert rep.results[0].predicted == direct.results[0].predicted
        assert rep.results[0].scores.as_dict() == direct.results[0].scores.as_dict()
    r = runner.invoke(app, ["eval", "ner", "--data", str(tmp_path / "data"), "--model", str(ckpt), "--split", "dev",
                            "--sweep", ",".join(map(str, ts))])
    assert r.exit_code == 0, r.output
    assert re.fullmatch(r"best_threshold=[\d.]+ avg_micro_f1=\d\.\d{4}", r.output.strip().splitlines()[-1])
    r = runner.invoke(app, ["eval", "ner", "--data", str(tmp_path / "data"), "--model", str(ckpt), "--sweep", "0.5"])
    assert r.exit_code != 0 and "test.json" in r.output  # no test split here: the error names the file


def test_el_kb_ids_forms_ks_and_option_combinations(tmp_path):
    from glinker.eval.datasets import _file_tags
    from glinker.eval.el import load_kb_ids
    from glinker.errors import DataError

    f = tmp_path / "ids.json"
    f.write_text('["Q42", "Q64"]')
    assert load_kb_ids(str(f)) == {"Q42", "Q64"}
    f.write_text('{"Q42": "Douglas Adams", "Q64": "Berlin"}')
    assert load_kb_ids(str(f)) == {"Q42", "Q64"}
    f.write_text("[]")
    with pytest.raises(DataError, match="no entity ids"):
        load_kb_ids(str(f))
    assert _file_tags(["a/test.jsonl", "b/test.jsonl"]) == ["a/test", "b/test"]
    gold = make_el_data(tmp_path)
    pred = tmp_path / "links.jsonl"
    write_jsonl(pred, [linked_a()])
    r = runner.invoke(app, ["eval", "el", "--data", str(gold), "--predictions", str(pred), "--ks", "0,5"])
    assert r.exit_code == 2 and "at least 1" in r.output
    r = runner.invoke(app, ["eval", "el", "--data", str(gold), "--predictions", str(pred), "--save", str(tmp_path / "s")])
    assert r.exit_code == 2 and "--save writes the links" in r.output
    d = make_ner_data(tmp_path / "ner")
    r = runner.invoke(app, ["eval", "ner", "--data", str(d), "--sweep", "0.3,0.5", "--json", str(tmp_path / "j.json")])
    assert r.exit_code == 2 and "--json cannot be used with --sweep" in r.output
