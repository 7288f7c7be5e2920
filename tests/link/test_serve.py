"""`glinker serve`: the HTTP API links like the Python API, batches concurrent requests, names bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import TEXTS

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def server(pipeline):
    import glinker
    from glinker.serve import Server

    srv = Server(glinker.load_pipeline(str(pipeline)), port=0, max_wait=0.05)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()


def call(srv, path: str, body: bytes | None = None, method: str | None = None):
    req = urllib.request.Request(f"http://{srv.host}:{srv.port}{path}", data=body, method=method,
                                 headers={"Content-Type": "application/json"} if body is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8")


def post(srv, obj) -> tuple[int, dict]:
    status, text = call(srv, "/link", json.dumps(obj).encode())
    return status, json.loads(text)


def links(doc: dict) -> list[tuple]:
    """A document's links: span, entity, candidates, confidence to 4 digits (the scores' last float digits move
    with the batch's padding)."""
    return [(ln["mention"]["start"], ln["mention"]["end"], ln["entity_id"], round(ln["confidence"], 4),
             [c["entity_id"] for c in ln["candidates"]]) for ln in doc["links"]]


def test_link_endpoint_matches_the_python_api(server, pipeline):
    import glinker

    expected = [d.model_dump(mode="json") for d in glinker.load_pipeline(str(pipeline)).link(TEXTS)]
    status, out = post(server, {"texts": TEXTS})
    assert status == 200
    for i, (got, exp) in enumerate(zip(out["documents"], expected)):
        assert links(got) == links(exp) and got["text"] == exp["text"]
        assert all("doc_index" not in ln["mention"] for ln in got["links"])   # batch-dependent: never written
    assert sum(len(d["links"]) for d in out["documents"]) >= 5
    status, one = post(server, {"text": TEXTS[1]})
    assert status == 200 and links(one["documents"][0]) == links(expected[1])
    status, docs = post(server, {"documents": [{"id": "a", "text": TEXTS[0], "meta": {"src": "x"}}]})
    assert docs["documents"][0]["id"] == "a" and links(docs["documents"][0]) == links(expected[0])


def test_concurrent_requests_are_batched_and_each_gets_its_own(server):
    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(lambda i: post(server, {"text": TEXTS[i % 4]}), range(16)))
    for i, (status, out) in enumerate(results):
        assert status == 200 and out["documents"][0]["text"] == TEXTS[i % 4]
    status, health = call(server, "/health")
    h = json.loads(health)
    assert h["status"] == "ok" and h["documents"] == 16
    assert h["batches"] < 16      # requests shared batches


@pytest.mark.parametrize("body,where", [
    (b"{not json", "body"),
    (b"[1, 2]", "body"),
    (b'{"texts": "one string"}', "texts"),
    (b'{"texts": ["ok", 3]}', "texts[1]"),
    (b'{"documents": [{"id": 1}]}', "documents[0]"),
    (b'{"text": "a", "texts": ["b"]}', "body"),
    (b'\xff\xfe', "body"),
])
def test_bad_bodies_are_400s_naming_the_field(server, body, where):
    status, text = call(server, "/link", body)
    err = json.loads(text)["error"]
    assert status == 400 and err["where"] == where and err["fix"]


def test_a_failing_request_does_not_fail_the_others_in_its_batch(server):
    real = server.batcher.pipe.run_batch

    def failing(docs):
        from glinker.errors import StageError

        if any("BOOM" in d.text for d in docs):
            raise StageError("cannot link this", where="stage 'r'", fix="send another text")
        return real(docs)

    server.batcher.pipe.run_batch = failing
    with ThreadPoolExecutor(6) as ex:
        results = list(ex.map(lambda t: post(server, {"text": t}), [TEXTS[0], "BOOM here", TEXTS[1], TEXTS[2]]))
    assert [s for s, _ in results] == [200, 500, 200, 200]
    assert results[1][1]["error"]["code"] == "E300" and "internal error" in results[1][1]["error"]["message"]
    assert results[2][1]["documents"][0]["text"] == TEXTS[1]


def test_demo_page_and_unknown_paths(server):
    status, page = call(server, "/?text=" + urllib.request.quote(TEXTS[0]))
    assert status == 200 and "<textarea" in page and "Steve Jobs" in page and "Q19837" in page
    assert call(server, "/nope")[0] == 404
    assert call(server, "/other", b"{}")[0] == 404
    status, body = call(server, "/link")
    assert status == 405 and "POST" in body
    status, body = call(server, "/link", b'{"texts": ["ok", "Paris \\ud800"]}')
    assert status == 400 and "texts[1]" in body and "lone surrogate" in body


def test_malformed_requests_are_named(server):
    import http.client

    def raw(headers: dict, body: bytes = b"") -> tuple[int, str]:
        c = http.client.HTTPConnection(server.host, server.port, timeout=30)
        c.putrequest("POST", "/link")
        for k, v in headers.items():
            c.putheader(k, v)
        c.endheaders()
        if body:
            c.send(body)
        r = c.getresponse()
        out = r.status, r.read().decode()
        c.close()
        return out

    status, body = raw({"Transfer-Encoding": "chunked"}, b'5\r\n{"a":\r\n0\r\n\r\n')
    assert status == 411 and "Content-Length" in body
    status, body = raw({"Content-Length": "abc"})
    assert status == 400 and "is not a number" in body
    status, body = post(server, {"texts": ["Paris"], "threshold": 0.1})
    assert status == 400 and body["error"]["where"] == "threshold"
    status, body = post(server, {"documents": [{"text": "Paris", "meta": "x"}]})
    assert status == 400 and body["error"]["where"] == "documents[0].meta"
    from glinker.serve import MAX_CHARS

    status, body = post(server, {"texts": ["Paris. " * (MAX_CHARS // 7 + 1)]})
    assert status == 413 and "--max-chars" in body["error"]["fix"]


def test_a_port_in_use_is_a_clear_error_before_loading(pipeline, server, monkeypatch):
    import glinker
    from glinker.errors import ConfigError
    from glinker.serve import Server

    pipe = glinker.load_pipeline(str(pipeline))
    monkeypatch.setattr(pipe, "warm_up", lambda *a, **k: pytest.fail("loaded models for a port it cannot have"))
    with pytest.raises(ConfigError) as ei:
        Server(pipe, port=server.port)
    assert f":{server.port}" in str(ei.value) and "--port" in str(ei.value)


def bound_ports(monkeypatch) -> list:
    """The ports servers bind from now on (before they listen), in order."""
    from glinker.serve import _Listener

    ports: list = []
    real_bind = _Listener.server_bind

    def bind(self):
        real_bind(self)
        ports.append(self.server_address[1])

    monkeypatch.setattr(_Listener, "server_bind", bind)
    return ports


def test_connections_are_refused_until_the_models_are_loaded(pipeline, monkeypatch):
    """The port was listening before the load: probes passed and clients hung for the whole load."""
    import socket

    import glinker
    from glinker.serve import Server

    pipe = glinker.load_pipeline(str(pipeline))
    seen = []
    load = pipe.warm_up

    def slow_load(*a, **k):
        with socket.socket() as s:  # the port is held (bound), but nobody is let in yet
            seen.append(s.connect_ex(("127.0.0.1", srv_port[0])))
        return load(*a, **k)

    srv_port = bound_ports(monkeypatch)
    monkeypatch.setattr(pipe, "warm_up", slow_load)
    srv = Server(pipe, port=0)
    try:
        assert seen and seen[0] != 0  # refused while loading
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5):
            pass  # accepted (queued) once loaded
    finally:
        srv.stop()


def test_serve_command_answers_and_stops_on_sigterm(pipeline):
    p = subprocess.Popen([sys.executable, "-m", "glinker", "serve", "-p", str(pipeline), "--port", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()
        assert "serving" in line, line + p.stderr.read()
        url = line.split(" on ")[1].split()[0]
        req = urllib.request.Request(url + "/link", data=json.dumps({"text": TEXTS[2]}).encode())
        with urllib.request.urlopen(req, timeout=60) as r:
            out = json.loads(r.read())
        assert {ln["entity_id"] for ln in out["documents"][0]["links"]} >= {"Q95"}
        p.send_signal(15)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0 and "stopped after 1 documents" in err
    finally:
        if p.poll() is None:
            p.kill()


def test_a_404_does_not_break_a_kept_alive_connection_and_bursts_wait(server):
    """A POST to an unknown path leaves its body unread: the server closes that connection (the client opens a
    new one) instead of reading the body as the next request. Many clients at once queue, none is reset."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", "/links", body=b'{"text": "Paris"}', headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 404 and r.getheader("Connection", "").lower() == "close"
    r.read()
    conn.close()
    assert server.httpd.request_queue_size >= 128

    def one(i):
        return post(server, {"text": f"Paris {i}"})[0]

    with ThreadPoolExecutor(max_workers=40) as ex:
        assert set(ex.map(one, range(40))) == {200}


def slow_server(pipeline, delay: float, **kw):
    """A running server whose every batch takes ``delay`` seconds more (requests pile up in its queue)."""
    import glinker
    from glinker.serve import Server

    srv = Server(glinker.load_pipeline(str(pipeline)), port=0, **kw)
    real = srv.batcher.pipe.run_batch

    def slow(docs):
        time.sleep(delay)
        return real(docs)

    srv.batcher.pipe.run_batch = slow
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_stopping_answers_every_request_already_received(pipeline):
    """A stop while requests wait in the queue: each still gets its answer (none is cut off), then it stops."""
    srv = slow_server(pipeline, 0.3, max_wait=0.05, max_batch=1)
    with ThreadPoolExecutor(max_workers=6) as ex:
        futs = [ex.submit(post, srv, {"text": f"Paris {i}"}) for i in range(6)]
        time.sleep(0.2)
        srv.shutdown()  # while most are still queued
        assert [f.result()[0] for f in futs] == [200] * 6


def test_get_respects_max_chars_and_bad_given_spans_are_400s(pipeline, tmp_path, tiny_model, tiny_kb):
    import glinker
    from glinker.serve import Server

    srv = Server(glinker.load_pipeline(str(pipeline)), port=0, max_wait=0.05, max_chars=10)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        assert call(srv, "/?text=" + "x" * 50)[0] == 413
    finally:
        srv.shutdown()
    given = tmp_path / "g.yaml"
    given.write_text(f"name: g\nkb: {tiny_kb}\nmodel: {tiny_model}\nstages:\n  m: {{type: given_mentions}}\n"
                     "  c: {type: alias_candidates, input: m}\n  links: {type: select, input: c}\n")
    srv = Server(glinker.load_pipeline(str(given)), port=0, max_wait=0.05)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        for meta in ({"mentions": 5}, {"mentions": [[True, 5]]}, {"mentions": [[0, 5, 7]]}):
            status, body = post(srv, {"documents": [{"id": None, "text": "Paris is nice.", "meta": meta}]})
            assert status == 400, (meta, body)
        status, body = post(srv, {"documents": [{"id": None, "text": "Paris is nice.",
                                                 "meta": {"mentions": [[0, 5]]}}]})
        assert status == 200 and body["documents"][0]["id"] == "0"
    finally:
        srv.shutdown()


def test_a_small_request_is_not_held_behind_a_large_one(pipeline):
    """Requests are served in turns: a request arriving while a large one is linked gets its answer after a batch
    or two, not after the large one (which still gets all its records, in order)."""
    srv = slow_server(pipeline, 0.1, max_wait=0.01, max_batch=2)
    done: list[str] = []
    try:
        with ThreadPoolExecutor(max_workers=2) as ex:
            big = ex.submit(lambda: (post(srv, {"texts": [f"Paris {i}" for i in range(40)]}), done.append("big")))
            time.sleep(0.3)
            small = ex.submit(lambda: (post(srv, {"text": "Berlin"}), done.append("small")))
            (status, body), _ = big.result()
            assert status == 200 and [d["text"] for d in body["documents"]] == [f"Paris {i}" for i in range(40)]
            assert small.result()[0][0] == 200
        assert done == ["small", "big"]
    finally:
        srv.shutdown()


def test_documents_of_a_client_that_left_are_not_linked(pipeline):
    """A client sends 20 documents and hangs up: the server stops linking them (batches of one, 0.2 s each) instead
    of working 4 s for nobody, and serves the next client."""
    import socket

    srv = slow_server(pipeline, 0.2, max_wait=0.01, max_batch=1)
    try:
        body = json.dumps({"texts": [f"Paris {i}" for i in range(20)]}).encode()
        with socket.create_connection((srv.host, srv.port)) as s:
            s.sendall(b"POST /link HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
            time.sleep(0.5)
        time.sleep(1.0)  # the server notices within CHECK_CLIENT_EVERY; one batch in flight may finish
        done = srv.batcher.documents
        time.sleep(1.0)
        assert srv.batcher.documents == done < 20
        status, out = post(srv, {"text": "Paris"})
        assert status == 200 and len(out["documents"]) == 1
    finally:
        srv.shutdown()


def test_two_servers_started_together_on_one_port_fail_with_the_port_error(pipeline, monkeypatch):
    """Both bind (not yet listening, allowed): the second to listen failed after its load with a raw OSError and
    left its linking thread running."""
    import threading

    import glinker
    from glinker.errors import ConfigError
    from glinker.serve import Server

    first = glinker.load_pipeline(str(pipeline))
    other: list = []
    load = first.warm_up

    def load_while_another_starts(*a, **k):
        load(*a, **k)
        port = srv_port[0]
        monkeypatch.undo()
        other.append(Server(glinker.load_pipeline(str(pipeline)), port=port))  # binds and listens first

    srv_port = bound_ports(monkeypatch)
    monkeypatch.setattr(first, "warm_up", load_while_another_starts)
    before = {t.name for t in threading.enumerate()}
    try:
        with pytest.raises(ConfigError, match="cannot listen"):
            Server(first, port=0)
    finally:
        for s in other:
            s.stop()
    assert other and {t.name for t in threading.enumerate() if t.is_alive()} <= before


def test_head_health_expect_continue_and_a_stop_with_a_slow_sender(pipeline):
    """HEAD /health answers like GET without a body; a body announced too large with ``Expect: 100-continue``
    gets its 413 before it is sent; a stop does not wait a client's read timeout for a body still arriving."""
    import http.client
    import socket

    import glinker
    from glinker.serve import Server

    srv = Server(glinker.load_pipeline(str(pipeline)), port=0, max_wait=0.05, max_body=1000)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        c = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
        c.request("HEAD", "/health")
        r = c.getresponse()
        assert r.status == 200 and int(r.getheader("Content-Length")) > 0 and r.read() == b""
        c.request("HEAD", "/?text=Paris")  # kept alive: the empty HEAD body did not desync the connection
        r = c.getresponse()
        assert r.status == 200 and r.getheader("Content-Type").startswith("text/html") and r.read() == b""
        assert srv.batcher.documents == 0  # HEAD / links nothing
        c.close()

        s = socket.create_connection((srv.host, srv.port), timeout=30)
        s.sendall(b"POST /link HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
        head = s.recv(4096).decode()
        assert head.startswith("HTTP/1.1 413") and "100 Continue" not in head, head
        s.close()

        slow = socket.create_connection((srv.host, srv.port), timeout=30)
        slow.sendall(b"POST /link HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{\"text\": ")  # then nothing
        time.sleep(0.3)
        t0 = time.monotonic()
        srv.shutdown()
        assert time.monotonic() - t0 < 30  # the 5 s grace, not the 60 s read timeout
        slow.close()
    finally:
        if srv.httpd.socket.fileno() != -1:
            srv.shutdown()
