"""One BiEncoder used from several threads at once: its tokenizer calls never overlap (a Hugging Face fast
tokenizer's padding and truncation are state that each call sets, and an unpadded call between another thread's
setting and encoding made "Unable to create tensor ... padding=True"), and every thread gets what it gets alone."""

from __future__ import annotations

import copy
import threading
import time
from concurrent.futures import ThreadPoolExecutor

LABELS = ["person", "location", "organization"]
WORDS = ["steve", "jobs", "founded", "apple", "in", "california", "while", "john", "smith", "lived", "in", "paris",
         ",", "france", "near", "berlin"]
# texts of many lengths (padding differs from batch to batch), two of them longer than a window
TEXTS = [" ".join(WORDS[: 2 + (i * 5) % (len(WORDS) - 2)]) for i in range(12)] + [" ".join(WORDS * 5)] * 2


class _Overlaps:
    """Counts the calls into the tokenizers it wraps that run at the same time as another one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.most = 0
        self.calls = 0

    def wrap(self, tok):
        counter = self

        class Watched:
            def __call__(self, *a, **k):
                with counter.lock:
                    counter.active += 1
                    counter.calls += 1
                    counter.most = max(counter.most, counter.active)
                try:
                    time.sleep(0.002)  # widens the window in which another thread would enter
                    return tok(*a, **k)
                finally:
                    with counter.lock:
                        counter.active -= 1

            def __getattr__(self, name):
                return getattr(tok, name)

        return Watched()


def _calls(model, bank):
    """What the threads do: predict (window planning + padded encoding), with labels encoded per call or from a
    bank, span vectors, and label/entity encoding."""
    return [
        lambda i: model.predict([TEXTS[i % 14], TEXTS[(i * 3 + 1) % 14]], LABELS, threshold=0.3),
        lambda i: model.predict([TEXTS[(i * 5 + 2) % 14]], bank, threshold=0.3, batch_size=2),
        lambda i: [v.tolist() for v in model.span_vectors([TEXTS[i % 12]], [[(0, 5)]])],
        lambda i: model.encode_entities([f"{WORDS[i % 16]}: {' '.join(WORDS[: i % 9 + 1])}"]).tolist(),
    ]


def test_tokenizer_calls_of_one_model_never_overlap(model, monkeypatch):
    bank = model.encode_labels(LABELS)
    seen = _Overlaps()
    monkeypatch.setattr(model, "tokenizer", seen.wrap(model.tokenizer))
    monkeypatch.setattr(model, "labels_tokenizer", seen.wrap(model.labels_tokenizer))
    calls = _calls(model, bank)
    with ThreadPoolExecutor(6) as ex:
        futures = [ex.submit(calls[i % len(calls)], i) for i in range(24)]
        for f in futures:
            f.result()
    assert seen.calls >= 24
    assert seen.most == 1, f"{seen.most} tokenizer calls ran at once"


def test_threads_get_what_they_get_alone(model):
    """The real tokenizers, no sleep: a short stress that failed about once in a hundred calls before."""
    bank = model.encode_labels(LABELS)
    calls = _calls(model, bank)
    tasks = [(i % len(calls), i) for i in range(64)]
    alone = [calls[k](i) for k, i in tasks]
    for _ in range(2):
        with ThreadPoolExecutor(8) as ex:
            got = [f.result() for f in [ex.submit(calls[k], i) for k, i in tasks]]
        assert got == alone


def test_a_model_copy_has_its_own_lock(model):
    twin = copy.deepcopy(model)
    assert twin._tokenizing is not model._tokenizing
    assert twin.predict(TEXTS[:3], LABELS, threshold=0.3) == model.predict(TEXTS[:3], LABELS, threshold=0.3)
    with model._tokenizing:  # re-entrant: a caller holding it can still predict on its thread
        assert model.predict(TEXTS[:1], LABELS, threshold=0.3) is not None

