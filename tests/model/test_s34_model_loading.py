"""Loading models from several threads at once, and after an interrupted load (session 34 walkthrough)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from _conformance import FIXTURES

from glinker.errors import ModelError
from glinker.model import BiEncoder

RACE = """
import sys, threading
from glinker.model import BiEncoder
out = []
def go():
    try:
        BiEncoder.from_pretrained(sys.argv[1]); out.append("ok")
    except Exception as e:
        out.append(f"{type(e).__name__}: {e}")
ts = [threading.Thread(target=go) for _ in range(3)]
[t.start() for t in ts]; [t.join() for t in ts]
print(out)
"""


def test_first_loads_on_several_threads_at_once_all_succeed():
    """transformers imports its classes lazily and not thread-safely: in a fresh process, threads loading their first
    model at once failed with "cannot import name 'AutoTokenizer'" (a service's first requests arriving together)."""
    r = subprocess.run([sys.executable, "-c", RACE, str(FIXTURES / "modernbert")], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "['ok', 'ok', 'ok']", r.stdout


def test_a_load_failing_after_an_interrupted_one_says_to_restart(monkeypatch):
    from glinker.locks import LOAD_INTERRUPTED, model_loading

    with pytest.raises(KeyboardInterrupt), model_loading():  # Ctrl-C while a load imports torch/transformers
        raise KeyboardInterrupt
    assert LOAD_INTERRUPTED.is_set()
    try:
        def half_imported(*a, **k):
            raise RuntimeError("Only a single TORCH_LIBRARY can be used to register the namespace prims")

        monkeypatch.setattr(BiEncoder, "_load", classmethod(half_imported))
        with pytest.raises(ModelError) as e:
            BiEncoder.from_pretrained(str(FIXTURES / "modernbert"))
        assert "TORCH_LIBRARY" in e.value.message and "restart the Python process" in e.value.fix
    finally:
        LOAD_INTERRUPTED.clear()
