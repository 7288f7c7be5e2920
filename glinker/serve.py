"""``glinker serve``: a pipeline behind HTTP, with requests batched together.

Endpoints (JSON in and out, UTF-8):

- ``POST /link``: ``{"text": "..."}``, ``{"texts": ["...", ...]}`` or ``{"documents": [{"id": ..., "text": ...,
  "meta": {...}}, ...]}`` -> ``{"documents": [<linked document>, ...]}`` in request order (the records ``glinker
  link`` writes). A bad body is a 400 naming the field; an oversized one (bytes, characters of text, documents)
  a 413.
- ``GET /health`` -> ``{"status": "ok", "pipeline": ..., "fingerprint": ..., "documents": n, "batches": n}``
  (``HEAD`` too: status and headers only).
- ``GET /`` (``?text=...``): a page with a text box that shows the links highlighted (the ``-o out.html`` page).

One thread runs the pipeline (its warm-up, every batch and its close at the stop); concurrent requests queue up and are linked together, up to the pipeline's
``batch_size`` documents or ``max_wait`` seconds after the first one arrives, so throughput under load is that of
batched linking rather than of one document at a time.

The server has no authentication and no TLS (a reverse proxy adds them). What it guards itself against: requests
too big to link (``max_body``, ``max_chars``, ``max_docs``, ``max_meta_items``), clients that send slowly
(``request_timeout``: one deadline for a request's headers and body, from its first byte) or open many connections
(``max_connections`` served at once, the others wait in the kernel's queue; a connection idle without a request for
``idle_timeout`` is closed, and with every slot taken the one idle longest is closed for a new client), hostile
JSON (a 400, never a dropped connection), requests framed ambiguously (a body on a GET, a Content-Length that is not plain digits or
is given twice differently, a Transfer-Encoding: a 400 or 411 and the connection closed, so that no request is
read out of another's body) and, on a loopback address, web pages that reach it through a DNS name of theirs (DNS
rebinding: only loopback ``Host`` names, IP addresses and ``allow_hosts`` are answered). A refused request's body
is read and dropped before its connection closes, so that its client reads the answer rather than a reset. A 500
tells the client a reference, never the error's text (it may name server paths): the details go to the log.
"""

from __future__ import annotations

import contextlib
import errno
import html
import io
import ipaddress
import json
import logging
import math
import queue
import re
import secrets
import select
import socket
import sys
import threading
import time
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import parse_qs, urlparse

from glinker.errors import ConfigError, DataError, GlinkerError
from glinker.io import check_text, free_id

log = logging.getLogger(__name__)
access = logging.getLogger(__name__ + ".access")  # one line per answer, at INFO

MAX_BODY = 4 * 1024 * 1024
"""Bytes of body one request may send by default: 200,000 characters (``MAX_CHARS``) fit even with every character
escaped (``\\u00e9``: 6 bytes, 12 for an emoji's pair), and a body becomes Python objects of up to ~40 times its
size while it is parsed (a body of empty ``{}``), so the limit bounds memory, not only the wire."""

MAX_META_ITEMS = 100_000
"""Values (containers, strings, numbers) the ``meta`` of one request's documents may hold together by default: the
records echo them, and each costs ~50-100 bytes held until the answer is sent, whatever its size in the body."""

PARSING_AT_ONCE = 2
"""Bodies parsed at the same time (the others wait their turn): what a body costs while it is parsed is bounded by
this many times ``max_body``'s worth of objects, not by the connection count."""
MAX_CHARS = 200_000
"""Characters of text one request may hold by default: the batch thread links one request's documents before the
next request's, so one huge request would hold every client (about a minute per 50,000 characters on 2 CPU cores;
``glinker link`` is the way for big inputs)."""

MAX_DOCS = 1_000
"""Documents one request may hold by default: each document costs linking time and memory however short its text
(100,000 empty texts took 23 s and 120 MB on 2 CPU cores, and fit in a 400 KB body), so ``max_chars`` alone does not
bound a request. A thousand is many batches of any pipeline's ``batch_size``: clients with more send several
requests (or use ``glinker link``)."""

MAX_CONNECTIONS = 64
"""Connections served at once by default (one thread each); more wait in the kernel's accept queue until one ends,
so that slow clients cannot make the process start threads without bound. Idle connections count too, but do not
keep a new client waiting: with every slot taken, the one idle longest is closed to free its slot."""

REQUEST_TIMEOUT = 60.0
"""Seconds a client has by default to send one whole request, its headers and body, from the request's first byte:
a per-read timeout alone let a client sending a byte every few seconds hold its connection and thread for ever."""

IDLE_TIMEOUT = 5.0
"""Seconds a connection may wait by default for a request's first byte (a new one, or a kept-alive one between
requests) before it is closed: an idle connection holds a slot of ``max_connections`` and a thread. Counted apart
from ``request_timeout``, which starts at that first byte. (HTTP lets a server close an idle connection at any
time: clients open a new one.)"""

LINGER = 2.0
"""Seconds a refused request's connection is read from, at most, after the answer, when the body's size is not
known (a Transfer-Encoding, a bad Content-Length, a body over the limit, a client waiting for ``100 Continue``):
closing a socket with input unread resets the connection, and the client, which sends its body before it reads,
would see that instead of the answer."""

LOOPBACK_NAMES = frozenset({"localhost"})
"""``Host`` names that always reach a server on a loopback address (IP literals of loopback addresses too)."""

CHECK_CLIENT_EVERY = 0.25
"""Seconds between checks, while a request waits for its links, that its client is still connected: the documents
of a client that left are not linked (their turns go to the clients still waiting)."""


class _ClientLeft(Exception):
    """The client closed its connection before its answer was ready."""


class RequestTooLarge(DataError):
    """A request over one of the server's limits (answered 413, not 400: the request is well formed)."""


class _NotFinite(ValueError):
    """A JSON number that is not a finite float (``NaN``, ``Infinity``, ``1e999``)."""


def _finite(s: str) -> float:
    v = float(s)
    if not math.isfinite(v):
        raise _NotFinite(f"the number {s[:40]} is out of range")
    return v


def _no_constant(name: str) -> Any:
    raise _NotFinite(f"{name} is not a JSON number")


def check_meta(meta: dict[str, Any], where: str, max_depth: int | None = None) -> None:
    """Raise a DataError naming ``where`` (and the key) when ``meta`` nests deeper than ``max_depth`` (default:
    ``glinker.types.MAX_META_DEPTH``, 32) or holds a lone surrogate: checked before linking, because either only
    failed when the linked record was serialised (the work done for nothing) or written. The check
    ``Pipeline.link`` runs too (:func:`glinker.types.checked_meta`)."""
    from glinker.types import MAX_META_DEPTH, checked_meta

    checked_meta(meta, where, MAX_META_DEPTH if max_depth is None else max_depth)


def meta_items(meta: Any, most: int) -> int:
    """The values ``meta`` holds, itself and every container, key's value and item inside it counted once; the
    count stops at ``most`` (a request's whole meta is counted against what is left of its limit)."""
    n, todo = 0, [meta]
    while todo and n < most:
        v = todo.pop()
        n += 1
        if isinstance(v, dict):
            todo.extend(v.values())
        elif isinstance(v, list):
            todo.extend(v)
    return n


def parse_request(body: bytes, max_docs: int | None = None,
                  max_meta_items: int | None = None) -> list[dict[str, Any]]:
    """The documents of a ``POST /link`` body; a DataError naming the field when it is not one of the forms, a
    :class:`RequestTooLarge` when it holds more than ``max_docs`` documents (checked before any document is looked
    at: a 4 MB body of empty texts is a million documents) or its documents' ``meta`` more than ``max_meta_items``
    values together (:func:`meta_items`)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"the body is not UTF-8 (byte {e.start})", where="body", fix="send UTF-8 JSON") from None
    try:
        req = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise DataError(f"the body is not JSON: {e.msg} at line {e.lineno} column {e.colno}", where="body",
                        fix='send {"text": "..."}, {"texts": [...]} or {"documents": [{"id", "text"}]}') from None
    except RecursionError:  # the JSON decoder recurses per level of nesting
        raise DataError("the body is nested too deeply", where="body",
                        fix='send {"texts": [...]} or {"documents": [...]} with a flat meta') from None
    except _NotFinite as e:
        raise DataError(f"the body is not JSON: {e}", where="body", fix="send finite numbers") from None
    except ValueError:  # an integer of more digits than Python converts (sys.get_int_max_str_digits())
        limit = getattr(sys, "get_int_max_str_digits", lambda: 0)()  # Python 3.10.7+
        raise DataError(f"a number in the body has more than {limit or 'the allowed'} digits", where="body",
                        fix="send ids and other long numbers as strings") from None
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
    if max_docs is not None and len(items) > max_docs:
        raise RequestTooLarge(f"{len(items):,} documents; this server links at most {max_docs:,} per request",
                              where=key, fix="send fewer documents per request (glinker link for big inputs), or "
                                             "start the server with a larger --max-docs")
    docs = []
    meta_left = max_meta_items if max_meta_items is not None else 0
    # a document without an id is numbered by its place, unless another document of the request has that id
    given: set[str] = set()
    if key == "documents":
        for i, d in enumerate(items):
            if isinstance(d, dict) and d.get("id") is not None:
                # as Pipeline.link takes ids (true became "True", 1.5 "1.5"); str() of a deep list would overflow
                if isinstance(d["id"], bool) or not isinstance(d["id"], (str, int)):
                    raise DataError(f"must be a string or a whole number, not {json.dumps(d['id'])[:40]}",
                                    where=f"documents[{i}].id", fix='"id": "a" (or "id": 7)')
                check_text(str(d["id"]), f"documents[{i}].id")  # echoed in the answer: must be Unicode text
                given.add(str(d["id"]))
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
        if item.get("meta") is not None and not isinstance(item["meta"], dict):
            raise DataError("must be an object", where=f"documents[{i}].meta", fix='"meta": {"source": "..."}')
        # the record's other fields go into its meta, as glinker link reads a JSONL line (an AIDA-style record's
        # "mentions" is where given_mentions reads its spans: dropped here, it linked nothing with a 200)
        from glinker.pipeline.runner import record_meta

        meta = record_meta({k: v for k, v in item.items() if not (k == "meta" and v is None)})
        if meta:
            if max_meta_items is not None:
                meta_left -= meta_items(meta, meta_left + 1)
                if meta_left < 0:
                    raise RequestTooLarge(f"the documents' meta hold more than {max_meta_items:,} values together "
                                          f"(by documents[{i}])", where=f"documents[{i}].meta",
                                          fix="send less meta per request (it is echoed, not linked), or start the "
                                              "server with a larger --max-meta-items")
            check_meta(meta, f"documents[{i}].meta")
            doc["meta"] = meta
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
        self.dead: BaseException | None = None  # what ended the batch thread while serving (GET /health: 503)
        self._jobs: list[_Job] = []  # the requests the batch thread has taken and not finished
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
            except BaseException as e:  # noqa: BLE001 - a bug of the loop itself: said, and no request waits forever
                self.dead = e
                log.critical("the batch thread stopped: %s: %s; requests are refused (restart the server)",
                             type(e).__name__, e, exc_info=True)
                for job in self._jobs:
                    job.fail(_as_error(e))
                self._fail_queued(e)
            finally:
                self._close_pipeline()
        finally:
            self._stopped.set()

    def _fail_queued(self, e: BaseException) -> None:
        """Fail every request still queued (the batch thread is gone: nothing would answer them)."""
        while True:
            try:
                item = self.q.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                with contextlib.suppress(InvalidStateError):
                    item[1].set_exception(_as_error(e))

    def _close_pipeline(self) -> None:
        try:
            self.pipe.close()
        except Exception as e:  # a stopping server stops anyway
            log.exception("closing the pipeline failed: %s", type(e).__name__)

    def submit(self, docs: list[Any]) -> Future:
        """A future of the records of ``docs`` (Document objects), in order."""
        fut: Future = Future()
        if self.dead is not None:
            fut.set_exception(_as_error(self.dead))
            return fut
        self.q.put((docs, fut))
        if self.dead is not None:  # died while it was queued
            self._fail_queued(self.dead)
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
        a request of many documents (up to ``max_docs``) shares the thread with the small ones that arrive meanwhile
        instead of holding them until it is done (each request still gets its records in order, in one answer)."""
        jobs: list[_Job] = self._jobs  # (failed by _main should this loop ever raise)
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
            jobs[:] = [j for j in jobs if j not in served and not j.fut.done()] + [j for j in served
                                                                                    if not j.fut.done()]

    def _turn(self, jobs: list[_Job]) -> list[_Job]:
        """One batch of at most ``max_batch`` documents, taken from the jobs in round robin; returns the jobs it
        took documents from."""
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
            res = self.pipe.run_batch(docs) if docs else None
        except BaseException as raised:  # noqa: BLE001 - a stage's SystemExit too: it ended the batch thread, and
            # every request after it hung while /health said ok
            e = _as_error(raised)
            if len(take) > 1:  # find the request that fails: the others still get their links
                for j, a, b in take:
                    part = j.docs[a:b]
                    try:
                        one = self.pipe.run_batch(part)
                    except BaseException as err:  # noqa: BLE001 - handed to that request's client
                        j.fail(_as_error(err))
                        continue
                    self.batches += 1
                    self.documents += b - a
                    self._answer([(j, a, b)], one, part)
                return [j for j, _, _ in take]
            take[0][0].fail(e)
            return [take[0][0]]
        if docs:
            self.batches += 1
            self.documents += len(docs)
            self._answer(take, res, docs)
        for j in jobs:  # a request without documents is answered at once
            if not j.docs and not j.fut.done():
                j.fut.set_result([])
        return [j for j, _, _ in take]

    @staticmethod
    def _answer(take: list[tuple[_Job, int, int]], res: Any, docs: list[Any]) -> None:
        """Hands each request its records of a linked batch, serialised request by request: a record that cannot be
        serialised fails its own request only; the others are answered, and nothing is linked again (serialising
        the whole batch at once made one bad record re-link every request of its batch)."""
        from glinker.cli.link import output_records
        from glinker.io import to_jsonable

        try:
            outs = output_records(res, docs)
        except BaseException as e:  # noqa: BLE001 - the batch's output is unusable: each request is told
            for j, _, _ in take:
                j.fail(_as_error(e))
            return
        at = 0
        for j, a, b in take:
            try:
                recs = [to_jsonable(r) for r in outs[at:at + (b - a)]]
            except BaseException as e:  # noqa: BLE001 - handed to that request's client
                j.fail(_as_error(e))
            else:
                j.add(recs, b)
            at += b - a


def _as_error(e: BaseException) -> Exception:
    """What a request is failed with when linking its batch raised ``e``: a stage's ``SystemExit``,
    ``KeyboardInterrupt`` or ``GeneratorExit`` (no ``Exception``: nothing else catches it) as a RuntimeError naming
    it, so the batch thread lives on and the client gets a 500 with a reference."""
    if isinstance(e, Exception):
        return e
    err = RuntimeError(f"a stage raised {type(e).__name__}({', '.join(map(repr, e.args))})")
    err.__cause__ = e
    return err


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


def host_name(value: str) -> str | None:
    """The host of a ``Host`` header (or ``--allow-host`` name) without its port, lowercased, without a final dot;
    IPv6 addresses in brackets (``[::1]``). None when it is not ``host[:port]``."""
    v = value.strip().lower()
    if v.count(":") > 1 and not v.startswith("["):  # a bare IPv6 address (an --allow-host entry)
        v = f"[{v}]"
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            return None
        name, rest = v[:end + 1], v[end + 1:]
    else:
        name, colon, port = v.partition(":")
        rest = colon + port
    if rest and not re.fullmatch(r":[0-9]*", rest):
        return None
    name = name.rstrip(".")
    if name.startswith("["):
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            return None
    elif not re.fullmatch(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*", name):  # names (IDNs as xn--) and IPv4 addresses
        return None
    return name


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name as :func:`host_name` gives it, or an address to bind) is a loopback name or
    address: ``localhost``, ``127.0.0.0/8``, ``::1``."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:  # ::ffff:127.0.0.1 (Python 3.11 calls it no loopback)
        ip = ip.ipv4_mapped
    return ip.is_loopback


def allowed_hosts(bind: str, allow: Sequence[str] = ()) -> frozenset[str] | None:
    """The ``Host`` names a server bound to ``bind`` answers (and IP addresses, see :func:`host_allowed`), or None
    for any. On a loopback address: the loopback names and ``allow``; a web page that makes its own DNS name point
    to 127.0.0.1 (DNS rebinding) sends its name as ``Host`` and is refused, so it cannot read the answers (the
    labels of a private KB). On another address: any, unless ``allow`` names some (then those and the loopback
    names). ``*`` in ``allow``: any."""
    names = set()
    for a in allow:
        if a.strip() == "*":
            return None
        name = host_name(a)
        if name is None:
            raise ConfigError(f"{a!r} is not a host name", where="--allow-host",
                              fix="give the name clients reach the server by, e.g. --allow-host linker.example.org")
        names.add(name)
    if not names and not is_loopback(bind.lower()):
        if not _resolves_to_loopback(bind):
            return None
        own = host_name(bind)  # the name it was bound by is the one its clients use (http://vm:8080)
        if own is not None:
            names.add(own)
    return frozenset(LOOPBACK_NAMES | names)


def _resolves_to_loopback(host: str) -> bool:
    """Whether the name ``host`` resolves to loopback addresses only (``--host $(hostname)`` is 127.0.1.1 on
    Debian and Ubuntu; ``127.1``): the server is then reachable from this machine only, and the Host check is on
    as for 127.0.0.1 (it was off: any Host)."""
    addrs = {a for _, a in _name_addresses(host)}  # (an address: is_loopback said it)
    return bool(addrs) and all(is_loopback(a.split("%")[0]) for a in addrs)


def _name_addresses(host: str) -> list[tuple[int, str]]:
    """(family, address) of what the name ``host`` resolves to; none for an IP address (no lookup) or a name that
    does not resolve (the bind says so)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return []
    except ValueError:
        pass
    try:
        return [(a[0], a[4][0]) for a in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)]
    except (OSError, UnicodeError):
        return []


def is_ip_address(host: str) -> bool:
    """Whether ``host`` (a name as :func:`host_name` gives it) is an IPv4 address or a bracketed IPv6 one."""
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") else host)
    except ValueError:
        return False
    return True


def host_allowed(value: str, allowed: frozenset[str]) -> bool:
    """Whether a request's ``Host`` header ``value`` is one of ``allowed`` or an IP address (any port). An address is
    no DNS rebinding, which always arrives under the attacker's DNS name, and is what probes and clients that reach
    the server by its address send (a Kubernetes ``httpGet`` probe: the pod's IP), which no list can name ahead."""
    name = host_name(value)
    return name is not None and (name in allowed or is_ip_address(name))


class _DeadlineReader(io.RawIOBase):
    """The socket under a handler's ``rfile``: each read waits at most until the request's ``deadline`` (then
    TimeoutError), so that a client sending a byte now and then cannot make its request last longer than the
    deadline, as it could with only a timeout on each read."""

    def __init__(self, sock: socket.socket, per_read: float | None) -> None:
        super().__init__()
        self.sock = sock
        self.per_read = per_read
        self.deadline: float | None = None  # time.monotonic() by which the request must have arrived

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self.deadline is None:
            return self.sock.recv_into(buf)
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request was not received before its deadline")
        self.sock.settimeout(left if self.per_read is None else min(left, self.per_read))
        try:
            return self.sock.recv_into(buf)
        finally:
            self.sock.settimeout(self.per_read)  # writes keep the plain timeout


def make_handler(batcher: Batcher, info: dict[str, Any], max_body: int = MAX_BODY,
                 max_chars: int = MAX_CHARS, *, max_docs: int = MAX_DOCS, request_timeout: float = REQUEST_TIMEOUT,
                 idle_timeout: float = IDLE_TIMEOUT, max_meta_items: int = MAX_META_ITEMS,
                 hosts: frozenset[str] | None = None) -> type[BaseHTTPRequestHandler]:
    """The request handler class of a server around ``batcher``; ``hosts``: the ``Host`` names it answers (None:
    any; see :func:`allowed_hosts`)."""
    from glinker.types import Document

    parsing = threading.BoundedSemaphore(PARSING_AT_ONCE)  # bodies turned into objects at once (PARSING_AT_ONCE)

    class Handler(BaseHTTPRequestHandler):
        server_version = "glinker"
        sys_version = ""  # not told: the Python version only helps an attacker pick an exploit
        protocol_version = "HTTP/1.1"
        timeout = request_timeout  # each read and write; the request as a whole has the same deadline
        _admitted: bool | None = None  # this request's framing, size and Host checked (and the answer)
        _answer_started = False  # a status line was written for this request
        _expecting = False  # the client waits for 100 Continue before it sends the body
        _served = False  # a request was answered on this connection (kept alive since)
        _started: float | None = None  # when this request's first byte arrived (the access line's duration)
        _docs = 0  # documents this request asked to link (the access line)

        def version_string(self) -> str:
            return self.server_version

        def log_message(self, fmt: str, *args: Any) -> None:  # through logging, not stderr prints
            log.debug("%s %s", self.address_string(), fmt % args)

        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            """One access line per answer at INFO (``glinker -v serve``): client, method, path without its query
            (a GET /?text= carries the user's text), status, documents, seconds since the request's first byte."""
            took = time.monotonic() - self._started if self._started is not None else 0.0
            # a request line refused by http.server (garbage, a bad version, a URL too long) has no path yet
            path = getattr(self, "path", None) or ""
            access.info("%s %s %s %s docs=%s %.3fs", self.address_string(), getattr(self, "command", None) or "-",
                        urlparse(path).path[:200] if path else "-", getattr(code, "value", code), self._docs, took)

        def setup(self) -> None:
            super().setup()
            self.rfile.close()  # the socket's plain file: reads go through the request's deadline instead
            self._raw = _DeadlineReader(self.connection, self.timeout)
            self.rfile = io.BufferedReader(self._raw)

        def handle_one_request(self) -> None:
            """One request, from the wait for its first byte (at most ``idle_timeout``: a new connection, or a
            kept-alive one between requests) to its answer; its headers and body must arrive within
            ``request_timeout`` of that first byte."""
            self._answer_started = False
            self._expecting = False
            self._started, self._docs = None, 0
            if not self._request_arrives():
                self.close_connection = True
                return
            self._started = time.monotonic()
            self._raw.deadline = self._started + request_timeout
            super().handle_one_request()
            self._served = True

        def _request_arrives(self) -> bool:
            """Waits for the next request's first byte (already here when pipelined), at most ``idle_timeout``;
            False when none came, the client closed, or the server closed the connection to give its slot to a
            new one (see :meth:`_Listener.close_an_idle_one`)."""
            self._raw.deadline = time.monotonic() + idle_timeout
            idle_until = getattr(self.server, "idle_until", None)  # a _Listener's
            try:
                if idle_until is None:
                    first = self.rfile.peek(1)
                else:
                    first = idle_until(self.connection, lambda: self.rfile.peek(1), fresh=not self._served)
            except (OSError, ValueError):  # idle too long (TimeoutError), reset, or closed
                log.debug("closing %s: no request within %g s", self.address_string(), idle_timeout)
                return False
            return bool(first)

        def parse_request(self) -> bool:
            """The request line and headers, then the checks every request goes through (:meth:`_admit`)."""
            self._admitted = None
            if not super().parse_request():
                return False
            return self._admit()

        def handle_expect_100(self) -> bool:
            """A request refused (too large, framed ambiguously, another Host) is answered before the client sends
            its body (not after ``100 Continue``)."""
            self._expecting = True  # its body is not on its way (unless told 100 Continue)
            if not self._admit():
                return False
            self._expecting = False
            return super().handle_expect_100()

        def _admit(self) -> bool:
            if self._admitted is None:
                self._admitted = self._check()
            return self._admitted

        def _refuse(self, status: int, message: str, fix: str, where: str | None = None,
                    body: int | None = None) -> bool:
            """Answers ``status`` and closes the connection: the request's body, unread, cannot be taken for
            the next request (request smuggling behind a proxy that reuses its connections). ``body``: its size
            when it is framed plainly (a Content-Length within ``max_body``), see :meth:`_close_reading`."""
            self.close_connection = True
            self._json(status, {"error": {"message": message, "where": where, "fix": fix}})
            self._close_reading(body)
            return False

        def _close_reading(self, body: int | None) -> None:
            """After an answer that leaves the request's body unread: closes the sending side (the client sees the
            answer end) and reads and drops what the client still sends before the connection is closed. A socket
            closed with input unread resets the connection, and a client that sends its whole body before it reads
            (most do) got a broken pipe instead of the answer. A body of known size (``body``) is read within the
            request's deadline; anything else (an unknown framing, a body over ``max_body``, a client waiting for
            ``100 Continue``, which may never send its body) for at most :data:`LINGER` seconds and ``max_body``
            bytes."""
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_WR)
            left = body if body is not None and not self._expecting else max_body
            if body is None or self._expecting:
                self._raw.deadline = min(self._raw.deadline or math.inf, time.monotonic() + LINGER)
            try:
                while left > 0:
                    chunk = self.rfile.read1(min(left, 65536))
                    if not chunk:  # the client closed, having read the answer
                        break
                    left -= len(chunk)
            except (OSError, ValueError):  # the deadline passed (TimeoutError), or a reset: closed as it is
                pass

        def _check(self) -> bool:
            """Whether the request may be answered; if not, the refusal is written and the connection closed.
            Checked: how the body is framed (only a Content-Length of plain digits, given once, and only on POST),
            its size, and the Host (and Origin) names."""
            if self.command not in ("GET", "HEAD", "POST"):  # (http.server answered these with a 501 HTML page)
                return self._refuse(405, f"{self.command[:20]} is not answered here",
                                    "POST /link with the documents, GET /health, or GET /?text=... in a browser",
                                    "method")
            if self.headers.get_all("Transfer-Encoding"):
                te = self.headers.get("Transfer-Encoding", "")[:100]
                if self.command == "POST":
                    return self._refuse(411, f"request bodies sent with Transfer-Encoding {te!r} are not read",
                                        "send the body with a Content-Length header", "Transfer-Encoding")
                return self._refuse(400, f"{self.command} requests take no body (Transfer-Encoding {te!r})",
                                    "send no body, or POST /link", "Transfer-Encoding")
            size = self._content_length()
            if size is None:
                return False
            if size and self.command != "POST":
                return self._refuse(400, f"{self.command} requests take no body (Content-Length {size})",
                                    "send no body, or POST the documents to /link", "Content-Length",
                                    body=size if size <= max_body else None)
            if size > max_body:
                return self._refuse(413, f"body of {size} bytes; at most {max_body} are read",
                                    "send fewer documents per request")
            if hosts is not None:
                host = self.headers.get_all("Host") or []
                if len(host) > 1:
                    return self._refuse(400, "more than one Host header", "send one Host header", "Host", body=size)
                if host and not host_allowed(host[0], hosts):
                    return self._refuse(421, f"this server does not answer for Host {host[0][:100]!r}",
                                        "reach it as localhost (127.0.0.1), or start it with --allow-host NAME for "
                                        "each name clients use (e.g. behind a reverse proxy)", "Host", body=size)
                origin = self.headers.get_all("Origin") or []
                own = host_name(host[0]) if host else None  # the server's own pages (same origin) may call it
                if origin and not all((n := host_name(urlparse(o.strip()).netloc)) is not None
                                      and (n == own or n in hosts) for o in origin):
                    # a page of another site (a browser says which): it may not make this server work for it
                    return self._refuse(403, f"requests from pages of {origin[0][:100]!r} are not answered",
                                        "call the server from its own pages or outside a browser, or start it "
                                        "with --allow-host for that site's name", "Origin", body=size)
            return True

        def _content_length(self) -> int | None:
            """The body's size in bytes (0 without a Content-Length); None once a 400 is answered: a value that is
            not plain ASCII digits (``int()`` also took ``+17``, ``1_7`` or ``\\x0b17``), or several different
            values. A front end reading them differently would take part of a body for another request."""
            values = [v.rstrip(" \t") for v in self.headers.get_all("Content-Length") or []]  # trailing OWS
            if not values:
                return 0
            if any(v != values[0] for v in values[1:]):
                self._refuse(400, f"conflicting Content-Length headers: {', '.join(repr(v[:30]) for v in values)}",
                             "send one Content-Length header", "Content-Length")
                return None
            if not re.fullmatch(r"[0-9]+", values[0]):
                self._refuse(400, f"Content-Length {values[0][:30]!r} is not a number of plain digits",
                             "send the body's size in bytes", "Content-Length")
                return None
            return int(values[0]) if len(values[0]) <= 18 else sys.maxsize

        def do_GET(self) -> None:
            with batcher.answering(), self._guarded():
                self._get()

        def do_HEAD(self) -> None:
            """GET's status and headers without the body; ``/`` without linking (a probe's request stays cheap)."""
            self.path = urlparse(self.path).path
            with batcher.answering(), self._guarded():
                self._get()

        def do_POST(self) -> None:
            with batcher.answering(), self._guarded():
                self._post()

        @contextlib.contextmanager
        def _guarded(self) -> Iterator[None]:
            """A client that left is not answered; any other failure is a 500 (see :meth:`_internal`), not a
            connection closed without an answer and a traceback on stderr."""
            try:
                yield
            except _ClientLeft:
                self.close_connection = True
                log.info("client %s left before its answer: its documents not yet linked are dropped",
                         self.address_string())
            except Exception as e:  # logged with its traceback; the client gets a reference
                if self._answer_started:  # the answer is cut: the client sees the connection close
                    self.close_connection = True
                    log.exception("answering %s %s failed", self.command, self.path[:200])
                else:
                    self._internal(e)

        def _internal(self, e: BaseException) -> None:
            """A 500 that says an internal error occurred, with a reference to the log line that has the details:
            the error's own message, place and fix may name server paths (KB, model) and are not sent."""
            ref = secrets.token_hex(4)
            if isinstance(e, GlinkerError):  # a bug underneath: its traceback too
                log.error("[ref %s] %s %s failed: %s", ref, self.command, self.path[:200], e,
                          exc_info=e.__cause__ is not None)
            else:
                log.error("[ref %s] %s %s failed", ref, self.command, self.path[:200], exc_info=e)
            self._json(500, {"error": {"code": getattr(e, "code", GlinkerError.code),
                                       "message": f"an internal error occurred (reference {ref}); the server's log "
                                                  "has the details",
                                       "fix": f"try again later; if it persists, give the reference {ref} to the "
                                              "server's operator"}})

        def _client_left(self) -> bool:
            """Whether the client closed its connection (end of stream; bytes of a next request do not count)."""
            try:
                readable, _, _ = select.select([self.connection], [], [], 0)
                return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
            except (OSError, ValueError):  # reset, or closed
                return True

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self._answer_started = True
            self.send_response(status)
            self.send_header("Content-Type", f"{ctype}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
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
            try:
                body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate of the request echoed (a field's name): escaped instead
                body = json.dumps(obj).encode("ascii")
            self._send(status, body)

        def _error(self, status: int, e: GlinkerError) -> None:
            self._json(status, {"error": {"code": e.code, "message": e.message, "where": e.where, "fix": e.fix}})

        def _link(self, raw_docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            docs = [Document.model_validate(d) for d in raw_docs]
            self._docs = len(docs)
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
                if batcher.dead is not None:
                    self._json(503, {"status": "failed", **info, "error": f"the batch thread stopped: "
                                     f"{type(batcher.dead).__name__}: {batcher.dead}", "fix": "restart the server"})
                    return
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
                self._internal(e)
                return
            page = render_html(recs, title=f"glinker: {info.get('pipeline', '')}")
            page = page.replace("<body>", "<body>" + _FORM.format(text=html.escape(text)), 1)
            self._send(200, page.encode("utf-8"), "text/html")

        def _post(self) -> None:
            url = urlparse(self.path)
            if url.path != "/link" or url.query:
                self.close_connection = True  # its body is not read: the connection cannot carry another request
                if url.path == "/link":  # ?threshold=0.1 was ignored silently
                    self._json(400, {"error": {"message": f"query parameters are not read ({url.query[:100]!r})",
                                               "where": "query", "fix": "POST /link without them: settings such as "
                                               "thresholds belong to the pipeline YAML"}})
                elif url.path in ("/health", "/"):
                    self._json(405, {"error": {"message": f"{url.path} takes GET requests",
                                               "fix": f"GET {url.path}, or POST the documents to /link"}})
                else:
                    self._json(404, {"error": {"message": f"no such endpoint: {url.path[:200]}",
                                               "fix": "POST /link"}})
                with batcher.reading(self.connection):  # a stopping server does not wait for it
                    self._close_reading(self._content_length() or 0)  # its size checked by _admit
                return
            size = self._content_length() or 0  # checked by _admit
            try:
                with batcher.reading(self.connection):
                    body = self.rfile.read(size)
            except TimeoutError:  # the request's deadline passed (or a read's timeout)
                self._refuse(408, f"the body did not arrive within {request_timeout:g} s",
                             "send the request faster, or start the server with a larger --request-timeout")
                return
            except OSError:  # the connection was reset
                body = b""
            if len(body) < size:  # the client stopped sending (or a stopping server stopped reading)
                raise _ClientLeft
            try:
                with parsing:
                    raw_docs = parse_request(body, max_docs, max_meta_items)
                del body  # the documents hold what the request needs
                chars = sum(len(d["text"]) for d in raw_docs)
                if chars > max_chars:
                    self._json(413, {"error": {"message": f"{chars:,} characters of text; this server links at "
                                               f"most {max_chars:,} per request", "where": "body",
                                               "fix": "send fewer or shorter documents per request (glinker link "
                                                      "for big inputs), or start the server with a larger "
                                                      "--max-chars"}})
                    return
                recs = self._link(raw_docs)
            except RequestTooLarge as e:
                self._error(413, e)
                return
            except DataError as e:
                self._error(400, e)
                return
            except GlinkerError as e:
                self._internal(e)
                return
            self._json(200, {"documents": recs})

    return Handler


def _has_input(conn: socket.socket) -> bool:
    """Whether bytes (or the end of the stream) wait on ``conn``, without waiting (``poll``: no limit on the
    descriptor's number, as ``select`` has)."""
    if hasattr(select, "poll"):
        p = select.poll()
        p.register(conn, select.POLLIN)
        return bool(p.poll(0))
    readable, _, _ = select.select([conn], [], [], 0)
    return bool(readable)


def _family(host: str) -> int:
    """The socket family to listen on ``host`` with: IPv6 for an IPv6 address or a name that resolves only to IPv6
    ones, else IPv4 (``::`` listens on IPv4 too, where the system maps it: Linux by default)."""
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        pass
    families = {f for f, _ in _name_addresses(host)}
    return socket.AF_INET6 if families == {socket.AF_INET6} else socket.AF_INET


def host_port(host: str, port: Any) -> str:
    """``host:port`` as a URL writes it (``[::1]:8080``)."""
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class _Listener(ThreadingHTTPServer):
    """The listening socket, serving at most ``max_connections`` connections at once (one thread each); with every
    slot taken, a connection idle between requests is closed to make room for a new one."""

    # the kernel's queue of connections not yet accepted: Python's default of 5 reset clients when 30 connected
    # at once; a team's burst of requests waits in the queue instead
    request_queue_size = 1024
    SLOT_WAIT = 0.25  # seconds the accepting loop waits for a free slot before it looks at a stop again
    # a new connection is not closed for another before it has sent nothing for this long (a kept-alive one between
    # requests may be closed at once): closing the newest ones made a burst of clients lose 18 of 20 requests
    FRESH_GRACE = 1.0

    def __init__(self, *args: Any, max_connections: int = MAX_CONNECTIONS, family: int = socket.AF_INET,
                 **kw: Any) -> None:
        self.address_family = family  # (before the socket is made: AF_INET6 for an IPv6 --host)
        self.slots = threading.BoundedSemaphore(max_connections)
        self._idle_lock = threading.Lock()
        # waiting for a request's first byte, the longest waiting first: -> (since when, a new connection)
        self._idle: dict[socket.socket, tuple[float, bool]] = {}
        self._closing: set[socket.socket] = set()  # closed for a new connection, their slots not yet free
        super().__init__(*args, **kw)

    def idle_until(self, conn: socket.socket, wait: Callable[[], bytes], fresh: bool = False) -> bytes:
        """What ``wait`` (the wait for a request's first byte on ``conn``) returns, ``conn`` marked idle meanwhile:
        it may be closed to free its slot (see :meth:`close_an_idle_one`). b"" when it was: a request that arrived
        just as it was closed is dropped unread (its client sees the connection closed, as for any idle one closed),
        never linked without an answer. ``fresh``: a new connection, whose first request may still be on its way.
        """
        with self._idle_lock:
            self._idle[conn] = (time.monotonic(), fresh)
        try:
            got = wait()
        finally:
            with self._idle_lock:
                self._idle.pop(conn, None)
                closed = conn in self._closing
        return b"" if closed else got

    def close_an_idle_one(self) -> bool:
        """With every slot taken and a new connection waiting: closes the connection that has waited longest for a
        request (one that sent nothing yet, or a kept-alive one between requests), so that idle connections, a
        client's pool or silent sockets, cannot keep new clients out. Its thread sees the end of the stream and
        frees the slot. HTTP lets a server close an idle connection at any time (clients open a new one); one
        whose request has begun to arrive is left alone. False when none is idle, or one closed is still freeing
        its slot."""
        with self._idle_lock:
            if self._closing:
                return False
            now = time.monotonic()
            for conn, (since, fresh) in list(self._idle.items()):
                if fresh and now - since < self.FRESH_GRACE:
                    continue  # just accepted: its request is likely on its way (a burst of new clients)
                try:
                    if _has_input(conn) and conn.recv(1, socket.MSG_PEEK):
                        continue  # its request is arriving
                except (OSError, ValueError):  # reset or closed: as good as idle
                    pass
                del self._idle[conn]
                self._closing.add(conn)
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)  # its read ends at once, with nothing read
                log.debug("every connection slot is taken: an idle connection is closed for a new one")
                return True
        return False

    def get_request(self) -> tuple[socket.socket, Any]:
        """The next connection once a slot is free: with every slot taken, an idle connection is closed to free
        one; with none idle, connections wait in the kernel's queue (not accepted, no thread started) until one
        ends."""
        if not self.slots.acquire(blocking=False):
            self.close_an_idle_one()
            if not self.slots.acquire(timeout=self.SLOT_WAIT):
                raise OSError("every connection slot is taken")  # the serving loop tries again (and sees a stop)
        try:
            return super().get_request()
        except BaseException:
            self.slots.release()
            raise

    def shutdown_request(self, request: Any) -> None:
        """Closes an accepted connection (once each, however its handling ended) and frees its slot."""
        try:
            super().shutdown_request(request)
        finally:
            with self._idle_lock:
                self._closing.discard(request)
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """An error on a connection, outside any request's answer: logged (socketserver printed it to stderr); a
        client that resets its connection is no error of the server's."""
        peer = client_address[0] if client_address else "?"
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("connection from %s reset", peer)
        else:
            log.exception("error on the connection from %s", peer)


class Server:
    """A pipeline served over HTTP on ``host:port`` (port 0: any free port, see ``.port``).

    ``max_docs``, ``max_chars``, ``max_body``, ``max_meta_items``: what one request may hold (more is a 413);
    ``max_connections``: connections served at once (idle ones included; one idle is closed for a new one when all
    are taken); ``request_timeout``: seconds a client has to send a request, from its first byte; ``idle_timeout``: seconds a
    connection may wait for a request's first byte; ``allow_hosts``: the ``Host`` names answered besides the
    loopback ones and IP addresses (see :func:`allowed_hosts`)."""

    def __init__(self, pipeline: Any, host: str = "127.0.0.1", port: int = 8080, *, max_wait: float = 0.005,
                 max_batch: int | None = None, max_body: int = MAX_BODY, max_chars: int = MAX_CHARS,
                 max_docs: int = MAX_DOCS, max_connections: int = MAX_CONNECTIONS,
                 request_timeout: float = REQUEST_TIMEOUT, idle_timeout: float = IDLE_TIMEOUT,
                 max_meta_items: int = MAX_META_ITEMS, allow_hosts: Sequence[str] = ()) -> None:
        def in_use(e: OSError) -> ConfigError:
            if isinstance(e, socket.gaierror) or e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                # the address, not the port: a name that does not resolve, an address of another machine
                return ConfigError(f"cannot listen on {host}: {e.strerror or e}", where="--host",
                                   fix="give an address of this machine: 127.0.0.1 or ::1 (this machine only), "
                                       "0.0.0.0 or :: (every interface), or a name that resolves to one of its "
                                       "addresses")
            return ConfigError(f"cannot listen on {host_port(host, port)}: {e.strerror}", where="--port",
                               fix="pick another --port (0: any free one), or stop what listens there")

        if max_connections < 1:
            raise ConfigError(f"must be at least 1 (got {max_connections})", where="--max-connections",
                              fix="e.g. --max-connections 64")
        if not request_timeout > 0:
            raise ConfigError(f"must be more than 0 seconds (got {request_timeout})", where="--request-timeout",
                              fix="e.g. --request-timeout 60")
        if not idle_timeout > 0:
            raise ConfigError(f"must be more than 0 seconds (got {idle_timeout})", where="--idle-timeout",
                              fix="e.g. --idle-timeout 5")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1], as in a URL
        hosts = allowed_hosts(host, allow_hosts)  # a bad name fails before the port is taken
        self.httpd = _Listener((host, port), BaseHTTPRequestHandler, bind_and_activate=False,
                               max_connections=max_connections, family=_family(host))
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
            self.httpd.RequestHandlerClass = make_handler(self.batcher, info, max_body, max_chars,
                                                          max_docs=max_docs, request_timeout=request_timeout,
                                                          idle_timeout=idle_timeout, max_meta_items=max_meta_items,
                                                          hosts=hosts)
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
        if hosts is None:
            log.info("answering requests for any Host name (no authentication: see the docs' Security note)")
        else:
            log.info("answering requests for the Host names %s and IP addresses", ", ".join(sorted(hosts)))

    def serve_forever(self) -> None:
        log.info("serving on http://%s", host_port(self.host, self.port))
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
