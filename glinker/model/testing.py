"""Tiny random GLiNER bi-encoder checkpoints for tests: built from configs only (no hub, no downloads)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"-_()%&/")
_WORDS = (  # noqa: SIM905
    "the a an of in on at to and or is was are were for by with from as he she it they his her its born "
    "plays works lives capital city country person people organization company location place date year "
    "award event work human being institution calendar nation state river mountain team club university "
    "john smith google london paris france apple inc steve jobs portugal february march germany berlin "
    "maria lopez acme corp united nations president founded president new york times"
).split()


def tiny_vocab() -> dict[str, int]:
    """WordPiece vocabulary: specials, characters, continuation characters and a few hundred words."""
    toks = SPECIALS + _CHARS + ["##" + c for c in _CHARS if c.isalnum()] + _WORDS
    return {t: i for i, t in enumerate(dict.fromkeys(toks))}


def tiny_tokenizer(model_max_length: int = 128) -> Any:
    """A lowercasing BERT-style WordPiece tokenizer built with the ``tokenizers`` library."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = tiny_vocab()
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )


def _text_config(kind: str, vocab_size: int) -> Any:
    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    if kind == "modernbert":
        from transformers import ModernBertConfig

        return ModernBertConfig(
            **common,
            local_attention=16,
            global_attn_every_n_layers=2,
            bos_token_id=2,
            eos_token_id=3,
            cls_token_id=2,
            sep_token_id=3,
        )
    if kind == "deberta":
        from transformers import DebertaV2Config

        return DebertaV2Config(
            **common,
            relative_attention=True,
            position_buckets=32,
            pos_att_type=["p2c", "c2p"],
            position_biased_input=False,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
            type_vocab_size=0,
        )
    if kind == "bert":
        from transformers import BertConfig

        return BertConfig(**common)
    from glinker.errors import ConfigError

    raise ConfigError(
        f"unknown text encoder {kind!r}", where="text_encoder", fix="use modernbert, bert or deberta"
    )


def build_tiny_checkpoint(
    out_dir: str | os.PathLike,
    text_encoder: str = "modernbert",
    seed: int = 0,
    span_mode: str = "markerV0",
    post_fusion_schema: str = "",
) -> Path:
    """Write a tiny random bi-encoder checkpoint in gliner's format (our save_pretrained); returns the folder.

    Text encoder H=64 (2 layers), BERT label encoder H=32, D=48, max_width=4, max_len=64 words, text tokenizer
    limit 128 subtokens. GLiNER head weights ~N(0, 0.12) so logits spread over both signs (std about 2).
    """
    import torch
    from transformers import BertConfig

    from glinker.model.biencoder import BiEncoder
    from glinker.model.checkpoint import CONFIG_DEFAULTS, GLINER_SPECIAL_TOKENS
    from glinker.model.network import BiEncoderNetwork, build_hf_encoder

    vocab = tiny_vocab()
    tcfg = _text_config(text_encoder, len(vocab)).to_dict()
    lcfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=0,
    ).to_dict()
    cfg = {
        **CONFIG_DEFAULTS,
        "model_name": f"glinker-tiny-{text_encoder}",
        "labels_encoder": "glinker-tiny-bert",
        "encoder_config": tcfg,
        "labels_encoder_config": lcfg,
        "hidden_size": 48,
        "max_width": 4,
        "max_len": 64,
        "dropout": 0.1,
        "span_mode": span_mode,
        "post_fusion_schema": post_fusion_schema,
    }
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(seed)
        net = BiEncoderNetwork(cfg, build_hf_encoder(tcfg), build_hf_encoder(lcfg))
        with torch.no_grad():
            for name, p in net.named_parameters():
                if not name.startswith(("token_rep_layer.bert_layer.", "token_rep_layer.labels_encoder.")):
                    p.normal_(0.0, 0.12)
    net.eval()
    tok = tiny_tokenizer(128)
    tok.add_tokens(GLINER_SPECIAL_TOKENS, special_tokens=True)
    ltok = tiny_tokenizer(64)
    model = BiEncoder(net, cfg, tok, ltok, torch.device("cpu"), source="tiny")
    return model.save_pretrained(out_dir)
