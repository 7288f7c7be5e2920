"""Session 37's `glinker serve` operator walkthrough: a stage raising SystemExit hung every client while /health
said ok; a document's other fields were dropped (given_mentions linked nothing, with a 200); ids true / 1.5 were
taken; other methods got a 501 HTML page; query parameters were ignored; IPv6 could not be bound; no access log."""

from __future__ import annotations

import json
import logging
import socket
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from glinker.pipeline import Pipeline, loads_spec
from glinker.pipeline.registry import StageRegistry
from glinker.pipeline.stage import Stage, StageParams

pytestmark = pytest.mark.timeout(120)


class Exits(Stage):
    """Ends the process (a plugin calling sys.exit) on a text holding the word EXIT; passes the rest on."""

    type_name = "t_exits"
    accepts = ("documents",)
    produces = "mentions"
    Params = StageParams

    def run(self, documents: Any, inputs: Any) -> list[list[Any]]:
        if any("EXIT" in d.text for d in documents):
            raise SystemExit(3)
        return [[] for _ in documents]


def _serve(pipe: Pipeline, host: str = "127.0.0.1"):
    from glinker.serve import Server

    srv = Server(pipe, host=host, port=0, max_wait=0.2)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _call(srv, path: str, body: Any = None, method: str | None = None) -> tuple[int, str, str]:
    host = f"[{srv.host}]" if ":" in srv.host else srv.host
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    req = urllib.request.Request(f"http://{host}:{srv.port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def test_a_stage_raising_systemexit_fails_its_request_only_and_the_server_lives_on(caplog):
    reg = StageRegistry()
    reg.register(Exits)
    srv = _serve(Pipeline(loads_spec("name: x\nstages:\n  m: {type: t_exits}\n", reg=reg, source="x.yaml")))
    try:
        bodies = [{"texts": ["good", "this one EXIT"]}] + [{"text": f"fine {i}"} for i in range(7)]
        with caplog.at_level(logging.ERROR, logger="glinker.serve"), ThreadPoolExecutor(8) as ex:
            got = list(ex.map(lambda b: _call(srv, "/link", b), bodies))
        assert got[0][0] == 500 and "reference" in got[0][2]
        assert [g[0] for g in got[1:]] == [200] * 7  # the others were answered (they hung before)
        assert "a stage raised SystemExit(3)" in caplog.text
        status, _, text = _call(srv, "/link", {"text": "later"})
        assert status == 200 and json.loads(text)["documents"][0]["text"] == "later"
        assert json.loads(_call(srv, "/health")[2])["status"] == "ok"
    finally:
        srv.shutdown()


def test_a_dead_batch_thread_fails_the_requests_it_held_and_health_says_so():
    """Should the batch loop itself ever die, the requests it had taken get a 500 (they waited forever), later ones
    a 500 at once, and /health a 503."""
    reg = StageRegistry()
    reg.register(Exits)
    srv = _serve(Pipeline(loads_spec("name: x\nstages:\n  m: {type: t_exits}\n", reg=reg, source="x.yaml")))
    try:
        def broken(jobs):
            raise SystemExit("loop bug")

        srv.batcher._turn = broken  # the loop's own step fails with requests taken
        with ThreadPoolExecutor(3) as ex:
            got = list(ex.map(lambda i: _call(srv, "/link", {"text": f"t{i}"}), range(3)))
        assert [g[0] for g in got] == [500] * 3
        status, _, text = _call(srv, "/health")
        assert status == 503 and json.loads(text)["status"] == "failed" and "loop bug" in text
        assert _call(srv, "/link", {"text": "x"})[0] == 500
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()


def test_a_request_line_http_server_refuses_is_answered_and_mapped_loopback_is_loopback():
    """The access line read the request's path, which a refused request line does not have: no answer at all and a
    traceback per request; ::ffff:127.0.0.1 (bindable since IPv6 is) turned the Host check off."""
    from glinker.serve import allowed_hosts, is_loopback

    srv = _serve(_rx_pipe())
    try:
        for line in (b"GARBAGE\r\n\r\n", b"GET / HTTP/9\r\n\r\n", b"GET /" + b"x" * 70000 + b" HTTP/1.1\r\n\r\n"):
            with socket.create_connection((srv.host, srv.port), timeout=10) as c:
                c.sendall(line)
                reply = c.recv(4096)
            # (a request line http.server cannot read is answered as HTTP/0.9: the error page without a status line)
            assert any(code in reply for code in (b"400", b"414", b"505")), reply[:80]
    finally:
        srv.shutdown()
    assert is_loopback("::ffff:127.0.0.1") and allowed_hosts("::ffff:127.0.0.1") is not None


def _rx_pipe(extra: str = "") -> Pipeline:
    return Pipeline(loads_spec("name: rx\nstages:\n  m: {type: given_mentions}\n" + extra, source="rx.yaml"))


def test_a_documents_other_fields_reach_its_meta_as_glinker_link_reads_them():
    """`{"id", "text", "mentions": [...]}` (an AIDA-style record) with a given_mentions pipeline: serve dropped
    "mentions" and answered no mention with a 200, where glinker link found them."""
    srv = _serve(_rx_pipe())
    try:
        doc = {"id": "g1", "text": "Paris Hilton flew to Paris.", "source": "web",
               "mentions": [{"start": 0, "end": 12, "text": "Paris Hilton"}, {"start": 21, "end": 26, "text": "Paris"}]}
        status, _, text = _call(srv, "/link", {"documents": [doc]})
        got = json.loads(text)["documents"][0]
        assert status == 200 and [m["text"] for m in got["mentions"]] == ["Paris Hilton", "Paris"]
        from glinker.pipeline.runner import record_meta

        assert record_meta(doc)["source"] == "web"
        # ids: strings or whole numbers, as Pipeline.link takes them
        for bad in (True, 1.5, 1.0, [1]):
            status, _, text = _call(srv, "/link", {"documents": [{"id": bad, "text": "x"}]})
            assert status == 400 and "documents[0].id" in text and "whole number" in text
        assert json.loads(_call(srv, "/link", {"documents": [{"id": 7, "text": "x"}]})[2])["documents"][0]["id"] == "7"
    finally:
        srv.shutdown()


def test_methods_endpoints_and_query_parameters_get_json_answers(caplog):
    srv = _serve(_rx_pipe())
    try:
        for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
            status, ctype, text = _call(srv, "/link", method=method)
            assert status == 405 and ctype.startswith("application/json"), (method, status, text)
            assert "POST /link" in json.loads(text)["error"]["fix"]
        status, _, text = _call(srv, "/health", {})
        assert status == 405 and "takes GET" in text
        status, _, text = _call(srv, "/link?threshold=0.1", {"text": "Paris"})
        assert status == 400 and "query parameters are not read" in text
        with caplog.at_level(logging.INFO, logger="glinker.serve.access"):
            assert _call(srv, "/link", {"texts": ["a", "b"]})[0] == 200
        line = [r.getMessage() for r in caplog.records if r.name == "glinker.serve.access"][-1]
        assert "POST /link 200 docs=2" in line
    finally:
        srv.shutdown()


def test_ipv6_addresses_are_bound_and_a_bad_host_is_blamed_on_host():
    from glinker.errors import ConfigError
    from glinker.serve import Server

    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("::1 cannot be bound here")
    for host in ("::1", "[::1]"):
        srv = _serve(_rx_pipe(), host=host)
        try:
            assert srv.host == "::1" and _call(srv, "/health")[0] == 200
        finally:
            srv.shutdown()
    with pytest.raises(ConfigError) as ei:
        Server(_rx_pipe(), host="nosuchhost.invalid", port=0)
    assert ei.value.where == "--host" and "--port" not in ei.value.fix


def test_a_name_that_resolves_to_loopback_keeps_the_host_check():
    """`--host $(hostname)` (127.0.1.1 on Debian/Ubuntu) or `127.1` listened on loopback with the Host check off."""
    from glinker.serve import allowed_hosts

    assert allowed_hosts("127.1") is not None and allowed_hosts("localhost") is not None
    assert allowed_hosts("0.0.0.0") is None
    try:
        addrs = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        addrs = set()
    if addrs and all(a.startswith("127.") or a == "::1" for a in addrs):
        # the Host check is on, and answers the name the server was bound by (http://vm:8080 was a 421)
        assert socket.gethostname().lower() in allowed_hosts(socket.gethostname())
