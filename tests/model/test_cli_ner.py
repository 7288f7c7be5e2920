"""`glinker ner` on text and JSONL input, with labels, a label file and a saved label bank."""

from __future__ import annotations

import json

from _conformance import FIXTURES
from typer.testing import CliRunner

from glinker.cli import app
from glinker.model import BiEncoder

CKPT = str(FIXTURES / "modernbert")
runner = CliRunner()


def test_ner_help():
    r = runner.invoke(app, ["ner", "--help"])
    assert r.exit_code == 0 and "--labels" in r.output


def test_ner_txt_matches_predict(tmp_path):
    texts = ["John Smith works at Google in London.", "Paris is the capital of France."]
    (tmp_path / "in.txt").write_text(texts[0] + "\n\n" + texts[1] + "\n", encoding="utf-8")
    r = runner.invoke(
        app,
        [
            "ner",
            "-m",
            CKPT,
            "-l",
            "person,organization,location",
            "-t",
            "0.3",
            str(tmp_path / "in.txt"),
            "-o",
            str(tmp_path / "out.jsonl"),
        ],
    )
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [x["text"] for x in rows] == texts and [x["id"] for x in rows] == ["1", "3"]
    expected = BiEncoder.from_pretrained(CKPT).predict(
        texts, ["person", "organization", "location"], threshold=0.3
    )
    assert [x["entities"] for x in rows] == [list(e) for e in expected]
    assert sum(len(x["entities"]) for x in rows) > 0
    # -l repeated: every label (the last alone was kept without a word), the same output as one comma list
    r = runner.invoke(app, ["ner", "-m", CKPT, "-l", "person", "-l", "organization,location", "-t", "0.3",
                            str(tmp_path / "in.txt"), "-o", str(tmp_path / "rep.jsonl")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "rep.jsonl").read_text(encoding="utf-8") == (tmp_path / "out.jsonl").read_text(encoding="utf-8")


def test_ner_jsonl_with_bank_and_labels_file(tmp_path):
    m = BiEncoder.from_pretrained(CKPT)
    m.encode_labels({"person": "a human being", "place": "a city or country"}).save(tmp_path / "bank")
    (tmp_path / "labels.json").write_text(
        json.dumps({"person": "a human being", "place": "a city or country"})
    )
    (tmp_path / "in.jsonl").write_text(
        json.dumps({"doc": "d1", "body": "Steve Jobs founded Apple in Paris."}) + "\n"
    )
    outs = []
    for opt in (["--label-bank", str(tmp_path / "bank")], ["--labels-file", str(tmp_path / "labels.json")]):
        r = runner.invoke(
            app,
            [
                "ner",
                "-m",
                CKPT,
                *opt,
                "--text-field",
                "body",
                "-t",
                "0.2",
                "--nested",
                str(tmp_path / "in.jsonl"),
            ],
        )
        assert r.exit_code == 0, r.output
        rec = json.loads(r.stdout.strip())
        assert rec["doc"] == "d1" and rec["truncated"] is False
        outs.append(rec["entities"])
    assert outs[0] == outs[1] and outs[0]


def test_ner_bad_input_is_a_clear_error(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"nope": 1}\n')
    r = runner.invoke(app, ["ner", "-m", CKPT, "-l", "person", str(tmp_path / "bad.jsonl")])
    assert r.exit_code != 0
    assert "bad.jsonl:2" in str(r.exception) and "text" in str(r.exception)
    r = runner.invoke(app, ["ner", "-m", CKPT, str(tmp_path / "bad.jsonl")])
    assert "exactly one of --labels" in str(r.exception)


def test_ner_streams_and_keeps_results_written_before_a_bad_line(tmp_path):
    lines = [json.dumps({"text": f"John Smith visited Paris {i} times."}) for i in range(300)] + ["{not json"]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = runner.invoke(
        app, ["ner", "-m", CKPT, "-l", "person,location", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o.jsonl")]
    )
    assert r.exit_code != 0 and "in.jsonl:301" in str(r.exception)
    done = (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(done) == 300  # every document before the bad line is written
    assert json.loads(done[-1])["text"] == "John Smith visited Paris 299 times."
    lines[-1] = json.dumps({"text": "Ada Lovelace in London."})
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")  # fixed: the re-run resumes
    args = ["ner", "-m", CKPT, "-l", "person,location", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o.jsonl")]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    done = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(done) == 301 and done[-1]["text"] == "Ada Lovelace in London." and done[0]["id"] == "1"
    r = runner.invoke(app, args[:3] + ["-l", "person", "-t", "0.6"] + args[5:])  # other labels: refused
    assert "written by another run (the labels (another set" in str(r.exception) and "--no-resume" in str(r.exception)
    r = runner.invoke(app, args + ["--no-resume"])
    assert r.exit_code == 0 and len((tmp_path / "o.jsonl").read_text().splitlines()) == 301
    r = runner.invoke(app, args[:-2] + ["-o", str(tmp_path / "in.jsonl")])  # the input as the output: refused
    assert "is the input file" in str(r.exception)
    assert len((tmp_path / "in.jsonl").read_text().splitlines()) == 301


def test_ner_skip_bad_and_label_files(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"text": "John Smith lives in Paris."}\n{"text": "cut\n{"text": "Ada."}\n')
    (tmp_path / "l.txt").write_bytes(b"\xef\xbb\xbfperson\r\n# a comment\r\nlocation\r\nperson\r\n")
    r = runner.invoke(app, ["ner", "-m", CKPT, "--labels-file", str(tmp_path / "l.txt"), str(tmp_path / "in.jsonl"),
                            "-o", str(tmp_path / "o.jsonl"), "--skip-bad", "-t", "0.0"])
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [x["id"] for x in recs] == ["1", "3"]
    assert {e["label"] for x in recs for e in x["entities"]} <= {"person", "location"}  # no BOM, no comment
    (tmp_path / "d.json").write_text('{"person": "a human", "": "a place"}')
    r = runner.invoke(app, ["ner", "-m", CKPT, "--labels-file", str(tmp_path / "d.json"), str(tmp_path / "in.jsonl")])
    assert "d.json" in str(r.exception) and "the name is empty" in str(r.exception)


def test_ner_non_utf8_input_and_output_paths(tmp_path):
    (tmp_path / "latin.txt").write_bytes(b"Paris is nice.\nCaf\xe9 in Paris.\n")
    r = runner.invoke(app, ["ner", "-m", CKPT, "-l", "person", str(tmp_path / "latin.txt")])
    assert r.exit_code != 0 and "latin.txt:2" in str(r.exception) and "UTF-8" in str(r.exception)
    (tmp_path / "in.txt").write_bytes(b"\xef\xbb\xbfJohn Smith lives in Paris.\r\n")
    r = runner.invoke(app, ["ner", "-m", CKPT, "-l", "person", str(tmp_path / "in.txt"), "-o", str(tmp_path)])
    assert r.exit_code != 0 and "is a directory" in str(r.exception)
    out = tmp_path / "new" / "out.jsonl"  # a folder that does not exist yet is made
    r = runner.invoke(app, ["ner", "-m", CKPT, "-l", "person", str(tmp_path / "in.txt"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["text"] == "John Smith lives in Paris."  # no byte-order mark, no CR


def test_ner_lone_surrogate_is_named(tmp_path):
    (tmp_path / "s.jsonl").write_text('{"text": "ok"}\n{"text": "Paris \\ud800"}\n')
    r = runner.invoke(app, ["ner", "-m", CKPT, "-l", "person", str(tmp_path / "s.jsonl")])
    assert r.exit_code != 0 and "s.jsonl:2" in str(r.exception) and "lone surrogate" in str(r.exception)
    import pytest

    from glinker.errors import DataError

    with pytest.raises(DataError) as ei:
        BiEncoder.from_pretrained(CKPT).predict(["fine", "bad \ud800"], ["person"])
    assert "texts[1]" in str(ei.value)


def test_ner_resume_refuses_another_input_without_ids(tmp_path):
    (tmp_path / "a.txt").write_text("John Smith visited Paris.\nAda Lovelace in London.\n")
    (tmp_path / "b.txt").write_text("Berlin is big.\n")
    args = ["ner", "-m", CKPT, "-l", "person,location", "-o", str(tmp_path / "o.jsonl")]
    assert runner.invoke(app, args + [str(tmp_path / "a.txt")]).exit_code == 0
    before = (tmp_path / "o.jsonl").read_text()
    r = runner.invoke(app, args + [str(tmp_path / "b.txt")])
    assert r.exit_code != 0 and "has another text" in str(r.exception)
    assert (tmp_path / "o.jsonl").read_text() == before


def test_ner_missing_input_is_named_before_loading_and_the_bar_counts_lines(tmp_path, monkeypatch):
    """A missing input fails before the model loads and leaves no output; the progress bar counts input lines
    (blank lines and, on resume, the documents already written), ending at its total."""
    import tqdm

    from glinker.model import biencoder

    loaded = []
    monkeypatch.setattr(biencoder.BiEncoder, "from_pretrained",
                        classmethod(lambda cls, *a, **k: loaded.append(1) or (_ for _ in ()).throw(AssertionError)))
    r = runner.invoke(app, ["ner", "-m", CKPT, "-l", "person", str(tmp_path / "nope.txt"), "-o",
                            str(tmp_path / "x.jsonl")])
    assert r.exit_code != 0 and "nope.txt" in str(r.exception) and "no such file" in str(r.exception)
    assert not loaded and not (tmp_path / "x.jsonl").exists()
    monkeypatch.undo()

    bars = []

    class Bar:
        def __init__(self, total=None, **_):
            self.n, self.total = 0, total
            bars.append(self)

        def update(self, k):
            self.n += k

        def close(self):
            pass

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    src = tmp_path / "in.txt"
    src.write_text("John Smith\n\n\n\nParis\n\n\n", encoding="utf-8")
    args = ["ner", "-m", CKPT, "-l", "person", str(src), "-o", str(tmp_path / "out.jsonl")]
    assert runner.invoke(app, args).exit_code == 0
    assert bars[-1].total == 7 and bars[-1].n == 7
    out = tmp_path / "out.jsonl"
    out.write_text(out.read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")  # resume at 1
    assert runner.invoke(app, args).exit_code == 0
    assert bars[-1].n == 7 and len(out.read_text(encoding="utf-8").splitlines()) == 2


def test_ner_labels_file_with_a_bom_mid_file_and_line_separators_in_text(tmp_path):
    """Labels files joined with cat carry a BOM mid-file: not part of a name. A text holding U+2028 stays one
    output line for str.splitlines()."""
    (tmp_path / "labels.txt").write_bytes("\ufeffperson\n\ufefflocation\n".encode("utf-8"))
    (tmp_path / "in.jsonl").write_text(json.dumps({"text": "John Smith\u2028in Paris."}) + "\n", encoding="utf-8")
    r = runner.invoke(app, ["ner", "-m", CKPT, "--labels-file", str(tmp_path / "labels.txt"), "-t", "0.0",
                            str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o.jsonl")])
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    assert {e["label"] for e in json.loads(lines[0])["entities"]} <= {"person", "location"}
    from glinker.model.labels import read_labels_file

    assert read_labels_file(tmp_path / "labels.txt") == ["person", "location"]


def test_ner_reads_a_pipe_given_as_a_path(tmp_path):
    """A FIFO (what <(zcat x.gz) gives) is a readable input, not a missing file."""
    import os
    import threading

    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "w", encoding="utf-8") as f:
            f.write("John Smith lives in Paris.\n")

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    r = runner.invoke(app, ["ner", "-m", CKPT, "-l", "person", str(fifo), "-o", str(tmp_path / "o.jsonl")])
    t.join(timeout=30)
    assert r.exit_code == 0, r.output
    assert len((tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()) == 1
