"""Run the shipped pipeline and the prior baselines on every ELEVANT set and print a markdown table.

Measuring only: no weight or threshold is set from these sets (they were tuned on AIDA testa).

    python scripts/eval_elevant.py --data ../shared/data/el/elevant --kb kb_out/aida-final \
        --kb-ids runs/training-entities.jsonl --out runs/elevant

One ``glinker eval el`` run per (set, pipeline); each report is kept as ``OUT/<set>--<pipeline>.json`` and a run
whose report already exists is skipped (so an interrupted sweep resumes). The baselines use the alias-only KB
named in their YAML (``kb_out/aida-aliases``); the shipped pipeline and its gold-mention twin get ``--kb``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "tests" / "link" / "eval_pipelines"

# (name, yaml, end-to-end yaml's gold-mention twin or None, needs --kb)
PIPELINES = [
    ("popularity", EVAL / "aida_popularity_e2e.yaml", EVAL / "aida_popularity_ed.yaml", False),
    ("prior", EVAL / "aida_prior_e2e.yaml", EVAL / "aida_prior_ed.yaml", False),
    ("prior-nil", EVAL / "aida_prior_nil_e2e.yaml", None, False),
    ("wikidata", ROOT / "pipelines" / "wikidata.yaml", EVAL / "wikidata_gold_mentions.yaml", True),
]


def run_one(glinker: str, yaml: Path, data: Path, kb: str | None, kb_ids: Path, out: Path) -> dict:
    if not out.exists():
        cmd = [glinker, "eval", "el", "-p", str(yaml), "--data", str(data), "--kb-ids", str(kb_ids),
               "--json", str(out)]
        if kb is not None:
            cmd += ["--kb", kb]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        print(f"{data.name} {yaml.name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder of *.benchmark.jsonl")
    ap.add_argument("--kb", required=True, help="KB for the shipped pipeline (built with its model)")
    ap.add_argument("--kb-ids", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "elevant")
    ap.add_argument("--glinker", default=str(Path(sys.executable).with_name("glinker")))
    ap.add_argument("--sets", default="", help="comma-separated set names (default: every set in --data)")
    ap.add_argument("--pipelines", default="", help="comma-separated pipeline names (default: all: "
                    + ", ".join(n for n, *_ in PIPELINES) + ")")
    ap.add_argument("--no-ed", action="store_true", help="skip the gold-mention (ED) runs")
    args = ap.parse_args()
    files = sorted(args.data.glob("*.benchmark.jsonl"))
    if not files:
        ap.error(f"--data {args.data}: no *.benchmark.jsonl there (give the ELEVANT folder, e.g. "
                 "../shared/data/el/elevant)")
    names = [f.name.removesuffix(".benchmark.jsonl") for f in files]
    if args.sets:
        keep = args.sets.split(",")
        unknown = [k for k in keep if k not in names]
        if unknown:
            ap.error(f"--sets: no set {', '.join(unknown)} in {args.data} (there: {', '.join(names)})")
        files = [f for f, n in zip(files, names) if n in keep]
    pipelines = [p for p in PIPELINES if not args.pipelines or p[0] in args.pipelines.split(",")]
    if not pipelines:
        ap.error(f"--pipelines: none of {args.pipelines} (there: {', '.join(n for n, *_ in PIPELINES)})")
    args.out.mkdir(parents=True, exist_ok=True)
    print("| set | docs | InKB gold | KB coverage | " + " | ".join(f"{n} F1 (ED)" for n, *_ in pipelines) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(pipelines))
    for f in files:
        name = f.name.removesuffix(".benchmark.jsonl")
        cells = []
        rep = {}
        for pname, e2e, ed, needs_kb in pipelines:
            kb = args.kb if needs_kb else None
            rep = run_one(args.glinker, e2e, f, kb, args.kb_ids, args.out / f"{name}--{pname}.json")
            cell = f"{100 * rep['el_f1']:.1f}"
            if ed is not None and not args.no_ed:
                red = run_one(args.glinker, ed, f, kb, args.kb_ids, args.out / f"{name}--{pname}-ed.json")
                cell += f" ({100 * red['ed_acc']:.1f})"
            cells.append(cell)
        print(f"| {name} | {rep['documents']} | {rep['inkb_gold']} | {100 * rep['kb_coverage']:.1f} | "
              + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
