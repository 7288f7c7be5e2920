"""gliner's greedy span decoding (flat, nested, multi-label) on sparse candidates."""

from __future__ import annotations

from collections.abc import Sequence


def _clash(a: tuple[int, int], b: tuple[int, int], flat: bool, multi_label: bool) -> bool:
    if a == b:
        return not multi_label
    disjoint = a[0] > b[1] or b[0] > a[1]
    if flat:
        return not disjoint
    nested = (a[0] <= b[0] and a[1] >= b[1]) or (b[0] <= a[0] and b[1] >= a[1])
    return not (disjoint or nested)


def _by_score(cands: Sequence[tuple[int, int, int, float]], tie_eps: float) -> list[int]:
    """Indices by descending score; scores within ``tie_eps`` of a group's best keep candidate order.

    gliner sorts by exact float score, so exact ties (e.g. spans whose vectors are identical) keep candidate
    order. Our scores differ from gliner's by float rounding (~1e-7), which must not reorder such ties.
    """
    order = sorted(range(len(cands)), key=lambda i: -cands[i][3])
    out: list[int] = []
    g0 = 0
    for j in range(1, len(order) + 1):
        if j == len(order) or cands[order[g0]][3] - cands[order[j]][3] > tie_eps:
            out.extend(sorted(order[g0:j]))
            g0 = j
    return out


def greedy_decode(
    cands: Sequence[tuple[int, int, int, float]],
    flat_ner: bool = True,
    multi_label: bool = False,
    tie_eps: float = 1e-7,
) -> list[tuple[int, int, int, float]]:
    """Select non-clashing (start, end_inclusive, class, score) candidates by descending score.

    ``cands`` must be in gliner's candidate order (start, width, class); ties keep that order.
    The result is sorted by start, stably, as gliner's ``greedy_search``.
    """
    chosen: list[tuple[int, int, int, float]] = []
    accepted: set[tuple[int, int]] = set()
    # word -> distinct accepted spans covering it: only overlapping spans can clash, so a candidate is checked
    # against the spans over its own words, not against every accepted entity (quadratic with many labels)
    covering: dict[int, set[tuple[int, int]]] = {}
    for i in _by_score(cands, tie_eps):
        cand = cands[i]
        span = (cand[0], cand[1])
        if span in accepted:
            # an accepted span clashes with none of the others (clashing is symmetric), so its repeats with
            # other labels pass exactly when the same span may carry several labels
            if multi_label:
                chosen.append(cand)
            continue
        near = {o for w in range(span[0], span[1] + 1) for o in covering.get(w, ())}
        if any(_clash(span, o, flat_ner, multi_label) for o in near):
            continue
        chosen.append(cand)
        accepted.add(span)
        for w in range(span[0], span[1] + 1):
            covering.setdefault(w, set()).add(span)
    chosen.sort(key=lambda x: x[0])
    return chosen
