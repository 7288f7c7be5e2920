"""Numeric and temporal mentions of a sentence by pattern: dates, years, decades, centuries, times of day, money,
percentages, quantities with a unit, durations and ages (the OntoNotes value types, which the offline NER training
sets hardly hold: the Pile-NER sample has two dates in 1,317 passages, so the model never learned "date" or "year").

Used by ``make_wiki_ner.py --numeric`` and ``make_typed_mentions.py --numeric``: the patterns' spans are added to
the KB-typed mentions of each sentence, and every other word holding a digit (a count, a score, a code) becomes an
``ignore`` range, so no number the patterns miss is taught as a negative. Precision over recall: a pattern fires
only on forms that are unambiguous in edited text (a four-digit number between 1000 and 2099 that is no part of a
longer number, amount or quantity is a year; "5 km" is a quantity; "$ 5" is money).
"""

from __future__ import annotations

import re

MONTHS = ("January|February|March|April|May|June|July|August|September|October|November|December|"
          "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec")
NUMBER_WORDS = ("(?i:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|"
                "sixty|hundred|several|a few|a dozen|dozens of|hundreds of|thousands of)")
SCALES = "thousand|million|billion|trillion|m|bn"
UNITS = ("km|kilometres|kilometers|kilometre|kilometer|mi|miles|mile|m|metres|meters|metre|meter|cm|mm|ft|feet|foot|"
         "inches|inch|in|kg|kilograms|kilogram|g|grams|tonnes|tons|tonne|ton|lb|lbs|hectares|hectare|ha|acres|acre|"
         "litres|liters|litre|liter|km2|sq mi|square kilometres|square kilometers|square miles|square metres|"
         "km / h|mph|° C|° F|°C|°F|degrees|MW|GW|kW|kWh|GHz|MHz|Hz|light-years|light years|AU|nautical miles")
DURATIONS = "seconds|minutes|hours|days|weeks|months|years|decades|centuries|millennia|second|minute|hour|day|week|" \
            "month|decade|century"
# tokens are joined by single spaces (split_words cuts "$5.2" into "$ 5 . 2"): the patterns read that form
NUM = r"\d+(?: [.,] \d+)*"
AMOUNT = rf"(?:{NUM}|{NUMBER_WORDS})(?: (?:{SCALES}))?"
PATTERNS: list[tuple[str, str]] = [  # (type, pattern); earlier patterns win overlaps
    ("date", rf"(?:\d{{1,2}} )?(?:{MONTHS}) \d{{1,2}} , \d{{4}}"),                  # March 12 , 1995
    ("date", rf"\d{{1,2}} (?:{MONTHS}) \d{{4}}"),                                   # 12 March 1995
    ("date", rf"(?:early |mid |late )?(?:{MONTHS}) \d{{4}}"),                       # March 1995
    ("date", rf"(?:{MONTHS}) \d{{1,2}}(?! [.,] \d)"),                               # March 12
    ("date", rf"\d{{1,2}} (?:{MONTHS})"),                                           # 12 March
    ("date", r"\d{4} - \d{2} - \d{2}|\d{4}-\d{2}-\d{2}"),                         # 1996-08-22
    ("time", r"\d{1,2} [:.] \d{2} (?:a \. m \.|p \. m \.|am|pm|AM|PM|GMT|ET|EST|CET)"),
    ("time", r"\d{1,2} (?:a \. m \.|p \. m \.|am|pm|AM|PM)"),
    ("time", r"\d{1,2} : \d{2}(?! :)"),
    ("money", rf"(?:US |U \. S \. |A |C |NZ |HK |S )?[$£€¥] {NUM}(?: (?:{SCALES}))?"),
    ("money", rf"{AMOUNT} (?:dollars|euros|pounds sterling|yen|francs|marks|rupees|cents|pence|yuan|rubles|"
              r"roubles|lire|pesetas|guilders|crowns)"),
    ("percentage", rf"(?:{NUM}|{NUMBER_WORDS}) (?:%|percent|per cent|pct|percentage points)"),
    ("age", rf"(?:aged |age )?{NUM}(?: -)? years? (?:-)?old"),
    ("quantity", rf"{AMOUNT} (?:{UNITS})(?![\w-])"),
    ("duration", rf"(?:{NUM}|{NUMBER_WORDS}) (?:{DURATIONS})(?! old)"),
    ("century", r"(?:\d{1,2}(?:st|nd|rd|th)|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|"
                r"eleventh|twelfth|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|"
                r"twentieth|twenty-first) (?:century|centuries)(?: BC| BCE| AD| CE)?"),
    ("decade", r"(?:the )?(?:1\d|20)\d0s"),
    ("year", r"(?<![$£€¥.,:–—-] )(?:1\d{3}|20\d{2})(?: (?:BC|BCE|AD|CE))?(?! [.,:–—-] \d)(?! (?:" + SCALES + "|"
             + UNITS + r")\b)"),
]
_COMPILED = [(t, re.compile(rf"(?<!\S){p}(?!\S)")) for t, p in PATTERNS]
_DIGIT = re.compile(r"\d")
TYPES = tuple(dict.fromkeys(t for t, _ in PATTERNS))


def numeric_spans(words: list[str]) -> tuple[list[list], list[list[int]]]:
    """(``[start, end, type]`` word spans found by the patterns, ``[start, end]`` ranges of the other words that
    hold a digit). A span that a "the" opens ("the 1980s") starts after it."""
    text = " ".join(words)
    starts, pos = {}, 0
    ends = {}
    for i, w in enumerate(words):
        starts[pos] = i
        pos += len(w)
        ends[pos] = i
        pos += 1
    taken = [False] * len(words)
    spans: list[list] = []
    for t, pat in _COMPILED:
        for m in pat.finditer(text):
            s, e = starts.get(m.start()), ends.get(m.end())
            if s is None or e is None:
                continue
            if words[s].lower() == "the":
                s += 1
            if s > e or any(taken[s:e + 1]):
                continue
            for k in range(s, e + 1):
                taken[k] = True
            spans.append([s, e, t])
    rest = [[i, i] for i, w in enumerate(words) if not taken[i] and _DIGIT.search(w)]
    return sorted(spans), rest


def merge_numeric(words: list[str], typed: list[list], ignore: list[list[int]]) -> tuple[list[list], list[list[int]]]:
    """The typed spans and ignore ranges of a sentence with its numeric spans added: a typed span inside a numeric
    one gives way ("March" typed as a month in "12 March 1995"), a numeric span that overlaps another typed span is
    left out (a name with a number: "Apollo 11"), and ignore ranges that overlap a numeric span are dropped ("March"
    of "March 1995" was a capitalised run no KB name covered)."""
    nums, rest = numeric_spans(words)

    def overlaps(a: list, b: list) -> bool:
        return a[0] <= b[1] and b[0] <= a[1]

    typed = [t for t in typed if not any(n[0] <= t[0] and t[1] <= n[1] for n in nums)]
    nums = [n for n in nums if not any(overlaps(n, t) for t in typed)]
    ignore = [g for g in ignore if not any(overlaps(g, n) for n in nums)]
    rest = [g for g in rest if not any(overlaps(g, t) for t in typed) and not any(overlaps(g, x) for x in ignore)]
    return sorted(typed + nums), sorted(ignore + rest)
