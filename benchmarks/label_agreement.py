"""Agreement of retrieved (FAISS top-k labels per span) vs exhaustive NER scoring with a large label bank.

    .venv/bin/python benchmarks/label_agreement.py                    # 100k labels, Flat and HNSW32 indexes
    .venv/bin/python benchmarks/label_agreement.py --labels 10000 --texts 8   # smaller, quicker
    # a saved bank (e.g. from `glinker labels build`), its model, the first N of its labels, real sentences:
    .venv/bin/python benchmarks/label_agreement.py --model glinker-bi-minilm --bank BANK_DIR --labels 100000 \
        --texts-file $GLINKER_DATA/ner/train/conll2003/dev.json --texts 64

Checkpoint, texts and label strings come from ``benchmarks/ner_speed.py`` (edge-sized random-weight
ModernBERT text encoder + the real all-MiniLM-L6-v2 label encoder, D=512). The label bank is encoded once and
cached beside the checkpoint. For each index the same texts are predicted with ``label_top_k=0`` (every label
scored) and with ``label_top_k=K`` (retrieval). A *span* is a (text, start, end) that carries an entity in
either result; it *agrees* when both results give it the same label (scores equal to 1e-5). The last line is
``agreement_<factory>=<share>`` for the last index.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

from ner_speed import build_edge_checkpoint, make_labels, make_texts, minilm_dir, peak_rss_mb


def agreement(a: list, b: list) -> tuple[float, int, int]:
    """(share of spans with identical results, agreeing spans, spans)."""
    sa = {(i, e["start"], e["end"]): e for i, r in enumerate(a) for e in r}
    sb = {(i, e["start"], e["end"]): e for i, r in enumerate(b) for e in r}
    keys = set(sa) | set(sb)
    same = sum(
        1
        for k in keys
        if k in sa
        and k in sb
        and sa[k]["label"] == sb[k]["label"]
        and abs(sa[k]["score"] - sb[k]["score"]) <= 1e-5
    )
    return (same / len(keys) if keys else 1.0), same, len(keys)


def real_texts(path: Path, n: int) -> list[str]:
    """The ``n`` longest sentences of a GLiNER JSON file (list of {sentence | tokenized_text}) or a .txt file."""
    import json

    if path.suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
        sents = [r["sentence"] if "sentence" in r else " ".join(r["tokenized_text"]) for r in rows]
    else:
        sents = [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    return sorted(sents, key=lambda t: (-len(t.split()), t))[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", type=int, default=100_000)
    ap.add_argument("--texts", type=int, default=16, help="number of ~64-token texts")
    ap.add_argument("--top-k", type=int, default=64)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--factories", default="Flat;HNSW32",
                    help="';'-separated faiss factory strings, each optionally @l2 / @ip for the index metric "
                         "(default auto: MIPS->L2 transform for graph indexes), e.g. 'HNSW32;IVF4096,Flat@l2'")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1,
                    help="time each retrieval setting this many times and report the best (a single run includes "
                         "warm-up: session 38 saw 11.9 s for a setting whose best of 3 was 4.05 s)")
    ap.add_argument("--ef-search", default="128", help="comma-separated HNSW efSearch values to try (one index)")
    ap.add_argument("--nprobe", default="", help="comma-separated IVF nprobe values to try (default: the bank's)")
    ap.add_argument("--exact-share", default="",
                    help="comma-separated shares of labels (smallest vectors) an IVF index leaves to exact scoring, "
                         "each built in turn (default: the library's, 0.05; 0: none)")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "glinker" / "bench"
    ap.add_argument("--ckpt", type=Path, default=cache / "edge-bi-modernbert-minilm-v1")
    ap.add_argument("--model", default=None, help="a model name or folder instead of the edge checkpoint")
    ap.add_argument("--bank", type=Path, default=None, help="a saved label bank (its first --labels labels are used)")
    ap.add_argument("--texts-file", type=Path, default=None,
                    help="GLiNER JSON ([{'sentence' or 'tokenized_text': ...}]) or .txt: the longest sentences are used")
    a = ap.parse_args()

    import torch
    from transformers import AutoTokenizer

    from glinker.errors import DataError
    from glinker.model import BiEncoder, LabelBank

    torch.set_num_threads(a.threads)
    m = BiEncoder.from_pretrained(a.model or build_edge_checkpoint(a.ckpt))
    texts = real_texts(a.texts_file, a.texts) if a.texts_file else make_texts(
        AutoTokenizer.from_pretrained(str(minilm_dir())), a.texts, 64, seed=1)
    print(f"texts: {len(texts)}, {sum(len(t.split()) for t in texts) / len(texts):.0f} words on average")
    bank_dir = a.bank or a.ckpt.parent / f"label-bank-{a.labels}-{m.fingerprint[:12]}"
    t0 = time.perf_counter()
    try:
        bank = LabelBank.load(bank_dir)
        if len(bank) > a.labels:
            bank = bank.subset(bank.names[: a.labels])
        print(f"label bank: {len(bank)} labels loaded from {bank_dir}")
    except DataError:
        if a.bank is not None:
            raise
        bank = m.encode_labels(make_labels(a.labels), progress=sys.stderr.isatty())
        bank.save(bank_dir)
        print(f"label bank: {len(bank)} labels encoded in {time.perf_counter() - t0:.0f} s -> {bank_dir}")

    t0 = time.perf_counter()
    exhaustive = m.predict(texts, bank, threshold=a.threshold, label_top_k=0)
    t_ex = time.perf_counter() - t0
    n_ent = sum(map(len, exhaustive))
    print(f"exhaustive: {n_ent} entities in {len(texts)} texts, {t_ex:.1f} s")
    last = None
    shares = [float(x) for x in a.exact_share.split(",")] if a.exact_share else [None]
    builds = [(f.strip(), share) for f in a.factories.split(";") if f.strip()
              for share in (shares if f.strip().upper().startswith("IVF") else [None])]
    for f, share in builds:
        f, _, mips = f.partition("@")
        t0 = time.perf_counter()
        bank.build_index(f, mips=mips or "auto", exact_share=share)
        bank.nprobe = None
        t_build = time.perf_counter() - t0
        ivf = f.upper().startswith("IVF")
        if ivf:
            print(f"{f}: {bank.exact_labels()[0].numel()} labels scored exactly beside the lists")
        efs = [int(x) for x in a.ef_search.split(",")] if "HNSW" in f.upper() else \
            [int(x) for x in a.nprobe.split(",")] if ivf and a.nprobe else [None]
        for ef in efs:
            if ef is not None:
                setattr(bank, "nprobe" if ivf else "ef_search", ef)
            t_ret = float("inf")
            for _ in range(max(1, a.repeats)):
                t0 = time.perf_counter()
                got = m.predict(texts, bank, threshold=a.threshold, label_top_k=a.top_k)
                t_ret = min(t_ret, time.perf_counter() - t0)
            agree, same, n = agreement(exhaustive, got)
            tag = f"{f} efSearch {ef}" if "HNSW" in f.upper() else \
                f"{f} exact {bank.exact_labels()[0].numel()} nprobe {bank.nprobe or 'auto'}" if ivf else f
            print(
                f"{tag:>10} k={a.top_k}: {same}/{n} spans identical = {agree:.4f}; "
                f"index build {t_build:.1f} s, predict {t_ret:.1f} s (exhaustive {t_ex:.1f} s)"
            )
            last = (f, agree)
    print(f"peak RSS {peak_rss_mb():.0f} MiB")
    if last is not None:
        print(f"agreement_{last[0]}={last[1]:.4f}")


if __name__ == "__main__":
    main()
