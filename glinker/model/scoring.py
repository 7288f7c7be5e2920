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
monotone correction handles that exactly. The labels' rounding errors are measured once per label set; the
rows' are bounded by rounding to nearest, |dr| <= u|r|, which needs one norm per row. Every (span, label)
whose bfloat16 logit is within that bound of the threshold or above it is re-scored in float32; the rest
cannot pass. Results are therefore the float32 results (up to float32 summation order), only the work is
cheaper. :func:`lowp_prefilter` measures once per device whether bfloat16 is faster here and checks the bound on
a random product before turning the pre-filter on; ``GLINKER_PREFILTER=off`` turns it off.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
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
# a row with more than this share of labels surviving is re-scored by one float32 row x labels product
LOWP_MAX_SURVIVORS = 0.05
LOWP_ROW_BLOCK = 1024
LOWP_ROW_TAIL = 256
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


def _probe(dev: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float] | None:
    """The probe product on ``dev``: its float32 operands, the bfloat16 result, and how many times faster the
    bfloat16 product runs than the float32 one (best of 3 each); None where bfloat16 products are not available."""
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
        return a, b, ab @ bb, t32 / max(t16, 1e-9)
    except RuntimeError:  # no bfloat16 matmul on this device
        return None


def bf16_speedup(device: torch.device | str = "cpu") -> float | None:
    """How many times faster a bfloat16 matrix product runs than a float32 one on ``device`` (below 1: slower,
    as on CPUs without AMX or AVX512-BF16); None where bfloat16 products are not available."""
    probe = _probe(torch.device(device))
    return probe[3] if probe is not None else None


def _measure_lowp(dev: torch.device, force: bool) -> LowpInfo | None:
    probe = _probe(dev)
    if probe is None:
        return None
    a, b, prod16, speedup = probe
    err = (prod16.float() - a @ b).abs()
    lab = LowpLabels.build(b.T.contiguous(), None, torch.bfloat16)
    # -t at threshold 0 is the bound itself (plus the margin): every product must lie within it
    slack = lab.prepare_rows(a, 0.0)[:, -1].float() - _MARGIN
    # the output's own rounding (u of the value) is not part of the bound: the filter only tests the sign
    if not bool((err <= slack[:, None] + 2.0**-8 * (a @ b).abs()).all()):
        log.warning("bfloat16 products here exceed the pre-filter's error bound: pre-filter off")
        return None
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
        return cls(vt, *_rounding_norms(aug, low))

    def prepare_rows(
        self, reps: torch.Tensor, lt: float, rows: int | None = None, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[reps, 1, -t]`` in the low precision, zero rows padding it to ``rows`` (or written into ``out``).

        ``t`` is each row's threshold: a float32 logit above ``lt`` (less the float32 margin) implies that the
        row's low-precision product with ``[p, b, 1]`` is positive. The labels' rounding error is measured once
        (``err_norm_max``), the rows' bounded by their norm (round to nearest: |dr| <= u|r|). With gamma
        bounding float32 accumulation:
        slack = |dr||p~| + |r~||dp| + |dr||dp| + gamma(|r~||p~| + |r||p|), a = lt - margin - slack, and t is a
        low-precision number at most a - 2 gamma |a| - 1e-30 (room for accumulating t itself), so the product
        is at least 1e-30 and its rounding to the output type keeps the sign.
        """
        n, d = reps.shape
        u = _unit_roundoff(self.vectors_t.dtype)
        if out is None:
            low = torch.empty(max(n, rows or 0), d + 2, dtype=self.vectors_t.dtype, device=reps.device)
        else:
            low = out
        low[:n, :d].copy_(reps)
        low[:n, d] = 1.0
        low[n:] = 0.0  # padding rows: a zero product, never positive
        gamma = 1.01 * (d + 2) * 2.0**-24
        a = lt - _MARGIN - self.row_slack(reps)
        a = a - 2.0 * gamma * a.abs() - 1e-30
        # y = a - 2u|a| rounds (to nearest) to at most a
        low[:n, d + 1] = -(a - 2.0 * u * a.abs()).to(self.vectors_t.dtype)
        return low

    def row_slack(self, reps: torch.Tensor) -> torch.Tensor:
        """Per row of ``reps`` (n, D), a bound on |float32 logit - low-precision product| against any of these
        labels (before the product's own output rounding): see :meth:`prepare_rows`."""
        d = reps.shape[1]
        u = _unit_roundoff(self.vectors_t.dtype)
        # Rounding to nearest moves each entry by at most u of its magnitude, so |dr| <= u|r| and
        # |r~| <= (1 + u)|r|: one float32 norm bounds all three (measuring dr costs five passes over the rows
        # and tightens the bound by only ~2x). 1 + gamma covers the norm's own float32 summation; 1e-30 the
        # absolute error of subnormals.
        gamma = 1.01 * (d + 2) * 2.0**-24
        n_r = torch.linalg.vector_norm(reps.float(), dim=1).mul_(1.0 + gamma)
        n_err = n_r * u + 1e-30
        n_low = torch.sqrt((n_r * (1.0 + u)).square_() + 1.0)  # |[r~, 1]|: the 1 is exact
        n_r = torch.sqrt(n_r.square() + 1.0)
        return (
            n_err * self.low_norm_max
            + n_low * self.err_norm_max
            + n_err * self.err_norm_max
            + gamma * (n_low * self.low_norm_max + n_r * self.norm_max)
        )


def _rounding_norms(v: torch.Tensor, low: torch.Tensor) -> tuple[float, float, float]:
    """max |v|, max |v~| and max |v - v~| over the rows of float32 ``v`` and its low-precision copy ``low``."""
    if v.shape[0] == 0:
        return 0.0, 0.0, 0.0
    lowf = low.float()
    return float(v.norm(dim=1).max()), float(lowf.norm(dim=1).max()), float((v - lowf).norm(dim=1).max())


def positive_positions(x: torch.Tensor) -> torch.Tensor:
    """Flat indices of the positive entries of a 2-D bfloat16 tensor (and of +NaN; callers re-check in float32).

    Much cheaper than ``nonzero(x > 0)`` on CPU: the bits are read as int16 (positive numbers are the positive
    patterns), a row maximum screens out the rows without a survivor (almost all of them when survivors are
    rare: a vectorised reduction, ~5x cheaper than a comparison pass), and only the remaining rows are searched.
    """
    bits = x.view(torch.int16)
    rows = torch.nonzero(bits.amax(dim=1) > 0, as_tuple=True)[0]
    if rows.numel() == 0:
        return rows
    r, c = torch.nonzero(bits[rows] > 0, as_tuple=True)
    return rows[r] * x.shape[1] + c


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
    if lowp is not None and reps.dtype == torch.float32 and lt > -math.inf and lowp_pays(n, C):
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


def lowp_pays(n: int, C: int) -> bool:
    return n * C >= LOWP_MIN_WORK and C >= LOWP_MIN_LABELS


def _row_blocks(n: int) -> list[tuple[int, int]]:
    """(start, rows) blocks covering ``n`` rows padded to LOWP_ROW_ALIGN, in few distinct sizes.

    oneDNN compiles a kernel per product shape (~40 ms each), so blocks take fixed sizes: LOWP_ROW_BLOCK rows,
    then LOWP_ROW_TAIL, then one last block padded to a multiple of LOWP_ROW_ALIGN; at most
    2 + LOWP_ROW_TAIL / LOWP_ROW_ALIGN shapes per label chunk. Large blocks keep the product efficient (1,024
    rows run ~25% faster than 256).
    """
    out, r0 = [], 0
    for size in (LOWP_ROW_BLOCK, LOWP_ROW_TAIL):
        while n - r0 >= size:
            out.append((r0, size))
            r0 += size
    if r0 < n:
        out.append((r0, -(-(n - r0) // LOWP_ROW_ALIGN) * LOWP_ROW_ALIGN))
    return out


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
    n = reps.shape[0]
    low = lowp.prepare_rows(reps, lt, rows=lowp_rows(n))
    return lowp_score(low, n, lowp, reps.__getitem__, prompts, prompt_bias, threshold, row_b, class_mask, budget_bytes)


def lowp_score(
    low: torch.Tensor,
    n: int,
    lowp: LowpLabels,
    rows: Callable[[torch.Tensor], torch.Tensor],
    prompts: torch.Tensor,
    prompt_bias: torch.Tensor | None,
    threshold: float,
    row_b: torch.Tensor | None = None,
    class_mask: torch.Tensor | None = None,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, class, prob) for the first ``n`` rows of ``low`` (filled by :meth:`LowpLabels.prepare_rows`): the
    pairs the pre-filter keeps, restricted to ``class_mask[row_b]``, scored exactly by :func:`exact_pairs` on
    the float32 rows that ``rows(index)`` returns."""
    r, c = lowp_survivors(low, n, lowp, budget_bytes)
    if class_mask is not None and r.numel():
        keep = class_mask[row_b[r], c]
        r, c = r[keep], c[keep]
    return exact_pairs(rows, r, c, prompts, prompt_bias, threshold, budget_bytes)


def lowp_rows(n: int) -> int:
    """Rows of the low-precision buffer for ``n`` rows: padded to LOWP_ROW_ALIGN (see :func:`_row_blocks`)."""
    return -(-n // LOWP_ROW_ALIGN) * LOWP_ROW_ALIGN


def lowp_survivors(
    low: torch.Tensor, n: int, lowp: LowpLabels, budget_bytes: int = DEFAULT_BUDGET_BYTES
) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, class) pairs the pre-filter cannot rule out among the first ``n`` rows of ``low``, sorted.

    ``low`` holds rows from :meth:`LowpLabels.prepare_rows` (zero rows padding it to :func:`lowp_rows`); the
    product runs in fixed-size row blocks and label chunks of at most ``budget_bytes`` of output.
    """
    C = lowp.vectors_t.shape[1]
    chunk = max(1, int(budget_bytes // (4 * LOWP_ROW_BLOCK)))
    parts_r, parts_c = [], []
    for c0 in range(0, C, chunk):
        c1 = min(C, c0 + chunk)
        vt = lowp.vectors_t[:, c0:c1]
        for r0, rb in _row_blocks(n):
            pos = positive_positions(low[r0 : r0 + rb] @ vt)  # padding rows are never positive
            if pos.numel():
                parts_r.append(pos // (c1 - c0) + r0)
                parts_c.append(pos % (c1 - c0) + c0)
    if not parts_r:
        empty = torch.zeros(0, dtype=torch.long, device=low.device)
        return empty, empty
    r, c = torch.cat(parts_r), torch.cat(parts_c)
    if C > chunk:
        order = torch.argsort(r * C + c)
        r, c = r[order], c[order]
    return r, c


def exact_pairs(
    rows: Callable[[torch.Tensor], torch.Tensor],
    r: torch.Tensor,
    c: torch.Tensor,
    prompts: torch.Tensor,
    prompt_bias: torch.Tensor | None,
    threshold: float,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, class, prob) of the pairs ``(r, c)`` whose float32 probability is above ``threshold``, in order.

    ``rows(index)`` returns the rows (len(index), D), scored in float32 whatever the model's dtype. Pairs are scored one dot product each, except
    rows holding more than LOWP_MAX_SURVIVORS of the labels (a threshold near the logits' bulk), which get
    one float32 row x labels product: cheaper than gathering that many label vectors.
    """
    if r.numel() == 0:
        return r, c, torch.zeros(0, device=r.device)
    C = prompts.shape[0]
    logits = torch.empty(r.numel(), device=r.device)
    urows, inv, counts = torch.unique_consecutive(r, return_inverse=True, return_counts=True)
    busy = counts > LOWP_MAX_SURVIVORS * C
    dense = busy[inv]
    if bool(dense.any()):
        brows = urows[busy]
        slot = torch.full_like(urows, -1)
        slot[busy] = torch.arange(brows.numel(), device=r.device)
        pair_slot = slot[inv]  # each pair's row among the busy rows (-1: not busy)
        step = max(1, int(budget_bytes // (4 * C)))
        for i0 in range(0, brows.numel(), step):
            block = rows(brows[i0 : i0 + step]).float() @ prompts.T.to(torch.float32)
            sel = (pair_slot >= i0) & (pair_slot < i0 + step)
            logits[sel] = block[pair_slot[sel] - i0, c[sel]]
    sparse = ~dense
    if bool(sparse.any()):
        logits[sparse] = torch.linalg.vecdot(rows(r[sparse]).float(), prompts[c[sparse]].to(torch.float32))
    if prompt_bias is not None:
        logits += prompt_bias[c].to(torch.float32)
    p = torch.sigmoid(logits)
    keep = p > threshold
    return r[keep], c[keep], p[keep]


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


@dataclass
class IVFLists:
    """The lists of an inverted-file (IVF-Flat, inner product) label index as torch tensors: ``centroids`` (nlist,
    D) float32, and per list the label vectors (n_j, D) float32 and their label rows (n_j,) int64. Built from a
    FAISS index by :meth:`glinker.model.labels.LabelBank.ivf_lists` as views of its memory (no copy); ``owner``
    keeps that index alive.

    The *lean* form (``vectors`` None) holds no float32 copy of the lists: only the low-precision lists of the
    pre-filter (``_low``, memory-mapped from the bank folder) and ``source``, the bank's own (N, D) float32
    vectors, from which the few pairs the pre-filter keeps are re-scored (the same numbers: an IVF-Flat list holds
    exact copies of those rows). A million labels then take ~1 GB of bfloat16 lists instead of 2 GB of float32
    lists plus their 1 GB bfloat16 copy.

    ``always`` trailing lists (0 or 1) have no centroid: every row probes them. An index built with labels scored
    exactly (:meth:`glinker.model.labels.LabelBank.build_index`, ``exact_share``) holds them there."""

    centroids: torch.Tensor
    vectors: list[torch.Tensor] | None
    ids: list[torch.Tensor]
    owner: Any = None
    _low: Any = None
    source: torch.Tensor | None = None
    always: int = 0

    @property
    def lean(self) -> bool:
        return self.vectors is None

    def size(self, j: int) -> int:
        return int(self.ids[j].shape[0])

    def list_vectors(self, j: int) -> torch.Tensor:
        """List ``j``'s float32 label vectors (n_j, D) (gathered from ``source`` in the lean form)."""
        if self.vectors is not None:
            return self.vectors[j]
        return self.source[self.ids[j]].float()  # a bank's vectors may be float16/bfloat16

    def rows_of(self, j: int, cols: torch.Tensor) -> torch.Tensor:
        """The float32 vectors of list ``j``'s entries ``cols``."""
        if self.vectors is not None:
            return self.vectors[j][cols]
        return self.source[self.ids[j][cols]].float()

    def lowp(self, dtype: torch.dtype) -> IVFLowp:
        """The lists in low precision for the pre-filter (built once per dtype, ~half the float32 lists' size)."""
        if self._low is None or self._low.labels.vectors_t.dtype != dtype:
            if self.vectors is None:
                raise ValueError(f"lean IVF lists hold {self._low.labels.vectors_t.dtype} lists only, not {dtype}")
            self._low = IVFLowp.build(self, dtype)
        return self._low


@dataclass
class IVFLowp:
    """An IVF index's lists for the low-precision pre-filter: every list's ``[p~, 0, 1]`` rows in one
    (rows, D + 2) matrix, list ``j`` at rows ``starts[j]`` to ``starts[j] + padded[j]`` (zero rows pad each list
    to a multiple of LOWP_ROW_ALIGN: a zero product is never positive, and few distinct product shapes keep
    oneDNN's kernel cache warm), with the norms of all lists' labels for the bound (:class:`LowpLabels`)."""

    labels: LowpLabels  # vectors_t: (D + 2, rows), a transposed view of the row-major matrix
    starts: list[int]
    padded: list[int]

    @classmethod
    def build(cls, lists: IVFLists, dtype: torch.dtype) -> IVFLowp:
        d = int(lists.centroids.shape[1])
        padded = cls.padding([int(v.shape[0]) for v in lists.vectors])
        low = torch.zeros(sum(padded), d + 2, dtype=dtype)
        starts = cls.starts_of(padded)
        norms = [0.0, 0.0, 0.0]  # the maxima over all lists (one bound serves every list)
        for v, o in zip(lists.vectors, starts):
            vl = v.to(dtype)
            low[o : o + v.shape[0], :d] = vl
            low[o : o + v.shape[0], d + 1] = 1.0
            norms = [max(a, b) for a, b in zip(norms, _rounding_norms(v, vl))]
        return cls(LowpLabels(low.T, *norms), starts, padded)

    @staticmethod
    def padding(sizes: list[int]) -> list[int]:
        """Each list's rows in the matrix: its size rounded up to a multiple of LOWP_ROW_ALIGN."""
        return [-(-n // LOWP_ROW_ALIGN) * LOWP_ROW_ALIGN for n in sizes]

    @staticmethod
    def starts_of(padded: list[int]) -> list[int]:
        starts = [0]
        for n in padded[:-1]:
            starts.append(starts[-1] + n)
        return starts

    @property
    def rows(self) -> torch.Tensor:
        """The row-major (rows, D + 2) matrix (what is saved; ``labels.vectors_t`` is its transpose)."""
        return self.labels.vectors_t.T

    @classmethod
    def from_rows(cls, rows: torch.Tensor, sizes: list[int], norms: Sequence[float]) -> IVFLowp:
        """The inverse of :attr:`rows` (e.g. a memory-mapped saved matrix) for lists of ``sizes`` labels."""
        padded = cls.padding(sizes)
        if int(rows.shape[0]) != sum(padded):
            raise ValueError(f"{int(rows.shape[0])} rows for lists padded to {sum(padded)}")
        return cls(LowpLabels(rows.T, *(float(x) for x in norms)), cls.starts_of(padded), padded)


def score_rows_ivf(
    reps: torch.Tensor,
    lists: IVFLists,
    threshold: float,
    nprobe: int | None,
    top_k: int,
    n_labels: int,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    lowp: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """As :func:`score_rows_topk` with an IVF-Flat index searched for the ``top_k`` largest inner products in the
    ``nprobe`` lists nearest each row, but computed as matrix products: the rows probing a list are scored against
    all of its labels at once (float32, exact logits), instead of one query at a time. The same (row, class) pairs
    as searching the FAISS index and re-scoring (up to float32 summation order and ties at the k-th score).

    Rows are grouped by list, so each list's vectors are read once per call, not once per row: call it with many
    rows (all span widths of a batch) for the best throughput. ``lowp`` (a low-precision dtype, e.g. bfloat16
    where :func:`lowp_prefilter` found it faster) runs each list's product through the pre-filter of the module
    docstring, the pairs it cannot rule out re-scored in float32: the same result. The ``top_k`` cut is then
    applied to the pairs above the threshold, which keeps the same pairs (a pair above the threshold outside a
    row's top ``k`` has ``k`` better pairs, all above the threshold).
    """
    n, nlist = reps.shape[0], int(lists.centroids.shape[0])
    empty = torch.zeros(0, dtype=torch.long, device=reps.device)
    if n == 0 or nlist == 0 or threshold >= 1.0 or top_k < 1:
        return empty, empty, torch.zeros(0, device=reps.device)
    q = reps.float()
    lt0 = logit_threshold(threshold)
    lt = lt0 - _MARGIN
    low = None
    if lowp is not None and lt0 > -math.inf:
        ivl = lists.lowp(lowp)
        low = ivl.labels.prepare_rows(q, lt0, rows=n + 1)  # row n: zeros, for padding row groups
    if nprobe is None:
        from glinker.model.labels import default_nprobe

        nprobe = default_nprobe(nlist, exact=lists.always > 0)
    npb = max(1, min(int(nprobe), nlist))
    step = max(1, int(budget_bytes // (4 * nlist)))  # rows per coarse product: (rows, nlist) float32 logits
    # (float32: in bfloat16 its error bound, ~u |q| |c|, spans dozens of centroids around the nprobe-th)
    probe = torch.cat([(q[a : a + step] @ lists.centroids.T).topk(npb, dim=1).indices for a in range(0, n, step)])
    if lists.always:  # the lists every row reads (the labels scored exactly), after the probed ones
        extra = torch.arange(nlist, nlist + lists.always, device=probe.device)
        probe = torch.cat([probe, extra.expand(n, lists.always)], dim=1)
        npb += lists.always
    flat = probe.reshape(-1)
    order = torch.argsort(flat, stable=True)
    rows_by_list = order // npb  # the rows probing each list, list after list
    ends = torch.bincount(flat, minlength=nlist + lists.always).cumsum(0).tolist()
    parts_r, parts_c, parts_l = [], [], []
    start = kept = 0
    for j, end in enumerate(ends):
        if end == start:
            continue
        rows, size = rows_by_list[start:end], lists.size(j)
        start = end
        if size == 0:
            continue
        sub = max(1, int(budget_bytes // (4 * size)))
        vecs = None  # list j's float32 vectors, taken when a block needs them (gathered in the lean form)
        for a in range(0, rows.numel(), sub):
            rr = rows[a : a + sub]
            found = _ivf_lowp_pairs(q, low, ivl, j, rr, lists, lt) if low is not None else None
            if found is None:
                vecs = lists.list_vectors(j) if vecs is None else vecs
                found = _ivf_float32_pairs(q, rr, vecs, top_k, lt)
            if found[0].numel():
                parts_r.append(found[0])
                parts_c.append(lists.ids[j][found[1]])
                parts_l.append(found[2])
                kept += found[0].numel()
        if top_k < n_labels and kept > max(4 * n * top_k, 1 << 16):  # memory bounded by rows x top_k
            parts_r, parts_c, parts_l = [list(x) for x in zip(_top_per_row(
                torch.cat(parts_r), torch.cat(parts_c), torch.cat(parts_l), top_k))]
            kept = parts_r[0].numel()
    if not parts_r:
        return empty, empty, torch.zeros(0, device=reps.device)
    r, c, logit = torch.cat(parts_r), torch.cat(parts_c), torch.cat(parts_l)
    if top_k < n_labels:  # each row keeps its top_k labels by score, as a top_k search would return
        r, c, logit = _top_per_row(r, c, logit, top_k)
    p = torch.sigmoid(logit)
    keep = p > threshold
    r, c, p = r[keep], c[keep], p[keep]
    order = torch.argsort(r * n_labels + c, stable=True)  # row-major (span, class), as gliner's torch.where
    return r[order], c[order], p[order]


def _ivf_float32_pairs(
    q: torch.Tensor, rr: torch.Tensor, vecs: torch.Tensor, top_k: int, lt: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, list columns, logits) of the pairs of rows ``rr`` x one list above ``lt``, in float32; each row
    keeps at most its ``top_k`` best of the list (its top_k overall are among them)."""
    logits = q[rr] @ vecs.T
    cols = None
    if top_k < vecs.shape[0]:
        logits, cols = logits.topk(top_k, dim=1)
    r, c = torch.nonzero(logits > lt, as_tuple=True)
    return rr[r], (c if cols is None else cols[r, c]), logits[r, c]


def _ivf_lowp_pairs(
    q: torch.Tensor, low: torch.Tensor, ivl: IVFLowp, j: int, rr: torch.Tensor, lists: IVFLists, lt: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(rows, list columns, float32 logits) of the pairs of rows ``rr`` x list ``j`` above ``lt``, through the
    low-precision pre-filter; None when the pre-filter keeps too many pairs to pay (the caller scores the block
    in float32)."""
    m = rr.numel()
    mp = -(-m // LOWP_ROW_ALIGN) * LOWP_ROW_ALIGN
    idx = rr if mp == m else torch.cat([rr, rr.new_full((mp - m,), low.shape[0] - 1)])
    o, w = ivl.starts[j], ivl.padded[j]
    pos = positive_positions(low[idx] @ ivl.labels.vectors_t[:, o : o + w])
    if pos.numel() > LOWP_MAX_SURVIVORS * m * lists.size(j) + 64:
        return None
    r, c = pos // w, pos % w
    logit = torch.linalg.vecdot(q[rr[r]], lists.rows_of(j, c))
    keep = logit > lt
    return rr[r[keep]], c[keep], logit[keep]


def _top_per_row(
    r: torch.Tensor, c: torch.Tensor, logit: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` pairs of largest logit of each row (sorted by row, best first)."""
    o = torch.argsort(logit, descending=True, stable=True)
    o = o[torch.argsort(r[o], stable=True)]  # by row, best first within a row
    r, c, logit = r[o], c[o], logit[o]
    first = torch.searchsorted(r, r, side="left")
    keep = torch.arange(r.numel(), device=r.device) - first < k
    return r[keep], c[keep], logit[keep]


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
