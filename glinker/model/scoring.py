"""Sparse span x label scoring: chunked over labels, thresholded in logit space, never the dense tensor.

The score of span (b, s, k) against label c is ``span_rep[b, s, k] . P[c]`` and the probability its sigmoid.
Because sigmoid is monotone, ``p > t`` is ``logit > log(t / (1 - t))``; we pre-filter in logit space with a
small safety margin and then apply gliner's exact float32 test ``sigmoid(logit) > t`` on the survivors, so
the result is identical to thresholding the dense tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

DEFAULT_BUDGET_BYTES = 256 * 1024 * 1024
_MARGIN = 1e-3


def logit_threshold(t: float) -> float:
    """``log(t / (1 - t))`` with the edge cases ``t <= 0`` (everything) and ``t >= 1`` (nothing)."""
    if t <= 0.0:
        return -math.inf
    if t >= 1.0:
        return math.inf
    return math.log(t / (1.0 - t))


@dataclass
class Candidates:
    """Sparse candidates in gliner's row-major (b, s, k, c) order."""

    b: torch.Tensor
    s: torch.Tensor
    k: torch.Tensor
    c: torch.Tensor
    score: torch.Tensor  # float32 probabilities

    def __len__(self) -> int:
        return int(self.b.numel())


def score_rows(
    reps: torch.Tensor,
    prompts: torch.Tensor,
    threshold: float,
    prompt_bias: torch.Tensor | None = None,
    row_b: torch.Tensor | None = None,
    class_mask: torch.Tensor | None = None,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, class, prob) with prob > threshold for ``reps`` (N, D') x ``prompts`` (C, D') + ``prompt_bias``.

    Sorted by (row, class). ``class_mask`` (B, C) with ``row_b`` (N,) restricts each row to its text's labels.
    Labels are processed in chunks so at most ``budget_bytes`` of logits exist at a time.
    """
    n, C = reps.shape[0], prompts.shape[0]
    empty = torch.zeros(0, dtype=torch.long, device=reps.device)
    if n == 0 or C == 0 or threshold >= 1.0:
        return empty, empty, torch.zeros(0, device=reps.device)
    lt = logit_threshold(threshold)
    # the pre-filter compares in the logits' dtype: leave room for its rounding (bf16/fp16 are coarse)
    lt -= _MARGIN if reps.dtype == torch.float32 or reps.dtype == torch.float64 else 0.05 + 0.01 * abs(lt)
    chunk = max(1, int(budget_bytes // (4 * n)))
    pt = prompts.to(reps.dtype)
    pb = prompt_bias.to(reps.dtype) if prompt_bias is not None else None
    parts_r, parts_c, parts_p = [], [], []
    for c0 in range(0, C, chunk):
        logits = reps @ pt[c0 : c0 + chunk].T  # (n, chunk)
        if pb is not None:
            logits += pb[c0 : c0 + chunk]
        if class_mask is not None:
            logits.masked_fill_(~class_mask[row_b, c0 : c0 + chunk], -math.inf)
        r, c = torch.nonzero(logits > lt, as_tuple=True)
        if r.numel() == 0:
            continue
        p = torch.sigmoid(logits[r, c].float())
        keep = p > threshold
        parts_r.append(r[keep])
        parts_c.append(c[keep] + c0)
        parts_p.append(p[keep])
    if not parts_r:
        return empty, empty, torch.zeros(0, device=reps.device)
    r, c, p = torch.cat(parts_r), torch.cat(parts_c), torch.cat(parts_p)
    if len(parts_r) > 1:
        order = torch.argsort(r * C + c, stable=True)  # row-major (span, class), as gliner's torch.where
        r, c, p = r[order], c[order], p[order]
    return r, c, p


def score_rows_topk(
    reps: torch.Tensor,
    prompts: torch.Tensor,
    threshold: float,
    top_k: int,
    search: Callable[[Any, int], Any],
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """As :func:`score_rows`, but each row is scored only against the ``top_k`` labels ``search`` retrieves.

    ``search(queries (n, D) float32 numpy, k)`` returns (n, k) int64 label rows by inner product (-1: none),
    e.g. ``LabelBank.search``. The retrieved labels' logits are then computed exactly and thresholded with
    gliner's ``sigmoid(logit) > t``. With an exact index and ``top_k`` at least the number of labels above
    the threshold for every row, the result equals :func:`score_rows`.
    """
    n, C = reps.shape[0], prompts.shape[0]
    empty = torch.zeros(0, dtype=torch.long, device=reps.device)
    if n == 0 or C == 0 or threshold >= 1.0 or top_k < 1:
        return empty, empty, torch.zeros(0, device=reps.device)
    k = min(int(top_k), C)
    D = reps.shape[1]
    # rows per step: the gathered (rows, k, D) label vectors and (rows, k) logits stay under the budget
    step = max(1, int(budget_bytes // (4 * k * (D + 1))))
    parts_r, parts_c, parts_p = [], [], []
    for r0 in range(0, n, step):
        q = reps[r0 : r0 + step]
        ids = torch.as_tensor(search(q.detach().float().cpu().numpy(), k), dtype=torch.long)
        ids = ids.to(reps.device)
        ok = ids >= 0
        lab = prompts[ids.clamp_min(0)].to(reps.dtype)  # (rows, k, D)
        logits = torch.einsum("nd,nkd->nk", q, lab).float()
        p = torch.sigmoid(logits)
        keep = ok & (p > threshold)
        r, j = torch.nonzero(keep, as_tuple=True)
        if r.numel() == 0:
            continue
        parts_r.append(r + r0)
        parts_c.append(ids[r, j])
        parts_p.append(p[r, j])
    if not parts_r:
        return empty, empty, torch.zeros(0, device=reps.device)
    r, c, p = torch.cat(parts_r), torch.cat(parts_c), torch.cat(parts_p)
    order = torch.argsort(r * C + c, stable=True)  # row-major (span, class), as gliner's torch.where
    return r[order], c[order], p[order]


def score_candidates(
    span_rep: torch.Tensor,
    valid: torch.Tensor,
    prompts: torch.Tensor,
    threshold: float,
    class_mask: torch.Tensor | None = None,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
) -> Candidates:
    """Candidates with probability > ``threshold`` among valid spans.

    ``span_rep`` (B, W, K, D); ``valid`` (B, W, K) bool; ``prompts`` (C, D) shared P; ``class_mask`` optional
    (B, C) bool for per-text label sets. Work is chunked over labels so at most ``budget_bytes`` of logits
    exist at a time.
    """
    _, W, K, D = span_rep.shape
    rows = torch.nonzero(valid.reshape(-1)).squeeze(1)  # only valid spans are ever scored
    row_b = rows // (W * K)
    r, c, p = score_rows(
        span_rep.reshape(-1, D)[rows], prompts, threshold, None, row_b, class_mask, budget_bytes
    )
    flat = rows[r]
    rem = flat % (W * K)
    return Candidates(flat // (W * K), rem // K, rem % K, c, p)


def dense_logits(span_rep: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """The full (B, W, K, C) logits; for tests and small inputs only."""
    return torch.einsum("bwkd,cd->bwkc", span_rep, prompts.to(span_rep.dtype))
