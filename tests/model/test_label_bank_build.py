"""Label banks written straight to disk: equal to in-memory encoding, resumable, and the `glinker labels` CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _conformance import FIXTURES
from typer.testing import CliRunner

from glinker.cli import app
from glinker.errors import DataError
from glinker.model import BiEncoder, LabelBank
from glinker.model.labels import BUILD_STATE, rows_done

CKPT = str(FIXTURES / "modernbert")
runner = CliRunner()
LABELS = [f"label number {i}" for i in range(37)]


@pytest.fixture(scope="module")
def model() -> BiEncoder:
    return BiEncoder.from_pretrained(CKPT)


def test_encode_labels_to_equals_encode_labels(model, tmp_path):
    bank = model.encode_labels_to(LABELS, tmp_path / "b", batch_size=5, chunk_size=8)
    ref = model.encode_labels(LABELS)
    assert bank.names == ref.names and torch.allclose(bank.vectors, ref.vectors, atol=1e-6)
    assert not (tmp_path / "b" / BUILD_STATE).exists()  # a finished build leaves no progress record
    back = LabelBank.load(tmp_path / "b")
    assert back.model_fingerprint == model.fingerprint and len(back) == 37


def test_interrupted_build_resumes_where_it_stopped(model, tmp_path):
    out = tmp_path / "b"
    ref = model.encode_labels(LABELS).vectors

    def interrupted():
        yield torch.zeros(8, model.dim)  # a marker: rows a resumed build must not recompute
        yield ref[8:16]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        LabelBank.write_batches(out, LABELS, LABELS, interrupted(), model.dim, model.fingerprint)
    assert rows_done(out) == 16
    with pytest.raises(DataError, match="interrupted before it finished"):
        LabelBank.load(out)  # half a bank is not a bank
    bank = model.encode_labels_to(LABELS, out, chunk_size=8)
    assert torch.equal(bank.vectors[:8], torch.zeros(8, model.dim))  # rows 0..7 were kept, not re-encoded
    assert torch.allclose(bank.vectors[8:], ref[8:], atol=1e-6)
    # other labels (or --restart) start over instead of mixing two label sets
    with pytest.raises(KeyboardInterrupt):
        LabelBank.write_batches(out, LABELS, LABELS, interrupted(), model.dim, model.fingerprint)
    other = model.encode_labels_to(LABELS[:-1] + ["something else"], out, chunk_size=8)
    assert torch.allclose(other.vectors[:36], ref[:36], atol=1e-6)
    again = model.encode_labels_to(LABELS, out, chunk_size=8, resume=False)
    assert torch.allclose(again.vectors, ref, atol=1e-6)


def test_a_build_resumed_in_another_precision_starts_over(model, tmp_path, caplog):
    """An interrupted float32 build resumed with a bfloat16 model (`labels build --dtype bfloat16`) kept the float32
    rows and appended bfloat16 ones: one bank of two precisions. It starts over now, and says why."""
    out = tmp_path / "b"

    def interrupted():
        yield torch.zeros(8, model.dim)  # a marker: rows a resume in the same precision would keep
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        LabelBank.write_batches(out, LABELS, LABELS, interrupted(), model.dim, model.fingerprint)
    assert rows_done(out) == 8 and json.loads((out / BUILD_STATE).read_text())["precision"] == "float32"
    low = BiEncoder.from_pretrained(CKPT, dtype="bfloat16")
    with caplog.at_level("WARNING", logger="glinker.model.labels"):
        bank = low.encode_labels_to(LABELS, out, chunk_size=8)
    assert "encoded 8 of 37 labels in float32, this one runs in bfloat16: starting over" in caplog.text
    assert not torch.equal(bank.vectors[:8], torch.zeros(8, model.dim))  # re-encoded in bfloat16
    assert torch.allclose(bank.vectors, low.encode_labels(LABELS).vectors, atol=1e-6)
    # the same precision still resumes
    with pytest.raises(KeyboardInterrupt):
        LabelBank.write_batches(tmp_path / "c", LABELS, LABELS, interrupted(), model.dim, model.fingerprint,
                                precision="bfloat16")
    kept = low.encode_labels_to(LABELS, tmp_path / "c", chunk_size=8)
    assert torch.equal(kept.vectors[:8], torch.zeros(8, model.dim))


def _interrupted_rebuild(model: BiEncoder, out, labels: list) -> None:
    """A build of ``labels`` into the finished bank ``out``, interrupted after its first 8 rows."""

    def interrupted():
        yield model.encode_labels(labels[:8]).vectors
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        LabelBank.write_batches(out, labels, labels, interrupted(), model.dim, model.fingerprint, resume=True)


def test_rebuilding_a_bank_keeps_the_old_one_whole_until_the_new_one_is_done(model, tmp_path):
    """Another label set built into a finished bank's folder: built beside it and swapped in at the end, so a
    process reading the old bank (memory-mapped) keeps its rows, and an interrupted rebuild leaves it intact."""
    import os

    out = tmp_path / "b"
    model.encode_labels_to(LABELS, out, chunk_size=8)
    live = LabelBank.load(out)  # memory-mapped, as a running `glinker ner` holds it
    before = live.vectors.clone()
    shuffled = LABELS[::-1]
    _interrupted_rebuild(model, out, shuffled)
    assert LabelBank.load(out).names == LABELS  # the old bank is whole
    assert rows_done(out) == 8  # and the replacement resumes
    new = model.encode_labels_to(shuffled, out, chunk_size=8)
    assert new.names == shuffled and LabelBank.load(out).names == shuffled
    assert torch.equal(live.vectors, before)  # the open bank still reads its own rows
    assert not any(p.name.startswith(".b.") for p in tmp_path.iterdir())  # nothing left beside it
    os.chmod(out, 0o555)  # a finished bank of the same labels: nothing is written (a read-only folder works)
    try:
        assert model.encode_labels_to(shuffled, out, chunk_size=8).names == shuffled
        assert sorted(p.name for p in out.iterdir()) == ["label_bank.json", "vectors.npy"]
    finally:
        os.chmod(out, 0o755)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "vectors.npy").write_bytes(b"precious")
    with pytest.raises(DataError, match="not empty and holds no label bank"):
        model.encode_labels_to(LABELS, mine)
    assert (mine / "vectors.npy").read_bytes() == b"precious"
    with pytest.raises(DataError, match="no such label bank folder"):
        LabelBank.load(tmp_path / "nope")


def test_going_back_to_the_bank_it_holds_says_the_unfinished_replacement(model, tmp_path, caplog):
    """A build of other labels into a finished bank's folder, interrupted, then the original build run again: the
    bank was complete, so nothing was encoded, and the half-written replacement stayed hidden beside it without a
    word (`.b.building/`, up to a whole bank's size). It is kept (its build resumes) and said."""
    out = tmp_path / "b"
    model.encode_labels_to(LABELS, out, chunk_size=8)
    shuffled = LABELS[::-1]
    _interrupted_rebuild(model, out, shuffled)
    assert (tmp_path / ".b.building").is_dir()
    with caplog.at_level("WARNING", logger="glinker.model.labels"):
        assert model.encode_labels_to(LABELS, out, chunk_size=8).names == LABELS
    assert "unfinished build of other labels into it (8 labels written" in caplog.text
    assert "run that build again to finish it, or delete the folder" in caplog.text
    assert rows_done(out) == 8  # kept: the replacement resumes
    shuffled = LABELS[::-1]
    assert model.encode_labels_to(shuffled, out, chunk_size=8).names == shuffled
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


@pytest.mark.parametrize("then", ["load", "rebuild"])
def test_a_replacement_killed_between_its_renames_loses_neither_bank(model, tmp_path, monkeypatch, then):
    """Killed after the old bank moved away and before the new one moved in: the next load (or build) puts the
    finished new bank in place instead of reporting no bank or deleting it and encoding everything again."""
    import os

    out = tmp_path / "b"
    model.encode_labels_to(LABELS, out, chunk_size=8)
    shuffled = LABELS[::-1]
    real = os.rename
    calls = []

    def killed(a, b):
        calls.append(a)
        real(a, b)
        if len(calls) == 1:
            raise SystemExit("killed")  # stands for SIGKILL: nothing after the first rename runs

    monkeypatch.setattr(os, "rename", killed)
    with pytest.raises(SystemExit):
        model.encode_labels_to(shuffled, out, chunk_size=8)
    monkeypatch.setattr(os, "rename", real)
    assert not out.exists() and any(p.name.startswith(".b.old-") for p in tmp_path.iterdir())
    encoded = []
    if then == "load":
        assert LabelBank.load(out).names == shuffled
    else:
        orig = model._encode_prompt_texts

        def counting(texts, *a, **k):
            encoded.append(len(texts))
            return orig(texts, *a, **k)

        monkeypatch.setattr(model, "_encode_prompt_texts", counting)
        assert model.encode_labels_to(shuffled, out, chunk_size=8).names == shuffled
        assert not encoded  # the finished bank was kept, not encoded again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no old copy or staging left beside it


def test_write_batches_refuses_duplicates_and_wrong_shapes(tmp_path):
    with pytest.raises(DataError, match="duplicate"):
        LabelBank.write_batches(tmp_path / "a", ["x", "x"], ["x", "x"], [np.zeros((2, 4))], 4)
    with pytest.raises(DataError, match="does not fit"):
        LabelBank.write_batches(tmp_path / "b", ["x", "y"], ["x", "y"], [np.zeros((2, 5))], 4)


def test_labels_build_cli_then_ner_with_the_bank(model, tmp_path):
    (tmp_path / "labels.txt").write_text("person\norganization\nlocation\n", encoding="utf-8")
    r = runner.invoke(
        app, ["labels", "build", str(tmp_path / "labels.txt"), "-m", CKPT, "-o", str(tmp_path / "bank"),
              "--index", "Flat", "--chunk-size", "2"]
    )
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep["labels"] == 3 and rep["index"] == "Flat"
    assert "encoding labels" not in r.output and "indexing labels" not in r.output  # no bars off a terminal
    bank = LabelBank.load(tmp_path / "bank")
    assert bank.has_index and bank.index_factory == "Flat" and bank.faiss_index().ntotal == 3
    r = runner.invoke(app, ["labels", "info", str(tmp_path / "bank")])
    assert r.exit_code == 0 and json.loads(r.stdout)["index"] == "Flat" and json.loads(r.stdout)["precision"] == "float32"
    text = "John Smith works at Google in London."
    (tmp_path / "in.txt").write_text(text + "\n", encoding="utf-8")
    r = runner.invoke(app, ["ner", "-m", CKPT, "--label-bank", str(tmp_path / "bank"), "-t", "0.3", str(tmp_path / "in.txt")])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout.strip())["entities"]
    want = model.predict([text], ["person", "organization", "location"], threshold=0.3)[0]
    assert got and [(e["start"], e["end"], e["label"]) for e in got] == [(e["start"], e["end"], e["label"]) for e in want]
    assert [e["score"] for e in got] == pytest.approx([e["score"] for e in want], abs=1e-5)


def test_a_finished_bank_is_not_encoded_again(model, tmp_path, monkeypatch):
    """Re-running a finished build (or adding an index to it) keeps its vectors; other labels start over."""
    (tmp_path / "labels.txt").write_text("person\norganization\nlocation\n", encoding="utf-8")
    args = ["labels", "build", str(tmp_path / "labels.txt"), "-m", CKPT, "-o", str(tmp_path / "bank")]
    assert runner.invoke(app, args).exit_code == 0
    before = np.load(tmp_path / "bank" / "vectors.npy")

    def no_encoding(*_a, **_k):
        raise AssertionError("encoded a finished bank again")

    monkeypatch.setattr(BiEncoder, "_encode_prompt_texts", no_encoding)
    for extra in ([], ["--index", "Flat"], ["--index", "Flat"]):
        r = runner.invoke(app, args + extra)
        assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep["index"] == "Flat" and rep["index_s"] == 0.0  # the index already there is kept
    bank = LabelBank.load(tmp_path / "bank")
    assert bank.has_index and np.array_equal(bank.vectors.numpy(), before)
    assert not (tmp_path / "bank" / BUILD_STATE).exists()
    (tmp_path / "labels.txt").write_text("person\norganization\ncity\n", encoding="utf-8")
    r = runner.invoke(app, args)
    assert r.exit_code != 0 and "encoded a finished bank again" in str(r.exception)  # other labels: encoded


def test_labels_build_with_an_ivf_index_saves_its_low_precision_lists(model, tmp_path, monkeypatch):
    """Where the pre-filter runs, `labels build --index IVF...` writes the index's bfloat16 lists beside it, so
    that scoring maps them (a read-only deployment cannot write them at first use); --index none removes them."""
    from glinker.model import labels as lab
    from glinker.model import scoring

    monkeypatch.setenv("GLINKER_PREFILTER", "bf16")
    scoring._LOWP.clear()
    if scoring.lowp_prefilter("cpu") is None:
        pytest.skip("no bfloat16 products on this CPU")
    names = [f"label {i}" for i in range(300)]
    (tmp_path / "labels.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    args = ["labels", "build", str(tmp_path / "labels.txt"), "-m", CKPT, "-o", str(tmp_path / "bank")]
    r = runner.invoke(app, args + ["--index", "IVF4,Flat"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "bank" / lab.BANK_IVF_LOWP / "rows.npy").is_file()
    monkeypatch.setattr(lab._faiss(), "read_index", lambda *a: pytest.fail("the index was read"))
    lists = LabelBank.load(tmp_path / "bank").ivf_lists(lowp=torch.bfloat16)
    assert lists.lean and sum(len(i) for i in lists.ids) == 300
    monkeypatch.undo()
    r = runner.invoke(app, args + ["--index", "none"])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "bank" / lab.BANK_IVF_LOWP).exists()
    scoring._LOWP.clear()


def test_a_banks_precision_is_the_encoders_and_is_recorded(model, tmp_path, caplog):
    """The vectors' precision is the encoder's when one is given (not the local model's); a finished bank records
    it, so asking for another precision rebuilds it; a build state of an earlier glinker (no precision) resumed in
    bfloat16 starts over, saying why."""
    low = BiEncoder.from_pretrained(CKPT, dtype="bfloat16")
    out = tmp_path / "b"
    bank = model.encode_labels_to(LABELS, out, chunk_size=8, encoder=low)
    assert json.loads((out / "label_bank.json").read_text())["precision"] == "bfloat16"
    assert torch.allclose(bank.vectors, low.encode_labels(LABELS).vectors, atol=1e-6)
    again = model.encode_labels_to(LABELS, out, chunk_size=8)  # float32 asked: rebuilt, not "already complete"
    assert torch.allclose(again.vectors, model.encode_labels(LABELS).vectors, atol=1e-6)
    assert json.loads((out / "label_bank.json").read_text())["precision"] == "float32"

    def interrupted():
        yield torch.zeros(8, model.dim)
        raise KeyboardInterrupt

    old = tmp_path / "old"
    with pytest.raises(KeyboardInterrupt):
        LabelBank.write_batches(old, LABELS, LABELS, interrupted(), model.dim, model.fingerprint)
    state = json.loads((old / BUILD_STATE).read_text())
    del state["precision"]  # as an earlier glinker wrote it
    (old / BUILD_STATE).write_text(json.dumps(state))
    with caplog.at_level("WARNING", logger="glinker.model.labels"):
        b = low.encode_labels_to(LABELS, old, chunk_size=8)
    assert "did not record its precision" in caplog.text
    assert not torch.equal(b.vectors[:8], torch.zeros(8, model.dim))
    caplog.clear()
    with pytest.raises(KeyboardInterrupt):  # in float32 (what it most likely was) it still resumes
        LabelBank.write_batches(tmp_path / "f", LABELS, LABELS, interrupted(), model.dim, model.fingerprint)
    state = json.loads((tmp_path / "f" / BUILD_STATE).read_text())
    del state["precision"]
    (tmp_path / "f" / BUILD_STATE).write_text(json.dumps(state))
    assert torch.equal(model.encode_labels_to(LABELS, tmp_path / "f", chunk_size=8).vectors[:8],
                       torch.zeros(8, model.dim))


def test_a_text_labels_file_says_what_it_reads_as_one_label(tmp_path, caplog):
    """A line that is a JSON list is refused (it was one label, and nothing found); a comma or a tab is read as one
    label with a warning naming the line; a repeated label is warned about with its lines."""
    from glinker.model.labels import read_labels_file

    for text in ('["person", "location"]\n', '[\n  "person",\n  "location"\n]\n', '{"person": "a human"}\n'):
        (tmp_path / "l.txt").write_text(text)  # a JSON file named .txt, pretty-printed or not
        with pytest.raises(DataError, match="the file is JSON") as ei:
            read_labels_file(tmp_path / "l.txt")
        assert "l.json" in ei.value.fix
    (tmp_path / "l.txt").write_text('location\n["person", "organization"]\n')
    with pytest.raises(DataError, match="is a JSON list") as ei:
        read_labels_file(tmp_path / "l.txt")
    assert ei.value.where == f"{tmp_path / 'l.txt'}:2"
    (tmp_path / "c.txt").write_text("# types\nperson, organization\nlocation\nlocation\n")
    with caplog.at_level("WARNING", logger="glinker.model.labels"):
        assert read_labels_file(tmp_path / "c.txt") == ["person, organization", "location"]
    assert "line 2 ('person, organization'): a comma or a tab" in caplog.text
    assert "'location' on lines 3 and 4" in caplog.text
    (tmp_path / "d.jsonl").write_text('{"name": "person", "description": "a human"}\n{"name": "city"}\n')
    with pytest.raises(DataError, match="has no description") as ei:
        read_labels_file(tmp_path / "d.jsonl")
    assert ei.value.where.endswith("d.jsonl:2")


def test_a_model_path_that_is_a_file_says_what_to_pass(tmp_path):
    """A checkpoint's file names its folder; a file elsewhere (a data file given as --model) gets no folder to pass
    that holds no model (the fix said `from_pretrained('my-data')`, a folder of data, in Python to a CLI user)."""
    from glinker.errors import ModelError

    with pytest.raises(ModelError) as ei:
        BiEncoder.from_pretrained(FIXTURES / "modernbert" / "gliner_config.json")
    assert f"--model {FIXTURES / 'modernbert'}" in ei.value.fix
    (tmp_path / "train.json").write_text("[]")
    with pytest.raises(ModelError) as ei:
        BiEncoder.from_pretrained(tmp_path / "train.json")
    assert "holds no gliner_config.json either" in ei.value.message and str(tmp_path) not in ei.value.fix
    assert "glinker-bi-minilm" in ei.value.fix
