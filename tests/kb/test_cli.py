"""``glinker kb`` end to end: build (jsonl, wikidata, sql), info, add, remove, search."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from glinker.kb.testing import SAMPLE_ENTITIES
from glinker.types import Entity
from kb_adapters.wikidata import write_dump

from .conftest import drop_tables, load_sql_tables, server_engine, write_jsonl

runner = CliRunner()


def cli(*args: str) -> Any:
    from glinker.cli import app

    res = runner.invoke(app, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


def test_kb_help_lists_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "glinker", "kb", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for cmd in ("build", "info", "add", "remove", "search"):
        assert cmd in out


def test_build_info_add_remove_search(tmp_path: Path, tiny_checkpoint: Path) -> None:
    src = write_jsonl(SAMPLE_ENTITIES, tmp_path / "kb.jsonl")
    out = tmp_path / "kb"
    res = cli("kb", "build", "--adapter", "jsonl", "--source", str(src), "--model", str(tiny_checkpoint),
              "--out", str(out))
    assert "estimate: ~" in res.output and f"{len(SAMPLE_ENTITIES)} entities" in res.output
    info = json.loads(cli("kb", "info", str(out), "--json").stdout)
    assert info["counts"]["vectors"] == len(SAMPLE_ENTITIES) and info["model"] == str(tiny_checkpoint)
    assert "entities" in cli("kb", "info", str(out)).stdout
    hits = json.loads(cli("kb", "search", str(out), "Paris", "--json").stdout)
    assert hits["alias"] == ["Q90", "Q167646", "Q830149"] and len(hits["dense"]) == len(SAMPLE_ENTITIES)
    new = write_jsonl([Entity(id="Q999", label="Paris Hilton", description="socialite")], tmp_path / "new.jsonl")
    assert "added 1" in cli("kb", "add", str(out), "--source", str(new)).stdout
    assert "removed 1" in cli("kb", "remove", str(out), "Q830149", "nope").stdout
    hits = json.loads(cli("kb", "search", str(out), "paris", "--json", "--model", "none").stdout)
    assert hits["alias"] == ["Q90", "Q167646"] and "dense" not in hits
    assert any(h["id"] == "Q999" for h in hits["fuzzy"]) is False  # "paris hilton" is not within 85 of "paris"
    text = cli("kb", "search", str(out), "Paris Hilton").stdout
    assert "Q999" in text and "socialite" in text
    # --atomic: written into a copy and switched to whole; a reader opened before keeps its KB
    from glinker.kb import KB

    reader = KB.open(out)
    atl = write_jsonl([Entity(id="Q998", label="Atlantis", description="island")], tmp_path / "atl.jsonl")
    assert "added 1" in cli("kb", "add", str(out), "--source", str(atl), "--atomic").stdout
    assert reader.lookup_alias("atlantis") == [] and KB.open(out).lookup_alias("atlantis") == ["Q998"]
    reader.close()
    reader = KB.open(out)
    assert "removed 1" in cli("kb", "remove", str(out), "Q998", "--atomic").stdout
    assert reader.lookup_alias("atlantis") == ["Q998"] and KB.open(out).lookup_alias("atlantis") == []
    reader.close()
    # a name written without its accents ("Züri") is found as the alias stages find it
    assert json.loads(cli("kb", "search", str(out), "Zuri", "--json", "--model", "none").stdout)["alias"] == ["Q72"]


def test_build_wikidata_with_options_alias_only(tmp_path: Path, caplog: Any) -> None:
    dump = tmp_path / "d.json.bz2"
    write_dump(SAMPLE_ENTITIES, dump)
    out = tmp_path / "kb"
    cli("kb", "build", "-a", "wikidata", "-s", str(dump), "--languages", "en", "-o", "p31_include=Q515",
        "-o", "workers=0", "--model", "none", "--out", str(out))
    info = json.loads(cli("kb", "info", str(out), "--json").stdout)
    assert info["counts"]["entities"] == 3 and info["model_fingerprint"] is None
    # `kb add` reads with the build's adapter (it defaulted to jsonl: "malformed JSON" on a dump) and options; an
    # option that differs from the build's is warned about, whatever the adapter
    caplog.clear()
    assert "added 0, updated 0" in cli("kb", "add", str(out), "-s", str(dump), "-o", "workers=0").stdout
    assert "differ" not in caplog.text
    cli("kb", "add", str(out), "-s", str(dump), "-o", "workers=0", "-o", "languages=en")
    assert "differ" not in caplog.text
    cli("kb", "add", str(out), "-s", str(dump), "-o", "workers=0", "-o", "p31_include=Q5")
    assert "p31_include differs from the build's" in caplog.text
    # glinker's own records (.jsonl) into a KB built from a dump: read as JSONL, as the docs show
    new = write_jsonl([Entity(id="Q999", label="Paris Hilton")], tmp_path / "new.jsonl")
    assert "added 1" in cli("kb", "add", str(out), "--source", str(new)).stdout
    assert info["source"]["options"]["p31_include"] == ["Q515"]


def test_build_sql_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    eng = server_engine(url)
    t, a = load_sql_tables(eng, SAMPLE_ENTITIES, child_aliases=True)
    cli("kb", "build", "-a", "sql", "-s", url, "--table", t, "-o", 'columns={"id": "eid", "label": "name"}',
        "-o", f"alias_table={a}", "--model", "none", "--out", str(tmp_path / "kb"))
    hits = json.loads(cli("kb", "search", str(tmp_path / "kb"), "Paris, Texas", "--json").stdout)
    assert hits["alias"] == ["Q830149"]
    drop_tables(eng, t, a)


def test_errors_are_clear(tmp_path: Path) -> None:
    from glinker.cli import app

    res = runner.invoke(app, ["kb", "build", "-a", "jsonl", "-s", str(tmp_path / "x.jsonl"), "--model", "none",
                              "--out", str(tmp_path / "kb")])
    assert res.exit_code != 0 and "x.jsonl" in str(res.exception)
    res = runner.invoke(app, ["kb", "info", str(tmp_path)])
    assert res.exit_code != 0 and "kb build" in str(res.exception)
    proc = subprocess.run([sys.executable, "-c", "from glinker.cli import main; main()", "kb", "build", "-a",
                           "jsonl", "-s", "nope.jsonl", "-o", "bogus=1", "--model", "none", "--out",
                           str(tmp_path / "kb")], capture_output=True, text=True)
    assert proc.returncode == 2 and "bogus" in proc.stderr and "fix:" in proc.stderr


def test_bad_factory_and_output_fail_before_any_work(tmp_path: Path, tiny_checkpoint: Path, monkeypatch) -> None:
    """A faiss factory faiss cannot make, or --out naming a file, is refused before a single entity is encoded."""
    from glinker.cli import app
    from glinker.model import BiEncoder

    def no_encoding(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("encoded before the options were checked")

    monkeypatch.setattr(BiEncoder, "encode_entities", no_encoding)
    src = write_jsonl(SAMPLE_ENTITIES, tmp_path / "kb.jsonl")
    for factory in ("Flatt", "IVFbad", "IVF64,PQx"):
        res = runner.invoke(app, ["kb", "build", "-a", "jsonl", "-s", str(src), "--model", str(tiny_checkpoint),
                                  "--factory", factory, "--out", str(tmp_path / "kb")])
        assert res.exit_code != 0 and "invalid faiss factory" in str(res.exception), (factory, res.output)
    res = runner.invoke(app, ["kb", "build", "-a", "jsonl", "-s", str(src), "--model", "none", "--out", str(src)])
    assert res.exit_code != 0 and "is a file, not a directory" in str(res.exception)
    res = runner.invoke(app, ["kb", "search", str(tmp_path), "Paris", "-k", "0"])
    assert res.exit_code == 2 and "-k" in res.output


def test_add_prune_syncs_with_a_sql_table_and_sql_builds_start_over(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """`kb add --prune` makes the KB hold exactly the table (changed rows re-embedded, deleted rows dropped); an
    interrupted SQL build starts over, since rows resumed by position would be wrong once the table changed."""
    from sqlalchemy import text

    from glinker.kb import KB
    from glinker.kb.adapters import load_adapter
    from glinker.kb.build import build_kb

    url = f"sqlite:///{tmp_path / 'k.db'}"
    eng = server_engine(url)
    t, a = load_sql_tables(eng, SAMPLE_ENTITIES, child_aliases=False)
    out = tmp_path / "kb"
    cols = 'columns={"id": "eid", "label": "name", "description": "descr"}'
    cli("kb", "build", "-a", "sql", "-s", url, "--table", t, "-o", cols, "--model", str(tiny_checkpoint), "--out", str(out))
    first = SAMPLE_ENTITIES[0].id
    with eng.begin() as c:
        c.execute(text(f"DELETE FROM {t} WHERE eid = :i"), {"i": first})
        c.execute(text(f"UPDATE {t} SET descr = 'changed' WHERE eid = :i"), {"i": SAMPLE_ENTITIES[1].id})
    res = cli("kb", "add", str(out), "-a", "sql", "-s", url, "--table", t, "-o", cols, "--prune")
    assert "added 0, updated 1" in res.stdout and "removed 1" in res.stdout, res.stdout
    with KB.open(out) as kb:
        assert len(kb) == len(SAMPLE_ENTITIES) - 1 and not kb.get([first])
        assert kb.get([SAMPLE_ENTITIES[1].id])[0].description == "changed"
        assert kb.index().ntotal == len(SAMPLE_ENTITIES) - 1
    # without options, `kb add` reads the source as the build did (table, columns): nothing emptied
    with KB.open(out) as kb:
        before = {e.id: e.description for e in kb.get([e.id for e in SAMPLE_ENTITIES[2:]])}
    with eng.begin() as c:
        c.execute(text(f"UPDATE {t} SET descr = 'changed again' WHERE eid = :i"), {"i": SAMPLE_ENTITIES[1].id})
    res = cli("kb", "add", str(out), "-a", "sql", "-s", url, "--table", t, "--prune")  # columns: the build's
    assert "added 0, updated 1" in res.stdout and "removed 0" in res.stdout, res.stdout
    with KB.open(out) as kb:
        assert kb.get([SAMPLE_ENTITIES[1].id])[0].description == "changed again"
        assert {e.id: e.description for e in kb.get(list(before))} == before and any(before.values())
    # an interrupted build's staging folder (here: a broken store) is not resumed for a SQL source
    from glinker.kb.build import STORE, _source_key

    ad = load_adapter("sql", url, table=t, columns={"id": "eid", "label": "name"})
    staging = tmp_path / "kb2" / f".staging-{_source_key(ad, None, '{label}: {description}', 'auto')}"
    staging.mkdir(parents=True)
    (staging / STORE).write_bytes(b"not a database")
    build_kb(ad, tmp_path / "kb2", None)
    with KB.open(tmp_path / "kb2") as kb:
        assert len(kb) == len(SAMPLE_ENTITIES) - 1

    class Failing:  # a build that fails after reading the table: its staging folder (never resumed) is removed
        fingerprint, dim = "failing", 8

        def encode_entities(self, texts: Any, batch_size: int = 64) -> Any:
            raise RuntimeError("encoder crashed")

    with pytest.raises(RuntimeError, match="encoder crashed"):
        build_kb(ad, tmp_path / "kb3", Failing())
    assert not (tmp_path / "kb3").exists()  # a new folder with nothing of a build in it is not left behind
    drop_tables(eng, t, a)


def test_an_option_given_twice_differently_is_refused(tmp_path: Path) -> None:
    from glinker.cli import app

    src = write_jsonl(SAMPLE_ENTITIES, tmp_path / "kb.jsonl")
    res = runner.invoke(app, ["kb", "build", "-a", "wikidata", "-s", str(src), "-o", "languages=en",
                              "--languages", "de", "--model", "none", "--out", str(tmp_path / "kb")])
    assert res.exit_code == 2 and "given twice" in res.output
    # -o repeated with another value kept the last one silently: -o p31_include=Q5 -o p31_include=Q515 built a
    # KB without Q5's items
    for cmd in (["kb", "build", "-a", "wikidata", "-s", str(src), "--model", "none", "--out", str(tmp_path / "k2")],
                ["kb", "add", str(tmp_path / "k2"), "-s", str(src)]):
        res = runner.invoke(app, [*cmd, "-o", "p31_include=Q5", "-o", "p31_include=Q515"])
        said = res.output + str(res.exception)
        assert res.exit_code != 0 and "option 'p31_include' given twice, as 'Q5' and 'Q515'" in said
        assert "-o p31_include=A,B" in said and not (tmp_path / "k2").exists()
    res = runner.invoke(app, ["kb", "build", "-a", "jsonl", "-s", str(src), "--model", "none", "--out",
                              str(tmp_path / "k3"), "-o", "on_error=skip", "-o", "on_error=skip"])
    assert res.exit_code == 0, res.output  # the same value twice is no conflict


def test_kb_build_says_that_o_is_an_option_here_and_help_shows_no_type_for_flags(tmp_path: Path) -> None:
    """`-o` is the output of link/ner/labels build but an adapter option of kb build: `kb build ... -o kb/mine`
    said only "Missing option '--out'"; and help showed flags as taking a value (`--skip-bad <bool>`, `-v <int>`:
    `glinker -v 1` then failed)."""
    from glinker.cli import app

    src = tmp_path / "x.jsonl"
    src.write_text(json.dumps({"id": "a", "label": "A"}) + "\n")
    res = runner.invoke(app, ["kb", "build", "-a", "jsonl", "-s", str(src), "-o", "kb/mine"])
    assert res.exit_code != 0 and not (tmp_path / "kb").exists()
    err = str(res.exception) if res.exception else res.output
    assert "--out is required" in err and "--out kb/mine" in err, err
    for args in (["--help"], ["link", "--help"], ["kb", "build", "--help"]):
        out = runner.invoke(app, args, env={"COLUMNS": "160"}).output
        assert "--help" in out and "<bool>" not in out, args
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "160"}).output
    assert "<int>" not in top.split("--verbose", 1)[1].splitlines()[0]
