"""``glinker serve``: a pipeline behind HTTP, with requests batched together.

Endpoints (JSON in and out, UTF-8):

- ``POST /link``: ``{"text": "..."}``, ``{"texts": ["...", ...]}`` or ``{"documents": [{"id": ..., "text": ...,
  "meta": {...}}, ...]}`` -> ``{"documents": [<linked document>, ...]}`` in request order (the records ``glinker
  link`` writes). A bad body is a 400 naming the field; an oversized one a 413.
- ``GET /health`` -> ``{"status": "ok", "pipeline": ..., "fingerprint": ..., "documents": n, "batches": n}``
  (``HEAD`` too: status and headers only).
- ``GET /`` (``?text=...``): a page with a text box that shows the links highlighted (the ``-o out.html`` page).

One thread runs the pipeline (its warm-up, every batch and its close at the stop); concurrent requests queue up and are linked together, up to the pipeline's
``batch_size`` documents or ``max_wait`` seconds after the first one arrives, so throughput under load is that of
batched linking rather than of one document at a time.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import queue
import select
import socket
import threading
import time
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlparse

from glinker.errors import ConfigError, DataError, GlinkerError
from glinker.io import check_text, free_id

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024
MAX_CHARS = 200_000
"""Characters of text one request may hold by default: the batch thread links one request's documents before the
next request's, so one huge request would hold every client (about a minute per 50,000 characters on 2 CPU cores;
``glinker link`` is the way for big inputs)."""

CHECK_CLIENT_EVERY = 0.25
"""Seconds between checks, while a request waits for its links, that its client is still connected: the documents
of a client that left are not linked (their turns go to the clients still waiting)."""


class _ClientLeft(Exception):
    """The client closed its connection before its answer was ready."""


def parse_request(body: bytes) -> list[dict[str, Any]]:
    """The documents of a ``POST /link`` body; a DataError naming the field when it is not one of the forms."""
    try:
        req = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(f"the body is not UTF-8 (byte {e.start})", where="body", fix="send UTF-8 JSON") from None
    except json.JSONDecodeError as e:
        raise DataError(f"the body is not JSON: {e.msg} at line {e.lineno} column {e.colno}", where="body",
                        fix='send {"text": "..."}, {"texts": [...]} or {"documents": [{"id", "text"}]}') from None
    if not isinstance(req, dict):
        raise DataError("the body must be a JSON object", where="body",
                        fix='send {"text": "..."}, {"texts": [...]} or {"documents": [...]}')
    known = [k for k in ("text", "texts", "documents") if k in req]
    other = sorted(k for k in req if k not in ("text", "texts", "documents"))
    if other:
        raise DataError(f"unknown field {other[0]!r} (settings such as thresholds belong to the pipeline YAML)",
                        where=other[0], fix='send only one of "text", "texts" or "documents"')
    if len(known) != 1:
        raise DataError(f"give exactly one of text, texts, documents (got {sorted(req) or 'none'})", where="body",
                        fix='e.g. {"texts": ["Paris is in France."]}')
    key = known[0]
    if key == "text":
        if not isinstance(req["text"], str):
            raise DataError("must be a string", where="text", fix='{"text": "Paris is in France."}')
        check_text(req["text"], "text")
        return [{"id": "0", "text": req["text"]}]
    items = req[key]
    if not isinstance(items, list):
        raise DataError("must be a list", where=key, fix=f'{{"{key}": [...]}}')
    docs = []
    # a document without an id is numbered by its place, unless another document of the request has that id
    given = {str(d["id"]) for d in items if isinstance(d, dict) and d.get("id") is not None} if key == "documents" \
        else set()
    for i, item in enumerate(items):
        if key == "texts":
            if not isinstance(item, str):
                raise DataError("must be a string", where=f"texts[{i}]", fix="one string per text")
            check_text(item, f"texts[{i}]")
            docs.append({"id": str(i), "text": item})
            continue
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise DataError("must be an object with a string 'text'", where=f"documents[{i}]",
                            fix='{"id": "a", "text": "...", "meta": {...}}')
        check_text(item["text"], f"documents[{i}].text")
        doc = {"id": str(item["id"]) if item.get("id") is not None else free_id(i, given), "text": item["text"]}
        if item.get("meta") is not None:
            if not isinstance(item["meta"], dict):
                raise DataError("must be an object", where=f"documents[{i}].meta", fix='"meta": {"source": "..."}')
            doc["meta"] = item["meta"]
        docs.append(doc)
    return docs


class Batcher:
    """Runs ``pipeline`` on one thread over the documents of concurrent requests, batched together.

    That thread also warms the pipeline up (before the constructor returns: an error loading it is raised here, on
    the caller's thread) and closes it when the batcher stops, so every stage's ``warm_up``, ``run`` and ``close``
    happen on one thread, as in ``glinker link`` (a stage may keep an ``sqlite3`` connection between them). A
    constructor interrupted (Ctrl-C) during the warm-up waits for the warm-up to end and the pipeline to close
    before it raises, so that the stages are closed once whenever the server stops."""

    def __init__(self, pipeline: Any, max_batch: int | None = None, max_wait: float = 0.005) -> None:
        self.pipe = pipeline
        self.max_batch = max_batch or pipeline.spec.header.settings.batch_size
        self.max_wait = max_wait
        self.q: queue.Queue[tuple[list[Any], Future] | None] = queue.Queue()
        self.documents = 0
        self.batches = 0
        self.active = 0  # requests being answered
        self.fingerprint: str | None = None  # the warmed-up pipeline's, with its models' and KBs' (GET /health)
        self._idle = threading.Condition()
        self._reading: set[socket.socket] = set()  # connections whose request body is still arriving
        self._ready = threading.Event()
        self._failed: BaseException | None = None  # what the warm-up raised on the batch thread
        self._stopped = threading.Event()  # set by the batch thread as it ends, the pipeline closed
        self._thread = threading.Thread(target=self._main, name="glinker-serve-batcher", daemon=True)
        try:
            self._thread.start()
            while not self._ready.wait(timeout=0.25):  # a wait Ctrl-C can interrupt
                pass
        except BaseException:  # interrupted while loading (Ctrl-C): the thread stops once loaded, closing the stages
            self.q.put(None)
            if self._thread.ident is not None:  # it runs (a thread that could not start raised here instead)
                log.warning("stopping: the stages are closed once their warm-up ends (Ctrl-C again quits at once, "
                            "without closing them)")
                # waited for here: the thread is a daemon, which the stopping process would end before the close
                self._wait_stopped("warming up")
                if self._failed is not None:
                    log.warning("the warm-up failed meanwhile: %s", self._failed)
            raise
        if self._failed is not None:
            self._thread.join()
            failed, self._failed = self._failed, None
            raise failed

    def _main(self) -> None:
        """The batch thread: warm up, tell the constructor, serve batches until stopped, then close the pipeline."""
        try:
            try:
                self.pipe.warm_up()
                self.fingerprint = self.pipe.fingerprint(resources=True)
            except BaseException as e:  # noqa: BLE001 - raised again by the constructor, on its thread
                self._failed = e
                self._close_pipeline()  # what the stages opened before the failure
                self._ready.set()
                return
            self._ready.set()
            try:
                self._loop()
            finally:
                self._close_pipeline()
        finally:
            self._stopped.set()

    def _close_pipeline(self) -> None:
        try:
            self.pipe.close()
        except Exception as e:  # a stopping server stops anyway
            log.exception("closing the pipeline failed: %s", type(e).__name__)

    def submit(self, docs: list[Any]) -> Future:
        """A future of the records of ``docs`` (Document objects), in order."""
        fut: Future = Future()
        self.q.put((docs, fut))
        return fut

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Counts a request from its start until its answer is written (see :meth:`wait_answered`)."""
        with self._idle:
            self.active += 1
        try:
            yield
        finally:
            with self._idle:
                self.active -= 1
                self._idle.notify_all()

    @contextlib.contextmanager
    def reading(self, conn: socket.socket) -> Iterator[None]:
        """Marks ``conn`` as sending its request body (see :meth:`drop_readers`)."""
        with self._idle:
            self._reading.add(conn)
        try:
            yield
        finally:
            with self._idle:
                self._reading.discard(conn)
                self._idle.notify_all()

    def drop_readers(self, grace: float = 5.0) -> int:
        """A stopping server waits ``grace`` seconds for request bodies still arriving, then stops reading them (a
        client sending slowly would otherwise hold the stop for the whole read timeout); returns how many."""
        deadline = time.monotonic() + grace
        with self._idle:
            while self._reading and time.monotonic() < deadline:
                self._idle.wait(timeout=max(0.0, deadline - time.monotonic()))
            late = list(self._reading)
        for conn in late:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RD)  # the read ends at once with what had arrived
        if late:
            log.warning("stopping: %d request(s) whose body was still arriving after %.0f s were not read; their "
                        "clients may send them again to a running server", len(late), grace)
        return len(late)

    def wait_answered(self, note_every: float = 30.0) -> None:
        """Return once every request being answered has its answer written (a stopping server finishes them)."""
        with self._idle:
            while self.active:
                if not self._idle.wait(timeout=note_every) and self.active:
                    log.warning("stopping: %d request(s) still being answered", self.active)

    def close(self) -> None:
        """Stop after the documents already queued are linked (however long that takes: their clients wait), then
        close the pipeline (its stages' ``close()``, on the batch thread)."""
        self.q.put(None)
        self._wait_stopped("linking the documents queued before the stop")

    def _wait_stopped(self, doing: str, note_every: float = 30.0) -> None:
        """Wait for the batch thread, told to stop, to end (its last act: closing the pipeline), saying every
        ``note_every`` seconds what it is still doing. A second Ctrl-C ends the wait: the stages' ``close()``
        then runs only if the process lives on until the thread gets to it."""
        try:
            while not self._stopped.wait(timeout=note_every):
                log.warning("stopping: still %s", doing)
            self._thread.join()  # its last step done
        except KeyboardInterrupt:
            log.warning("stopping: interrupted again while %s; the stages' close() may not run", doing)
            raise

    def _loop(self) -> None:
        """Requests are served in turns: each batch takes documents from every waiting request in round robin, so
        a request of thousands of documents shares the thread with the small ones that arrive meanwhile instead of
        holding them until it is done (each request still gets its records in order, in one answer)."""
        jobs: list[_Job] = []
        stopping = False
        while True:
            if not jobs:
                if stopping:
                    return
                first = self.q.get()
                if first is None:
                    return
                jobs.append(_Job(*first))
                deadline = time.monotonic() + self.max_wait
                while sum(j.left for j in jobs) < self.max_batch:  # gather concurrent requests a moment
                    try:
                        item = self.q.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                    if item is None:
                        stopping = True
                        break
                    jobs.append(_Job(*item))
            while not stopping:  # whatever arrived meanwhile joins the next turn
                try:
                    item = self.q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True  # the requests already here are still finished
                    break
                jobs.append(_Job(*item))
            served = self._turn(jobs)
            # the requests served this turn go to the back: with more requests than a batch holds, none waits
            # for the others to finish
            jobs = [j for j in jobs if j not in served and not j.fut.done()] + [j for j in served if not j.fut.done()]

    def _turn(self, jobs: list[_Job]) -> list[_Job]:
        """One batch of at most ``max_batch`` documents, taken from the jobs in round robin; returns the jobs it
        took documents from."""
        from glinker.cli.link import json_records

        take: list[tuple[_Job, int, int]] = []  # (job, start, end) slices of this batch
        room = self.max_batch
        share = max(1, -(-self.max_batch // len(jobs)))
        for j in jobs:
            if room <= 0:
                break
            n = min(share, j.left, room)
            if n > 0:
                take.append((j, j.at, j.at + n))
                room -= n
        docs = [d for j, a, b in take for d in j.docs[a:b]]
        try:
            recs = json_records(self.pipe.run_batch(docs), docs) if docs else []
            self.batches += 1 if docs else 0
        except Exception as e:
            if len(take) > 1:  # find the request that fails: the others still get their links
                for j, a, b in take:
                    try:
                        part = j.docs[a:b]
                        j.add(json_records(self.pipe.run_batch(part), part), b)
                        self.batches += 1
                        self.documents += b - a
                    except Exception as err:  # noqa: BLE001 - handed to that request's client
                        j.fail(err)
                return [j for j, _, _ in take]
            take[0][0].fail(e)
            return [take[0][0]]
        self.documents += len(docs)
        at = 0
        for j, a, b in take:
            j.add(recs[at:at + (b - a)], b)
            at += b - a
        for j in jobs:  # a request without documents is answered at once
            if not j.docs and not j.fut.done():
                j.fut.set_result([])
        return [j for j, _, _ in take]


class _Job:
    """One request's documents, how far they are linked, and its records so far."""

    def __init__(self, docs: list[Any], fut: Future) -> None:
        self.docs, self.fut, self.at, self.recs = docs, fut, 0, []

    @property
    def left(self) -> int:
        return len(self.docs) - self.at if not self.fut.done() else 0

    def add(self, recs: list[Any], at: int) -> None:
        if self.fut.done():  # answered, failed, or cancelled because its client left
            return
        self.recs.extend(recs)
        self.at = at
        if self.at >= len(self.docs):
            with contextlib.suppress(InvalidStateError):  # cancelled meanwhile by the request's thread
                self.fut.set_result(self.recs)

    def fail(self, e: BaseException) -> None:
        with contextlib.suppress(InvalidStateError):
            if not self.fut.done():
                self.fut.set_exception(e)


_FORM = """<form method="get" action="/" style="margin:1em 0"><textarea name="text" rows="5" cols="100"
placeholder="Paste a text to link">{text}</textarea><br><button type="submit">Link</button></form>"""


def make_handler(batcher: Batcher, info: dict[str, Any], max_body: int = MAX_BODY,
                 max_chars: int = MAX_CHARS) -> type[BaseHTTPRequestHandler]:
    """The request handler class of a server around ``batcher``."""
    from glinker.types import Document

    class Handler(BaseHTTPRequestHandler):
        server_version = "glinker"
        protocol_version = "HTTP/1.1"
        timeout = 60  # seconds a client may take to send its request (a declared body never sent)

        def log_message(self, fmt: str, *args: Any) -> None:  # through logging, not stderr prints
            log.debug("%s %s", self.address_string(), fmt % args)

        def do_GET(self) -> None:
            with batcher.answering(), self._unless_gone():
                self._get()

        def do_HEAD(self) -> None:
            """GET's status and headers without the body; ``/`` without linking (a probe's request stays cheap)."""
            self.path = urlparse(self.path).path
            with batcher.answering():
                self._get()

        def handle_expect_100(self) -> bool:
            """A body announced too large is refused before the client sends it (not after ``100 Continue``)."""
            if self._too_large():
                return False
            return super().handle_expect_100()

        def _too_large(self) -> bool:
            """Answers 413 (and closes) when the request's Content-Length is over the limit."""
            try:
                size = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                return False  # answered as a 400 by the request's handler
            if size <= max_body:
                return False
            self.close_connection = True
            self._json(413, {"error": {"message": f"body of {size} bytes; at most {max_body} are read",
                                       "fix": "send fewer documents per request"}})
            return True

        def do_POST(self) -> None:
            with batcher.answering(), self._unless_gone():
                self._post()

        @contextlib.contextmanager
        def _unless_gone(self) -> Iterator[None]:
            try:
                yield
            except _ClientLeft:
                self.close_connection = True
                log.info("client %s left before its answer: its documents not yet linked are dropped",
                         self.address_string())

        def _client_left(self) -> bool:
            """Whether the client closed its connection (end of stream; bytes of a next request do not count)."""
            try:
                readable, _, _ = select.select([self.connection], [], [], 0)
                return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
            except (OSError, ValueError):  # reset, or closed
                return True

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", f"{ctype}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:  # set before answering: the client is told to open a new connection
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command == "HEAD":
                return
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client left: nothing to answer
                log.debug("client %s left before its answer", self.address_string())

        def _json(self, status: int, obj: Any) -> None:
            self._send(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"))

        def _error(self, status: int, e: GlinkerError) -> None:
            self._json(status, {"error": {"code": e.code, "message": e.message, "where": e.where, "fix": e.fix}})

        def _link(self, raw_docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            docs = [Document.model_validate(d) for d in raw_docs]
            if not docs:
                return []
            fut = batcher.submit(docs)
            while True:
                try:
                    return fut.result(timeout=CHECK_CLIENT_EVERY)
                except FutureTimeout:
                    if self._client_left() and fut.cancel():  # its remaining turns go to the others
                        raise _ClientLeft from None

        def _get(self) -> None:
            url = urlparse(self.path)
            if url.path == "/health":
                self._json(200, {"status": "ok", **info, "documents": batcher.documents, "batches": batcher.batches})
                return
            if url.path == "/link":
                self._json(405, {"error": {"message": "/link takes POST requests",
                                           "fix": "POST a JSON body such as {\"text\": \"...\"}, or GET /?text=..."}})
                return
            if url.path != "/":
                self._json(404, {"error": {"message": f"no such endpoint: {url.path}",
                                           "fix": "POST /link, GET /health or GET /"}})
                return
            from glinker.stages.writers import render_html

            text = parse_qs(url.query).get("text", [""])[0]
            if len(text) > max_chars:
                self._json(413, {"error": {"message": f"{len(text):,} characters of text; at most {max_chars:,} per "
                                           "request", "where": "text", "fix": "send less text, or start the server "
                                           "with a larger --max-chars"}})
                return
            try:
                recs = self._link([{"id": "0", "text": text}]) if text.strip() else []
            except DataError as e:
                self._error(400, e)
                return
            except GlinkerError as e:
                self._error(500, e)
                return
            page = render_html(recs, title=f"glinker: {info.get('pipeline', '')}")
            page = page.replace("<body>", "<body>" + _FORM.format(text=html.escape(text)), 1)
            self._send(200, page.encode("utf-8"), "text/html")

        def _post(self) -> None:
            if urlparse(self.path).path != "/link":
                self.close_connection = True  # its body is not read: the connection cannot carry another request
                self._json(404, {"error": {"message": f"no such endpoint: {self.path}", "fix": "POST /link"}})
                return
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                self.close_connection = True
                self._json(411, {"error": {"message": "chunked request bodies are not read",
                                           "fix": "send the body with a Content-Length header"}})
                return
            try:
                size = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self.close_connection = True
                self._json(400, {"error": {"message": f"Content-Length {self.headers.get('Content-Length')!r} "
                                           "is not a number", "where": "Content-Length",
                                           "fix": "send the body's size in bytes"}})
                return
            if size < 0:
                self.close_connection = True
                self._json(400, {"error": {"message": f"Content-Length {size} is negative", "where": "Content-Length",
                                           "fix": "send the body's size in bytes"}})
                return
            if self._too_large():
                return
            try:
                with batcher.reading(self.connection):
                    body = self.rfile.read(size)
            except OSError:  # the read timed out (``timeout``), or the connection was reset
                body = b""
            if len(body) < size:  # the client stopped sending (or a stopping server stopped reading)
                raise _ClientLeft
            try:
                raw_docs = parse_request(body)
                chars = sum(len(d["text"]) for d in raw_docs)
                if chars > max_chars:
                    self._json(413, {"error": {"message": f"{chars:,} characters of text; this server links at "
                                               f"most {max_chars:,} per request", "where": "body",
                                               "fix": "send fewer or shorter documents per request (glinker link "
                                                      "for big inputs), or start the server with a larger "
                                                      "--max-chars"}})
                    return
                recs = self._link(raw_docs)
            except DataError as e:
                self._error(400, e)
                return
            except GlinkerError as e:
                log.error("linking failed: %s", e, exc_info=e.__cause__ is not None)  # a bug: its traceback
                self._error(500, e)
                return
            self._json(200, {"documents": recs})

    return Handler


class _Listener(ThreadingHTTPServer):
    # the kernel's queue of connections not yet accepted: Python's default of 5 reset clients when 30 connected
    # at once; a team's burst of requests waits in the queue instead
    request_queue_size = 1024


class Server:
    """A pipeline served over HTTP on ``host:port`` (port 0: any free port, see ``.port``)."""

    def __init__(self, pipeline: Any, host: str = "127.0.0.1", port: int = 8080, *, max_wait: float = 0.005,
                 max_batch: int | None = None, max_body: int = MAX_BODY, max_chars: int = MAX_CHARS) -> None:
        def in_use(e: OSError) -> ConfigError:
            return ConfigError(f"cannot listen on {host}:{port}: {e.strerror}", where="--port",
                               fix="pick another --port (0: any free one), or stop what listens there")

        self.httpd = _Listener((host, port), BaseHTTPRequestHandler, bind_and_activate=False)
        try:  # the address first: a port in use fails at once, not after the models load
            self.httpd.server_bind()
        except OSError as e:
            self.httpd.server_close()
            raise in_use(e) from None
        try:  # the models load on the batch thread, which runs every batch (Batcher)
            self.batcher = Batcher(pipeline, max_batch=max_batch, max_wait=max_wait)
        except BaseException:  # an interrupted warm-up closed the stages first
            self.httpd.server_close()
            raise
        try:
            info = {"pipeline": pipeline.name, "fingerprint": self.batcher.fingerprint}
            self.httpd.RequestHandlerClass = make_handler(self.batcher, info, max_body, max_chars)
            self.httpd.daemon_threads = True
            # connections are taken only now that the models are loaded: a readiness probe (or a client) connecting
            # during the load is refused, rather than held until it ends
            try:
                self.httpd.server_activate()
            except OSError as e:  # another server bound the same port meanwhile (bound but not listening: allowed)
                raise in_use(e) from None
            self.host, self.port = self.httpd.server_address[:2]
        except BaseException:  # the port lost, or a Ctrl-C: the stages are closed before the error goes on
            self.httpd.server_close()
            self.batcher.close()
            raise

    def serve_forever(self) -> None:
        log.info("serving on http://%s:%s", self.host, self.port)
        self.httpd.serve_forever()

    def shutdown(self) -> None:
        """Stop accepting, answer every request already received, then stop the linking thread."""
        self.httpd.shutdown()
        self.stop()

    def stop(self) -> None:
        """After ``serve_forever`` returned: close the socket, let every request in flight get its answer, stop the
        linking thread (which closes the pipeline: its stages' ``close()``)."""
        self.httpd.server_close()
        self.batcher.drop_readers()
        self.batcher.wait_answered()
        self.batcher.close()
