"""gliner's token-level scorer and decoder, and the cross-attention fuser (``post_fusion_schema``)."""

from __future__ import annotations

import torch
from torch import nn


class Scorer(nn.Module):
    """Token-level scores (B, W, C, 3) = [start, end, inside] from word and label vectors."""

    def __init__(self, d: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.proj_token = nn.Linear(d, d * 2)
        self.proj_label = nn.Linear(d, d * 2)
        self.out_mlp = nn.Sequential(
            nn.Linear(d * 3, d * 4), nn.Dropout(dropout), nn.ReLU(), nn.Linear(d * 4, 3)
        )

    def forward(self, token_rep: torch.Tensor, label_rep: torch.Tensor) -> torch.Tensor:
        b, w, d = token_rep.shape
        c = label_rep.shape[1]
        t = self.proj_token(token_rep).view(b, w, 1, 2, d)
        lab = self.proj_label(label_rep).view(b, 1, c, 2, d)
        t = t.expand(-1, -1, c, -1, -1).permute(3, 0, 1, 2, 4)
        lab = lab.expand(-1, w, -1, -1, -1).permute(3, 0, 1, 2, 4)
        return self.out_mlp(torch.cat([t[0], lab[0], t[1] * lab[1]], dim=-1))


class MultiheadAttention(nn.Module):
    def __init__(self, d: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.hidden_size, self.num_heads, self.head = d, num_heads, d // num_heads
        self.query_layer = nn.Linear(d, d)
        self.key_layer = nn.Linear(d, d)
        self.value_layer = nn.Linear(d, d)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.num_heads, self.head).permute(0, 2, 1, 3)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        q, k, v = (
            self._split(self.query_layer(q)),
            self._split(self.key_layer(k)),
            self._split(self.value_layer(v)),
        )
        m = mask.to(torch.bool).unsqueeze(1) if mask is not None else None
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, m, 0.0, is_causal=False)
        out = out.permute(0, 2, 1, 3).contiguous()
        return out.view(*out.shape[:-2], self.hidden_size)


class SelfAttentionBlock(nn.Module):
    def __init__(self, d: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(d, num_heads, dropout)
        self.pre_norm = nn.LayerNorm(d)
        self.post_norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout)
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.pre_norm(x)
        a = self.self_attn(self.q_proj(x), self.k_proj(x), self.v_proj(x), mask)
        return self.post_norm(x + self.dropout(a))


class CrossAttentionBlock(nn.Module):
    def __init__(self, d: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.cross_attn = MultiheadAttention(d, num_heads, dropout)
        self.pre_norm = nn.LayerNorm(d)
        self.post_norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout)
        self.v_proj = nn.Linear(d, d)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q = self.pre_norm(q)  # the key/value side is not normalised (as in gliner)
        a = self.cross_attn(q, kv, self.v_proj(kv), mask)
        return self.post_norm(q + self.dropout(a))


class CrossFuser(nn.Module):
    """Label/text fusion blocks run in schema order, e.g. "l2l-l2t-t2t-t2l", ``num_layers`` times."""

    def __init__(
        self, d: int, num_heads: int, schema: str, num_layers: int = 1, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.schema = schema.split("-")
        bad = [s for s in self.schema if s not in ("l2l", "t2t", "l2t", "t2l")]
        if bad:
            from glinker.errors import ModelError

            raise ModelError(
                f"unknown post_fusion_schema block {bad[0]!r}",
                where="gliner_config.json:post_fusion_schema",
                fix="use blocks l2l, t2t, l2t, t2l joined by '-'",
            )
        self.layers = nn.ModuleList(
            nn.ModuleList(
                SelfAttentionBlock(d, num_heads, dropout)
                if s in ("l2l", "t2t")
                else CrossAttentionBlock(d, num_heads, dropout)
                for s in self.schema
            )
            for _ in range(num_layers)
        )

    def forward(
        self, labels: torch.Tensor, words: torch.Tensor, labels_mask: torch.Tensor, words_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lm, wm = labels_mask.long(), words_mask.long()
        for blocks in self.layers:
            for kind, blk in zip(self.schema, blocks):
                if kind == "l2l":
                    labels = blk(labels, lm.unsqueeze(1) * lm.unsqueeze(2))
                elif kind == "t2t":
                    words = blk(words, wm.unsqueeze(1) * wm.unsqueeze(2))
                elif kind == "l2t":
                    labels = blk(labels, words, lm.unsqueeze(-1) * wm.unsqueeze(1))
                else:
                    words = blk(words, labels, wm.unsqueeze(-1) * lm.unsqueeze(1))
        return labels, words


def token_candidates(
    scores: torch.Tensor, n_words: int, threshold: float
) -> list[tuple[int, int, int, float]]:
    """gliner's TokenDecoder for one text: (start, end, class, score) spans from (W, C, 3) logits.

    A span needs start and end probabilities > threshold for one class and every inside probability
    >= threshold; its score is the minimum of them all. Order: start-major, then end, as gliner builds them.
    """
    s = scores[:n_words].float()
    ps, pe, pi = torch.sigmoid(s[..., 0]), torch.sigmoid(s[..., 1]), torch.sigmoid(s[..., 2])
    st = torch.nonzero(ps > threshold).tolist()
    en = torch.nonzero(pe > threshold).tolist()
    if not st or not en:
        return []
    ins, psl, pel = pi.tolist(), ps.tolist(), pe.tolist()
    out = []
    for a, ca in st:
        for b, cb in en:
            if b >= a and ca == cb:
                vals = [ins[q][ca] for q in range(a, b + 1)]
                if any(v < threshold for v in vals):
                    continue
                out.append((a, b, ca, min(*vals, psl[a][ca], pel[b][cb])))
    return out
