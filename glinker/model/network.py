"""The GLiNER bi-encoder network in torch + transformers, with gliner's state-dict layout.

Module names mirror gliner's ``BiEncoderSpanModel`` so that a checkpoint loads with strict key checking:
``token_rep_layer.{bert_layer,labels_encoder}.model`` (HF encoders), ``token_rep_layer.{projection,
labels_projection}``, ``rnn.lstm`` (kept only for round-trips: gliner never applies it in bi-encoders),
``span_rep_layer.span_rep_layer.{project_start,project_end,out_project}``, ``prompt_rep_layer``, and for the
variants ``scorer`` (token level) and ``cross_fuser`` (post-fusion).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def mlp(d_in: int, dropout: float, d_out: int | None = None) -> nn.Sequential:
    """gliner's ``create_projection_layer``: Linear(in, 4*out), ReLU, Dropout, Linear(4*out, out)."""
    d_out = d_in if d_out is None else d_out
    return nn.Sequential(
        nn.Linear(d_in, d_out * 4), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_out * 4, d_out)
    )


def build_hf_encoder(cfg_dict: dict, attn_implementation: str | None = None) -> nn.Module:
    """Instantiate an HF base model from a config dict only (no weights), as gliner does."""
    from transformers import CONFIG_MAPPING, AutoModel

    d = dict(cfg_dict)
    model_type = d.pop("model_type", None) or "deberta-v2"
    cfg = CONFIG_MAPPING[model_type](**d)
    if attn_implementation is not None:
        cfg._attn_implementation = attn_implementation
    name = type(cfg).__name__
    if name == "DebertaV2Config":
        from transformers import DebertaV2Model

        return DebertaV2Model(cfg)
    if name in ("T5Config", "MT5Config"):
        from transformers import T5EncoderModel

        return T5EncoderModel(cfg)
    return AutoModel.from_config(cfg)


class _HFWrap(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model


class TokenRepLayer(nn.Module):
    """Both encoders and their projections to the GLiNER width D."""

    def __init__(self, text_model: nn.Module, label_model: nn.Module, d: int) -> None:
        super().__init__()
        self.bert_layer = _HFWrap(text_model)
        self.labels_encoder = _HFWrap(label_model)
        ht = text_model.config.hidden_size
        hl = label_model.config.hidden_size
        if ht != d:
            self.projection = nn.Linear(ht, d)
        if hl != d:
            self.labels_projection = nn.Linear(hl, d)


class LSTMHolder(nn.Module):
    """Holds gliner's bi-LSTM weights; gliner's bi-encoder forwards never call it, so neither do we."""

    def __init__(self, d: int, num_layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(d, d // 2, num_layers=num_layers, bidirectional=True, batch_first=True)


class SpanMarkerV0(nn.Module):
    """markerV0: out_project(relu(cat(project_start(x_s), project_end(x_e))))."""

    def __init__(self, d: int, dropout: float) -> None:
        super().__init__()
        self.project_start = mlp(d, dropout)
        self.project_end = mlp(d, dropout)
        self.out_project = mlp(2 * d, dropout, d)


class SpanRepLayer(nn.Module):
    def __init__(self, d: int, dropout: float) -> None:
        super().__init__()
        self.span_rep_layer = SpanMarkerV0(d, dropout)


class BiEncoderNetwork(nn.Module):
    """gliner's bi-encoder (span level or token level), inference only."""

    def __init__(self, config: dict, text_model: nn.Module, label_model: nn.Module) -> None:
        super().__init__()
        d = int(config.get("hidden_size", 512))
        self.d = d
        dropout = float(config.get("dropout", 0.4))
        self.span_mode = config.get("span_mode", "markerV0")
        self.pooling = config.get("subtoken_pooling", "first") or "first"
        self.token_rep_layer = TokenRepLayer(text_model, label_model, d)
        n_rnn = int(config.get("num_rnn_layers", 1) or 0)
        if n_rnn > 0:
            self.rnn = LSTMHolder(d, n_rnn)
        if self.span_mode == "token_level":  # gliner's token model has no span or prompt layer
            from glinker.model.variants import Scorer

            self.scorer = Scorer(d, dropout)
        else:
            self.span_rep_layer = SpanRepLayer(d, dropout)
            self.prompt_rep_layer = mlp(d, dropout)
        schema = config.get("post_fusion_schema") or ""
        if schema:
            from glinker.model.variants import CrossFuser

            self.cross_fuser = CrossFuser(
                d,
                text_model.config.num_attention_heads,
                schema,
                int(config.get("num_post_fusion_layers", 1)),
                dropout,
            )

    # ---- text side -------------------------------------------------------------------------------------
    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token vectors (B, T, D): text encoder last_hidden_state, then the projection."""
        h = self.token_rep_layer.bert_layer.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_attentions=False,
            output_hidden_states=False,
            return_dict=True,
        )[0]
        proj = getattr(self.token_rep_layer, "projection", None)
        return proj(h) if proj is not None else h

    def word_vectors(
        self, h: torch.Tensor, words_mask: torch.Tensor, attention_mask: torch.Tensor, n_words: int
    ) -> torch.Tensor:
        """Word vectors (B, W, D) from token vectors by subtoken pooling; unmarked words stay zero."""
        b, _, d = h.shape
        out = h.new_zeros(b * n_words, d)
        sel = (words_mask > 0) & (words_mask <= n_words)
        if self.pooling in ("mean", "max"):
            sel = sel & attention_mask.bool()
        bi, ti = torch.where(sel)
        flat = bi * n_words + words_mask[bi, ti] - 1
        vals = h[bi, ti]
        if self.pooling in ("first", "last"):
            out[flat] = vals
        else:
            out.scatter_reduce_(
                0,
                flat[:, None].expand(-1, d),
                vals,
                reduce="mean" if self.pooling == "mean" else "amax",
                include_self=False,
            )
        return out.view(b, n_words, d)

    def span_reps(self, x: torch.Tensor, max_width: int) -> torch.Tensor:
        """All span vectors (B, W, K, D); spans past the text end are garbage and must be masked by callers.

        relu(cat(a, b)) @ W1.T == relu(a) @ W1a.T + relu(b) @ W1b.T, so the first out_project layer runs per
        word instead of per span (K times fewer FLOPs); equal to gliner up to float rounding.
        """
        m = self.span_rep_layer.span_rep_layer
        _, w, d = x.shape
        s = torch.relu(m.project_start(x))
        e = torch.relu(m.project_end(x))
        lin0 = m.out_project[0]
        a = s @ lin0.weight[:, :d].T + lin0.bias
        c = e @ lin0.weight[:, d:].T
        ends = torch.arange(w, device=x.device)[:, None] + torch.arange(max_width, device=x.device)[None, :]
        ends = ends.clamp_max(w - 1)
        hid = torch.relu(a[:, :, None, :] + c[:, ends, :])  # (B, W, K, 4D)
        lin3 = m.out_project[3]
        return torch.nn.functional.linear(hid, lin3.weight, lin3.bias)

    def span_hidden(
        self, x: torch.Tensor, bi: torch.Tensor, si: torch.Tensor, ei: torch.Tensor
    ) -> torch.Tensor:
        """Hidden layer of out_project for chosen spans: relu(out_project[0](relu(cat(start, end)))), (N, 4D).

        Only the listed (text, start, end) spans are computed, so padding and invalid spans cost nothing.
        """
        a, c = self.span_halves(x)
        w = x.shape[1]
        hid = a.reshape(-1, a.shape[-1]).index_select(0, bi * w + si)
        hid += c.reshape(-1, c.shape[-1]).index_select(0, bi * w + ei)
        return hid.relu_()

    def span_halves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-word halves (B, W, 4D) of out_project's first layer: hidden(s, e) = relu(a[s] + c[e])."""
        m = self.span_rep_layer.span_rep_layer
        d = x.shape[-1]
        lin0 = m.out_project[0]
        a = torch.relu(m.project_start(x)) @ lin0.weight[:, :d].T + lin0.bias
        c = torch.relu(m.project_end(x)) @ lin0.weight[:, d:].T
        return a, c

    def span_out(self, hid: torch.Tensor) -> torch.Tensor:
        """Last layer of out_project: span vectors (N, D) from :meth:`span_hidden`."""
        lin3 = self.span_rep_layer.span_rep_layer.out_project[3]
        return torch.nn.functional.linear(hid, lin3.weight, lin3.bias)

    def fold_prompts(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P @ W3, P . b3): scores straight from :meth:`span_hidden`, skipping the span output layer.

        (h @ W3.T + b3) . P == h . (P @ W3) + b3 . P, which is cheaper when labels are fewer than about 4D/3.
        """
        lin3 = self.span_rep_layer.span_rep_layer.out_project[3]
        return p @ lin3.weight.to(p.dtype), p @ lin3.bias.to(p.dtype)

    def span_reps_at(self, x: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """Span vectors for explicit (start, end-inclusive) word pairs of one text: (N, D); any width."""
        m = self.span_rep_layer.span_rep_layer
        s = m.project_start(x[starts])
        e = m.project_end(x[ends])
        return m.out_project(torch.relu(torch.cat([s, e], dim=-1)))

    # ---- label side ------------------------------------------------------------------------------------
    def encode_label_tokens(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: Any
    ) -> torch.Tensor:
        """Pooled label vectors E (C, D): per-token projection, then mean over the attention mask."""
        h = self.token_rep_layer.labels_encoder.model(
            input_ids=input_ids, attention_mask=attention_mask, **extra
        )[0]
        proj = getattr(self.token_rep_layer, "labels_projection", None)
        if proj is not None:
            h = proj(h)
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)

    def prompt(self, e: torch.Tensor) -> torch.Tensor:
        """P = prompt_rep_layer(E): the label vectors span vectors are dotted with (E for token models)."""
        return self.prompt_rep_layer(e) if hasattr(self, "prompt_rep_layer") else e

    @property
    def dense(self) -> bool:
        """True when label vectors depend on the text (fusion) or scoring is not a dot product (token)."""
        return hasattr(self, "cross_fuser") or self.span_mode == "token_level"
