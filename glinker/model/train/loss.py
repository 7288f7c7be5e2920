"""Focal loss over span × label logits, with gliner's negative-sampling masks.

Unlike gliner 0.2.29 (whose bi-encoder passes ``label_smoothing`` into the ``prob_margin`` slot, spec §0.1.6),
``prob_margin`` and ``label_smoothing`` here mean what their names say.
"""

from __future__ import annotations

from typing import Literal

import torch

Masking = Literal["none", "global", "label", "span"]


def focal_loss_with_logits(logits: torch.Tensor, targets: torch.Tensor, alpha: float = -1.0, gamma: float = 0.0,
                           prob_margin: float = 0.0, label_smoothing: float = 0.0) -> torch.Tensor:
    """Element-wise focal loss (same shape as ``logits``); ``alpha < 0`` disables class weighting.

    With alpha=-1, gamma=0 and no margin/smoothing it equals binary cross-entropy with eps-clamped logs, as gliner.
    """
    y = targets.to(logits.dtype)
    if label_smoothing > 0:
        y = y * (1 - label_smoothing) + 0.5 * label_smoothing
    p = torch.sigmoid(logits)
    pm = torch.clamp(p - prob_margin, 0, 1) if prob_margin > 0 else p
    loss = -y * torch.log(torch.clamp(p, min=1e-6)) - (1 - y) * torch.log(torch.clamp(1 - pm, min=1e-6))
    if gamma > 0:
        p_t = p * y + (1 - pm) * (1 - y)
        loss = loss * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * y + (1 - alpha) * (1 - y))
    return loss


def negative_mask(targets: torch.Tensor, negatives: float, masking: Masking,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep-mask for loss elements: positives always kept; negatives sampled with probability ``negatives``.

    ``targets`` is (B, S, C). ``global``: each negative element independently; ``label``: whole label columns of
    an example that has no positive of that label; ``span``: whole spans with no positive label.
    """
    if masking == "none" or negatives >= 1.0:
        return torch.ones_like(targets, dtype=torch.bool)
    pos = targets > 0
    rand = lambda shape: torch.rand(shape, generator=generator, device=targets.device)
    if masking == "global":
        return pos | (rand(targets.shape) < negatives)
    if masking == "label":
        has_pos = pos.any(dim=1, keepdim=True)  # (B, 1, C)
        keep_col = rand((targets.shape[0], 1, targets.shape[2])) < negatives
        return pos | has_pos | keep_col
    if masking == "span":
        has_pos = pos.any(dim=2, keepdim=True)  # (B, S, 1)
        keep_span = rand((targets.shape[0], targets.shape[1], 1)) < negatives
        return pos | has_pos | keep_span
    raise ValueError(f"unknown masking {masking!r}")


def span_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, *, alpha: float, gamma: float,
              prob_margin: float = 0.0, label_smoothing: float = 0.0, negatives: float = 1.0,
              masking: Masking = "global", reduction: Literal["sum", "mean"] = "sum",
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Loss of (B, S, C) logits against multi-hot targets; ``valid`` (B, S, C) masks padded spans and labels.

    ``sum`` sums over every kept element and divides by the batch size (so it does not grow with B);
    ``mean`` averages over valid spans.
    """
    el = focal_loss_with_logits(logits, targets, alpha, gamma, prob_margin, label_smoothing)
    keep = negative_mask(targets, negatives, masking, generator) & valid
    el = el * keep
    if reduction == "mean":
        n_spans = valid.any(dim=-1).sum().clamp_min(1)
        return el.sum() / n_spans
    return el.sum() / max(1, logits.shape[0])
