"""`biencoder_mentions` takes its labels inline, from a file, or from a label bank built by `glinker labels build`
(the million-label path inside a pipeline); the three give the same mentions; mistakes are named."""

from __future__ import annotations

import json

import pytest

LABELS = ["person", "organization", "location"]
PIPE = """name: m
model: {model}
stages:
  mentions: {{type: biencoder_mentions, threshold: 0.0, span_vectors: false, {src}}}
"""
TEXTS = ["Steve Jobs founded Apple in California.", "John Smith lives in Berlin."]


def mentions(tmp_path, model, src: str):
    import glinker

    p = tmp_path / "m.yaml"
    p.write_text(PIPE.format(model=model, src=src))
    return [[(m.start, m.end, m.label, round(m.score, 5)) for m in doc] for doc in glinker.load_pipeline(str(p))(TEXTS)]


def test_inline_file_and_bank_give_the_same_mentions(tmp_path, tiny_model):
    from glinker.model import BiEncoder

    (tmp_path / "labels.txt").write_text("\n".join(LABELS) + "\n\n")
    (tmp_path / "labels.json").write_text(json.dumps(LABELS))
    BiEncoder.from_pretrained(tiny_model).encode_labels_to(LABELS, tmp_path / "bank")
    inline = mentions(tmp_path, tiny_model, f"labels: {json.dumps(LABELS)}")
    assert sum(map(len, inline)) > 0
    assert mentions(tmp_path, tiny_model, "labels_file: labels.txt") == inline
    assert mentions(tmp_path, tiny_model, "labels_file: labels.json") == inline
    assert mentions(tmp_path, tiny_model, "label_bank: bank") == inline


@pytest.mark.parametrize("src,needle", [
    ("threshold: 0.5", "exactly one of labels, labels_file, label_bank (got none)"),
    ("labels: [person], labels_file: x.txt", "(got labels, labels_file)"),
])
def test_label_sources_are_checked_before_loading(tmp_path, tiny_model, src, needle):
    from glinker.errors import PipelineError
    from glinker.pipeline import load_spec

    p = tmp_path / "m.yaml"
    p.write_text(PIPE.format(model=tiny_model, src=src).replace("threshold: 0.0, ", ""))
    with pytest.raises(PipelineError) as ei:
        load_spec(p)
    assert needle in str(ei.value) and "m.yaml:4" in str(ei.value)


def test_a_bank_of_another_model_and_a_missing_file_are_named(tmp_path, tiny_model):
    from glinker.errors import ModelError
    from glinker.model.testing import build_tiny_checkpoint

    other = build_tiny_checkpoint(tmp_path / "other", text_encoder="bert", seed=7)
    from glinker.model import BiEncoder

    BiEncoder.from_pretrained(other).encode_labels_to(LABELS, tmp_path / "bank")
    with pytest.raises(ModelError) as ei:
        mentions(tmp_path, tiny_model, "label_bank: bank")
    assert "label_bank" in ei.value.where and "glinker labels build" in ei.value.fix
    from glinker.errors import PipelineError

    with pytest.raises(PipelineError) as ei:  # at load, as `glinker pipeline validate` says it
        mentions(tmp_path, tiny_model, "labels_file: nope.txt")
    assert "labels_file 'nope.txt'" in str(ei.value)
