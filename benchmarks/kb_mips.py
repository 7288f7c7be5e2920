"""Maximum-inner-product search on real entity vectors: exact Flat vs IVF on raw inner product vs IVF on the
MIPS->L2 transform (what glinker builds), recall@10 against exact search and time per query.

    .venv/bin/python benchmarks/kb_mips.py --kb kb_out/aida-final --docs 60

``--kb``: a KB built with an exact Flat index (its vectors are read back exactly). Queries: the real mention span
vectors the dense stage of ``--pipeline`` (default pipelines/wikidata.yaml) searches with on the first ``--docs``
documents of ``--data`` (default AIDA testa), captured as they go to the KB. One thread, the same queries for
every index.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kb", required=True)
    ap.add_argument("--pipeline", default="pipelines/wikidata.yaml")
    ap.add_argument("--model", default="glinker-bi-minilm")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "el" / "aida"
                                          / "aida_testa.jsonl"))
    ap.add_argument("--docs", type=int, default=60)
    ap.add_argument("--factories", default="IVF1024,Flat;IVF1024,SQfp16;IVF1024,SQ8")
    ap.add_argument("--nprobe", default="8,16,32,64")
    a = ap.parse_args()
    import faiss

    from glinker.kb import KB
    from glinker.kb.index import VectorIndex

    faiss.omp_set_num_threads(1)
    kb = KB.open(a.kb)
    vi = kb.index()
    if vi.transformed or vi.factory.replace(" ", "").upper() != "FLAT":
        sys.exit(f"{a.kb}: needs a KB with an exact Flat index (it has {vi.factory}); build one with --factory Flat")
    base = faiss.downcast_index(vi.index.index)
    n, d = base.ntotal, base.d
    x = faiss.rev_swig_ptr(base.get_xb(), n * d).reshape(n, d).copy()
    q = capture_queries(a)
    what = f"the dense stage's mention vectors on the first {a.docs} documents of {a.data}"
    norms = np.linalg.norm(x, axis=1)
    print(f"{n:,} entity vectors of dim {d} (norms {norms.min():.2f}-{norms.max():.2f}, median {np.median(norms):.2f}); "
          f"{len(q)} queries: {what}; 1 thread\n")
    flat = faiss.IndexFlatIP(d)
    flat.add(x)
    t = time.perf_counter()
    _, exact = flat.search(q, 10)
    ms = (time.perf_counter() - t) / len(q) * 1e3
    print("| index | metric | nprobe | recall@10 | ms/query (batched) | list imbalance |")
    print("|---|---|---:|---:|---:|---:|")
    print(f"| Flat | inner product | – | 1.000 | {ms:.3f} | – |")
    sample = x[np.random.default_rng(1).choice(n, min(n, 100_000), replace=False)]
    for fac in a.factories.split(";"):
        raw = faiss.index_factory(d, fac, faiss.METRIC_INNER_PRODUCT)
        raw.train(sample)
        raw.add(x)
        ours = VectorIndex.create(fac, d)
        ours.train(sample)
        ours.add(x, np.arange(n))
        for p in (int(v) for v in a.nprobe.split(",")):
            for name, search, inv in (
                    ("inner product", lambda k, p=p: _ivf_search(raw, q, k, p), faiss.extract_index_ivf(raw).invlists),
                    ("MIPS->L2 (glinker)", lambda k, p=p: ours.search(q, k, nprobe=p)[1],
                     faiss.extract_index_ivf(ours.index).invlists)):
                t = time.perf_counter()
                ids = search(10)
                ms = (time.perf_counter() - t) / len(q) * 1e3
                rec = np.mean([len(set(r) & set(e)) / 10 for r, e in zip(ids, exact)])
                print(f"| {fac} | {name} | {p} | {rec:.3f} | {ms:.3f} | {inv.imbalance_factor():.1f} |")


def capture_queries(a: argparse.Namespace) -> np.ndarray:
    """Run the pipeline and keep every query matrix its dense stage sends to the KB."""
    import json

    import glinker
    from glinker.kb import KB

    texts = []
    with open(a.data, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            texts.append({"id": str(r.get("id", len(texts))), "text": r["text"]})
            if len(texts) >= a.docs:
                break
    got: list[np.ndarray] = []
    orig = KB.search_vectors

    def keep(self, queries, k=10, nprobe=None):  # type: ignore[no-untyped-def]
        got.append(np.asarray(queries, dtype=np.float32))
        return orig(self, queries, k, nprobe)

    KB.search_vectors = keep  # type: ignore[method-assign]
    try:
        glinker.load_pipeline(a.pipeline, model=a.model, kb=a.kb).link(texts)
    finally:
        KB.search_vectors = orig  # type: ignore[method-assign]
    if not got:
        sys.exit(f"{a.pipeline} sent no dense queries to the KB (no dense_candidates stage?)")
    return np.concatenate(got)


def _ivf_search(index, q, k, nprobe):
    import faiss

    faiss.extract_index_ivf(index).nprobe = nprobe
    return index.search(q, k)[1]


if __name__ == "__main__":
    main()
