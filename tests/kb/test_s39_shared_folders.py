"""Session 39, a security review: files glinker writes in folders other users may write too (a shared KB folder, an
output folder) are never written through a link planted there, nor reopened by a name someone else may have
swapped; and `glinker serve` bounds what a request's meta may cost. Each reproduced first (the review's findings
1-4)."""

from __future__ import annotations

import json
import os
import pickle
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from glinker.errors import ConfigError
from glinker.kb.adapters import load_adapter

pytestmark = pytest.mark.skipif(os.name == "nt", reason="symbolic links and O_NOFOLLOW")


def _kb(tmp_path: Path, n: int = 5) -> Path:
    from glinker.kb.build import build_kb

    src = tmp_path / "e.jsonl"
    src.write_text("".join(json.dumps({"id": f"E{i}", "label": f"entity {i}"}) + "\n" for i in range(n)),
                   encoding="utf-8")
    build_kb(load_adapter("jsonl", str(src)), tmp_path / "kb", None, chunk_size=100)
    return tmp_path / "kb"


def _victim(tmp_path: Path) -> Path:
    v = tmp_path / "victim_rc"
    v.write_text("export SECRET=1\n", encoding="utf-8")
    v.chmod(0o600)
    return v


def test_a_link_planted_as_the_kbs_writer_lock_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    """The writer lock was opened through a link, truncated, and given the folder's write bits: a user's 0600 file
    became an empty 0666 one."""
    from glinker.kb.kb import writing

    kb = _kb(tmp_path)
    kb.chmod(0o777)
    victim = _victim(tmp_path)
    (kb / ".writer.lock").unlink(missing_ok=True)
    (kb / ".writer.lock").symlink_to(victim)
    with pytest.raises(ConfigError, match="writer lock is a symbolic link"):
        with writing(kb, "a test"):
            pass
    assert victim.read_text(encoding="utf-8") == "export SECRET=1\n" and victim.stat().st_mode & 0o777 == 0o600


def test_a_hard_link_as_the_writer_lock_is_refused(tmp_path: Path) -> None:
    """A second name of a user's file (made where hard links to others' files are allowed) would get its mode
    changed: refused too."""
    from glinker.kb.kb import writing

    kb = _kb(tmp_path)
    kb.chmod(0o777)
    victim = _victim(tmp_path)
    (kb / ".writer.lock").unlink(missing_ok=True)
    os.link(victim, kb / ".writer.lock")
    with pytest.raises(ConfigError, match="another hard link"):
        with writing(kb, "a test"):
            pass
    assert victim.stat().st_mode & 0o777 == 0o600 and victim.read_text(encoding="utf-8") == "export SECRET=1\n"


def test_fixed_temporary_names_are_gone(tmp_path: Path) -> None:
    """CURRENT.tmp (and the manifest's, SYNCED's, an index's ``X.tmp``) were fixed names opened with open(): a
    link planted there got CURRENT's text written into its target, and CURRENT became that link."""
    from glinker.kb.kb import publish_generation
    from glinker.kb.manifest import Manifest

    kb = _kb(tmp_path)
    victim = _victim(tmp_path)
    live = (kb / "CURRENT").read_text(encoding="utf-8")
    for name in ("CURRENT.tmp", "manifest.json.tmp"):
        (kb / name).symlink_to(victim)
    publish_generation(kb, live.strip())
    gen = kb / live.strip()
    m = Manifest.load(gen / "manifest.json")
    m.save(gen / "manifest.json")
    (gen / "manifest.json.tmp").symlink_to(victim)
    m.save(gen / "manifest.json")
    assert victim.read_text(encoding="utf-8") == "export SECRET=1\n"
    assert not (kb / "CURRENT").is_symlink() and (kb / "CURRENT").read_text(encoding="utf-8") == live
    assert not [p for p in kb.rglob("*") if p.name.endswith(".tmp") and not p.is_symlink()]  # none left behind


def test_a_progress_file_planted_as_a_link_is_refused_before_anything_is_linked(tmp_path: Path) -> None:
    """``OUT.html.done.jsonl`` was read, cut and appended to through a link: a user's shell rc got a line of the
    input's text (an id chosen by whoever wrote the input), or lost its last line when it was not JSONL."""
    from glinker.cli.link import check_output
    from glinker.io import done_path, write_jsonl

    victim = _victim(tmp_path)
    out = tmp_path / "shared" / "out.html"
    out.parent.mkdir()
    done_path(out).symlink_to(victim)
    (tmp_path / "in.jsonl").write_text('{"text": "Paris"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="the record of what out.html holds, is a symbolic link"):
        check_output(out, tmp_path / "in.jsonl", {".jsonl", ".html"}, "out.jsonl")
    # and below the check, where the file is written (a link planted after it): refused as well
    with pytest.raises(ConfigError, match="symbolic link"):
        write_jsonl(done_path(out), [{"id": "$(touch x)", "text": "00"}])
    assert victim.read_text(encoding="utf-8") == "export SECRET=1\n"


def test_jsonl_writes_refuse_a_link_but_still_write_to_a_pipe(tmp_path: Path) -> None:
    """``write_jsonl``, ``repair_jsonl_tail`` and ``keep_lines`` open without following a link; a named pipe (a
    consumer reading the stream) is still written to."""
    from glinker.io import keep_lines, repair_jsonl_tail, write_jsonl

    victim = tmp_path / "v.txt"
    victim.write_bytes(b'{"a": 1}\n{"b": 2}\nno newline')
    link = tmp_path / "out.jsonl"
    link.symlink_to(victim)
    for call in (lambda: write_jsonl(link, [{"x": 1}]), lambda: repair_jsonl_tail(link), lambda: keep_lines(link, 1)):
        with pytest.raises(ConfigError, match="symbolic link"):
            call()
    assert victim.read_bytes() == b'{"a": 1}\n{"b": 2}\nno newline'

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    write_jsonl(fifo, [{"x": 1}], append=False, fsync=False)
    reader.join(10)
    assert got == [b'{"x":1}\n']


def test_the_sync_spool_cannot_be_swapped(tmp_path: Path) -> None:
    """The spool of a sync's changed records was reopened by name and unpickled: a pickle put in its place by anyone
    who can write in the KB folder ran its code. It is read through the descriptor that wrote it, nameless."""
    from glinker.kb.store import SpooledEntities
    from glinker.types import Entity

    planted = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self) -> Any:
            return (os.system, (f"touch {planted}",))

    with SpooledEntities(tmp_path) as sp:
        sp["a"] = Entity(id="a", label="A")
        sp.written()
        assert not sp.path.exists()  # nameless: nothing in the folder to replace
        sp.path.write_bytes(pickle.dumps(Evil()))  # what an attacker would do with the name
        assert [e.label for e in sp] == ["A"] and [e.label for e in sp] == ["A"]
    assert not planted.exists()


def test_open_plain_refuses_a_fifo_where_a_lock_is_expected_without_blocking(tmp_path: Path) -> None:
    from glinker.io import locked

    os.mkfifo(tmp_path / "x.lock")
    with pytest.raises(ConfigError, match="not a regular file"):
        with locked(tmp_path / "x.lock"):
            pass


# ---- glinker serve: what a request's meta may cost ---------------------------------------------------------------


def test_meta_is_counted_against_the_requests_limit() -> None:
    from glinker.serve import RequestTooLarge, meta_items, parse_request

    assert meta_items({"a": [1, 2, {"b": "c"}]}, 100) == 6 and meta_items({"x": list(range(50))}, 10) == 10
    small = {"documents": [{"text": "a", "meta": {"tags": ["x", "y"]}} for _ in range(3)]}
    assert len(parse_request(json.dumps(small).encode(), max_meta_items=12)) == 3  # 4 values each
    with pytest.raises(RequestTooLarge, match="more than 11 values") as ei:
        parse_request(json.dumps(small).encode(), max_meta_items=11)
    assert ei.value.where == "documents[2].meta" and "--max-meta-items" in ei.value.fix
    flood = {"documents": [{"text": "a", "meta": {"x": [{}] * 200_000}}]}
    with pytest.raises(RequestTooLarge):
        parse_request(json.dumps(flood).encode(), max_meta_items=100_000)


def test_serve_answers_a_meta_flood_with_a_413_and_a_big_body_too() -> None:
    """A 16 MB body of 5.6 million empty ``{}`` in one meta took the server to ~650 MB per request (four at once:
    2.68 GB): the body limit is 4 MB now (what 200,000 characters need), two bodies are parsed at a time, and meta
    values are bounded per request."""
    from tests.pipeline.test_s29_serve_security import start

    srv = start(max_meta_items=1000)
    try:
        def post(body: bytes) -> tuple[int, dict]:
            req = urllib.request.Request(f"http://{srv.host}:{srv.port}/link", data=body)
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        code, out = post(json.dumps({"documents": [{"text": "a", "meta": {"x": [{}] * 5000}}]}).encode())
        assert code == 413 and "--max-meta-items" in out["error"]["fix"], out
        code, out = post(json.dumps({"documents": [{"text": "a", "meta": {"x": [1] * 10}}]}).encode())
        assert code == 200 and len(out["documents"]) == 1
        code, out = post(b'{"texts": ["' + b"x" * (4 * 1024 * 1024) + b'"]}')
        assert code == 413 and "at most 4194304" in out["error"]["message"], out
    finally:
        srv.shutdown()


def test_serve_command_has_the_new_limits() -> None:
    from typer.testing import CliRunner

    from glinker.cli import app

    out = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    assert "--max-body" in out and "--max-meta-items" in out


# ---- the review of these mends (session 39): what they had left -------------------------------------------------


def test_a_json_or_html_output_swapped_for_a_link_between_batches_is_refused(tmp_path: Path) -> None:
    """The page or array is reopened by name every batch: a link put in its place after the first was written
    through (the victim overwritten in place and cut)."""
    from glinker.stages.writers import HTMLWriter, JSONWriter
    from glinker.types import LinkedDocument

    for cls, name in ((JSONWriter, "out.json"), (HTMLWriter, "out.html")):
        victim = tmp_path / f"victim-{name}"
        victim.write_text("victim's precious data\n", encoding="utf-8")
        out = tmp_path / name
        w = cls(out)
        w.write([LinkedDocument(id="a", text="x", links=[])])
        out.unlink()
        out.symlink_to(victim)
        with pytest.raises(ConfigError, match="symbolic link"):
            w.write([LinkedDocument(id="b", text="y", links=[])])
        assert victim.read_text(encoding="utf-8") == "victim's precious data\n"


def test_eval_outputs_are_not_written_through_a_link(tmp_path: Path) -> None:
    """``--json`` resolved its path and replaced the link's target; ``--save-predictions`` opened through it. A link
    to a pipe or a device (/dev/stdout) is still written to."""
    from glinker.cli.eval import _guard_output, _write_report
    from glinker.eval.ner import write_predictions
    from glinker.io import refuse_linked_file

    victim = _victim(tmp_path)
    link = tmp_path / "report.json"
    link.symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link") as ei:
        _guard_output("--json", link)
    assert ei.value.where == "--json"
    _write_report(link, {"f1": 0.5})  # a link planted after the check: replaced itself, its target untouched
    assert not link.is_symlink() and json.loads(link.read_text(encoding="utf-8")) == {"f1": 0.5}
    assert victim.read_text(encoding="utf-8") == "export SECRET=1\n"
    preds = tmp_path / "preds.jsonl"
    preds.symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link"):
        write_predictions(preds, None, [])  # type: ignore[arg-type]
    assert victim.read_text(encoding="utf-8") == "export SECRET=1\n"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "stdout").symlink_to(fifo)
    refuse_linked_file(tmp_path / "stdout", "--json")  # a link to a pipe, as /dev/stdout is: fine


def test_a_closed_spool_is_not_read(tmp_path: Path) -> None:
    """A generator that outlived close() read whatever file had taken the descriptor's number since."""
    from glinker.kb.store import SpooledEntities
    from glinker.types import Entity

    sp = SpooledEntities(tmp_path)
    for i in range(3):
        sp[str(i)] = Entity(id=str(i), label=f"E{i}" * 30_000)  # more than the reader's buffer
    sp.written()
    it = iter(sp)
    assert next(it).label.startswith("E0")
    sp.close()
    with pytest.raises(ValueError, match="closed"):
        list(it)
    with pytest.raises(ValueError, match="closed"):
        list(sp)


def test_the_umask_is_read_without_being_changed() -> None:
    from glinker.io import current_umask

    old = os.umask(0o027)
    try:
        assert current_umask() == 0o027 and os.umask(0o027) == 0o027
    finally:
        os.umask(old)


def test_make_typed_mentions_writes_its_json(tmp_path: Path) -> None:
    """It imported a helper the mends renamed (ImportError at its last step)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_typed_mentions", Path(__file__).resolve().parents[2] / "scripts" / "make_typed_mentions.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    out = mod.write_json_atomic(tmp_path / "sub" / "x.json", {"a": 1})
    assert json.loads(out.read_text(encoding="utf-8")) == {"a": 1}
