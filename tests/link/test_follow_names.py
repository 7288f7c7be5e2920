"""Short name forms follow the full name of their document (glinker.stages.names)."""

from __future__ import annotations

from glinker.stages.names import follow_full_names
from glinker.types import NIL, Link, Mention


def _link(text: str, start: int, entity: str = NIL, label: str = "", kind: str | None = "person") -> Link:
    return Link(mention=Mention(start=start, end=start + len(text), text=text, label=kind), entity_id=entity,
                label=label, confidence=0.5 if entity != NIL else 0.3)


def _ids(links: list[Link]) -> list[str]:
    return [ln.entity_id for ln in links]


def test_a_short_form_of_a_nil_full_name_is_nil():
    """ "Pat Riley" is not in the KB: "Riley" must not become whoever the KB holds with that name."""
    links = [_link("Pat Riley", 0), _link("Riley", 40, "Q230420", "Amber Riley"), _link("Riley", 90, "Q2579229",
                                                                                           "Wayne Riley")]
    assert follow_full_names(links) == 2
    assert _ids(links) == [NIL, NIL, NIL] and links[1].label == "" and links[1].confidence == 0.3


def test_a_short_form_takes_its_full_names_entity():
    links = [_link("Barack Obama", 0, "Q76", "Barack Obama"), _link("Obama", 30, "Q41773", "Obama, Fukui")]
    assert follow_full_names(links) == 1
    assert _ids(links) == ["Q76", "Q76"] and links[1].label == "Barack Obama"
    # first words too ("Tiger" of "Tiger Woods"), and a full name after the short form when none precedes it
    links = [_link("Tiger", 0, "Q19939", "tiger"), _link("Tiger Woods", 20, "Q10993", "Tiger Woods")]
    follow_full_names(links)
    assert _ids(links) == ["Q10993", "Q10993"]


def test_a_nil_full_name_takes_the_entity_its_short_form_found_by_that_name():
    links = [_link("Wolfgang Joseph Pauli", 0), _link("Pauli", 50, "Q65989", "Wolfgang Pauli")]
    follow_full_names(links)
    assert _ids(links) == ["Q65989", "Q65989"]
    # a one-word label, or one with words the full name lacks, is no evidence: the short form turns NIL
    links = [_link("Jan Neruda", 0), _link("Neruda", 50, "Q34189", "Pablo Neruda")]
    follow_full_names(links)
    assert _ids(links) == [NIL, NIL]


def test_left_alone_two_full_names_lowercase_other_labels_and_no_full_name():
    # two different full names for one short form: which one it means is not known
    links = [_link("Adam Hollioake", 0, "Q3528923", "Adam Hollioake"), _link("Ben Hollioake", 20),
             _link("Hollioake", 40, "Q3528923", "Adam Hollioake")]
    assert follow_full_names(links) == 0 and _ids(links) == ["Q3528923", NIL, "Q3528923"]
    # not written as names
    links = [_link("the new york times", 0), _link("times", 30, "Q1", "x")]
    assert follow_full_names(links) == 0
    # neither mention of the label set: "England" of "New England" keeps its own link
    links = [_link("New England", 0, "Q18389", "New England", kind="location"),
             _link("England", 30, "Q21", "England", kind="location")]
    assert follow_full_names(links) == 0
    assert follow_full_names(links, labels=()) == 1 and _ids(links) == ["Q18389", "Q18389"]  # every label
    # a mention is no short form of itself or of a mention of as many words
    links = [_link("Riley", 0, "Q1", "a"), _link("Riley", 10, "Q2", "b"), _link("Pat Riley", 20, "Q3", "c")]
    follow_full_names(links)
    assert _ids(links) == ["Q3", "Q3", "Q3"]
    links = [_link("Riley", 0, "Q1", "a"), _link("Riley", 10, "Q2", "b")]
    assert follow_full_names(links) == 0


def test_the_select_stage_applies_it_when_asked():
    from glinker.pipeline.stage import PipelineContext
    from glinker.stages.records import MentionCandidates
    from glinker.stages.select import Select, SelectParams
    from glinker.types import Candidate, Document

    text = "Pat Riley said Riley would stay."
    rows = [MentionCandidates(Mention(start=0, end=9, text="Pat Riley", label="person"),
                              [Candidate(entity_id="Q1", label="guitarist", score=0.2)]),
            MentionCandidates(Mention(start=15, end=20, text="Riley", label="person"),
                              [Candidate(entity_id="Q230420", label="Amber Riley", score=0.6)])]

    def run(**kw):
        stage = Select("links", SelectParams(nil_threshold=0.5, **kw), PipelineContext())
        return [ln.entity_id for ln in stage.run([Document(id="d", text=text)], [[rows]])[0].links]

    assert run() == [NIL, "Q230420"]
    assert run(follow_full_names=True) == [NIL, NIL]
    assert run(follow_full_names=True, name_labels=["location"]) == [NIL, "Q230420"]


def test_review_cases_other_types_chains_and_capitals():
    # the full name must be of a name_labels type, and the short form of none other
    links = [_link("Walt Disney", 0, "Q8704", "Walt Disney"),
             _link("Walt Disney Company", 40, "Q7414", "The Walt Disney Company", kind="organization")]
    assert follow_full_names(links) == 0
    links = [_link("George Washington", 0, "Q23", "George Washington"),
             _link("Washington", 40, "Q61", "Washington, D.C.", kind="location")]
    assert follow_full_names(links) == 0
    links = [_link("Pat Riley", 0), _link("Riley", 40, "Q230420", "Amber Riley", kind=None)]  # no type: follows
    assert follow_full_names(links) == 1 and _ids(links) == [NIL, NIL]
    # a chain ends at its longest name whatever the order of the links
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        made = [_link("Ann", 60, "Q_other", "Ann"), _link("Ann Smith", 30, "Q_as", "Ann Smith"),
                _link("Mary Ann Smith", 0, "Q_mas", "Mary Ann Smith")]
        follow_full_names([made[i] for i in order])
        assert _ids(made) == ["Q_mas"] * 3, order
    # case aside: an all-caps headline's "RILEY" is the body's "Pat Riley"
    links = [_link("RILEY", 0, "Q230420", "Amber Riley"), _link("Pat Riley", 30)]
    assert follow_full_names(links) == 1 and _ids(links) == [NIL, NIL]
    # many mentions: every short form found through the index (no pair is missed)
    links = [_link(f"Person{i} Name{i}", 100 * i, f"Q{i}", f"Person{i} Name{i}") for i in range(300)]
    links += [_link(f"Name{i}", 100 * i + 50, "Qx", "x") for i in range(300)]
    assert follow_full_names(links) == 300 and _ids(links[300:]) == [f"Q{i}" for i in range(300)]


def test_a_full_name_without_a_type_is_none():
    """A full name the alias dictionary found carries no type: taking it as a person's full name makes "Africa"
    follow "South Africa" (AIDA testa 76.03 -> 75.19 when allowed, 76.30 without)."""
    links = [_link("South Africa", 0, "Q258", "South Africa", kind=None), _link("Africa", 40, "Q15", "Africa")]
    assert follow_full_names(links) == 0 and _ids(links) == ["Q258", "Q15"]
