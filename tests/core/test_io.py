

def test_jsonl_lines_stay_lines_for_splitlines(tmp_path):
    """U+2028, U+2029 and U+0085 are legal raw in JSON strings but split lines for str.splitlines(): escaped."""
    import json

    from glinker.io import write_jsonl
    from glinker.stages.writers import dumps_jsonl

    doc = {"id": "1", "text": "a\u2028b\u2029c\x85d"}
    write_jsonl(tmp_path / "o.jsonl", [doc, doc])
    for text in ((tmp_path / "o.jsonl").read_text(encoding="utf-8"), dumps_jsonl([doc, doc])):
        lines = text.splitlines()
        assert len(lines) == 2 and [json.loads(x) for x in lines] == [doc, doc]


def test_locked_says_when_the_file_system_has_no_locks(tmp_path, monkeypatch) -> None:
    """`locked` and the run record share one flock: busy is Busy; a file system without locks (ENOLCK, some NFS
    mounts) is a ConfigError naming the file, for every lock (a KB build's got a bare OSError, or waited)."""
    import errno
    import fcntl

    import pytest

    from glinker.errors import ConfigError
    from glinker.io import Busy, locked

    with locked(tmp_path / "a.lock", wait=False):
        with pytest.raises(Busy):
            with locked(tmp_path / "a.lock", wait=False):
                pass
    with locked(tmp_path / "a.lock", wait=False):  # released: taken again
        pass

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    for wait in (False, True):
        with pytest.raises(ConfigError, match="cannot lock .*b.lock: No locks available"):
            with locked(tmp_path / "b.lock", wait=wait):
                pass


def test_a_lock_held_on_a_file_system_that_says_eacces_is_busy(tmp_path, monkeypatch) -> None:
    """Where flock is emulated with fcntl locks (CIFS), a held lock is EACCES, not EAGAIN: busy (or waited for),
    not "cannot lock"."""
    import errno
    import fcntl

    import pytest

    from glinker.io import Busy, locked

    real, calls = fcntl.flock, []

    def held_once(fd, op):
        calls.append(op)
        if op & fcntl.LOCK_NB and len(calls) == 1:
            raise OSError(errno.EACCES, "Permission denied")
        return real(fd, op)

    monkeypatch.setattr(fcntl, "flock", held_once)
    with pytest.raises(Busy):
        with locked(tmp_path / "c.lock", wait=False):
            pass
    calls.clear()
    with locked(tmp_path / "c.lock", wait=True):  # waited for (a blocking flock), then held
        assert calls[:2] == [fcntl.LOCK_EX | fcntl.LOCK_NB, fcntl.LOCK_EX]


def test_a_name_too_long_for_the_file_system_is_said_as_such(tmp_path):
    """A 300-character --model ended in a traceback (OSError ENAMETOOLONG from a path check): now exit 2 with the
    value shortened and the fix."""
    import subprocess
    import sys

    long = "m" * 300
    r = subprocess.run([sys.executable, "-m", "glinker", "ner", "-m", long, "-l", "person", "-"], input="x\n",
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert "too long for the file system" in r.stderr and "(300 characters)" in r.stderr
