"""The runner shared between threads and fed bad input: one batch at a time, every document checked before any
is linked, generated ids that are never another document's own, and a warning in a child forked after torch ran."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from glinker.errors import DataError
from glinker.pipeline import Pipeline, loads_spec
from glinker.types import Document

FAN = """name: fan
settings: {batch_size: 2}
stages:
  caps: {type: test_caps, min_length: 3}
  years: {type: regex_mentions, patterns: {year: '\\b(1[89]\\d\\d|20\\d\\d)\\b'}}
  merged: {type: merge_mentions, inputs: [caps, years], overlap: longest}
  summary: {type: test_summary, inputs: [caps, years, merged]}
output: summary
"""

REGEX = """name: years
settings: {batch_size: 4}
stages:
  years: {type: regex_mentions, patterns: {year: '\\b\\d{4}\\b'}}
"""


@pytest.fixture
def fan_pipeline(fresh_registry):
    return Pipeline(loads_spec(FAN, reg=fresh_registry))


def test_batches_of_one_pipeline_run_one_at_a_time(fan_pipeline):
    """Stages keep per-batch state (the window cache, a plugin's own), so batches asked for by several threads at
    once run in turn, each with the results it has alone."""
    stage = fan_pipeline.stages["caps"]
    real = stage.run
    state = {"active": 0, "most": 0}
    guard = threading.Lock()

    def watched(documents, inputs):
        with guard:
            state["active"] += 1
            state["most"] = max(state["most"], state["active"])
        try:
            time.sleep(0.005)
            return real(documents, inputs)
        finally:
            with guard:
                state["active"] -= 1

    stage.run = watched
    texts = [[f"Ada Lovelace wrote in {1800 + i} about Engine {i}.", f"In {1900 + i} Apollo landed."]
             for i in range(16)]
    alone = [fan_pipeline.link(t) for t in texts]
    with ThreadPoolExecutor(6) as ex:
        got = list(ex.map(fan_pipeline.link, texts))
    assert state["most"] == 1, f"{state['most']} batches ran at once"
    assert got == alone
    assert fan_pipeline.stats.batches == 32 and fan_pipeline.stats.documents == 64


def test_a_bad_document_fails_before_any_is_linked():
    p = Pipeline(loads_spec(REGEX))
    good = [f"text {i} of 1999" for i in range(9)]
    for bad, where in ((None, r"input\[9\]"), ({"id": "x"}, r"input\[9\]"), ({"text": "a", "meta": 3}, r"input\[9\]"),
                       ({"text": 7}, r"input\[9\]"), ("Paris \ud800 France", r"input\[9\]\.text"),
                       (b"bytes", r"input\[9\]")):
        with pytest.raises(DataError, match=where):
            p.link(good + [bad])
        with pytest.raises(DataError, match=where):
            p.link(iter(good + [bad]))  # any iterable: link() returns a list, so it reads the input whole first
        assert p.stats.documents == 0 and p.stats.batches == 0
    with pytest.raises(DataError, match=r"input\[1\]\.meta"):
        p.link(["fine", Document.model_construct(id=None, text="x", meta=5)])
    assert p.stats.documents == 0
    assert [len(r) for r in p.link(good)] == [1] * 9  # the pipeline is fine after it
    assert p.link(["", "   "]) == [[], []]  # empty texts are documents too


def test_generated_ids_are_never_an_own_id_of_the_same_call():
    p = Pipeline(loads_spec(REGEX))

    def ids(items):
        return [d.id for r in p.run(items) for d in r.documents]

    assert ids([{"id": "1", "text": "a"}, "b", "c", {"id": 0, "text": "d"}]) == ["1", "0#2", "1#2", "0"]
    assert ids(("e", "f")) == ["2", "3"]  # the numbers go on across calls
    given = Document(text="g")
    assert ids([given, {"text": "h", "id": "4"}]) == ["4#2", "4"]
    assert given.id is None  # the caller's Document is not changed
    # a stream is read as it is consumed: a generated id avoids the own ids read before it
    assert ids(x for x in [{"id": "5", "text": "i"}, "j"]) == ["5", "5#2"]


def test_link_returns_ids_and_results_in_order():
    p = Pipeline(loads_spec(REGEX))
    out = p.link([{"id": "1", "text": "in 1999"}, "in 2000 and 2001"])
    assert [[m.text for m in ms] for ms in out] == [["1999"], ["2000", "2001"]]


def test_a_child_forked_after_torch_ran_with_threads_warns_at_its_first_batch(monkeypatch, caplog):
    from glinker import locks as runner

    torch = pytest.importorskip("torch")
    p = Pipeline(loads_spec(REGEX))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    monkeypatch.setattr(runner, "_TORCH_THREADS_USED", 0)
    monkeypatch.setattr(runner, "_FORKED_AFTER_TORCH", False)
    monkeypatch.setattr(runner, "_FORK_HOOKED", True)  # no real at-fork hook from a test
    p.link(["in 1999"])
    assert runner._TORCH_THREADS_USED == 4
    with caplog.at_level(logging.WARNING, logger="glinker.locks"):
        p.link(["in 1999"])
        assert not caplog.records  # not forked: nothing said
        runner._after_fork_in_child()  # what os.fork() runs in the child
        p.link(["in 2000"])
        p.link(["in 2001"])
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "forked" in said[0] and "spawn" in said[0] and "set_num_threads(1)" in said[0]
    caplog.clear()
    monkeypatch.setattr(runner, "_TORCH_THREADS_USED", 1)  # the parent ran with one thread: a fork is safe
    monkeypatch.setattr(runner, "_FORKED_AFTER_TORCH", False)
    runner._after_fork_in_child()
    with caplog.at_level(logging.WARNING, logger="glinker.locks"):
        p.link(["in 1999"])
    assert not caplog.records


def test_close_waits_for_a_running_batch(fan_pipeline):
    stage = fan_pipeline.stages["caps"]
    real = stage.run
    started = threading.Event()
    events = []

    def slow(documents, inputs):
        started.set()
        time.sleep(0.1)
        events.append("batch done")
        return real(documents, inputs)

    stage.run = slow
    stage.close = lambda: events.append("closed")
    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(fan_pipeline.link, ["Ada Lovelace."])
        assert started.wait(5)
        fan_pipeline.close()  # waits for the batch: its stages are not closed under it
        assert fut.result()[0]["texts"] == ["Ada", "Lovelace"]
    assert events == ["batch done", "closed"]
