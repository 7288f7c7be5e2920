"""Sparse span x label scoring: chunked over labels, thresholded in logit space, never the dense tensor.

The score of span (b, s, k) against label c is ``span_rep[b, s, k] . P[c]`` and the probability its sigmoid.
Because sigmoid is monotone, ``p > t`` is ``logit > log(t / (1 - t))``; we pre-filter in logit space with a
small safety margin and then apply gliner's exact float32 test ``sigmoid(logit) > t`` on the survivors, so
the result is identical to thresholding the dense tensor.

The low-precision pre-filter. Where bfloat16 matrix products are much faster than float32 ones (CPUs with AMX
or AVX512-BF16, GPUs), the span x label product is first computed in bfloat16 with float32 accumulation, and
only the pairs it cannot rule out are scored in float32. Write r~ = bf16(r), dr = r - r~ (exactly known in
float32), likewise p~, dp. In exact arithmetic r.p = r~.p~ + dr.p~ + r~.dp + dr.dp, so by Cauchy-Schwarz the
bfloat16 product (exact products, float32 accumulation) differs from r.p by at most
``|dr||p~| + |r~||dp| + |dr||dp| + gamma_D(|r~||p~| + |r||p|)``, where gamma_D = D 2^-24 bounds float32
accumulation on either side; the bfloat16 output rounds once more, by at most u = 2^-8 of its value, and a
monotone correction handles that exactly. The norms are measured, not worst-cased, so the bound is typically
five times tighter than 4u|r||p|. Every (span, label) whose bfloat16 logit is within that bound of the threshold
or above it is re-scored in float32; the rest cannot pass. Results are therefore the float32 results (up to
float32 summation order), only the work is cheaper. :func:`lowp_prefilter` measures once per device whether
bfloat16 is faster here and checks the bound on a random product before turning the pre-filter on;
``GLINKER_PREFILTER=off`` turns it off.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

DEFAULT_BUDGET_BYTES = 256 * 1024 * 1024
_MARGIN = 1e-3
# the pre-filter pays off only on products big enough to amortise its casts: a float32 product with fewer
# labels costs about as much as one pass over the rows (measured: 3,000 x 2,048 rows, fp32 wins below ~128)
LOWP_MIN_WORK = 1 << 16
LOWP_MIN_LABELS = 128
# above this share of survivors the pre-filter saved nothing: score the chunk in float32 directly
LOWP_MAX_SURVIVORS = 0.05
LOWP_ROW_BLOCK = 256
LOWP_ROW_ALIGN = 64


@dataclass(frozen=True)
class LowpInfo:
    """What :func:`lowp_prefilter` measured on a device: the dtype and its speed over float32."""

    dtype: torch.dtype
    speedup: float


_LOWP: dict[str, LowpInfo | None] = {}


def lowp_prefilter(device: torch.device | str = "cpu") -> LowpInfo | None:
    """The low-precision pre-filter for ``device``, or None where it would not be faster or not be safe.

    Measured once per device type and thread count: a (256 x 1024) @ (1024 x 512) product in float32 and in
    bfloat16 (best of 3 each); on only if bfloat16 is at least 2x faster and its error on that product stays
    inside the bound the filter relies on. ``GLINKER_PREFILTER=off|bf16|auto`` overrides (auto: measure).
    """
    mode = os.environ.get("GLINKER_PREFILTER", "auto").strip().lower()
    if mode in ("off", "0", "false", "no"):
        return None
    dev = torch.device(device)
    key = f"{dev.type}:{torch.get_num_threads()}:{mode}"
    if key in _LOWP:
        return _LOWP[key]
    info = _measure_lowp(dev, force=mode == "bf16")
    _LOWP[key] = info
    log.info(
        "low-precision pre-filter on %s: %s",
        dev.type,
        f"bfloat16, {info.speedup:.1f}x float32" if info else "off (bfloat16 not faster here)",
    )
    return info


def _measure_lowp(dev: torch.device, force: bool) -> LowpInfo | None:
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(256, 1024, generator=g).to(dev)
    b = torch.randn(1024, 512, generator=g).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def best(fn: Callable[[], Any]) -> float:
        fn()
        sync()
        t = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            sync()
            t = min(t, time.perf_counter() - t0)
        return t

    try:
        ab, bb = a.to(torch.bfloat16), b.to(torch.bfloat16)
        t32 = best(lambda: a @ b)
        t16 = best(lambda: ab @ bb)
        err = ((ab @ bb).float() - a @ b).abs()
    except RuntimeError:  # no bfloat16 matmul on this device
        return None
    lab = LowpLabels.build(b.T.contiguous(), None, torch.bfloat16)
    # -t at threshold 0 is the bound itself (plus the margin): every product must lie within it
    slack = lab.prepare_rows(a, 0.0)[:, -1].float() - _MARGIN
    # the output's own rounding (u of the value) is not part of the bound: the filter only tests the sign
    if not bool((err <= slack[:, None] + 2.0**-8 * (a @ b).abs()).all()):
        log.warning("bfloat16 products here exceed the pre-filter's error bound: pre-filter off")
        return None
    speedup = t32 / max(t16, 1e-9)
    if force or speedup >= 2.0:
        return LowpInfo(torch.bfloat16, speedup)
    return None


@dataclass
class LowpLabels:
    """Label vectors prepared for the pre-filter: ``[P, bias, 1]`` in low precision, transposed, with norms.

    The bias rides in the product as an extra row (spans get a constant 1 there), so the bound covers it; the
    last row multiplies each span's negated threshold (:meth:`prepare_rows`), so a pair survives the filter
    exactly when its low-precision product is positive. Build once per label set (:meth:`build`).
    """

    vectors_t: torch.Tensor  # (D + 2, C) low precision, contiguous
    norm_max: float  # max |[p, b]| (float32)
    low_norm_max: float  # max |[p~, b~]|
    err_norm_max: float  # max |[p, b] - [p~, b~]|

    @classmethod
    def build(cls, prompts: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> LowpLabels:
        p = prompts.detach().float()
        col = bias.detach().float()[:, None] if bias is not None else p.new_zeros(p.shape[0], 1)
        aug = torch.cat([p, col], dim=1)
        low = aug.to(dtype)
        vt = torch.cat([low, low.new_ones(low.shape[0], 1)], dim=1).T.contiguous()
        if aug.shape[0] == 0:
            return cls(vt, 0.0, 0.0, 0.0)
        lowf = low.float()
        return cls(
            vt,
            float(aug.norm(dim=1).max()),
            float(lowf.norm(dim=1).max()),
            float((aug - lowf).norm(dim=1).max()),
        )

    def prepare_rows(self, reps: torch.Tensor, lt: float, rows: int | None = None) -> torch.Tensor:
        """``[reps, 1, -t]`` in the low precision, zero rows padding it to ``rows``.

        ``t`` is each row's threshold: a float32 logit above ``lt`` (less the float32 margin) implies that the
        row's low-precision product with ``[p, b, 1]`` is positive. Both sides' rounding errors are measured:
        the labels' once (``err_norm_max``), the rows' here. With gamma bounding float32 accumulation:
        slack = |dr||p~| + |r~||dp| + |dr||dp| + gamma(|r~||p~| + |r||p|), a = lt - margin - slack, and t is a
        low-precision number at most a - 2 gamma |a| - 1e-30 (room for accumulating t itself), so the product
        is at least 1e-30 and its rounding to the output type keeps the sign.
        """
        n, d = reps.shape
        u = _unit_roundoff(self.vectors_t.dtype)
        low = torch.empty(max(n, rows or 0), d + 2, dtype=self.vectors_t.dtype, device=reps.device)
        low[:n, :d].copy_(reps)
        low[:n, d] = 1.0
        low[n:] = 0.0  # padding rows: a zero product, never positive
        r = reps.float()
        lowf = low[:n, :d].float()
        n_r = torch.sqrt(torch.linalg.vector_norm(r, dim=1).square_() + 1.0)  # |[r, 1]|: the 1 is exact
        n_low = torch.sqrt(torch.linalg.vector_norm(lowf, dim=1).square_() + 1.0)
        n_err = torch.linalg.vector_norm(lowf.sub_(r), dim=1)
        gamma = 1.01 * (d + 2) * 2.0**-24
        slack = (
            n_err * self.low_norm_max
            + n_low * self.err_norm_max
            + n_err * self.err_norm_max
            + gamma * (n_low * self.low_norm_max + n_r * self.norm_max)
        )
        a = lt - _MARGIN - slack
        a = a - 2.0 * gamma * a.abs() - 1e-30
        # y = a - 2u|a| rounds (to nearest) to at most a
        low[:n, d + 1] = -(a - 2.0 * u * a.abs()).to(self.vectors_t.dtype)
        return low


def positive_positions(x: torch.Tensor) -> torch.Tensor:
    """Flat indices of the positive entries of a bfloat16 tensor (and of +NaN; callers re-check in float32).

    Much cheaper than ``nonzero(x > 0)`` on CPU: the sign test reads the bits as int16, and the search runs
    over 64-bit words of 8 flags, which are almost all zero when survivors are rare.
    """
    flags = x.view(torch.int16) > 0  # bfloat16 bit patterns: positive numbers (and +NaN) only
    flat = flags.reshape(-1)
    if flat.numel() % 8:
        return torch.nonzero(flat, as_tuple=True)[0]
    words = torch.nonzero(flat.view(torch.int64), as_tuple=True)[0]
    if words.numel() == 0:
        return words
    pos = (words[:, None] * 8 + torch.arange(8, device=x.device)).reshape(-1)
    return pos[flat[pos]]


def _unit_roundoff(dtype: torch.dtype) -> float:
    return 2.0**-8 if dtype == torch.bfloat16 else 2.0**-11


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
    lowp: LowpLabels | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, class, prob) with prob > threshold for ``reps`` (N, D') x ``prompts`` (C, D') + ``prompt_bias``.

    Sorted by (row, class). ``class_mask`` (B, C) with ``row_b`` (N,) restricts each row to its text's labels.
    Labels are processed in chunks so at most ``budget_bytes`` of logits exist at a time. ``lowp`` (the same
    labels and bias from :meth:`LowpLabels.build`) turns on the low-precision pre-filter for float32 ``reps``.
    """
    n, C = reps.shape[0], prompts.shape[0]
    empty = torch.zeros(0, dtype=torch.long, device=reps.device)
    if n == 0 or C == 0 or threshold >= 1.0:
        return empty, empty, torch.zeros(0, device=reps.device)
    lt = logit_threshold(threshold)
    if lowp is not None and reps.dtype == torch.float32 and lt > -math.inf and _lowp_pays(n, C):
        return _score_rows_lowp(reps, prompts, lt, threshold, prompt_bias, row_b, class_mask, budget_bytes, lowp)
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


def _lowp_pays(n: int, C: int) -> bool:
    return n * C >= LOWP_MIN_WORK and C >= LOWP_MIN_LABELS


def _score_rows_lowp(
    reps: torch.Tensor,
    prompts: torch.Tensor,
    lt: float,
    threshold: float,
    prompt_bias: torch.Tensor | None,
    row_b: torch.Tensor | None,
    class_mask: torch.Tensor | None,
    budget_bytes: int,
    lowp: LowpLabels,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`score_rows` through the low-precision pre-filter; the same result (see the module docstring)."""
    n, C = reps.shape[0], prompts.shape[0]
    # fixed-size row blocks: oneDNN compiles a kernel per product shape, so varying row counts cost ~40 ms each
    rb = LOWP_ROW_BLOCK
    # the last block is padded to a multiple of LOWP_ROW_ALIGN only: at most rb / align shapes per label chunk
    full = n // rb * rb
    low = lowp.prepare_rows(reps, lt, rows=full + -(-(n - full) // LOWP_ROW_ALIGN) * LOWP_ROW_ALIGN)
    chunk = max(1, int(budget_bytes // (4 * rb)))
    parts_r, parts_c, parts_p = [], [], []
    for c0 in range(0, C, chunk):
        c1 = min(C, c0 + chunk)
        vt = lowp.vectors_t[:, c0:c1]
        for r0 in range(0, n, rb):
            r1 = min(n, r0 + rb)
            pos = positive_positions(low[r0 : r0 + rb] @ vt)  # padding rows are never positive
            if pos.numel() == 0:
                continue
            r, c = pos // (c1 - c0) + r0, pos % (c1 - c0) + c0
            if class_mask is not None:
                keep = class_mask[row_b[r], c]
                r, c = r[keep], c[keep]
                if r.numel() == 0:
                    continue
            if r.numel() > LOWP_MAX_SURVIVORS * (r1 - r0) * (c1 - c0):  # too close to call: plain float32
                logits = reps[r0:r1] @ prompts[c0:c1].T.to(reps.dtype)
                logits = logits[r - r0, c - c0]
            else:
                logits = torch.linalg.vecdot(reps[r], prompts[c].to(reps.dtype))
            if prompt_bias is not None:
                logits += prompt_bias[c].to(reps.dtype)
            p = torch.sigmoid(logits)
            keep = p > threshold
            parts_r.append(r[keep])
            parts_c.append(c[keep])
            parts_p.append(p[keep])
    if not parts_r:
        empty = torch.zeros(0, dtype=torch.long, device=reps.device)
        return empty, empty, torch.zeros(0, device=reps.device)
    r, c, p = torch.cat(parts_r), torch.cat(parts_c), torch.cat(parts_p)
    if len(parts_r) > 1:
        order = torch.argsort(r * C + c, stable=True)
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
