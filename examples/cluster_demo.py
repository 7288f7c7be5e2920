"""Linking on a (one-machine) cluster: two `glinker worker` processes and a `glinker link --queue` coordinator.

    make cluster-demo      (or: .venv/bin/python examples/cluster_demo.py [--queue redis://HOST:6379/0])

Needs a Redis server (default redis://127.0.0.1:6379/0). Builds the demo KB as `make demo` does, starts two
workers (on a real cluster: one per machine, same command), links ``examples/texts.jsonl`` through the queue,
links it again locally, and checks that both outputs hold the same links in the same order.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def links(path: Path) -> list[tuple]:
    return [(d["id"], [(ln["mention"]["start"], ln["mention"]["end"], ln["entity_id"]) for ln in d["links"]])
            for d in map(json.loads, path.read_text(encoding="utf-8").splitlines())]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queue", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()
    from demo import MODEL, build_kb, model_available

    if model_available(MODEL):
        kb_dir, pipe = ROOT / "kb_out" / "demo", ROOT / "pipelines" / "demo.yaml"
        build_kb(kb_dir, MODEL)
    else:
        kb_dir, pipe = ROOT / "kb_out" / "demo-aliases", HERE / "demo_kb" / "demo_no_model.yaml"
        build_kb(kb_dir, "none")
    job = "demo-" + uuid.uuid4().hex[:6]
    glinker = [sys.executable, "-m", "glinker"]
    workers = [subprocess.Popen(glinker + ["worker", "-p", str(pipe), "--kb", str(kb_dir), "--queue", args.queue,
                                           "--job", job, "--threads", "1"], stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    out = Path(tempfile.mkdtemp(prefix="glinker-cluster-demo-"))
    try:
        import redis

        r, deadline = redis.Redis.from_url(args.queue), time.time() + 600
        while r.scard(f"glinker:{job}:workers") < 2:   # each registers once its model and KB are loaded
            if time.time() > deadline or any(w.poll() is not None for w in workers):
                raise SystemExit("the workers did not start")
            time.sleep(0.5)
        print(f"2 workers serving job {job} on {args.queue}; linking {HERE / 'texts.jsonl'} through the queue")
        t0 = time.perf_counter()
        subprocess.run(glinker + ["link", "-p", str(pipe), "--kb", str(kb_dir), str(HERE / "texts.jsonl"), "-o",
                                  str(out / "queue.jsonl"), "--queue", args.queue, "--job", job, "--no-progress",
                                  "--batch-size", "1"],   # 4 texts: a batch each, so both workers get some
                       check=True)
        print(f"through the queue: {time.perf_counter() - t0:.1f} s")
    finally:
        for w in workers:
            w.terminate()   # SIGTERM: each finishes its batch in hand and says what it did
        for w in workers:
            _, err = w.communicate(timeout=120)
            print("  " + (err.strip().splitlines() or ["(no output)"])[-1])
    subprocess.run(glinker + ["link", "-p", str(pipe), "--kb", str(kb_dir), str(HERE / "texts.jsonl"), "-o",
                              str(out / "local.jsonl"), "--no-progress", "--batch-size", "1"], check=True)
    same = links(out / "queue.jsonl") == links(out / "local.jsonl")
    n = sum(len(ls) for _, ls in links(out / "queue.jsonl"))
    print(f"{n} links; the same as a local run, in the same order: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
