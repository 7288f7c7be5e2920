"""A process forked while another of its threads holds one of glinker's locks (a batch running, a model tokenizing,
a cache being read: gunicorn --preload, multiprocessing's "fork", os.fork) gives a child in which every such lock is
free: its first ``link()`` / ``predict()`` runs instead of waiting forever for a thread the child does not have. The
same holds for a KB read in progress (the child's store opens a SQLite connection of its own) and for the model's
eval-mode switch (the calls of threads not in the child end there).

Each test forks: the child does its part and leaves with os._exit (0: it could, 1: it could not, 2: an error), under
an alarm; the parent waits for it with a timeout and kills it, so a lock left held fails the test, never hangs it."""

from __future__ import annotations

import copy
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager

import pytest

from glinker.locks import fork_safe, fork_safe_lock
from glinker.pipeline import Pipeline, loads_spec

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(os, "fork"), reason="os.fork: Linux only"),
    # Python 3.12+ warns about any fork of a process with threads: forking with a thread in a batch is the point
    pytest.mark.filterwarnings("ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning"),
]

CHILD_TRY_S = 2.0  # how long the child tries to take a lock
CHILD_ALARM_S = 20  # the child is killed (SIGALRM) after this, wherever it waits
PARENT_WAIT_S = 40.0  # the parent kills a child still running after this

REGEX = """name: years
settings: {batch_size: 4}
stages:
  years: {type: regex_mentions, patterns: {year: '\\b\\d{4}\\b'}}
"""


def _wait(pid: int) -> int | None:
    """The child's exit code (negative: the signal that ended it); None when it was still running at the deadline
    (it is killed then)."""
    deadline = time.monotonic() + PARENT_WAIT_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.01)


def _in_child(work) -> int | None:
    """Fork; the child runs ``work()`` and exits 0 when it returns True, 1 when False, 2 on an error. Returns the
    child's exit code as :func:`_wait` does."""
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        code = 2
        try:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(CHILD_ALARM_S)
            code = 0 if work() else 1
        except BaseException:  # noqa: BLE001 - whatever it is, the child must leave here, with code 2
            traceback.print_exc()
        finally:
            os._exit(code)
    return _wait(pid)


@contextmanager
def _in_another_thread(target, ready, stop):
    """``target`` runs in another thread, which has set ``ready`` when the block starts; ``stop()`` after the block
    makes it end, and it has."""
    t = threading.Thread(target=target, daemon=True)
    t.start()
    try:
        assert ready.wait(10)
        yield
    finally:
        stop()
        t.join(10)
        assert not t.is_alive()


@contextmanager
def _held_elsewhere(lock):
    """Another thread holds ``lock`` (a context manager) for the whole block."""
    ready, done = threading.Event(), threading.Event()

    def hold():
        with lock:
            ready.set()
            done.wait(PARENT_WAIT_S * 2)

    with _in_another_thread(hold, ready, done.set):
        yield


def _takes(lock) -> bool:
    """In the child: the lock can be taken (and released) within CHILD_TRY_S."""
    if not lock.acquire(timeout=CHILD_TRY_S):
        return False
    lock.release()
    return True


# ---- every kind of glinker lock ----------------------------------------------------------------------------------

def _run_locks():
    from glinker.pipeline import runner

    return runner._RUN_LOCKS


def _pipeline_run_lock():
    return Pipeline(loads_spec(REGEX))._lock


def _context_resource_lock():
    return Pipeline(loads_spec(REGEX)).context._lock  # PipelineContext.resource: a model or KB loading


def _mode_lock():
    from glinker.model import biencoder

    return biencoder._MODE_LOCK


def _tokenizer_lock():
    from glinker.model import BiEncoder

    return object.__new__(BiEncoder)._tokenizing  # made on first use by an object built without __init__


def _copied_model_tokenizer_lock():
    from glinker.model import BiEncoder

    model = object.__new__(BiEncoder)
    model.__dict__.update(max_len=64, _tok_lock=fork_safe_lock())
    return copy.deepcopy(model)._tokenizing  # a copy gets its own lock (__setstate__)


def _loaded_models_lock():
    from glinker.stages import resources

    return resources._LOADED_MODELS_LOCK


def _entity_cache_lock():
    from glinker.stages.resources import EntityCache

    return EntityCache(kb=None)._lock


def _entity_vectors_lock():
    from glinker.stages.resources import EntityVectors

    return EntityVectors(kb=None)._lock


def _window_cache_lock():
    from glinker.stages.resources import WindowCache

    return WindowCache()._lock


LOCKS = [_run_locks, _pipeline_run_lock, _context_resource_lock, _mode_lock, _tokenizer_lock,
         _copied_model_tokenizer_lock, _loaded_models_lock, _entity_cache_lock, _entity_vectors_lock,
         _window_cache_lock, fork_safe_lock]


@pytest.mark.parametrize("make", LOCKS, ids=[f.__name__.strip("_") for f in LOCKS])
def test_a_lock_held_by_another_thread_is_free_in_a_forked_child(make):
    lock = make()
    with _held_elsewhere(lock):
        code = _in_child(lambda: _takes(lock))
        assert not lock.acquire(blocking=False), "the parent's holder lost its lock"
    assert code == 0, {1: "the child could not take the lock", 2: "the child failed", None: "the child hung"}.get(
        code, f"the child ended with {code}")
    assert _takes(lock)  # and the parent's is free again once its holder let go


def test_a_lock_the_forking_thread_holds_stays_its_own_in_the_child():
    """The thread that forks goes on in the child inside its ``with`` block: the lock stays held by it there (another
    thread of the child waits for it), and its release at the end of the block is no error."""
    lock = fork_safe_lock()

    def child():
        if not lock._is_owned():
            return False
        got = []
        t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=0.2)))
        t.start()
        t.join(5)
        if got != [False]:
            return False
        lock.release()
        return _takes(lock)

    with lock, lock:  # held twice (re-entrant), here and in the child
        code = _in_child(child)
    assert code == 0, code


def test_only_re_entrant_locks_are_registered_and_pickling_is_an_rlocks():
    with pytest.raises(TypeError, match="RLock"):
        fork_safe(threading.Lock())  # a plain lock cannot tell who holds it
    lock = fork_safe_lock()
    assert type(lock) is type(threading.RLock())  # nothing added to acquire and release
    with pytest.raises(TypeError):
        pickle.dumps(lock)  # as any RLock; a model or cache holding one is copied by its own rules
    with lock:
        assert lock.acquire(timeout=1)  # re-entrant
        lock.release()


# ---- end to end -------------------------------------------------------------------------------------------------

def test_a_child_forked_in_the_middle_of_a_batch_links():
    """A pipeline's batch runs on a thread (stopped inside its stage) when the process forks: the child links with
    its copy of the pipeline at once."""
    p = Pipeline(loads_spec(REGEX))
    stage = p.stages["years"]
    real = stage.run
    parent = os.getpid()
    inside, go_on = threading.Event(), threading.Event()

    def held_up(documents, inputs):
        if os.getpid() == parent:
            inside.set()
            go_on.wait(PARENT_WAIT_S * 2)
        return real(documents, inputs)

    stage.run = held_up
    out: list = []
    t = threading.Thread(target=lambda: out.append(p.link(["in 1999"])), name="batch", daemon=True)
    t.start()
    try:
        assert inside.wait(10)

        def child():
            got = p.link(["in 2001 and 2002", "none"])
            return [[m.text for m in ms] for ms in got] == [["2001", "2002"], []]

        code = _in_child(child)
    finally:
        go_on.set()
        t.join(10)
    assert code == 0, {1: "wrong links in the child", 2: "the child failed", None: "the child hung",
                       -signal.SIGALRM: "the child hung"}.get(code, f"the child ended with {code}")
    assert [[m.text for m in ms] for ms in out[0]] == [["1999"]]  # the parent's batch finished as usual
    assert p.link(["in 2003"])[0][0].text == "2003"


def test_a_child_forked_while_a_model_tokenizes_predicts(tmp_path):
    """A thread of the parent is inside the model's tokenizer lock and the eval-mode switch when the process forks:
    the child predicts with its copy of the model."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from glinker.model import BiEncoder, biencoder
    from glinker.model.testing import build_tiny_checkpoint

    model = BiEncoder.from_pretrained(build_tiny_checkpoint(tmp_path / "tiny", text_encoder="bert"))

    @contextmanager
    def both():
        with model._tokenizing, biencoder._MODE_LOCK:
            yield

    def child():
        import torch

        torch.set_num_threads(1)  # torch's own thread pool does not survive fork (docs/linking.md)
        got = model.predict(["Steve Jobs founded Apple in California."], ["person", "organization"],
                            threshold=0.0)
        return len(got) == 1 and isinstance(got[0], list)

    with _held_elsewhere(both()):
        code = _in_child(child)
    assert code == 0, {1: "a wrong prediction in the child", 2: "the child failed", None: "the child hung",
                       -signal.SIGALRM: "the child hung"}.get(code, f"the child ended with {code}")


# ---- the KB store: SQLite's own mutex on its connection -----------------------------------------------------------

KB_RECORDS = [{"id": "Q1", "label": "IBM"}, {"id": "Q2", "label": "Barack Obama", "aliases": ["Obama"]}]
ALIAS_SPEC = "name: t\nkb: {kb}\nstages:\n  m: {{type: alias_mentions}}\n  a: {{type: alias_candidates, input: m}}\n"
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c WHERE inside(x)"


@contextmanager
def _inside_a_read(store, write: bool = False):
    """Another thread is inside a call on the store's SQLite connection (a query that runs until interrupted; with
    ``write``, inside a write transaction) for the whole block: SQLite holds the connection's mutex meanwhile. The
    thread waits in the query's first call of a function of ours, so that it holds no other lock of SQLite's (a fork
    while it allocates memory would give the child SQLite's memory lock held: see docs/linking.md)."""
    import sqlite3

    inside, go_on = threading.Event(), threading.Event()

    def first_row(x):
        if x == 1:
            inside.set()
            go_on.wait(PARENT_WAIT_S * 2)
        return 1

    db = store.db
    db.create_function("inside", 1, first_row)

    def read():
        try:
            if write:
                with store.transaction():
                    db.execute("INSERT INTO meta(key, value) VALUES ('held', '1')")
                    db.execute(ENDLESS).fetchone()
            else:
                db.execute(ENDLESS).fetchone()
        except sqlite3.OperationalError:  # interrupted
            pass

    def stop():
        go_on.set()
        db.interrupt()

    with _in_another_thread(read, inside, stop):
        yield


def _kb(tmp_path):
    from tests.kb.conftest import build_records_kb

    return build_records_kb(KB_RECORDS, tmp_path)


def _linked(p, text: str) -> list[tuple[str, list[str]]]:
    return [(mc.mention.text, [c.entity_id for c in mc.candidates]) for mc in p.link([text])[0]]


def _code(code):
    return {1: "wrong answers in the child", 2: "the child failed", None: "the child hung",
            -signal.SIGALRM: "the child hung"}.get(code, f"the child ended with {code}")


def test_a_child_forked_while_a_thread_reads_the_kb_links(tmp_path):
    """A batch's KB look-ups are running on a thread (SQLite holds the connection's own mutex, which no glinker lock
    can reset) when the process forks: the child's store has a connection of its own, and the child links."""
    from glinker.kb import store as store_module

    p = Pipeline(loads_spec(ALIAS_SPEC.format(kb=_kb(tmp_path))))
    assert _linked(p, "IBM rose.") == [("IBM", ["Q1"])]
    store = p.stages["a"].kb.store
    parents = store.db

    def child():
        return (store.lookup_alias("Barack Obama") == ["Q2"]
                and _linked(p, "Obama met IBM.") == [("Obama", ["Q2"]), ("IBM", ["Q1"])]
                and store.db is not parents and parents in store_module._INHERITED  # kept, never closed in the child
                and store.readonly and store.db.execute("PRAGMA cache_size").fetchone()[0] == -65536)

    with _inside_a_read(store):
        code = _in_child(child)
    assert code == 0, _code(code)
    assert store.db is parents and parents not in store_module._INHERITED  # the parent's is its own, untouched
    assert _linked(p, "Barack Obama spoke.") == [("Barack Obama", ["Q2"])]


def test_a_forked_child_opens_a_kb_at_its_first_use_only(tmp_path):
    """Nothing is opened in a child that reads no KB (a worker doing other work, closing its pipeline): SQLite is
    not called there at all; a store it closes unused is closed."""
    import sqlite3

    from glinker.kb import KB
    from glinker.kb.store import _OpenOnUse

    kb = KB.open(_kb(tmp_path))
    store = kb.store
    parents = store.db

    def child():
        unopened = isinstance(store.db, _OpenOnUse)
        kb.close()
        try:
            store.lookup_alias("IBM")
        except sqlite3.ProgrammingError as e:
            return unopened and "closed" in str(e)
        return False

    with _inside_a_read(store):
        code = _in_child(child)
    assert code == 0, _code(code)
    assert store.db is parents and store.lookup_alias("IBM") == ["Q1"]
    kb.close()


def test_a_writable_store_in_a_forked_child(tmp_path):
    """A writable store (an update) is opened again in the child too: the child writes it (the parent sees the
    write), unless another thread of the parent was writing to it at the fork: then the child reads it and its
    write fails with "database is locked" once its busy timeout is over (SQLite's record of the parent's write lock
    comes with the fork), never hangs."""
    import sqlite3

    from glinker.kb import KB
    from glinker.types import Entity

    kb = KB.open(_kb(tmp_path), writable=True)
    store = kb.store

    def child_writes():
        ok = store.lookup_alias("IBM") == ["Q1"] and store.db.execute("PRAGMA synchronous").fetchone()[0] == 1
        store.upsert([Entity(id="Q3", label="Lyon")], kb.template, track_pending=False)
        store.close()  # checkpoints what it can; leaves the parent's connection alone
        return ok

    with _inside_a_read(store):
        code = _in_child(child_writes)
    assert code == 0, _code(code)
    assert store.lookup_alias("Lyon") == ["Q3"]
    assert store.db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    def child_cannot_write():
        store.db.execute("PRAGMA busy_timeout=100")
        if store.lookup_alias("Lyon") != ["Q3"]:
            return False
        try:
            store.upsert([Entity(id="Q4", label="Nice")], kb.template, track_pending=False)
        except sqlite3.OperationalError as e:
            return "locked" in str(e)
        return False

    with _inside_a_read(store, write=True):
        code = _in_child(child_cannot_write)
    assert code == 0, _code(code)
    assert store.lookup_alias("Nice") == [] and store.get_meta("held") is None  # (the parent's write was interrupted)
    kb.close()


def test_a_forked_child_keeps_the_connection_to_a_store_whose_file_is_gone(tmp_path):
    """A KB updated since the parent opened it (its older generations are removed): the child cannot open the file
    again and reads through the parent's connection, as before, with a warning. A closed store is not opened."""
    import logging

    from glinker.kb import KB

    kb = KB.open(_kb(tmp_path))
    parents = kb.store.db
    kb.store.path.unlink()  # the open connection still reads it
    (tmp_path / "other").mkdir()
    closed = KB.open(_kb(tmp_path / "other"))
    closed.close()
    said: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: said.append(record.getMessage())
    logger = logging.getLogger("glinker.kb.store")
    logger.addHandler(handler)

    def child():
        return (kb.store.lookup_alias("Obama") == ["Q2"] and kb.store.db is parents and len(said) == 1
                and "cannot open the entity store again in this forked child" in said[0])

    try:
        code = _in_child(child)
    finally:
        logger.removeHandler(handler)
    assert code == 0, _code(code)
    from glinker.kb.store import _STORES

    assert closed.store not in _STORES and kb.store in _STORES
    kb.close()
    assert kb.store not in _STORES


# ---- the model's eval-mode switch: calls counted per thread --------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from glinker.model import BiEncoder
    from glinker.model.testing import build_tiny_checkpoint

    return BiEncoder.from_pretrained(build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny",
                                                           text_encoder="bert"))


@contextmanager
def _predicting(model):
    """Another thread is inside the model's eval-mode switch (a predict() call) for the whole block."""
    with _held_elsewhere(model._eval_mode()):
        yield


def _modes(model) -> dict[str, bool]:
    return {n: m.training for n, m in model.net.named_modules()}


@pytest.mark.parametrize("training", [False, True], ids=["eval", "training"])
def test_a_child_forked_while_a_thread_predicts_switches_eval_mode_itself(tiny_model, training):
    """The parent's model in eval mode (or training mode, which the other thread's call switched off) when it forks
    while a thread predicts: the call of that thread, not in the child, is forgotten there, so the child's model is
    in the mode the parent's returns to, and the child's own calls switch eval mode on and off as usual (it ran
    with dropout on after model.train())."""
    model = tiny_model
    model.train(training)
    try:
        with _predicting(model):
            assert not model.net.training

            def child():
                if model.net.training != training:  # the vanished call's modes given back at once
                    return False
                model.train()  # the child fine-tunes, or its caller sets training mode
                with model._eval_mode():
                    inside = not any(_modes(model).values())
                    with model._eval_mode():  # nested, as predict() inside another inference call
                        pass
                    inside = inside and not model.net.training
                return inside and all(_modes(model).values())

            code = _in_child(child)
            assert not model.net.training  # the parent's thread is still inside
        assert code == 0, _code(code)
        assert model.net.training == training
    finally:
        model.eval()


def test_the_forking_threads_own_eval_mode_call_goes_on_in_the_child(tiny_model):
    """The thread that forks is itself inside the switch (with another thread): in the child its call goes on in
    eval mode and gives the training modes back when it ends."""
    model = tiny_model
    model.train()
    pid = None
    try:
        with _predicting(model):
            with model._eval_mode():
                pid = os.fork()
                if pid == 0:
                    signal.signal(signal.SIGALRM, signal.SIG_DFL)
                    signal.alarm(CHILD_ALARM_S)
                    inside = not any(_modes(model).values())
            if pid == 0:  # the child, out of its call: the modes are back
                os._exit(0 if inside and all(_modes(model).values()) else 1)
            assert not model.net.training  # the parent's other thread is still inside
        assert model.net.training
    finally:
        if pid == 0:  # the child: never back into pytest
            os._exit(2)
        model.eval()
    code = _wait(pid)
    assert code == 0, _code(code)


def test_a_copy_made_while_a_thread_predicts_has_the_training_modes(tiny_model):
    """deepcopy and pickle of a model some thread is predicting with: the copy has none of its calls, and the
    training modes they switched off."""
    import torch

    model = tiny_model
    model.train()
    model.net.token_rep_layer.labels_encoder.eval()  # a frozen part stays in eval mode
    modes = _modes(model)
    try:
        with _predicting(model):
            copies = [copy.deepcopy(model), pickle.loads(pickle.dumps(model))]
        for c in copies:
            assert _modes(c) == modes
            with c._eval_mode():
                assert not c.net.training
            assert _modes(c) == modes
            assert c._tokenizing is not model._tokenizing
        with torch.no_grad():
            assert all(torch.equal(a, b) for a, b in zip(model.net.parameters(), copies[1].net.parameters()))
        assert _modes(model) == modes
    finally:
        model.eval()


def test_a_shallow_copy_made_while_a_thread_predicts_leaves_the_shared_network_in_eval_mode(tiny_model):
    """copy.copy shares the network: making it while another thread predicts switched that prediction's network
    back to training mode (dropout on) halfway; the copy shares the record of the calls instead."""
    model = tiny_model
    model.train()
    modes = _modes(model)
    try:
        with _predicting(model):
            c = copy.copy(model)
            assert not any(m.training for m in model.net.modules())
            assert c.net is model.net and c._tokenizing is model._tokenizing
            with c._eval_mode():
                assert not c.net.training
            assert not any(m.training for m in model.net.modules())  # the other thread's call is still on
        assert _modes(model) == modes
    finally:
        model.eval()
