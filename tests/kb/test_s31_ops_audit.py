"""The operations audit of KB building and updating (s31): one writer per KB folder, entities stored without their
vector, model upgrades, write failures, damaged files, newer manifests, relative model paths, a source KB's rebuild
on a model change, and the documentation of the kb commands."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from glinker.errors import KBError
from glinker.kb import KB, build_kb
from glinker.kb.adapters import load_adapter
from glinker.kb.kb import CURRENT, INDEX, MANIFEST, STORE, current_generation
from glinker.kb.testing import SAMPLE_ENTITIES
from glinker.types import Entity

from .conftest import REPO, build_records_kb, write_jsonl


def cli(*args: str) -> Any:
    from glinker.cli import app

    return CliRunner().invoke(app, list(args))


def glinker_cmd(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """The `glinker` command line in a process of its own (as `python -m glinker`)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "glinker", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


def alias_kb(tmp_path: Path, n: int = 5) -> Path:
    return build_records_kb([{"id": f"E{i}", "label": f"entity {i}"} for i in range(n)], tmp_path)


def ids_of(kb_dir: Path) -> set[str]:
    with KB.open(kb_dir) as kb:
        return kb.store.all_ids()


@pytest.fixture
def kb_dir(tmp_path: Path, encoder: Any) -> Path:
    src = write_jsonl(SAMPLE_ENTITIES, tmp_path / "kb.jsonl")
    build_kb(load_adapter("jsonl", str(src)), tmp_path / "kb", encoder, model_name="tiny")
    return tmp_path / "kb"


class Holding:
    """A thread holding a KB writer (``KB.update``, ``KB.open(writable=True)``) with ``change(kb)`` made, until
    ``release()``."""

    def __init__(self, opener: Any, change: Any) -> None:
        self.ready, self.go, self.error = threading.Event(), threading.Event(), None
        self.opener, self.change = opener, change
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(60), "the writer did not start"
        assert self.error is None, self.error

    def _run(self) -> None:
        try:
            with self.opener() as kb:
                self.change(kb)
                self.ready.set()
                self.go.wait(60)
        except BaseException as e:  # noqa: BLE001 - said by the test
            self.error = e
            self.ready.set()

    def release(self, after: float = 0.0) -> None:
        if after:
            threading.Timer(after, self.go.set).start()
        else:
            self.go.set()

    def join(self) -> None:
        self.thread.join(60)
        assert self.error is None, self.error


# -- 1. one writer per KB folder -----------------------------------------------------------------------------------
def test_a_second_writer_is_refused_while_an_update_runs_and_nothing_is_lost(tmp_path: Path) -> None:
    """Two updates at once each copied the same generation and the last to publish dropped the other's entities,
    both saying they succeeded. Now a second writer of any kind (an update in a copy or in place, a build) is
    refused at once, naming the folder and what holds it; run again, it applies on top of the first."""
    kb_dir = alias_kb(tmp_path)
    first = Holding(lambda: KB.update(kb_dir), lambda kb: kb.upsert([Entity(id="A1", label="from the first")], None))
    try:
        with pytest.raises(KBError, match="being written by another thread of this process") as ei:
            with KB.update(kb_dir) as kb:
                kb.upsert([Entity(id="B1", label="from the second")], None)
        said = str(ei.value)
        assert str(kb_dir) in said and f"pid {os.getpid()}" in said and "an update in a copy" in said
        assert "run this again once it has finished" in said
        with pytest.raises(KBError, match="being written by another thread of this process"):
            KB.open(kb_dir, writable=True)
        src = write_jsonl([Entity(id="C1", label="built")], tmp_path / "c.jsonl")
        with pytest.raises(KBError, match="being written by another thread of this process"):
            build_kb(load_adapter("jsonl", str(src)), kb_dir, None)
        with KB.open(kb_dir) as kb:  # readers never wait
            assert len(kb) == 5
    finally:
        first.release()
        first.join()
    with KB.update(kb_dir) as kb:  # run again: on top of the first's result
        kb.upsert([Entity(id="B1", label="from the second")], None)
    assert {"A1", "B1"} <= ids_of(kb_dir) and len(ids_of(kb_dir)) == 7
    with KB.update(kb_dir) as kb:  # one thread, two writers at once: refused too (one would lose the other's)
        with pytest.raises(KBError, match="already by this thread"):
            KB.open(kb_dir, writable=True)


def test_kb_add_atomic_while_another_process_updates_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    """The audit's two `kb add --atomic` at once, the second in a process of its own: exit 2 with an E500 naming
    the folder and its holder, no traceback; the first's entities are kept, and the second, run again, adds its own."""
    kb_dir = alias_kb(tmp_path)
    add = write_jsonl([Entity(id="B1", label="from the second")], tmp_path / "b.jsonl")
    with KB.update(kb_dir) as kb:
        kb.upsert([Entity(id="A1", label="from the first")], None)
        r = glinker_cmd("kb", "add", str(kb_dir), "-s", str(add), "--atomic")
        assert r.returncode == 2, r.stdout + r.stderr
        assert "[E500]" in r.stderr and "being written by another process" in r.stderr
        assert str(kb_dir) in r.stderr and "Traceback" not in r.stderr
        r2 = glinker_cmd("kb", "remove", str(kb_dir), "E1")  # in place: refused as well
        assert r2.returncode == 2 and "being written by another process" in r2.stderr
    assert "A1" in ids_of(kb_dir) and "E1" in ids_of(kb_dir)
    r = glinker_cmd("kb", "add", str(kb_dir), "-s", str(add), "--atomic")
    assert r.returncode == 0, r.stderr
    assert {"A1", "B1"} <= ids_of(kb_dir)


def test_an_update_told_to_wait_applies_on_top_of_the_running_one(tmp_path: Path, caplog: Any) -> None:
    kb_dir = alias_kb(tmp_path)
    first = Holding(lambda: KB.update(kb_dir), lambda kb: kb.upsert([Entity(id="A1", label="first")], None))
    first.release(after=1.0)
    with caplog.at_level(logging.WARNING, logger="glinker.kb.kb"):
        with KB.update(kb_dir, wait=True) as kb:
            assert "A1" in kb.store.all_ids()  # copied after the first published
            kb.upsert([Entity(id="B1", label="second")], None)
    first.join()
    assert "waiting for it to finish" in caplog.text
    assert {"A1", "B1"} <= ids_of(kb_dir)


def test_a_pipeline_source_sync_waits_for_a_running_update_and_syncs_on_top_of_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    """A pipeline's sync of its KB read from a source, while another process updates that KB (here: link
    statistics): it waits, then its changes and the other's are both kept."""
    from glinker.pipeline.stage import PipelineContext
    from glinker.stages.resources import KBSource, open_kb

    monkeypatch.setenv("GLINKER_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "src.jsonl"
    write_jsonl([Entity(id=f"E{i}", label=f"entity {i}") for i in range(4)], src)
    block = KBSource(adapter="jsonl", source=str(src), cache=str(tmp_path / "kbcache"))
    open_kb(PipelineContext(base_dir=tmp_path), block, model="none").close()
    out = tmp_path / "kbcache"
    write_jsonl([Entity(id=f"E{i}", label=f"entity {i}") for i in range(5)], src)  # the source gains E4
    other = Holding(lambda: KB.update(out), lambda kb: kb.set_link_stats({"entity 1": (3, 4)}, "test"))
    other.release(after=1.0)
    with caplog.at_level(logging.WARNING):
        kb = open_kb(PipelineContext(base_dir=tmp_path), block, model="none")
    other.join()
    kb.close()
    assert "waiting for it to finish" in caplog.text
    with KB.open(out) as kb:
        assert "E4" in kb.store.all_ids() and kb.link_stats(["entity 1"]) == {"entity 1": (3, 4)}


# -- 2. entities stored without their vector -----------------------------------------------------------------------
def _interrupted_add(kb_dir: Path) -> None:
    """The KB as a `kb add` killed after committing a batch and before writing its vectors leaves it."""
    with KB.open(kb_dir, writable=True) as kb:
        kb.store.upsert([Entity(id="NEW", label="Atlantis", description="a sunken city")], kb.template,
                        track_pending=True)


def test_an_entity_without_a_vector_gets_none_and_a_warning_not_a_faiss_error(kb_dir: Path, encoder: Any,
                                                                             caplog: Any) -> None:
    """A `kb add` killed (or interrupted) between its store commit and its index write: linking crashed with
    faiss's "key N not found" (E300, "a bug") until another update ran. Now such an entity has no vector (its
    biencoder feature 0, as documented) and one warning says what to run."""
    from glinker.stages.resources import EntityVectors

    reader = KB.open(kb_dir)  # opened before: the update is met by the stage
    try:
        _interrupted_add(kb_dir)
        with caplog.at_level(logging.WARNING):
            vectors = EntityVectors(reader)
            got = vectors.get(["NEW", "Q90", "Q72"])
            assert set(got) == {"Q90", "Q72"} and got["Q90"].shape == (encoder.dim,)
            assert set(vectors.get(["NEW", "Q90"])) == {"Q90"}  # from the cache, the missing one too
    finally:
        reader.close()
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and "without a vector yet (NEW)" in said[0] and "run the update again" in said[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING), KB.open(kb_dir) as kb:  # opened after: said once, when it opens
        assert set(EntityVectors(kb).get(["NEW", "Q90"])) == {"Q90"}
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and "1 new or changed entities are not embedded yet" in said[0] and "run the update again" in said[0]


def test_entities_added_in_place_after_the_index_was_loaded_have_no_vector_there(kb_dir: Path, encoder: Any,
                                                                                 caplog: Any) -> None:
    """s4_reader inplace: a long-running linker, another process `kb add`s in place."""
    from glinker.stages.resources import EntityVectors

    reader = KB.open(kb_dir)
    try:
        vectors = EntityVectors(reader)
        assert set(vectors.get(["Q90"])) == {"Q90"}  # the index is loaded
        with KB.open(kb_dir, writable=True) as kb:  # a whole update, vectors included
            kb.upsert([Entity(id="NEW", label="Atlantis", description="a sunken city")], encoder)
        with caplog.at_level(logging.WARNING):
            assert set(vectors.get(["NEW", "Q72"])) == {"Q72"}
        assert "updated in place since this process loaded its vector index" in caplog.text
        assert "restart this process" in caplog.text
    finally:
        reader.close()


def test_kb_info_says_the_stores_count_and_the_unfinished_update(kb_dir: Path) -> None:
    _interrupted_add(kb_dir)
    r = cli("kb", "info", str(kb_dir))
    assert r.exit_code == 0, r.output
    lines = {line.split()[0]: line for line in r.output.splitlines() if line.strip()}
    n = len(SAMPLE_ENTITIES)
    assert f"{n + 1}" in lines["entities"] and f"manifest says {n}" in lines["entities"]
    assert "1 index changes not applied" in lines["pending"] and "run it again" in lines["pending"]
    js = json.loads(cli("kb", "info", str(kb_dir), "--json").output)
    assert js["counts"]["entities"] == n + 1 and js["pending"] == {"index_changes": 1, "to_embed": 1, "to_remove": 0}


@pytest.mark.parametrize("atomic", [False, True])
def test_ctrl_c_on_kb_add_says_what_was_kept_and_to_run_it_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  atomic: bool) -> None:
    kb_dir = alias_kb(tmp_path)
    add = write_jsonl([Entity(id="B1", label="added")], tmp_path / "b.jsonl")

    def interrupted(*a: Any, **k: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(KB, "upsert", interrupted)
    r = cli("kb", "add", str(kb_dir), "-s", str(add), *(["--atomic"] if atomic else []))
    assert r.exit_code == 130, r.output
    assert "interrupted:" in r.output and "run the same command again" in r.output
    assert ("nothing was changed" in r.output) == atomic
    with KB.open(kb_dir, writable=True):  # the writer lock was let go
        pass


# -- 3. a model whose weights changed under the same name -------------------------------------------------------------
def _other_weights(kb_dir: Path, version: str = "0.9.0") -> None:
    """The manifest of a KB built with an earlier release of the same model (other weights, another glinker)."""
    m = current_generation(kb_dir) / MANIFEST
    d = json.loads(m.read_text())
    d["model_fingerprint"], d["glinker_version"] = "0f1e2d3c4b5a" + d["model_fingerprint"][12:], version
    m.write_text(json.dumps(d))


def test_a_model_whose_weights_changed_under_its_name_asks_for_a_rebuild(kb_dir: Path, encoder: Any) -> None:
    """"built with model glinker-bi-minilm (fingerprint X), not with the model in use (fingerprint Y) - link with the
    model that built it (glinker-bi-minilm)" told a user who had just upgraded glinker to do what they did."""
    from types import SimpleNamespace

    from glinker.stages.resources import check_kb_vectors

    _other_weights(kb_dir)
    with KB.open(kb_dir) as kb:
        with pytest.raises(KBError) as ei:
            kb.check_model(encoder.fingerprint, "tiny")
        said = str(ei.value)
        assert "weights of model tiny changed since" in said and "glinker 0.9.0" in said
        assert "glinker kb build" in said and "link with the model that built it" not in said
        with pytest.raises(KBError, match="weights of model tiny changed"):  # a stage's model, named as loaded
            check_kb_vectors(kb, SimpleNamespace(fingerprint=encoder.fingerprint, source="tiny"), "stage 'x'")
        with pytest.raises(KBError, match=r"not with the model in use \(other, fingerprint"):  # another model: as before
            kb.check_model(encoder.fingerprint, "other")


def test_kb_add_with_the_kbs_own_model_after_its_weights_changed(tmp_path: Path, tiny_checkpoint: Path) -> None:
    src = write_jsonl(SAMPLE_ENTITIES, tmp_path / "e.jsonl")
    r = cli("kb", "build", "-a", "jsonl", "-s", str(src), "--model", str(tiny_checkpoint), "--out",
            str(tmp_path / "kb"))
    assert r.exit_code == 0, r.output
    _other_weights(tmp_path / "kb")
    add = write_jsonl([Entity(id="B1", label="added")], tmp_path / "b.jsonl")
    r = cli("kb", "add", str(tmp_path / "kb"), "-s", str(add))
    assert r.exit_code != 0 and isinstance(r.exception, KBError)
    said = str(r.exception)
    assert f"weights of model {tiny_checkpoint} changed since" in said and "rebuild the KB" in said


# -- 4. write failures ---------------------------------------------------------------------------------------------
def _unshare_ok() -> bool:
    if not shutil.which("unshare") or sys.platform != "linux":
        return False
    r = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt 2>/dev/null || exit 3"],
                       capture_output=True)
    return r.returncode == 0


needs_mounts = pytest.mark.skipif(not _unshare_ok(), reason="needs `unshare -m` and mount (root in a Linux sandbox)")


def _in_namespace(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "G": f"{sys.executable} -m glinker"}
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=600)


@needs_mounts
def test_writing_a_kb_on_read_only_storage_is_said_not_a_traceback(tmp_path: Path) -> None:
    kb_dir = alias_kb(tmp_path)
    add = write_jsonl([Entity(id="B1", label="added")], tmp_path / "b.jsonl")
    links = tmp_path / "ls.jsonl"
    links.write_text(json.dumps({"id": "d1", "text": "entity 1 met entity 2.", "mentions": [
        {"start": 0, "end": 8, "wikidata_qid": "E1"}]}) + "\n")
    (tmp_path / "parent").mkdir()
    script = (f"mount --bind {kb_dir} {kb_dir} && mount -o remount,ro,bind {kb_dir} && "
              f"mount --bind {tmp_path}/parent {tmp_path}/parent && mount -o remount,ro,bind {tmp_path}/parent && "
              f"for c in 'kb add {kb_dir} -s {add}' 'kb add {kb_dir} -s {add} --atomic' 'kb remove {kb_dir} E1' "
              f"'kb link-stats {kb_dir} -d {links}' 'kb build -a jsonl -s {add} --model none --out {kb_dir}' "
              f"'kb build -a jsonl -s {add} --model none --out {tmp_path}/parent/new'; do "
              "echo \"== $c\"; $G $c 2>&1; echo \"rc=$?\"; done")
    r = _in_namespace(script, tmp_path)
    runs = [part for part in r.stdout.split("== ")[1:]]
    assert len(runs) == 6, r.stdout + r.stderr
    for run in runs:
        assert "rc=2" in run and "[E500]" in run and "Read-only file system" in run, run
        assert "Traceback" not in run and "make " in run and "writable" in run, run
    assert f"{tmp_path}/parent/new: cannot be written" in runs[-1]
    assert ids_of(kb_dir) == {f"E{i}" for i in range(5)}


@needs_mounts
def test_a_build_that_fills_the_disk_says_so_once_and_resumes_when_run_again(tmp_path: Path) -> None:
    src = tmp_path / "big.jsonl"
    src.write_text("".join(json.dumps({"id": f"E{i}", "label": f"entity number {i}", "description": "x" * 400})
                           + "\n" for i in range(12000)))
    (tmp_path / "tiny").mkdir()
    script = (f"mount -t tmpfs -o size=3m tmpfs {tmp_path}/tiny && "
              f"$G kb build -a jsonl -s {src} --model none --chunk-size 1000 --out {tmp_path}/tiny/kb 2>&1; "
              f"echo \"rc=$?\"; mount -o remount,size=60m {tmp_path}/tiny && "
              f"$G kb build -a jsonl -s {src} --model none --chunk-size 1000 --out {tmp_path}/tiny/kb 2>&1; "
              f"echo \"rc=$?\"; $G kb info {tmp_path}/tiny/kb 2>&1 | head -3")
    r = _in_namespace(script, tmp_path)
    first, second = r.stdout.split("rc=")[:2]
    assert "no space left on its device" in first and "[E500]" in first, r.stdout
    assert "the build resumes where it stopped" in first and "Traceback" not in first, r.stdout
    assert first.count("[E") == 1, r.stdout
    assert second.startswith("2") and "built " in second and "12,000 entities" in second, r.stdout
    assert "resuming the interrupted build" in second or "already stored" in second, r.stdout


def test_a_close_that_fails_after_a_full_disk_does_not_hide_the_first_error(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from glinker.kb.store import EntityStore

    full = sqlite3.OperationalError("database or disk is full")
    real, calls = EntityStore.upsert, []

    def upsert(*a: Any, **k: Any) -> Any:  # the disk fills after the first chunk was stored
        calls.append(1)
        if len(calls) > 2:
            raise full
        return real(*a, **k)

    def close(self: Any) -> None:
        self.db.close()
        raise sqlite3.OperationalError("database or disk is full (closing)")

    src = write_jsonl([Entity(id=f"E{i}", label=f"entity {i}") for i in range(3)], tmp_path / "e.jsonl")
    monkeypatch.setattr(EntityStore, "upsert", upsert)
    monkeypatch.setattr(EntityStore, "close", close)
    with pytest.raises(KBError) as ei:
        build_kb(load_adapter("jsonl", str(src)), tmp_path / "kb", None, chunk_size=1)
    said = str(ei.value)
    assert "no space left on its device" in said and "(closing)" not in said
    assert "run the same command again: the build resumes where it stopped" in said


def test_a_vector_file_cut_by_a_full_disk_is_said_and_the_build_resumes(tmp_path: Path, encoder: Any,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy says a full disk as "N requested and M written", an OSError without errno (s5_diskfull: a traceback)."""
    import numpy as np

    src = write_jsonl(SAMPLE_ENTITIES, tmp_path / "e.jsonl")
    real = np.save

    def save(file: Any, arr: Any, *a: Any, **k: Any) -> None:
        file.write(b"\x93NUMPY" + bytes(4089))  # what fitted (written to the temporary file's descriptor)
        raise OSError(f"{arr.nbytes} requested and 4096 written")

    monkeypatch.setattr(np, "save", save)
    with pytest.raises(KBError) as ei:
        build_kb(load_adapter("jsonl", str(src)), tmp_path / "kb", encoder, chunk_size=4)
    said = str(ei.value)
    assert "no space left on its device" in said and "the build resumes where it stopped" in said
    assert not list((tmp_path / "kb").glob(".staging-*/parts/*.tmp*"))  # the cut file is not left taking room
    monkeypatch.setattr(np, "save", real)
    build_kb(load_adapter("jsonl", str(src)), tmp_path / "kb", encoder, chunk_size=4)
    assert len(ids_of(tmp_path / "kb")) == len(SAMPLE_ENTITIES)


# -- 5. damaged files ----------------------------------------------------------------------------------------------
def test_a_cut_vector_index_is_said_damaged(kb_dir: Path, encoder: Any) -> None:
    f = current_generation(kb_dir) / INDEX
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with KB.open(kb_dir) as kb, pytest.raises(KBError) as ei:
        kb.index()
    said = str(ei.value)
    assert ei.value.where == str(f) and "the vector index is damaged" in said
    assert "rebuild it with `glinker kb build" in said and "restore" in said
    r = cli("kb", "search", str(kb_dir), "Paris", "--model", encoder.source)
    assert isinstance(r.exception, KBError) and "is damaged" in str(r.exception)


def test_an_index_that_is_not_the_one_its_manifest_describes_is_said_damaged(kb_dir: Path) -> None:
    m = current_generation(kb_dir) / MANIFEST
    d = json.loads(m.read_text())
    d.update(factory="IVF64,SQfp16", metric="mips_l2", mips_norm=10.0)
    m.write_text(json.dumps(d))
    with KB.open(kb_dir) as kb, pytest.raises(KBError, match="not the index its manifest describes"):
        kb.index()


@pytest.mark.parametrize("damage", ["cut", "garbage"])
def test_a_cut_or_overwritten_store_is_said_damaged(tmp_path: Path, damage: str) -> None:
    kb_dir = alias_kb(tmp_path, 2000)
    f = current_generation(kb_dir) / STORE
    if damage == "cut":
        f.write_bytes(f.read_bytes()[:8192])
    else:
        f.write_bytes(os.urandom(100_000))
    with pytest.raises(KBError) as ei:
        KB.open(kb_dir)
    said = str(ei.value)
    assert ei.value.where == str(f) and "the entity store is damaged" in said and "rebuild it" in said
    assert "check the path" not in said


def test_damaged_store_pages_met_by_a_query_are_said_not_a_sqlite_error(tmp_path: Path) -> None:
    kb_dir = alias_kb(tmp_path, 3000)
    f = current_generation(kb_dir) / STORE
    with KB.open(kb_dir) as kb:  # opened whole; then its pages past the first are overwritten
        page = kb.store.db.execute("PRAGMA page_size").fetchone()[0]
        data = bytearray(f.read_bytes())
        data[page:] = os.urandom(len(data) - page)
        f.write_bytes(bytes(data))
        with pytest.raises(KBError) as ei:
            kb.lookup_alias("entity 17")
            kb.fuzzy("entity 17")
    assert ei.value.where == str(f) and "the entity store is damaged" in str(ei.value)
    assert "restore its folder from a copy" in str(ei.value)


def test_an_empty_current_file_is_said_damaged_with_the_generation_to_use(tmp_path: Path) -> None:
    kb_dir = alias_kb(tmp_path)
    gen = current_generation(kb_dir).name
    (kb_dir / CURRENT).write_text("")
    with pytest.raises(KBError) as ei:
        KB.open(kb_dir)
    said = str(ei.value)
    assert ei.value.where == str(kb_dir / CURRENT) and "CURRENT is damaged: it is empty" in said
    assert f"echo {gen} > {kb_dir / CURRENT}" in said
    assert f"generation {kb_dir.name} " not in said


# -- 6. a manifest from a newer glinker ----------------------------------------------------------------------------
def test_a_newer_manifest_with_a_new_field_asks_for_an_upgrade(tmp_path: Path) -> None:
    kb_dir = alias_kb(tmp_path)
    m = current_generation(kb_dir) / MANIFEST
    d = json.loads(m.read_text())
    d.update(format_version=2, shards=4)
    m.write_text(json.dumps(d))
    with pytest.raises(KBError) as ei:
        KB.open(kb_dir)
    assert "KB format 2 is newer than this glinker supports" in str(ei.value) and "upgrade glinker" in str(ei.value)


# -- 7. a model given as a relative path -------------------------------------------------------------------------------
def test_a_relative_model_folder_is_recorded_by_its_absolute_path(tmp_path: Path, tiny_checkpoint: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    shutil.copytree(tiny_checkpoint, work / "models" / "m2")
    src = write_jsonl(SAMPLE_ENTITIES, tmp_path / "e.jsonl")
    monkeypatch.chdir(work)
    r = cli("kb", "build", "-a", "jsonl", "-s", str(src), "--model", "models/m2", "--out", str(tmp_path / "kb"))
    assert r.exit_code == 0, r.output
    with KB.open(tmp_path / "kb") as kb:
        assert kb.manifest.model == str(work / "models" / "m2")
    monkeypatch.chdir(tmp_path)  # `kb add` from another folder finds the model
    add = write_jsonl([Entity(id="B1", label="added")], tmp_path / "b.jsonl")
    r = cli("kb", "add", str(tmp_path / "kb"), "-s", str(add))
    assert r.exit_code == 0, r.output


def test_an_old_manifests_relative_model_path_is_said_relative_to_where_the_build_ran(
        kb_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = current_generation(kb_dir) / MANIFEST
    d = json.loads(m.read_text())
    d["model"] = "runs/v1/m2"  # recorded as given by a build before absolute paths were
    m.write_text(json.dumps(d))
    monkeypatch.chdir(kb_dir.parent)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    add = write_jsonl([Entity(id="B1", label="added")], kb_dir.parent / "b.jsonl")
    r = cli("kb", "add", str(kb_dir), "-s", str(add))
    said = str(r.exception)
    assert "relative to the folder its build ran in" in said and "--model /path/to/runs/v1/m2" in said


# -- 8. a source KB rebuilt on a model change ----------------------------------------------------------------------
def test_a_source_kb_rebuilt_for_another_model_says_the_model_changed(tmp_path: Path, caplog: Any) -> None:
    from glinker.pipeline.stage import PipelineContext
    from glinker.stages.resources import KBSource, _build_source_kb

    from .conftest import TinyBertEncoder

    src = write_jsonl(SAMPLE_ENTITIES, tmp_path / "e.jsonl")
    block = KBSource(adapter="jsonl", source=str(src), cache=str(tmp_path / "cache"))
    ctx = PipelineContext(base_dir=tmp_path)
    _build_source_kb(ctx, block, "model-a", TinyBertEncoder(seed=0)).close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glinker.stages.resources"):
        _build_source_kb(ctx, block, "model-b", TinyBertEncoder(seed=1)).close()
    assert "first start" not in caplog.text
    assert "the model changed" in caplog.text and "model-a" in caplog.text and "model-b" in caplog.text
    with KB.open(tmp_path / "cache") as kb:
        assert kb.manifest.model_fingerprint == TinyBertEncoder(seed=1).fingerprint


# -- 9. the kb commands' documentation -----------------------------------------------------------------------------
def test_the_kb_commands_options_are_documented() -> None:
    doc = (REPO / "docs" / "kb.md").read_text(encoding="utf-8")
    for said in ("`-k`", "`--fuzzy`", "`--model none`", "`--json`", "`kb info --json`", "`kb link-stats --limit N`",
                 "upgrading glinker may", "One writer at a time"):
        assert said in doc, said
    assert "differences below 1e-6" not in doc and "about 1e-6" in doc
    r = cli("kb", "search", "--help")
    assert "Print the results as JSON" in r.output
    r = cli("kb", "build", "--help")
    assert "Required" in r.output


# -- the review of the fixes ---------------------------------------------------------------------------------------
def test_an_index_that_cannot_reconstruct_is_an_error_not_missing_vectors(tmp_path: Path) -> None:
    """Only faiss's "key not found" means an entity has no vector yet; any other failure (an index type without
    reconstruct) is raised, not turned into "every entity lost its vector" with a false restart advice."""
    import numpy as np

    from glinker.kb.index import VectorIndex

    idx = VectorIndex.create("IDMap,Flat", 4)
    idx.add(np.eye(4, dtype=np.float32)[:2], np.array([7, 8]))
    with pytest.raises(RuntimeError, match="not implemented"):
        idx.reconstruct_found(np.array([7, 9]))


def test_the_writer_lock_of_a_shared_folder_is_writable_by_the_group_and_others(tmp_path: Path) -> None:
    """A KB folder users share (group- or world-writable): the lock file takes its write bits, so a second user can
    update after the first (the umask's 0644 refused every other user)."""
    import stat

    kb_dir = alias_kb(tmp_path)
    os.chmod(kb_dir, 0o777)
    with KB.update(kb_dir) as kb:
        kb.upsert([Entity(id="A1", label="a")], None)
    mode = stat.S_IMODE((kb_dir / ".writer.lock").stat().st_mode)
    assert mode & 0o022 == 0o022, oct(mode)
    (tmp_path / "p").mkdir()
    private = alias_kb(tmp_path / "p")
    os.chmod(private, 0o755)
    with KB.update(private) as kb:
        kb.upsert([Entity(id="A1", label="a")], None)
    assert stat.S_IMODE((private / ".writer.lock").stat().st_mode) & 0o022 == 0


def test_writing_through_a_kb_opened_read_only_is_said_so(tmp_path: Path) -> None:
    """Not "read-only storage" (the folder is writable): the KB object was opened without writable=True."""
    kb_dir = alias_kb(tmp_path)
    with KB.open(kb_dir) as kb:
        with pytest.raises(KBError, match="opened read-only") as ei:
            kb.store.set_meta("x", 1)
        assert "writable=True" in ei.value.fix and "mount" not in ei.value.fix


def test_a_released_writer_lock_leaves_no_stale_holder_and_threads_are_told_by_what_is_held(tmp_path: Path) -> None:
    """The holder's line is cleared when the lock is released (a later message named a finished process), and "this
    process" is decided by what the process holds, not by a pid in the file (stale, or reused in a container)."""
    kb_dir = alias_kb(tmp_path)
    with KB.update(kb_dir) as kb:
        kb.upsert([Entity(id="A1", label="a")], None)
    assert (kb_dir / ".writer.lock").read_text(encoding="utf-8") == ""
    code = ("import sys, time\nfrom glinker.kb import KB\nwith KB.update(sys.argv[1]):\n"
            "    open(sys.argv[2], 'w').close()\n    time.sleep(60)\n")
    ready = tmp_path / "ready"
    p = subprocess.Popen([sys.executable, "-c", code, str(kb_dir), str(ready)])
    try:
        while not ready.exists():
            assert p.poll() is None
            threading.Event().wait(0.1)
        # a line naming this process (a reused pid; or another user's holder that could not write its own)
        (kb_dir / ".writer.lock").write_text(f"pid {os.getpid()}: a stale line\n", encoding="utf-8")
        with pytest.raises(KBError, match="being written by another process"):
            KB.update(kb_dir).__enter__()
    finally:
        p.kill()
        p.wait()


def test_a_kb_folder_named_with_url_characters_opens(tmp_path: Path) -> None:
    """SQLite reads its file through a URI: a folder named kb#1 (or b?x) cut it at the '#', opened or created another
    file (an empty 'kb') and dropped the read-only mode."""
    import json as _json

    from glinker.kb import KB
    from glinker.kb.adapters import load_adapter
    from glinker.kb.build import build_kb

    src = tmp_path / "e.jsonl"
    src.write_text(_json.dumps({"id": "Q1", "label": "Acme"}) + "\n")
    for name in ("kb#1", "b?x", "c%41"):
        build_kb(load_adapter("jsonl", str(src)), tmp_path / name, None)
        with KB.open(tmp_path / name) as kb:
            assert [e.id for e in kb.get(["Q1"])] == ["Q1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b?x", "c%41", "e.jsonl", "kb#1"]  # nothing made beside
