"""Memory and throughput of ``glinker link`` on a large JSONL input (issue 6, point 6: "memory flat").

Generates N lines (default 1,000,000) of short news-like sentences built from the KB's entity labels, runs
``glinker link`` on them as a child process with a pipeline that needs no neural model (alias mentions, alias
candidates, p(e|m) prior + popularity, select), samples the child's RSS every second, and prints the RSS when
1%, 10%, 50% and 100% of the input is linked, lines/s, and whether the output has one line per input line.

    python benchmarks/link_memory.py                       # 1M lines, KB kb_out/aida-aliases (else the demo KB)
    python benchmarks/link_memory.py --lines 100000 --kb kb_out/demo-aliases

Without --kb and without kb_out/aida-aliases the script builds an alias-only KB from the demo dump in
``examples/demo_kb`` into its temporary folder. Exit status 1 when the output line count is wrong or the RSS at
100% exceeds the RSS at 10% by more than --max-growth-mb.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent

PIPELINE = """name: link-memory
kb: {kb}
settings: {{batch_size: {batch}}}
stages:
  mentions: {{type: alias_mentions}}
  by_alias: {{type: alias_candidates, input: mentions, top_k: 30}}
  rescored: {{type: rescore, input: by_alias, weights: {{prior: 1.0, popularity: 0.01}}}}
  links: {{type: select, input: rescored, top_k: 3}}
"""

TEMPLATES = [
    "{a} met {b} in {c} on Tuesday.",
    "Officials from {a} said talks with {b} would resume next week.",
    "{a} beat {b} 2-1 in {c} on Saturday.",
    "Shares of {a} rose 3 percent after the report from {b}.",
    "The visit to {c} by {a} was the first since {b} took office.",
    "{a} and {b} signed the agreement in {c}.",
    "A spokesman for {a} declined to comment.",
]


def entity_names(kb_dir: Path, limit: int = 20_000) -> list[str]:
    """Entity labels of the KB (at most ``limit``), for sentence building."""
    from glinker.kb import KB
    from glinker.kb.store import TextTemplate

    names: list[str] = []
    with KB.open(kb_dir) as kb:
        for _, texts in kb.store.iter_texts(TextTemplate("{label}")):
            names.extend(t for t in texts if t and len(t) < 40)
            if len(names) >= limit:
                break
    if not names:
        raise SystemExit(f"no entity labels in {kb_dir}")
    return names[:limit]


def write_input(path: Path, n: int, names: list[str], seed: int = 0) -> int:
    rng = random.Random(seed)
    size = 0
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            a, b, c = rng.choice(names), rng.choice(names), rng.choice(names)
            line = json.dumps({"id": f"d{i}", "text": rng.choice(TEMPLATES).format(a=a, b=b, c=c)},
                              ensure_ascii=False) + "\n"
            size += len(line.encode("utf-8"))
            f.write(line)
    return size


def build_demo_kb(tmp: Path) -> Path:
    out = tmp / "demo-aliases"
    subprocess.run([sys.executable, "-m", "glinker", "kb", "build", "--adapter", "wikidata", "--source",
                    str(ROOT / "examples" / "demo_kb" / "wikidata-demo.json.gz"), "--model", "none", "--out", str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    return out


class LineCounter:
    """Counts the newlines appended to a growing file, reading only the new bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0

    def update(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                while True:
                    block = f.read(1 << 22)
                    if not block:
                        break
                    self.lines += block.count(b"\n")
                    self.offset += len(block)
        except FileNotFoundError:
            pass
        return self.lines


def tree_rss(p: psutil.Process) -> int:
    try:
        procs = [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def report(samples: list, lines: int, done: int, wall: float, peak: int, max_growth_mb: float) -> bool:
    """Print RSS at 1/10/50/100% of the input, throughput and the verdict; True when flat and complete.

    The 100% row is the largest RSS once 99% of the lines are written (the very last sample may already be the
    interpreter tearing down); the growth is the largest RSS after the 10% mark minus the RSS at that mark."""
    marks = {}
    for pct in (1, 10, 50):
        marks[pct] = next((s for s in samples if s[2] >= lines * pct / 100), None)
    tail = [s for s in samples if s[2] >= lines * 0.99]
    marks[100] = max(tail, key=lambda s: s[1]) if tail else None
    first = next((s for s in samples if s[2] > 0), None)
    steady = (done - first[2]) / (wall - first[0]) if first and wall > first[0] else float("nan")
    print(f"{done:,} output lines for {lines:,} input lines; wall {wall:.1f} s")
    print("| input linked | time (s) | lines written | RSS (MB) |")
    print("|---:|---:|---:|---:|")
    for pct, s in marks.items():
        if s is not None:
            print(f"| {pct}% | {s[0]:.0f} | {s[2]:,} | {s[1] / 1e6:.0f} |")
    print(f"peak RSS {peak / 1e6:.0f} MB (ru_maxrss); max sampled {max((s[1] for s in samples), default=0) / 1e6:.0f} MB; "
          f"{len(samples)} samples")
    print(f"throughput: {done / wall:,.0f} lines/s overall, {steady:,.0f} lines/s after the first output line "
          f"(start-up {first[0] if first else float('nan'):.1f} s)")
    after = [s[1] for s in samples if marks[10] and s[0] >= marks[10][0]]
    if not (after and marks[10]):  # a run too short to sample after its 10% mark: nothing to judge memory by
        print(f"RSS growth after the 10% mark: not measured ({len(samples)} samples; give more --lines); output line "
              f"count {'OK' if done == lines else 'WRONG'}; {'PASS (lines only)' if done == lines else 'FAIL'}")
        return done == lines
    growth = (max(after) - marks[10][1]) / 1e6
    ok = done == lines and growth <= max_growth_mb
    print(f"RSS growth after the 10% mark: {growth:+.0f} MB (limit {max_growth_mb:.0f}); "
          f"output line count {'OK' if done == lines else 'WRONG'}; {'PASS' if ok else 'FAIL'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--kb", type=Path, default=None, help="alias KB dir, or 'demo' (default kb_out/aida-aliases, else the demo KB)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--interval", type=float, default=1.0, help="RSS sampling period, seconds")
    ap.add_argument("--max-growth-mb", type=float, default=50.0)
    ap.add_argument("--workdir", type=Path, default=None, help="where the input/output go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the generated input and output")
    ap.add_argument("--json", type=Path, default=None, help="also write samples and the summary as JSON")
    ap.add_argument("--report", type=Path, default=None, help="re-print the summary of a run saved with --json")
    args = ap.parse_args()
    if args.report:
        r = json.loads(args.report.read_text())
        return 0 if report(r["samples"], r["lines"], r["done"], r["wall_s"], r["peak_rss"], args.max_growth_mb) else 1

    tmpobj = None if args.workdir else tempfile.TemporaryDirectory(prefix="link-memory-")
    tmp = args.workdir or Path(tmpobj.name)  # type: ignore[union-attr]
    tmp.mkdir(parents=True, exist_ok=True)
    kb = args.kb or (ROOT / "kb_out" / "aida-aliases")
    if str(kb) == "demo" or (args.kb is None and not kb.exists()):
        kb = build_demo_kb(tmp)
    elif not kb.exists():
        raise SystemExit(f"KB {kb} not found")
    names = entity_names(kb)
    src, out, pipe = tmp / "input.jsonl", tmp / "linked.jsonl", tmp / "pipeline.yaml"
    t0 = time.perf_counter()
    size = write_input(src, args.lines, names)
    print(f"input: {args.lines:,} lines, {size / 1e6:.1f} MB ({time.perf_counter() - t0:.1f} s to write), "
          f"{len(names):,} entity labels of {kb}", flush=True)
    pipe.write_text(PIPELINE.format(kb=kb.resolve(), batch=args.batch_size))
    out.unlink(missing_ok=True)

    cmd = [sys.executable, "-m", "glinker", "link", "-p", str(pipe), str(src), "-o", str(out), "--no-progress"]
    print("running:", " ".join(cmd), flush=True)
    counter = LineCounter(out)
    samples: list[tuple[float, int, int]] = []  # (seconds, rss bytes, output lines)
    start = time.perf_counter()
    errf = open(tmp / "stderr.txt", "w+")  # a file, not a pipe: a chatty child must never block on a full pipe
    child = subprocess.Popen(cmd, stderr=errf, text=True)
    proc = psutil.Process(child.pid)
    while child.poll() is None:
        rss = tree_rss(proc)
        if rss:
            samples.append((time.perf_counter() - start, rss, counter.update()))
        time.sleep(args.interval)
    wall = time.perf_counter() - start
    errf.seek(0)
    err = errf.read()
    errf.close()
    done = counter.update()
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux: KiB

    print(f"exit status {child.returncode}")
    if child.returncode != 0:
        print(err[-2000:])
    ok = report(samples, args.lines, done, wall, peak, args.max_growth_mb) and child.returncode == 0
    if args.json:
        args.json.write_text(json.dumps({"lines": args.lines, "wall_s": wall, "done": done, "peak_rss": peak,
                                         "samples": samples, "kb": str(kb),
                                         "batch_size": args.batch_size}) + "\n")
    if args.keep:
        print(f"kept {tmp}")
    elif tmpobj is not None:
        tmpobj.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
