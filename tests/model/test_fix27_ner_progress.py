"""`glinker ner` on one huge document shows how far the model has read it (its bar counted documents only, so it
stood still until the end), at no cost for inputs of short documents."""

from __future__ import annotations

import json
import logging

import pytest
from _conformance import FIXTURES
from typer.testing import CliRunner

from glinker.cli import app
from glinker.model import BiEncoder
from glinker.model.words import split_words

CKPT = str(FIXTURES / "modernbert")
runner = CliRunner()
LONG = "John Smith works at Google in London. " * 12  # 96 words (with the full stops): about 20 windows of 8
SHORT = ["Paris is the capital of France.", "Steve Jobs founded Apple."]


@pytest.fixture
def calls(monkeypatch):
    """What each BiEncoder.predict call was given as on_window (the model's per-window hook)."""
    seen: list = []
    real = BiEncoder.predict

    def predict(self, *a, **k):
        seen.append(k.get("on_window"))
        return real(self, *a, **k)

    monkeypatch.setattr(BiEncoder, "predict", predict)
    monkeypatch.setattr("glinker.cli.ner.LONG_TEXT_CHARS", 300, raising=False)
    return seen


class Bar:
    bars: list = []

    def __init__(self, total=None, desc=None, unit="it", **_):
        self.n, self.total, self.desc, self.unit, self.updates, self.closed = 0, total, desc, unit, 0, False
        Bar.bars.append(self)

    def update(self, k):
        self.n += k
        self.updates += 1

    def close(self):
        self.closed = True


def _ner(tmp_path, *extra, out=True):
    args = ["ner", "-m", CKPT, "-l", "person,organization,location", "-t", "0.3", "--window-words", "8",
            str(tmp_path / "in.jsonl"), *extra]
    r = runner.invoke(app, [*args, "-o", str(tmp_path / "out.jsonl")] if out else args)
    assert r.exit_code == 0, r.output
    text = (tmp_path / "out.jsonl").read_text(encoding="utf-8") if out else r.stdout
    return [json.loads(x) for x in text.splitlines()]


def test_a_long_document_moves_a_bar_of_its_words_window_by_window(tmp_path, monkeypatch, calls):
    import tqdm

    Bar.bars = []
    monkeypatch.setattr(tqdm, "tqdm", Bar)
    monkeypatch.setattr("glinker.cli.ner._terminal", lambda: True, raising=False)
    (tmp_path / "in.jsonl").write_text(json.dumps({"id": "big", "text": LONG}) + "\n" + json.dumps({"text": SHORT[0]})
                                       + "\n")
    rows = _ner(tmp_path)
    words = [b for b in Bar.bars if b.unit == "word"]
    assert len(words) == 1, [(b.desc, b.unit) for b in Bar.bars]
    [bar] = words
    assert bar.total == len(split_words(LONG).words) == 96 and bar.n == bar.total and bar.closed
    assert bar.updates >= 10 and "'big'" in bar.desc  # window by window, not once at the end
    assert calls[0] is not None
    # the same entities as without the hook
    expected = BiEncoder.from_pretrained(CKPT, window_words=8).predict([LONG, SHORT[0]],
                                                                        ["person", "organization", "location"],
                                                                        threshold=0.3)
    assert [r["entities"] for r in rows] == [list(e) for e in expected] and rows[0]["entities"]


def test_without_a_bar_a_long_document_is_logged_every_tenth_at_info(tmp_path, caplog, calls):
    (tmp_path / "in.jsonl").write_text(json.dumps({"text": LONG}) + "\n")
    caplog.set_level(logging.INFO, logger="glinker.cli.ner")
    rows = _ner(tmp_path, out=False)  # to standard output: no bar
    assert len(rows) == 1
    lines = [r.getMessage() for r in caplog.records if "words read" in r.getMessage()]
    assert len(lines) >= 5 and lines[-1] == "document '1': 96 of 96 words read (100%)", lines


def test_short_documents_and_unseen_progress_cost_nothing(tmp_path, monkeypatch, calls, caplog):
    """The model is not asked for its windows when no document is long, when the texts are cut (--truncate: one
    window each), or when nothing would show the progress (no terminal, no -v)."""
    monkeypatch.setattr("glinker.cli.ner._terminal", lambda: True, raising=False)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in SHORT * 3))
    _ner(tmp_path, "--no-resume")
    (tmp_path / "in.jsonl").write_text(json.dumps({"text": LONG}) + "\n")
    _ner(tmp_path, "--no-resume", "--truncate")
    monkeypatch.setattr("glinker.cli.ner._terminal", lambda: False, raising=False)
    caplog.set_level(logging.WARNING, logger="glinker.cli.ner")
    _ner(tmp_path, "--no-resume")
    _ner(tmp_path, "--no-resume", "--no-progress")
    assert calls == [None, None, None, None]
