"""KB vector-search benchmark: per-mention latency p50/p99 and recall@10 against exact search, on generated
entity vectors, with the index the KB picks automatically for that size.

    .venv/bin/python benchmarks/kb_search.py --n 1000000 --dim 384

Vectors (generated in chunks of 500k, never all in RAM): a mixture of 4,096 Gaussian clusters in ``dim`` dimensions (offsets of norm ~0.6 around unit centres,
then L2-normalised and scaled to log-normal norms like the shipped model's real entity vectors: median 3.5,
``--unit`` keeps them normalised), a stand-in for entity vectors of a 384-d MiniLM-sized label encoder; queries are
1,000 database vectors plus noise of norm ~0.3, normalised (cosine to their source ~0.95), like a mention vector
near its entity. Generated,
not real: say so wherever these figures are quoted. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


CHUNK = 500_000


def centres_for(dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((4096, dim)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


LOG_NORM = (1.265, 0.124)
"""Mean and std of log |v| of the shipped model's entity vectors (61k real entities: norms 1.4 to 6.0, median 3.56)."""


def chunk(k: int, n: int, dim: int, centres: np.ndarray, unit: bool = False) -> np.ndarray:
    """Vectors [k*CHUNK, min(n, (k+1)*CHUNK)), regenerated identically on every call (never all in RAM)."""
    rng = np.random.default_rng(1000 + k)
    m = min(CHUNK, n - k * CHUNK)
    v = centres[rng.integers(0, len(centres), m)] + 0.6 * rng.standard_normal((m, dim)).astype(np.float32) / np.sqrt(dim)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    if not unit:  # entity vectors are not normalised: inner-product search must cope with their norms
        v *= np.exp(rng.normal(LOG_NORM[0], LOG_NORM[1], (m, 1))).astype(np.float32)
    return v


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--factory", default="auto")
    ap.add_argument("--nprobe", default="8,16,32,64")
    ap.add_argument("--threads", type=int, default=1, help="faiss and torch threads for the per-mention timing")
    ap.add_argument("--unit", action="store_true", help="unit-norm vectors (before 2026-12-01 runs)")
    a = ap.parse_args()
    import faiss
    import psutil

    from glinker.kb.build import index_bytes_per_vector
    from glinker.kb.index import VectorIndex, auto_factory

    t = time.perf_counter()
    centres = centres_for(a.dim)
    nchunks = (a.n + CHUNK - 1) // CHUNK
    rng = np.random.default_rng(1)
    src = np.sort(rng.choice(a.n, a.queries, replace=False))
    q = np.empty((a.queries, a.dim), dtype=np.float32)
    # queries and their exact top-10 are cached: at 10M they cost ~20 minutes and never change
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "glinker" / "bench"
    cached = cache / f"kb-search-exact-{a.n}-{a.dim}-{a.queries}{'-unit' if a.unit else '-normed'}.npz"
    if cached.is_file():
        z = np.load(cached)
        q, exact = z["q"], z["exact"]
        gen_s = exact_s = 0.0
    else:
        # exact top-10 chunk by chunk (merging), so 10M x 384 never has to sit in RAM in float32
        best_d = np.full((a.queries, 10), -np.inf, dtype=np.float32)
        best_i = np.full((a.queries, 10), -1, dtype=np.int64)
        for k in range(nchunks):
            x = chunk(k, a.n, a.dim, centres, a.unit)
            sel = src[(src >= k * CHUNK) & (src < k * CHUNK + len(x))]
            q[np.searchsorted(src, sel)] = x[sel - k * CHUNK]
        q += 0.3 * rng.standard_normal(q.shape).astype(np.float32) / np.sqrt(a.dim)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        gen_s = time.perf_counter() - t
        t = time.perf_counter()
        for k in range(nchunks):
            x = chunk(k, a.n, a.dim, centres, a.unit)
            flat = faiss.IndexFlatIP(a.dim)
            flat.add(x)
            d, i = flat.search(q, 10)
            d_all = np.concatenate([best_d, d], axis=1)
            i_all = np.concatenate([best_i, i + k * CHUNK], axis=1)
            top = np.argsort(-d_all, axis=1, kind="stable")[:, :10]
            best_d, best_i = np.take_along_axis(d_all, top, 1), np.take_along_axis(i_all, top, 1)
        exact = best_i
        exact_s = time.perf_counter() - t
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(cached.with_name(cached.stem + ".tmp.npz"), q=q, exact=exact)
        os.replace(cached.with_name(cached.stem + ".tmp.npz"), cached)
    print(f"queries and exact top-10 ready ({gen_s + exact_s:.0f} s); training", file=sys.stderr, flush=True)

    fac = auto_factory(a.n, a.dim) if a.factory == "auto" else a.factory
    t = time.perf_counter()
    vi = VectorIndex.create(fac, a.dim)
    if vi.needs_training:
        nlist = faiss.extract_index_ivf(vi.index).nlist if fac.startswith("IVF") else 256
        want = min(a.n, 40 * nlist)
        per = max(1, want // nchunks)
        # copy each slice: a view would keep its whole 500k-row chunk alive (10M: 15 GB)
        sample = np.concatenate([chunk(k, a.n, a.dim, centres, a.unit)[:per].copy() for k in range(nchunks)])
        vi.train(sample)
        del sample
    train_s = time.perf_counter() - t
    print(f"trained {fac} ({train_s:.0f} s); adding", file=sys.stderr, flush=True)
    t = time.perf_counter()
    for k in range(nchunks):
        x = chunk(k, a.n, a.dim, centres, a.unit)
        vi.add(x, np.arange(k * CHUNK, k * CHUNK + len(x), dtype=np.int64))
    add_s = time.perf_counter() - t
    path = Path(tempfile.mkdtemp()) / "v.faiss"
    vi.save(path)
    disk = path.stat().st_size
    bound = vi.mips_norm
    del x, vi
    import gc

    gc.collect()
    rss0 = psutil.Process().memory_info().rss
    vi = VectorIndex.load(path, fac, 1, mips_norm=bound, dim=a.dim)
    ram = psutil.Process().memory_info().rss - rss0

    faiss.omp_set_num_threads(a.threads)
    import torch

    torch.set_num_threads(a.threads)  # the index's coarse step runs in torch (since session 35): same thread count
    print(f"n={a.n:,} dim={a.dim} factory={fac} ({'unit vectors' if a.unit else 'log-normal norms'}, "
          f"{'MIPS->L2 transform' if vi.transformed else 'inner product'}); generate {gen_s:.0f} s, exact top-10 for {a.queries} queries "
          f"{exact_s:.0f} s, train {train_s:.0f} s, add {add_s:.0f} s; index file {disk / a.n:.0f} B/vector "
          f"(estimate {index_bytes_per_vector(fac, a.dim)}), RAM once loaded {ram / a.n:.0f} B/vector; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, faiss and torch threads {a.threads}\n")
    print("| vectors | dim | index | nprobe | p50 ms/mention | p99 ms/mention | recall@10 vs exact |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    probes = [int(p) for p in a.nprobe.split(",")] if fac.startswith("IVF") else [1]
    for p in probes:
        lat = np.empty(a.queries)
        got = np.empty((a.queries, 10), dtype=np.int64)
        vi.search(q[:10], 10, nprobe=p)  # warm-up
        for i in range(a.queries):
            t = time.perf_counter()
            _, ids = vi.search(q[i:i + 1], 10, nprobe=p)
            lat[i] = time.perf_counter() - t
            got[i] = ids[0]
        recall = np.mean([len(set(got[i]) & set(exact[i])) / 10 for i in range(a.queries)])
        print(f"| {a.n:,} | {a.dim} | {fac} | {p} | {np.percentile(lat, 50) * 1e3:.2f} | "
              f"{np.percentile(lat, 99) * 1e3:.2f} | {recall:.3f} |")
    path.unlink()
    path.parent.rmdir()


if __name__ == "__main__":
    main()
