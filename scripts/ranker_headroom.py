"""How much a learned candidate ranker could add over rescore's weighted mean, on saved features.

Reads links saved with every rescore feature kept (as for ``scripts/tune_el.py``), keeps the gold mentions whose
entity is among two or more saved candidates, and reports the share ranked first (a) by the given fixed weights
(rescore's weighted mean), (b) by a linear softmax ranker over the same five features and (c) by one with cross
features (margins to the best candidate, the prior split by whether the form has counts, products), both fitted
by L-BFGS and scored by 5-fold cross-validation over documents. It answers whether the features the pipeline
computes separate the gold entity better than hand-tuned weights do; it ships nothing.

    python scripts/ranker_headroom.py --predictions runs/testa-feat.jsonl --data aida_testa.jsonl \\
        --kb kb_out/aida-final [--predictions B --data B1,B2 ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tune_el import load_features, parse_grid  # noqa: E402

BASE = ("biencoder", "prior", "alias", "popularity", "coherence")


def features(F, names: list[str], counted: bool, cross: bool):
    import numpy as np

    col = {n: F[:, names.index(n)] for n in names}
    base = [col[n] for n in BASE]
    if not cross:
        return np.stack(base, 1)
    b, pr, coh, c = col["biencoder"], col["prior"], col["coherence"], float(counted)
    extra = [b - b.max(), pr * c, pr * (1 - c), col["popularity"] * (1 - c), b * (1 - c), coh - coh.max(),
             (b == b.max()).astype(float), (pr == pr.max()).astype(float) * c, b * pr, col["dense"], col["fuzzy"]]
    return np.stack(base + extra, 1)


def fit(X: list, y: list[int], l2: float = 1e-3):
    import torch

    Xt = [torch.tensor(x, dtype=torch.float32) for x in X]
    w = torch.zeros(Xt[0].shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = sum(-torch.log_softmax(x @ w, 0)[t] for x, t in zip(Xt, y)) / len(Xt) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy()


def main() -> int:
    import numpy as np

    from glinker.eval.datasets import iter_el_files

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--predictions", required=True, action="append", help="saved links with all features (repeat)")
    ap.add_argument("--data", required=True, action="append", help="their gold file(s), comma-separated (repeat)")
    ap.add_argument("--kb", default=None, help="the pipeline's KB: which mention forms have alias counts")
    ap.add_argument("--weights", default="biencoder=1 prior=0.5 alias=1 popularity=0.25 coherence=0.25",
                    help="the fixed weights to compare with (pipelines/wikidata.yaml's)")
    ap.add_argument("--folds", type=int, default=5)
    a = ap.parse_args()
    if len(a.predictions) != len(a.data):
        ap.error("give --predictions and --data in pairs")
    fixed = {k: v[0] for k, v in parse_grid(a.weights).items()}
    ship = np.array([fixed.get(n, 0.0) for n in BASE])
    for pred, data in zip(a.predictions, a.data):
        names, docs = load_features(pred, a.kb)
        gold = {d.id: d for d in iter_el_files(data.split(","))}
        rows = []
        for did, links in docs:
            g = {(m.start, m.end): m.entity_id for m in gold[did].mentions}
            for span, ids, F, counted, _ in links:
                e = g.get((span.start, span.end))
                if e and e in ids and len(ids) > 1:
                    rows.append((did, F, ids.index(e), counted))
        doc_ids = sorted({r[0] for r in rows})
        np.random.RandomState(0).shuffle(doc_ids)
        hits = {"fixed weights": 0, "linear ranker (CV)": 0, "cross-feature ranker (CV)": 0}
        for k in range(a.folds):
            held = set(doc_ids[k::a.folds])
            tr = [r for r in rows if r[0] not in held]
            te = [r for r in rows if r[0] in held]
            hits["fixed weights"] += sum(np.argmax(features(F, names, c, False) @ ship) == t for _, F, t, c in te)
            for label, cross in (("linear ranker (CV)", False), ("cross-feature ranker (CV)", True)):
                w = fit([features(F, names, c, cross) for _, F, _, c in tr], [t for _, _, t, _ in tr])
                hits[label] += sum(np.argmax(features(F, names, c, cross) @ w) == t for _, F, t, c in te)
        print(f"{pred}: {len(rows)} gold mentions among 2+ candidates, {len(doc_ids)} documents")
        for label, n in hits.items():
            print(f"  {label:28s} {100 * n / max(1, len(rows)):6.2f}% ranked first")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
