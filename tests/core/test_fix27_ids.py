"""Document ids of an input where some records carry an id and others do not (`glinker link`, `glinker ner`,
`glinker serve`): a record without one was given its line number (its place), which could be another record's id;
a generated id now never repeats one, and a repeated id is an error naming both lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glinker.errors import DataError


def test_generated_ids_skip_the_ids_given_before_and_taking_a_generated_one_is_an_error() -> None:
    from glinker.io import InputIds

    ids = InputIds("in.jsonl")
    assert ids.assign("3", 1) == "3"
    assert ids.assign(None, 2) == "2"
    assert ids.assign(None, 3) == "3#2"  # "3" is line 1's own id
    assert ids.assign("3#3", 4) == "3#3"
    assert ids.assign("doc-5", 5) == "doc-5"
    with pytest.raises(DataError) as e:  # line 2 was numbered "2" (written already, perhaps)
        ids.assign("2", 6)
    assert e.value.where == "in.jsonl:6" and "line 2" in e.value.message and "'2'" in e.value.message
    assert "--skip-bad" in e.value.fix
    with pytest.raises(DataError) as e:
        ids.assign(2, 7)  # an id given as a number is the same id
    assert e.value.where == "in.jsonl:7" and "line 2" in e.value.message
    with pytest.raises(DataError) as e:
        ids.assign("3#2", 8)  # the id generated for line 3
    assert e.value.where == "in.jsonl:8" and "line 3" in e.value.message
    assert ids.assign(None, 9) == "9"
    # records may repeat each other's own ids, as before (an output is resumed by place)
    assert ids.assign("x", 10) == "x" and ids.assign("x", 11) == "x" and ids.assign("3", 12) == "3"
    # not the form of a generated id: never one
    for n, given in enumerate(("02", "0", "+9", "9.0", "\u0669", " 9", "9#", "9#x"), 13):
        assert ids.assign(given, n) == given
    assert ids.assign("1000", 30) == "1000" and ids.assign("1000#2", 31) == "1000#2"
    assert ids.assign(None, 1000) == "1000#3"
    assert ids.assign("40", 40) == "40" and ids.assign(None, 41) == "41"


def test_many_lines_without_ids_are_numbered_by_their_line() -> None:
    from glinker.io import InputIds

    ids = InputIds("big.jsonl")
    assert [ids.assign(None, n) for n in range(1, 5001)] == [str(n) for n in range(1, 5001)]
    assert not ids.ahead and not ids.renamed and len(ids.numbered) <= 1300  # a bit a line, nothing else
    with pytest.raises(DataError, match="line 4999"):
        ids.assign("4999", 5001)
    # ids that no later line could be given are not kept
    for n in range(5002, 6000):
        ids.assign(f"doc-{n}", n)
        ids.assign(str(n - 1), n)
    assert not ids.ahead


def test_glinker_link_input_numbers_around_given_ids(tmp_path: Path) -> None:
    from glinker.cli.link import iter_input

    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in [
        {"id": "3", "text": "a"}, {"text": "b"}, {"text": "c"}, {"id": None, "text": "d"}]) + "\n")
    assert [(n, d["id"]) for n, d in iter_input(src, "jsonl", False)] == [(1, "3"), (2, "2"), (3, "3#2"), (4, "4")]
    with src.open("a") as f:
        f.write(json.dumps({"id": "2", "text": "e"}) + "\n" + json.dumps({"id": "z", "text": "f"}) + "\n")
    with pytest.raises(DataError) as e:
        list(iter_input(src, "jsonl", False))
    assert e.value.where == f"{src}:5" and "line 2" in e.value.message
    problems: list[str] = []
    assert [d["id"] for _, d in iter_input(src, "jsonl", True, problems=problems)] == ["3", "2", "3#2", "4", "z"]
    assert len(problems) == 1 and problems[0].startswith(f"{src}:5: ")
    # a .txt input: every id is its line number, as before
    (tmp_path / "in.txt").write_text("3\n\nb\n")
    assert [d["id"] for _, d in iter_input(tmp_path / "in.txt", "txt", False)] == ["1", "3"]


def test_glinker_link_writes_unique_generated_ids_and_refuses_an_id_it_generated(tmp_path: Path) -> None:
    from glinker.cli.link import run_link

    yml = tmp_path / "p.yaml"
    yml.write_text("name: r\nstages:\n  m: {type: regex_mentions, patterns: {cap: '[A-Z][a-z]+'}}\n")
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "2", "text": "Hello"}\n{"text": "World"}\n{"text": "Again"}\n{"id": "2", "text": "Hi"}\n')
    assert run_link(src, yml, tmp_path / "out.jsonl")["written"] == 4
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in out] == ["2", "2#2", "3", "2"]  # line 2 not "2": line 1 has it
    with src.open("a") as f:
        f.write('{"id": "3", "text": "Late"}\n')  # line 3 was given "3"
    with pytest.raises(DataError) as e:
        run_link(src, yml, tmp_path / "out.jsonl")  # resumed: the first four are written already
    assert e.value.where == f"{src}:5" and "line 3" in e.value.message
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 4


def test_glinker_ner_input_numbers_around_given_ids(tmp_path: Path) -> None:
    from glinker.cli.ner import _read_docs

    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in [
        {"id": 2, "text": "a"}, {"text": "b"}, {"id": None, "text": "c"}, {"text": "d"}, {"id": "4", "text": "e"}])
        + "\n")
    with pytest.raises(DataError) as e:
        list(_read_docs(src, "text", False))
    assert e.value.where == f"{src}:5" and "line 4" in e.value.message
    # the given id kept as given (a number stays a number; null stays null)
    assert [d["id"] for d in _read_docs(src, "text", False, skip_bad=True)] == [2, "2#2", None, "4"]


def test_serve_numbers_a_document_without_id_around_the_ids_of_the_others() -> None:
    from glinker.serve import parse_request

    body = {"documents": [{"text": "a"}, {"id": "0", "text": "b"}, {"text": "c"}, {"id": 2, "text": "d"},
                          {"id": "0#2", "text": "e"}, {"text": "f"}]}
    assert [d["id"] for d in parse_request(json.dumps(body).encode())] == ["0#3", "0", "2#2", "2", "0#2", "5"]
    assert [d["id"] for d in parse_request(json.dumps({"texts": ["a", "b"]}).encode())] == ["0", "1"]


def test_large_given_ids_of_a_file_are_not_kept(tmp_path: Path) -> None:
    """Database-style ids (numbers past the file's possible line count) are never a generated id: not kept."""
    from glinker.io import InputIds

    f = tmp_path / "in.jsonl"
    f.write_text("x\n" * 10, encoding="utf-8")
    ids = InputIds(str(f))
    for line in range(1, 2001):
        assert ids.assign(str(1_000_000_000 + line), line) == str(1_000_000_000 + line)
    assert not ids.ahead
    assert ids.assign("15", 3) == "15" and ids.ahead == {"15"}  # within the file's size: kept
    unbounded = InputIds("<stdin>")
    unbounded.AHEAD_CAP = 5
    for line in range(1, 20):
        unbounded.assign(str(1000 + line), line)
    assert len(unbounded.ahead) == 5
