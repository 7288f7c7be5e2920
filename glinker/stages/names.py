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
    """The casefolded words of ``text`` when every one starts with a capital letter (a written name: "Pat Riley",
    "RILEY"), else None."""
    words = text.split()
    return [w.casefold() for w in words] if words and all(w[:1].isupper() for w in words) else None


def follow_full_names(links: Sequence[Link], labels: Collection[str] = ("person",)) -> int:
    """Make each short name form in ``links`` (one document's, any order) agree with its full name; returns how
    many links changed.

    A link's mention is a short form of another's when both are written as names (every word capitalised) and
    its words are the first or last words of the other's, case aside ("Riley" and "RILEY" of "Pat Riley", "Obama" of
    "Barack Obama"). Where ``labels`` is not empty, the full name must carry one of them (the mention stage's type:
    a full name the KB's alias dictionary found, without a type, is none, or "Africa" would follow "South Africa";
    allowing them cost 0.8 F1 on AIDA testa) and the short form none other (one of them, or none): "Washington" the
    place is no short form of "George Washington", nor "Walt Disney" the person of "Walt Disney Company". A short form whose document holds two
    different full names for it ("Hollioake": "Adam Hollioake" and "Ben Hollioake") is left alone; otherwise its
    full name is the nearest one before it, or after it when none precedes. Then:

    - a NIL full name whose short form is linked to an entity whose label (two words or more) is made of the full
      name's words ("Wolfgang Pauli" for "Wolfgang Joseph Pauli") takes that link;
    - every short form takes its full name's decision: the same entity (with its label and confidence), or NIL;
      longer short forms first, so a chain ("Ann" of "Ann Smith" of "Mary Ann Smith") ends at its longest name
      whatever the order of ``links``.
    """
    wanted = set(labels)
    named = [(ln, _name_words(ln.mention.text)) for ln in links]
    # full names by their first and last k words (k < their length): each short form is looked up once
    by_part: dict[tuple[str, ...], list[tuple[Link, list[str]]]] = {}
    for full, fw in named:
        if fw is None or len(fw) < 2 or (wanted and full.mention.label not in wanted):
            continue
        for k in range(1, len(fw)):
            for part in {tuple(fw[:k]), tuple(fw[-k:])}:
                by_part.setdefault(part, []).append((full, fw))
    pairs: list[tuple[Link, Link, int]] = []
    for short, sw in named:
        if sw is None or (wanted and short.mention.label is not None and short.mention.label not in wanted):
            continue
        fulls = [(full, fw) for full, fw in by_part.get(tuple(sw), ()) if full is not short]
        if len({" ".join(fw) for _, fw in fulls}) != 1:
            continue
        start = short.mention.start
        full = min(fulls, key=lambda f: (f[0].mention.start > start, abs(f[0].mention.start - start)))[0]
        pairs.append((short, full, len(sw)))
    changed = 0
    for short, full, _ in pairs:  # a NIL full name takes the entity its short form found under the full name
        label_words = short.label.casefold().split()
        if (full.is_nil and not short.is_nil and len(label_words) >= 2
                and set(label_words) <= set(full.mention.text.casefold().split())):
            full.entity_id, full.label, full.confidence = short.entity_id, short.label, short.confidence
            changed += 1
    for short, full, _ in sorted(pairs, key=lambda p: -p[2]):
        if short.entity_id != full.entity_id:
            short.entity_id = full.entity_id
            short.label = full.label if full.entity_id != NIL else ""
            short.confidence = full.confidence
            changed += 1
    return changed
