"""`glinker link` on a huge document (session 35): it is linked whole, minutes on a CPU, while the bar (which
counts lines) stands still; the command says so when it reads one."""

from __future__ import annotations

import json

import pytest


def test_a_huge_document_is_said_when_read(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import glinker.cli.link as link_cli
    from glinker.cli import app

    monkeypatch.setattr(link_cli, "LONG_DOCUMENT_CHARS", 40)
    p = tmp_path / "p.yaml"
    p.write_text("name: t\nmodel: none\nstages:\n  m: {type: regex_mentions, patterns: {year: '[0-9]{4}'}}\n")
    src = tmp_path / "in.jsonl"
    docs = [{"id": "a", "text": "short, 1999"}] + [{"id": f"b{i}", "text": "In 2024 " * 10} for i in range(5)]
    src.write_text("".join(json.dumps(d) + "\n" for d in docs))
    r = CliRunner().invoke(app, ["link", "-p", str(p), str(src), "-o", str(tmp_path / "o.jsonl"), "--no-progress"])
    assert r.exit_code == 0, r.output
    said = [ln for ln in r.stderr.splitlines() if "is linked whole" in ln]
    assert len(said) == 3 and said[0].startswith(f"{src}:2: a document of 80 characters"), r.stderr
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 6


LONG = "John Smith works at Google in London. " * 12  # 96 words (with the full stops)


class _Bar:
    bars: list = []

    def __init__(self, total=None, desc=None, unit="it", **_):
        self.n, self.total, self.desc, self.unit, self.updates, self.closed = 0, total, desc, unit, 0, False
        self.disable = False  # as on a terminal
        _Bar.bars.append(self)

    def update(self, k=1):
        self.n += k
        self.updates += 1

    def write(self, *_a, **_k):
        pass

    def close(self):
        self.closed = True


@pytest.mark.parametrize("span_vectors", [True, False])
def test_a_long_document_shows_how_far_it_is_read(tmp_path, monkeypatch, tiny_model, caplog, span_vectors):
    """The bar of `glinker link` counts lines, so one huge document held it still for minutes: its words read now
    move a bar of their own window by window (on a terminal), or INFO lines (-v) without one, and the links are the
    same as without (both ways the mention stage reads: with span vectors from its windows and without)."""
    import logging

    import tqdm
    from typer.testing import CliRunner

    import glinker.cli.link as link_cli
    from glinker.cli import app
    from glinker.model.words import split_words

    monkeypatch.setattr(link_cli, "LONG_TEXT_CHARS", 300)
    p = tmp_path / "p.yaml"
    p.write_text(f"name: t\nmodel: {tiny_model}\nsettings: {{window_words: 8}}\nstages:\n"
                 f"  m: {{type: biencoder_mentions, labels: [person, location], threshold: 0.0, "
                 f"span_vectors: {str(span_vectors).lower()}}}\n")
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "big", "text": LONG}) + "\n" + json.dumps({"id": "s", "text": "Paris."}) + "\n")

    def run(out, *extra):
        r = CliRunner().invoke(app, ["link", "-p", str(p), str(src), "-o", str(out), *extra])
        assert r.exit_code == 0, r.output
        return [json.loads(x) for x in out.read_text().splitlines()]

    plain = run(tmp_path / "plain.jsonl", "--no-progress")  # nothing shows progress: the model is not asked
    assert plain[0]["mentions"]
    _Bar.bars = []
    monkeypatch.setattr(tqdm, "tqdm", _Bar)
    assert run(tmp_path / "bar.jsonl") == plain
    [words] = [b for b in _Bar.bars if b.unit == "word"]
    assert words.total == len(split_words(LONG).words) == 96 and words.n == 96 and words.closed
    assert words.updates >= 10 and words.desc == "link document 'big'"  # window by window, not once at the end
    caplog.set_level(logging.INFO, logger="glinker.cli.link")
    assert run(tmp_path / "log.jsonl", "--no-progress") == plain
    said = [r.getMessage() for r in caplog.records if "words read" in r.getMessage()]
    assert len(said) >= 5 and said[-1] == "document 'big': 96 of 96 words read (100%)", said


def test_two_same_long_documents_both_reach_the_end():
    from glinker.cli.long_texts import LongTextProgress

    class W:
        def __init__(self, a, b):
            self.start, self.end = a, b

    p = LongTextProgress([LONG, LONG], ["a", "b"], None, min_chars=100)
    for a in range(0, 96, 8):
        p.see(LONG, W(a, a + 8))  # the second copy's windows come from the cache: told once, by text
    assert p.done == p.total == 192
