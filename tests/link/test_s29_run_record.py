"""The run record ``OUTPUT.run.json`` beside an output in a folder others can write: a symbolic link or a hard link
planted at its name never has its target opened, truncated or overwritten; the record is replaced whole (a
temporary file renamed over it) and only once the run's checks pass; the lock that refuses a second run on the same
output holds across that replacement."""

from __future__ import annotations

import fcntl
import json
import os
import stat
from pathlib import Path

import pytest

from glinker.cli.link import _claim_output, run_link
from glinker.errors import ConfigError

VICTIM = "IMPORTANT USER DATA\n"


def _record(out: Path) -> Path:
    return out.with_name(out.name + ".run.json")


def test_a_planted_symlink_is_refused_and_its_target_untouched(pipeline, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("Paris\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text(VICTIM)
    out = shared / "links.jsonl"
    _record(out).symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link") as ei:
        run_link(src, pipeline, out)
    assert ei.value.where == "--output"
    assert victim.read_text() == VICTIM  # neither truncated nor overwritten
    assert _record(out).is_symlink() and not out.exists()
    dangling = shared / "other.jsonl"  # a link to a file that does not exist yet: not created through it
    _record(dangling).symlink_to(tmp_path / "created-through-link.txt")
    with pytest.raises(ConfigError, match="symbolic link"):
        run_link(src, pipeline, dangling)
    assert not (tmp_path / "created-through-link.txt").exists()


def test_a_planted_hard_link_keeps_its_file_and_the_record_is_replaced_whole(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text(VICTIM)
    out = tmp_path / "shared" / "links.jsonl"
    out.parent.mkdir()
    os.link(victim, _record(out))  # the same file under the record's name
    claim = _claim_output(out, {"pipeline": "p1"}, resuming=True)
    try:
        assert victim.read_text() == VICTIM  # the record was renamed over the name, not written into the file
        assert json.loads(_record(out).read_text()) == {"pipeline": "p1"}
        assert os.stat(_record(out)).st_ino != os.stat(victim).st_ino
        umask = os.umask(0)
        os.umask(umask)
        assert stat.S_IMODE(os.stat(_record(out)).st_mode) == 0o666 & ~umask  # as a plain open() made it
        assert [p.name for p in out.parent.iterdir()] == [_record(out).name]  # no temporary file left
    finally:
        claim.__exit__(None, None, None)


def test_a_refused_resume_leaves_the_record_as_it_was(tmp_path):
    out = tmp_path / "links.jsonl"
    out.write_text('{"id": "d0"}\n')
    before = json.dumps({"pipeline": "old"}) + "\n"
    _record(out).write_text(before)
    ino = os.stat(_record(out)).st_ino
    with pytest.raises(ConfigError, match="written by another pipeline"):
        _claim_output(out, {"pipeline": "new"}, resuming=True)
    assert _record(out).read_text() == before and os.stat(_record(out)).st_ino == ino
    # released: the same pipeline resumes, and the record is the new run's
    _claim_output(out, {"pipeline": "old", "kb": "k"}, resuming=False).__exit__(None, None, None)
    assert json.loads(_record(out).read_text()) == {"pipeline": "old", "kb": "k"}


def test_the_lock_holds_across_the_replaced_record(tmp_path):
    out = tmp_path / "links.jsonl"
    out.write_text("")
    first = _claim_output(out, {"pipeline": "p"}, resuming=False)
    try:
        with pytest.raises(ConfigError, match="another glinker link is writing"):
            _claim_output(out, {"pipeline": "p"}, resuming=False)
        # what an older glinker (or any flock user) finds: the record now at that path is held
        with open(_record(out)) as f, pytest.raises(OSError):
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        first.__exit__(None, None, None)
    second = _claim_output(out, {"pipeline": "q"}, resuming=False)
    second.__exit__(None, None, None)
    second.__exit__(None, None, None)  # a second release is harmless
    assert json.loads(_record(out).read_text()) == {"pipeline": "q"}


@pytest.mark.timeout(60)  # before the fix: the FIFO was opened and read, and the run waited forever
def test_a_record_that_is_no_regular_file_is_refused_without_waiting(tmp_path):
    out = tmp_path / "links.jsonl"
    os.mkfifo(_record(out))  # a reader opening it would wait for a writer forever
    with pytest.raises(ConfigError, match="not a regular file"):
        _claim_output(out, {"pipeline": "p"}, resuming=True)
    assert stat.S_ISFIFO(os.stat(_record(out)).st_mode)


def test_a_file_system_that_locks_only_writable_files_still_gets_the_run(tmp_path, monkeypatch):
    """NFS emulates flock with byte-range locks: an exclusive lock needs a file opened for writing (flock(2)). The
    record was opened read-only, so every run on an NFS output folder was refused as "another run is writing"."""
    import errno

    real = fcntl.flock

    def nfs_flock(fd, op):
        if op & fcntl.LOCK_EX and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return real(fd, op)

    monkeypatch.setattr(fcntl, "flock", nfs_flock)
    out = tmp_path / "links.jsonl"
    with _claim_output(out, {"pipeline": "p1"}, resuming=True):
        assert json.loads(_record(out).read_text()) == {"pipeline": "p1"}

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)  # a file system without locks: said so, not "busy"
    with pytest.raises(ConfigError, match="cannot lock") as ei:
        _claim_output(tmp_path / "other.jsonl", {"pipeline": "p1"}, resuming=True)
    assert "another glinker" not in str(ei.value)
    assert not ei.value.where.endswith(".run.json") and "write the output to" in ei.value.fix  # the -o option's


def test_an_output_that_is_a_symbolic_link_is_refused_and_its_target_untouched(pipeline, tmp_path):
    """A link planted at the output's own name: resuming cut the target's unfinished last line and appended to it."""
    src = tmp_path / "in.txt"
    src.write_text("Paris\n")
    victim = tmp_path / "victim.txt"
    victim.write_text(VICTIM + "last line without newline")
    out = tmp_path / "shared" / "links.jsonl"
    out.parent.mkdir()
    out.symlink_to(victim)
    with pytest.raises(ConfigError, match="is a symbolic link") as ei:
        run_link(src, pipeline, out)
    assert ei.value.where == "--output"
    assert victim.read_text() == VICTIM + "last line without newline"
