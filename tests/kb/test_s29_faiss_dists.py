"""faiss-cpu (a core dependency) and faiss-gpu (the ``gpu`` extra) write the same ``faiss`` package: with both
installed, the first faiss import says so and how to keep one."""

from __future__ import annotations

import logging

import glinker.kb.index as index


class _Dist:
    def __init__(self, name: str) -> None:
        self.metadata = {"Name": name} if name else {}


def _with(monkeypatch, names):
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "distributions", lambda: [_Dist(n) for n in names])
    monkeypatch.setattr(index, "_FAISS_CHECKED", False)


def test_both_faiss_distributions_are_warned_about_once(monkeypatch, caplog) -> None:
    _with(monkeypatch, ["numpy", "", "faiss-cpu", "faiss_gpu_cu12"])  # "": a broken .dist-info without a Name
    with caplog.at_level(logging.WARNING, logger="glinker.kb.index"):
        assert index.import_faiss("m", "w", "f") is not None
        index.import_faiss("m", "w", "f")
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "faiss-cpu and faiss-gpu-cu12 are both installed" in said[0]
    assert "pip uninstall -y faiss-cpu" in said[0]


def test_one_faiss_distribution_is_quiet(monkeypatch, caplog) -> None:
    _with(monkeypatch, ["numpy", "faiss-cpu"])
    with caplog.at_level(logging.WARNING, logger="glinker.kb.index"):
        index.import_faiss("m", "w", "f")
    assert not caplog.records
