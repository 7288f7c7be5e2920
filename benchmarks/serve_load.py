"""`glinker serve` under load: documents/s with 1..N concurrent clients (one document per request) beside the
same pipeline linking the same documents in batches in-process.

    .venv/bin/python benchmarks/serve_load.py --kb kb_out/aida-final [--limit 64] [--clients 1,4,16]

The server runs in this process on a free port (its pipeline thread, stdlib HTTP threads); clients are threads
sending ``POST /link {"text": ...}`` over real sockets. Texts: the first ``--limit`` documents of AIDA testb
(``$GLINKER_DATA/el/aida/aida_testb.jsonl``) or ``--data``. Every answer is checked against the in-process
links (same entities on the same spans). The last line is
``batched_docs_per_s=<x> serve_docs_per_s@<N>=<y> ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def key(doc: dict) -> list[tuple]:
    return [(ln["mention"]["start"], ln["mention"]["end"], ln["entity_id"]) for ln in doc["links"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", default=str(ROOT / "pipelines" / "wikidata.yaml"))
    ap.add_argument("--kb", required=True)
    ap.add_argument("--data", default=None)
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    import torch

    import glinker
    from glinker.serve import Server

    if args.threads:
        torch.set_num_threads(args.threads)
    data = Path(args.data) if args.data else Path(os.environ.get("GLINKER_DATA") or ROOT.parent / "shared" / "data") \
        / "el" / "aida" / "aida_testb.jsonl"
    if not data.is_file():
        raise SystemExit(f"{data} not found: pass --data or set GLINKER_DATA")
    texts = []
    with open(data, encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            if len(texts) >= args.limit:
                break
    pipe = glinker.load_pipeline(args.pipeline, kb=args.kb)
    pipe.warm_up()
    pipe.link(texts[:2])
    t0 = time.perf_counter()
    ref = [key(d.model_dump(mode="json")) for d in pipe.link(texts)]
    batched = len(texts) / (time.perf_counter() - t0)
    srv = Server(pipe, port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://{srv.host}:{srv.port}/link"

    def post(i: int) -> tuple[int, list[tuple]]:
        req = urllib.request.Request(url, data=json.dumps({"text": texts[i]}).encode())
        with urllib.request.urlopen(req, timeout=600) as r:
            return i, key(json.loads(r.read())["documents"][0])

    rows = [("in-process, batches of %d" % pipe.spec.header.settings.batch_size, batched, "-", "-")]
    rates = {}
    try:
        for c in (int(x) for x in args.clients.split(",")):
            b0, d0 = srv.batcher.batches, srv.batcher.documents
            t0 = time.perf_counter()
            with ThreadPoolExecutor(c) as ex:
                got = dict(ex.map(post, range(len(texts))))
            rate = len(texts) / (time.perf_counter() - t0)
            same = sum(got[i] == ref[i] for i in range(len(texts)))
            nb = srv.batcher.batches - b0
            rates[c] = rate
            rows.append((f"serve, {c} concurrent client(s)", rate, f"{(srv.batcher.documents - d0) / max(1, nb):.1f}",
                         f"{same}/{len(texts)}"))
    finally:
        srv.shutdown()
    print(f"{len(texts)} documents of {data.name}, pipeline {Path(args.pipeline).name}, KB {args.kb}, "
          f"torch threads {torch.get_num_threads()}")
    print("| setup | docs/s | documents per batch | same links as in-process |")
    print("|---|---:|---:|---|")
    for name, rate, per, same in rows:
        print(f"| {name} | {rate:.2f} | {per} | {same} |")
    print(f"batched_docs_per_s={batched:.2f} " + " ".join(f"serve_docs_per_s@{c}={r:.2f}" for c, r in rates.items()))


if __name__ == "__main__":
    main()
