"""Read and write gliner-format checkpoints: ``gliner_config.json``, weights, text and label tokenizers.

Weights are read with safetensors or ``torch.load(weights_only=True)``: untrusted files are never unpickled.
Writes are atomic (everything goes to a temporary sibling folder, then each file is renamed into place).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from glinker.errors import ModelError

log = logging.getLogger(__name__)

CONFIG_FILE = "gliner_config.json"
SAFE_WEIGHTS = "model.safetensors"
PT_WEIGHTS = "pytorch_model.bin"
LABELS_TOKENIZER_DIR = "labels_tokenizer"
GLINER_SPECIAL_TOKENS = ["[FLERT]", "<<ENT>>", "<<SEP>>"]

# gliner 0.2.29 GLiNERConfig / BiEncoderSpanConfig defaults for the keys a bi-encoder reads.
CONFIG_DEFAULTS: dict[str, Any] = {
    "model_name": "microsoft/deberta-v3-small",
    "labels_encoder": None,
    "encoder_config": None,
    "labels_encoder_config": None,
    "name": "span level gliner",
    "max_width": 12,
    "hidden_size": 512,
    "dropout": 0.4,
    "fine_tune": True,
    "subtoken_pooling": "first",
    "span_mode": "markerV0",
    "post_fusion_schema": "",
    "num_post_fusion_layers": 1,
    "vocab_size": -1,
    "max_neg_type_ratio": 1,
    "max_types": 25,
    "max_len": 384,
    "words_splitter_type": "whitespace",
    "num_rnn_layers": 1,
    "fuse_layers": False,
    "embed_ent_token": True,
    "class_token_index": -1,
    "ent_token": "<<ENT>>",
    "sep_token": "<<SEP>>",
    "_attn_implementation": None,
    "token_loss_coef": 1.0,
    "span_loss_coef": 1.0,
    "represent_spans": False,
    "neg_spans_ratio": 1.0,
    "labels_decoder": None,
    "relations_layer": None,
    "span_encoder_config": None,
    "model_type": None,
}
WEIGHT_PATTERNS = [
    CONFIG_FILE,
    SAFE_WEIGHTS,
    PT_WEIGHTS,
    "tokenizer*",
    "special_tokens_map.json",
    "*.model",
    "vocab*",
    "merges.txt",
    "added_tokens.json",
    f"{LABELS_TOKENIZER_DIR}/*",
]


def resolve_dir(path_or_id: str | os.PathLike) -> Path:
    """A local checkpoint folder, a model shipped with glinker, or a hub id (via huggingface_hub)."""
    p = Path(path_or_id).expanduser()
    if p.is_dir() and not (p / "glinker_model.json").is_file():
        return p
    from glinker.model.shipped import is_shipped, materialize

    if is_shipped(str(path_or_id)) or p.is_dir():  # a model shipped in its small form (glinker/models/)
        return materialize(path_or_id)
    s = str(path_or_id)
    if p.exists() or s.startswith((".", "/", "~")) or s.endswith(("/", os.sep)) or s.strip("/").count("/") != 1:
        from glinker.errors import closest
        from glinker.model.shipped import shipped_names

        near = closest(s, shipped_names())
        raise ModelError(
            f"checkpoint folder not found: {s}" + (f"; did you mean the shipped model {near!r}?" if near else ""),
            where=s,
            fix="pass a folder holding gliner_config.json, a shipped model name ("
            + (", ".join(shipped_names()) or "none") + ") or a hub id like 'org/name'",
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=s, allow_patterns=WEIGHT_PATTERNS))
    except Exception as e:  # the hub raises many types (offline, 404, auth)
        raise ModelError(
            f"could not download {s!r} from the Hugging Face hub: {e}",
            where=s,
            fix="check the id and your network, or download the model and pass its folder",
        ) from e


def read_config(ckpt: Path) -> dict:
    """The gliner config dict with defaults filled in; a bi-encoder span or token model, else ModelError."""
    f = ckpt / CONFIG_FILE
    if not f.is_file():
        raise ModelError(
            "no gliner_config.json in the checkpoint folder",
            where=str(ckpt),
            fix="point at a folder saved by gliner or glinker (it holds gliner_config.json)",
        )
    try:
        raw = json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(
            f"gliner_config.json is not valid JSON: {e}",
            where=str(f),
            fix="restore the file from the original checkpoint",
        ) from e
    cfg = {**CONFIG_DEFAULTS, **raw}
    if cfg.get("labels_decoder") or cfg.get("relations_layer"):
        raise ModelError(
            "this checkpoint is a gliner decoder/relation model, not a bi-encoder",
            where=str(f),
            fix="use a GLiNER bi-encoder checkpoint (labels_encoder set)",
        )
    if not cfg.get("labels_encoder") and not cfg.get("labels_encoder_config"):
        raise ModelError(
            "this checkpoint is a uni-encoder GLiNER (labels_encoder is null)",
            where=f"{f}:labels_encoder",
            fix="use a GLiNER bi-encoder checkpoint",
        )
    if cfg["span_mode"] not in ("markerV0", "token_level"):
        raise ModelError(
            f"span_mode {cfg['span_mode']!r} is not supported",
            where=f"{f}:span_mode",
            fix="glinker supports the bi-encoder span_mode 'markerV0' and 'token_level'",
        )
    if cfg.get("fuse_layers"):
        raise ModelError(
            "fuse_layers=true is not supported",
            where=f"{f}:fuse_layers",
            fix="use a checkpoint trained without fuse_layers",
        )
    if cfg.get("span_encoder_config"):
        raise ModelError(
            "span_encoder_config is not supported",
            where=f"{f}:span_encoder_config",
            fix="use a checkpoint without a span context encoder",
        )
    if cfg.get("subtoken_pooling", "first") not in ("first", "last", "mean", "max"):
        raise ModelError(
            f"unknown subtoken_pooling {cfg['subtoken_pooling']!r}",
            where=f"{f}:subtoken_pooling",
            fix="use one of first, last, mean, max",
        )
    if int(cfg["hidden_size"]) % 2:
        raise ModelError("hidden_size must be even", where=f"{f}:hidden_size", fix="fix the config")
    for key, name in (("encoder_config", "model_name"), ("labels_encoder_config", "labels_encoder")):
        if cfg.get(key) is None:
            cfg[key] = _fetch_hf_config(cfg[name], f, key)
    return cfg


def _fetch_hf_config(name: str, f: Path, key: str) -> dict:
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(name).to_dict()
    except Exception as e:
        raise ModelError(
            f"{key} is null and {name!r} could not be resolved: {e}",
            where=f"{f}:{key}",
            fix="save the checkpoint with its encoder configs or make the encoder reachable",
        ) from e


def load_state_dict(ckpt: Path) -> dict:
    """Weights from model.safetensors (preferred) or pytorch_model.bin via weights_only loading."""
    import torch

    st, pt = ckpt / SAFE_WEIGHTS, ckpt / PT_WEIGHTS
    try:
        if st.is_file():
            from safetensors.torch import load_file

            sd = load_file(str(st))
        elif pt.is_file():
            sd = torch.load(str(pt), map_location="cpu", weights_only=True)
        else:
            raise ModelError(
                "no weights file in the checkpoint folder",
                where=str(ckpt),
                fix=f"the folder must hold {SAFE_WEIGHTS} or {PT_WEIGHTS}",
            )
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(
            f"could not read the weights: {e}",
            where=str(st if st.is_file() else pt),
            fix="the file is damaged or not a plain tensor state dict; re-download it",
        ) from e
    if not isinstance(sd, dict):
        raise ModelError(
            "the weights file does not hold a state dict", where=str(pt), fix="re-save the model"
        )
    return {(k.removeprefix("_orig_mod.")): v for k, v in sd.items()}


def load_tokenizers(ckpt: Path, cfg: dict) -> tuple[Any, Any]:
    """(text tokenizer, label tokenizer), from the checkpoint folder when present, as gliner resolves them."""
    from transformers import AutoTokenizer

    def _load(src: str | Path, what: str) -> Any:
        try:
            return AutoTokenizer.from_pretrained(str(src))
        except Exception as e:
            raise ModelError(
                f"could not load the {what} tokenizer from {src}: {e}",
                where=str(ckpt),
                fix=f"save the {what} tokenizer into the checkpoint folder",
            ) from e

    tok = _load(ckpt if (ckpt / "tokenizer_config.json").is_file() else cfg["model_name"], "text")
    # gliner opts into bos/eos only when the tokenizer defines them (spm models under transformers 5)
    if hasattr(tok, "add_bos_token") and tok.bos_token_id is not None:
        tok.add_bos_token = True
    if hasattr(tok, "add_eos_token") and tok.eos_token_id is not None:
        tok.add_eos_token = True
    tok.add_tokens(GLINER_SPECIAL_TOKENS, special_tokens=True)
    ldir = ckpt / LABELS_TOKENIZER_DIR
    ltok = _load(ldir if ldir.is_dir() else cfg["labels_encoder"], "label")
    return tok, ltok


def strict_load(net: Any, sd: dict, where: str) -> None:
    """load_state_dict with strict key and shape checking and a readable error."""
    own = net.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    bad = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or bad:

        def show(xs: list) -> str:
            return ", ".join(xs[:5]) + (f" (+{len(xs) - 5} more)" if len(xs) > 5 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if bad:
            parts.append(
                "shape mismatch: " + show([f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in bad])
            )
        raise ModelError(
            "weights do not match gliner_config.json: " + "; ".join(parts),
            where=where,
            fix="the weights and the config come from different models; re-download the checkpoint",
        )
    net.load_state_dict(sd, strict=True)


def save_checkpoint(
    out_dir: str | os.PathLike,
    cfg: dict,
    state_dict: dict,
    tokenizer: Any,
    labels_tokenizer: Any,
    safe_serialization: bool = True,
) -> Path:
    """Write a gliner-loadable checkpoint folder atomically."""
    import torch

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / CONFIG_FILE).write_text(
            json.dumps(cfg, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        sd = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        if safe_serialization:
            from safetensors.torch import save_file

            save_file(sd, str(tmp / SAFE_WEIGHTS), metadata={"format": "pt"})
        else:
            torch.save(sd, str(tmp / PT_WEIGHTS))
        tokenizer.save_pretrained(str(tmp))
        labels_tokenizer.save_pretrained(str(tmp / LABELS_TOKENIZER_DIR))
        for tc in (tmp / "tokenizer_config.json", tmp / LABELS_TOKENIZER_DIR / "tokenizer_config.json"):
            if tc.is_file():  # transformers 5 writes a class name transformers 4 cannot load
                d = json.loads(tc.read_text(encoding="utf-8"))
                if d.get("tokenizer_class") == "TokenizersBackend":
                    d["tokenizer_class"] = "PreTrainedTokenizerFast"
                    tc.write_text(json.dumps(d, indent=2, ensure_ascii=False), encoding="utf-8")
        out.mkdir(parents=True, exist_ok=True)
        stale = [out / SAFE_WEIGHTS, out / PT_WEIGHTS]
        for f in stale:  # a leftover weights file of the other format would take precedence on load
            if f.exists() and not (tmp / f.name).exists():
                f.unlink()
        for src in sorted(tmp.rglob("*")):
            if src.is_file():
                dst = out / src.relative_to(tmp)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
