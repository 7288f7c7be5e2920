"""The Redis queue as an ops walkthrough met it (session 36), on the real local Redis server: a batch that is not
one is answered as an error (it killed every worker in turn, and the run waited forever); a worker that crashes
leaves its batch to be counted by --max-attempts; Redis refusing writes (a read-only replica, maxmemory) is waited
out like a lost Redis, with a message that says so; batches of a coordinator that dies uncleanly expire."""

from __future__ import annotations

import json
import threading

import pytest

from glinker.cli.link import run_link
from glinker.errors import StageError

from .test_cli_link import lines_of
from .test_cluster import URL, inputs, start_workers, stop  # noqa: F401  (inputs: a fixture)

pytestmark = [pytest.mark.services, pytest.mark.timeout(180)]


def test_a_malformed_batch_is_answered_as_an_error_not_a_crash(pipeline, redis_job):
    import redis

    from glinker.cluster import Coordinator

    import glinker
    from glinker.cluster import job_fingerprint

    r = redis.Redis.from_url(URL)
    answers: list = []
    pipe = glinker.load_pipeline(str(pipeline))
    res = pipe.resource_ident()
    c = Coordinator(URL, redis_job, job_fingerprint(pipe.fingerprint(), res), answers.append, heartbeat_ttl=2,
                    resources=res, identity=pipe.identity(), pipeline_name=pipe.name)
    workers, threads = start_workers(pipeline, redis_job, n=1, heartbeat_ttl=2)
    try:
        c.seq += 1  # a batch another program put on the queue: not JSON
        bid = f"{c.token}:{c.seq}"
        c.lines[c.seq] = "in.jsonl:1-1"
        r.set(c.keys.batch(bid), "not json{")
        r.lpush(c.keys.todo, bid)
        with pytest.raises(StageError) as ei:
            c.drain()
        assert "JSONDecodeError" in ei.value.message and "in.jsonl:1-1" in ei.value.message
        assert "not one glinker link writes" in ei.value.fix
        assert threads[0].is_alive()  # the worker lives on
    finally:
        stop(workers, threads)
        c.close()


def test_a_worker_that_crashes_leaves_its_batch_to_be_counted(pipeline, inputs, tmp_path, redis_job):  # noqa: F811
    """A worker dying of an exception gave its batch back uncounted: with every worker crashing on it, the run
    never stopped. Now the batch stays with the dead worker's name, and max_attempts stops the run."""
    import glinker
    from glinker.cluster import Worker

    crashes = []

    def crashing_worker():
        w = Worker(glinker.load_pipeline(str(pipeline)), URL, redis_job, poll=0.2, heartbeat_ttl=0.5)
        real = w.task.process

        def process(payload):
            if payload["docs"][0]["id"] == "d4":
                crashes.append(w.name)
                raise MemoryError("simulated: a document too big for this worker")
            return real(payload)

        w.task.process = process
        try:
            w.run()
        except MemoryError:
            pass

    def keep_workers():
        while len(crashes) < 2 and not done.is_set():
            t = threading.Thread(target=crashing_worker, daemon=True)
            t.start()
            t.join()

    done = threading.Event()
    feeder = threading.Thread(target=keep_workers, daemon=True)
    feeder.start()
    out = tmp_path / "out.jsonl"
    try:
        with pytest.raises(StageError) as ei:
            run_link(inputs, pipeline, out, queue=URL, job=redis_job, heartbeat_ttl=0.5, max_attempts=2)
    finally:
        done.set()
        feeder.join(timeout=30)
    assert len(crashes) == 2 and "2 workers stopped answering" in ei.value.message
    assert "--skip-bad" not in ei.value.fix
    assert [d["id"] for d in lines_of(out)] == ["d0", "d1", "d2", "d3"]


def test_redis_refusing_writes_is_waited_out(pipeline, redis_job, caplog):
    """A read-only replica after a failover (or a full Redis) answers with an error, not a dropped connection: the
    worker waits for a Redis that takes writes again instead of dying."""
    import redis

    import glinker
    from glinker.cluster import Worker

    w = Worker(glinker.load_pipeline(str(pipeline)), URL, redis_job, poll=0.2, heartbeat_ttl=2)
    refusing = {"n": 0}
    real_set = w.r.set

    def blmove(*a, **k):
        if refusing["n"] == 0 and not w._stop.is_set() and "armed" not in refusing:
            refusing.update(n=3, armed=True)  # from the first take on, Redis refuses three writes
        if refusing["n"] > 0:
            refusing["n"] -= 1
            raise redis.exceptions.ReadOnlyError("You can't write against a read only replica.")
        w.stop()
        return None

    def set_(*a, **k):  # the worker's write probe fails while Redis refuses
        if refusing["n"] > 0:
            refusing["n"] -= 1
            raise redis.exceptions.ReadOnlyError("You can't write against a read only replica.")
        return real_set(*a, **k)

    w.r.blmove = blmove
    w.r.set = set_
    with caplog.at_level("WARNING", logger="glinker.cluster"):
        w.run()
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "read-only replica after a failover" in said and "reconnected" in said, said
    assert refusing["n"] == 0


def test_a_coordinator_that_dies_leaves_batches_that_expire(redis_job):
    import redis

    from glinker.cluster import BATCH_TTL, Coordinator

    r = redis.Redis.from_url(URL)
    c = Coordinator(URL, redis_job, "x", lambda recs: None, heartbeat_ttl=0.3)
    try:
        c.submit({"docs": [{"id": "a", "text": "secret text"}]}, "1-1")
        bid = f"{c.token}:1"
        assert 0 < r.ttl(c.keys.batch(bid)) <= BATCH_TTL and 0 < r.ttl(c.keys.todo) <= BATCH_TTL
        r.expire(c.keys.batch(bid), 5)
        c._keep_batches(r)  # the lock's thread renews what is in flight while the coordinator lives
        assert r.ttl(c.keys.batch(bid)) > 5 and 0 < r.ttl(c.keys.meta) <= BATCH_TTL
    finally:
        c.close()


def test_review_mends_other_refusals_end_the_worker_and_oom_of_torch_leaves_the_batch(pipeline, redis_job):
    """A refusal that waiting does not mend (an unknown command on an old Redis, NOPERM) ends the worker with its
    error instead of a retry loop; torch's out-of-memory (a RuntimeError) leaves the batch for another worker, as a
    MemoryError does; a ValueError of a well-formed batch is no 'malformed batch'."""
    import redis

    import glinker
    from glinker.cluster import Worker

    w = Worker(glinker.load_pipeline(str(pipeline)), URL, redis_job, poll=0.2, heartbeat_ttl=2)

    def blmove(*a, **k):
        raise redis.exceptions.ResponseError("unknown command 'BLMOVE'")

    w.r.blmove = blmove
    with pytest.raises(redis.exceptions.ResponseError):
        w.run()
    from glinker.cluster import Coordinator

    r = redis.Redis.from_url(URL)
    c = Coordinator(URL, redis_job, "x", lambda recs: None, heartbeat_ttl=2)
    try:
        w2 = Worker(glinker.load_pipeline(str(pipeline)), URL, redis_job, poll=0.2, heartbeat_ttl=2)
        w2._checked_token = c.token  # the job's check is not what this test is about
        w2._ident = "i"
        for exc, left in ((RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), True),
                          (ValueError("operands could not be broadcast"), False)):
            def process(payload, exc=exc):
                raise exc

            w2.task.process = process
            c.submit({"docs": [{"id": "a", "text": "x"}]}, "1-1")
            bid = _take(r, c, w2)
            if left:
                with pytest.raises(RuntimeError):
                    w2._handle(bid)
                assert r.lrange(c.keys.proc(w2.name), 0, -1) == [bid.encode()]  # stays: counted when it is dead
                r.delete(c.keys.proc(w2.name))
            else:
                w2._handle(bid)
                err = json.loads(r.get(c.keys.error(bid)))
                assert "operands" in err["message"] and "unexpected error" in err["fix"]
    finally:
        c.close()


def _take(r, c, w):
    raw = r.blmove(c.keys.todo, c.keys.proc(w.name), 1, "RIGHT", "LEFT")
    return raw.decode()


def test_a_queue_run_gives_back_the_sigterm_handler(pipeline, inputs, tmp_path, redis_job):  # noqa: F811
    """run_link with a queue answers SIGTERM as Ctrl-C while it runs; a library call leaves the process's handler
    as it found it (it stayed replaced, and a later SIGTERM raised KeyboardInterrupt anywhere)."""
    import signal

    mine = lambda *_: None  # noqa: E731
    before = signal.signal(signal.SIGTERM, mine)
    workers, threads = start_workers(pipeline, redis_job, n=1)
    try:
        run_link(inputs, pipeline, tmp_path / "o.jsonl", queue=URL, job=redis_job)
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        stop(workers, threads)
        signal.signal(signal.SIGTERM, before)
