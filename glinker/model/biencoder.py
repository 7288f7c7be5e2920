"""BiEncoder: load a GLiNER bi-encoder checkpoint and run NER, label banks and span vectors on it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import numbers
import os
import sys
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from glinker.errors import ConfigError, DataError, ModelError
from glinker.io import check_text
from glinker.locks import LOAD_INTERRUPTED, RESTART_FIX, fork_safe_lock, model_loading
from glinker.model import scoring
from glinker.model.decoding import greedy_decode
from glinker.model.labels import LabelBank
from glinker.model.scoring import score_rows, score_rows_topk
from glinker.model.words import SplitText, Window, WordMemo, plan_windows, tokenize_words

log = logging.getLogger(__name__)

LONG_TEXT_MODES = ("chunk", "truncate")
# labels retrieved per span when a large label bank is scored through its FAISS index
DEFAULT_LABEL_TOP_K = 64


class Entities(list):
    """The entities of one text (a list of dicts); ``truncated``: part of the text was not read."""

    truncated: bool = False
    windows: int = 1


# one switch into eval mode shared by the threads predicting with a model (BiEncoder._eval_mode); like the models'
# tokenizer locks, it starts free in a child forked while another thread held it (glinker.locks)
_MODE_LOCK = fork_safe_lock()

_EVAL_MODELS: weakref.WeakSet[BiEncoder] = weakref.WeakSet()
"""The models some thread is inside ``_eval_mode`` with (predicting), for a forked child: the calls of its threads
that are not in the child would never end there, and with them the eval mode (dropout off, however the child sets
the model's mode: ``model.train()`` then ``predict()`` ran with dropout on). In the child, right after the fork
(``os.register_at_fork``, while it has one thread), each such model forgets those calls and, when none is left,
gets its modules' training modes back, as the last of them would have done."""


def _eval_mode_after_fork() -> None:
    me = threading.get_ident()
    for model in list(_EVAL_MODELS):
        model._eval_after_fork(me)


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_eval_mode_after_fork)

# what ``labels`` may be, for error messages
LABEL_SHAPES = ("a list (or tuple) of names, a {name: description} dict or a LabelBank; for different labels per "
                "text, one list (or tuple, or dict) of names per text, in a list or tuple")


_LABEL_SETS = (list, tuple, set, frozenset, Mapping)
"""What one text's label set may be, in a per-text list: as the labels of all texts may be."""


def _is_per_text(labels: Any) -> bool:
    """One label set per text: a list or tuple whose items include lists, tuples, sets or mappings."""
    return (isinstance(labels, (list, tuple)) and bool(labels)
            and any(isinstance(x, _LABEL_SETS) for x in labels))


def _check_flag(value: Any, name: str) -> bool:
    """``value`` as a bool (a numpy bool too); a ConfigError naming ``name`` otherwise: ``flat_ner="no"`` was true."""
    if isinstance(value, bool):
        return value
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.bool_):
        return bool(value)
    raise ConfigError(f"{name} must be True or False, not {value!r:.60}", where=name, fix=f"e.g. {name}=False")


def _check_count(value: Any, name: str) -> int:
    """``value`` as an int >= 1; a ConfigError naming ``name`` otherwise (a str, None, 2.5, 0, True...)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} must be a whole number >= 1, not {value!r}", where=name, fix=f"e.g. {name}=8")
    return int(value)


def _check_threshold(value: Any) -> float:
    """A probability threshold as a float: Python and numpy numbers and 0-d numeric tensors/arrays are taken
    (``float()``); bools, strings, NaN and values outside [0, 1] are a ConfigError."""
    ok = False
    if not isinstance(value, (bool, str, bytes)):
        if isinstance(value, numbers.Real):  # int, float, numpy integer/floating scalars (numpy bool is not)
            ok = True
        elif getattr(value, "ndim", None) == 0 and hasattr(value, "dtype"):  # a 0-d torch tensor or numpy array
            dt = value.dtype
            kind = getattr(dt, "kind", None)
            ok = kind in ("f", "i", "u") if kind is not None else (
                getattr(dt, "is_floating_point", False) or str(dt).startswith(("torch.int", "torch.uint")))
    f = float(value) if ok else float("nan")
    if not 0.0 <= f <= 1.0:
        raise ConfigError(f"threshold must be a number from 0 to 1, not {value!r}", where="threshold",
                          fix="e.g. threshold=0.5")
    return f


def _normalize_label_set(labels: Any, where: str) -> tuple[list[str], list[str]]:
    """(prompts, names) as gliner: a str is one label, a list is de-duplicated, a mapping is {name: text}."""
    if isinstance(labels, Mapping):
        names, prompts = [], []
        for k, v in labels.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise DataError(
                    "label mappings must map str names to str descriptions",
                    where=where,
                    fix="use {'person': 'a human being', ...}",
                )
            names.append(k)
            prompts.append(v)
        if len(set(prompts)) != len(prompts):
            first: dict[str, str] = {}
            a, b = next((first[t], n) for n, t in zip(names, prompts) if t in first or first.setdefault(t, n) != n)
            raise DataError(
                f"labels {a!r} and {b!r} have the same description {labels[a]!r}: the label set cannot tell them "
                "apart",
                where=where,
                fix="give every label a different description (or merge the two labels)",
            )
        return prompts, names
    if isinstance(labels, str):
        labels = [labels]
    if isinstance(labels, (set, frozenset)):  # no order of its own: sorted, so every run scores them alike
        labels = sorted(labels, key=str)
    if isinstance(labels, (bytes, int, float)) or labels is None or not hasattr(labels, "__iter__"):
        raise DataError(f"labels must be a list of strings, not {type(labels).__name__}", where=where,
                        fix="pass e.g. ['person', 'location'], {'person': 'a human being'} or a LabelBank")
    labels = list(labels)
    bad = next((i for i, x in enumerate(labels) if not isinstance(x, str)), None)
    if bad is not None:
        raise DataError(f"labels must be strings; item {bad} is a {type(labels[bad]).__name__}: {labels[bad]!r:.60}",
                        where=f"{where}[{bad}]", fix=f"labels are {LABEL_SHAPES}")
    blank = [i for i, x in enumerate(labels) if not x.strip()]
    if blank:
        raise DataError(f"label {blank[0]} is empty", where=where, fix="drop empty labels")
    out = list(dict.fromkeys(labels))
    return out, out


DEVICE_TYPES = ("cpu", "cuda", "mps")


def device_named(device: Any, where: str = "device") -> Any:
    """``device`` as a torch device of a type glinker runs on (cpu, cuda[:N], mps), whether or not this machine has
    it (a pipeline loaded to hand its work to GPU workers); a ConfigError naming it otherwise (a typo such as
    ``gpu0``; ``meta`` and other device types)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"unknown torch device {device!r}", where=where,
                          fix="use cpu, cuda or cuda:N (mps on Apple silicon)") from None
    if dev.type not in DEVICE_TYPES:
        raise ConfigError(f"device {device!r} is not supported: glinker runs models on cpu, cuda[:N] or mps",
                          where=where, fix="use cpu, cuda or cuda:N (mps on Apple silicon)")
    return dev


def _device(device: Any, where: str = "device") -> Any:
    """``device`` as a torch device that this machine has (cpu, cuda[:N], mps); a ConfigError naming it
    otherwise (:func:`device_named`, or one this machine lacks)."""
    import torch

    if device is None:
        return torch.device("cpu")
    dev = device_named(device, where)
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()}
    if not available[dev.type]:
        raise ConfigError(f"device {device!r} is not available here (this torch build or machine has no "
                          f"{dev.type.upper()})", where=where, fix="use --device cpu, or leave it out")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)",
                          where=where, fix="use cuda:0 .. cuda:N-1")
    return dev


DTYPE_NAMES = ("float32", "bfloat16", "float16", "float64")  # float64: exactness checks from Python


def _dtype(dtype: Any, device: Any = None) -> Any:
    """``dtype`` (float32, bfloat16, float16 or float64, as a torch dtype or its name, or "auto": :func:`auto_dtype`
    on ``device``) as a torch dtype; a ConfigError otherwise (the float8 types run no model here). The command line
    and pipeline files take float32, bfloat16, float16 and auto."""
    import torch

    name = dtype.strip().lower().removeprefix("torch.") if isinstance(dtype, str) else None
    if name == "auto":
        return auto_dtype(device if device is not None else "cpu")
    want = getattr(torch, name, None) if name is not None else dtype
    if not isinstance(want, torch.dtype) or str(want).removeprefix("torch.") not in DTYPE_NAMES:
        raise ConfigError(f"dtype {dtype!r} is not one of float32, bfloat16, float16, float64, auto", where="dtype",
                          fix="use auto (bfloat16 where this CPU or GPU runs it fast, else float32), or float32")
    if want in (torch.bfloat16, torch.float16):
        _warn_if_slow(want, device)
    return want


# "auto" runs in bfloat16 on a CPU with bfloat16 units other than AMX (AVX512-BF16, ARM BF16) whose bfloat16 matrix
# products measure at least AUTO_BF16_MIN_SPEEDUP times faster than float32 ones, and on an AMX CPU unless they
# measure under AUTO_AMX_MIN_SPEEDUP; the shipped model then links and tags ~2x faster on AMX with the same scores
# within bfloat16 rounding (docs/model.md, "Precision")
AUTO_BF16_MIN_SPEEDUP = 2.0
AUTO_AMX_MIN_SPEEDUP = 0.5
_AUTO: dict[str, Any] = {}
_WARNED_SLOW: set[str] = set()


def _cpu_bf16_units() -> str:
    """"amx", "avx512_bf16" or "" for this CPU (torch's own checks; "unknown" where this torch lacks them)."""
    import platform

    import torch

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return "unknown"  # torch's checks are x86 ones: ARM's bfloat16 extension (Graviton 3, Apple M2) is measured
    cpu = getattr(torch, "cpu", None)
    amx = getattr(cpu, "_is_amx_tile_supported", None)
    avx = getattr(cpu, "_is_avx512_bf16_supported", None)
    if amx is None or avx is None:
        return "unknown"
    try:
        return "amx" if amx() else "avx512_bf16" if avx() else ""
    except Exception:  # pragma: no cover - a torch build without the checks
        return "unknown"


def auto_dtype(device: Any = "cpu") -> Any:
    """The dtype ``dtype="auto"`` picks on ``device``: bfloat16 on a CUDA device of compute capability 8.0 or more
    (Ampere and later); on a CPU with AMX tiles unless its bfloat16 products measure under AUTO_AMX_MIN_SPEEDUP of
    float32's speed (AMX measures 4-6x idle, ~1x on a loaded machine; only AMX reported without usable bfloat16
    products falls under 0.5); on another CPU with bfloat16 products
    (AVX512-BF16 without AMX, ARM's BF16 extension) where they measure at least AUTO_BF16_MIN_SPEEDUP times faster
    than float32 (AMD's measure 2.1-2.4x, so set the dtype explicitly there for the same choice every run); float32
    everywhere else (x86 CPUs without bfloat16 units run it 10-40x slower; MPS). Measured once per process, device
    and thread count, and logged at INFO with the reason. ``device`` is checked first (a ConfigError for one this
    machine lacks)."""
    import torch

    dev = _device(device)
    key = f"{dev}:{torch.get_num_threads()}"
    if key not in _AUTO:
        if dev.type == "cuda":
            major = torch.cuda.get_device_capability(dev)[0]
            ok, why = major >= 8, f"compute capability {major}.x; bfloat16 from 8.0"
        elif dev.type == "cpu":
            units = _cpu_bf16_units()
            if units == "":
                ok, why = False, "this CPU has no bfloat16 units (AMX, AVX512-BF16)"
            else:
                from glinker.model.scoring import bf16_speedup

                speedup = bf16_speedup(dev)
                # AMX measures 4-6x idle and down to ~1x on a loaded machine: only a CPU that reports AMX without
                # bfloat16 products worth the name (10-40x slower) falls back; AVX512-BF16 alone needs 2x
                need = AUTO_AMX_MIN_SPEEDUP if units == "amx" else AUTO_BF16_MIN_SPEEDUP
                ok = speedup is not None and speedup >= need
                why = ("no bfloat16 products here" if speedup is None else
                       f"{'AMX; ' if units == 'amx' else ''}bfloat16 products {speedup:.2g}x float32 here; bfloat16 "
                       f"from {need:g}x")
        else:
            ok, why = False, f"float32 on {dev.type}"
        _AUTO[key] = torch.bfloat16 if ok else torch.float32
        log.info("dtype auto on %s: %s (%s)", dev, "bfloat16" if ok else "float32", why)
    return _AUTO[key]


def _cpu_fp16_fast() -> bool | None:
    """Whether oneDNN has fast float16 kernels on this CPU (AVX512-FP16, AMX-FP16); None where torch cannot say."""
    import torch

    check = getattr(getattr(getattr(torch, "ops", None), "mkldnn", None), "_is_mkldnn_fp16_supported", None)
    try:
        return bool(check()) if check is not None else None
    except Exception:  # pragma: no cover - a torch build without oneDNN
        return None


def _warn_if_slow(want: Any, device: Any) -> None:
    """Warn once when bfloat16 is asked for on an x86 CPU without bfloat16 units (AMX, AVX512-BF16), or float16 on
    one without fast float16 kernels (AVX512-FP16, AMX-FP16: AMD Zen 4 has neither), where it runs many (10-70)
    times slower than float32 (``auto`` keeps float32 on CPUs without bfloat16 units)."""
    import torch

    dev = torch.device(device if device is not None else "cpu")
    if dev.type != "cpu" or str(want) in _WARNED_SLOW:
        return
    units = _cpu_bf16_units()
    if want == torch.float16:
        slow, what = units != "unknown" and _cpu_fp16_fast() is False, "float16 units (AVX512-FP16, AMX-FP16)"
    else:
        slow, what = units == "", "bfloat16 units (AMX, AVX512-BF16)"
    if not slow:
        return
    _WARNED_SLOW.add(str(want))
    log.warning("dtype %s on a CPU without %s: the model runs several times slower than in float32 here; use dtype "
                "auto or float32", str(want).removeprefix("torch."), what)


# gliner options that have no glinker counterpart: accepted when off (their gliner default), refused when on
_GLINER_ONLY = {
    "return_class_probs": "glinker returns each entity's score only",
    "return_vectors": "span vectors: model.span_vectors(texts, spans)",
    "return_label_vectors": "label vectors: bank = model.encode_labels(labels); bank.vectors",
    "packing_config": "glinker batches windows itself (batch_size=)",
    "input_spans": "score given spans with model.span_vectors(texts, spans) and a LabelBank's vectors",
}
# predict's keywords that the gliner-style methods pass on
_PREDICT_KEYWORDS = ("batch_size", "long_text", "overlap", "label_top_k", "on_window")


def _bank_cast(bank: LabelBank, src: Any, device: Any, dtype: Any) -> Any:
    """A bank's vectors on ``device`` in ``dtype``: ``src`` itself when it is already, else a copy kept on the bank
    for the next call (a bfloat16 model cast a million-label bank at every predict call: 0.17 s each)."""
    if src.device == device and src.dtype == dtype:
        return src
    key = (id(src), tuple(src.shape), str(device), dtype)
    hit = getattr(bank, "_cast", None)
    if hit is None or hit[0] != key:
        hit = (key, src.to(device, dtype=dtype))
        bank._cast = hit
    return hit[1]


class BiEncoder:
    """A GLiNER bi-encoder (span or token level) loaded from a gliner-format checkpoint."""

    def __init__(
        self, net: Any, config: dict, tokenizer: Any, labels_tokenizer: Any, device: Any, source: str = ""
    ) -> None:
        self.net = net
        self.config = config
        self.tokenizer = tokenizer
        self.labels_tokenizer = labels_tokenizer
        self.device = device
        self.source = source
        self.max_width = int(config["max_width"])
        self.max_len = int(config["max_len"])
        # glinker's own key: the longest window (in words) a long text is chunked into; a model trained on short
        # windows loses recall on longer inputs (docs/model.md, "Long texts"). gliner ignores it; unset: max_len
        self.window_words = min(self.max_len, int(config.get("window_words") or self.max_len))
        self.pooling = config.get("subtoken_pooling") or "first"
        self._fingerprint: str | None = None
        self._fold: bool | None = None  # None: decide by label count (tests force either path)
        # the bfloat16 pre-filter where it is faster (results unchanged: glinker.model.scoring); False: never
        self.lowp = True
        self._tok_lock = fork_safe_lock()  # see _tokenizing

    @property
    def _tokenizing(self) -> Any:
        """The lock held around every call into this model's tokenizers (text and label), so that one model can be
        used from several threads at once. A Hugging Face fast tokenizer keeps its padding and truncation settings
        as state that each call sets before it encodes: a call without padding (``subtoken_counts``, planning the
        windows) on one thread, between another thread's setting of ``padding="longest"`` and its encoding, left
        that batch unpadded ("Unable to create tensor ... padding=True"). Only tokenization is serialized; the
        forward passes run concurrently. Code that calls ``model.tokenizer`` itself while other threads predict
        should hold it too: ``with model._tokenizing: ...``."""
        lock = self.__dict__.get("_tok_lock")
        if lock is None:  # an object made without __init__ (a subclass, __new__)
            with _MODE_LOCK:
                lock = self.__dict__.setdefault("_tok_lock", fork_safe_lock())
        return lock

    @property
    def _words(self) -> WordMemo:
        """Word splits and subtoken counts of the texts read lately (:class:`glinker.model.words.WordMemo`): a
        linking pipeline reads each text for its mentions and again for span vectors."""
        memo = self.__dict__.get("_word_memo")
        if memo is None:
            with _MODE_LOCK:
                memo = self.__dict__.setdefault("_word_memo", WordMemo())
        return memo  # type: ignore[no-any-return]

    def __getstate__(self) -> dict[str, Any]:  # copy.deepcopy, pickle: a lock is neither copied nor pickled
        state = self.__dict__.copy()
        state.pop("_tok_lock", None)
        state.pop("_word_memo", None)
        state.pop("_eval_users", None)  # the calls in eval mode are the original's; its copy has none ...
        if not state.get("_eval_saved"):
            state.pop("_eval_saved", None)
        return state

    def __copy__(self) -> BiEncoder:
        """A shallow copy: the same network, tokenizers and their lock, and the same record of the calls in eval mode
        (the network's modes are shared, so they are switched back once for both, when the last call ends)."""
        new = self.__class__.__new__(self.__class__)
        new.__dict__.update(self.__dict__)
        return new

    def __setstate__(self, state: dict[str, Any]) -> None:
        saved = state.pop("_eval_saved", None) or []
        state.pop("_eval_users", None)
        self.__dict__.update(state)
        self._tok_lock = fork_safe_lock()
        for m in saved:  # ... so a copy made while some thread predicted gets the training modes back at once
            m.training = True

    # ---- loading and saving --------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | os.PathLike,
        device: Any = None,
        dtype: Any = None,
        max_width: int | None = None,
        max_len: int | None = None,
        window_words: int | None = None,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        map_location: Any = None,
        **kwargs: Any,
    ) -> BiEncoder:
        """Load from a local folder, a shipped model name or a hub id (gliner format, strict key checking).

        ``window_words`` overrides the checkpoint's chunking window for long texts (0: ``max_len``).

        gliner's hub options ``revision``, ``cache_dir``, ``token`` and ``local_files_only`` go to
        ``huggingface_hub.snapshot_download`` for a hub id (all four), and for encoders that
        ``gliner_config.json`` names by hub id when the checkpoint lacks their tokenizer or config (all but
        ``revision``, which is the checkpoint repository's); a local folder ignores them. ``map_location`` is
        gliner's name for ``device``. ``dtype``: float32, bfloat16, float16, float64, or "auto"
        (:func:`auto_dtype`: bfloat16 where it runs fast, else float32). ``device`` (cpu, cuda[:N], mps) and ``dtype`` are checked
        before anything is read; any other keyword is a ConfigError listing the accepted ones.

        Loads run one at a time in a process (:data:`glinker.locks.MODEL_LOAD_LOCK`): transformers imports its
        classes lazily and not thread-safely, so two threads loading their first model at once failed ("cannot
        import name 'AutoTokenizer'")."""
        with model_loading():
            try:
                return cls._load(path_or_hub_id, device, dtype, max_width, max_len, window_words, revision,
                                 cache_dir, token, local_files_only, map_location, kwargs)
            except Exception as e:
                if not LOAD_INTERRUPTED.is_set() or isinstance(e, ConfigError):
                    raise
                raise ModelError(f"loading {path_or_hub_id} failed: {type(e).__name__}: {str(e)[:300]}",
                                 where=str(path_or_hub_id), fix=RESTART_FIX) from e

    @classmethod
    def _load(cls, path_or_hub_id: str | os.PathLike, device: Any, dtype: Any, max_width: int | None,
              max_len: int | None, window_words: int | None, revision: str | None,
              cache_dir: str | os.PathLike | None, token: str | bool | None, local_files_only: bool,
              map_location: Any, kwargs: dict[str, Any]) -> BiEncoder:
        """:meth:`from_pretrained`'s arguments (``kwargs``: its unknown keywords), under the load lock."""
        from glinker.model.checkpoint import (
            load_state_dict,
            load_tokenizers,
            read_config,
            resolve_dir,
            strict_load,
        )
        from glinker.model.network import BiEncoderNetwork, build_hf_encoder

        if kwargs:
            accepted = ("path_or_hub_id", "device", "dtype", "max_width", "max_len", "window_words", "revision",
                        "cache_dir", "token", "local_files_only", "map_location")
            bad = sorted(kwargs)
            raise ConfigError(
                f"from_pretrained got unknown keyword argument(s) {', '.join(map(repr, bad))}",
                where=f"from_pretrained({bad[0]}=...)",
                fix=f"accepted: {', '.join(accepted)}",
            )
        if map_location is not None:
            if device is not None and str(device) != str(map_location):
                raise ConfigError(
                    f"device={device!r} and map_location={map_location!r} disagree (map_location is gliner's name "
                    "for device)",
                    where="map_location",
                    fix="pass one of them",
                )
            dev = _device(map_location, "map_location")
        else:
            dev = _device(device)
        want = _dtype(dtype, dev) if dtype is not None else None
        hub = {"revision": revision, "cache_dir": cache_dir, "token": token, "local_files_only": local_files_only}
        ckpt = resolve_dir(path_or_hub_id, hub)
        cfg = read_config(ckpt, hub)
        if max_width is not None:
            cfg["max_width"] = int(max_width)
        if max_len is not None:
            cfg["max_len"] = int(max_len)
        if window_words is not None:
            cfg.pop("window_words", None)
            if window_words:
                cfg["window_words"] = int(window_words)
        try:
            text_model = build_hf_encoder(cfg["encoder_config"], cfg.get("_attn_implementation"))
            label_model = build_hf_encoder(cfg["labels_encoder_config"])
        except Exception as e:
            raise ModelError(
                f"could not build the encoders from gliner_config.json: {e}",
                where=str(ckpt / "gliner_config.json"),
                fix="the encoder configs need a model_type this transformers version knows",
            ) from e
        net = BiEncoderNetwork(cfg, text_model, label_model)
        strict_load(net, load_state_dict(ckpt), str(ckpt))
        tok, ltok = load_tokenizers(ckpt, cfg, hub)
        net.to(dev)
        model = cls(net, cfg, tok, ltok, dev, str(path_or_hub_id))
        if want is not None and want != next(net.parameters()).dtype:
            # the checkpoint's identity, not the cast's: banks and KBs it encoded still match
            model._fingerprint = model.fingerprint
            net.to(want)
        net.eval()
        return model

    # ---- device, dtype, mode (torch-style, as on a gliner model) ----------------------------------------
    def to(self, device: Any = None, dtype: Any = None) -> BiEncoder:
        """Move the network to ``device`` (cpu, cuda[:N], mps; None: stay) and/or cast it to the floating-point
        ``dtype`` (None: keep), updating ``model.device``; returns the model (``m = m.to("cuda")``).

        ``m.to(torch.bfloat16)`` casts only. As with ``from_pretrained(dtype=...)``, the fingerprint stays the
        checkpoint's (label banks and KBs it encoded still match); a cast to a lower precision and back keeps the
        rounding (reload the checkpoint for the exact weights). Scoring matrices cached on label banks are kept per
        device and dtype, so a bank used before the move is recomputed on first use after it."""
        import torch

        if isinstance(device, torch.dtype) and dtype is None:
            device, dtype = None, device
        dev = _device(device) if device is not None else self.device
        want = _dtype(dtype, dev) if dtype is not None else None
        if want is not None and want != next(self.net.parameters()).dtype and self._fingerprint is None:
            self._fingerprint = self.fingerprint  # before the cast: the checkpoint's identity
        if want is None:
            self.net.to(dev)
        else:
            self.net.to(dev, want)
        self.device = dev
        return self

    @property
    def dtype(self) -> Any:
        """The torch dtype of the network's weights."""
        return next(self.net.parameters()).dtype

    def eval(self) -> BiEncoder:
        """The network in eval mode (no dropout); returns the model. Inference methods use eval mode anyway."""
        self.net.eval()
        return self

    def train(self, mode: bool = True) -> BiEncoder:
        """The network in training mode (``mode=False``: eval mode), as torch's ``Module.train``; returns the model.
        ``predict`` and the other inference methods still run in eval mode and restore this mode after."""
        if not isinstance(mode, bool):
            raise ConfigError(f"mode must be True or False, not {mode!r}", where="mode", fix="train() or eval()")
        self.net.train(mode)
        return self

    @contextlib.contextmanager
    def _eval_mode(self) -> Any:
        """Run the block with the whole network in eval mode (dropout off: deterministic results), then give
        every module back the mode it had: a model being fine-tuned in the same process (all or part of it in
        training mode) stays as it was. Nothing is switched when the network is already in eval mode. Calls from
        several threads share one switch: the modes come back when the last of them ends (a training step run
        meanwhile on another thread sees eval mode: train and predict on one model in turn, not at once). The calls
        are counted per thread: in a child forked while other threads were inside, those calls are not (see
        ``_EVAL_MODELS``).

        Every inference call (predict, encode_labels, encode_entities, span_vectors) runs in it, so it also guards
        torch against fork as a pipeline's batches are guarded (``glinker.locks.torch_guarded``): a child
        forked after this process ran torch with several threads runs it with one (and says so) instead of hanging
        in torch's thread pool."""
        from glinker.locks import torch_guarded

        me = threading.get_ident()
        with torch_guarded():
            with _MODE_LOCK:
                users = self.__dict__.get("_eval_users")
                first = not users
                if first:
                    users = self._eval_users = {}
                    self._eval_saved = [m for m in self.net.modules() if m.training]
                    _EVAL_MODELS.add(self)  # (before the switch: a child forked in the middle of it switches back)
                users[me] = users.get(me, 0) + 1
                if first and self._eval_saved:
                    self.net.eval()
            try:
                yield
            finally:
                with _MODE_LOCK:
                    users[me] -= 1
                    if not users[me]:
                        del users[me]
                        if not users:
                            self._eval_restore()

    def _eval_restore(self) -> None:
        """The last call in eval mode ended: every module switched gets its training mode back (under _MODE_LOCK)."""
        for m in self._eval_saved:  # not m.train(): that would also switch its children in eval mode
            m.training = True
        self._eval_saved = []
        _EVAL_MODELS.discard(self)

    def _eval_after_fork(self, me: int) -> None:
        """In a forked child (one thread, ``me``): the calls of the threads it does not have end here, as those
        threads would have ended them; the forking thread's own goes on and ends as in the parent."""
        users = self.__dict__.get("_eval_users") or {}
        for thread in [t for t in users if t != me]:
            del users[thread]
        if not users:
            self._eval_restore()

    def save_pretrained(self, out_dir: str | os.PathLike, safe_serialization: bool = True) -> Path:
        """Write a checkpoint that both glinker and gliner load."""
        from glinker.model.checkpoint import save_checkpoint

        if Path(out_dir).exists() and not Path(out_dir).is_dir():
            raise ConfigError(f"{out_dir} is a file: a checkpoint is a folder", where=str(out_dir),
                              fix="give a folder path, e.g. models/my-model")

        cfg = dict(self.config)
        cfg["encoder_config"] = self.net.token_rep_layer.bert_layer.model.config.to_dict()
        cfg["labels_encoder_config"] = self.net.token_rep_layer.labels_encoder.model.config.to_dict()
        with self._tokenizing:  # tokenizer.json records the padding/truncation state another thread may be setting
            return save_checkpoint(
                out_dir,
                cfg,
                self.net.state_dict(),
                self.tokenizer,
                self.labels_tokenizer,
                safe_serialization=safe_serialization,
            )

    # ---- identity ----------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """D, the width of span and label vectors."""
        return int(self.config["hidden_size"])

    @property
    def fingerprint(self) -> str:
        """sha256 over the config and every weight (cached); identifies the model in KB manifests."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            keep = {
                k: v
                for k, v in self.config.items()
                if k
                not in (
                    "model_name",
                    "labels_encoder",
                    "encoder_config",
                    "labels_encoder_config",
                    "transformers_version",
                    "max_len",
                    "max_width",
                    "window_words",
                )
            }
            h.update(json.dumps(keep, sort_keys=True, default=str).encode())
            for k, v in sorted(self.net.state_dict().items()):
                t = v.detach().cpu().contiguous()
                h.update(f"{k}|{tuple(t.shape)}|{t.dtype}".encode())
                h.update(t.view(-1).view(__import__("torch").uint8).numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    # ---- label side ------------------------------------------------------------------------------------
    def _encode_prompt_texts(
        self, prompts: Sequence[str], batch_size: int, progress: bool = False, want_e: bool = False
    ) -> Any:
        """P (C, D) float32 on the model device for ``prompts`` (and E when ``want_e``): length-sorted
        batches,
        dynamic padding."""
        import torch

        n = len(prompts)
        out = torch.empty(n, self.dim, dtype=torch.float32, device=self.device)
        out_e = torch.empty(n, self.dim, dtype=torch.float32, device=self.device) if want_e else None
        if n == 0:
            return (out, out_e) if want_e else out
        with self._tokenizing:
            lens = self.labels_tokenizer(list(prompts), add_special_tokens=True, truncation=True)["input_ids"]
        order = sorted(range(n), key=lambda i: len(lens[i]))
        limit = getattr(self.labels_tokenizer, "model_max_length", None)
        if limit and limit < 100_000:
            cut = [i for i in range(n) if len(lens[i]) >= limit]
            if cut:
                log.warning("%d label text(s) longer than the label encoder's %d tokens are cut there (first: %r); "
                            "shorten their descriptions", len(cut), limit, prompts[cut[0]][:60] + "...")
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n, desc="encoding labels", unit="label")
        with self._eval_mode(), torch.inference_mode():
            for i in range(0, n, batch_size):
                idx = order[i : i + batch_size]
                with self._tokenizing:
                    enc = self.labels_tokenizer(
                        [prompts[j] for j in idx], return_tensors="pt", truncation=True, padding="longest"
                    )
                e = self.net.encode_label_tokens(
                    enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
                )
                rows = torch.tensor(idx, device=self.device)
                out[rows] = self.net.prompt(e).float()
                if out_e is not None:
                    out_e[rows] = e.float()
                if bar is not None:
                    bar.update(len(idx))
        if bar is not None:
            bar.close()
        return (out, out_e) if want_e else out

    def encode_labels(
        self, labels: Sequence[str] | Mapping[str, str], batch_size: int = 256, progress: bool = False
    ) -> LabelBank:
        """A reusable, savable LabelBank of P vectors for ``labels`` (names, or {name: description}).

        Runs the network in eval mode (and gives it back its mode after), like every inference method."""
        batch_size = _check_count(batch_size, "batch_size")
        prompts, names = _normalize_label_set(labels, "labels")
        if not names:
            raise DataError("no labels given", where="labels", fix="pass at least one label")
        if self.net.dense:
            vec, emb = self._encode_prompt_texts(prompts, batch_size, progress, want_e=True)
            return LabelBank(names, prompts, vec.cpu(), self.fingerprint, emb.cpu())
        vec = self._encode_prompt_texts(prompts, batch_size, progress).cpu()
        return LabelBank(names, prompts, vec, self.fingerprint)

    def encode_labels_to(
        self,
        labels: Sequence[str] | Mapping[str, str],
        out_dir: str | os.PathLike,
        batch_size: int = 256,
        chunk_size: int = 16_384,
        progress: bool = False,
        resume: bool = True,
        encoder: Any = None,
    ) -> LabelBank:
        """Encode any number of labels straight into a memory-mapped bank folder, ``chunk_size`` at a time.

        Memory stays at one chunk whatever the label count; progress is recorded after every chunk, so a build
        that was interrupted resumes in the same folder (same labels, same model) instead of starting over.
        ``encoder`` (an object with this model's fingerprint and ``encode_entities``, e.g.
        ``glinker.cluster.RemoteEncoder``) computes the vectors instead of this process. Returns the bank,
        memory-mapped.
        """
        import numpy as np
        import torch

        from glinker.cluster import model_dtype
        from glinker.model.labels import rows_done

        if self.net.dense:
            raise ConfigError(
                "this model scores labels together with the text (fusion or token level): its bank needs the "
                "label embeddings too",
                where="encode_labels_to",
                fix="use model.encode_labels(labels) and bank.save(folder)",
            )
        chunk_size = _check_count(chunk_size, "chunk_size")
        batch_size = _check_count(batch_size, "batch_size")
        if encoder is not None and getattr(encoder, "fingerprint", None) != self.fingerprint:
            raise ConfigError("the encoder given for the label bank is not this model (fingerprints differ)",
                              where="encode_labels_to", fix="build the remote encoder from this model")
        prompts, names = _normalize_label_set(labels, "labels")
        if not names:
            raise DataError("no labels given", where="labels", fix="pass at least one label")
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(names), desc="encoding labels", unit="label")

        def chunks():
            # the writer reports how far an interrupted build got before the first chunk is asked for
            first = rows_done(out_dir) if resume else 0
            if bar is not None:
                bar.update(first)
            for a in range(first, len(prompts), chunk_size):
                if encoder is not None:
                    v = torch.from_numpy(np.asarray(encoder.encode_entities(list(prompts[a : a + chunk_size]),
                                                                            batch_size=batch_size), dtype=np.float32))
                else:
                    v = self._encode_prompt_texts(prompts[a : a + chunk_size], batch_size).cpu()
                if bar is not None:
                    bar.update(int(v.shape[0]))
                yield v

        try:
            return LabelBank.write_batches(out_dir, names, prompts, chunks(), self.dim, self.fingerprint, resume=resume,
                                           precision=model_dtype(encoder if encoder is not None else self))
        finally:
            if bar is not None:
                bar.close()

    def encode_entities(self, texts: Sequence[str], batch_size: int = 64) -> Any:
        """(N, D) float32 numpy P vectors for KB entity texts such as ``"Paris: capital of France"``.

        ``texts``: a list (or any sequence) of str; anything else, or an item that is not a str, is a DataError
        naming it. Runs the network in eval mode."""
        import numpy as np

        if isinstance(texts, str):
            raise DataError(
                "encode_entities takes a sequence of texts, not one string",
                where="texts",
                fix="wrap it in a list",
            )
        if texts is None or isinstance(texts, (bytes, Mapping)) or not hasattr(texts, "__iter__"):
            raise DataError(
                f"encode_entities takes a list of texts, not {type(texts).__name__}",
                where="texts",
                fix="pass e.g. ['Paris: capital of France', 'Apple Inc.: technology company']",
            )
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise DataError(
                    f"entity texts must be strings; item {i} is a {type(t).__name__}: {t!r:.60}",
                    where=f"texts[{i}]",
                    fix="pass the texts that describe the entities (str), e.g. 'Paris: capital of France'",
                )
            check_text(t, f"texts[{i}]")
        batch_size = _check_count(batch_size, "batch_size")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._encode_prompt_texts(texts, batch_size).cpu().numpy().astype(np.float32, copy=False)

    def _label_spec(self, labels: Any, n_texts: int) -> tuple[Any, list[list[str]], list[list[int]] | None]:
        """(P, per-text names, per-text union indices or None when shared)."""
        dense = self.net.dense
        wdtype = next(self.net.parameters()).dtype
        if isinstance(labels, LabelBank):
            labels.check_model(self.fingerprint, self.dim)
            src = labels.embeddings if dense else labels.vectors
            if src is None:
                raise ModelError(
                    "this model needs the label embeddings E, which the label bank lacks",
                    where="LabelBank",
                    fix="re-encode the labels with this model: model.encode_labels()",
                )
            return _bank_cast(labels, src, self.device, wdtype), [labels.names] * n_texts, None
        if _is_per_text(labels):
            if len(labels) != n_texts:
                raise DataError(
                    f"per-text labels must have one label set per text ({n_texts}), got {len(labels)}",
                    where="labels",
                    fix="give one list (or set, or mapping) of labels for every text",
                )
            sets = [_normalize_label_set(x, f"labels[{i}]") for i, x in enumerate(labels)]
            union = list(dict.fromkeys(p for prompts, _ in sets for p in prompts))
            pos = {p: i for i, p in enumerate(union)}
            p = self._label_vectors(union)
            return p, [names for _, names in sets], [[pos[x] for x in prompts] for prompts, _ in sets]
        prompts, names = _normalize_label_set(labels, "labels")
        return self._label_vectors(prompts), [names] * n_texts, None

    def _label_vectors(self, prompts: list[str]) -> Any:
        """P for dot-product models, E for models that need it (fusion, token level)."""
        if self.net.dense:
            return self._encode_prompt_texts(prompts, 256, want_e=True)[1]
        return self._encode_prompt_texts(prompts, 256)

    # ---- text side -----------------------------------------------------------------------------------
    def _token_limit(self) -> int:
        lim = int(getattr(self.tokenizer, "model_max_length", 512) or 512)
        if lim > 1_000_000:  # the "very large integer" sentinel: fall back on the encoder's positions
            lim = int(
                getattr(self.net.token_rep_layer.bert_layer.model.config, "max_position_embeddings", 512)
            )
        with self._tokenizing:
            return lim - self.tokenizer.num_special_tokens_to_add(pair=False)

    def _windows(self, splits: Sequence[SplitText], long_text: str, overlap: int | None) -> list[Window]:
        if long_text not in LONG_TEXT_MODES:
            raise ConfigError(
                f"unknown long_text mode {long_text!r}",
                where="long_text",
                fix=f"use one of {', '.join(LONG_TEXT_MODES)}",
            )
        wins: list[Window] = []
        if long_text == "truncate":
            for i, sp in enumerate(splits):
                if sp.words:
                    n = len(sp.words)
                    wins.append(Window(i, 0, min(n, self.max_len), cut=n > self.max_len))
            return wins
        live = [i for i, sp in enumerate(splits) if sp.words]
        with self._tokenizing:
            counts = self._words.counts(self.tokenizer, [splits[i] for i in live])
        limit = self._token_limit()
        size = self.window_words
        ov = overlap if overlap is not None else max(2 * self.max_width, size // 8)
        ov = max(0, min(ov, size // 2))
        for i, cnt in zip(live, counts):
            if len(cnt) <= size and sum(cnt) <= limit:
                wins.append(Window(i, 0, len(cnt)))
            else:
                for s, e in plan_windows(cnt, size, limit, ov):
                    wins.append(Window(i, s, e))
        return wins

    def _encode_windows(
        self, splits: Sequence[SplitText], wins: Sequence[Window]
    ) -> tuple[Any, Any, list[int]]:
        """Word vectors (B, W, D), word counts, and whether the tokenizer cut each window, for a batch."""
        import torch

        wl = [splits[w.text_index].words[w.start : w.end] for w in wins]
        with self._tokenizing:
            enc = tokenize_words(self.tokenizer, wl, self.pooling)
        n_words = [max(1, len(x)) for x in wl]
        W = max(n_words)
        h = self.net.encode_text(enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device))
        x = self.net.word_vectors(
            h, enc["words_mask"].to(self.device), enc["attention_mask"].to(self.device), W
        )
        return x, torch.tensor(n_words, device=self.device), enc["cut"]

    def predict(
        self,
        texts: Sequence[str] | str,
        labels_or_bank: Any = None,
        threshold: float = 0.5,
        flat_ner: bool = True,
        multi_label: bool = False,
        batch_size: int = 8,
        long_text: str = "chunk",
        overlap: int | None = None,
        label_top_k: int | None = None,
        on_window: Callable[[Window, Any], None] | None = None,
        *,
        labels: Any = None,
    ) -> list[list[dict]]:
        """Entities per text: dicts with start/end (character offsets), text, label, score.

        ``labels_or_bank`` (or the keyword ``labels=``, gliner's name; not both): a list (or tuple) of label
        names, a {name: description} dict, a LabelBank, or one list/tuple/dict per text. ``threshold``: a
        number from 0 to 1 (a numpy scalar or 0-d tensor is taken as its float). Note the order: ``predict``
        takes ``threshold`` before ``flat_ner``; the gliner-style methods (``predict_entities``, ``inference``...)
        follow gliner's (labels, flat_ner, threshold, multi_label).

        The network runs in eval mode (no dropout) during the call and gets its previous mode back after, so a
        model being fine-tuned in the same process can be evaluated between steps without calling ``eval()``.

        ``on_window(window, word_vectors)`` is called for every encoded window with its (words, D) vectors, so a
        caller (e.g. a linking pipeline) can reuse them for span vectors without encoding the text again.

        Long texts are split into overlapping windows of at most ``window_words`` words (the checkpoint's
        ``window_words``, else ``max_len``) and merged (``long_text="chunk"``); ``"truncate"``
        reproduces gliner (cut at ``max_len`` words and the tokenizer limit) and marks results ``truncated``.

        ``label_top_k=K`` scores each span only against the K labels with the largest inner product, found
        with a FAISS index (the bank's own, or a temporary exact one for a label list), then computes those
        logits exactly; threshold and decoding are unchanged. ``None`` (default) does so with
        ``DEFAULT_LABEL_TOP_K`` for a LabelBank of at least ``bank.index_threshold`` labels (unset: 100,000) and
        scores exhaustively otherwise; ``0`` always scores exhaustively.
        """
        if labels is not None:
            if labels_or_bank is not None:
                raise ConfigError(
                    "labels given twice: as the second argument (labels_or_bank) and as labels=",
                    where="labels",
                    fix="pass them once: predict(texts, labels) or predict(texts, labels=labels)",
                )
            labels_or_bank = labels
        if isinstance(texts, str):
            texts = [texts]
        if texts is None or isinstance(texts, (bytes, Mapping)) or not hasattr(texts, "__iter__"):
            raise DataError(f"texts must be a string or a list of strings, not {type(texts).__name__}",
                            where="texts", fix="pass e.g. ['Paris is in France.']")
        texts = list(texts)
        if overlap is not None and (isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0):
            raise ConfigError(f"overlap must be a number of words >= 0, not {overlap!r}", where="overlap",
                              fix="e.g. overlap=16, or None for the default")
        threshold = _check_threshold(threshold)
        flat_ner = _check_flag(flat_ner, "flat_ner")
        multi_label = _check_flag(multi_label, "multi_label")
        if labels_or_bank is None or (isinstance(labels_or_bank, _LABEL_SETS) and not labels_or_bank):
            raise DataError("no labels given", where="labels", fix="pass e.g. ['person', 'location'] or a LabelBank")
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise DataError(f"texts must be strings; item {bad} is a {type(texts[bad]).__name__}: {texts[bad]!r:.60}",
                            where=f"texts[{bad}]", fix="pass a list of str")
        for i, t in enumerate(texts):
            check_text(t, f"texts[{i}]")
        batch_size = _check_count(batch_size, "batch_size")
        splits = [self._words.split(t) for t in texts]
        results = [Entities() for _ in texts]
        if not texts:
            return results
        with self._eval_mode():
            return self._predict(splits, results, labels_or_bank, threshold, flat_ner, multi_label, batch_size,
                                 long_text, overlap, label_top_k, on_window)

    def _predict(
        self,
        splits: list[SplitText],
        results: list[Entities],
        labels_or_bank: Any,
        threshold: float,
        flat_ner: bool,
        multi_label: bool,
        batch_size: int,
        long_text: str,
        overlap: int | None,
        label_top_k: int | None,
        on_window: Callable[[Window, Any], None] | None,
    ) -> list[list[dict]]:
        """:meth:`predict` on checked arguments, the network in eval mode."""
        import torch

        P, names, row_sets = self._label_spec(labels_or_bank, len(splits))
        search = self._label_search(labels_or_bank, label_top_k, P, row_sets)
        wins = self._windows(splits, long_text, overlap)
        folded, lowp = self._scoring_matrices(labels_or_bank, P, search)
        by_text: dict[int, list[Window]] = {}
        for w in wins:
            by_text.setdefault(w.text_index, []).append(w)
        # key (start, end, class) -> score. Each span is scored by one window, the one that sees it with the most
        # context (words on its nearer side; ties: the longer window, then the earlier): chosen by the windows'
        # bounds alone, so a span's score never depends on the threshold (taking the best-placed window among those
        # where the span passed the threshold gave another score at another threshold)
        merged: list[dict] = [{} for _ in splits]

        def owner(i: int, gs: int, ge: int) -> Window:
            n_text = len(splits[i].words)
            best: tuple[tuple[int, int, int], Window] | None = None
            for w in by_text[i]:
                if w.start <= gs and ge < w.end:
                    left = gs - w.start if w.start > 0 else 1 << 30
                    right = (w.end - 1 - ge) if w.end < n_text else 1 << 30
                    rank = (min(left, right), w.end - w.start, -w.start)
                    if best is None or rank > best[0]:
                        best = (rank, w)
            assert best is not None
            return best[1]

        order = sorted(range(len(wins)), key=lambda j: -(wins[j].end - wins[j].start))
        with torch.inference_mode():
            for b0 in range(0, len(order), batch_size):
                bw = [wins[j] for j in order[b0 : b0 + batch_size]]
                x, n_words, cut = self._encode_windows(splits, bw)
                for r, w in enumerate(bw):
                    w.cut = w.cut or cut[r]  # the tokenizer dropped the tail: those words have zero vectors
                    if on_window is not None:
                        on_window(w, x[r, : w.end - w.start])
                if self.net.dense:
                    per_win = self._dense_candidates(x, n_words, P, row_sets, bw, threshold)
                else:
                    per_win = self._sparse_candidates(
                        x, n_words, P, folded, row_sets, bw, threshold, search, lowp
                    )
                for w, cands in zip(bw, per_win):
                    single = len(by_text[w.text_index]) == 1
                    owned: dict[tuple[int, int], bool] = {}
                    for s, e, c, p in cands:
                        gs, ge = w.start + s, w.start + e
                        if not single:
                            mine = owned.get((gs, ge))
                            if mine is None:
                                mine = owned[(gs, ge)] = owner(w.text_index, gs, ge) is w
                            if not mine:
                                continue
                        merged[w.text_index][(gs, ge, c)] = p
        for i, sp in enumerate(splits):
            tw = by_text.get(i, [])
            res = results[i]
            res.windows = len(tw)
            res.truncated = any(w.cut for w in tw)
            if res.truncated:
                log.warning(
                    "text %d of the batch was cut (over %d words or the tokenizer limit; its result says "
                    "truncated): long_text='chunk' (the default; on the command line, without --truncate) reads "
                    "all of it",
                    i,
                    self.max_len,
                )
            local = {u: j for j, u in enumerate(row_sets[i])} if row_sets is not None else None
            cl = [
                (gs, ge, local[c] if local is not None else c, p)
                for (gs, ge, c), p in merged[i].items()
            ]
            # gliner's candidate order (ties in score keep it): span models (start, width, class),
            # token models (start, class, end)
            token = self.net.span_mode == "token_level"
            cl.sort(key=(lambda t: (t[0], t[2], t[1])) if token else (lambda t: (t[0], t[1] - t[0], t[2])))
            for s, e, c, p in greedy_decode(cl, flat_ner, multi_label):
                a, z = sp.starts[s], sp.ends[e]
                res.append({"start": a, "end": z, "text": sp.text[a:z], "label": names[i][c], "score": p})
        return results

    # ---- gliner-compatible API ---------------------------------------------------------------------
    # Thin aliases of predict / encode_labels with gliner 0.2.29's names and positional order
    # (texts, labels, flat_ner, threshold, multi_label): results are predict's (docs/model.md, "Coming from gliner").
    def _gliner_keywords(self, kw: Mapping[str, Any], method: str) -> dict[str, Any]:
        """``kw`` of a gliner-style call as predict keywords: gliner-only options are accepted when off (their
        gliner default) and refused when on; anything else unknown is a ConfigError listing what is accepted."""
        out = {}
        for k, v in kw.items():
            if k in _GLINER_ONLY:
                if v is None or v is False:
                    continue
                raise ConfigError(f"{method}: gliner's {k}= is not supported by glinker", where=f"{method}({k}=...)",
                                  fix=f"leave it out; {_GLINER_ONLY[k]}")
            if k not in _PREDICT_KEYWORDS:
                raise ConfigError(f"{method} got an unknown keyword argument {k!r}", where=f"{method}({k}=...)",
                                  fix=f"accepted besides labels, flat_ner, threshold, multi_label: "
                                      f"{', '.join(_PREDICT_KEYWORDS)} (see BiEncoder.predict)")
            out[k] = v
        return out

    def predict_entities(
        self,
        text: str,
        labels: Any,
        flat_ner: bool = True,
        threshold: float = 0.5,
        multi_label: bool = False,
        **kw: Any,
    ) -> list[dict]:
        """gliner's ``predict_entities``: the entities of one text, ``predict([text], labels, ...)[0]``.

        Positional order as gliner's (text, labels, flat_ner, threshold, multi_label); ``**kw``: predict's
        ``batch_size``, ``long_text``, ``overlap``, ``label_top_k``, ``on_window``."""
        if not isinstance(text, str):
            raise DataError(
                f"predict_entities takes one text (a str), not {type(text).__name__}",
                where="text",
                fix="for several texts use inference(texts, labels) or batch_predict_entities(texts, labels)",
            )
        return self.predict([text], labels, threshold=threshold, flat_ner=flat_ner, multi_label=multi_label,
                            **self._gliner_keywords(kw, "predict_entities"))[0]

    def batch_predict_entities(
        self,
        texts: Sequence[str],
        labels: Any,
        flat_ner: bool = True,
        threshold: float = 0.5,
        multi_label: bool = False,
        **kw: Any,
    ) -> list[list[dict]]:
        """gliner's ``batch_predict_entities``: entities per text, ``predict(texts, labels, ...)`` with gliner's
        positional order (texts, labels, flat_ner, threshold, multi_label)."""
        return self.predict(texts, labels, threshold=threshold, flat_ner=flat_ner, multi_label=multi_label,
                            **self._gliner_keywords(kw, "batch_predict_entities"))

    def inference(
        self,
        texts: Sequence[str] | str,
        labels: Any,
        flat_ner: bool = True,
        threshold: float = 0.5,
        multi_label: bool = False,
        batch_size: int = 8,
        **kw: Any,
    ) -> list[list[dict]]:
        """gliner's ``inference``: entities per text, ``predict(texts, labels, ...)`` with gliner's positional
        order (texts, labels, flat_ner, threshold, multi_label, batch_size)."""
        return self.predict(texts, labels, threshold=threshold, flat_ner=flat_ner, multi_label=multi_label,
                            batch_size=batch_size, **self._gliner_keywords(kw, "inference"))

    def batch_predict_with_embeds(
        self,
        texts: Sequence[str],
        labels_embeddings: Any,
        labels: Any = None,
        flat_ner: bool = True,
        threshold: float = 0.5,
        multi_label: bool = False,
        batch_size: int = 8,
        **kw: Any,
    ) -> list[list[dict]]:
        """gliner's ``batch_predict_with_embeds``: entities per text with labels encoded beforehand.

        ``labels_embeddings``: a LabelBank (``model.encode_labels(labels)``; ``labels`` may then be left out, or
        must be the bank's names in order), or a (C, D) tensor of gliner label embeddings E (gliner's
        ``model.encode_labels(labels)`` on the same checkpoint) with their C names in ``labels`` (or a
        {name: description} dict): the bank is built from it through this model's label projection
        (P = prompt_rep_layer(E)). Encoding once with ``encode_labels`` and passing the bank is the glinker way."""
        bank = self._bank_from_embeddings(labels_embeddings, labels)
        return self.predict(texts, bank, threshold=threshold, flat_ner=flat_ner, multi_label=multi_label,
                            batch_size=batch_size, **self._gliner_keywords(kw, "batch_predict_with_embeds"))

    def predict_with_embeds(
        self,
        text: str,
        labels_embeddings: Any,
        labels: Any = None,
        flat_ner: bool = True,
        threshold: float = 0.5,
        multi_label: bool = False,
        **kw: Any,
    ) -> list[dict]:
        """gliner's ``predict_with_embeds``: :meth:`batch_predict_with_embeds` for one text."""
        if not isinstance(text, str):
            raise DataError(
                f"predict_with_embeds takes one text (a str), not {type(text).__name__}",
                where="text",
                fix="for several texts use batch_predict_with_embeds(texts, labels_embeddings, labels)",
            )
        return self.batch_predict_with_embeds([text], labels_embeddings, labels, flat_ner, threshold, multi_label,
                                              **kw)[0]

    def _bank_from_embeddings(self, embeddings: Any, labels: Any) -> LabelBank:
        """A LabelBank from what gliner's ``*_with_embeds`` take: a LabelBank as is, or E (C, D) and C names."""
        import numpy as np
        import torch

        how = ("encode the labels with this model: bank = model.encode_labels(labels), then "
               "batch_predict_with_embeds(texts, bank) or predict(texts, bank)")
        if isinstance(embeddings, LabelBank):
            if labels is not None:
                names = list(labels) if not isinstance(labels, str) else [labels]
                if names != embeddings.names:
                    raise DataError(
                        f"labels {names[:4]!r}{' ...' if len(names) > 4 else ''} are not the label bank's names "
                        f"{embeddings.names[:4]!r}{' ...' if len(embeddings) > 4 else ''}",
                        where="labels",
                        fix="leave labels out (the bank's names are used), or pass bank.names",
                    )
            return embeddings
        if isinstance(embeddings, np.ndarray):
            embeddings = torch.from_numpy(embeddings)
        if not isinstance(embeddings, torch.Tensor):
            raise DataError(
                f"labels_embeddings must be a LabelBank or a (labels, {self.dim}) tensor of label embeddings, not "
                f"{type(embeddings).__name__}",
                where="labels_embeddings",
                fix=how,
            )
        if embeddings.dim() != 2 or int(embeddings.shape[1]) != self.dim or not embeddings.is_floating_point():
            raise DataError(
                f"labels_embeddings is a {tuple(embeddings.shape)} {embeddings.dtype} tensor; this model's label "
                f"embeddings E are (labels, {self.dim}) floats",
                where="labels_embeddings",
                fix="pass E from this checkpoint's label encoder (gliner: model.encode_labels(labels)), or " + how,
            )
        if labels is None:
            raise DataError("labels_embeddings is a tensor but labels (the names of its rows) are missing",
                            where="labels", fix="pass the label names in the order they were encoded")
        prompts, names = _normalize_label_set(labels, "labels")
        given = 1 if isinstance(labels, str) else len(labels)
        if len(names) != given:
            raise DataError("a label name is given twice: each row of labels_embeddings needs its own name",
                            where="labels", fix="pass each label once, in the order they were encoded")
        if len(names) != int(embeddings.shape[0]):
            raise DataError(
                f"{len(names)} label names for {int(embeddings.shape[0])} rows of labels_embeddings",
                where="labels",
                fix="pass one name per row, in the order the labels were encoded",
            )
        e = embeddings.detach()
        with self._eval_mode(), torch.no_grad():
            vec = self.net.prompt(e.to(self.device, dtype=self.dtype)).float().cpu()
        emb = e.float().cpu() if self.net.dense else None
        return LabelBank(names, prompts, vec, self.fingerprint, emb)

    def _scoring_matrices(self, labels: Any, P: Any, search: Any) -> tuple[Any, Any]:
        """(folded P or None, the low-precision pre-filter's labels or None) for exhaustive scoring.

        Folding the span output layer into P saves 4D^2 per span and costs 3D per span x label; with the
        bfloat16 pre-filter the label product runs ``speedup`` times faster than the float32 span layer, so
        folding pays up to ``speedup`` times more labels. Both are cached on a LabelBank (reused across calls).
        """
        C = int(P.shape[0])
        if self.net.dense or search is not None or C == 0:
            return None, None
        import torch

        from glinker.model import scoring

        # below LOWP_MIN_LABELS the float32 product is cheaper than the pre-filter's casts: not even measured
        info = scoring.lowp_prefilter(self.device) if self.lowp and C >= scoring.LOWP_MIN_LABELS else None
        # the pre-filter's speed-up over the float32 span layer; a model in bfloat16 or float16 runs that layer in its
        # own low precision too, so folding only pays below 4D/3 labels there
        low_model = self.dtype in (torch.bfloat16, torch.float16)
        gain = min(info.speedup, 8.0) if info is not None and not low_model else 1.0
        use_fold = self._fold if self._fold is not None else C * 3 < 4 * self.dim * gain
        # per device and weight dtype too: after model.to(...) the matrices are rebuilt where the model now runs
        key = ("scoring", self.fingerprint, use_fold, info.dtype if info is not None else None, str(P.device),
               P.dtype)
        cache = getattr(labels, "_scoring_cache", None) if isinstance(labels, LabelBank) else None
        if cache is not None and cache.get("key") == key:
            return cache["folded"], cache["lowp"]
        folded = self.net.fold_prompts(P) if use_fold else None
        lowp = None
        if info is not None:
            lowp = scoring.LowpLabels.build(*(folded if folded is not None else (P, None)), info.dtype)
        if isinstance(labels, LabelBank):
            labels._scoring_cache = {"key": key, "folded": folded, "lowp": lowp}
        return folded, lowp

    def _label_search(self, labels: Any, top_k: int | None, P: Any, row_sets: Any) -> Any:
        """(k, search function, IVF lists or None, nprobe) for retrieval scoring, or None to score every label."""
        bank = labels if isinstance(labels, LabelBank) else None
        C = int(P.shape[0])
        if top_k is None:
            if bank is None or self.net.dense:
                return None
            from glinker.model.labels import DEFAULT_INDEX_THRESHOLD

            # below the lower default no device measurement is needed (retrieval_threshold may run one)
            if bank.index_threshold is None and len(bank) < DEFAULT_INDEX_THRESHOLD:
                return None
            if len(bank) < self.retrieval_threshold(bank):
                return None
            top_k = DEFAULT_LABEL_TOP_K
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise ConfigError(
                f"label_top_k must be a non-negative int or None, got {top_k!r}",
                where="label_top_k",
                fix="e.g. label_top_k=64, or 0 to score every label",
            )
        if top_k == 0:
            return None
        if self.net.dense:
            raise ConfigError(
                "label retrieval needs label vectors that do not depend on the text",
                where="label_top_k",
                fix="use a markerV0 span model without post_fusion_schema, or label_top_k=0",
            )
        if row_sets is not None:
            raise ConfigError(
                "label retrieval works on one label set shared by all texts",
                where="label_top_k",
                fix="pass one label list or LabelBank for all texts, or label_top_k=0",
            )
        if top_k >= C:  # retrieving every label is exhaustive scoring
            return None
        if bank is not None:
            if not bank.has_index and len(bank) < self.retrieval_threshold(bank):
                # an explicit label_top_k on a bank that has no index and is small enough to score exhaustively:
                # an exact index (an approximate one would gain little here and could miss the best label)
                log.info("label_top_k=%d on a bank of %d labels without an index: searched exactly (Flat)", top_k,
                         len(bank))
                bank.build_index("Flat")
            # an inverted-file index is scored by matrix products on the CPU (score_rows_ivf), others searched;
            # with the pre-filter its lists are read in low precision (memory-mapped, no float32 copy held)
            lists = None
            if self.device.type == "cpu":
                info = scoring.lowp_prefilter(self.device) if self.lowp else None
                lists = bank.ivf_lists(lowp=info.dtype if info is not None else None)
            return top_k, bank.search, lists, bank.nprobe
        from glinker.model.labels import build_faiss_index, search_index

        index = build_faiss_index(P, "Flat")
        return top_k, lambda q, k: search_index(index, q, k), None, 0

    def retrieval_threshold(self, bank: LabelBank) -> int:
        """Labels from which ``label_top_k=None`` retrieves: the bank's ``index_threshold`` if set, else
        ``labels.DEFAULT_INDEX_THRESHOLD``."""
        from glinker.model import labels as lab

        if bank.index_threshold is not None:
            return int(bank.index_threshold)
        return lab.DEFAULT_INDEX_THRESHOLD

    def _sparse_candidates(
        self,
        x: Any,
        n_words: Any,
        P: Any,
        folded: Any,
        row_sets: Any,
        bw: Sequence[Window],
        threshold: float,
        search: Any = None,
        lowp: Any = None,
    ) -> list[list[tuple[int, int, int, float]]]:
        """Dot-product span models: (start, end, class, prob) per window, never the dense logits tensor."""
        import torch

        # With the bfloat16 pre-filter all widths share large blocks (_lowp_candidates); otherwise one span width
        # at a time: the (B, W, 4D) float32 hidden slice stays small (cache-friendly) instead of one (spans, 4D)
        # tensor. Candidates are re-sorted into gliner's order by the caller.
        W = x.shape[1]
        a, c = self.net.span_halves(x)
        cmask = self._class_mask(row_sets, bw, P.shape[0])
        out: list[list] = [[] for _ in bw]
        if search is not None and search[2] is not None:
            self._ivf_candidates(a, c, n_words, search, P.shape[0], threshold, out)
            return out
        if lowp is not None and search is None and threshold > 0.0:  # threshold 0 keeps every pair: float32
            widths = torch.arange(min(self.max_width, W), device=self.device)
            n_rows = int((n_words[:, None] - widths[None, :]).clamp_min(0).sum())
            if scoring.lowp_pays(n_rows, P.shape[0]):
                self._lowp_candidates(a, c, n_words, P, folded, cmask, threshold, lowp, out)
                return out
        for k, bi, si in self._valid_spans(W, n_words):
            hid = self._span_hidden(a, c, k, bi, si)
            if search is not None:
                r, cc, p = score_rows_topk(self.net.span_out(hid), P, threshold, search[0], search[1])
            elif folded is not None:
                r, cc, p = score_rows(hid, folded[0], threshold, folded[1], bi, cmask)
            else:
                r, cc, p = score_rows(self.net.span_out(hid), P, threshold, None, bi, cmask)
            for b, s, c_, pp in zip(bi[r].tolist(), si[r].tolist(), cc.tolist(), p.tolist()):
                out[b].append((s, s + k, c_, pp))
        return out

    def _valid_spans(self, W: int, n_words: Any) -> Any:
        """(width k, text rows, start words) of the valid spans of each width, widths with none skipped."""
        import torch

        for k in range(min(self.max_width, W)):
            valid = (torch.arange(W - k, device=self.device)[None, :] + k) < n_words[:, None]
            bi, si = torch.nonzero(valid, as_tuple=True)
            if bi.numel():
                yield k, bi, si

    @staticmethod
    def _span_hidden(a: Any, c: Any, k: int, bi: Any, si: Any) -> Any:
        """Hidden rows relu(a[start] + c[start + k]) of the listed width-``k`` spans (B, W from ``a``)."""
        B, W, _ = a.shape
        L = W - k
        return (a[:, :L] + c[:, k:]).reshape(B * L, -1).index_select(0, bi * L + si).relu_()

    def _width_groups(self, W: int, n_words: Any, cap: int) -> Any:
        """The valid spans of every width (:meth:`_valid_spans`) in groups of at most ``cap`` rows (a width with
        more is a group of its own): scoring many rows at once keeps the label side's products large. Yields
        (group, rows, each row's text, start word, width)."""
        import torch

        spans = list(self._valid_spans(W, n_words))
        while spans:
            group, m = [], 0
            while spans and (not group or m + spans[0][1].numel() <= cap):
                group.append(spans.pop(0))
                m += group[-1][1].numel()
            yield (group, m, torch.cat([g[1] for g in group]), torch.cat([g[2] for g in group]),
                   torch.cat([torch.full_like(g[1], g[0]) for g in group]))

    @staticmethod
    def _add_found(out: list[list], rb: Any, rs: Any, rk: Any, r: Any, cc: Any, p: Any) -> None:
        """The scored pairs (rows ``r`` of a width group, classes, probabilities) as (start, end, class, prob)."""
        for b, s, k_, c_, pp in zip(rb[r].tolist(), rs[r].tolist(), rk[r].tolist(), cc.tolist(), p.tolist()):
            out[b].append((s, s + k_, c_, pp))

    def _ivf_candidates(
        self, a: Any, c: Any, n_words: Any, search: Any, n_labels: int, threshold: float, out: list[list]
    ) -> None:
        """Retrieval scoring through an IVF index's lists (:func:`scoring.score_rows_ivf`), all span widths of the
        batch at once: each list's label vectors are multiplied once with every span row that probes it."""
        import torch

        top_k, _search, lists, nprobe = search
        info = scoring.lowp_prefilter(self.device) if self.lowp else None
        dtype = info.dtype if info is not None else None
        cap = max(scoring.LOWP_ROW_BLOCK, scoring.DEFAULT_BUDGET_BYTES // (8 * a.shape[-1]))
        for group, _m, rb, rs, rk in self._width_groups(a.shape[1], n_words, cap):
            reps = torch.cat([self.net.span_out(self._span_hidden(a, c, k, bi, si)) for k, bi, si in group])
            found = scoring.score_rows_ivf(reps, lists, threshold, nprobe, top_k, n_labels, lowp=dtype)
            self._add_found(out, rb, rs, rk, *found)

    def _lowp_candidates(
        self,
        a: Any,
        c: Any,
        n_words: Any,
        P: Any,
        folded: Any,
        cmask: Any,
        threshold: float,
        lowp: Any,
        out: list[list],
    ) -> None:
        """The span widths gathered into large low-precision row blocks for the pre-filter, survivors re-scored.

        Per width the scoring rows would be a few hundred (one batch's valid spans of that width), too few for
        an efficient bfloat16 product; here all widths' rows go into one buffer (bounded by the scoring
        budget), and only the survivors' float32 rows are rebuilt (hidden rows: a[s] + c[e], bit-identical to
        the pass that filled the buffer) and scored exactly.
        """
        import torch

        W = a.shape[1]
        lt = scoring.logit_threshold(threshold)
        mat, bias = folded if folded is not None else (P, None)
        width = lowp.vectors_t.shape[0]
        cap = max(scoring.LOWP_ROW_BLOCK, scoring.DEFAULT_BUDGET_BYTES // (2 * width))
        for group, m, rb, rs, rk in self._width_groups(W, n_words, cap):  # buffers of at most ``cap`` rows
            low = torch.empty(scoring.lowp_rows(m), width, dtype=lowp.vectors_t.dtype, device=self.device)
            low[m:] = 0.0
            kept, off = [], 0
            for k, bi, si in group:
                hid = self._span_hidden(a, c, k, bi, si)
                rep = hid if folded is not None else self.net.span_out(hid)
                if folded is None:
                    kept.append(rep)
                lowp.prepare_rows(rep, lt, out=low[off : off + bi.numel()])
                off += bi.numel()
            if folded is not None:

                def rows(i: Any) -> Any:
                    return (a[rb[i], rs[i]] + c[rb[i], rs[i] + rk[i]]).relu_()

            else:
                rows = torch.cat(kept).__getitem__
            r, cc, p = scoring.lowp_score(low, m, lowp, rows, mat, bias, threshold, rb, cmask)
            del low
            self._add_found(out, rb, rs, rk, r, cc, p)

    def _class_mask(self, row_sets: Any, bw: Sequence[Window], C: int) -> Any:
        import torch

        if row_sets is None:
            return None
        cmask = torch.zeros(len(bw), C, dtype=torch.bool, device=self.device)
        for r, w in enumerate(bw):
            cmask[r, row_sets[w.text_index]] = True
        return cmask

    def _dense_candidates(
        self, x: Any, n_words: Any, E: Any, row_sets: Any, bw: Sequence[Window], threshold: float
    ) -> list[list[tuple[int, int, int, float]]]:
        """Fusion and token-level models: label vectors depend on the text, so each batch scores densely."""
        import torch

        B, W, _ = x.shape
        if row_sets is None:
            cols = [list(range(E.shape[0]))] * B
        else:
            cols = [row_sets[w.text_index] for w in bw]
        cmax = max((len(c) for c in cols), default=0)
        out: list[list] = [[] for _ in bw]
        if cmax == 0:
            return out
        lab = torch.zeros(B, cmax, E.shape[1], dtype=x.dtype, device=self.device)
        lmask = torch.zeros(B, cmax, dtype=torch.long, device=self.device)
        for r, c in enumerate(cols):
            lab[r, : len(c)] = E[torch.tensor(c, device=self.device)].to(x.dtype)
            lmask[r, : len(c)] = 1
        wmask = torch.arange(W, device=self.device)[None, :] < n_words[:, None]
        if hasattr(self.net, "cross_fuser"):
            lab, x = self.net.cross_fuser(lab, x, lmask, wmask)
            lab = lab * lmask.unsqueeze(-1).to(lab.dtype)
        if self.net.span_mode == "token_level":
            from glinker.model.variants import token_candidates

            scores = self.net.scorer(x, lab)
            for r in range(B):
                n = int(n_words[r])
                sc = scores[r, :, : len(cols[r])]
                out[r] = [(a, b, cols[r][c], p) for a, b, c, p in token_candidates(sc, n, threshold)]
            return out
        K = self.max_width
        span = self.net.span_reps(x, K)
        logits = torch.einsum("bwkd,bcd->bwkc", span, self.net.prompt(lab))
        ends = torch.arange(W, device=self.device)[:, None] + torch.arange(K, device=self.device)[None, :]
        valid = (ends[None] < n_words[:, None, None])[..., None] & lmask.bool()[:, None, None, :]
        probs = torch.sigmoid(logits.float()).masked_fill(~valid, 0.0)
        b, s, k, c = torch.where(probs > threshold)
        for bb, ss, kk, cc, pp in zip(
            b.tolist(), s.tolist(), k.tolist(), c.tolist(), probs[b, s, k, c].tolist()
        ):
            out[bb].append((ss, ss + kk, cols[bb][cc], pp))
        return out

    def span_vectors(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]) -> list[Any]:
        """(n_spans, D) float32 span vectors per text for character spans; same space as P (score = dot).

        The model reads words, so a span is read as the words it touches: one that cuts a word is widened to the
        whole word (``(1, 5)``, "ougl" of "Douglas", gives the vector of ``(0, 7)``), as a linking pipeline reads
        a given mention. A span that covers no word (empty, only spaces or invisible characters) is a DataError,
        in the pipeline too."""
        import numpy as np
        import torch

        if self.net.dense:
            raise ModelError(
                "span vectors are label-independent only for span models without fusion",
                where=self.source,
                fix="use a markerV0 bi-encoder without post_fusion_schema",
            )
        if len(texts) != len(spans):
            raise DataError(
                f"{len(texts)} texts but {len(spans)} span lists",
                where="spans",
                fix="give one list of (start, end) character spans per text",
            )
        splits = [self._words.split(t) for t in texts]
        out: list[Any] = []
        wins = self._windows(splits, "chunk", None)
        by_text: dict[int, list[Window]] = {}
        for w in wins:
            by_text.setdefault(w.text_index, []).append(w)
        with self._eval_mode(), torch.inference_mode():
            for i, (sp, sps) in enumerate(zip(splits, spans)):
                vec = np.zeros((len(sps), self.dim), dtype=np.float32)
                if not sps:
                    out.append(vec)
                    continue
                todo: dict[int, list[tuple[int, int, int]]] = {}
                for j, (cs, ce) in enumerate(sps):
                    ws = next((q for q, e in enumerate(sp.ends) if e > cs), None)
                    we = next((q for q in range(len(sp.starts) - 1, -1, -1) if sp.starts[q] < ce), None)
                    if not (0 <= cs < ce <= len(sp.text)) or ws is None or we is None or we < ws:
                        raise DataError(
                            f"span ({cs}, {ce}) covers no word of text {i}",
                            where=f"spans[{i}][{j}]",
                            fix="use character offsets [start, end) that cover at least one word",
                        )
                    best = max(
                        range(len(by_text[i])),
                        key=lambda q: min(ws - by_text[i][q].start, by_text[i][q].end - 1 - we),
                    )
                    w = by_text[i][best]
                    if ws < w.start or we >= w.end:
                        raise DataError(
                            f"span ({cs}, {ce}) is longer than one model window",
                            where=f"spans[{i}][{j}]",
                            fix="use shorter spans",
                        )
                    todo.setdefault(best, []).append((j, ws - w.start, we - w.start))
                for q, items in todo.items():
                    x, _, _ = self._encode_windows(splits, [by_text[i][q]])
                    st = torch.tensor([t[1] for t in items], device=self.device)
                    en = torch.tensor([t[2] for t in items], device=self.device)
                    v = self.net.span_reps_at(x[0], st, en).float().cpu().numpy()
                    vec[[t[0] for t in items]] = v
                out.append(vec)
        return out

    # ---- conformance helpers -------------------------------------------------------------------------
    def dense_logits(self, word_lists: Sequence[Sequence[str]], prompts: Sequence[str]) -> Any:
        """gliner's logits for pre-split, max_len-truncated texts sharing ``prompts`` (tests, small inputs).

        Span models: (B, W, K, C). Token models: (B, W, C, 3) = [start, end, inside].
        """
        import torch

        from glinker.model.scoring import dense_logits

        splits = [SplitText("", list(w)[: self.max_len], [], []) for w in word_lists]
        wins = [Window(i, 0, len(s.words)) for i, s in enumerate(splits)]
        with self._eval_mode(), torch.inference_mode():
            x, n_words, _ = self._encode_windows(splits, wins)
            V = self._label_vectors(list(prompts))
            if not self.net.dense:
                return dense_logits(self.net.span_reps(x, self.max_width), V)
            B, W, _ = x.shape
            lab = V[None].expand(B, -1, -1).to(x.dtype)
            lmask = torch.ones(B, V.shape[0], dtype=torch.long, device=self.device)
            if hasattr(self.net, "cross_fuser"):
                wmask = torch.arange(W, device=self.device)[None, :] < n_words[:, None]
                lab, x = self.net.cross_fuser(lab, x, lmask, wmask)
            if self.net.span_mode == "token_level":
                return self.net.scorer(x, lab)
            return torch.einsum("bwkd,bcd->bwkc", self.net.span_reps(x, self.max_width), self.net.prompt(lab))
