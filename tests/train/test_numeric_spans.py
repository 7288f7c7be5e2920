"""scripts/numeric_spans.py: dates, years, money, percentages, quantities... labelled by pattern for training."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "numeric_spans.py"


@pytest.fixture(scope="module")
def mod():
    spec = importlib.util.spec_from_file_location("numeric_spans", SCRIPT)
    m = importlib.util.module_from_spec(spec)
    sys.modules["numeric_spans"] = m
    spec.loader.exec_module(m)
    return m


def spans(mod, text: str) -> tuple[list[tuple[str, str]], list[str]]:
    from glinker.model.words import split_words

    w = split_words(text).words
    found, rest = mod.numeric_spans(w)
    return [(" ".join(w[s:e + 1]), t) for s, e, t in found], [" ".join(w[s:e + 1]) for s, e in rest]


@pytest.mark.parametrize("text,want,ignored", [
    ("It cost $5.2 million in 1995, or 20% more than in the 1980s.",
     [("$ 5 . 2 million", "money"), ("1995", "year"), ("20 %", "percentage"), ("1980s", "decade")], []),
    ("Born on January 5, 1879 in Ulm, he lived for three years in Bern during the 20th century.",
     [("January 5 , 1879", "date"), ("three years", "duration"), ("20th century", "century")], []),
    ("On 12 March 1995 at 10:30 a.m. the 5 km race began; aged 34 years old.",
     [("12 March 1995", "date"), ("10 : 30 a . m .", "time"), ("5 km", "quantity"), ("aged 34 years old", "age")],
     []),
    # counts, scores and ranges are no value mention: ignored, never negatives
    ("Arsenal beat Chelsea 3-1; 3,000 people came; the 2010–11 season; from 1939–1945.",
     [], ["3-1", "3", "000", "2010", "11", "1939", "1945"]),
    ("The 1500 km route; 1,500 metres; HONG KONG 1996-08-28; up 2.7 pct.",
     [("1500 km", "quantity"), ("1 , 500 metres", "quantity"), ("1996-08-28", "date"), ("2 . 7 pct", "percentage")],
     []),
])
def test_patterns(mod, text, want, ignored):
    assert spans(mod, text) == (want, ignored)


def test_merge_with_typed_spans(mod):
    from glinker.model.words import split_words

    w = split_words("On 12 March 1995 Apollo 11 flew to the Moon.").words
    # a typed span inside a date gives way; a numeric span overlapping another typed span is left out; an ignore
    # range over a numeric span is dropped
    typed, ign = mod.merge_numeric(w, [[2, 2, "month"], [4, 5, "spacecraft"], [9, 9, "moon"]], [[1, 3]])
    assert typed == [[1, 3, "date"], [4, 5, "spacecraft"], [9, 9, "moon"]]
    assert ign == []
