"""NER throughput and peak RSS as the label count grows: 1, 1k, 10k, 100k, 1M labels (glinker only so far).

    .venv/bin/python benchmarks/label_scaling.py --quick    # 1, 1k, 10k labels, 8 texts (< 60 s)
    .venv/bin/python benchmarks/label_scaling.py            # 1 .. 1M labels (long: builds a 1M-label index)

Checkpoint and texts come from ``benchmarks/ner_speed.py`` (edge-sized random-weight ModernBERT text encoder,
real all-MiniLM-L6-v2 label encoder, D=512, ~64-token texts). Label vectors: 1024 real label strings are
encoded with the model; larger banks repeat them with Gaussian noise (0.3 x the per-dimension std), written in
batches straight to a memory-mapped bank (``LabelBank.write_batches``) and cached outside the repository.
Encoding a million strings with MiniLM would take hours on this CPU and does not change scoring cost.
Each label count runs in its own process (peak RSS is its own), 1 torch thread, batch 8, threshold 0.5.
Banks of 250k labels or more are scored through their FAISS index (``label_top_k`` 64, the default; the index is
built once, timed separately and saved beside the vectors), smaller ones exhaustively (chunked).
The last line is ``throughput_ratio_<largest>_vs_1=<x>`` (examples/s at the largest count / at 1 label).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

from ner_speed import best_of, build_edge_checkpoint, make_labels, make_texts, minilm_dir, peak_rss_mb

BASE = 1024


def _fmt(c: int) -> str:
    return (
        f"{c // 1_000_000}M"
        if c >= 1_000_000 and c % 1_000_000 == 0
        else (f"{c // 1000}k" if c >= 1000 and c % 1000 == 0 else str(c))
    )


def ensure_bank(m, count: int, cache: Path, batch: int = 65_536):
    """The cached bank for ``count`` labels (written once); returns its folder."""
    import torch

    from glinker.model import LabelBank

    d = cache / f"scaling-bank-{count}-{m.fingerprint[:12]}"
    if (d / "label_bank.json").is_file():
        return d
    names = make_labels(max(count, BASE))[:count]
    if count <= BASE:
        m.encode_labels(names).save(d)
        return d
    base = LabelBank.load(ensure_bank(m, BASE, cache)).vectors.clone()
    std = base.std(0)

    def batches():
        for a in range(0, count, batch):
            b = min(count, a + batch)
            g = torch.Generator().manual_seed(a)
            rows = base[torch.arange(a, b) % BASE]
            yield rows + 0.3 * std * torch.randn(b - a, base.shape[1], generator=g)

    LabelBank.write_batches(
        d, names, names, batches(), base.shape[1], m.fingerprint, progress=sys.stderr.isatty()
    )
    return d


def worker(ckpt: Path, bank_dir: Path, n_texts: int, repeats: int) -> dict:
    import torch
    from transformers import AutoTokenizer

    from glinker.model import BiEncoder, LabelBank

    torch.set_num_threads(1)
    m = BiEncoder.from_pretrained(ckpt)
    texts = make_texts(AutoTokenizer.from_pretrained(str(minilm_dir())), n_texts, 64, seed=0)
    bank = LabelBank.load(bank_dir)
    t_index = 0.0
    if len(bank) >= bank.index_threshold and not bank.has_index:
        t0 = time.perf_counter()
        bank.build_index()
        t_index = time.perf_counter() - t0
        bank.save(bank_dir)
    m.predict(texts[:8], bank, batch_size=8)  # warm-up (reads a saved index)
    dt, _cpu, res = best_of(repeats, lambda: m.predict(texts, bank, batch_size=8))
    return {
        "labels": len(bank),
        "eps": n_texts / dt,
        "rss_mb": peak_rss_mb(),
        "entities": sum(map(len, res)),
        "retrieval": len(bank) >= bank.index_threshold,
        "index": bank.index_factory if bank.has_index else "",
        "index_build_s": t_index,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1, 1k, 10k labels, 8 texts (< 60 s)")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "glinker" / "bench"
    ap.add_argument("--ckpt", type=Path, default=cache / "edge-bi-modernbert-minilm-v1")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--n-texts", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.ckpt, a.worker, a.n_texts, a.repeats)))
        return
    t_start = time.perf_counter()
    import torch

    from glinker.model import BiEncoder

    if a.quick:
        counts, n_texts, repeats = [1, 1_000, 10_000], 8, 2
    else:
        counts, n_texts, repeats = [1, 1_000, 10_000, 100_000, 1_000_000], 32, 3
    ckpt = build_edge_checkpoint(a.ckpt)
    torch.set_num_threads(2)
    m = BiEncoder.from_pretrained(ckpt)
    dirs = {c: ensure_bank(m, c, cache) for c in counts}
    del m
    rows = []
    print("| labels | scoring | ex/s | peak RSS MB | entities | index build s |")
    print("|---:|---|---:|---:|---:|---:|")
    for c in counts:
        cmd = [sys.executable, __file__, "--ckpt", str(a.ckpt), "--worker", str(dirs[c])]
        cmd += ["--n-texts", str(n_texts), "--repeats", str(repeats)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if out.returncode != 0:
            print(f"| {_fmt(c)} | failed: {out.stderr.strip().splitlines()[-1:]} |")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(r)
        how = f"top-64 via {r['index']}" if r["retrieval"] else "exhaustive (chunked)"
        print(
            f"| {_fmt(c)} | {how} | {r['eps']:.1f} | {r['rss_mb']:.0f} | {r['entities']} | "
            f"{r['index_build_s']:.1f} |"
        )
    print(f"total {time.perf_counter() - t_start:.0f} s")
    if rows and rows[0]["labels"] == 1:
        print(f"throughput_ratio_{_fmt(rows[-1]['labels'])}_vs_1={rows[-1]['eps'] / rows[0]['eps']:.3f}")


if __name__ == "__main__":
    main()
