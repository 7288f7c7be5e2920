"""Label banks as a many-label walkthrough met them (session 36): a UTF-16 label file without a byte-order mark
(read as labels of NULs before), an empty vectors file ("Aborted." before), two builds into one folder (the second
discarded the first's rows while it ran: a finished-looking bank of zero rows), and retrieval settings in YAML."""

from __future__ import annotations

import json

import numpy as np
import pytest

from glinker.errors import ConfigError, DataError


def test_a_utf16_label_file_without_a_mark_is_said_to_be_utf16(tmp_path):
    from glinker.model.labels import read_labels_file

    f = tmp_path / "labels.txt"
    f.write_bytes("person\norganization\nlocation\n".encode("utf-16-le"))
    with pytest.raises(DataError, match="UTF-16LE text, not UTF-8") as ei:
        read_labels_file(f)
    assert "iconv -f UTF-16LE -t UTF-8" in ei.value.fix


def test_ner_input_in_utf16_is_said_to_be_utf16(tmp_path):
    from typer.testing import CliRunner

    from glinker.cli import app

    from glinker.model.testing import build_tiny_checkpoint

    ckpt = build_tiny_checkpoint(tmp_path / "tiny", text_encoder="bert")
    f = tmp_path / "in.txt"
    f.write_bytes("John Smith lives in Berlin.\n".encode("utf-16"))
    r = CliRunner().invoke(app, ["ner", "-m", str(ckpt), "-l", "person", str(f)])
    assert isinstance(r.exception, DataError) and "UTF-16 text, not UTF-8" in str(r.exception), r.output


def test_an_empty_vectors_file_is_a_damaged_bank(tmp_path):
    from glinker.model.labels import LabelBank

    bank = LabelBank(["a", "b"], ["a", "b"], __import__("torch").ones(2, 4), "fp")
    bank.save(tmp_path / "bank")
    (tmp_path / "bank" / "vectors.npy").write_bytes(b"")
    with pytest.raises(DataError, match="label bank is damaged"):
        LabelBank.load(tmp_path / "bank")


def test_a_second_build_into_the_same_folder_is_refused(tmp_path):
    from glinker.io import locked
    from glinker.model.labels import LabelBank

    out = tmp_path / "bank"
    with locked(tmp_path / ".bank.build.lock"):  # another process building into it
        with pytest.raises(ConfigError, match="another process is building a label bank"):
            LabelBank.write_batches(out, ["a"], ["a"], iter([np.ones((1, 4), np.float32)]), 4, "fp")
    bank = LabelBank.write_batches(out, ["a"], ["a"], iter([np.ones((1, 4), np.float32)]), 4, "fp")
    assert bank.names == ["a"]


def test_retrieval_settings_of_a_pipeline_stage(tmp_path):
    import glinker
    from glinker.model import BiEncoder
    from glinker.model.testing import build_tiny_checkpoint

    ckpt = build_tiny_checkpoint(tmp_path / "tiny", text_encoder="bert")
    BiEncoder.from_pretrained(ckpt).encode_labels_to(["person", "organization", "location"], tmp_path / "bank")
    texts = ["Steve Jobs founded Apple in California.", "John Smith lives in Berlin."]

    def run(extra):
        p = tmp_path / "p.yaml"
        p.write_text(f"name: m\nmodel: {ckpt}\nstages:\n  m: {{type: biencoder_mentions, threshold: 0.0, "
                     f"label_bank: bank{extra}}}\n")
        pipe = glinker.load_pipeline(str(p))
        out = [[(m.start, m.end, m.label, round(m.score, 5)) for m in doc] for doc in pipe(texts)]
        return out, pipe.stages["m"].bank

    plain, _ = run("")
    exact, _ = run(", label_top_k: 0")
    assert exact == plain and plain[0]
    _, bank = run(", nprobe: 7")
    assert bank.nprobe == 7
    with pytest.raises(Exception, match="label_top_k"):
        run(", label_top_k: -1")
    json.dumps(plain)


def test_ner_resume_compares_nprobe_both_ways(tmp_path):
    from typer.testing import CliRunner

    from glinker.cli import app
    from glinker.model.testing import build_tiny_checkpoint

    ckpt = build_tiny_checkpoint(tmp_path / "tiny", text_encoder="bert")
    src = tmp_path / "in.txt"
    src.write_text("John Smith lives in Berlin.\nMary works at ACME.\n")
    out = tmp_path / "out.jsonl"

    def ner(*extra):
        return CliRunner().invoke(app, ["ner", "-m", str(ckpt), "-l", "person", str(src), "-o", str(out), *extra])

    assert ner("--nprobe", "3").exit_code == 0
    out.write_text(out.read_text().splitlines()[0] + "\n")  # an interrupted run: one line written
    r = ner()  # resumed without --nprobe: its results would mix two settings
    assert r.exit_code != 0 or r.exception is not None
    assert "nprobe" in (r.output + str(r.exception)), r.output
