"""NER throughput and peak RSS as the label count grows, ours beside the reference gliner 0.2.29.

    .venv/bin/python benchmarks/label_scaling.py --quick    # 1, 1k, 10k labels, 8 texts (< 60 s, ours only)
    .venv/bin/python benchmarks/label_scaling.py            # 1 .. 1M labels, both bi-encoders, and the uni-encoder

Columns, each label count in its own process (so peak RSS is its own), 1 torch thread, batch 8, threshold 0.5,
flat NER, the same ~64-token texts:
- **glinker**: ``BiEncoder.predict`` on a LabelBank (exhaustive chunked scoring below the retrieval threshold,
  top-64 retrieval through the bank's index from 100k labels: by default an IVF-Flat index of ~N/256 lists
  without the 5% of labels with the smallest vectors, which every span scores exactly, and 1/8 of the lists probed,
  at least 64 (since session 38: 64 of 512 at 100k, 512 of 4,096 at 1M; 3/8 of the lists alone in sessions 36-37),
  scored by matrix products).
- **gliner bi**: the reference ``batch_predict_with_embeds`` with the same precomputed label embeddings E (our
  bank holds P = prompt_rep_layer(E) of exactly these E), same checkpoint; run under an address-space cap
  (``--ref-mem-gb``) so that when it needs more memory than the machine has it fails with MemoryError instead
  of taking the machine down; the row then says so. Larger counts are not tried after a failure.
- **gliner uni**: a uni-encoder GLiNER of the same size (same ModernBERT config, random weights, markerV0,
  D=512) built with gliner from a local config, at 1, 128 and 1024 labels. Its prompt (labels) and the text
  share one 512-token window, so labels are run in as many passes as needed for every label to be read (the
  pass size is the most labels whose prompt fits beside the longest text) and the passes' entities are merged
  by greedy flat decoding; a single pass would silently drop labels.

Checkpoint and texts come from ``benchmarks/ner_speed.py`` (edge-sized random-weight ModernBERT text encoder,
real all-MiniLM-L6-v2 label encoder). Label embeddings E: with ``--bank-kind strings`` (default) every label is
its own generated string encoded by the label encoder (a million take ~15 minutes on one core, once; the build
resumes if stopped); with ``--bank-kind noise`` the 1024 encoded strings repeat with Gaussian noise (0.3 x the
per-dimension std of E) past 1024, a near-duplicate stress case built in seconds. P = prompt_rep_layer(E) is
written in batches to a memory-mapped bank (``LabelBank.write_batches``), cached outside the repository.
The last line is ``throughput_ratio_<largest>_vs_1=<x>`` (glinker examples/s at the largest count / at 1 label).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

from ner_speed import best_of, build_edge_checkpoint, make_labels, make_texts, minilm_dir, peak_rss_mb

BASE = 1024
UNI_COUNTS = (1, 128, 1024)
E_FILE = "E.npy"


def _fmt(c: int) -> str:
    return (
        f"{c // 1_000_000}M"
        if c >= 1_000_000 and c % 1_000_000 == 0
        else (f"{c // 1000}k" if c >= 1000 and c % 1000 == 0 else str(c))
    )


def ensure_bank(m, count: int, cache: Path, kind: str = "strings", batch: int = 32_768) -> Path:
    """The cached bank folder for ``count`` labels: P in a LabelBank, E beside it as ``E.npy`` (written once).

    ``kind`` "strings": every label is its own generated string, encoded by the label encoder (a realistic bank:
    distinct labels; a million take ~20 minutes on one core, resumable). "noise": past 1024 labels the 1024
    encoded strings repeat with Gaussian noise (0.3 x the per-dimension std of E), built in seconds; a stress
    case of near-duplicate labels, on which graph search is slow and misses the best of a duplicate group.
    """
    import numpy as np
    import torch

    from glinker.model import LabelBank
    from glinker.model.labels import rows_done

    strings = kind == "strings" and count > BASE  # up to BASE both kinds are the same encoded strings
    tag = "strings-v1" if strings else "v2"
    d = cache / f"scaling-bank-{tag}-{count}-{m.fingerprint[:12]}"
    if (d / "label_bank.json").is_file() and (d / E_FILE).is_file():
        return d
    names = make_labels(max(count, BASE))[:count]
    d.mkdir(parents=True, exist_ok=True)
    start = rows_done(d) if strings else 0
    part = d / f".{E_FILE}"
    e_out = np.lib.format.open_memmap(part, mode="r+" if start and part.is_file() else "w+", dtype=np.float32,
                                      shape=(count, m.dim))
    if not strings:
        _p, e_base = m._encode_prompt_texts(make_labels(BASE), 256, want_e=True)
        std = e_base.std(0)

    def batches():
        for a in range(start, count, batch):
            b = min(count, a + batch)
            if strings:
                p, e = m._encode_prompt_texts(names[a:b], 256, want_e=True)
                e_out[a:b] = e.numpy()
                e_out.flush()  # before the bank records these rows as done
                yield p
                continue
            e = e_base[torch.arange(a, b) % BASE]
            if count > BASE:
                g = torch.Generator().manual_seed(a)
                e = e + 0.3 * std * torch.randn(b - a, e.shape[1], generator=g)
            e_out[a:b] = e.numpy()
            with torch.inference_mode():
                yield m.net.prompt(e).float()

    LabelBank.write_batches(d, names, names, batches(), m.dim, m.fingerprint, progress=sys.stderr.isatty(),
                            resume=strings)
    e_out.flush()
    e_out = None  # the map closed before the file is renamed (del would leave batches() a name ruff cannot resolve)
    os.replace(part, d / E_FILE)
    return d


def worker_ours(ckpt: Path, bank_dir: Path, n_texts: int, repeats: int, dtype: str = "float32") -> dict:
    import torch
    from transformers import AutoTokenizer

    from glinker.model import BiEncoder, LabelBank

    torch.set_num_threads(1)
    m = BiEncoder.from_pretrained(ckpt, dtype=dtype)
    texts = make_texts(AutoTokenizer.from_pretrained(str(minilm_dir())), n_texts, 64, seed=0)
    bank = LabelBank.load(bank_dir)
    t_index = 0.0
    retrieval = len(bank) >= m.retrieval_threshold(bank)  # the default of predict(label_top_k=None)
    if retrieval and not bank.has_index:
        t0 = time.perf_counter()
        bank.build_index()
        t_index = time.perf_counter() - t0
        bank.save_index(bank_dir)
    m.predict(texts[:8], bank, batch_size=8)  # warm-up (reads a saved index)
    dt, _cpu, res = best_of(repeats, lambda: m.predict(texts, bank, batch_size=8))
    return {
        "labels": len(bank),
        "eps": n_texts / dt,
        "rss_mb": peak_rss_mb(),
        "entities": sum(map(len, res)),
        "retrieval": retrieval,
        "index": bank.index_factory if bank.has_index else "",
        "index_build_s": t_index,
    }


def _ref_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def worker_gliner_bi(ckpt: Path, bank_dir: Path, texts: list[str], repeats: int, mem_gb: float) -> dict:
    """The reference bi-encoder with precomputed E, under an address-space cap (runs in .venv-gliner)."""
    import warnings

    import numpy as np
    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    from gliner import GLiNER

    m = GLiNER.from_pretrained(str(ckpt), local_files_only=True, strict=True)
    m.eval()
    names = json.loads((bank_dir / "label_bank.json").read_text(encoding="utf-8"))["names"]
    E = torch.from_numpy(np.ascontiguousarray(np.load(bank_dir / E_FILE, mmap_mode="r")))
    cap = int(mem_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        m.batch_predict_with_embeds(texts[:8], E, names, threshold=0.5, batch_size=8)  # warm-up
        dt, _cpu, res = best_of(
            repeats, lambda: m.batch_predict_with_embeds(texts, E, names, threshold=0.5, batch_size=8)
        )
    except (MemoryError, RuntimeError) as e:
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        return {"labels": len(names), "failed": f"{type(e).__name__} {msg}".strip(), "rss_mb": peak_rss_mb()}
    return {"labels": len(names), "eps": len(texts) / dt, "rss_mb": peak_rss_mb(), "entities": sum(map(len, res))}


def build_uni_checkpoint(out: Path, edge_ckpt: Path, tok_dir: Path, seed: int = 0) -> Path:
    """A uni-encoder GLiNER with the edge checkpoint's text-encoder config, built by gliner (.venv-gliner)."""
    import shutil
    import tempfile
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    from gliner import GLiNER, GLiNERConfig
    from transformers import AutoTokenizer, ModernBertConfig, ModernBertModel

    if (out / "gliner_config.json").is_file():
        return out
    edge = json.loads((edge_ckpt / "gliner_config.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="uni-src-"))
    torch.manual_seed(seed)
    enc_cfg = {k: v for k, v in edge["encoder_config"].items() if k not in ("architectures", "transformers_version")}
    ModernBertModel(ModernBertConfig(**enc_cfg)).save_pretrained(work)
    AutoTokenizer.from_pretrained(str(tok_dir)).save_pretrained(work)
    cfg = GLiNERConfig(model_name=str(work), span_mode="markerV0", hidden_size=edge["hidden_size"],
                       max_width=edge["max_width"], max_len=edge["max_len"], dropout=edge["dropout"])
    model = GLiNER.from_config(cfg, backbone_from_pretrained=True, local_files_only=True)
    with torch.no_grad():
        for name, p in model.model.named_parameters():
            if "token_rep_layer" not in name:
                p.normal_(0.0, 0.035 if p.dim() > 1 else 0.0)
    model.save_pretrained(out)
    shutil.rmtree(work)
    return out


def _passes(tok, texts: list[str], labels: list[str], limit: int = 512) -> list[list[str]]:
    """Label chunks whose uni-encoder prompt ("<<ENT>> label ... <<SEP>>") fits beside the longest text."""
    text_len = max(len(tok(t)["input_ids"]) for t in texts)  # with [CLS] and [SEP]
    room = limit - text_len - 1  # <<SEP>>
    chunks: list[list[str]] = [[]]
    used = 0
    for lab in labels:
        need = 1 + len(tok(lab, add_special_tokens=False)["input_ids"])  # <<ENT>> + the label's tokens
        if chunks[-1] and used + need > room:
            chunks.append([])
            used = 0
        chunks[-1].append(lab)
        used += need
    return chunks


def _merge_flat(ents: list[dict]) -> list[dict]:
    """Greedy flat decoding over the entities of several label passes: best score first, no overlaps."""
    kept: list[dict] = []
    for e in sorted(ents, key=lambda x: -x["score"]):
        if all(e["end"] <= k["start"] or e["start"] >= k["end"] for k in kept):
            kept.append(e)
    return sorted(kept, key=lambda x: x["start"])


def worker_gliner_uni(uni: Path, texts: list[str], labels: list[str], counts: list[int], repeats: int,
                      dtype: str = "float32") -> list[dict]:
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    from gliner import GLiNER

    m = GLiNER.from_pretrained(str(uni), local_files_only=True)
    m.eval()
    if dtype != "float32":
        m.to(getattr(torch, dtype))
    tok = m.data_processor.transformer_tokenizer
    rows = []
    for c in counts:
        chunks = _passes(tok, texts, labels[:c])

        def run(chunks=chunks):
            per = [[] for _ in texts]
            for ch in chunks:
                for i, r in enumerate(m.inference(texts, ch, threshold=0.5, batch_size=8)):
                    per[i].extend(r)
            return [_merge_flat(p) for p in per]

        run()  # warm-up
        dt, _cpu, res = best_of(repeats, run)
        rows.append({"labels": c, "eps": len(texts) / dt, "passes": len(chunks), "rss_mb": peak_rss_mb(),
                     "entities": sum(map(len, res))})
    return rows


def _run(cmd: list[str], env: dict | None = None) -> tuple[dict | list | None, str]:
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        return None, (lines[-1] if lines else f"exit {out.returncode}")[:200]
    return json.loads(out.stdout.strip().splitlines()[-1]), ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1, 1k, 10k labels, 8 texts, glinker only (< 60 s)")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "glinker" / "bench"
    ap.add_argument("--ckpt", type=Path, default=cache / "edge-bi-modernbert-minilm-v1")
    ap.add_argument("--counts", default="", help="comma-separated label counts (default: by mode)")
    ap.add_argument("--ref-python", default=str(ROOT.parent / ".venv-gliner" / "bin" / "python"))
    ap.add_argument("--ref-mem-gb", type=float, default=16.0, help="address-space cap for the gliner bi worker")
    ap.add_argument("--no-ref", action="store_true", help="glinker only")
    ap.add_argument("--build-threads", type=int, default=2, help="torch threads for building the label banks")
    ap.add_argument("--bank-kind", choices=["strings", "noise"], default="strings",
                    help="past 1024 labels: distinct encoded strings (default) or noisy copies of 1024 (see ensure_bank)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="precision of ours and of the uni-encoder gliner (bfloat16: both, on a CPU with AMX); the "
                         "gliner bi-encoder stays float32")
    ap.add_argument("--uni-counts", default=",".join(map(str, UNI_COUNTS)),
                    help="label counts for the uni-encoder gliner (default 1,128,1024)")
    ap.add_argument("--worker", choices=["ours", "gliner-bi", "gliner-uni", "build-uni"], help=argparse.SUPPRESS)
    ap.add_argument("--bank", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--arg", default="", help=argparse.SUPPRESS)
    ap.add_argument("--n-texts", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        if a.worker == "ours":
            out = worker_ours(a.ckpt, a.bank, a.n_texts, a.repeats, a.dtype)
        else:
            data = json.loads(Path(a.arg).read_text(encoding="utf-8"))
            if a.worker == "gliner-bi":
                out = worker_gliner_bi(a.ckpt, a.bank, data["texts"], a.repeats, data["mem_gb"])
            elif a.worker == "build-uni":
                out = {"uni": str(build_uni_checkpoint(Path(data["out"]), a.ckpt, Path(data["tok"])))}
            else:
                out = worker_gliner_uni(Path(data["uni"]), data["texts"], data["labels"], data["counts"], a.repeats,
                                        a.dtype)
        print(json.dumps(out))
        return
    t_start = time.perf_counter()
    import tempfile

    import torch
    from transformers import AutoTokenizer

    from glinker.model import BiEncoder

    if a.quick:
        counts, n_texts, repeats = [1, 1_000, 10_000], 8, 2
    else:
        counts, n_texts, repeats = [1, 1_000, 10_000, 100_000, 1_000_000], 32, 3
    if a.counts:
        counts = [int(x) for x in a.counts.split(",")]
    ref = not a.quick and not a.no_ref and Path(a.ref_python).exists()
    if not a.quick and not a.no_ref and not ref:
        print(f"reference interpreter {a.ref_python} not found: gliner bi and uni are not run (make "
              "reference-venv builds it; --no-ref runs ours only without this message)", file=sys.stderr)
    ckpt = build_edge_checkpoint(a.ckpt)
    torch.set_num_threads(a.build_threads)
    m = BiEncoder.from_pretrained(ckpt)
    uni_all = [int(x) for x in a.uni_counts.split(",") if x.strip()]
    uni_counts = [c for c in uni_all if c not in counts] if ref else []
    dirs = {c: ensure_bank(m, c, cache, a.bank_kind) for c in [*counts, *uni_counts]}
    del m
    texts = make_texts(AutoTokenizer.from_pretrained(str(minilm_dir())), n_texts, 64, seed=0)
    tmp = Path(tempfile.mkdtemp(prefix="label-scaling-"))
    atexit.register(shutil.rmtree, tmp, True)  # the workers' argument file, however the run ends
    arg = tmp / "arg.json"
    ours: dict[int, dict] = {}
    bi: dict[int, dict] = {}
    bi_failed = False
    for c in [*counts, *uni_counts]:
        me = [sys.executable, __file__, "--ckpt", str(ckpt), "--worker", "ours", "--bank", str(dirs[c]),
              "--n-texts", str(n_texts), "--repeats", str(repeats), "--dtype", a.dtype]
        r, err = _run(me, {**os.environ, "OMP_NUM_THREADS": "1"})
        ours[c] = r if r is not None else {"failed": err}
        if ref and not bi_failed and c in counts:
            # the reference's cost grows with the label count: fewer texts and one repeat past 10k labels
            ref_texts = texts if c <= 10_000 else texts[:8]
            arg.write_text(json.dumps({"texts": ref_texts, "mem_gb": a.ref_mem_gb}))
            cmd = [a.ref_python, __file__, "--ckpt", str(ckpt), "--worker", "gliner-bi", "--bank", str(dirs[c]),
                   "--arg", str(arg), "--repeats", str(repeats if c <= 10_000 else 1)]
            r, err = _run(cmd, _ref_env())
            bi[c] = r if r is not None else {"failed": err}
            bi_failed = "failed" in bi[c]
        print(f"[{time.perf_counter() - t_start:.0f} s] {_fmt(c)} labels: ours {ours[c]}; gliner bi {bi.get(c)}",
              file=sys.stderr)
    uni: dict[int, dict] = {}
    uni_ratio = None
    if ref:
        arg.write_text(json.dumps({"out": str(cache / "edge-uni-modernbert-v1"), "tok": str(minilm_dir())}))
        r, err = _run([a.ref_python, __file__, "--ckpt", str(ckpt), "--worker", "build-uni", "--arg", str(arg)],
                      _ref_env())
        if r is None:
            print(f"uni-encoder checkpoint not built: {err}", file=sys.stderr)
        else:
            arg.write_text(json.dumps({"uni": r["uni"], "texts": texts[:8], "labels": make_labels(max([BASE, *uni_all])),
                                       "counts": uni_all}))
            r, err = _run([a.ref_python, __file__, "--ckpt", str(ckpt), "--worker", "gliner-uni", "--arg", str(arg),
                           "--repeats", "2", "--dtype", a.dtype], _ref_env())
            if r is None:
                print(f"uni-encoder run failed: {err}", file=sys.stderr)
            else:
                uni = {x["labels"]: x for x in r}

    print(f"\nNER throughput vs label count: CPU, 1 thread per process, batch 8, threshold 0.5, ~64-token texts; "
          f"glinker {n_texts} texts best of {repeats}; {a.dtype} (glinker and gliner uni; gliner bi float32)")
    print("| labels | glinker scoring | glinker ex/s | glinker peak RSS MiB | gliner bi ex/s | gliner bi peak RSS MiB "
          "| gliner uni ex/s (passes) | entities (glinker / gliner bi) |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    for c in counts:
        o = ours[c]
        if "failed" in o:
            how, eps, rss = f"failed: {o['failed']}", "-", "-"
        else:
            how = f"top-64 via {o['index']} (index {o['index_build_s']:.0f} s)" if o["retrieval"] else "exhaustive (chunked)"
            eps, rss = f"{o['eps']:.2f}", f"{o['rss_mb']:.0f}"
        b = bi.get(c)
        if b is None:
            b_eps = b_rss = "not run"
        elif "failed" in b:
            b_eps, b_rss = f"failed: {b['failed']}", f"{b['rss_mb']:.0f} (cap {a.ref_mem_gb:.0f} GB)"
        else:
            b_eps, b_rss = f"{b['eps']:.2f}", f"{b['rss_mb']:.0f}"
        u = uni.get(c)
        u_s = f"{u['eps']:.3f} ({u['passes']})" if u else "-"
        ents = f"{o.get('entities', '-')} / {b.get('entities', '-') if b else '-'}"
        print(f"| {_fmt(c)} | {how} | {eps} | {rss} | {b_eps} | {b_rss} | {u_s} | {ents} |")
    if uni:
        print("\n| labels | gliner uni ex/s | passes | glinker ex/s | glinker / uni |")
        print("|---:|---:|---:|---:|---:|")
        for c in uni_all:
            u, o = uni.get(c), ours.get(c, {})
            if u and "eps" in o:
                print(f"| {c} | {u['eps']:.3f} | {u['passes']} | {o['eps']:.2f} | {o['eps'] / u['eps']:.0f}x |")
                if c == 1024:
                    uni_ratio = o["eps"] / u["eps"]
    print(f"total {time.perf_counter() - t_start:.0f} s")
    if uni_ratio is not None:
        print(f"speedup_vs_uni@1024={uni_ratio:.0f}")
    good = [c for c in counts if "eps" in ours[c]]
    if good and good[0] == 1:
        print(f"throughput_ratio_{_fmt(good[-1])}_vs_1={ours[good[-1]]['eps'] / ours[1]['eps']:.3f}")


if __name__ == "__main__":
    main()
