"""Linking and KB embedding on many machines through Redis, when one machine is not enough.

One process, the *coordinator*, reads the input and writes the output exactly as a local ``glinker link`` does
(streamed, in input order, flushed per batch, resumable, bad lines named); it hands the batches to any number of
*workers* (``glinker worker``), each on any machine that can reach the Redis server and holds the pipeline's
model and KB::

    glinker link -p pipelines/wikidata.yaml big.jsonl -o out.jsonl --queue redis://head:6379/0 --job big
    glinker worker -p pipelines/wikidata.yaml --queue redis://head:6379/0 --job big     # on every machine

Under the key prefix ``glinker:<job>:`` the coordinator keeps ``meta`` (the pipeline's fingerprint, the run
token, state), ``todo`` (batch ids), ``b:<id>`` (a batch's documents), and reads ``done`` (ids of answered
batches), ``r:<id>`` (their records) or ``e:<id>`` (a worker's error for a batch). A worker moves a batch id
from ``todo`` into its own ``proc:<worker>`` list (``BLMOVE``) before linking it and answers in one
transaction, so a batch is never lost: a worker whose heartbeat (``hb:<worker>``, a key with a time-to-live)
expires has its batches put back in ``todo`` by the coordinator. At most ``max_in_flight`` batches are out at a
time, so Redis memory stays bounded whatever the input size. A worker refuses a job whose pipeline differs from
its own (stages, settings, model and KB fingerprints), so one output is never written by two pipelines.

A KB build embeds its entities the same way: ``glinker kb build ... --model M --queue URL`` hands chunks of
entity texts to ``glinker worker --model M --queue URL`` processes (:class:`RemoteEncoder`, :class:`EncodeTask`);
the build stays resumable chunk by chunk, and workers with another model are refused.

Redis is trusted: batches and answers are plain JSON (never pickle), but whoever can read the queue's database
reads every document, and whoever can write to it can hand the coordinator answers that it writes to the output as
they are. Give the server a password (``redis://:PASSWORD@head:6379/0``; every message, log line and error here
shows it as ``***``: :func:`said`, ``Coordinator.shown``, ``Worker.shown``), TLS (``rediss://``) off a private
network, and a database of its own to the cluster.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from typing import Any, Callable, Iterator, Optional, Sequence

from glinker.errors import ConfigError, DependencyError, GlinkerError, StageError
from glinker.io import redact

log = logging.getLogger(__name__)

DEFAULT_JOB = "default"
HEARTBEAT_TTL = 30.0
"""Seconds after a worker's last heartbeat at which its batches go back to the queue."""
RESULT_TTL = 86_400
"""Seconds a worker's answer stays in Redis unread (its coordinator reads it within a poll, or is gone)."""
BATCH_TTL = 600
"""Seconds a queued batch (and the job's lists) outlive a coordinator that died without ending the job (killed, or
cut from Redis); a live coordinator renews them."""


def said(e: BaseException, url: str) -> str:
    """``str(e)`` as a message may show it: the queue URL and its password, should the client's error quote them,
    shown as :func:`redact` shows them (the password as ``***``)."""
    from urllib.parse import unquote, urlparse

    text = str(e).replace(url, redact(url))
    try:
        pw = urlparse(url).password
    except ValueError:  # a malformed port: the URL is not read further here
        pw = None
    for secret in {pw, unquote(pw or "")}:
        if secret and len(secret) > 2:  # a 1-2 character password would mask every such letter of the message
            text = text.replace(secret, "***")
    return text


def connect(url: str) -> Any:
    """A Redis client for ``url`` (``redis://host:port/db``), checked with a PING."""
    try:
        import redis
    except ImportError:
        raise DependencyError("cluster runs need the redis client", where="--queue",
                              fix="pip install redis (the cluster extra: pip install -e '.[cluster]' in a clone)") from None
    from urllib.parse import urlparse

    shown = redact(url)
    parsed = urlparse(url)
    db = parsed.path.strip("/")
    if parsed.scheme in ("redis", "rediss") and db and not db.isdigit():
        # an '@' after the host: a '/', '?' or '#' in the password, which the path would show
        if "@" in url.partition("://")[2][len(parsed.netloc):]:
            raise ConfigError(f"cannot read the Redis URL {shown}: its password holds a '/', '?' or '#'",
                              where="--queue", fix="percent-encode them in the password: '/' as %2F, '?' as %3F, "
                                                   "'#' as %23 (urllib.parse.quote(password, safe=''))")
        raise ConfigError(f"the Redis URL {shown} names database {db!r}: databases are numbers", where="--queue",
                          fix="use redis://HOST:PORT/N, e.g. redis://127.0.0.1:6379/0")
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
        client.ping()
    except ValueError as e:
        raise ConfigError(f"not a Redis URL: {shown!r} ({said(e, url)})", where="--queue",
                          fix="use redis://HOST:PORT/DB, e.g. redis://127.0.0.1:6379/0") from None
    except redis.ResponseError as e:  # reached, but refused: a database number, a password
        fix = ("use a database number the server has (0-15 unless its `databases` setting says more)"
               if "DB index" in str(e) else "check the password (redis://:PASSWORD@HOST:PORT/DB) and the user")
        raise ConfigError(f"Redis at {shown} refused the connection: {said(e, url)}", where="--queue",
                          fix=fix) from None
    except redis.RedisError as e:
        raise ConfigError(f"cannot reach Redis at {shown}: {said(e, url)}", where="--queue",
                          fix="start redis-server there, or check host, port and firewall") from None
    return client


def check_job_name(job: str) -> None:
    """A ConfigError for a job name that cannot be a key prefix (before a worker spends time loading models)."""
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", job or ""):  # also keeps glob characters out of SCAN patterns
        raise ConfigError(f"bad job name {job!r}", where="--job", fix="use letters, digits, '-', '_' or '.'")


class Keys:
    """The Redis key names of one job."""

    def __init__(self, job: str) -> None:
        check_job_name(job)
        self.prefix = f"glinker:{job}:"
        self.meta, self.todo, self.done, self.workers, self.lock = (
            self.prefix + k for k in ("meta", "todo", "done", "workers", "lock"))

    def batch(self, bid: str) -> str:
        return f"{self.prefix}b:{bid}"

    def result(self, bid: str) -> str:
        return f"{self.prefix}r:{bid}"

    def error(self, bid: str) -> str:
        return f"{self.prefix}e:{bid}"

    def proc(self, worker: str) -> str:
        return f"{self.prefix}proc:{worker}"

    def heartbeat(self, worker: str) -> str:
        return f"{self.prefix}hb:{worker}"


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


MIN_LOCK_TTL = 30  # seconds a job's lock outlives its coordinator (refreshed every third of it while it runs)


class Coordinator:
    """Hands batches to workers and gives their records back in submission order.

    ``submit(payload, lines)`` queues a batch (waiting while ``max_in_flight`` are out) and ``drain()`` waits
    for all of them; both call ``write(answer)`` for every answered batch whose predecessors are written, so
    the output is in input order. A worker's error for a batch is raised (as a StageError naming the batch's
    input lines) once the batches before it are written.
    """

    def __init__(self, url: str, job: str, spec_fingerprint: str, write: Callable[[Any], None], *,
                 max_in_flight: int = 32, heartbeat_ttl: float = HEARTBEAT_TTL, pipeline_name: str = "",
                 poll: float = 1.0, kind: str = "link", max_attempts: int = 3,
                 batch_timeout: float | None = None, resources: dict[str, Any] | None = None,
                 identity: dict[str, Any] | None = None, worker_args: str = "") -> None:
        self.r = connect(url)
        self.url = url
        self.shown = redact(url)  # the URL in every message and log line: its password as ***
        self.keys = Keys(job)
        self.job = job
        self.write = write
        self.max_in_flight = max(1, max_in_flight)
        self.heartbeat_ttl = heartbeat_ttl
        self.poll = poll
        self.token = uuid.uuid4().hex[:12]
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{self.token}"
        self.seq = 0
        self.next_write = 1
        self.lines: dict[int, str] = {}        # seq -> "first-last" input lines, for error messages
        self.ready: dict[int, Any] = {}        # seq -> records (list) or a GlinkerError
        self.max_attempts = max(1, max_attempts)
        self.attempts: dict[int, int] = {}     # seq -> workers it was handed to, when more than one
        self.batch_timeout = batch_timeout
        # how to start a worker for this job (said when none is alive)
        self.worker_hint = (f"glinker worker -p PIPELINE --queue {self.shown} --job {job}" if kind == "link" else
                            f"glinker worker --model {pipeline_name or 'MODEL'} --queue {self.shown} --job {job}"
                            ) + (f" {worker_args}" if worker_args else "")
        self._scanned_at = 0.0
        self._batch_ttl = max(BATCH_TTL, int(heartbeat_ttl * 20))
        self.held_since: dict[str, float] = {}  # batch id -> when first seen held by a live worker
        self._last_idle_note = time.monotonic()
        self._checked_at = time.monotonic()
        self._lock_job()
        try:
            self._start(spec_fingerprint, kind, pipeline_name, resources, identity, heartbeat_ttl)
        except BaseException:
            self._lock_stop.set()
            try:  # the job is free again at once (not after the lock's life): a retry need not wait
                if _text(self.r.get(self.keys.lock) or b"") == self.owner:
                    self.r.delete(self.keys.lock)
            except Exception:
                pass
            raise

    def _start(self, spec_fingerprint: str, kind: str, pipeline_name: str, resources: dict[str, Any] | None,
               identity: dict[str, Any] | None, heartbeat_ttl: float) -> None:
        self._reset()
        self.r.hset(self.keys.meta, mapping={"spec": spec_fingerprint, "kind": kind, "token": self.token, "state": "open",
                                             "pipeline": pipeline_name, "owner": self.owner,
                                             "resources": json.dumps(resources or {}, default=str),
                                             "stages": json.dumps(shown_params(identity or {}), default=str),
                                             "heartbeat_ttl": str(heartbeat_ttl), "started": str(time.time())})
        self.r.expire(self.keys.meta, self._batch_ttl)  # renewed while this coordinator lives (_keep_batches)

    # job ownership --------------------------------------------------------------------------------------------
    def _lock_job(self) -> None:
        ttl = max(MIN_LOCK_TTL, int(self.heartbeat_ttl * 4))
        if not self.r.set(self.keys.lock, self.owner, nx=True, ex=ttl):
            other = self.r.get(self.keys.lock)
            if other is not None and _dead_here(_text(other)):
                # an earlier coordinator on this machine crashed: its lock would otherwise hold for `ttl` s
                self.r.delete(self.keys.lock)
                return self._lock_job()
            raise ConfigError(f"job {self.job!r} on {self.shown} is being coordinated by {_text(other)}",
                              where="--job", fix="give this run another --job name, or wait for that run to end "
                              f"(its lock expires {ttl} s after it stops)")
        self._lock_ttl = ttl
        self._lock_at = time.monotonic()
        self._lock_lost = False
        self._lock_stop = threading.Event()
        # kept alive from a thread of its own: the main thread may wait on slow input (a pipe) for longer than the
        # lock lives, and another coordinator must not take the job meanwhile
        threading.Thread(target=self._keep_lock, name=f"glinker-lock-{self.job}", daemon=True).start()

    def _keep_lock(self) -> None:
        r = None
        while not self._lock_stop.wait(self._lock_ttl / 3):
            try:
                r = r or connect(self.url)
                if _text(r.get(self.keys.lock) or b"") != self.owner:
                    self._lock_lost = True
                    return
                r.expire(self.keys.lock, self._lock_ttl)
                self._keep_batches(r)
            except Exception as e:  # Redis away for a moment: the main thread finds out and says so
                log.debug("could not refresh the lock of job %s: %s", self.job, said(e, self.url))

    def _keep_batches(self, r: Any) -> None:
        """Renew the time to live of the batches in flight and of the job's meta and lists (from the lock's
        thread), so that they stay while this coordinator runs, also while it waits on slow input, and go BATCH_TTL
        after it dies without ending the job (killed, or cut from Redis)."""
        pipe = r.pipeline(transaction=False)
        for seq in range(self.next_write, self.seq + 1):
            if seq not in self.ready:
                pipe.expire(self.keys.batch(f"{self.token}:{seq}"), self._batch_ttl)
        for key in (self.keys.todo, self.keys.done, self.keys.meta):
            pipe.expire(key, self._batch_ttl)
        pipe.execute()

    def _refresh_lock(self) -> None:
        if self._lock_lost:
            raise StageError(f"job {self.job!r} on {self.shown} is no longer this run's: its lock expired or "
                             f"was taken (Redis lost it, or it was deleted)", where=f"job {self.job!r}",
                             fix="run the same command again: it resumes after the documents already written")
        if time.monotonic() - self._lock_at > self._lock_ttl / 3:
            self.r.expire(self.keys.lock, self._lock_ttl)
            self._lock_at = time.monotonic()

    def _reset(self) -> None:
        """Drop what an earlier, interrupted run of this job left (its batches are re-read from the input)."""
        stale = [k for k in self.r.scan_iter(match=self.keys.prefix + "*", count=1000)
                 if _text(k) not in (self.keys.lock, self.keys.workers) and ":hb:" not in _text(k)
                 and ":proc:" not in _text(k)]
        if stale:
            self.r.delete(*stale)

    def close(self, state: str = "closed") -> None:
        """End the job: workers stop taking its batches; the queue keys are removed."""
        self._lock_stop.set()
        try:
            pipe = self.r.pipeline()
            pipe.hset(self.keys.meta, "state", state)
            pipe.delete(self.keys.todo, self.keys.done)
            pipe.execute()
            leftovers = [k for k in self.r.scan_iter(match=self.keys.prefix + "[bre]:*", count=1000)]
            if leftovers:
                self.r.delete(*leftovers)
            if _text(self.r.get(self.keys.lock) or b"") == self.owner:
                self.r.delete(self.keys.lock)
        except Exception as e:  # closing must not hide the error that made us close
            log.warning("could not clean up job %s on %s: %s", self.job, self.shown, said(e, self.url))

    # batches --------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _redis(self, doing: str) -> Any:
        import redis

        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise StageError(f"lost the Redis server at {self.shown} while {doing}: {type(e).__name__}: "
                             f"{said(e, self.url)}",
                             where=f"job {self.job!r}", fix="bring Redis back and run the same command again: it "
                             "resumes after the documents already written") from e
        except redis.RedisError as e:  # up, but refusing: full (maxmemory), a read-only replica after a failover
            raise StageError(f"the Redis server at {self.shown} refused a command while {doing}: {type(e).__name__}: "
                             f"{said(e, self.url)}",
                             where=f"job {self.job!r}", fix="OutOfMemoryError: free Redis memory or raise its "
                             "maxmemory (or lower --max-in-flight); ReadOnlyError: point --queue at the primary; then "
                             "run the same command again: it resumes after the documents already written") from e

    def submit(self, payload: dict, lines: str) -> None:
        """Queue one batch (a JSON-ready dict, e.g. ``{"docs": [...]}``); ``lines`` names its input for errors."""
        with self._redis(f"queueing {lines}"):
            self._submit(payload, lines)

    def _submit(self, payload: dict, lines: str) -> None:
        self._refresh_lock()
        while self.seq - self.next_write + 1 >= self.max_in_flight:
            self._collect()
        self.seq += 1
        bid = f"{self.token}:{self.seq}"
        self.lines[self.seq] = lines
        pipe = self.r.pipeline()
        # the batch (its documents' text) outlives a coordinator that dies uncleanly by BATCH_TTL at most: a live
        # one renews the time of those in flight (_keep_batches)
        pipe.set(self.keys.batch(bid), json.dumps(payload, ensure_ascii=False), ex=self._batch_ttl)
        pipe.lpush(self.keys.todo, bid)
        pipe.expire(self.keys.todo, self._batch_ttl)
        pipe.execute()

    def collect_ready(self, block: bool = True) -> None:
        """Collect and write what has been answered (between submits), waiting at most ``poll`` seconds for an
        answer, or (``block=False``) taking only those already there."""
        with self._redis("waiting for answers"):
            if self.next_write > self.seq:
                self._refresh_lock()
            elif block:
                self._collect()
            else:
                while self.next_write <= self.seq and self.r.llen(self.keys.done):
                    self._collect()

    def drain(self) -> None:
        """Wait until every submitted batch is answered and written."""
        with self._redis("waiting for answers"):
            while self.next_write <= self.seq:
                self._collect()

    def _collect(self) -> None:
        self._refresh_lock()
        got = self.r.brpop([self.keys.done], timeout=self.poll)
        every = min(self.heartbeat_ttl, self.batch_timeout or self.heartbeat_ttl) / 2
        if got is None or time.monotonic() - self._checked_at > every:
            self._requeue_dead()  # also while others answer: the writer may be waiting on a dead worker's batch
            self._checked_at = time.monotonic()
        if got is None:
            return
        bid = _text(got[1])
        if bid.rpartition(":")[0] != self.token:
            return  # an answer to an earlier run's batch
        pipe = self.r.pipeline()
        pipe.get(self.keys.result(bid))
        pipe.get(self.keys.error(bid))
        pipe.delete(self.keys.result(bid), self.keys.error(bid), self.keys.batch(bid))
        res, err, _ = pipe.execute()
        self.held_since.pop(bid, None)
        seq = self._pending(bid)
        if seq is None:
            return  # a second answer, from a worker presumed dead whose batch was re-done
        if err is not None:
            e = json.loads(err)
            self.ready[seq] = StageError(f"{e['message']} (input lines {self.lines.get(seq, '?')}, on worker "
                                         f"{e.get('worker', '?')}; earlier batches are written)",
                                         where=e.get("where"), fix=e.get("fix"))
        elif res is not None:
            self.ready[seq] = json.loads(res)
        else:
            return
        self._write_ready()

    def _write_ready(self) -> None:
        while self.next_write in self.ready:
            item = self.ready.pop(self.next_write)
            self.lines.pop(self.next_write, None)
            if isinstance(item, GlinkerError):
                raise item
            self.write(item)
            self.next_write += 1

    def _requeue_dead(self) -> None:
        workers = [_text(w) for w in self.r.smembers(self.keys.workers)]
        now = time.monotonic()
        if now - self._scanned_at > self.heartbeat_ttl / 3:
            # a worker dropped while it was silent (paused) may have taken batches before it came back and died:
            # its batch list is found by its key, registered or not
            self._scanned_at = now
            known = set(workers)
            plen = len(self.keys.proc(""))
            workers += [w for w in (_text(k)[plen:] for k in self.r.scan_iter(match=self.keys.proc("*"), count=1000))
                        if w not in known]
        alive = 0
        for w in workers:
            if self.r.exists(self.keys.heartbeat(w)):
                alive += 1
                if self.batch_timeout:
                    self._requeue_overdue(w, now)
                continue
            n = 0
            while (got := self.r.rpop(self.keys.proc(w))) is not None:
                n += self._retry(_text(got), w)
            self.r.srem(self.keys.workers, w)
            if n:
                log.warning("worker %s stopped answering (no heartbeat for %g s): %d batch(es) queued again",
                            w, self.heartbeat_ttl, n)
        self._write_ready()
        if not alive and time.monotonic() - self._last_idle_note > 30:
            self._last_idle_note = time.monotonic()
            refused = _text(self.r.hget(self.keys.meta, "refused") or b"")
            log.warning("job %s: %d batches waiting and no live worker; start one with `%s`%s", self.job,
                        self.seq - self.next_write + 1, self.worker_hint,
                        f" (the last one refused the job: {refused})" if refused else "")

    def _requeue_overdue(self, worker: str, now: float) -> None:
        """A live worker that has held a batch longer than ``batch_timeout`` (hung: its heartbeat thread still
        runs) loses it to the queue; if it answers after all, the first answer wins."""
        for raw in self.r.lrange(self.keys.proc(worker), 0, -1):
            bid = _text(raw)
            first = self.held_since.setdefault(bid, now)
            if now - first > self.batch_timeout and self.r.lrem(self.keys.proc(worker), 0, bid):
                self.held_since.pop(bid, None)
                if self._retry(bid, worker):
                    log.warning("worker %s held a batch for over %g s: queued again", worker, self.batch_timeout)

    def _pending(self, bid: str) -> int | None:
        """The sequence number of batch ``bid`` when it is this run's and not answered yet, else None."""
        token, _, seq_s = bid.rpartition(":")
        if token != self.token:
            return None
        seq = int(seq_s)
        return None if seq < self.next_write or seq in self.ready else seq

    def _retry(self, bid: str, worker: str) -> int:
        """Put a batch taken from ``worker`` back in the queue (1), or, past ``max_attempts``, record the error that
        stops the run once the batches before it are written (0)."""
        seq = self._pending(bid)
        if seq is None:
            return 0  # an earlier run's batch, or answered meanwhile
        self.attempts[seq] = self.attempts.get(seq, 1) + 1
        if self.attempts[seq] > self.max_attempts:
            # a batch that takes down every worker it reaches (out of memory, a crash in native code)
            self.ready[seq] = StageError(
                f"{self.max_attempts} workers stopped answering while linking input lines "
                f"{self.lines.get(seq, '?')} (the last: {worker}); earlier batches are written",
                where=f"job {self.job!r}", fix="look at the workers' logs (out of memory? a very long "
                "document?); lower the batch size (-b), or take those lines out of the input and link them apart "
                "(split or shorten a huge document)")
            self.r.delete(self.keys.batch(bid))
            return 0
        self.r.rpush(self.keys.todo, bid)  # taken next: the writer waits on it
        return 1


def _is_batch(payload: Any) -> bool:
    """Whether a queued payload is a batch: a JSON object with a list of ``docs`` (link) or ``texts`` (encode)."""
    return isinstance(payload, dict) and any(isinstance(payload.get(k), list) for k in ("docs", "texts"))


def _dead_here(owner: str) -> bool:
    """True when ``owner`` (host:pid:token) names a process of this machine that no longer runs."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    from glinker.locks import pid_alive

    return not pid_alive(int(pid))


def job_fingerprint(spec: str, resources: dict[str, Any]) -> str:
    """A link job's identity: the pipeline's stages and settings, and its KBs' and models' identities (read
    without loading them, :meth:`glinker.pipeline.Pipeline.resource_ident`)."""
    import hashlib

    blob = json.dumps({"spec": spec, "resources": _what(resources)}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _differences(theirs: dict[str, Any], mine: dict[str, Any] | None, limit: int = 4) -> str:
    """Where two pipeline identities (:meth:`Pipeline.identity`) differ, in a few words ("" when they are the same or
    unknown): stage parameters as ``stage.key (a there, b here)``, stages only on one side, output and settings."""
    if not theirs or not mine:
        return ""
    out: list[str] = []
    ts, ms = theirs.get("stages", {}), mine.get("stages", {})
    for name in [*ts, *(n for n in ms if n not in ts)]:
        a, b = ts.get(name), ms.get(name)
        if a is None or b is None:
            out.append(f"stage {name!r} ({'only here' if a is None else 'not here'})")
            continue
        for key in ("type", "inputs", "class", "distribution", "version"):  # the last three: plugin stages'
            if a.get(key) != b.get(key):
                out.append(f"{name}.{key} ({a.get(key)!r} there, {b.get(key)!r} here)")
        pa, pb = a.get("params") or {}, b.get("params") or {}
        out += [f"{name}.{k} ({_shown_value(k, pa.get(k))!r} there, {_shown_value(k, pb.get(k))!r} here)"
                for k in [*pa, *(k for k in pb if k not in pa)] if pa.get(k) != pb.get(k)]
    for key in ("output", "settings"):
        if theirs.get(key) != mine.get(key):
            out.append(f"{key} ({theirs.get(key)!r} there, {mine.get(key)!r} here)")
    return ", ".join(out[:limit]) + (f" and {len(out) - limit} more" if len(out) > limit else "")


def _shown_value(key: str, value: Any) -> Any:
    """A stage parameter's value as a message shows it: a secret-named key's, and secret-named keys at any depth,
    as ``***``; URL passwords hidden."""
    from glinker.io import redact
    from glinker.kb.adapters import _mask_nested, is_secret_name

    if is_secret_name(str(key)) and value not in (None, "", False):
        return "***"

    def urls(v: Any) -> Any:
        if isinstance(v, str):
            return redact(v) if "@" in v else v
        if isinstance(v, dict):
            return {k: urls(x) for k, x in v.items()}
        if isinstance(v, list):
            return [urls(x) for x in v]
        return v

    return urls(_mask_nested(value))


def shown_params(ident: dict[str, Any]) -> dict[str, Any]:
    """A pipeline identity (:meth:`Pipeline.identity`) with every stage parameter as :func:`_shown_value` shows it:
    what a job's metadata in Redis keeps and what workers compare for their messages (no password leaves the
    coordinator; secret-named keys and URL passwords are ``***``)."""
    out = json.loads(json.dumps(ident, default=str))
    for st in (out.get("stages") or {}).values():
        if isinstance(st.get("params"), dict):
            st["params"] = {k: _shown_value(k, v) for k, v in st["params"].items()}
    return out


def _what(resources: dict[str, Any]) -> dict[str, Any]:
    """What a job's KBs and models are, without where they lie (paths differ between machines)."""
    return {k: v for k, v in resources.items() if k != "where"}


def describe_resources(res: dict[str, Any]) -> str:
    """``res`` (:meth:`Pipeline.resource_ident`) in a few words, for errors: KB paths and sizes, model names."""
    where = res.get("where", {})
    kbs = ", ".join(dict.fromkeys(
        f"{where.get(f'kb:{k}', k)} ({v['counts'].get('entities', '?')} entities)"
        if isinstance(v, dict) and isinstance(v.get("counts"), dict) else f"{where.get(f'kb:{k}', k)}"
        for k, v in res.get("kb", {}).items()))
    models = ", ".join(dict.fromkeys(where.get(f"model:{k}", k) for k in res.get("model", {})))
    return f"KB {kbs or 'none'}; model {models or 'none'}"


class LinkTask:
    """What a worker does for a ``glinker link --queue`` job: link a batch of documents with a pipeline."""

    kind = "link"

    def __init__(self, pipeline: Any, records: Callable[[Any, Sequence[Any]], list[dict]] | None = None) -> None:
        self.pipe = pipeline
        self.name = pipeline.name
        self.resources = pipeline.resource_ident()
        self.identity = shown_params(pipeline.identity())  # as the job's metadata keeps it (secrets masked)
        self.fingerprint = job_fingerprint(pipeline.fingerprint(), self.resources)
        if records is None:
            from glinker.cli.link import json_records as records
        self.records = records

    def warm_up(self) -> str:
        """Load the model and KBs; returns the identity every worker of a job must share."""
        self.pipe.warm_up()
        return self.pipe.fingerprint(resources=True)

    def process(self, payload: dict) -> Any:
        from glinker.types import Document

        docs = [Document.model_validate(d) for d in payload["docs"]]
        return self.records(self.pipe.run_batch(docs), docs)

    def close(self) -> None:
        """Close the pipeline (its stages' ``close()``), on the thread that warmed it up and ran its batches."""
        self.pipe.close()

    def size(self, payload: dict) -> int:
        return len(payload["docs"])


def model_dtype(encoder: Any) -> str:
    """The precision an encoder runs in, by name (float32 when it does not say)."""
    return str(getattr(encoder, "dtype", "float32")).removeprefix("torch.")


def encoding_identity(encoder: Any) -> str:
    """What identifies the vectors an encoder writes: the model's fingerprint, with its precision when that is not
    float32 (``--dtype``; ``FINGERPRINT/bfloat16``). A ``glinker kb build --queue`` job's workers must share it, and
    an interrupted KB build resumes only under it, so that one KB never holds vectors of two precisions."""
    dt = model_dtype(encoder)
    return encoder.fingerprint if dt == "float32" else f"{encoder.fingerprint}/{dt}"


def _identity_dtype(identity: str) -> str:
    """The precision an :func:`encoding_identity` names."""
    return identity.partition("/")[2] or "float32"


class EncodeTask:
    """What a worker does for a ``glinker kb build --queue`` job: entity texts -> vectors with one model."""

    kind = "encode"

    def __init__(self, encoder: Any, batch_size: int = 64, name: str = "model") -> None:
        self.encoder = encoder
        self.name = name
        self.fingerprint = encoding_identity(encoder)  # the job's: the model's, and its precision unless float32
        self.batch_size = batch_size

    def warm_up(self) -> str:
        return f"{self.encoder.fingerprint}:{self.encoder.dim}"

    def process(self, payload: dict) -> Any:
        import numpy as np

        vecs = np.ascontiguousarray(self.encoder.encode_entities(payload["texts"], batch_size=self.batch_size),
                                    dtype=np.float32)
        return {"shape": list(vecs.shape), "float32": base64.b64encode(vecs.tobytes()).decode("ascii")}

    def size(self, payload: dict) -> int:
        return len(payload["texts"])


class Worker:
    """Takes batches of a job from Redis, does ``task`` on them (a :class:`LinkTask`, an :class:`EncodeTask`,
    or a pipeline, which means a LinkTask) and answers."""

    def __init__(self, task: Any, url: str, job: str = DEFAULT_JOB, *, name: str | None = None,
                 heartbeat_ttl: float | None = None, poll: float = 1.0) -> None:
        self.task = task if hasattr(task, "process") else LinkTask(task)
        self.r = connect(url)
        self.url = url
        self.shown = redact(url)  # the URL in every message and log line: its password as ***
        self.keys = Keys(job)
        self.job = job
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.heartbeat_ttl = heartbeat_ttl
        self.poll = poll
        self.batches = 0
        self.documents = 0
        self._ident: str | None = None
        self._checked_token: str | None = None
        self._stop = threading.Event()

    def _ttl(self) -> float:
        if self.heartbeat_ttl is not None:
            return self.heartbeat_ttl
        v = self.r.hget(self.keys.meta, "heartbeat_ttl")
        return float(v) if v is not None else HEARTBEAT_TTL

    def _beat(self) -> None:
        """Every third of the time-to-live: the heartbeat key, and this worker back in the job's worker set (the
        coordinator drops a worker that was silent too long: one that was only paused comes back). Redis errors
        never end the thread: it beats again once Redis answers."""
        ttl = HEARTBEAT_TTL if self.heartbeat_ttl is None else self.heartbeat_ttl
        while not self._stop.wait(max(0.2, ttl / 3)):
            try:
                ttl = self._ttl()
                pipe = self.r.pipeline(transaction=False)
                pipe.set(self.keys.heartbeat(self.name), "1", px=int(ttl * 1000))
                pipe.sadd(self.keys.workers, self.name)
                pipe.execute()
            except Exception as e:  # a lost heartbeat only means our batches may be re-done elsewhere
                log.warning("heartbeat to %s failed: %s", self.shown, said(e, self.url))

    def stop(self) -> None:
        """Finish the batch in hand, then return from ``run``."""
        self._stop.set()

    def run(self, idle_exit: float | None = None, max_batches: int | None = None,
            on_ready: Callable[[Worker], None] | None = None) -> dict[str, int]:
        """Serve until ``stop()``, ``idle_exit`` seconds without a batch, or ``max_batches`` batches;
        ``on_ready(worker)`` is called once the task is loaded and the worker is registered. The task (a pipeline)
        is warmed up, run and, when the worker stops (or its warm-up fails), closed on this thread."""
        try:
            return self._serve(idle_exit, max_batches, on_ready)
        finally:
            self._close_task()

    def _serve(self, idle_exit: float | None, max_batches: int | None,
               on_ready: Callable[[Worker], None] | None) -> dict[str, int]:
        self._ident = self.task.warm_up()
        ttl = self._ttl()
        self.r.set(self.keys.heartbeat(self.name), "1", px=int(ttl * 1000))
        self.r.sadd(self.keys.workers, self.name)
        beat = threading.Thread(target=self._beat, name=f"glinker-heartbeat-{self.name}", daemon=True)
        beat.start()
        log.info("worker %s serving %s job %s on %s (%s)", self.name, self.task.kind, self.job, self.shown,
                 self.task.fingerprint)
        if on_ready is not None:
            on_ready(self)
        idle_since = time.monotonic()
        import redis

        crashed = False
        try:
            while not self._stop.is_set():
                if max_batches is not None and self.batches >= max_batches:
                    break
                try:
                    bid = self.r.blmove(self.keys.todo, self.keys.proc(self.name), self.poll, "RIGHT", "LEFT")
                    if bid is None:
                        if idle_exit is not None and time.monotonic() - idle_since > idle_exit:
                            break
                        continue
                    self._handle(_text(bid))
                    idle_since = time.monotonic()
                except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError,
                        redis.exceptions.OutOfMemoryError) as e:  # lost, or refusing writes for now (a read-only
                    self._reconnect(e)  # replica after a failover, maxmemory); any other refusal is the worker's end
        except Exception:
            crashed = True  # the batch in hand stays with this worker's name: the coordinator counts the attempt
            raise
        finally:
            self._stop.set()
            beat.join(timeout=5)
            try:
                if not crashed:
                    self._give_back()  # a batch still in hand (stopped, interrupted) goes to another worker
                self.r.delete(self.keys.heartbeat(self.name))
                self.r.srem(self.keys.workers, self.name)
            except redis.RedisError as e:  # its heartbeat expires: the coordinator re-queues what it held
                log.warning("worker %s could not deregister from %s: %s", self.name, self.shown, said(e, self.url))
        return {"batches": self.batches, "documents": self.documents}

    def _close_task(self) -> None:
        """The stopping worker closes its task (a pipeline: every stage's ``close()``) on the thread that ran it."""
        closer = getattr(self.task, "close", None)
        if not callable(closer):
            return
        try:
            closer()
        except Exception as e:  # the worker stops anyway; the error is said
            log.exception("worker %s: closing its %s task failed: %s", self.name, self.task.kind, type(e).__name__)

    def _give_back(self) -> None:
        """Every batch this worker holds goes back to the queue, taken next."""
        while self.r.lmove(self.keys.proc(self.name), self.keys.todo, "RIGHT", "RIGHT") is not None:
            pass

    def _reconnect(self, err: Exception) -> None:
        """Wait for Redis to come back (a worker is a daemon: it outlives an outage), then give back what it held:
        its heartbeat kept it alive to the coordinator, so nobody else would re-queue that batch."""
        import redis

        delay = 1.0
        lost = isinstance(err, (redis.ConnectionError, redis.TimeoutError))
        log.warning("worker %s %s at %s (%s); retrying", self.name,
                    "lost Redis" if lost else "had a command refused by Redis (a read-only replica after a failover? "
                    "maxmemory reached?)", self.shown, said(err, self.url))
        while not self._stop.wait(delay):
            try:  # a write, not a ping: a read-only replica or a full Redis answers pings
                self.r.set(self.keys.heartbeat(self.name), "1", px=int(self._ttl() * 1000))
                self._give_back()
                self.r.sadd(self.keys.workers, self.name)
            except redis.RedisError:
                delay = min(30.0, delay * 2)
                continue
            log.warning("worker %s reconnected to %s", self.name, self.shown)
            return

    def _check_job(self, token: str) -> bool:
        """False for a batch of a run that is over (skip it); a ConfigError when the job is not ours to serve."""
        if token == self._checked_token:
            return True
        meta = {_text(k): _text(v) for k, v in self.r.hgetall(self.keys.meta).items()}
        if meta.get("token") != token or meta.get("state") != "open":
            return False
        kind = self.task.kind
        if meta.get("kind", "link") != kind or meta.get("spec") != self.task.fingerprint:
            theirs = json.loads(meta.get("resources") or "{}")
            mine = getattr(self.task, "resources", None)
            if kind == "link" and mine is not None and theirs and _what(theirs) != _what(mine):
                raise ConfigError(f"job {self.job!r} links with {describe_resources(theirs)}; this worker has "
                                  f"{describe_resources(mine)}", where=f"worker {self.name}",
                                  fix="start the worker with the same KB and model as the coordinator (its --kb and "
                                      "--model overrides too; copy the KB directory, do not rebuild it per machine)")
            diff = _differences(json.loads(meta.get("stages") or "{}"), getattr(self.task, "identity", None))
            if kind == "link" and diff:
                raise ConfigError(f"job {self.job!r} links with pipeline {meta.get('pipeline', '?')!r}, which differs "
                                  f"from this worker's in {diff}", where=f"worker {self.name}",
                                  fix="start the worker with the same pipeline file (and --model/--kb/--dtype "
                                      "overrides) as `glinker link --queue`")
            spec, mine_spec = meta.get("spec") or "", self.task.fingerprint
            if kind == "encode" and meta.get("kind") == "encode" and \
                    spec.partition("/")[0] == mine_spec.partition("/")[0]:
                theirs_dt, mine_dt = _identity_dtype(spec), _identity_dtype(mine_spec)
                raise ConfigError(f"job {self.job!r} embeds with {meta.get('pipeline', '?')!r} in {theirs_dt}; this "
                                  f"worker's model runs in {mine_dt}", where=f"worker {self.name}",
                                  fix=f"start the worker with --dtype {theirs_dt} (one KB holds vectors of one "
                                      "precision)")
            what = {"link": "pipeline", "encode": "model"}
            fix = ("start the worker with the same pipeline file and --model/--kb/--dtype overrides as `glinker link "
                   "--queue`" if kind == "link" else "start the worker with the --model (and --dtype) the KB build "
                   "was given")
            article = "an" if meta.get("kind", "link")[0] in "aeiou" else "a"
            raise ConfigError(f"job {self.job!r} is {article} {meta.get('kind', 'link')} job with "
                              f"{what.get(meta.get('kind', 'link'), '?')} {meta.get('pipeline', '?')!r} (fingerprint "
                              f"{meta.get('spec')}), this worker serves {kind} jobs with {what[kind]} "
                              f"{self.task.name!r} (fingerprint {self.task.fingerprint})",
                              where=f"worker {self.name}", fix=fix)
        self.r.hsetnx(self.keys.meta, "identity", self._ident)
        first = _text(self.r.hget(self.keys.meta, "identity"))
        if first != self._ident:
            raise ConfigError(f"job {self.job!r} is being served by workers whose model or KB differ from this "
                              f"one's (resources fingerprint {first} there, {self._ident} here)",
                              where=f"worker {self.name}", fix="give every worker the same model and KB "
                              "(copy the KB directory; do not rebuild it per machine)")
        self._checked_token = token
        return True

    def _handle(self, bid: str) -> None:
        token = bid.rpartition(":")[0]
        try:
            current = self._check_job(token)
        except ConfigError as e:
            self.r.lmove(self.keys.proc(self.name), self.keys.todo, "LEFT", "RIGHT")  # not ours to answer
            self.r.hset(self.keys.meta, "refused", f"worker {self.name}: {e.message}")  # for the coordinator to say
            raise
        raw = self.r.get(self.keys.batch(bid)) if current else None
        if raw is None:  # the coordinator ended or restarted the job
            self.r.lrem(self.keys.proc(self.name), 0, bid)
            return
        answer: tuple[str, str]
        payload: Any = None
        try:
            payload = json.loads(raw)
            if not _is_batch(payload):
                raise ValueError(f"a batch is a JSON object with a list of docs or texts, not {str(raw)[:60]!r}")
            answer = (self.keys.result(bid), json.dumps(self.task.process(payload), ensure_ascii=False))
        except GlinkerError as e:
            log.error("batch %s failed on worker %s: %s", bid, self.name, e)
            answer = (self.keys.error(bid), json.dumps({"message": e.message, "where": e.where, "fix": e.fix,
                                                        "worker": self.name}))
        except Exception as e:  # a batch no worker can do (not JSON, no documents) or a bug: said, not a crash of
            # every worker it reaches in turn
            if isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower()):
                # (torch's CUDA OutOfMemoryError too) this worker dies: its batch stays in its name, another (bigger?)
                raise  # worker may do it, and the coordinator counts the attempt (--max-attempts)
            log.exception("batch %s failed on worker %s", bid, self.name)
            malformed = not _is_batch(payload)
            answer = (self.keys.error(bid), json.dumps({
                "message": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}",
                "where": f"worker {self.name}",
                "fix": ("the batch on the queue is not one glinker link writes (another program, or an older "
                        "glinker?): give every producer of this job the same glinker" if malformed else
                        "an unexpected error: the worker's log has its traceback; please report it"),
                "worker": self.name}))
        pipe = self.r.pipeline(transaction=True)
        pipe.set(*answer, ex=RESULT_TTL)  # a run that is gone never reads it: it does not stay forever
        pipe.lpush(self.keys.done, bid)
        pipe.expire(self.keys.done, BATCH_TTL)  # its coordinator renews it while it runs
        pipe.lrem(self.keys.proc(self.name), 0, bid)
        pipe.execute()
        self.batches += 1
        try:
            self.documents += self.task.size(payload)
        except (KeyError, TypeError, AttributeError):  # a malformed batch has no documents to count
            pass


class RemoteEncoder:
    """An entity encoder whose work is done by ``glinker worker --model M`` processes: ``glinker kb build
    --queue`` passes it to the KB build in place of the model, which it stands for (same fingerprint and
    dimension: it is given the loaded model, and workers with another model are refused)."""

    def __init__(self, encoder: Any, url: str, job: str = DEFAULT_JOB, *, name: str = "model", piece: int = 1024,
                 max_in_flight: int = 16, heartbeat_ttl: float | None = None) -> None:
        self.fingerprint = encoder.fingerprint  # the model's, which the KB records
        self.spec = encoding_identity(encoder)  # the job's: with the precision
        self.dtype = model_dtype(encoder)
        self.dim = encoder.dim
        self.name = name
        self.url, self.job, self.piece = url, job, max(1, piece)
        self.max_in_flight = max_in_flight
        self.heartbeat_ttl = heartbeat_ttl
        self._coord: Coordinator | None = None
        self._out: list[Any] = []

    def _coordinator(self) -> Coordinator:
        if self._coord is None:
            self._coord = Coordinator(self.url, self.job, self.spec, self._out.append, kind="encode",
                                      max_in_flight=self.max_in_flight, pipeline_name=self.name,
                                      worker_args="" if self.dtype == "float32" else f"--dtype {self.dtype}",
                                      **({"heartbeat_ttl": self.heartbeat_ttl} if self.heartbeat_ttl else {}))
        return self._coord

    def encode_entities(self, texts: Sequence[str], batch_size: int = 64) -> Any:
        """Vectors of ``texts`` in order, computed by the job's workers ``piece`` texts at a time."""
        import numpy as np

        c = self._coordinator()
        self._out.clear()
        for i in range(0, len(texts), self.piece):
            c.submit({"texts": list(texts[i:i + self.piece])}, f"entity texts {i}-{min(len(texts), i + self.piece) - 1}")
        c.drain()
        parts = [np.frombuffer(base64.b64decode(a["float32"]), dtype=np.float32).reshape(a["shape"]) for a in self._out]
        self._out.clear()
        if not parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(parts)

    def close(self) -> None:
        """End the job on Redis (workers stop taking its batches)."""
        if self._coord is not None:
            self._coord.close()
            self._coord = None


@contextlib.contextmanager
def queued_encoder(encoder: Any, url: str | None, job: str | None, name: str) -> Iterator[RemoteEncoder | None]:
    """A :class:`RemoteEncoder` standing for ``encoder`` on the queue at ``url`` (its job ended after the block),
    or None when no queue is given (encode here)."""
    if not url:
        yield None
        return
    remote = RemoteEncoder(encoder, url, job or DEFAULT_JOB, name=name)
    try:
        yield remote
    finally:
        remote.close()


def serve(task: Any, url: str, job: str = DEFAULT_JOB, *, idle_exit: Optional[float] = None,
          heartbeat_ttl: float | None = None, on_ready: Callable[[Worker], None] | None = None) -> dict[str, int]:
    """Run one worker (a pipeline, a LinkTask or an EncodeTask) in this process until interrupted (or idle for
    ``idle_exit`` seconds)."""
    w = Worker(task, url, job, heartbeat_ttl=heartbeat_ttl)
    if threading.current_thread() is threading.main_thread():
        import signal

        # a scheduler's SIGTERM (Kubernetes, SLURM) finishes the batch in hand, then stops
        signal.signal(signal.SIGTERM, lambda *_: w.stop())
    try:
        return w.run(idle_exit=idle_exit, on_ready=on_ready)
    except KeyboardInterrupt:
        log.info("worker %s interrupted; its batch in hand went back to the queue", w.name)
        return {"batches": w.batches, "documents": w.documents}
