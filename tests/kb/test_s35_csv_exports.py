"""Spreadsheet CSV exports as a KB source (session 35's company-catalogue walkthrough): Excel's `sep=;` line, rows of
empty cells after the data, an empty id cell, an unknown encoding, a label emptied by an update, and a pipeline's
kb block keeping the file and line of a bad record."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from glinker.errors import ConfigError, DataError, GlinkerError, KBError
from glinker.kb.adapters import load_adapter

HEADER = "id;name;popularity\n"


def _csv(tmp_path: Path, text: str, name: str = "cat.csv", encoding: str = "utf-8") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def _ids(path: Path, **options) -> list[str]:
    ad = load_adapter("csv", str(path), **{"mapping": {"label": "name"}, **options})
    return [e.id for e in ad.iter_entities()]


def test_excel_sep_line_names_the_delimiter(tmp_path):
    """`sep=;` on line 1 (Excel) was read as the header: "no id column 'id' in the header ['sep=;']", and following
    the fix (delimiter ';') gave "['sep=', '']"."""
    p = _csv(tmp_path, "\ufeffsep=;\r\n" + HEADER.replace("\n", "\r\n") + "C1;Acme;2\r\nC2;Globex;1\r\n")
    assert _ids(p) == ["C1", "C2"] and _ids(p, delimiter=";") == ["C1", "C2"]
    # the file's own line wins (`kb add` passes back the manifest's default ","); another choice is said
    assert _ids(p, delimiter=",") == ["C1", "C2"]
    assert _ids(p, delimiter="|") == ["C1", "C2"]
    # "sep=" with nothing after it (CRLF) is no delimiter line: read as a header
    crlf = _csv(tmp_path, "sep=\r\nid,name\r\nC1,Acme\r\n", "crlf.csv")
    with pytest.raises(KBError, match="no id column 'id' in the header"):
        _ids(crlf)
    bad = _csv(tmp_path, "sep=;\nid;name;popularity\nC1;Acme;x\n", "bad.csv")
    with pytest.raises(DataError) as ei:  # lines counted with the sep= line
        _ids(bad)
    assert ei.value.where == f"{bad}:3 field popularity"


def test_rows_of_empty_cells_are_blank_lines(tmp_path):
    """Excel leaves ';;;' rows after the data: they failed as "record has no id" with a wrong fix (map the id to
    another column), and skipped with on_error=skip they counted as bad records, which stops a sync's removals."""
    p = _csv(tmp_path, HEADER + "C1;Acme;2\n;;\n  ; ;\nC2;Globex;1\n;;\n")
    ad = load_adapter("csv", str(p), mapping={"label": "name"}, delimiter=";")
    assert [e.id for e in ad.iter_entities()] == ["C1", "C2"] and ad.report.bad == 0 and ad.report.read == 2


def test_an_empty_id_cell_is_said_as_such(tmp_path):
    p = _csv(tmp_path, HEADER + "C1;Acme;2\n;Initech;3\n")
    with pytest.raises(DataError, match=r"the id \('id'\) is empty") as ei:
        _ids(p, delimiter=";")
    assert ei.value.where == f"{p}:3 field id" and "mapping" not in ei.value.fix


def test_an_unknown_encoding_is_refused_as_an_option(tmp_path):
    p = _csv(tmp_path, HEADER + "C1;Acme;2\n")
    with pytest.raises(ConfigError) as ei:
        load_adapter("csv", str(p), encoding="cp-1252x", delimiter=";")
    assert "encoding" in (ei.value.where or "") and "unknown text encoding 'cp-1252x'" in str(ei.value)
    assert "of type str" not in ei.value.fix


def test_a_pipeline_kb_block_keeps_the_bad_records_file_and_line(tmp_path):
    """Built by a pipeline, a bad record was placed at the kb block alone ("kb (p.yaml:4): field 'popularity'..."):
    the file and line the same record gets from `kb build` were dropped. The fix's `-o` options are also said as the
    block writes them."""
    import glinker

    src = _csv(tmp_path, HEADER + "C1;Acme;2\nC2;Globex;1,5\n")
    f = tmp_path / "p.yaml"
    f.write_text("name: t\nmodel: none\nkb:\n  adapter: csv\n  source: cat.csv\n  cache: c\n  options: {delimiter: ';', "
                 "mapping: {label: name}}\nstages:\n  m:\n    type: alias_mentions\n")
    with pytest.raises(GlinkerError) as ei:
        glinker.load_pipeline(str(f)).link(["Acme"])
    assert ei.value.where.startswith(f"kb ({f}:") and ei.value.where.endswith(f"reading {src}:3 field popularity"), \
        ei.value.where
    _csv(tmp_path, HEADER + "C1;Caf\u00e9 Acme;2\n", encoding="cp1252")
    with pytest.raises(GlinkerError) as ei:
        glinker.load_pipeline(str(f)).link(["Acme"])
    assert f"reading {src}:2" in ei.value.where and "-o encoding=latin-1" in ei.value.fix
    assert "(in the pipeline: under the kb block's options, encoding: latin-1)" in ei.value.fix


def test_an_update_that_empties_a_label_says_so(tmp_path, caplog):
    """`kb build` warned of entities without a label; `kb add` and a pipeline's sync took one silently (its links
    show "label": "" as a NIL does)."""
    from glinker.kb import KB, build_kb

    p = _csv(tmp_path, HEADER + "C1;Acme;2\nC2;Globex;1\n")
    opts = {"delimiter": ";", "mapping": {"label": "name"}}
    build_kb(load_adapter("csv", str(p), **opts), tmp_path / "kb", None)
    kb = KB.open(tmp_path / "kb", writable=True)
    _csv(tmp_path, HEADER + "C1;;2\nC2;Globex;1\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        counts = kb.upsert(load_adapter("csv", str(p), **opts).iter_entities(), None)
    assert counts["updated"] == 1
    assert any("1 entities have no label (e.g. 'C1')" in r.getMessage() for r in caplog.records), caplog.text


def test_kb_add_reads_a_sep_line_file_as_the_build_did(tmp_path):
    """`kb add` on a KB built from a `sep=;` file failed: the manifest's default delimiter "," was passed back and
    refused against the file's own line."""
    from typer.testing import CliRunner

    from glinker.cli import app

    p = _csv(tmp_path, "sep=;\nid;label\nC1;Acme\n", "x.csv")
    r = CliRunner().invoke(app, ["kb", "build", "-a", "csv", "-s", str(p), "--model", "none", "--out",
                                 str(tmp_path / "kb")])
    assert r.exit_code == 0, r.output
    _csv(tmp_path, "sep=;\nid;label\nC1;Acme\nC2;Globex\n", "x.csv")
    r = CliRunner().invoke(app, ["kb", "add", str(tmp_path / "kb"), "-s", str(p)])
    assert r.exit_code == 0 and "added 1" in r.output, r.output


def test_fixes_said_as_kb_block_options_are_yaml_that_reads_back():
    """`-o delimiter='|'` was said as `delimiter: |` (a YAML block scalar), a query's closing quote was lost."""
    import yaml

    from glinker.stages.resources import _as_yaml_value

    for written, meant in [("'|'", "|"), ("','", ","), ("latin-1", "latin-1"), ("';'", ";"),
                           ("'SELECT id, \"Nom (FR)\" AS name FROM \"Sociétés\"'",
                            'SELECT id, "Nom (FR)" AS name FROM "Sociétés"'),
                           ("'{\"id\": \"category\"}'", {"id": "category"})]:
        assert yaml.safe_load("k: " + _as_yaml_value(written))["k"] == meant, written


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_source_naming_its_labels_otherwise_is_told_the_mapping(tmp_path, kind):
    """A catalogue with a `name` column (no `label`) failed with pydantic's "field 'label': Field required" and a
    fix that named no column; now the record's keys and the mapping to write, for the key that holds names."""
    if kind == "csv":
        p = _csv(tmp_path, "id,product_name,price\nC1,Acme anvil,2\n")
    else:
        p = _csv(tmp_path, '{"id": "C1", "title": "Acme anvil", "price": 2}\n', "cat.jsonl")
    with pytest.raises(DataError, match="record has no label") as ei:
        list(load_adapter(kind, str(p)).iter_entities())
    key = "product_name" if kind == "csv" else "title"
    assert ei.value.where.endswith(":2 field label" if kind == "csv" else ":1 field label")
    assert f"""mapping='{{"label": "{key}"}}'""" in ei.value.fix and "price" in str(ei.value)
    # the mapping it says works
    assert [e.label for e in load_adapter(kind, str(p), mapping={"label": key}).iter_entities()] == ["Acme anvil"]
