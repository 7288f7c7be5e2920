"""Entity-linking speed: documents/s end to end on AIDA testb, the time split by stage, next to GLiNKER 0.1.1.

    .venv/bin/python benchmarks/el_speed.py --model MODEL_DIR --kb KB_DIR [--limit N] [--reference-limit M]

Ours: a linking pipeline (default pipelines/wikidata.yaml, model and KB overridden) over the AIDA testb texts
(``$GLINKER_DATA/el/aida/aida_testb.jsonl``), after warm-up, on this CPU. The table lists every stage's seconds
and share; "encoder" is the wall time inside text-encoder forward passes (mention detection and span vectors),
the rest is the non-encoder overhead (KB look-ups, retrieval, re-scoring, selection).

Reference: GLiNKER 0.1.1 (``pip install glinker==0.1.1`` in ``.venv-glinker011``, torch 2.13.0 installed first)
with the same gliner-format model folder and the KB's entities (read from the KB's entity store), through its
``ProcessorFactory.create_simple(..., precompute_embeddings=True)``, on the first ``--reference-limit`` texts.
With ``--kb-subset N --kb-source ENTITIES.jsonl`` both sides link against an N-entity subset of the KB instead: the
gold entities of the measured documents that the source holds plus random fillers (seed 0), rebuilt with the model
(``glinker kb build --adapter jsonl``) into ``kb_out/el-speed-subset-N`` (reused when there) — for when the
reference's own set-up (it embeds every KB entity, about 0.4 s each on the shared 2-core CPU) cannot take the full KB.
With ``--dtype float32,auto`` ours runs once per precision (the pipeline's ``settings.dtype``; auto is bfloat16 on
a CPU with bfloat16 matrix units, else float32), each with its own table; the reference stays in float32.
The last line is ``docs_per_s=<ours> reference_docs_per_s=<ref or n/a> speedup=<x or n/a> non_encoder_share=<s>``
for the first precision, then ``docs_per_s_<dtype>=<x>`` for each other one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REF_SCRIPT = r"""
import json, sys, time, resource
import torch
torch.set_num_threads(int(sys.argv[4]))
from glinker import ProcessorFactory
texts = [json.loads(l)["text"] for l in open(sys.argv[2], encoding="utf-8")]
ents = [json.loads(l) for l in open(sys.argv[3], encoding="utf-8")]
t0 = time.perf_counter()
ex = ProcessorFactory.create_simple(sys.argv[1], device="cpu", threshold=0.5, template="{label}: {description}",
                                    entities=ents, precompute_embeddings=True)
setup = time.perf_counter() - t0
ex.execute({"texts": texts[:1]})  # warm-up
t0 = time.perf_counter()
for t in texts:
    ex.execute({"texts": [t]})
el = time.perf_counter() - t0
print(json.dumps({"docs": len(texts), "seconds": el, "setup_seconds": setup, "entities": len(ents),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def data_dir() -> Path:
    return Path(os.environ.get("GLINKER_DATA") or ROOT.parent / "shared" / "data")


def make_subset(args: argparse.Namespace, gold_ids: list[str]) -> str:
    """Build (once) the N-entity KB: gold entities of the measured documents held by the source, then fillers."""
    out = ROOT / "kb_out" / f"el-speed-subset-{args.kb_subset}"
    if (out / "CURRENT").exists():
        return str(out)
    lines = {json.loads(line)["id"]: line for line in open(args.kb_source, encoding="utf-8") if line.strip()}
    keep = [i for i in dict.fromkeys(gold_ids) if i in lines][: args.kb_subset]
    rest = sorted(set(lines) - set(keep))
    random.Random(0).shuffle(rest)
    keep += rest[: args.kb_subset - len(keep)]
    out.mkdir(parents=True, exist_ok=True)
    src = out.with_suffix(".jsonl")
    src.write_text("".join(lines[i].rstrip("\n") + "\n" for i in keep), encoding="utf-8")
    print(f"KB subset: {len(keep)} entities ({min(len(keep), len(set(gold_ids) & set(lines)))} gold) -> {out}",
          file=sys.stderr)
    subprocess.run([sys.executable, "-m", "glinker", "kb", "build", "--adapter", "jsonl", "--source", str(src),
                    "--model", args.model, "--out", str(out)], check=True)
    return str(out)


def run_ours(args: argparse.Namespace, texts: list[dict], dtype: str | None = None) -> dict:
    import torch

    import glinker
    from glinker.stages import resources

    torch.set_num_threads(args.threads)
    pipe = glinker.load_pipeline(args.pipeline, model=args.model, kb=args.kb, batch_size=args.batch_size, dtype=dtype)
    t0 = time.perf_counter()
    pipe.warm_up(freeze_gc=True)  # as `glinker link` does
    pipe.link(texts[:2])  # first-call effects (allocators, caches) stay out of the timing
    warm = time.perf_counter() - t0
    for s in pipe.stats.stages.values():
        s.seconds, s.calls, s.items = 0.0, 0, 0
    resources.ENCODER_SECONDS["seconds"] = 0.0
    t0 = time.perf_counter()
    n = sum(len(r.documents) for r in pipe.run(texts))
    total = time.perf_counter() - t0
    enc = resources.ENCODER_SECONDS["seconds"]
    return {"docs": n, "seconds": total, "warm_up_seconds": warm, "encoder_seconds": enc,
            "stages": {k: (s.seconds, s.items) for k, s in pipe.stats.stages.items()},
            "types": {k: pipe.spec.stages[k].type for k in pipe.order},
            "dtype": sorted({str(v.dtype).removeprefix("torch.") for v in pipe.context._resources.values()
                             if hasattr(v, "fingerprint") and hasattr(v, "dtype")})}


def run_reference(args: argparse.Namespace, texts: list[dict]) -> dict | None:
    if args.reference_limit <= 0 or str(args.reference_venv).lower() == "none":
        print("GLiNKER 0.1.1 not measured (--reference-limit 0 or --reference-venv none)", file=sys.stderr)
        return None
    py = Path(args.reference_venv) / "bin" / "python"
    if not py.is_file():
        print(f"reference venv {args.reference_venv} not found: GLiNKER 0.1.1 not measured", file=sys.stderr)
        return None
    from glinker.kb import KB

    kb = KB.open(args.kb)
    with tempfile.TemporaryDirectory() as tmp:
        tf, ef = Path(tmp) / "texts.jsonl", Path(tmp) / "entities.jsonl"
        tf.write_text("".join(json.dumps(t) + "\n" for t in texts[: args.reference_limit]), encoding="utf-8")
        with open(ef, "w", encoding="utf-8") as f:
            ids = [r[0] for r in kb.store.db.execute("SELECT id FROM entities ORDER BY rid")]
            for i in range(0, len(ids), 5000):
                for e in kb.get(ids[i:i + 5000]):
                    f.write(json.dumps({"entity_id": e.id, "label": e.label, "description": e.description,
                                        "aliases": e.aliases, "popularity": e.popularity}) + "\n")
        script = Path(tmp) / "ref.py"
        script.write_text(REF_SCRIPT)
        r = subprocess.run([str(py), str(script), args.model, str(tf), str(ef), str(args.threads)],
                           capture_output=True, text=True, timeout=args.reference_timeout)
        if r.returncode != 0:
            print("reference failed:\n" + r.stderr[-3000:], file=sys.stderr)
            return None
        return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", default=str(ROOT / "pipelines" / "wikidata.yaml"))
    ap.add_argument("--model", required=True, help="gliner-format bi-encoder folder (used by both sides)")
    ap.add_argument("--kb", required=True, help="KB directory built with this model")
    ap.add_argument("--data", default=str(data_dir() / "el" / "aida" / "aida_testb.jsonl"))
    ap.add_argument("--limit", type=int, default=None, help="only the first N documents (ours)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--dtype", default="",
                    help="ours: comma-separated precisions to run, e.g. float32,auto (default: the pipeline's own)")
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2)))
    ap.add_argument("--reference-venv", default=str(ROOT / ".venv-glinker011"))
    ap.add_argument("--reference-limit", type=int, default=10,
                    help="GLiNKER 0.1.1 links the first M documents (0: not run; so does --reference-venv none)")
    ap.add_argument("--reference-timeout", type=int, default=3600)
    ap.add_argument("--kb-subset", type=int, default=None, help="link against an N-entity subset (both sides)")
    ap.add_argument("--kb-source", default=str(ROOT / "runs" / "training-entities.jsonl"),
                    help="JSONL the KB was built from (for --kb-subset)")
    args = ap.parse_args()
    texts, gold_ids = [], []
    with open(args.data, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            texts.append({"id": str(r.get("id", len(texts))), "text": r["text"]})
            gold_ids.append([m["wikidata_qid"] for m in r.get("mentions", []) if m.get("wikidata_qid")])
    if args.limit:
        texts = texts[: args.limit]
    if args.kb_subset:
        n_docs = max(len(texts), args.reference_limit)
        args.kb = make_subset(args, [q for ids in gold_ids[:n_docs] for q in ids])
    dtypes = [d.strip() for d in args.dtype.split(",") if d.strip()] or ["pipeline"]
    runs = {d: run_ours(args, texts, None if d == "pipeline" else d) for d in dtypes}
    ref = run_reference(args, texts)
    print(f"data: {args.data} ({len(texts)} documents), model: {args.model}, kb: {args.kb}, threads: {args.threads}")
    for d, ours in runs.items():
        print(f"ours, dtype {d} (model in {', '.join(ours['dtype'])}):")
        print(f"{'stage':<14}{'type':<20}{'items':>8}{'seconds':>10}{'share':>8}")
        for k, (sec, items) in ours["stages"].items():
            print(f"{k:<14}{ours['types'][k]:<20}{items:>8}{sec:>10.2f}{100 * sec / ours['seconds']:>7.1f}%")
        enc = ours["encoder_seconds"]
        print(f"{'total':<42}{ours['seconds']:>10.2f}  encoder {enc:.2f} s, "
              f"non-encoder {100 * (1 - enc / ours['seconds']):.1f}%")
        print(f"ours ({d}): {ours['docs'] / ours['seconds']:.2f} docs/s (warm-up {ours['warm_up_seconds']:.1f} s)")
    ours = runs[dtypes[0]]
    dps = ours["docs"] / ours["seconds"]
    share = 1 - ours["encoder_seconds"] / ours["seconds"]
    more = "".join(f" docs_per_s_{d}={r['docs'] / r['seconds']:.3f}" for d, r in runs.items() if d != dtypes[0])
    if ref is not None:
        rdps = ref["docs"] / ref["seconds"]
        print(f"GLiNKER 0.1.1: {rdps:.3f} docs/s on the first {ref['docs']} documents "
              f"(setup incl. entity embeddings {ref['setup_seconds']:.1f} s for {ref.get('entities', '?')} entities, "
              f"peak RSS {ref['peak_rss_mb']:.0f} MiB)")
        print(f"docs_per_s={dps:.3f} reference_docs_per_s={rdps:.4f} speedup={dps / rdps:.1f} "
              f"non_encoder_share={share:.3f}{more}")
    else:
        print(f"docs_per_s={dps:.3f} reference_docs_per_s=n/a speedup=n/a non_encoder_share={share:.3f}{more}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
