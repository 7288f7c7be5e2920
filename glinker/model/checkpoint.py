"""Read and write gliner-format checkpoints: ``gliner_config.json``, weights, text and label tokenizers.

Weights are read with safetensors or ``torch.load(weights_only=True)``: untrusted files are never unpickled.
Writes are atomic: the whole checkpoint is written to a temporary sibling folder, which then replaces the old
folder (renamed away, the new one renamed in, the old one removed); a save cut short is undone by the next one.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable

from glinker.errors import ConfigError, ModelError

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


# huggingface_hub.snapshot_download options that from_pretrained passes on (gliner's names)
HUB_OPTIONS = ("revision", "cache_dir", "token", "local_files_only")
# the ones that also apply to an encoder repository named in gliner_config.json (revision is the checkpoint's own)
ENCODER_HUB_OPTIONS = ("cache_dir", "token", "local_files_only")
HUB_OPTIONS_DOC = {
    "revision": "a branch, tag or commit hash (str)",
    "cache_dir": "a folder path",
    "token": "a hub token (str) or a bool",
    "local_files_only": "True or False",
}
HUB_OPTIONS_EXAMPLE = {
    "revision": "revision='main'",
    "cache_dir": "cache_dir='~/.cache/huggingface/hub'",
    "token": "token='hf_...' (or True: the saved login)",
    "local_files_only": "local_files_only=True",
}


def check_hub_options(hub: dict | None) -> dict:
    """``hub`` (``revision``, ``cache_dir``, ``token``, ``local_files_only``) checked; unset ones dropped."""
    out: dict = {}
    for k, v in (hub or {}).items():
        if k not in HUB_OPTIONS:
            raise ConfigError(f"unknown hub option {k!r}", where=k, fix=f"use one of {', '.join(HUB_OPTIONS)}")
        if v is None:
            continue
        ok = {
            "revision": isinstance(v, str) and bool(v.strip()),
            "cache_dir": isinstance(v, (str, os.PathLike)) and bool(str(v).strip()),
            "token": isinstance(v, (str, bool)),
            "local_files_only": isinstance(v, bool),
        }[k]
        if not ok:
            raise ConfigError(
                f"{k} must be {HUB_OPTIONS_DOC[k]}, not {v!r}", where=k, fix=f"e.g. {HUB_OPTIONS_EXAMPLE[k]}"
            )
        if k == "local_files_only" and not v:
            continue
        out[k] = str(Path(v).expanduser()) if k == "cache_dir" else v
    return out


def resolve_dir(path_or_id: str | os.PathLike, hub: dict | None = None) -> Path:
    """A local checkpoint folder, a model shipped with glinker, or a hub id (via huggingface_hub).

    ``hub``: options for ``huggingface_hub.snapshot_download`` (:data:`HUB_OPTIONS`), used for a hub id only."""
    if isinstance(path_or_id, bytes) or not isinstance(path_or_id, (str, os.PathLike)):
        raise ConfigError(
            f"the model must be a folder path, a shipped model name or a hub id (str), not "
            f"{type(path_or_id).__name__}",
            where="path_or_hub_id",
            fix="e.g. BiEncoder.from_pretrained('glinker-bi-minilm') or from_pretrained('models/my-model')",
        )
    if not str(os.fspath(path_or_id)).strip():
        raise ConfigError(
            "the model path is empty (it would silently mean the current folder)",
            where="path_or_hub_id",
            fix="pass a checkpoint folder (e.g. '.' for the current one, explicitly), a shipped model name or a "
            "hub id like 'org/name'",
        )
    hub = check_hub_options(hub)
    p = Path(path_or_id).expanduser()
    if p.is_file() or (p.exists() and not p.is_dir()):
        parent = p.parent if str(p.parent) else Path(".")
        model_there = (parent / CONFIG_FILE).is_file()
        raise ModelError(
            f"{p} is a file: a checkpoint is the folder holding gliner_config.json, the weights and the tokenizers"
            + ("" if model_there else f" ({parent} holds no {CONFIG_FILE} either)"),
            where=str(p),
            fix=(f"pass its folder, {parent} (--model {parent}, from_pretrained({str(parent)!r}))" if model_there else
                 "pass a checkpoint folder (one holding gliner_config.json), a shipped model name such as "
                 "glinker-bi-minilm, or a hub id"),
        )
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

        return Path(snapshot_download(repo_id=s, allow_patterns=WEIGHT_PATTERNS, **hub))
    except Exception as e:  # the hub raises many types (offline, 404, auth)
        # 'runs/t1' is a hub id's shape too: a mistyped local folder must not read as a network problem only
        local = f"; no local folder {s} exists either (looked in {Path.cwd()})"
        parent = p.parent
        if parent.is_dir():
            near = sorted(x.name for x in parent.iterdir() if x.is_dir() and not x.name.startswith("."))
            local += f"; {parent} holds {', '.join(near[:8]) + (' ...' if len(near) > 8 else '') or 'no folder'}"
        raise ModelError(
            f"could not download {s!r} from the Hugging Face hub: {e}{local}",
            where=s,
            fix="check the local path (relative to where you run the command), or the hub id and your network",
        ) from e


def read_config(ckpt: Path, hub: dict | None = None) -> dict:
    """The gliner config dict with defaults filled in; a bi-encoder span or token model, else ModelError.

    ``hub``: hub options for encoders whose config is fetched by name (:data:`ENCODER_HUB_OPTIONS` are used)."""
    f = ckpt / CONFIG_FILE
    check_checkpoint_folder(ckpt)
    try:
        raw = json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(
            f"gliner_config.json is not valid JSON: {e}",
            where=str(f),
            fix="restore the file from the original checkpoint",
        ) from e
    if not isinstance(raw, dict):
        raise ModelError(
            f"gliner_config.json holds a JSON {type(raw).__name__}, not an object of settings",
            where=str(f),
            fix='restore the file from the original checkpoint: it is one JSON object, {"max_width": 12, ...}',
        )
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
            cfg[key] = _fetch_hf_config(cfg[name], f, key, hub)
    return cfg


def check_checkpoint_folder(ckpt: Path) -> None:
    """A ModelError when the folder ``ckpt`` cannot be a checkpoint: it has no gliner_config.json (said with where
    the model is when it is a ``glinker train`` output folder or step checkpoint). `pipeline validate` asks too."""
    if (ckpt / CONFIG_FILE).is_file():
        return
    _not_a_checkpoint(ckpt)
    raise ModelError(
        "no gliner_config.json in the checkpoint folder",
        where=str(ckpt),
        fix="point at a folder saved by gliner or glinker (it holds gliner_config.json)",
    )


def _not_a_checkpoint(ckpt: Path) -> None:
    """A ModelError saying where the model is when ``ckpt`` is a ``glinker train`` output folder or one of its
    step checkpoints (neither is a model); nothing otherwise."""
    if (ckpt / "trainable.safetensors").is_file() or (ckpt.parent.name == "checkpoints"
                                                      and (ckpt / "state.json").is_file()):
        run = ckpt.parent.parent
        final = run / "final"
        raise ModelError(
            "this is a training checkpoint of `glinker train`: it holds the trained weights only "
            "(trainable.safetensors, with the optimiser state), not a whole model",
            where=str(ckpt),
            fix=(f"load the exported model {final}" if (final / CONFIG_FILE).is_file() else
                 f"run `glinker train --config <its config>` again: it resumes from the last checkpoint and, once "
                 f"train.steps are done, exports the whole model into {final}"),
        )
    if (ckpt / "checkpoints").is_dir() or (ckpt / "final").is_dir():
        final = ckpt / "final"
        if (final / CONFIG_FILE).is_file():
            raise ModelError(f"this is a `glinker train` output folder; the trained model is in {final}",
                             where=str(ckpt), fix=f"pass {final}")
        raise ModelError(
            "this is a `glinker train` output folder without an exported model yet (no final/gliner_config.json)",
            where=str(ckpt),
            fix=f"run `glinker train --config <its config>` again: it resumes and, once train.steps are done, "
                f"exports the model into {final}",
        )


# what an encoder's tokenizer or config needs from its hub repository (never the weights)
ENCODER_FILE_PATTERNS = ["*.json", "*.txt", "*.model", "*.tiktoken", "merges*", "vocab*", "spiece*", "sentencepiece*"]


def encoder_source(name: str | Path, hub: dict | None = None) -> Path:
    """A local folder holding an encoder's tokenizer/config files: ``name`` itself when it is a folder, else its
    hub snapshot (the local cache offline). Fetched through huggingface_hub, which fails at once when the hub is
    unreachable, where transformers' own loaders retry for ~30 s per file before giving up.

    ``hub``: ``cache_dir``, ``token`` and ``local_files_only`` are passed to ``snapshot_download`` (a
    ``revision`` there is the checkpoint's, not the encoder repository's, and is not)."""
    p = Path(name).expanduser()
    if p.is_dir():
        return p
    from huggingface_hub import snapshot_download

    opts = {k: v for k, v in check_hub_options(hub).items() if k in ENCODER_HUB_OPTIONS}
    return Path(snapshot_download(repo_id=str(name), allow_patterns=ENCODER_FILE_PATTERNS, **opts))


def _looks_like_path(name: str) -> bool:
    """``name`` can only be a local path (a hub id is 'name' or 'org/name')."""
    s = str(name)
    return s.startswith((".", "/", "~")) or s.endswith(("/", os.sep)) or s.strip("/").count("/") > 1 or (
        os.sep != "/" and os.sep in s)


def _fetch_hf_config(name: str, f: Path, key: str, hub: dict | None = None) -> dict:
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(str(encoder_source(name, hub))).to_dict()
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


# files a tokenizer can be built from besides tokenizer.json (a slow tokenizer's vocabulary)
_VOCAB_FILES = ("vocab.txt", "vocab.json", "merges.txt", "spm.model", "sentencepiece.bpe.model", "tokenizer.model",
                "spiece.model", "*.model", "*.tiktoken")


def _has_vocab(folder: Path) -> bool:
    return any(any(folder.glob(pat)) for pat in _VOCAB_FILES)


def load_tokenizers(ckpt: Path, cfg: dict, hub: dict | None = None) -> tuple[Any, Any]:
    """(text tokenizer, label tokenizer), from the checkpoint folder when present, as gliner resolves them.

    A checkpoint without its own tokenizer files (no ``tokenizer_config.json``; no ``labels_tokenizer/``) names the
    encoder instead (``model_name`` / ``labels_encoder``: a local folder or a hub id, fetched with ``hub``'s
    options); when that fails too, the error says that the tokenizer files are missing from the checkpoint folder."""
    from transformers import AutoTokenizer

    def _load(folder: Path, key: str, what: str) -> Any:
        own = folder.is_dir() if folder != ckpt else (folder / "tokenizer_config.json").is_file()
        if own:
            try:
                return AutoTokenizer.from_pretrained(str(folder))
            except Exception as e:
                if (folder / "tokenizer.json").is_file() or _has_vocab(folder):
                    raise ModelError(f"could not load the {what} tokenizer from {folder}: {e}", where=str(ckpt),
                                     fix=f"save the {what} tokenizer into the checkpoint folder") from e
                # transformers' own text here ("You need to have sentencepiece...") hides the real problem
                raise ModelError(
                    f"could not load the {what} tokenizer from {folder}: the tokenizer files are missing from the "
                    f"checkpoint folder ({folder} has no tokenizer.json, nor a vocabulary file such as vocab.txt or "
                    "spm.model)",
                    where=str(folder),
                    fix=f"copy the {what} encoder's tokenizer files (tokenizer.json, tokenizer_config.json) into "
                    f"{folder}, or re-save the model with save_pretrained where it still loads",
                ) from None
        src = cfg.get(key)
        absent = (f"no {LABELS_TOKENIZER_DIR}/ folder" if folder != ckpt
                  else "no tokenizer_config.json" + ("" if (folder / "tokenizer.json").is_file()
                                                     else " and no tokenizer.json"))
        missing = f"the {what} tokenizer files are missing from the checkpoint folder ({absent})"
        fix = (f"copy the {what} encoder's tokenizer files (tokenizer.json, tokenizer_config.json) into "
               f"{folder}, or set {key} in gliner_config.json to a local encoder folder or a reachable hub id")
        if not isinstance(src, str) or not src.strip():
            raise ModelError(f"could not load the {what} tokenizer: {missing}, and gliner_config.json names no "
                             f"{key} to load it from", where=str(ckpt), fix=fix)
        if not Path(src).expanduser().is_dir() and _looks_like_path(src):
            raise ModelError(
                f"could not load the {what} tokenizer from {src}: {missing}, and {key} in gliner_config.json names "
                "that local folder, which does not exist (here)",
                where=str(ckpt),
                fix=fix,
            )
        try:
            where_from = encoder_source(src, hub)
        except Exception as e:
            raise ModelError(
                f"could not load the {what} tokenizer from {src}: {missing}, and {key} {src!r} in "
                f"gliner_config.json could not be fetched in their place: {e}",
                where=str(ckpt),
                fix=fix,
            ) from e
        try:
            return AutoTokenizer.from_pretrained(str(where_from))
        except Exception as e:
            raise ModelError(
                f"could not load the {what} tokenizer from {src}: {e}",
                where=str(ckpt),
                fix=f"save the {what} tokenizer into the checkpoint folder",
            ) from e

    tok = _load(ckpt, "model_name", "text")
    # gliner opts into bos/eos only when the tokenizer defines them (spm models under transformers 5)
    if hasattr(tok, "add_bos_token") and tok.bos_token_id is not None:
        tok.add_bos_token = True
    if hasattr(tok, "add_eos_token") and tok.eos_token_id is not None:
        tok.add_eos_token = True
    tok.add_tokens(GLINER_SPECIAL_TOKENS, special_tokens=True)
    ltok = _load(ckpt / LABELS_TOKENIZER_DIR, "labels_encoder", "label")
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
    """Write a gliner-loadable checkpoint folder atomically.

    The whole folder is written next to ``out_dir`` and swapped in (the old folder renamed away, the new one
    renamed in, the old one removed), so an interruption leaves the old checkpoint or the new one, never a mix.
    Files of the old folder that are no checkpoint files (notes, a README) are carried over as they are; the
    checkpoint's own files get the mode a plain ``open`` gives under the umask (not safetensors' 0600). Saves of
    one folder take turns (a lock file beside it)."""
    from glinker.io import locked

    out = Path(out_dir)
    if out.is_symlink():  # a link to the model folder: the folder it points to is replaced, the link stays
        out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with locked(out.parent / f".{out.name}.lock"):
        _recover(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            _write_checkpoint(tmp, cfg, state_dict, tokenizer, labels_tokenizer, safe_serialization)
            _plain_modes(tmp)
            carry_over(out, tmp, _is_checkpoint_file)
            _swap_in(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_checkpoint(tmp: Path, cfg: dict, state_dict: dict, tokenizer: Any, labels_tokenizer: Any,
                      safe_serialization: bool) -> None:
    import torch

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


def carry_over(old_dir: Path, new_dir: Path, own: Callable[[str], bool]) -> None:
    """Copy into ``new_dir`` what the user keeps beside a model in ``old_dir`` (notes, a README): each entry that
    ``new_dir`` does not have and that is no file of the model (``own(name)``), as it is (links as links)."""
    if not old_dir.is_dir():
        return
    for old in old_dir.iterdir():
        if (new_dir / old.name).exists() or own(old.name):
            continue
        if old.is_dir() and not old.is_symlink():
            shutil.copytree(old, new_dir / old.name, symlinks=True)
        else:
            shutil.copy2(old, new_dir / old.name, follow_symlinks=False)


def _is_checkpoint_file(name: str) -> bool:
    """A file a checkpoint is made of (the old model's, never carried into a new one: a weights file of the other
    format would take precedence on load, an old tokenizer file would mix with the new tokenizer)."""
    return name == LABELS_TOKENIZER_DIR or any(fnmatch.fnmatch(name, pat) for pat in WEIGHT_PATTERNS if "/" not in pat)


def _plain_modes(root: Path) -> None:
    """The modes of a plain ``open``/``mkdir`` under the umask for a tree ``tempfile`` and safetensors made
    owner-only (0700 folder, 0600 weights)."""
    from glinker.io import plain_mode

    for d, _dirs, files in os.walk(root):
        plain_mode(d, executable=True)
        for f in files:
            if not os.path.islink(os.path.join(d, f)):
                plain_mode(os.path.join(d, f))


def _swap_in(new: Path, out: Path) -> None:
    """Replace the folder ``out`` with ``new`` by two renames; a kill between them leaves ``.<name>.old-*``,
    which :func:`recover_checkpoint_dir` renames back."""
    if not out.exists():
        os.replace(new, out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(out, old)
    os.replace(new, out)
    shutil.rmtree(old, ignore_errors=True)


def _recover(out: Path) -> None:
    """Undo what an interrupted save of ``out`` left (caller holds the folder's lock): its temporary folders are
    removed, and a previous checkpoint renamed away but not replaced is renamed back."""
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        log.info("removing %s, left by an interrupted save", tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    olds = sorted(out.parent.glob(f".{out.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds and not out.exists():
        log.warning("%s: a save was interrupted while replacing it; restoring the previous checkpoint", out)
        os.replace(olds.pop(), out)
    for old in olds:
        shutil.rmtree(old, ignore_errors=True)


def recover_checkpoint_dir(out_dir: str | os.PathLike) -> None:
    """Clean up after a save of ``out_dir`` that was cut short (see :func:`save_checkpoint`)."""
    from glinker.io import locked

    out = Path(out_dir).resolve() if Path(out_dir).is_symlink() else Path(out_dir)
    left = [*out.parent.glob(f".{out.name}.tmp-*"), *out.parent.glob(f".{out.name}.old-*")] if out.parent.is_dir() else []
    if not left:
        return
    with locked(out.parent / f".{out.name}.lock"):
        _recover(out)
