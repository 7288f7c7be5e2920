"""Tune the rescore weights and the NIL threshold of a linking pipeline offline, on saved links.

Run the pipeline once on the tuning set with every feature weighted (> 0, so each is computed and kept on the
candidates), ``select`` with ``nil_threshold: 0``, ``one_per_span: false`` and a large ``top_k``, saving the
links; this script then re-ranks the saved candidates for each weight combination exactly as ``rescore`` +
``select`` would (weighted mean of the kept features, NIL under the threshold, overlapping spans resolved by
confidence) and scores them with the same evaluator as ``glinker eval el``; ``coherence`` alone is approximated (its
saved values depend on the weights of the run that saved them: a warning says so). A grid weight that no saved
candidate carries is refused, and ``prior`` needs ``--kb`` (whether the KB has alias counts decides its use). Tune on dev sets only (AIDA testa, the
ELEVANT OKE train splits). Several sets (``--predictions`` and ``--data`` repeated, in pairs) rank every setting by
the mean of their EL F1, so a setting that helps one domain at another's cost does not win.

    glinker eval el -p PIPELINE_WITH_ALL_FEATURES.yaml --data aida_testa.jsonl --save runs/testa-features.jsonl
    python scripts/tune_el.py --predictions runs/testa-features.jsonl --data aida_testa.jsonl --kb KB \\
        --grid 'biencoder=0,1 prior=0,1,2 popularity=0,0.5 alias=0,1 fuzzy=0,0.2 dense=0' --nil 0.1,0.2,0.3

``--missing-prior zero,skip,popularity`` also tries rescore's ``missing_prior`` modes: ``zero`` scores ``prior`` 0
for a mention whose form has no alias counts, ``skip`` leaves it out of that mention's mean, ``popularity`` uses
the saved ``prior`` as it is (save the links with ``missing_prior: popularity`` to have the back-off there). Which
forms have counts is read from ``--kb`` (the pipeline's KB), which a grid trying ``prior`` needs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glinker.eval.datasets import iter_el_files  # noqa: E402
from glinker.eval.el import evaluate_el, load_kb_ids, predictions_from_linked  # noqa: E402
from glinker.io import iter_linked_jsonl  # noqa: E402
from glinker.stages.rescore import effective_missing_prior  # noqa: E402
from glinker.stages.select import _no_overlaps  # noqa: E402
from glinker.types import NIL  # noqa: E402

# rescore feature -> the key it is kept under on a candidate's scores
SCORE_KEY = {"biencoder": "biencoder", "popularity": "popularity", "prior": "prior", "alias": "alias_feature",
             "fuzzy": "fuzzy_feature", "dense": "dense_feature", "type": "type", "coherence": "coherence"}


def parse_grid(spec: str) -> dict[str, list[float]]:
    grid: dict[str, list[float]] = {}
    for part in spec.split():
        name, _, values = part.partition("=")
        if name not in SCORE_KEY:
            raise SystemExit(f"unknown feature {name!r}; features: {', '.join(SCORE_KEY)}")
        grid[name] = [float(v) for v in values.split(",")]
    return grid


def saved_features(path: str) -> set[str]:
    """The grid features (``SCORE_KEY``'s names) some candidate of the saved links carries a score of."""
    keys = {v: k for k, v in SCORE_KEY.items()}
    return {keys[s] for d in iter_linked_jsonl(path) for ln in d.links for c in ln.candidates
            for s in c.scores if s in keys}


@dataclass
class _Span:
    start: int
    end: int


@dataclass
class _Link:  # what select's overlap removal reads of a Link
    mention: _Span
    entity_id: str
    confidence: float

    @property
    def is_nil(self) -> bool:
        return self.entity_id == NIL


def load_features(path: str, kb_dir: str | None = None
                  ) -> tuple[list[str], list[tuple[str | None, list[tuple[_Span, list[str], Any, bool]]]]]:
    """Saved links as (doc id, [(span, candidate ids, feature matrix candidates x features, form has counts)]),
    features in the order of ``SCORE_KEY``; a feature missing on a candidate counts 0, as in ``rescore``. Whether
    the mention's form has alias counts comes from the KB at ``kb_dir``, else from a ``prior`` score being kept."""
    import numpy as np

    names = list(SCORE_KEY)
    docs = []
    for d in iter_linked_jsonl(path):
        links = []
        for ln in d.links:
            ids = [c.entity_id for c in ln.candidates]
            F = np.array([[c.scores.get(SCORE_KEY[n], 0.0) for n in names] for c in ln.candidates],
                         dtype=np.float64).reshape(len(ids), len(names))
            counted = any("prior" in c.scores for c in ln.candidates)
            has_coh = any("coherence" in c.scores for c in ln.candidates)  # else coherence left out of its mean
            links.append((_Span(ln.mention.start, ln.mention.end), ids, F, counted, has_coh, ln.mention.text))
        docs.append((d.id, links))
    if kb_dir is not None:
        from glinker.kb import KB

        from glinker.kb.store import normalize_alias
        from glinker.stages.records import document_prior_sources

        with KB.open(kb_dir) as kb:
            has = kb.prior(sorted({t for _, links in docs for *_, t in links}))

        def counted(links: list[Any]) -> list[bool]:
            # rescore's in_document_prior: a form without counts borrows those of a longer mention of its document
            # or, when none has, the best candidate of the first longer one written as a name
            texts = [t for *_, t in links]
            own = [t in has for t in texts]
            from_counts, from_name = document_prior_sources(texts, [normalize_alias(t) for t in texts], own,
                                                            [bool(ids) for _, ids, *_ in links])
            return [c or j in from_counts or j in from_name for j, c in enumerate(own)]

        docs = [(i, [(s, ids, F, c, h, t) for (s, ids, F, _, h, t), c in zip(links, counted(links))])
                for i, links in docs]
    return names, [(i, [lk[:5] for lk in links]) for i, links in docs]


def _weight_vector(names: list[str], weights: dict[str, float]) -> Any:
    import numpy as np

    total = sum(weights.values())
    return np.array([weights.get(n, 0.0) / total if total > 0 else 0.0 for n in names])


# rescore's own resolution of ``missing_prior`` (``auto``; ``prior`` left out for a KB without counts)
effective = effective_missing_prior


def relink(names: list[str], docs: list[Any], weights: dict[str, float], nil: float,
           missing_prior: str = "zero") -> list[dict[str, Any]]:
    """The links ``rescore`` (these weights, this ``missing_prior``) + ``select`` (this NIL threshold, one per
    span) would give, as the linked-document dicts the evaluator reads (best candidate only)."""
    import numpy as np

    w = _weight_vector(names, weights)
    w_unknown = _weight_vector(names, {k: v for k, v in weights.items() if k != "prior"}) \
        if missing_prior == "skip" else w
    if missing_prior == "zero":  # the saved prior of a form without counts (a popularity back-off) counts 0
        w_unknown = w.copy()
        w_unknown[names.index("prior")] = 0.0

    def without_coherence(v: Any) -> Any:  # a mention with no context: coherence out of its mean, as in rescore
        v, i = v.copy(), names.index("coherence")
        rest = 1.0 - v[i]
        v[i] = 0.0
        return v / rest if rest > 0 else v

    ws = {(True, True): w, (False, True): w_unknown, (True, False): without_coherence(w),
          (False, False): without_coherence(w_unknown)}
    out = []
    for doc_id, links in docs:
        chosen = []
        for span, ids, F, counted, has_coh in links:
            if not ids:
                chosen.append(_Link(span, NIL, 0.0))
                continue
            s = F @ ws[(counted, has_coh)]
            top = s.max()
            best = min(ids[i] for i in np.flatnonzero(s == top))  # ties: smallest entity id, like select
            chosen.append(_Link(span, best if top >= nil else NIL, round(float(top), 6)))
        kept = _no_overlaps(chosen)  # type: ignore[arg-type]
        out.append({"id": doc_id, "links": [{"mention": {"start": ln.mention.start, "end": ln.mention.end},
                                             "entity_id": ln.entity_id,
                                             "candidates": [] if ln.is_nil else [ln.entity_id]} for ln in kept]})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--predictions", required=True, action="append",
                    help="links saved with every feature on the candidates (repeatable, one per --data)")
    ap.add_argument("--data", required=True, action="append",
                    help="gold documents of a tuning set (repeatable; 'A,B' reads several files as one set, as "
                         "`glinker eval el --data A --data B` does)")
    ap.add_argument("--kb-ids", default=None)
    ap.add_argument("--grid", required=True, help="'feature=v1,v2 feature=v1,...' (one weight list per feature)")
    ap.add_argument("--nil", default="0", help="NIL thresholds to try, comma-separated")
    ap.add_argument("--missing-prior", default="zero", help="rescore missing_prior modes to try: zero,skip,popularity")
    ap.add_argument("--kb", default=None, help="the pipeline's KB: which mention forms have alias counts")
    ap.add_argument("--top", type=int, default=15, help="rows to print, best EL F1 first")
    ap.add_argument("--json", default=None, help="write every row as JSON lines here")
    args = ap.parse_args()
    if len(args.predictions) != len(args.data):
        raise SystemExit("give one --predictions file per --data file, in the same order")
    # the arguments first: a mistake in them is said before every file is read
    grid = parse_grid(args.grid)
    nils = [float(x) for x in args.nil.split(",")]
    modes = args.missing_prior.split(",")
    if not set(modes) <= {"zero", "skip", "popularity", "auto"}:
        raise SystemExit("--missing-prior: zero, skip, popularity and/or auto")
    if {"popularity", "auto"} & set(modes) and args.kb is None:
        raise SystemExit("--missing-prior popularity/auto needs --kb (which forms have alias counts)")
    if any(v > 0 for v in grid.get("prior", [])) and args.kb is None:
        # rescore leaves `prior` out of the mean for a KB without alias counts: taken as counted, such a KB's rows
        # with prior > 0 scored ~0 where the pipeline scores them well
        raise SystemExit("--grid tries prior > 0: give --kb (the pipeline's KB), whose alias counts decide how rescore "
                         "uses the prior")
    sets = []
    for pred, data in zip(args.predictions, args.data):
        names, docs = load_features(pred, args.kb)
        files = data.split(",")  # several files read as one set, ids prefixed as by `glinker eval el --data A --data B`
        sets.append(("+".join(Path(f).name.split(".")[0] for f in files), list(iter_el_files(files)), docs))
    kb = load_kb_ids(args.kb_ids) if args.kb_ids else None
    saved = {n for pred in args.predictions for n in saved_features(pred)}
    never = [n for n, vs in grid.items() if any(v > 0 for v in vs) and n not in saved and n != "prior"]
    if never:  # scored 0 on every candidate: its rows look plausible and mean nothing
        raise SystemExit(f"--grid weights {', '.join(never)}, which no saved candidate carries: save the links with "
                         "those features weighted (> 0) in the pipeline's rescore, or drop them from the grid")
    if any(v > 0 for v in grid.get("coherence", [])):
        print("warning: coherence is approximated: its saved values come from the other mentions' best candidates "
              "under the weights of the run that saved them, and change with the weights tried here; confirm a row "
              "with coherence by running the pipeline with its weights", file=sys.stderr)
    kb_counted = True  # rescore leaves `prior` out for a KB without any counts (unless it backs off to popularity)
    if args.kb is not None:
        from glinker.kb import KB

        with KB.open(args.kb) as k:
            kb_counted = bool(k.store.alias_count_pairs())
    if kb_counted and any(v > 0 for v in grid.get("prior", [])) and "prior" not in saved:
        raise SystemExit("--grid tries prior, which no saved candidate carries while the KB has alias counts: save "
                         "the links with prior weighted (> 0) in the pipeline's rescore, or drop it from the grid")

    rows: list[dict[str, Any]] = []
    for values in itertools.product(*grid.values()):
        weights = dict(zip(grid, values))
        if not any(v > 0 for v in weights.values()):
            continue
        for mode, nil in itertools.product(modes if weights.get("prior", 0) > 0 else ["zero"], nils):
            m, w = effective(mode, weights, kb_counted)
            per_set = {}
            for set_name, gold, docs in sets:
                rep = evaluate_el(gold, predictions_from_linked(relink(names, docs, w, nil, m)), kb=kb, ks=[1])
                per_set[set_name] = {"f1": rep.linking.f1, "p": rep.linking.precision, "r": rep.linking.recall,
                                     "ed_acc": rep.ed_acc}
            rows.append({"weights": {k: v for k, v in weights.items() if v > 0}, "missing_prior": mode, "nil": nil,
                         **(next(iter(per_set.values())) if len(sets) == 1 else
                            {"f1": sum(r["f1"] for r in per_set.values()) / len(sets), "sets": per_set})})
    rows.sort(key=lambda r: -r["f1"])
    if args.json:
        Path(args.json).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    if len(sets) == 1:
        print("| weights | missing_prior | NIL | EL F1 | P | R | ED acc |\n|---|---|---|---|---|---|---|")
    else:
        print("| weights | missing_prior | NIL | mean EL F1 | " + " | ".join(n for n, *_ in sets) + " |\n|"
              + "---|" * (4 + len(sets)))
    for r in rows[: args.top]:
        wt = ", ".join(f"{k} {v:g}" for k, v in r["weights"].items())
        cells = ([f"{100 * r['f1']:.1f}", f"{100 * r['p']:.1f}", f"{100 * r['r']:.1f}", f"{100 * r['ed_acc']:.1f}"]
                 if len(sets) == 1 else [f"{100 * r['f1']:.1f}", *(f"{100 * v['f1']:.1f}" for v in r["sets"].values())])
        print(f"| {wt} | {r['missing_prior']} | {r['nil']:g} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
