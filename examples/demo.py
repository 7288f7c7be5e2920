"""The README's demo: run a shipped pipeline over the example texts and print what it finds.

Uses the most complete pipeline available in this checkout (see docs/getting-started.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main() -> int:
    import glinker

    texts = [json.loads(line) for line in (HERE / "texts.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    pipeline = glinker.load_pipeline(str(ROOT / "pipelines" / "rules.yaml"))
    print(f"pipeline {pipeline.name!r}:")
    print(pipeline.describe())
    print()
    for doc, mentions in zip(texts, pipeline(texts)):
        print(f"[{doc['id']}] {doc['text']}")
        for m in mentions:
            print(f"    {m.start:>4}-{m.end:<4} {m.label:<12} {m.text}")
    print()
    print(pipeline.stats.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
