"""Linking through the Redis queue (`glinker link --queue` + `glinker worker`) beside a local run, same texts.

    .venv/bin/python benchmarks/cluster_link.py --kb kb_out/aida-final [--limit 80] [--setups local:2,1x2,2x1]
    .venv/bin/python benchmarks/cluster_link.py --kb-source runs/training-entities.jsonl --kb-entities 8000 \
        --setups local:2,1x2,2x1          # the KB build's embedding through the queue instead

A setup is ``local:T`` (one process, T torch threads, the pipeline already warm) or ``WxT`` (W `glinker worker`
processes with T threads each, started and warm before the clock starts; the coordinator runs in this process).
Texts: the first ``--limit`` documents of AIDA testb (``$GLINKER_DATA/el/aida/aida_testb.jsonl``). Every setup's
links (spans and entities) are compared with the first setup's, document by document. On one machine the workers share its cores, so
what this measures is the queue's cost and that the work spreads; machines added to a cluster add their cores.
The last line is ``queue_overhead=<1 - (1 worker x T threads) / (local, T threads)>@Tthread,... best_queue_docs_per_s=<y>
local_docs_per_s=<x>``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def data_dir() -> Path:
    return Path(os.environ.get("GLINKER_DATA") or ROOT.parent / "shared" / "data")


def local_run(pipeline: str, kb: str, src: Path, out: Path, threads: int) -> float:
    import torch

    import glinker
    from glinker.cli.link import output_records
    from glinker.io import write_jsonl
    from glinker.types import Document

    torch.set_num_threads(threads)
    pipe = glinker.load_pipeline(pipeline, kb=kb)
    docs = [Document.model_validate({"id": d["id"], "text": d["text"]})
            for d in map(json.loads, src.read_text(encoding="utf-8").splitlines())]
    with pipe.gc_frozen():
        pipe.run_batch(docs[:2])  # warm-up
        t0 = time.perf_counter()
        bs = pipe.spec.header.settings.batch_size
        for i in range(0, len(docs), bs):
            write_jsonl(out, output_records(pipe.run_batch(docs[i:i + bs]), docs[i:i + bs]), append=True)
        return time.perf_counter() - t0


@contextlib.contextmanager
def started_workers(worker_args: list[str], n: int, threads: int, url: str, job: str) -> Iterator[None]:
    """``n`` `glinker worker WORKER_ARGS` processes of ``threads`` threads serving ``job``, each registered (warm)
    before the block runs; terminated after it."""
    import redis

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    procs = [subprocess.Popen([sys.executable, "-m", "glinker", "worker", *worker_args, "--queue", url, "--job", job,
                               "--threads", str(threads)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(n)]
    try:
        r, deadline = redis.Redis.from_url(url), time.time() + 600
        while r.scard(f"glinker:{job}:workers") < n:   # each registers once its model (and KB) are loaded
            if time.time() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit("workers did not start: " + "".join(p.stderr.read() for p in procs if p.poll() is not None))
            time.sleep(0.5)
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()


def queue_run(pipeline: str, kb: str, src: Path, out: Path, workers: int, threads: int, url: str) -> float:
    from glinker.cli.link import run_link

    job = "bench-" + uuid.uuid4().hex[:8]
    with started_workers(["-p", pipeline, "--kb", kb], workers, threads, url, job):
        t0 = time.perf_counter()
        run_link(src, Path(pipeline), out, kb=kb, queue=url, job=job)
        return time.perf_counter() - t0


def kb_build_run(source: Path, model: str, out: Path, workers: int, threads: int, url: str) -> float:
    """Seconds of `glinker kb build` of ``source``: here with ``threads`` threads (workers=0), or embedding on
    ``workers`` `glinker worker --model` processes of ``threads`` threads each (started and warm first)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "glinker", "kb", "build", "--adapter", "jsonl", "--source", str(source), "--model",
           model, "--out", str(out), "--no-resume"]
    job = "bench-kb-" + uuid.uuid4().hex[:8]
    if workers:
        cmd += ["--queue", url, "--job", job]
    with (started_workers(["--model", model], workers, threads, url, job) if workers else contextlib.nullcontext()):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True, text=True)
        return time.perf_counter() - t0


def _need_redis(args: argparse.Namespace) -> None:
    """Stop at once, saying so, when a queue setup is asked for and Redis does not answer (it failed after the local
    runs, with a raw traceback)."""
    if all(s.startswith("local:") for s in args.setups.split(",")):
        return
    import redis

    try:
        redis.Redis.from_url(args.queue, socket_connect_timeout=5).ping()
    except redis.exceptions.RedisError as e:
        raise SystemExit(f"--queue {args.queue}: Redis does not answer ({e}); start it, or run only local setups "
                         "(--setups local:2)") from None


def kb_main(args: argparse.Namespace) -> None:
    """The KB-embedding comparison (``--kb-source``)."""
    _need_redis(args)
    tmp = Path(tempfile.mkdtemp(prefix="cluster-kb-bench-"))
    try:
        _kb_main(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the entities and every setup's KB


def _kb_main(args: argparse.Namespace, tmp: Path) -> None:
    import numpy as np

    from glinker.kb import KB

    src = tmp / "entities.jsonl"
    with open(args.kb_source, encoding="utf-8") as f, open(src, "w", encoding="utf-8") as g:
        for i, line in enumerate(f):
            if i >= args.kb_entities:
                break
            g.write(line)
    n = min(args.kb_entities, sum(1 for _ in open(src, encoding="utf-8")))
    rows, vecs = [], {}
    for setup in args.setups.split(","):
        out = tmp / setup.replace(":", "_")
        if setup.startswith("local:"):
            w, t = 0, int(setup.split(":")[1])
            label, cores = f"local, {t} thread(s)", t
        else:
            w, t = (int(x) for x in setup.split("x"))
            label, cores = f"queue, {w} worker(s) x {t} thread(s)", w * t
        secs = kb_build_run(src, args.model, out, w, t, args.queue)
        kb = KB.open(out)
        ids = [json.loads(x)["id"] for x in src.read_text(encoding="utf-8").splitlines()[:200]]
        rid = kb.rids(ids)
        vecs[setup] = np.asarray(kb.index().reconstruct(np.asarray([rid[i] for i in ids], dtype=np.int64)))
        rows.append((setup, label, cores, secs))
    first = rows[0][0]
    print(f"glinker kb build of {n:,} entities of {args.kb_source} with {args.model}")
    print(f"| setup | cores | build seconds | entities/s | same vectors as {first} |")
    print("|---|---:|---:|---:|---|")
    for setup, label, cores, secs in rows:
        same = np.allclose(vecs[setup], vecs[first], atol=1e-4)
        print(f"| {label} | {cores} | {secs:.1f} | {n / secs:.0f} | {'yes' if same else 'NO'} |")
    local = [n / r[3] for r in rows if r[0].startswith("local:")]
    queued = [n / r[3] for r in rows if not r[0].startswith("local:")]
    print((f"best_queue_entities_per_s={max(queued):.1f}" if queued else "best_queue_entities_per_s=n/a")
          + (f" local_entities_per_s={max(local):.1f}" if local else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", default=str(ROOT / "pipelines" / "wikidata.yaml"))
    ap.add_argument("--kb", default=None, help="KB directory built with the pipeline's model.")
    ap.add_argument("--data", default=None, help="AIDA/ELEVANT-style JSONL with id and text (default: AIDA testb).")
    ap.add_argument("--limit", type=int, default=80)
    ap.add_argument("--setups", default="local:2,1x2,2x1")
    ap.add_argument("--queue", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--kb-source", default=None, help="Measure `glinker kb build` (the embedding) instead: entity JSONL.")
    ap.add_argument("--kb-entities", type=int, default=8000, help="With --kb-source: the first N entities.")
    ap.add_argument("--model", default="glinker-bi-minilm", help="With --kb-source: the model.")
    args = ap.parse_args()
    if args.kb_source:
        kb_main(args)
        return
    if not args.kb:
        raise SystemExit("--kb is required (or --kb-source for the KB-build comparison)")
    data = Path(args.data) if args.data else data_dir() / "el" / "aida" / "aida_testb.jsonl"
    if not data.is_file():
        raise SystemExit(f"{data} not found: pass --data or set GLINKER_DATA")
    _need_redis(args)
    tmp = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    try:
        _queue_main(args, data, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the inputs and the linked outputs of every setup


def _queue_main(args: argparse.Namespace, data: Path, tmp: Path) -> None:
    src = tmp / "in.jsonl"
    with open(data, encoding="utf-8") as f, open(src, "w", encoding="utf-8") as g:
        for i, line in enumerate(f):
            if i >= args.limit:
                break
            d = json.loads(line)
            g.write(json.dumps({"id": str(d.get("id", i)), "text": d["text"]}, ensure_ascii=False) + "\n")
    n = args.limit
    rows, outputs = [], {}
    for setup in args.setups.split(","):
        out = tmp / f"{setup.replace(':', '_')}.jsonl"
        if setup.startswith("local:"):
            t = int(setup.split(":")[1])
            # its own process, so that its threads and frozen GC do not leak into the queue runs
            code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.cluster_link import local_run; "
                    f"print(local_run({args.pipeline!r}, {args.kb!r}, __import__('pathlib').Path({str(src)!r}), "
                    f"__import__('pathlib').Path({str(out)!r}), {t}))")
            secs = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                        cwd=ROOT).stdout.strip().splitlines()[-1])
            cores, label = t, f"local, {t} thread(s)"
        else:
            w, t = (int(x) for x in setup.split("x"))
            secs = queue_run(args.pipeline, args.kb, src, out, w, t, args.queue)
            cores, label = w * t, f"queue, {w} worker(s) x {t} thread(s)"
        outputs[setup] = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
        rows.append((setup, label, cores, secs, n / secs))
    ref = outputs[rows[0][0]]
    print(f"{n} documents of {data.name}, pipeline {Path(args.pipeline).name}, KB {args.kb}")
    print(f"| setup | cores | seconds | docs/s | documents with the same links as {rows[0][0]} |")
    print("|---|---:|---:|---:|---:|")
    for setup, label, cores, secs, rate in rows:
        same = sum(links(a) == links(b) for a, b in zip(outputs[setup], ref))
        print(f"| {label} | {cores} | {secs:.1f} | {rate:.2f} | {same}/{n} |")
    local = {int(r[0].split(":")[1]): r[4] for r in rows if r[0].startswith("local:")}
    one_worker = {int(r[0].split("x")[1]): r[4] for r in rows if r[0].startswith("1x")}
    pairs = [(t, one_worker[t] / local[t]) for t in sorted(local) if t in one_worker]
    best = max((r for r in rows if not r[0].startswith("local:")), key=lambda r: r[4], default=None)
    print("queue_overhead=" + ",".join(f"{1 - x:.3f}@{t}thread" for t, x in pairs)
          + (f" best_queue_docs_per_s={best[4]:.2f} ({best[0]})" if best else "")
          + (f" local_docs_per_s={max(local.values()):.2f}" if local else ""))


def links(doc: dict) -> list[tuple]:
    """A record's links: span and entity (scores move in their last digits with the torch thread count)."""
    return [(ln["mention"]["start"], ln["mention"]["end"], ln["entity_id"]) for ln in doc.get("links", [])]


if __name__ == "__main__":
    main()
