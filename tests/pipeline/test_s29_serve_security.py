"""`glinker serve` facing hostile clients (security audit, findings 2, 4, 5, 9 and the HTTP items of 11): documents
per request bounded, requests framed one way only (no request smuggled in a body), a deadline per request and a
bounded number of connections, hostile JSON answered with a 400, a request failing alone, Host names checked on a
loopback address (DNS rebinding), no Python version in the Server header, no server detail in a 500."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import pytest

from glinker.pipeline import Pipeline, Stage, StageParams, loads_spec
from glinker.pipeline.registry import StageRegistry
from glinker.types import Mention

pytestmark = pytest.mark.timeout(120)

BODY17 = b'{"text": "Paris"}'  # 17 bytes


class NoMentions(Stage):
    """A stage that finds no mention: records ``{"id", "text", "mentions": []}``, at once."""

    type_name = "t_s29_no_mentions"
    accepts = ("documents",)
    produces = "mentions"
    Params = StageParams

    def run(self, documents: Any, inputs: Any) -> list[list[Mention]]:
        return [[] for _ in documents]


def _pipeline() -> Pipeline:
    reg = StageRegistry()
    reg.register(NoMentions)
    return Pipeline(loads_spec("name: s29\nstages:\n  m: {type: t_s29_no_mentions}\n", reg=reg, source="s29.yaml"))


def start(**kw: Any):
    from glinker.serve import Server

    kw.setdefault("max_wait", 0.01)
    srv = Server(_pipeline(), port=0, **kw)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture
def server():
    srv = start()
    yield srv
    srv.shutdown()


def call(srv, path: str, body: bytes | None = None, headers: dict | None = None, host: str | None = None):
    """(status, headers, JSON or text) of one request; ``host``: where to connect (the server's address)."""
    req = urllib.request.Request(f"http://{host or srv.host}:{srv.port}{path}", data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, hdrs, raw = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, e.headers, e.read()
    text = raw.decode("utf-8")
    try:
        return status, hdrs, json.loads(text)
    except ValueError:
        return status, hdrs, text


def post(srv, body: bytes | dict, **kw: Any):
    return call(srv, "/link", body if isinstance(body, bytes) else json.dumps(body).encode(), **kw)


def exchange(srv, data: bytes, wait: float = 3.0) -> tuple[bytes, bool]:
    """What the server sends back for ``data`` on one connection, and whether it closed the connection (else
    whatever came within ``wait`` seconds)."""
    s = socket.create_connection((srv.host, srv.port), timeout=wait)
    got = b""
    try:
        s.sendall(data)
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                return got, False
            except ConnectionResetError:
                return got, True
            if not chunk:
                return got, True
            got += chunk
    finally:
        s.close()


def statuses(reply: bytes) -> list[int]:
    """The status codes of the responses in ``reply`` (several when a body was read as a request)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] ([0-9]{3}) ", reply)]


# ---- finding 2: documents per request ----------------------------------------------------------------------------


def test_documents_per_request_are_bounded_before_any_is_linked():
    """--max-chars counted characters only: 400,000 empty texts (a 1.6 MB body) were 400,000 documents linked
    (74 s, +450 MB)."""
    from glinker.serve import MAX_DOCS

    assert 100 <= MAX_DOCS <= 10_000
    srv = start(max_docs=5)
    try:
        status, _, out = post(srv, {"texts": [""] * 5})
        assert status == 200 and len(out["documents"]) == 5
        linked = srv.batcher.documents
        for body in ({"texts": [""] * 6}, {"texts": ["a"] * 400_000},
                     {"documents": [{"text": ""} for _ in range(6)]}):
            t0 = time.monotonic()
            status, _, out = post(srv, body)
            assert status == 413, out
            assert "at most 5" in out["error"]["message"] and "--max-docs" in out["error"]["fix"]
            assert time.monotonic() - t0 < 10
        assert srv.batcher.documents == linked  # nothing of the refused requests was linked
    finally:
        srv.shutdown()


def test_the_limits_are_options_of_the_serve_command(monkeypatch):
    from typer.testing import CliRunner

    import glinker
    import glinker.serve
    from glinker.cli import app

    seen: dict = {}

    class Stop(Exception):
        pass

    def fake_server(pipe, host, port, **kw):
        seen.update(kw, host=host)
        raise Stop

    monkeypatch.setattr(glinker, "load_pipeline", lambda *a, **k: object())
    monkeypatch.setattr(glinker.serve, "Server", fake_server)
    r = CliRunner().invoke(app, ["serve", "-p", "p.yaml", "--max-docs", "7", "--max-connections", "3",
                                 "--request-timeout", "9", "--idle-timeout", "2.5", "--allow-host", "a.example",
                                 "--allow-host", "b.example"])
    assert isinstance(r.exception, Stop), r.output
    assert seen["max_docs"] == 7 and seen["max_connections"] == 3 and seen["request_timeout"] == 9
    assert seen["idle_timeout"] == 2.5
    assert list(seen["allow_hosts"]) == ["a.example", "b.example"] and seen["host"] == "127.0.0.1"
    seen.clear()
    r = CliRunner().invoke(app, ["serve", "-p", "p.yaml"])
    assert seen["max_docs"] == 1000 and seen["max_connections"] == 64 and seen["request_timeout"] == 60
    assert seen["idle_timeout"] == glinker.serve.IDLE_TIMEOUT
    assert list(seen["allow_hosts"]) == []


# ---- finding 4: one way to frame a request -----------------------------------------------------------------------


def test_a_body_on_a_get_is_not_read_as_the_next_request(server):
    """A GET's body was left unread on the kept-alive connection and answered as a second request: behind a proxy
    reusing its connections, a request smuggled past it (and answers given to the wrong clients)."""
    smuggled = (b"POST /link HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(BODY17)) + BODY17
    for head in (b"GET /health HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(smuggled),
                 b"HEAD /health HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(smuggled),
                 b"GET /health HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"%x\r\n" % len(smuggled) + smuggled + b"\r\n0\r\n\r\n"):
        reply, closed = exchange(server, head + (b"" if b"chunked" in head else smuggled))
        assert statuses(reply) == [400] and closed, reply
        assert b"Connection: close" in reply
    assert server.batcher.documents == 0  # the POST in the body was not linked
    # a GET without a body (or with Content-Length: 0) keeps its connection
    reply, closed = exchange(server, b"GET /health HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
                                     b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n", wait=1.0)
    assert statuses(reply) == [200, 200] and not closed


@pytest.mark.parametrize("value", [b"+17", b"1_7", b"-17", b"\x0b17", b"\r\n 17", b"17, 17", b"0x11", b"17.0"],
                         ids=["plus", "underscore", "negative", "vtab", "folded", "list", "hex", "float"])
def test_a_content_length_that_is_not_plain_digits_is_a_400_and_closes(server, value):
    """``int()`` read ``+17``, ``1_7`` and ``\\x0b17`` as 17: a front end reading them otherwise (or not at all)
    frames the body differently (request smuggling)."""
    reply, closed = exchange(server, b"POST /link HTTP/1.1\r\nHost: localhost\r\nContent-Length: " + value +
                             b"\r\n\r\n" + BODY17)
    assert statuses(reply) == [400] and closed, reply
    assert b"Content-Length" in reply.split(b"\r\n\r\n", 1)[1]
    assert server.batcher.documents == 0


def test_conflicting_content_lengths_are_a_400_and_transfer_encoding_is_refused(server):
    """With ``Content-Length: 0`` then ``Content-Length: 17`` the first was used, the body read as a request."""
    reply, closed = exchange(server, b"POST /link HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n"
                                     b"Content-Length: 17\r\n\r\n" + BODY17)
    assert statuses(reply) == [400] and closed and b"conflicting" in reply, reply
    # the same value twice is one value (RFC 9110)
    reply, _ = exchange(server, b"POST /link HTTP/1.1\r\nHost: localhost\r\nContent-Length: 17\r\n"
                                b"Content-Length: 17\r\nConnection: close\r\n\r\n" + BODY17)
    assert statuses(reply) == [200], reply
    for te in (b"chunked", b"gzip, chunked", b"identity"):
        reply, closed = exchange(server, b"POST /link HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: " + te +
                                 b"\r\nContent-Length: 17\r\n\r\n" + BODY17)
        assert statuses(reply) == [411] and closed, reply
    assert server.batcher.documents == 1


# ---- finding 5: slow clients, many connections ---------------------------------------------------------------------


def test_a_request_has_one_deadline_for_its_headers_and_body():
    """The timeout was per read: a client sending a header line every few seconds held its thread for ever."""
    srv = start(request_timeout=1.0)
    try:
        for first, drip in ((b"GET /health HTTP/1.1\r\nHost: localhost\r\n", b"X-Slow: 1\r\n"),
                            (b"POST /link HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200\r\n\r\n", b" ")):
            s = socket.create_connection((srv.host, srv.port), timeout=10)
            t0 = time.monotonic()
            s.sendall(first)
            reply, closed = b"", False
            while time.monotonic() - t0 < 6 and not closed:
                try:
                    s.sendall(drip)  # each piece well within the per-read timeout
                except OSError:
                    closed = True
                    break
                s.settimeout(0.3)
                try:
                    chunk = s.recv(65536)
                    reply += chunk
                    closed = not chunk
                except TimeoutError:
                    pass
                except ConnectionResetError:
                    closed = True
            took = time.monotonic() - t0
            s.close()
            assert closed and took < 4, (first, took, reply)
            if first.startswith(b"POST"):
                assert statuses(reply) == [408], reply  # the client, still there, is told why
        status, _, _ = call(srv, "/health")
        assert status == 200
    finally:
        srv.shutdown()


def _handler_threads() -> int:
    return sum("process_request_thread" in t.name for t in threading.enumerate())


def _busy(srv) -> socket.socket:
    """A connection whose request has begun (part of its first line) and goes no further: not idle."""
    s = socket.create_connection((srv.host, srv.port), timeout=10)
    s.sendall(b"GET /health HT")
    return s


def test_connections_served_at_once_are_bounded_and_the_others_wait():
    """One thread per connection without a limit: 1,500 idle connections held 1,507 threads."""
    srv = start(max_connections=3)
    busy = []
    try:
        before = _handler_threads()
        for _ in range(12):
            busy.append(_busy(srv))
        time.sleep(0.5)
        assert _handler_threads() - before <= 3
        with ThreadPoolExecutor(1) as ex:
            waiting = ex.submit(call, srv, "/health")
            time.sleep(1.0)
            assert not waiting.done()  # queued behind the requests under way, not refused
            assert _handler_threads() - before <= 3
            for s in busy:
                s.close()
            status, _, out = waiting.result(timeout=20)
        assert status == 200 and out["status"] == "ok"
        busy = [_busy(srv) for _ in range(5)]
        time.sleep(0.3)
        t0 = time.monotonic()
        srv.shutdown()  # with every slot taken, the stop is not held
        assert time.monotonic() - t0 < 10
    finally:
        for s in busy:
            s.close()
        if srv.httpd.socket.fileno() != -1:
            srv.shutdown()


# ---- review 29, findings 1 and 4: idle connections, and a request's deadline from its first byte -----------------


def _health(srv, timeout: float = 15.0) -> tuple[int, float]:
    """(status, seconds) of a GET /health on a new connection."""
    t0 = time.monotonic()
    with urllib.request.urlopen(f"http://{srv.host}:{srv.port}/health", timeout=timeout) as r:
        return r.status, time.monotonic() - t0


def test_idle_connections_do_not_keep_new_clients_out():
    """Every slot taken by connections that sent nothing (or kept alive in a client's pool between requests): a
    new client waited the whole request timeout (64 silent sockets made a default server unreachable). With every
    slot taken, the connection idle longest is closed for the new one; the thread count stays bounded."""
    import http.client

    srv = start(max_connections=3, idle_timeout=60)  # a long idle timeout: only the closing makes room
    silent: list[socket.socket] = []
    pool: list[Any] = []
    try:
        before = _handler_threads()
        silent = [socket.create_connection((srv.host, srv.port), timeout=10) for _ in range(12)]
        time.sleep(0.5)
        assert _handler_threads() - before <= 3
        status, took = _health(srv)
        assert status == 200 and took < 10, took
        assert _handler_threads() - before <= 3
        for s in silent:
            s.close()
        # a client's pool of kept-alive connections, idle between requests, fills every slot
        for _ in range(3):
            c = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
            c.request("GET", "/health")
            r = c.getresponse()
            assert r.status == 200
            r.read()
            pool.append(c)
        status, took = _health(srv)
        assert status == 200 and took < 10, took
        # a connection whose request has begun is not closed for another
        busy = [_busy(srv) for _ in range(3)]
        try:
            time.sleep(0.5)
            with ThreadPoolExecutor(1) as ex:
                waiting = ex.submit(_health, srv, 30)
                time.sleep(1.0)
                assert not waiting.done()
                for s in busy:
                    s.close()
                assert waiting.result(timeout=20)[0] == 200
        finally:
            for s in busy:
                s.close()
    finally:
        for s in silent:
            s.close()
        for c in pool:
            c.close()
        srv.shutdown()


def test_an_idle_connection_is_closed_after_the_idle_timeout_not_a_request_under_way():
    """A connection waiting for a request is closed after --idle-timeout; a request, once its first byte is here,
    has the whole --request-timeout (the idle timeout does not cut it)."""
    from glinker.serve import IDLE_TIMEOUT, REQUEST_TIMEOUT

    assert 1 <= IDLE_TIMEOUT <= 30 and IDLE_TIMEOUT < REQUEST_TIMEOUT
    srv = start(idle_timeout=1.0, request_timeout=30)
    try:
        s = socket.create_connection((srv.host, srv.port), timeout=15)  # sends nothing
        t0 = time.monotonic()
        assert s.recv(100) == b"" and time.monotonic() - t0 < 12  # closed by the server, with no answer
        s.close()
        reply, closed = exchange(srv, b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n", wait=12)
        assert statuses(reply) == [200] and closed, reply  # kept alive, then closed once idle
        s = socket.create_connection((srv.host, srv.port), timeout=15)
        try:
            time.sleep(0.3)
            s.sendall(b"GET /health HTTP/1.1\r\n")
            for line in (b"Host: localhost\r\n", b"X-Slow: 1\r\n", b"Connection: close\r\n", b"\r\n"):
                time.sleep(0.8)  # 2.4 s in all: more than the idle timeout, well within the request's
                s.sendall(line)
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
            assert statuses(reply) == [200], reply
        finally:
            s.close()
    finally:
        srv.shutdown()


def _response(s: socket.socket) -> bytes:
    """One whole response read from ``s`` (its head, then Content-Length bytes), or what came before the close."""
    got = b""
    while True:
        head, sep, rest = got.partition(b"\r\n\r\n")
        if sep:
            size = re.search(rb"(?i)\r\ncontent-length: *([0-9]+)", head + b"\r\n")
            if size and len(rest) >= int(size.group(1)):
                return got
        chunk = s.recv(65536)
        if not chunk:
            return got
        got += chunk


def test_a_kept_alive_connection_s_idle_time_is_not_charged_to_its_next_request():
    """The deadline started when the previous answer was written: 2.5 s idle plus a POST taking 0.6 s was a 408 that
    said the body did not arrive within 3 s. It starts at the request's first byte now."""
    srv = start(request_timeout=4, idle_timeout=30)
    head = b"POST /link HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(BODY17)
    s = socket.create_connection((srv.host, srv.port), timeout=15)
    try:
        s.sendall(head + BODY17)
        assert statuses(_response(s)) == [200]
        time.sleep(3.5)  # idle, within the idle timeout
        s.sendall(head + BODY17[:5])
        time.sleep(1.5)  # the request itself takes 1.5 s of its 4
        s.sendall(BODY17[5:])
        reply = _response(s)
        assert statuses(reply) == [200], reply
    finally:
        s.close()
        srv.shutdown()


# ---- finding 9: hostile JSON -------------------------------------------------------------------------------------


def _deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


@pytest.mark.parametrize("body,where", [
    ('{"documents": [{"id": ' + "9" * 5000 + ', "text": "x"}]}', "body"),  # over Python's int-string limit
    ('{"texts": ' + "[" * 100_000 + "]" * 100_000 + "}", "body"),  # the decoder's recursion
    ('{"documents": [{"text": "Paris", "meta": ' + _deep(300) + "}]}", "documents[0].meta"),
    ('{"documents": [{"text": "Paris", "meta": {"a": ' + "[" * 40 + "]" * 40 + "}}]}", "documents[0].meta"),
    ('{"documents": [{"text": "Paris", "meta": {"a": "\\ud800"}}]}', "documents[0].meta"),
    ('{"documents": [{"id": "\\udfff", "text": "Paris"}]}', "documents[0].id"),
    ('{"documents": [{"id": ' + "[" * 900 + "]" * 900 + ', "text": "Paris"}]}', "documents[0].id"),
    ('{"documents": [{"text": "Paris", "meta": {"x": NaN}}]}', "body"),
    ('{"documents": [{"text": "Paris", "meta": {"x": 1e999}}]}', "body"),
    ('{"\\ud800": 1}', "\ud800"),  # echoed as where: the answer must still be encodable
], ids=["bigint", "deep-body", "deep-meta", "deep-meta-list", "meta-surrogate", "id-surrogate", "deep-id", "nan",
        "inf", "key-surrogate"])
def test_hostile_json_is_a_400_naming_the_field_and_nothing_is_linked(server, body, where):
    """These closed the connection without an answer (a traceback in the log); the deep meta was linked first,
    then failed as its record was serialised."""
    status, _, out = post(server, body.encode("utf-8", "surrogatepass"))
    assert status == 400, out
    assert out["error"]["where"] == where and out["error"]["fix"]
    assert server.batcher.documents == 0
    status, _, _ = call(server, "/health")  # the server lives on
    assert status == 200


def test_a_meta_of_ordinary_depth_is_linked_and_echoed(server):
    meta = json.loads(_deep(31))
    status, _, out = post(server, {"documents": [{"id": 5, "text": "Paris", "meta": meta}]})
    assert status == 200 and out["documents"][0]["id"] == "5"


class _Record:
    """A linked record (it has ``links``) whose serialisation fails for a text holding BAD."""

    links: ClassVar[list] = []

    def __init__(self, doc: Any) -> None:
        self.doc = doc

    def model_dump(self, mode: str = "python") -> dict:
        if "BAD" in self.doc.text:
            raise ValueError("Maximum serialization depth exceeded in /srv/secret/x")
        return {"id": self.doc.id, "text": self.doc.text, "links": []}


def test_a_request_whose_record_cannot_be_serialised_fails_alone_and_its_batch_is_not_linked_again():
    """Serialising the whole batch at once: one bad record failed the batch, whose requests were all linked again
    one by one (a cheap hostile request doubled everyone's linking work)."""
    srv = start(max_wait=1.0)
    linked: list[int] = []

    class Result:
        kind = ""

        def __init__(self, docs: Any) -> None:
            self.output = [_Record(d) for d in docs]

    def run_batch(docs: Any) -> Result:
        linked.append(len(docs))
        return Result(docs)

    srv.batcher.pipe.run_batch = run_batch
    try:
        with ThreadPoolExecutor(3) as ex:
            futs = [ex.submit(post, srv, {"text": t}) for t in ("first", "BAD one", "third")]
            results = [f.result() for f in futs]
        assert [r[0] for r in results] == [200, 500, 200], results
        assert results[0][2]["documents"][0]["text"] == "first" and results[2][2]["documents"][0]["text"] == "third"
        assert "/srv/secret" not in json.dumps(results[1][2])
        assert linked == [3]  # one batch, linked once
    finally:
        srv.shutdown()


# ---- item 11: Host names, Server header, 500s --------------------------------------------------------------------


def test_a_loopback_server_answers_loopback_host_names_only(server):
    """Any Host was answered: a web page whose DNS name the attacker points at 127.0.0.1 (DNS rebinding) could
    read the server's answers (a private KB's labels and descriptions)."""
    port = server.port
    for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.nip.io", "x", "localhost.evil"):
        status, hdrs, out = call(server, "/health", headers={"Host": host})
        assert status == 421 and "--allow-host" in out["error"]["fix"], (host, out)
        assert hdrs["Connection"] == "close"
        status, _, out = post(server, {"text": "Paris"}, headers={"Host": host})
        assert status == 421
    for host in (f"localhost:{port}", "LOCALHOST", "localhost.", f"127.0.0.1:{port}", "127.1.2.3", f"[::1]:{port}"):
        status, _, out = call(server, "/health", headers={"Host": host})
        assert status == 200, (host, out)
    # a page of another site posting to the server (the browser names it in Origin)
    status, _, out = post(server, {"text": "Paris"}, headers={"Origin": "http://attacker.example"})
    assert status == 403 and out["error"]["where"] == "Origin"
    status, _, out = post(server, {"text": "Paris"}, headers={"Origin": "null"})
    assert status == 403
    status, _, _ = post(server, {"text": "Paris"}, headers={"Origin": f"http://localhost:{port}"})
    assert status == 200
    reply, closed = exchange(server, b"GET /health HTTP/1.1\r\nHost: localhost\r\nHost: attacker.example\r\n\r\n")
    assert statuses(reply) == [400] and closed


def test_allow_host_adds_names_and_other_addresses_check_only_when_names_are_given():
    from glinker.errors import ConfigError
    from glinker.serve import allowed_hosts

    assert allowed_hosts("0.0.0.0") is None and allowed_hosts("") is None and allowed_hosts("10.1.2.3") is None
    assert allowed_hosts("127.0.0.1") == {"localhost"} == allowed_hosts("localhost") == allowed_hosts("::1")
    assert allowed_hosts("0.0.0.0", ["Linker.Example.org:443"]) == {"localhost", "linker.example.org"}
    assert allowed_hosts("127.0.0.1", ["*"]) is None
    with pytest.raises(ConfigError, match="--allow-host"):
        allowed_hosts("127.0.0.1", ["bad:host:name/x"])

    srv = start(allow_hosts=["linker.example.org"])
    try:
        assert call(srv, "/health", headers={"Host": "linker.example.org"})[0] == 200
        assert call(srv, "/health", headers={"Host": "linker.example.org:8443"})[0] == 200
        assert call(srv, "/health", headers={"Host": "localhost"})[0] == 200
        assert call(srv, "/health", headers={"Host": "attacker.example"})[0] == 421
    finally:
        srv.shutdown()
    srv = start(host="0.0.0.0")  # reached by any name: no check unless names are given
    try:
        assert call(srv, "/health", headers={"Host": "linker.example.org"}, host="127.0.0.1")[0] == 200
    finally:
        srv.shutdown()
    srv = start(host="0.0.0.0", allow_hosts=["linker.example.org"])
    try:
        assert call(srv, "/health", headers={"Host": "linker.example.org"}, host="127.0.0.1")[0] == 200
        assert call(srv, "/health", headers={"Host": "attacker.example"}, host="127.0.0.1")[0] == 421
    finally:
        srv.shutdown()


def test_the_server_header_does_not_tell_the_python_version(server):
    _, hdrs, _ = call(server, "/health")
    assert hdrs["Server"] == "glinker"
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(120))  # over http.server's 100 headers: its send_error
    reply, _ = exchange(server, b"GET / HTTP/1.1\r\n" + many + b"\r\n")
    assert statuses(reply) == [431] and b"Server: glinker\r\n" in reply and b"Python" not in reply, reply
    reply, _ = exchange(server, b"PUT /link HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert statuses(reply) == [405] and b"Python" not in reply, reply  # (a JSON 405 since session 37; 501 before)


def test_a_500_says_an_internal_error_occurred_and_the_log_has_the_details(server, caplog):
    """500s carried the error's message, place and fix: for KB and model errors, server paths."""
    from glinker.errors import KBError

    def failing(docs: Any) -> Any:
        if any("bug" in d.text for d in docs):
            raise RuntimeError("unexpected state in /srv/secret/model.bin")
        raise KBError("cannot read /srv/secret/kb/entities.db", where="/srv/secret/kb", fix="rebuild /srv/secret/kb")

    server.batcher.pipe.run_batch = failing
    with caplog.at_level(logging.ERROR, logger="glinker.serve"):
        for path, body, code in (("/link", {"text": "Paris"}, "E500"), ("/link", {"text": "a bug"}, "E000")):
            status, _, out = post(server, body)
            assert status == 500, out
            assert "/srv/secret" not in json.dumps(out) and "Traceback" not in json.dumps(out)
            assert "internal error" in out["error"]["message"] and out["error"]["code"] == code
            ref = out["error"]["message"].split("reference ")[1].split(")")[0]
            logged = [r for r in caplog.records if ref in r.getMessage()]
            assert logged and "/srv/secret" in (logged[0].getMessage() + str(logged[0].exc_info))
        status, _, page = call(server, "/?text=Paris")
        assert status == 500 and "/srv/secret" not in json.dumps(page)


# ---- review 29, finding 5: IP addresses as Host ------------------------------------------------------------------


def test_ip_address_hosts_are_answered_names_still_checked():
    """With --allow-host on 0.0.0.0, a Host that is an IP address got a 421: a Kubernetes probe (Host: the pod's
    IP), a container's address, the printed http://0.0.0.0:PORT. DNS rebinding always arrives under a DNS name."""
    from glinker.serve import host_allowed

    names = frozenset({"localhost", "linker.example.org"})
    for host in ("10.244.1.17:8080", "172.17.0.2", "0.0.0.0:80", "[fd00::1]:8080", "[::]", "[::ffff:10.0.0.1]"):
        assert host_allowed(host, names), host
    for host in ("glinker:8080", "10.244.1.17.nip.io", "1.2.3", "attacker.example", "[not-an-ip]"):
        assert not host_allowed(host, names), host
    srv = start(host="0.0.0.0", allow_hosts=["linker.example.org"])
    try:
        for host in (f"10.244.1.17:{srv.port}", "172.17.0.2", f"0.0.0.0:{srv.port}", "[fd00::1]:8080"):
            assert call(srv, "/health", headers={"Host": host}, host="127.0.0.1")[0] == 200, host
        for host in (f"glinker:{srv.port}", "attacker.example", "10.244.1.17.nip.io"):
            assert call(srv, "/health", headers={"Host": host}, host="127.0.0.1")[0] == 421, host
    finally:
        srv.shutdown()


# ---- review 29, finding 6: a refused request's body is read before its connection closes -------------------------


def test_a_refused_request_with_a_large_body_gets_its_answer_not_a_broken_pipe(server):
    """421, 403, 400 and 404 closed the connection with the body unread: a client sending a body bigger than the
    socket buffers (2 MB) saw a broken pipe or a reset instead of the answer and its fix."""
    import http.client

    big = json.dumps({"text": "x" * 3_500_000}).encode()  # under the 4 MB limit, over the socket buffers
    for method, path, headers, code in (("POST", "/link", {"Host": "linker.example.org"}, 421),
                                        ("POST", "/link", {"Origin": "http://attacker.example"}, 403),
                                        ("GET", "/health", {}, 400),
                                        ("POST", "/links", {}, 404)):
        c = http.client.HTTPConnection(server.host, server.port, timeout=30)
        try:
            c.request(method, path, body=big, headers=headers)
            r = c.getresponse()
            out = json.loads(r.read())
        finally:
            c.close()
        assert r.status == code and r.getheader("Connection") == "close", (method, path, r.status, out)
        assert out["error"]["fix"]
        if code == 421:
            assert "--allow-host" in out["error"]["fix"]
    assert server.batcher.documents == 0  # nothing of the refused bodies was linked
    assert call(server, "/health")[0] == 200


# ---- review 29, finding 8: the docs ------------------------------------------------------------------------------


def test_the_docs_say_how_idle_connections_are_handled():
    from pathlib import Path

    from glinker.serve import Batcher

    docs = (Path(__file__).resolve().parents[2] / "docs" / "linking.md").read_text(encoding="utf-8")
    assert "thousands of documents" not in docs and "thousands of documents" not in (Batcher._loop.__doc__ or "")
    assert "--idle-timeout" in docs and "may idle as long" not in docs


def test_a_burst_of_new_clients_is_served_not_closed_as_idle():
    """More new clients than slots, each sending its request a moment after connecting: closing the newest idle
    connection for the next one dropped 18 of 20 requests unanswered. A new connection gets FRESH_GRACE before it
    counts as idle; all are answered."""
    import collections

    srv = start(max_connections=2)
    got: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def client() -> None:
        s = socket.create_connection((srv.host, srv.port), timeout=60)
        try:
            time.sleep(0.05)
            body = b'{"text": "x"}'
            s.sendall(b"POST /link HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                      % (len(body), body))
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            res = data.split(b" ", 2)[1].decode() if data else "closed"
        except OSError as e:
            res = type(e).__name__
        finally:
            s.close()
        with lock:
            got[res] += 1

    try:
        threads = [threading.Thread(target=client) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert got == {"200": 20}, got
    finally:
        srv.shutdown()


def test_a_page_of_a_bare_ip_address_may_not_call_a_loopback_server(server):
    """The Host check answers IP-address hosts; the Origin check must not: a page served from http://203.0.113.5
    made a browser post to the local server (the review's finding). The server's own pages (Origin = Host) may."""
    for origin, want in (("http://203.0.113.5", 403), ("http://[2001:db8::1]:8000", 403),
                         ("http://attacker.example", 403), ("null", 403),
                         (f"http://127.0.0.1:{server.port}", 200), (f"http://localhost:{server.port}", 200)):
        status, _, _ = call(server, "/link", b'{"text": "Paris"}',
                            headers={"Origin": origin, "Content-Type": "text/plain"}, host="127.0.0.1")
        assert status == want, (origin, status)
