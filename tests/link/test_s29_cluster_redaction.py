"""A Redis queue URL with a password is shown as ``redis://:***@...`` in every error, warning and log line of the
cluster code: a second coordinator on a busy job, a lost Redis server (coordinator and worker), heartbeats that
fail, a cleanup or a deregistration that fails, a worker that reconnects. Run on the real local Redis server: the
code holds the URL with a password, the connection itself is made without one (the local server has none)."""

from __future__ import annotations

import ast
import logging
import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from glinker.errors import ConfigError, StageError

URL = os.environ.get("GLINKER_TEST_REDIS", "redis://127.0.0.1:6379/0")
PASSWORD = "S29LeakRedisPW"
_u = urlparse(URL)
SECRET_URL = f"{_u.scheme}://:{PASSWORD}@{_u.hostname}:{_u.port or 6379}{_u.path}"
SHOWN = f"{_u.scheme}://:***@{_u.hostname}:{_u.port or 6379}{_u.path}"
REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]


@pytest.fixture
def password_url(monkeypatch):
    """``glinker.cluster.connect`` reaching the local server (no password) for SECRET_URL: the objects hold the URL
    with a password, as on a cluster whose Redis has one."""
    from glinker import cluster

    real = cluster.connect
    monkeypatch.setattr(cluster, "connect", lambda url: real(URL if url == SECRET_URL else url))
    return SECRET_URL


def _dead_client():
    """A Redis client of a port nobody listens on: every command fails as with a Redis server gone."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1, socket_timeout=1,
                       retry=Retry(NoBackoff(), 0))  # fails at once (the client's default retries take seconds)


def _no_password(texts) -> None:
    for t in texts:
        assert PASSWORD not in t, t


class _Task:
    """The least a worker serves: nothing is ever processed here."""

    kind = "link"
    fingerprint = "s29"
    name = "s29"

    def warm_up(self) -> str:
        return "s29-ident"

    def process(self, payload):  # pragma: no cover - no batch is queued
        return []

    def size(self, payload) -> int:  # pragma: no cover
        return 0


def test_no_message_formats_the_raw_queue_url():
    """Every log call and every error built in the cluster code (and the cluster paths of `glinker link`/`worker`)
    shows the URL through redact() / said() or the redacted copy (`.shown`), never `url`, `queue` or `.url`."""
    raw_names, raw_attrs = {"url", "queue"}, {"url"}
    problems = []
    for rel in ("glinker/cluster.py", "glinker/cli/link.py"):
        tree = ast.parse((REPO / rel).read_text(encoding="utf-8"))
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call):
                continue
            f = call.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            shows = (owner == "log" or name.endswith("Error") or name in ("echo", "BadParameter", "write"))
            if not shows:
                continue
            stack = [*call.args, *(k.value for k in call.keywords)]
            while stack:
                node = stack.pop()
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("redact",
                                                                                                    "said"):
                    continue  # shown redacted
                if (isinstance(node, ast.Name) and node.id in raw_names) or \
                        (isinstance(node, ast.Attribute) and node.attr in raw_attrs):
                    problems.append(f"{rel}:{node.lineno}")
                stack.extend(ast.iter_child_nodes(node))
    assert not problems, f"raw queue URL in a message at {problems}"


def test_said_hides_the_url_and_its_password_in_a_clients_error():
    from glinker.cluster import said

    e = ConnectionError(f"Error connecting to {SECRET_URL}: AUTH {PASSWORD} refused; %2F{PASSWORD}")
    shown = said(e, SECRET_URL)
    assert PASSWORD not in shown and SHOWN in shown
    enc = "redis://:p%40ss%2Fw0rd@h:6379/0"  # a percent-encoded password: the client says it decoded
    assert "p@ss/w0rd" not in said(RuntimeError("AUTH p@ss/w0rd failed"), enc)
    assert said(RuntimeError("Connection refused"), "redis://h:6379/0") == "Connection refused"


def test_a_busy_job_and_a_lost_redis_show_the_url_without_its_password(password_url, redis_job, caplog):
    from glinker.cluster import Coordinator

    first = Coordinator(password_url, redis_job, "x", lambda recs: None)
    try:
        assert PASSWORD not in first.worker_hint and SHOWN in first.worker_hint
        with pytest.raises(ConfigError, match="is being coordinated by") as busy:
            Coordinator(password_url, redis_job, "x", lambda recs: None)
        assert SHOWN in busy.value.message
        _no_password([str(busy.value), busy.value.message, busy.value.fix or ""])
        first.r = _dead_client()  # the Redis server went away
        with pytest.raises(StageError, match="lost the Redis server") as lost:
            first.submit({"docs": []}, "1-1")
        assert SHOWN in lost.value.message
        _no_password([str(lost.value)])
        with caplog.at_level(logging.WARNING, logger="glinker.cluster"):
            first.close()
        cleanup = [r.getMessage() for r in caplog.records if "could not clean up" in r.getMessage()]
        assert cleanup and SHOWN in cleanup[0]
        _no_password(r.getMessage() for r in caplog.records)
    finally:
        first._lock_stop.set()


def test_worker_warnings_show_the_url_without_its_password(password_url, redis_job, caplog):
    import redis

    from glinker.cluster import Worker

    w = Worker(_Task(), password_url, redis_job, heartbeat_ttl=0.3, poll=0.1)
    good = w.r
    with caplog.at_level(logging.INFO, logger="glinker.cluster"):
        # lost and found again: "lost Redis at", then "reconnected to"
        w._reconnect(redis.ConnectionError("Connection reset by peer"))
        # heartbeats to a server that is gone
        w.r = _dead_client()
        beat = threading.Thread(target=w._beat, daemon=True)
        beat.start()
        deadline = time.monotonic() + 20
        while not any("heartbeat to" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.05)
        w._stop.set()
        beat.join(timeout=10)
        # a worker that cannot deregister when it stops
        w2 = Worker(_Task(), password_url, redis_job, heartbeat_ttl=0.3, poll=0.1)
        w2.run(max_batches=0, on_ready=lambda me: setattr(me, "r", _dead_client()))
    w.r = good
    said = [r.getMessage() for r in caplog.records]
    _no_password(said)
    for what in ("lost Redis at", "reconnected to", "heartbeat to", "could not deregister from", "serving link job"):
        hits = [m for m in said if what in m]
        assert hits and all(SHOWN in m for m in hits), (what, said)


def test_a_password_holding_a_slash_is_not_shown_as_the_database():
    """An unencoded '/' in the password puts its end in the URL's path: the message that would name that path as
    the database shows the URL redacted and says to percent-encode (no connection is made)."""
    from glinker.cluster import connect

    with pytest.raises(ConfigError) as ei:
        connect("redis://:hunter2/SECRETTAIL@127.0.0.1:6379/11")
    text = f"{ei.value.message} {ei.value.fix}"
    assert "SECRETTAIL" not in text and "hunter2" not in text, text
    assert "redis://:***@127.0.0.1:6379/11" in text and "%2F" in text
    with pytest.raises(ConfigError, match="names database 'abc'"):  # a database name still said as it is
        connect("redis://127.0.0.1:6379/abc")
