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

import os
import threading
import weakref
from typing import Any

_LOCKS: weakref.WeakSet[Any] = weakref.WeakSet()
"""Every live lock to reset in a forked child."""


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
