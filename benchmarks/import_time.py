"""How long `import glinker` takes in a fresh interpreter, beside a bare interpreter start.

Usage: python benchmarks/import_time.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def _time(code: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    bare = _time("pass", args.runs)
    rows = [("python -c pass", bare)]
    for code in ("import glinker", "import glinker.pipeline", "import glinker.cli"):
        rows.append((f"python -c '{code}'", _time(code, args.runs)))
    print(f"{'command':<36}{'median s':>10}{'over bare':>11}")
    for name, t in rows:
        print(f"{name:<36}{t:>10.3f}{t - bare:>11.3f}")
    print(f"import_glinker_s={rows[1][1]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
