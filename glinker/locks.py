"""Locks that start free in a forked child.

A process that forks (gunicorn ``--preload``, ``multiprocessing`` with the ``"fork"`` start method, ``os.fork()``)
while another of its threads holds a lock gives the child that lock held by a thread the child does not have: the
child's first batch would wait for it forever. Every lock glinker takes is made by :func:`fork_safe_lock` (or an
existing one registered with :func:`fork_safe`): a plain ``threading.RLock``, so ``with``, ``acquire(blocking,
timeout)``, ``release``, re-entrancy, copying and pickling are the RLock's own and nothing is added to an acquire,
that this module also keeps in a weak set. After a fork, in the child (``os.register_at_fork``, while the child has
one thread), each such lock held by another thread than the one that forked is reset to free. A lock the forking
thread holds stays held: that thread goes on in the child inside its ``with`` block and releases it there as in the
parent (which is why every glinker lock is re-entrant: an RLock knows its owner, a plain lock does not).

What a reset lock guarded is left as the vanished thread left it, between two bytecodes; glinker's critical
sections leave their data usable then (an LRU cache one entry over its size, a tokenizer whose padding settings
every call sets again, a batch's window cache, emptied before each batch).

Forks that skip Python's at-fork hooks (a C library calling ``fork()`` itself, without ``PyOS_AfterFork_Child``)
skip this reset, as they skip the ``threading`` module's own. Imports nothing heavy (``import glinker`` stays light).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

_LOCKS: weakref.WeakSet[Any] = weakref.WeakSet()
"""Every live lock to reset in a forked child."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine runs (another user's process counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def fork_safe(lock: Any) -> Any:
    """Register ``lock`` (a ``threading.RLock``) to start free in a forked child unless the forking thread holds it;
    returns it. Registering twice is harmless; the lock is forgotten when it is garbage."""
    if not (hasattr(lock, "_is_owned") and hasattr(lock, "_at_fork_reinit")):
        raise TypeError(f"fork_safe() takes a threading.RLock, not {type(lock).__name__}")
    _LOCKS.add(lock)
    return lock


def fork_safe_lock() -> Any:
    """A new ``threading.RLock`` that starts free in a forked child (see the module's docstring)."""
    return fork_safe(threading.RLock())


def _reset_in_child() -> None:
    """Run in the child right after ``os.fork()``, before any other of its code (it has one thread then)."""
    for lock in list(_LOCKS):
        if not lock._is_owned():  # held by a thread the child does not have, or free
            lock._at_fork_reinit()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_reset_in_child)


# ---- torch after fork -------------------------------------------------------------------------------------------
# torch's CPU thread pool (GNU OpenMP in the Linux wheels) does not survive fork(): a child forked after the parent
# ran torch with more than one thread hangs in its first parallel operation. The runner's batches and the
# BiEncoder's inference calls run in torch_guarded: the threads they ran torch with are noted, and a child forked
# after that limits itself to one torch thread before its first batch or call (which then does not hang), and says
# so, once.
_TORCH_THREADS_USED = 0  # the most torch threads a batch (or a model call) of this process ran with
_TORCH_PID = 0  # the process that ran them
_FORKED_AFTER_TORCH = False  # this process was forked after its parent ran batches with several torch threads
_FORK_WARNED = False
_FORK_HOOKED = False


def _after_fork_in_child() -> None:
    """In the child, in the thread that forked (the one whose torch pool is gone): one torch thread from here on.
    Done here and not at the child's first glinker call, which may come from another thread: torch's thread count
    is per thread once a thread has run torch, so setting it there would leave this thread's broken pool in use."""
    global _FORKED_AFTER_TORCH, _FORK_WARNED
    if _TORCH_THREADS_USED > 1:
        _FORKED_AFTER_TORCH = True
        _FORK_WARNED = False
        torch = sys.modules.get("torch")
        if torch is not None and os.getpid() != _TORCH_PID and torch.get_num_threads() > 1:
            torch.set_num_threads(1)


def _note_torch_threads() -> None:
    """After a batch: remember how many threads torch ran with (torch already imported by the stages, or none)."""
    global _TORCH_THREADS_USED, _TORCH_PID, _FORK_HOOKED
    torch = sys.modules.get("torch")
    if torch is None:
        return
    _TORCH_THREADS_USED = max(_TORCH_THREADS_USED, torch.get_num_threads())
    _TORCH_PID = os.getpid()
    if not _FORK_HOOKED and hasattr(os, "register_at_fork"):
        _FORK_HOOKED = True
        os.register_at_fork(after_in_child=_after_fork_in_child)


def _warn_if_forked() -> None:
    """Before a batch (or a model call) in a forked child: once, when torch would hang here (see above), run torch
    with one thread from now on, and say so."""
    global _FORK_WARNED
    if not _FORKED_AFTER_TORCH or _FORK_WARNED:
        return
    _FORK_WARNED = True
    torch = sys.modules.get("torch")
    if torch is not None:
        # the forking thread was set to one thread at the fork (_after_fork_in_child); another thread calling first
        # gets one too. Never in the process that ran torch itself: its pool is fine
        if os.getpid() != _TORCH_PID and torch.get_num_threads() > 1:
            torch.set_num_threads(1)
        log.warning("this process was forked from one that had run torch with %d threads: torch's thread pool does "
                    "not survive fork, and would hang here, so this process now runs torch with one thread "
                    "(torch.set_num_threads(1)). To use more, load and use the pipeline or model only after the fork "
                    "(the 'spawn' start method; gunicorn without --preload), or call torch.set_num_threads(1) in the "
                    "parent before it forks (docs/linking.md, 'Using glinker in a service')", _TORCH_THREADS_USED)


@contextmanager
def torch_guarded() -> Iterator[None]:
    """Around glinker's own torch work (a pipeline's batch or warm-up, a BiEncoder's predict, encode and span
    vectors): before it, a forked child's one-thread limit (:func:`_warn_if_forked`); after it, the threads it ran
    with are noted for a child forked later."""
    _warn_if_forked()
    try:
        yield
    finally:
        _note_torch_threads()


MODEL_LOAD_LOCK = fork_safe_lock()
"""Held while a model is loaded or a shipped model materialised (:func:`model_loading`): transformers imports its
classes lazily and not thread-safely, so two threads loading at once failed with "cannot import name
'AutoTokenizer'"."""

LOAD_INTERRUPTED = threading.Event()
"""Set when a model load was interrupted (Ctrl-C, a KeyboardInterrupt from a notebook's "interrupt kernel"): an import
of torch or transformers cut halfway cannot be completed in the same process, so later failures say to restart."""


@contextmanager
def model_loading() -> Iterator[None]:
    """Hold :data:`MODEL_LOAD_LOCK`; a KeyboardInterrupt on the way out sets :data:`LOAD_INTERRUPTED`."""
    with MODEL_LOAD_LOCK:
        try:
            yield
        except KeyboardInterrupt:
            LOAD_INTERRUPTED.set()
            raise


RESTART_FIX = ("an earlier model load in this process was interrupted (Ctrl-C) while it imported torch or "
               "transformers, which cannot be imported again once cut halfway: restart the Python process (the "
               "notebook's kernel)")
"""The fix said of a load failing after :data:`LOAD_INTERRUPTED` was set."""
