"""A process forked while another of its threads holds one of glinker's locks (a batch running, a model tokenizing,
a cache being read: gunicorn --preload, multiprocessing's "fork", os.fork) gives a child in which every such lock is
free: its first ``link()`` / ``predict()`` runs instead of waiting forever for a thread the child does not have.

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
def _held_elsewhere(lock):
    """Another thread holds ``lock`` (a context manager) for the whole block."""
    ready, done = threading.Event(), threading.Event()

    def hold():
        with lock:
            ready.set()
            done.wait(PARENT_WAIT_S * 2)

    t = threading.Thread(target=hold, name="holder", daemon=True)
    t.start()
    try:
        assert ready.wait(10)
        yield
    finally:
        done.set()
        t.join(10)


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
