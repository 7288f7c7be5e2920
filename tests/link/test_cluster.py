"""`glinker link --queue` + `glinker worker` on the real local Redis server: the same output as a local run, in
input order; a dead worker's batch re-done; a worker with another pipeline refused; errors named; resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from glinker.cli.link import run_link
from glinker.errors import ConfigError, StageError

from .conftest import PIPE, TEXTS
from .test_cli_link import lines_of

URL = os.environ.get("GLINKER_TEST_REDIS", "redis://127.0.0.1:6379/0")
pytestmark = [pytest.mark.services, pytest.mark.timeout(180)]  # a queue bug must fail, not hang


@pytest.fixture
def inputs(tmp_path) -> Path:
    src = tmp_path / "in.jsonl"
    docs = [{"id": f"d{i}", "text": TEXTS[i % len(TEXTS)], "source": "t"} for i in range(11)]
    src.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return src


def start_workers(pipeline: Path, job: str, n: int = 2, **kw):
    """``n`` workers, each with its own pipeline object, serving ``job`` in threads until stopped."""
    import glinker
    from glinker.cluster import Worker

    workers = [Worker(glinker.load_pipeline(str(pipeline)), URL, job, poll=0.2, **kw) for _ in range(n)]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for t in threads:
        t.start()
    return workers, threads


def stop(workers, threads):
    for w in workers:
        w.stop()
    for t in threads:
        t.join(timeout=30)


def test_workers_write_what_a_local_run_writes(pipeline, inputs, tmp_path, redis_job):
    local = tmp_path / "local.jsonl"
    run_link(inputs, pipeline, local)
    workers, threads = start_workers(pipeline, redis_job)
    try:
        out = tmp_path / "cluster.jsonl"
        n = run_link(inputs, pipeline, out, queue=URL, job=redis_job, max_in_flight=2)
    finally:
        stop(workers, threads)
    assert n["written"] == 11
    assert lines_of(out) == lines_of(local)   # same records, same (input) order
    assert sum(w.documents for w in workers) == 11


def test_a_dead_workers_batch_is_done_again(pipeline, inputs, tmp_path, redis_job):
    import redis

    r = redis.Redis.from_url(URL)
    prefix = f"glinker:{redis_job}:"

    def dying_worker():
        """Takes one batch, beats once, and dies without answering."""
        while True:
            bid = r.blmove(prefix + "todo", prefix + "proc:dead", 0.2, "RIGHT", "LEFT")
            if bid is not None:
                r.set(prefix + "hb:dead", "1", px=500)
                r.sadd(prefix + "workers", "dead")
                return bid

    grabbed: list = []
    t = threading.Thread(target=lambda: grabbed.append(dying_worker()), daemon=True)
    t.start()
    workers, threads = [], []

    def late_start():
        t.join()  # the healthy worker starts once the dying one holds a batch
        workers[:], threads[:] = start_workers(pipeline, redis_job, n=1, heartbeat_ttl=1.0)

    starter = threading.Thread(target=late_start, daemon=True)
    starter.start()
    try:
        out = tmp_path / "out.jsonl"
        n = run_link(inputs, pipeline, out, queue=URL, job=redis_job, heartbeat_ttl=1.0)
    finally:
        starter.join(timeout=30)
        stop(workers, threads)
    assert grabbed and n["written"] == 11
    assert [d["id"] for d in lines_of(out)] == [f"d{i}" for i in range(11)]
    assert r.llen(prefix + "proc:dead") == 0


def link_past_a_refused_worker(wrong_pipe, pipeline, inputs, out, job):
    """Run ``glinker link --queue`` with a worker serving ``wrong_pipe`` first (it must be refused) and, once it
    gave up, a right one that finishes the job. Returns (counts, the wrong worker's errors, the wrong worker)."""
    from glinker.cluster import Worker

    errors: list = []
    wrong = Worker(wrong_pipe, URL, job, poll=0.2)

    def run_wrong():
        try:
            wrong.run()
        except ConfigError as e:
            errors.append(e)

    t = threading.Thread(target=run_wrong, daemon=True)
    t.start()
    time.sleep(1.0)
    good, threads = [], []

    def late_good():
        t.join(timeout=60)  # once the wrong worker gave up, a right one finishes the job
        good[:], threads[:] = start_workers(pipeline, job, n=1)

    g = threading.Thread(target=late_good, daemon=True)
    g.start()
    try:
        n = run_link(inputs, pipeline, out, queue=URL, job=job)
    finally:
        g.join(timeout=60)
        stop(good, threads)
    return n, errors, wrong


def test_a_worker_with_another_pipeline_is_refused(pipeline, inputs, tmp_path, tiny_model, tiny_kb, redis_job):
    import glinker

    other = tmp_path / "other.yaml"
    other.write_text(PIPE.format(model=tiny_model, kb=tiny_kb).replace("alias: 1.0", "alias: 2.0"))
    n, errors, wrong = link_past_a_refused_worker(glinker.load_pipeline(str(other)), pipeline, inputs,
                                                  tmp_path / "out.jsonl", redis_job)
    assert errors and "r.weights ({'biencoder'" in errors[0].message and "same pipeline file" in errors[0].fix
    assert n["written"] == 11 and wrong.documents == 0
    import redis  # the refusal is left where the coordinator's "no live worker" note reads it

    refused = redis.Redis.from_url(URL).hget(f"glinker:{redis_job}:meta", "refused").decode()
    assert refused.startswith(f"worker {wrong.name}: ") and "r.weights" in refused


def test_a_workers_error_names_the_lines_after_earlier_batches_are_written(pipeline, inputs, tmp_path, redis_job):
    workers, threads = start_workers(pipeline, redis_job, n=1)
    real = workers[0].task.pipe.run_batch

    def failing(docs):
        if any(d.id == "d5" for d in docs):
            raise StageError("model ran out of memory", where="stage 'r'", fix="lower batch_size")
        return real(docs)

    workers[0].task.pipe.run_batch = failing
    out = tmp_path / "out.jsonl"
    try:
        with pytest.raises(StageError) as ei:
            run_link(inputs, pipeline, out, queue=URL, job=redis_job, batch_size=2)
    finally:
        stop(workers, threads)
    assert f"{inputs}:5-6" in ei.value.message and "out of memory" in ei.value.message
    assert ei.value.fix == "lower batch_size"
    assert [d["id"] for d in lines_of(out)] == ["d0", "d1", "d2", "d3"]   # the batches before it


def test_resume_and_bad_line_through_the_queue(pipeline, inputs, tmp_path, redis_job):
    from glinker.errors import DataError

    out = tmp_path / "out.jsonl"
    text = inputs.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(text[:7] + ["{not json"] + text[7:]) + "\n")
    workers, threads = start_workers(pipeline, redis_job, n=2)
    try:
        with pytest.raises(DataError) as ei:
            run_link(bad, pipeline, out, queue=URL, job=redis_job)
        assert f"{bad}:8" in str(ei.value)
        assert [d["id"] for d in lines_of(out)] == [f"d{i}" for i in range(7)]
        n = run_link(inputs, pipeline, out, queue=URL, job=redis_job)
    finally:
        stop(workers, threads)
    assert n["skipped_done"] == 7 and n["written"] == 4
    assert [d["id"] for d in lines_of(out)] == [f"d{i}" for i in range(11)]


def test_cli_coordinator_and_worker_processes(pipeline, inputs, tmp_path, redis_job):
    """The real commands: `glinker worker` as its own process, `glinker link --queue` as another."""
    out = tmp_path / "out.jsonl"
    r, err = with_worker_process(["-p", str(pipeline)], redis_job, [
        "link", "-p", str(pipeline), str(inputs), "-o", str(out), "--queue", URL, "--job", redis_job, "--no-progress"])
    assert "linked 11 documents" in r.stderr
    assert [d["id"] for d in lines_of(out)] == [f"d{i}" for i in range(11)]
    assert "worker: linked 11 documents" in err


def with_worker_process(worker_args: list[str], job: str, command: list[str]):
    """Run ``glinker COMMAND`` while a ``glinker worker WORKER_ARGS`` process serves ``job``; then SIGTERM the
    worker (it finishes the batch in hand, deregisters, exits 0). Returns the command's result, the worker's
    stderr."""
    worker = subprocess.Popen([sys.executable, "-m", "glinker", "worker", *worker_args, "--queue", URL, "--job", job,
                               "--idle-exit", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        r = subprocess.run([sys.executable, "-m", "glinker", *command], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        worker.send_signal(15)
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        return r, err
    finally:
        if worker.poll() is None:
            worker.kill()


def test_bad_queue_url_and_busy_job_are_named(pipeline, inputs, tmp_path, redis_job):
    from glinker.cluster import Coordinator

    with pytest.raises(ConfigError) as ei:
        run_link(inputs, pipeline, tmp_path / "o.jsonl", queue="redis://127.0.0.1:1/0", job=redis_job)
    assert "cannot reach Redis" in ei.value.message and ei.value.where == "--queue"
    first = Coordinator(URL, redis_job, "x", lambda recs: None)
    try:
        with pytest.raises(ConfigError) as ei:
            Coordinator(URL, redis_job, "x", lambda recs: None)
        assert "is being coordinated by" in ei.value.message and "--job" in ei.value.fix
    finally:
        first.close()


def test_a_crashed_coordinators_lock_on_this_machine_is_taken_over(redis_job):
    import socket

    import redis

    from glinker.cluster import Coordinator

    r = redis.Redis.from_url(URL)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    r.set(f"glinker:{redis_job}:lock", f"{socket.gethostname()}:{int(dead.stdout)}:old", ex=300)
    c = Coordinator(URL, redis_job, "x", lambda recs: None)   # no wait for the dead run's lock to expire
    try:
        assert r.get(f"glinker:{redis_job}:lock").decode() == c.owner
    finally:
        c.close()


def test_a_coordinator_waiting_on_slow_input_keeps_its_job(redis_job, monkeypatch):
    """A coordinator reading a slow pipe did no Redis work, so its lock expired: a second coordinator took the job
    (deleting the first one's batches) and the first hung for ever. The lock is now kept from a thread of its own,
    and a coordinator that lost it says so at its next step."""
    import time

    import redis

    from glinker import cluster
    from glinker.errors import ConfigError, StageError

    monkeypatch.setattr(cluster, "MIN_LOCK_TTL", 2)
    r = redis.Redis.from_url(URL)
    c = cluster.Coordinator(URL, redis_job, "x", lambda recs: None, heartbeat_ttl=0.5)  # a lock of 2 s
    try:
        time.sleep(4)  # twice the lock's life, without a Redis call on this thread
        assert r.get(f"glinker:{redis_job}:lock").decode() == c.owner
        with pytest.raises(ConfigError, match="is being coordinated by"):
            cluster.Coordinator(URL, redis_job, "x", lambda recs: None)
        r.set(f"glinker:{redis_job}:lock", "someone-else")
        time.sleep(1.5)
        with pytest.raises(StageError, match="no longer this run's"):
            c.submit({"docs": []}, "in.jsonl:1-2")
    finally:
        c.close()


def _kb_vectors(kb_dir: Path):
    import numpy as np

    from glinker.kb import KB

    from .conftest import ENTITIES

    kb = KB.open(kb_dir)
    rid_of = kb.rids([e.id for e in ENTITIES])
    return np.asarray(kb.index().reconstruct(np.asarray([rid_of[e.id] for e in ENTITIES], dtype=np.int64)))


def test_kb_build_embedded_by_workers_equals_a_local_build(tmp_path, tiny_model, redis_job):
    import numpy as np

    from glinker.cluster import EncodeTask, RemoteEncoder, Worker
    from glinker.kb.adapters import load_adapter
    from glinker.kb.build import build_kb
    from glinker.model import BiEncoder

    from .conftest import write_entities

    src = write_entities(tmp_path / "entities.jsonl")
    enc = BiEncoder.from_pretrained(tiny_model)
    build_kb(load_adapter("jsonl", str(src)), tmp_path / "local", enc, model_name=str(tiny_model))
    workers = [Worker(EncodeTask(BiEncoder.from_pretrained(tiny_model), batch_size=4), URL, redis_job, poll=0.2)
               for _ in range(2)]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for t in threads:
        t.start()
    remote = RemoteEncoder(enc, URL, redis_job, piece=3)   # 12 entities -> 4 pieces per chunk
    try:
        build_kb(load_adapter("jsonl", str(src)), tmp_path / "remote", remote, model_name=str(tiny_model),
                 chunk_size=5)
    finally:
        remote.close()
        stop(workers, threads)
    assert sum(w.documents for w in workers) == 12
    np.testing.assert_allclose(_kb_vectors(tmp_path / "remote"), _kb_vectors(tmp_path / "local"), atol=1e-5)


def encode_job_refusals(remote, worker) -> list:
    """The ConfigErrors ``worker`` (a Worker) raises when ``remote`` (a RemoteEncoder) hands it an entity text."""
    errors: list = []

    def run():
        try:
            worker.run(idle_exit=30)
        except ConfigError as e:
            errors.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        remote._coordinator().submit({"texts": ["Paris: capital of France"]}, "entity texts 0-0")
        t.join(timeout=60)
    finally:
        remote.close()
    return errors


def test_an_encode_job_refuses_a_linking_worker(pipeline, tiny_model, redis_job):
    import glinker
    from glinker.cluster import RemoteEncoder, Worker
    from glinker.model import BiEncoder

    remote = RemoteEncoder(BiEncoder.from_pretrained(tiny_model), URL, redis_job)
    errors = encode_job_refusals(remote, Worker(glinker.load_pipeline(str(pipeline)), URL, redis_job, poll=0.2))
    assert errors and "an encode job" in errors[0].message and "serves link jobs" in errors[0].message
    assert "--model" in errors[0].fix


def test_cli_kb_build_with_an_embedding_worker(tmp_path, tiny_model, redis_job):
    from .conftest import write_entities

    src = write_entities(tmp_path / "entities.jsonl")
    r, err = with_worker_process(["--model", str(tiny_model)], redis_job, [
        "kb", "build", "--adapter", "jsonl", "--source", str(src), "--model", str(tiny_model),
        "--out", str(tmp_path / "kb"), "--queue", URL, "--job", redis_job])
    assert "12 vectors" in r.stdout + r.stderr
    assert "worker: embedded 12 entities" in err


def test_label_bank_encoded_by_a_worker_equals_a_local_one(tmp_path, tiny_model, redis_job):
    import numpy as np

    from glinker.cluster import EncodeTask, RemoteEncoder, Worker
    from glinker.model import BiEncoder
    from glinker.model.labels import LabelBank

    labels = [f"label number {i}" for i in range(40)]
    m = BiEncoder.from_pretrained(tiny_model)
    local = m.encode_labels_to(labels, tmp_path / "local", chunk_size=16)
    workers = [Worker(EncodeTask(BiEncoder.from_pretrained(tiny_model)), URL, redis_job, poll=0.2)]
    threads = [threading.Thread(target=workers[0].run, daemon=True)]
    threads[0].start()
    remote = RemoteEncoder(m, URL, redis_job, piece=7)
    try:
        m.encode_labels_to(labels, tmp_path / "remote", chunk_size=16, encoder=remote)
    finally:
        remote.close()
        stop(workers, threads)
    bank = LabelBank.load(tmp_path / "remote")
    assert bank.names == local.names and workers[0].documents == 40
    np.testing.assert_allclose(np.asarray(bank.vectors), np.asarray(local.vectors), atol=1e-5)
    from types import SimpleNamespace

    with pytest.raises(ConfigError, match="fingerprints differ"):   # an encoder of another model
        m.encode_labels_to(labels, tmp_path / "x", encoder=SimpleNamespace(fingerprint="0" * 64))


def test_a_worker_gives_back_its_batch_after_losing_redis(pipeline, inputs, tmp_path, redis_job):
    """The connection drops after BLMOVE moved a batch into the worker's list but before the reply: once Redis
    answers again the worker must give that batch back (its heartbeat kept it alive, so nobody else would)."""
    import redis

    import glinker
    from glinker.cluster import Worker

    w = Worker(glinker.load_pipeline(str(pipeline)), URL, redis_job, poll=0.2)
    real = w.r.blmove
    calls = {"n": 0}

    def flaky(*a, **kw):
        got = real(*a, **kw)
        if got is not None and calls["n"] == 0:
            calls["n"] += 1
            raise redis.ConnectionError("connection reset by peer")
        return got

    w.r.blmove = flaky
    workers, threads = [w], [threading.Thread(target=w.run, daemon=True)]
    threads[0].start()
    try:
        n = run_link(inputs, pipeline, tmp_path / "out.jsonl", queue=URL, job=redis_job)
    finally:
        stop(workers, threads)
    assert calls["n"] == 1 and n["written"] == 11
    assert [d["id"] for d in lines_of(tmp_path / "out.jsonl")] == [f"d{i}" for i in range(11)]


def test_the_coordinator_names_a_lost_redis_and_keeps_what_it_wrote(pipeline, inputs, tmp_path, redis_job,
                                                                    monkeypatch):
    import redis

    workers, threads = start_workers(pipeline, redis_job, n=1)
    real = redis.Redis.brpop
    answers = {"n": 0}

    def dying(self, *a, **kw):
        if answers["n"] >= 2:
            raise redis.ConnectionError("Connection refused")
        got = real(self, *a, **kw)
        answers["n"] += got is not None
        return got

    monkeypatch.setattr(redis.Redis, "brpop", dying)
    out = tmp_path / "out.jsonl"
    try:
        with pytest.raises(StageError) as ei:
            run_link(inputs, pipeline, out, queue=URL, job=redis_job, max_in_flight=1)
    finally:
        monkeypatch.undo()
        stop(workers, threads)
    assert "lost the Redis server" in ei.value.message and "run the same command again" in ei.value.fix
    assert [d["id"] for d in lines_of(out)] == ["d0", "d1", "d2", "d3"]   # two batches of 2 answered and kept


@pytest.mark.parametrize("job", ["", "a b", "x:y", "all*", "[ab]"])
def test_job_names_that_could_clash_are_refused(job):
    from glinker.cluster import Keys

    with pytest.raises(ConfigError, match="bad job name"):
        Keys(job)


def test_a_batch_that_kills_every_worker_stops_the_run_naming_its_lines(pipeline, inputs, tmp_path, redis_job):
    """Workers that take the batch holding d4 die on it (never answer, heartbeat lapses); after max_attempts
    deaths the coordinator stops with the batch's lines instead of handing it out forever."""
    import redis

    import glinker
    from glinker.cluster import Worker

    r = redis.Redis.from_url(URL)
    prefix = f"glinker:{redis_job}:"
    w = Worker(glinker.load_pipeline(str(pipeline)), URL, redis_job, poll=0.2, heartbeat_ttl=0.5)
    real = w._handle
    deaths = []

    def handle(bid):
        if json.loads(r.get(prefix + "b:" + bid))["docs"][0]["id"] == "d4":
            deaths.append(bid)   # die: hand the batch to a "dead" worker whose heartbeat lapses
            name = f"dead{len(deaths)}"
            r.lmove(prefix + f"proc:{w.name}", prefix + f"proc:{name}", "LEFT", "LEFT")
            r.sadd(prefix + "workers", name)
            r.set(prefix + f"hb:{name}", "1", px=300)
            return
        real(bid)

    w._handle = handle
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    out = tmp_path / "out.jsonl"
    try:
        with pytest.raises(StageError) as ei:
            run_link(inputs, pipeline, out, queue=URL, job=redis_job, heartbeat_ttl=0.5, max_attempts=2)
    finally:
        stop([w], [t])
    assert len(deaths) == 2   # handed to a worker, re-queued once, handed to a second: max_attempts reached
    assert f"{inputs}:5-6" in ei.value.message and "2 workers stopped answering" in ei.value.message
    assert [d["id"] for d in lines_of(out)] == ["d0", "d1", "d2", "d3"]


def test_a_worker_stopped_while_loading_exits_cleanly(pipeline, redis_job):
    import signal

    p = subprocess.Popen([sys.executable, "-m", "glinker", "worker", "-p", str(pipeline), "--queue", URL, "--job",
                          redis_job], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # once the worker command has its SIGTERM handler (SigCgt bit 15 in /proc), before it loads torch and the
    # pipeline; a fixed sleep raced with the interpreter's start on a loaded machine
    deadline = time.time() + 60
    while time.time() < deadline and p.poll() is None:
        caught = next((ln.split()[1] for ln in Path(f"/proc/{p.pid}/status").read_text().splitlines()
                       if ln.startswith("SigCgt:")), "0")
        if int(caught, 16) >> (signal.SIGTERM - 1) & 1:
            break
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "worker: linked 0 documents" in err and "Traceback" not in err


def test_a_batch_held_too_long_by_a_live_worker_goes_to_another(pipeline, inputs, tmp_path, redis_job):
    """A hung worker keeps heartbeating but never answers its batch: with --batch-timeout another worker gets it."""
    import glinker
    from glinker.cluster import Worker

    release = threading.Event()
    hung = Worker(glinker.load_pipeline(str(pipeline)), URL, redis_job, poll=0.2, heartbeat_ttl=1.0)
    real = hung._handle
    held: list = []

    def handle(bid):
        if not held:
            held.append(bid)
            release.wait(120)   # hangs (its heartbeat thread goes on) until the test ends
            return
        real(bid)

    hung._handle = handle
    t = threading.Thread(target=hung.run, daemon=True)
    t.start()
    time.sleep(2.0)   # the hung worker is up first and takes the first batch
    good, threads = start_workers(pipeline, redis_job, n=1, heartbeat_ttl=1.0)
    out = tmp_path / "out.jsonl"
    try:
        n = run_link(inputs, pipeline, out, queue=URL, job=redis_job, heartbeat_ttl=1.0, batch_timeout=2.0)
    finally:
        release.set()
        stop([hung] + good, [t] + threads)
    assert held and n["written"] == 11
    assert [d["id"] for d in lines_of(out)] == [f"d{i}" for i in range(11)]


def test_a_worker_with_another_kb_is_refused_and_a_missing_kb_fails_the_coordinator(pipeline, inputs, tmp_path,
                                                                                     tiny_model, redis_job):
    """The coordinator's KB and model are part of the job: a worker given another KB is refused naming both, and
    a coordinator given a KB that does not exist fails as a local run does (it was ignored)."""
    import glinker
    from glinker.kb.adapters import load_adapter
    from glinker.kb.build import build_kb
    from glinker.model import BiEncoder

    from .conftest import ENTITIES, write_entities

    small = tmp_path / "small-kb"
    src = write_entities(tmp_path / "e.jsonl", ENTITIES[:4])
    build_kb(load_adapter("jsonl", str(src)), small, BiEncoder.from_pretrained(tiny_model), model_name=str(tiny_model))
    n, errors, wrong = link_past_a_refused_worker(glinker.load_pipeline(str(pipeline), kb=str(small)), pipeline,
                                                  inputs, tmp_path / "out.jsonl", redis_job)
    assert n["written"] == 11 and wrong.documents == 0
    assert errors and f"({len(ENTITIES)} entities)" in errors[0].message and f"{small} (4 entities)" in errors[0].message
    from glinker.errors import PipelineError

    with pytest.raises(PipelineError, match="does not exist") as ei:  # as a local run says it, with the build command
        run_link(inputs, pipeline, tmp_path / "o2.jsonl", queue=URL, job=redis_job, kb=str(tmp_path / "none"))
    assert "glinker kb build" in ei.value.problems[0].fix
    assert not (tmp_path / "o2.jsonl.run.json").exists()  # no record of a run that did not happen


def test_heartbeats_outlive_redis_errors_and_a_dropped_worker_comes_back(pipeline, redis_job):
    import glinker
    import redis as redis_lib
    from glinker.cluster import Keys, Worker

    w = Worker(glinker.load_pipeline(str(pipeline)), URL, redis_job, poll=0.2, heartbeat_ttl=0.6)
    real, calls = w._ttl, []

    def flaky():
        if threading.current_thread().name.startswith("glinker-heartbeat"):
            calls.append(1)
            if len(calls) <= 2:  # Redis went away for a moment, under the heartbeat thread
                raise redis_lib.ConnectionError("gone")
        return real()

    w._ttl = flaky
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    r = redis_lib.Redis.from_url(URL)
    keys = Keys(redis_job)
    try:
        deadline = time.monotonic() + 20
        while len(calls) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(calls) >= 4  # the heartbeat thread went on after the errors
        r.srem(keys.workers, w.name)  # the coordinator dropped it while it was silent (paused)
        r.delete(keys.heartbeat(w.name))
        deadline = time.monotonic() + 5
        while not r.sismember(keys.workers, w.name) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert r.sismember(keys.workers, w.name) and r.exists(keys.heartbeat(w.name))
    finally:
        w.stop()
        t.join(timeout=10)


def test_a_batch_held_by_an_unregistered_dead_worker_is_queued_again(redis_job):
    import redis as redis_lib
    from glinker.cluster import Coordinator

    c = Coordinator(URL, redis_job, "x", lambda recs: None, heartbeat_ttl=0.3)
    r = redis_lib.Redis.from_url(URL)
    try:
        c.submit({"docs": []}, "1-1")
        bid = r.rpop(c.keys.todo)
        r.lpush(c.keys.proc("ghost"), bid)  # taken by a worker that is in no set and has no heartbeat
        time.sleep(0.2)
        c._scanned_at = 0.0
        c._requeue_dead()
        assert r.lrange(c.keys.todo, 0, -1) == [bid] and not r.exists(c.keys.proc("ghost"))
    finally:
        c.close()


def test_redis_urls_a_named_database_and_passwords_are_not_shown():
    from glinker.cluster import connect, redact

    with pytest.raises(ConfigError, match="databases are numbers"):
        connect("redis://127.0.0.1:6379/abc")
    assert redact("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("redis://host:6379/0") == "redis://host:6379/0"


def test_the_same_kb_copied_elsewhere_is_the_same_job(pipeline, tiny_kb, tmp_path):
    """Workers on other machines hold copies of the KB at other paths: the job's identity is the KB, not its path."""
    import shutil

    import glinker
    from glinker.cluster import describe_resources, job_fingerprint

    copy = tmp_path / "copied-kb"
    shutil.copytree(tiny_kb, copy)
    a = glinker.load_pipeline(str(pipeline))
    b = glinker.load_pipeline(str(pipeline), kb=str(copy))
    ra, rb = a.resource_ident(), b.resource_ident()
    assert job_fingerprint(a.fingerprint(), ra) == job_fingerprint(b.fingerprint(), rb)
    assert str(copy) in describe_resources(rb) and "entities)" in describe_resources(rb)


def test_answers_are_written_while_the_input_is_slow(pipeline, tmp_path, redis_job, monkeypatch):
    """A coordinator reading a slow pipe wrote nothing until the input ended (answers were collected only when the
    next batch was submitted); now they are written as they come, as a local run writes them."""
    import os

    from .conftest import TEXTS

    r, w = os.pipe()
    monkeypatch.setattr(sys, "stdin", os.fdopen(r, "r", encoding="utf-8"))
    out = tmp_path / "out.jsonl"
    docs = [json.dumps({"id": f"d{i}", "text": TEXTS[i % len(TEXTS)]}) + "\n" for i in range(16)]
    seen: list[int] = []

    def producer():
        with os.fdopen(w, "w", encoding="utf-8") as f:
            f.writelines(docs[:4])
            f.flush()
            deadline = time.time() + 60
            while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 4):
                time.sleep(0.2)
            seen.append(len(out.read_text().splitlines()) if out.exists() else 0)
            for d in docs[4:]:  # trickling in, faster than the coordinator's idle wait
                f.write(d)
                f.flush()
                time.sleep(0.25)
            seen.append(len(out.read_text().splitlines()))

    workers, threads = start_workers(pipeline, redis_job, n=1)
    t = threading.Thread(target=producer, daemon=True)
    t.start()
    try:
        n = run_link(Path("-"), pipeline, out, fmt="jsonl", batch_size=2, queue=URL, job=redis_job)
    finally:
        t.join(timeout=90)
        stop(workers, threads)
    assert seen[0] == 4 and seen[1] >= 10 and n["written"] == 16
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == [f"d{i}" for i in range(16)]


def test_the_progress_bar_follows_what_is_written_not_what_is_read(pipeline, inputs, tmp_path, redis_job,
                                                                   monkeypatch):
    """In queue mode the input is read batches ahead of the answers: the bar moves as answers are written."""
    import tqdm

    out = tmp_path / "cluster.jsonl"
    seen: list[tuple[int, int]] = []  # (bar position, lines in the output) after each update

    class Bar:
        def __init__(self, total=None, **_):
            self.n, self.total = 0, total

        def update(self, k):
            self.n += k
            seen.append((self.n, len(lines_of(out)) if out.exists() else 0))

        def close(self):
            pass

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    workers, threads = start_workers(pipeline, redis_job)
    try:
        run_link(inputs, pipeline, out, queue=URL, job=redis_job, max_in_flight=4, batch_size=2, progress=True)
    finally:
        stop(workers, threads)
    assert seen and seen[-1][0] == 11
    assert all(pos == written for pos, written in seen[:-1]), seen  # never ahead of the output
