"""Short name forms follow the full name of their document.

A news text names a person in full once ("Pat Riley") and by the last name after ("Riley"). Linked one by one,
the short form finds whoever the KB holds with that name (the actress Amber Riley) even when the full name is
NIL because the KB lacks that person. :func:`follow_full_names` makes every short form agree with the full name
it abbreviates: the link of the full name, or NIL with it. The coreference heuristic of AIDA-era linkers (REL's
"mention is a part of a longer person mention" rule) in its decision form.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from glinker.types import NIL, Link


def _name_words(text: str) -> list[str] | None:
    """The words of ``text`` when every one starts with a capital letter (a written name), else None."""
    words = text.split()
    return words if words and all(w[:1].isupper() for w in words) else None


def _abbreviates(short: list[str], full: list[str]) -> bool:
    """Whether ``short`` is the first or last words of the longer ``full`` ("Riley" of "Pat Riley")."""
    n = len(short)
    return n < len(full) and (full[:n] == short or full[-n:] == short)


def follow_full_names(links: Sequence[Link], labels: Collection[str] = ("person",)) -> int:
    """Make each short name form in ``links`` (one document's, any order) agree with its full name; returns how
    many links changed.

    A link's mention is a short form of another's when both are written as names (every word capitalised) and
    its words are the first or last words of the other's ("Riley" of "Pat Riley", "Obama" of "Barack Obama").
    Where ``labels`` is not empty, one of the two mentions must carry one of them (the mention stage's type). A
    short form whose document holds two different full names for it ("Hollioake": "Adam Hollioake" and "Ben
    Hollioake") is left alone; otherwise its full name is the nearest one before it, or after it when none
    precedes. Then:

    - a NIL full name whose short form is linked to an entity whose label (two words or more) is made of the full
      name's words ("Wolfgang Pauli" for "Wolfgang Joseph Pauli") takes that link;
    - every short form takes its full name's decision: the same entity (with its label and confidence), or NIL.
    """
    wanted = set(labels)
    named = [(ln, _name_words(ln.mention.text)) for ln in links]
    pairs: list[tuple[Link, Link]] = []
    for short, sw in named:
        if sw is None:
            continue
        fulls = [(full, fw) for full, fw in named if full is not short and fw is not None and _abbreviates(sw, fw)
                 and (not wanted or short.mention.label in wanted or full.mention.label in wanted)]
        if len({" ".join(fw) for _, fw in fulls}) != 1:
            continue
        start = short.mention.start
        full = min(fulls, key=lambda f: (f[0].mention.start > start, abs(f[0].mention.start - start)))[0]
        pairs.append((short, full))
    changed = 0
    for short, full in pairs:  # a NIL full name takes the entity its short form found under the full name
        label_words = short.label.lower().split()
        if (full.is_nil and not short.is_nil and len(label_words) >= 2
                and set(label_words) <= set(full.mention.text.lower().split())):
            full.entity_id, full.label, full.confidence = short.entity_id, short.label, short.confidence
            changed += 1
    for short, full in pairs:
        if short.entity_id != full.entity_id:
            short.entity_id = full.entity_id
            short.label = full.label if full.entity_id != NIL else ""
            short.confidence = full.confidence
            changed += 1
    return changed
