from __future__ import annotations

import pytest
from pydantic import ValidationError

from glinker.errors import ConfigError, GlinkerError, KBError
from glinker.types import NIL, Candidate, Entity, Link, Mention


def test_entity_names_keep_order_and_languages():
    e = Entity(id=" Q90 ", label="Paris", aliases=["City of Light", "Paris"], labels={"fr": "Paris", "de": "Paris"},
               aliases_by_lang={"fr": ["Ville Lumière"]}, popularity=300)
    assert e.id == "Q90"
    assert e.names() == ["Paris", "City of Light", "Ville Lumière"]


def test_records_reject_unknown_fields_and_bad_offsets():
    with pytest.raises(ValidationError, match="nmae"):
        Entity(id="Q1", label="x", nmae="y")
    with pytest.raises(ValidationError, match="before its start"):
        Mention(start=5, end=2, text="")
    with pytest.raises(ValidationError, match="popularity"):
        Entity(id="Q1", label="x", popularity=-1)


def test_link_defaults_to_nil_and_round_trips():
    link = Link(mention=Mention(start=0, end=5, text="Paris"),
                candidates=[Candidate(entity_id="Q90", scores={"dense": 0.8})])
    assert link.is_nil and link.entity_id == NIL
    assert Link.model_validate_json(link.model_dump_json()) == link


def test_error_renders_code_place_and_fix():
    e = KBError("index built with another model", where="kb/manifest.json", fix="rebuild the KB")
    assert str(e) == "[E500] kb/manifest.json: index built with another model\n  fix: rebuild the KB"
    assert isinstance(e, GlinkerError) and e.code == "E500"
    assert ConfigError("x", code="E999").code == "E999"


def test_candidate_fast_constructor_equals_the_validated_one() -> None:
    """``Candidate.of`` (no validation, for retrieval's hot loop) and ``clone`` give records identical to the
    validated constructor in every way the pipeline uses them; a pydantic upgrade that broke it fails here."""
    import copy

    from glinker.types import Candidate, Link, Mention

    kw = dict(entity_id="Q90", label="Paris", description="capital of France", source="dense",
              scores={"dense": 1.25}, score=1.25)
    ref, fast = Candidate(**kw), Candidate.of(**kw)
    assert fast == ref and type(fast) is Candidate
    assert fast.model_dump() == ref.model_dump() and fast.model_dump_json() == ref.model_dump_json()
    assert fast.model_fields_set == ref.model_fields_set
    assert copy.deepcopy(fast) == ref and fast.model_copy() == ref
    assert Candidate.model_validate_json(fast.model_dump_json()) == ref
    fast.score = 2.0  # assignment works as on any record
    fast.scores["rescore"] = 2.0
    assert fast.score == 2.0 and fast.scores == {"dense": 1.25, "rescore": 2.0}
    twin = fast.clone()
    twin.scores["x"] = 1.0
    assert "x" not in fast.scores and twin.entity_id == "Q90" and twin.score == 2.0
    # (its fields set is shared by every such record: a change is refused, copies are their own)
    other = Candidate.of(**kw)
    with pytest.raises(TypeError, match="shared"):
        fast.model_fields_set.discard("score")
    assert set(other.model_dump(exclude_unset=True)) == set(ref.model_dump())  # every field still "set"
    assert type(fast.model_copy(update={"score": 3.0}).model_fields_set) is set
    # nested in a validated record, it serialises like the validated form
    m = Mention(start=0, end=5, text="Paris")
    assert Link(mention=m, candidates=[Candidate.of(**kw)]).model_dump_json() == \
        Link(mention=m, candidates=[Candidate(**kw)]).model_dump_json()


def test_entities_read_from_the_store_equal_the_validated_records() -> None:
    """The KB store builds its records without validation (``_trusted``, as ``Candidate.of``): the same record,
    field order (JSON), fields set and copies as the validated constructor, for a full record and a bare one."""
    import copy

    from glinker.kb.store import TextTemplate, _row_to_entity, _row_values
    from glinker.types import Entity

    full = Entity(id="Q90", label="Paris", aliases=["City of Light"], alias_counts={"Paris": 3.0},
                  description="capital of France", types=["Q515"], popularity=12.5, labels={"fr": "Paris"},
                  descriptions={"fr": "capitale"}, aliases_by_lang={"fr": ["Lutèce"]}, extra={"enwiki": "Paris"})
    bare = Entity(id="acme-1", label="Acme")
    for ref in (full, bare):
        got = _row_to_entity((7, *_row_values(ref, TextTemplate("{label}: {description}"))))
        assert got == ref and type(got) is Entity
        assert got.model_dump_json() == Entity.model_validate(ref.model_dump()).model_dump_json()
        assert copy.deepcopy(got) == ref and got.model_copy(update={"label": "X"}).label == "X"
        got.popularity = 1.0  # assignment works as on any record
        assert got.popularity == 1.0


@pytest.mark.parametrize("url,shown", [
    ("postgresql+psycopg2://postgres:se/cret@127.0.0.1:5432/test", "postgresql+psycopg2://postgres:***@127.0.0.1:5432/test"),
    ("postgresql://u:a#b?c@h/db", "postgresql://u:***@h/db"),
    ("mysql+pymysql://root:p@ss@127.0.0.1/test", "mysql+pymysql://root:***@127.0.0.1/test"),
    ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
    ("redis://host:6379/0", "redis://host:6379/0"),
    ("sqlite:///data/k@b.db", "sqlite:///data/k@b.db"),
    ("postgresql://user@host/db", "postgresql://user@host/db"),
])
def test_redact_hides_whole_passwords(url, shown):
    from glinker.io import redact

    assert redact(url) == shown
