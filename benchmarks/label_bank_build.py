"""Time `glinker labels build` on N distinct label strings with a real model (default: the shipped one).

    .venv/bin/python benchmarks/label_bank_build.py --n 1000000            # the million-label bank
    .venv/bin/python benchmarks/label_bank_build.py --n 20000 --index none  # a quick look

Label strings are generated ("coastal river 17", ...: 2-4 MiniLM tokens each, like real type names) and
written to a file; the command is run in a child process exactly as a user would run it, and the script prints
its JSON report with the child's peak RSS, the bank's size on disk, labels/s, and the command.
The bank is written under --out (default: a folder in ~/.cache/glinker/bench), outside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from ner_speed import make_labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--model", default="glinker-bi-minilm")
    ap.add_argument("--index", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "glinker" / "bench"
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    out = a.out or cache / f"labels-build-{a.n}"
    cache.mkdir(parents=True, exist_ok=True)
    lf = cache / f"labels-{a.n}.txt"
    if not lf.is_file():
        lf.write_text("\n".join(make_labels(a.n)) + "\n", encoding="utf-8")
    cmd = [str(Path(sys.executable).parent / "glinker"), "labels", "build", str(lf), "-m", a.model, "-o", str(out),
           "--index", a.index]
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "TOKENIZERS_PARALLELISM": "false"}
    print("$ " + shlex.join(cmd), flush=True)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"glinker labels build failed (exit {r.returncode})")
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    disk = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())  # the lists folder (ivf-lowp) too
    print(json.dumps({**rep, "wall_s": round(wall, 1), "labels_per_s": round(a.n / rep["encode_s"], 1),
                      "peak_rss_mb": round(peak), "bank_bytes": disk, "torch_threads": a.threads,
                      "load_average": round(os.getloadavg()[0], 1)}))


if __name__ == "__main__":
    main()
