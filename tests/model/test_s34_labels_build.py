"""`glinker labels build` stopped and run again, as a user meets it: SIGTERM (`kill`, a scheduler) says what Ctrl-C
says, a resumed build says where it resumes, and a build of other labels into a half-built folder says that it
throws the earlier rows away."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _conformance import FIXTURES
from typer.testing import CliRunner

from glinker.cli import app
from glinker.model import BiEncoder, LabelBank
from glinker.model.labels import rows_done

CKPT = str(FIXTURES / "modernbert")
runner = CliRunner()
LABELS = [f"label number {i}" for i in range(12)]


class Unhandled(Exception):
    """A SIGTERM the command did not handle (what the test process gets instead of being killed)."""


@pytest.fixture
def sigterm_guard():
    """SIGTERM raises Unhandled in this process for the test (not killing pytest); restored after."""

    def guard(signum: int, frame: Any) -> None:
        raise Unhandled("SIGTERM reached the test process: `labels build` did not handle it")

    old = signal.signal(signal.SIGTERM, guard)
    yield guard
    signal.signal(signal.SIGTERM, old)


def stop_at_chunk(monkeypatch, n: int, how: str) -> list[int]:
    """Encoding stops as its ``n``-th chunk is asked for: by a SIGTERM sent to this process (``kill -TERM``) or a
    KeyboardInterrupt (Ctrl-C). Returns the list of chunk sizes encoded."""
    original = BiEncoder._encode_prompt_texts
    done: list[int] = []

    def encode(self: BiEncoder, prompts: Any, batch_size: int) -> Any:
        if len(done) + 1 == n:
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler runs here, raising (a sleep interrupted by a signal runs its handler)
                raise AssertionError("SIGTERM was not handled")
            else:
                raise KeyboardInterrupt
        done.append(len(prompts))
        return original(self, prompts, batch_size)

    monkeypatch.setattr(BiEncoder, "_encode_prompt_texts", encode)
    return done


def build_args(tmp_path: Path, labels: list[str], *extra: str) -> list[str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    return ["labels", "build", str(tmp_path / "labels.txt"), "-m", CKPT, "-o", str(tmp_path / "bank"),
            "--chunk-size", "4", *extra]


def said(caplog) -> list[str]:
    """What the label bank writer said (at the default level) during the test."""
    return [x.getMessage() for x in caplog.records if x.name == "glinker.model.labels" and x.levelno >= logging.WARNING]


def test_sigterm_says_what_ctrl_c_says_and_the_rerun_says_where_it_resumes(tmp_path, monkeypatch, sigterm_guard,
                                                                           caplog):
    """`kill -TERM` exited 143 silently (Ctrl-C said "interrupted... run the same command again"); the re-run
    resumed without a word."""
    args = build_args(tmp_path, LABELS)
    stop_at_chunk(monkeypatch, 2, "sigterm")
    r = runner.invoke(app, args)
    assert not isinstance(r.exception, Unhandled), r.output
    assert r.exit_code == 143, r.output
    assert "terminated (SIGTERM) at 4 of 12 labels: the labels encoded so far are kept; run the same command again " \
           "to continue" in r.stderr
    assert rows_done(tmp_path / "bank") == 4
    assert signal.getsignal(signal.SIGTERM) is sigterm_guard  # the command's handler is gone with it

    monkeypatch.undo()
    caplog.clear()
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert [m for m in said(caplog) if "resuming at 4 of 12 labels" in m and str(tmp_path / "bank") in m]
    assert json.loads(r.stdout.strip().splitlines()[-1])["labels"] == 12
    ref = BiEncoder.from_pretrained(CKPT).encode_labels(LABELS).vectors.numpy()
    assert np.allclose(LabelBank.load(tmp_path / "bank").vectors.numpy(), ref, atol=1e-5)
    caplog.clear()
    r = runner.invoke(app, args)  # a finished bank: nothing resumed, nothing said of it
    assert r.exit_code == 0 and not said(caplog)


def test_ctrl_c_says_how_far_it_got(tmp_path, monkeypatch):
    stop_at_chunk(monkeypatch, 3, "ctrl-c")
    r = runner.invoke(app, build_args(tmp_path, LABELS))
    assert r.exit_code == 130 and "interrupted at 8 of 12 labels: the labels encoded so far are kept" in r.stderr


def test_other_labels_in_a_half_built_folder_say_the_earlier_rows_are_discarded(tmp_path, monkeypatch, caplog):
    """Building another label set into a half-built folder threw the earlier build's progress away silently."""
    stop_at_chunk(monkeypatch, 3, "ctrl-c")
    assert runner.invoke(app, build_args(tmp_path, LABELS)).exit_code == 130
    assert rows_done(tmp_path / "bank") == 8
    monkeypatch.undo()
    other = [*LABELS[:-1], "something else"]
    caplog.clear()
    r = runner.invoke(app, build_args(tmp_path, other))
    assert r.exit_code == 0, r.output
    msgs = said(caplog)
    assert len(msgs) == 1 and str(tmp_path / "bank") in msgs[0], msgs
    assert "build's 8 labels (of 12) are discarded" in msgs[0] and "other labels" in msgs[0]
    assert LabelBank.load(tmp_path / "bank").names == other


def test_restart_and_a_fresh_folder_say_nothing_of_an_earlier_build(tmp_path, monkeypatch, caplog):
    stop_at_chunk(monkeypatch, 2, "ctrl-c")
    assert runner.invoke(app, build_args(tmp_path, LABELS)).exit_code == 130
    monkeypatch.undo()
    caplog.clear()
    r = runner.invoke(app, build_args(tmp_path, [*LABELS, "more"], "--restart"))  # starting over, as asked
    assert r.exit_code == 0
    r = runner.invoke(app, build_args(tmp_path / "new", LABELS))
    assert r.exit_code == 0
    assert not said(caplog)


def test_replacing_a_finished_bank_resumes_beside_it_and_says_so(tmp_path, monkeypatch, caplog):
    """A bank replacing a finished one is built beside it (.bank.building): a resumed replacement says so too."""
    assert runner.invoke(app, build_args(tmp_path, LABELS)).exit_code == 0
    other = [*LABELS, "one more"]
    stop_at_chunk(monkeypatch, 2, "ctrl-c")
    assert runner.invoke(app, build_args(tmp_path, other)).exit_code == 130
    monkeypatch.undo()
    caplog.clear()
    r = runner.invoke(app, build_args(tmp_path, other))
    assert r.exit_code == 0 and [m for m in said(caplog) if "resuming at 4 of 13 labels" in m and ".bank.building" in m]
    # the finished bank of these labels, with a replacement of others left half-built beside it: kept, and said
    # (session 37: it stayed hidden beside the bank without a word)
    stop_at_chunk(monkeypatch, 2, "ctrl-c")
    assert runner.invoke(app, build_args(tmp_path, LABELS)).exit_code == 130
    monkeypatch.undo()
    caplog.clear()
    r = runner.invoke(app, build_args(tmp_path, other))
    assert r.exit_code == 0 and [m for m in said(caplog) if "unfinished build of other labels" in m], said(caplog)


def test_a_build_stopped_before_it_starts_does_not_claim_an_earlier_builds_rows(tmp_path, monkeypatch):
    """A build of other labels stopped before it started said "interrupted at 8 of 5 labels": the rows
    of the earlier, interrupted build in the folder, which this one would have discarded."""
    stop_at_chunk(monkeypatch, 3, "ctrl-c")
    assert runner.invoke(app, build_args(tmp_path, LABELS)).exit_code == 130
    monkeypatch.undo()

    def stopped(*a, **k):  # Ctrl-C while the model loads, before the bank's writer is made
        raise KeyboardInterrupt

    monkeypatch.setattr(BiEncoder, "encode_labels_to", stopped)
    r = runner.invoke(app, build_args(tmp_path, LABELS[:5]))
    assert r.exit_code == 130 and "interrupted: the labels encoded so far are kept" in r.stderr, r.stderr
    assert rows_done(tmp_path / "bank", 5) == 0 and rows_done(tmp_path / "bank", 12) == 8
