"""Link statistics (how often a form the alias dictionary matches is a gold mention) and ``alias_mentions``'
``min_link_prob``: counted with the real matcher over annotated JSONL, stored in the real SQLite store, read back
by the real pipeline."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from glinker.cli import app
from glinker.eval.datasets import iter_el
from glinker.kb import KB
from glinker.kb.adapters import load_adapter
from glinker.kb.build import build_kb
from glinker.kb.kb import STORE, current_generation
from glinker.pipeline import Pipeline, loads_spec
from glinker.stages.mentions import count_link_stats

from .test_alias_counts import RECORDS, write_records

MONTH = {"id": "Q120", "label": "June", "description": "sixth month of the year"}


def doc(text: str, *names: str) -> dict:
    """An AIDA record whose gold mentions are the first occurrence of each name."""
    ms = []
    for n in names:
        s = text.index(n)
        ms.append({"start": s, "end": s + len(n), "mention": n, "wikidata_qid": None})
    return {"id": str(len(text)), "text": text, "mentions": ms}


CORPUS = [
    doc("England won in June.", "England"),
    doc("In June, Paris hosted England.", "Paris", "England"),
    doc("June was dry; England lost in June.", "England"),
    doc("Paris fell.", "Paris"),
]


@pytest.fixture()
def kb_and_corpus(tmp_path: Path) -> tuple[Path, Path]:
    build_kb(load_adapter("jsonl", str(write_records(tmp_path / "kb.jsonl", [*RECORDS, MONTH]))), tmp_path / "kb", None)
    corpus = tmp_path / "train.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in CORPUS), encoding="utf-8")
    return tmp_path / "kb", corpus


def test_counted_over_the_matchers_spans(kb_and_corpus: tuple[Path, Path]) -> None:
    kb, corpus = kb_and_corpus
    stats, n = count_link_stats(kb, iter_el(corpus))
    # "England" matched 3 times, a gold mention each time; "June" 4 times, never; "Paris" twice, both gold
    assert n == 4 and stats == {"england": (3, 3), "june": (0, 4), "paris": (2, 2)}


def test_stored_and_used_by_alias_mentions(kb_and_corpus: tuple[Path, Path]) -> None:
    kb, corpus = kb_and_corpus
    with KB.open(kb, writable=True) as k:
        k.set_link_stats(count_link_stats(kb, iter_el(corpus))[0], source=str(corpus))
    with KB.open(kb) as k:
        assert k.manifest.counts["link_stats"] == 3 and k.manifest.history[-1]["op"] == "link-stats"
        assert k.link_stats(["JUNE", "England", "Berlin"]) == {"JUNE": (0, 4), "England": (3, 3)}

    def mentions(extra: str) -> list[str]:
        p = Pipeline(loads_spec(f"name: t\nkb: {kb}\nstages:\n  m: {{type: alias_mentions{extra}}}\n"))
        return [m.text for m in p(["On June 3 England met Paris."])[0]]

    assert mentions("") == ["June", "England", "Paris"]  # off by default
    assert mentions(", min_link_prob: 0.1") == ["England", "Paris"]
    assert mentions(", min_link_prob: 0.1, link_prob_min_seen: 5") == ["June", "England", "Paris"]  # seen 4 < 5


def test_cli_replaces_statistics_and_old_stores_read_as_none(kb_and_corpus: tuple[Path, Path]) -> None:
    kb, corpus = kb_and_corpus
    res = CliRunner().invoke(app, ["kb", "link-stats", str(kb), "--data", str(corpus)])
    assert res.exit_code == 0, res.output
    assert "3 forms matched in 4 documents" in res.output and "1 seldom mentions" in res.output
    assert "'june' 0/4" in res.output and "england" not in res.output  # (3/3: no seldom mention, not listed)
    res = CliRunner().invoke(app, ["kb", "link-stats", str(kb), "--data", str(corpus), "--limit", "1"])
    with KB.open(kb) as k:  # replaced, not added to
        assert k.link_stats(["June", "Paris"]) == {"June": (0, 1)}
    res = CliRunner().invoke(app, ["kb", "link-stats", str(kb), "--data", str(kb / "missing.jsonl")])
    flat = "".join(c for c in res.output if c.isalnum() or c in "._-")  # the error box wraps long paths
    assert res.exit_code != 0 and "nosuchfile" in flat and "missing.jsonl" in flat
    # a store of an earlier release has no such table: no statistics, nothing filtered
    db = sqlite3.connect(current_generation(kb) / STORE)
    db.execute("DROP TABLE link_stats")
    db.commit()
    db.close()
    with KB.open(kb) as k:
        assert k.link_stats(["June"]) == {} and k.store.link_stats_count() == 0
