"""The bi-encoder trainer: focal loss, negative sampling, per-batch label sampling, separate learning rates,
warm-up + cosine schedule, gradient clipping, atomic checkpoints with resume, and evaluation during training.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import random
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from glinker.errors import ConfigError
from glinker.io import atomic_write, plain_mode
from glinker.model.train.config import TrainConfig, check_data_paths

log = logging.getLogger(__name__)

DEV_PROGRESS_EVERY = 1.0  # seconds between updates of the bar while the dev sets are scored
DEV_LOG_EVERY = 30.0  # and between log lines of it (a log file has no bar)

ENCODER_PREFIXES = ("token_rep_layer.bert_layer.", "token_rep_layer.labels_encoder.")
LOCK_FILE = ".train.lock"


def init_model(cfg: TrainConfig) -> Any:
    """A BiEncoder to train: a new head on two encoders, or an existing checkpoint."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from glinker.model.biencoder import BiEncoder
    from glinker.model.checkpoint import CONFIG_DEFAULTS, GLINER_SPECIAL_TOKENS
    from glinker.model.network import BiEncoderNetwork
    from glinker.model.packaged import PACKAGED_ENCODERS, resolve_encoder_source

    m = cfg.model
    if m.from_checkpoint:
        given = m.model_fields_set  # settings written in the config; the others are the checkpoint's
        model = BiEncoder.from_pretrained(m.from_checkpoint, window_words=m.window_words,
                                          max_len=m.max_len if "max_len" in given else None)
        for key in ("hidden_size", "max_width"):  # the trained architecture: a fine-tuned model keeps it
            have = int(model.config[key])
            if key in given and getattr(m, key) != have:
                raise ConfigError(f"model.{key}: {getattr(m, key)} differs from the {have} of the checkpoint "
                                  f"{m.from_checkpoint}; fine-tuning keeps the model's {key}", where=f"model.{key}",
                                  fix=f"leave model.{key} out (or set it to {have}), or train a new model from "
                                      "model.text_encoder and model.labels_encoder instead of from_checkpoint")
        if "dropout" in given:
            set_head_dropout(model, m.dropout)
        model.net.train()
        return model
    assert m.text_encoder and m.labels_encoder
    tdir, ldir = resolve_encoder_source(m.text_encoder), resolve_encoder_source(m.labels_encoder)

    def public_name(src: str) -> str:  # what a user without the package would load from the hub
        key = src.removeprefix("pkg:")
        return PACKAGED_ENCODERS[key].upstream if key in PACKAGED_ENCODERS else src

    text_model = _load_encoder(AutoModel, tdir, m.text_encoder, "model.text_encoder")
    label_model = _load_encoder(AutoModel, ldir, m.labels_encoder, "model.labels_encoder")
    tcfg, lcfg = text_model.config.to_dict(), label_model.config.to_dict()
    gcfg = {**CONFIG_DEFAULTS, "model_name": public_name(m.text_encoder), "labels_encoder": public_name(m.labels_encoder),
            "encoder_config": tcfg, "labels_encoder_config": lcfg, "hidden_size": m.hidden_size,
            "max_width": m.max_width, "max_len": m.max_len, "dropout": m.dropout, "span_mode": "markerV0"}
    if m.window_words:
        gcfg["window_words"] = m.window_words
    torch.manual_seed(cfg.seed)
    net = BiEncoderNetwork(gcfg, text_model, label_model)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.startswith("rnn."):
                p.zero_()  # gliner keeps this LSTM but never applies it in bi-encoders
            elif not name.startswith(ENCODER_PREFIXES):
                if p.dim() > 1:
                    p.normal_(0.0, m.init_std)
                else:
                    p.zero_()
    tok = _load_encoder(AutoTokenizer, tdir, m.text_encoder, "model.text_encoder")
    tok.add_tokens(GLINER_SPECIAL_TOKENS, special_tokens=True)
    ltok = _load_encoder(AutoTokenizer, ldir, m.labels_encoder, "model.labels_encoder")
    return BiEncoder(net, gcfg, tok, ltok, torch.device("cpu"), source="init")


def _load_encoder(cls: Any, src: str, given: str, key: str) -> Any:
    """``cls.from_pretrained(src)``, a ModelError naming the config key when it fails (a mistyped local folder
    would otherwise read as a hub error)."""
    from glinker.errors import ModelError

    try:
        return cls.from_pretrained(src)
    except Exception as e:  # transformers raises OSError, ValueError, hub errors...
        local = "" if Path(src).expanduser().exists() else f"; no local folder {src} exists (from {Path.cwd()})"
        raise ModelError(f"could not load {key} {given!r}: {e}{local}", where=key,
                         fix="give an encoder folder (relative to the config's folder), pkg:<package>, or a hub id "
                             "reachable from here") from e


def set_head_dropout(model: Any, p: float) -> None:
    """Set the GLiNER head's dropout (the encoders keep their own) and write it into the model's config."""
    import torch

    for name, mod in model.net.named_modules():
        if isinstance(mod, torch.nn.Dropout) and not (name + ".").startswith(ENCODER_PREFIXES):
            mod.p = p
    model.config["dropout"] = p


def _encoder_layers(hf_model: Any) -> list[Any]:
    for path in ("encoder.layer", "layers", "encoder.layers", "transformer.layer"):
        obj = hf_model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return list(obj)
        except AttributeError:
            continue
    raise ConfigError(f"cannot find the transformer layers of {type(hf_model).__name__}",
                      fix="use train_text_layers: -1 (all) or 0 (frozen) for this encoder")


def set_trainable(model: Any, text_layers: int, label_layers: int) -> None:
    """Freeze the encoders except their top N layers (-1: all); the GLiNER head always trains."""
    for name, p in model.net.named_parameters():
        p.requires_grad = not name.startswith(ENCODER_PREFIXES) and not name.startswith("rnn.")
    for hf, n in ((model.net.token_rep_layer.bert_layer.model, text_layers),
                  (model.net.token_rep_layer.labels_encoder.model, label_layers)):
        if n == -1:
            for p in hf.parameters():
                p.requires_grad = True
        elif n > 0:
            for layer in _encoder_layers(hf)[-n:]:
                for p in layer.parameters():
                    p.requires_grad = True


def lr_lambda(step: int, total: int, warmup: int, kind: str) -> float:
    """Multiplier of the base learning rate at ``step``: linear warm-up, then cosine/linear decay or constant."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress)) if kind == "cosine" else 1.0 - progress


class Trainer:
    """Runs (or resumes) a training configured by :class:`TrainConfig`."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.ckpt_root = self.out / "checkpoints"
        self.history: list[dict] = []
        self._label_cache: dict[str, Any] = {}
        self.seconds_before = 0.0  # training time of earlier sessions of this run, up to their last checkpoint
        self._t0: float | None = None
        self._lock: contextlib.ExitStack | None = None
        self._made_out = False

    # ---- the output folder's lock -----------------------------------------------------------------------
    def _acquire(self) -> None:
        """Hold ``<output_dir>/.train.lock`` until :meth:`close` (or the process ends): a second run into the same
        folder would delete this one's checkpoint writes in progress and interleave its checkpoints."""
        from glinker.io import Busy, locked

        if self._lock is not None:
            return
        self._made_out = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        stack = contextlib.ExitStack()
        try:
            f = stack.enter_context(locked(self.out / LOCK_FILE, wait=False, mode="a+"))
        except Busy:
            try:
                other = (self.out / LOCK_FILE).read_text(encoding="utf-8").strip()
            except OSError:
                other = ""
            raise ConfigError(f"another glinker train is running into {self.out}"
                              + (f" ({other})" if other else ""), where=str(self.out),
                              fix="wait for it to finish or stop it (re-running the command then resumes the run), "
                                  "or train into another output_dir") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        self._lock = stack

    def close(self) -> None:
        """Release the output folder (a folder this run made and left empty is removed)."""
        if self._lock is None:
            return
        self._lock.close()
        self._lock = None
        if self._made_out and self.out.is_dir() and all(p.name == LOCK_FILE for p in self.out.iterdir()):
            shutil.rmtree(self.out, ignore_errors=True)

    def __enter__(self):  # the trainer itself
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- setup ------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Lock the output folder, build the model, data and optimiser, and resume from the last checkpoint."""
        self._acquire()
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def setup_finished(self) -> bool:
        """For shipping a finished run: when ``<output_dir>/final`` holds the model of the run's last checkpoint
        (at ``train.steps``), lock the output folder, check this configuration is that run's (its settings compared,
        paths by the file they name; no data is read, so neither data paths nor data digests are checked) and load
        ``final/`` as :attr:`model`: True. False (nothing held) when the run is not finished or ``final/`` is not
        its model: :meth:`setup` then resumes it as usual."""
        self._acquire()
        try:
            done = self._setup_finished()
        except BaseException:
            self.close()
            raise
        if not done:
            self.close()
        return done

    def _setup_finished(self) -> bool:
        import torch
        from safetensors.torch import load_file

        from glinker.model.biencoder import BiEncoder
        from glinker.model.checkpoint import recover_checkpoint_dir

        final = self.out / "final"
        recover_checkpoint_dir(final)
        steps = sorted(p for p in self.ckpt_root.glob("step-*") if (p / "state.json").is_file())
        if not steps or not (final / "gliner_config.json").is_file():
            return False
        last = steps[-1]
        try:
            st = json.loads((last / "state.json").read_text(encoding="utf-8"))
            if not isinstance(st, dict) or int(st.get("step", -1)) < self.cfg.train.steps:
                return False
        except (ValueError, TypeError, OSError):
            return False
        if self.cfg.train.threads:
            torch.set_num_threads(self.cfg.train.threads)
        model = BiEncoder.from_pretrained(final)
        def same_run(paths_may_differ: bool) -> None:
            _check_same_run(st.get("config"), recorded_config(self.cfg), last, config_dir=self._config_dir(),
                            encoders=(model.config.get("model_name"), model.config.get("labels_encoder")),
                            covered=lambda *_: paths_may_differ)

        same_run(True)  # another setting: refused here, naming it
        try:  # nothing is read here to compare digests with: a path must name the same file as recorded
            same_run(False)
        except ConfigError:  # a path recorded otherwise (a moved project, another file of that name): the usual
            return False     # resume compares the files' digests, then exports, or says what differs
        try:
            trained = load_file(str(last / "trainable.safetensors"))
        except Exception:  # noqa: BLE001 - a damaged checkpoint: the usual resume sets it aside
            return False
        params = dict(model.net.named_parameters())
        if any(n not in params or params[n].shape != t.shape or not torch.equal(params[n].detach().cpu(), t)
               for n, t in trained.items()):
            log.info("%s does not hold the weights of %s: the run is resumed and exported again", final, last)
            return False
        model.net.eval()
        self.model = model
        self.step = int(st["step"])
        self.history = st.get("history", [])
        self.seconds_before = float(st.get("train_seconds", 0.0))
        log.info("the run is finished (%s) and %s holds its model: shipping it without reading data or evaluating",
                 last.name, final)
        return True

    def _setup(self) -> None:
        import torch

        from glinker.model.checkpoint import recover_checkpoint_dir
        from glinker.model.train.batching import BatchSampler, build_sources

        c = self.cfg
        check_data_paths(c)  # a missing file is named now, not after the model and the other sources are read
        recover_checkpoint_dir(self.out / "final")  # an export cut short between its two renames
        refuse_starting_over(self.out)  # a trained model here, no checkpoint: never retrained over silently
        if c.train.threads:
            torch.set_num_threads(c.train.threads)
        random.seed(c.seed)
        torch.manual_seed(c.seed)
        self.model = init_model(c)
        # what this run started from: a resumed run must start from the same weights (from_checkpoint replaced)
        self.base_ident = {"model": c.model.from_checkpoint or [c.model.text_encoder, c.model.labels_encoder],
                           "digest": _weights_digest(self.model.net)}
        if c.train.precision == "bf16" and self._device_type() == "cpu":
            from glinker.model.scoring import bf16_speedup

            from glinker.model.biencoder import _cpu_bf16_units

            speedup = bf16_speedup("cpu")
            if speedup is not None and speedup < 1.0:
                units = _cpu_bf16_units()
                why = (f"this CPU has {units} units, but they measured slower just now: a busy machine?"
                       if units not in ("", "unknown") else "no AMX or AVX512-BF16 units")
                log.warning("train.precision bf16: bfloat16 matrix products ran %.1fx slower than float32 on this "
                            "CPU (%s); set train.precision: fp32 (--set train.precision=fp32)", 1.0 / speedup, why)
        set_trainable(self.model, c.model.train_text_layers, c.model.train_label_layers)
        self.label_frozen = c.model.train_label_layers == 0
        sources = build_sources(c.data, c.train.max_words)
        self.data_ident = {s.name: {"examples": len(s.examples), "digest": _examples_digest(s.examples)}
                           for s in sources}  # a resumed run must read the same data (its sampler state indexes it)
        self.sampler = BatchSampler(sources, c.train.batch_size, c.train.max_words, c.train.max_types,
                                    c.train.negative_types, self.model.max_width, c.seed, c.train.pack_words,
                                    c.train.pack_prob)
        self.dev = build_sources(c.dev, 10 ** 9, "dev")  # numbered: two dev files of one name are two F1s
        self.dev_ident = _files_digest(c.dev)  # lets a resumed run find its dev files moved or spelt otherwise
        enc, other = [], []
        for name, p in self.model.net.named_parameters():
            if p.requires_grad:
                (enc if name.startswith(ENCODER_PREFIXES) else other).append((name, p))

        def groups(params: list, lr: float) -> list[dict]:
            decay = [p for n, p in params if not (n.endswith(".bias") or "LayerNorm" in n or "norm" in n.lower())]
            nodecay = [p for n, p in params if n.endswith(".bias") or "LayerNorm" in n or "norm" in n.lower()]
            return [g for g in ({"params": decay, "lr": lr, "weight_decay": c.train.weight_decay},
                                {"params": nodecay, "lr": lr, "weight_decay": 0.0}) if g["params"]]

        self.opt = torch.optim.AdamW(groups(enc, c.train.encoder_lr) + groups(other, c.train.others_lr))
        warm = int(c.train.warmup_ratio * c.train.steps)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_lambda(s, c.train.steps, warm, c.train.scheduler))
        self.step = 0
        n_train = sum(p.numel() for _, p in enc + other)
        log.info("trainable parameters: %d (encoders %d, head %d)", n_train,
                 sum(p.numel() for _, p in enc), sum(p.numel() for _, p in other))
        self._resume()

    def _config_dir(self) -> str | None:
        src = getattr(self.cfg, "_source", None)
        return os.path.dirname(os.path.abspath(src)) if src else None

    def _total_seconds(self) -> float:
        return self.seconds_before + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)

    def _train_mode(self) -> None:
        """Training mode, except a frozen label encoder: its cached vectors must not carry dropout noise."""
        self.model.net.train()
        if self.label_frozen:
            self.model.net.token_rep_layer.labels_encoder.eval()

    # ---- checkpoints ------------------------------------------------------------------------------------
    def _trainable_state(self) -> dict:
        return {n: p.detach().cpu().contiguous() for n, p in self.model.net.named_parameters() if p.requires_grad}

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step-N`` atomically (trainable weights, optimizer, sampler state, history)."""
        import torch
        from safetensors.torch import save_file

        self.ckpt_root.mkdir(parents=True, exist_ok=True)
        final = self.ckpt_root / f"step-{self.step:07d}"
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.ckpt_root))
        try:
            save_file(self._trainable_state(), str(tmp / "trainable.safetensors"))
            torch.save(self.opt.state_dict(), tmp / "optimizer.pt")
            torch.save(self.sched.state_dict(), tmp / "scheduler.pt")
            torch.save({"torch_rng": torch.get_rng_state()}, tmp / "rng.pt")
            (tmp / "state.json").write_text(json.dumps({
                "step": self.step, "sampler": self.sampler.state(), "history": self.history,
                "train_seconds": self._total_seconds(), "config": recorded_config(self.cfg),
                "data": self.data_ident, "base": self.base_ident, "dev_files": self.dev_ident}, default=list))
            if final.exists():
                shutil.rmtree(final)
            for f in tmp.iterdir():  # safetensors writes 0600 (its temporary file's mode), torch.save 0644
                plain_mode(f)
            plain_mode(tmp, executable=True)  # mkdtemp's 0700 would hide it on shared storage
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for old in sorted(self.ckpt_root.glob("step-*"))[: -self.cfg.train.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def _resume(self) -> None:
        """Continue from the newest complete checkpoint; a damaged one (a truncated file) is set aside as
        ``checkpoints/.damaged-step-N`` with a warning, and the one before it is used."""
        import torch

        for tmp in self.ckpt_root.glob(".tmp-*"):  # a save cut short by a kill (this run holds the folder's lock)
            shutil.rmtree(tmp, ignore_errors=True)
        done = sorted(p for p in self.ckpt_root.glob("step-*") if (p / "state.json").is_file())
        damaged: list[str] = []
        while done:
            last = done.pop()
            try:
                st, weights, opt, sched, rng = _read_checkpoint(last)
            except _Damaged as e:
                aside = last.with_name(f".damaged-{last.name}")
                shutil.rmtree(aside, ignore_errors=True)
                os.replace(last, aside)  # out of the way: pruning old checkpoints must not keep it over good ones
                damaged.append(f"{last.name} ({e})")
                log.warning("checkpoint %s is damaged (%s): moved to %s; %s", last, e, aside.name,
                            f"resuming from {done[-1].name}" if done else "no earlier checkpoint is left")
                continue
            break
        else:
            if damaged:
                raise ConfigError(f"every checkpoint of this run is damaged: {'; '.join(damaged)}",
                                  where=str(self.ckpt_root), fix=f"delete {self.ckpt_root} to start the run over "
                                  "(the damaged checkpoints were moved to .damaged-step-* there)")
            return
        # the configuration first (a path recorded otherwise is the same file only where a digest checked below
        # covers it), then the weights and data digests: each refusal names what differs
        _check_same_run(st.get("config"), recorded_config(self.cfg), last, config_dir=self._config_dir(),
                        encoders=(self.model.config.get("model_name"), self.model.config.get("labels_encoder")),
                        covered=_covered_by(st, self.cfg, self.dev_ident))
        _warn_dev_changed(st.get("dev_files"), self.dev_ident, self.cfg, last)
        base = st.get("base")
        if isinstance(base, dict) and base.get("digest") != self.base_ident["digest"]:
            then = (st.get("config") or {}).get("model", {}).get("from_checkpoint") if isinstance(
                st.get("config"), dict) else None
            moved = f" (recorded as {then})" if then and then != recorded_config(self.cfg)["model"].get(
                "from_checkpoint") else ""
            raise ConfigError(f"{last} was trained from other weights than {self.base_ident['model']} holds now"
                              f"{moved} (weights digest {str(base.get('digest'))[:12]} then, "
                              f"{self.base_ident['digest'][:12]} now): the model was replaced since",
                              where=str(last), fix="restore the model the run started from to resume it, or start "
                              f"over from this one: train into a new output_dir (or delete {self.ckpt_root})")
        saved_paths = {f"{i}:{os.path.basename(str(d.get('path')))}": d.get("path")
                       for i, d in enumerate((st.get("config") or {}).get("data") or [])
                       if isinstance(d, dict)} if isinstance(st.get("config"), dict) else {}
        now_paths = {f"{i}:{Path(d.path).name}": os.path.realpath(d.path) for i, d in enumerate(self.cfg.data)}

        def read_from(n: str) -> str:  # a source found at another path than the one recorded: both named
            then, now = saved_paths.get(n), now_paths.get(n)
            return f", read from {then} then, {now} now" if then and now and then != now else ""

        changed = [f"{n} ({was.get('examples')} examples then, {now.get('examples')} now{read_from(n)})"
                   if was.get("examples") != now.get("examples")
                   else f"{n} (as many examples, other contents{read_from(n)})"
                   for n, was in (st.get("data") or {}).items()
                   if (now := self.data_ident.get(n, {})) != was]
        if changed:
            raise ConfigError(f"{last} was trained on other data: {', '.join(changed)} changed since", where=str(last),
                              fix="restore the data to resume this run, or train into a new output_dir")
        params = dict(self.model.net.named_parameters())
        unknown = set(weights) - {n for n, p in params.items() if p.requires_grad}
        if unknown:
            raise ConfigError(f"checkpoint {last} holds weights this configuration does not train: "
                              f"{sorted(unknown)[:3]}", where=str(last),
                              fix="resume with the same model settings, or use a new output_dir")
        with torch.no_grad():
            for n, t in weights.items():
                params[n].copy_(t)
        self.opt.load_state_dict(opt)
        torch.set_rng_state(rng["torch_rng"])
        self.step = int(st["step"])
        self.sampler.set_state(st["sampler"])
        self.history = st.get("history", [])
        self.seconds_before = float(st.get("train_seconds", 0.0))
        self.sched.load_state_dict(sched)
        log.info("resumed from %s (step %d)", last, self.step)

    # ---- the step ----------------------------------------------------------------------------------------
    def _label_vectors(self, labels: list[str]) -> Any:
        """E (C, D) for the batch labels. With the label encoder frozen, its pooled output is cached and only the
        projection to D (``labels_projection``, trained with the head) runs each step: mean pooling and a linear
        projection commute, so this equals :meth:`BiEncoderNetwork.encode_label_tokens`."""
        import torch

        net = self.model.net
        tok = self.model.labels_tokenizer
        if not self.label_frozen:
            enc = tok(labels, return_tensors="pt", truncation=True, padding="longest")
            return net.encode_label_tokens(enc["input_ids"], enc["attention_mask"])
        missing = [t for t in dict.fromkeys(labels) if t not in self._label_cache]
        if missing:
            encoder = net.token_rep_layer.labels_encoder.model
            with torch.no_grad():
                for i in range(0, len(missing), 256):
                    chunk = missing[i:i + 256]
                    enc = tok(chunk, return_tensors="pt", truncation=True, padding="longest")
                    h = encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])[0]
                    m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                    pooled = (h * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
                    for t, v in zip(chunk, pooled):
                        self._label_cache[t] = v
        e = torch.stack([self._label_cache[t] for t in labels])
        proj = getattr(net.token_rep_layer, "labels_projection", None)
        return proj(e) if proj is not None else e

    def loss_on(self, batch: Any) -> Any:
        import torch

        from glinker.model.train.loss import span_loss
        from glinker.model.words import tokenize_words

        net = self.model.net
        enc = tokenize_words(self.model.tokenizer, batch.words, self.model.pooling)
        W = max(batch.n_words)
        h = net.encode_text(enc["input_ids"], enc["attention_mask"])
        x = net.word_vectors(h, enc["words_mask"], enc["attention_mask"], W)
        reps = net.span_reps(x, self.model.max_width)                  # (B, W, K, D)
        p = net.prompt(self._label_vectors(batch.labels))              # (C, D)
        logits = torch.einsum("bwkd,cd->bwkc", reps, p)
        B, _, K, C = logits.shape
        n = torch.tensor(batch.n_words)
        starts = torch.arange(W)[None, :, None]
        widths = torch.arange(K)[None, None, :]
        valid = starts + widths < n[:, None, None]
        if batch.ignore is not None:
            valid = valid & ~batch.ignore
        valid = valid.unsqueeze(-1).expand(B, W, K, C)
        lc = self.cfg.loss
        logits = logits.float()  # the loss in float32 also under bf16 autocast
        return span_loss(logits.reshape(B, W * K, C), batch.targets.reshape(B, W * K, C), valid.reshape(B, W * K, C),
                         alpha=lc.alpha, gamma=lc.gamma, prob_margin=lc.prob_margin,
                         label_smoothing=lc.label_smoothing, negatives=lc.negatives, masking=lc.masking,
                         reduction=lc.reduction)

    def _device_type(self) -> str:
        return next(self.model.net.parameters()).device.type

    def evaluate(self, progress: Callable[[int, int], None] | None = None) -> dict[str, float]:
        """Span micro-F1 (GLiNER's convention) on each dev source, prompting with the source's types.
        ``progress(done, total)`` is told the examples read so far (all sources), at most once a second."""
        from glinker.eval.datasets import GoldSpan, NERDataset, NERExample, word_spans_to_char
        from glinker.eval.ner import score_dataset

        self.model.net.eval()
        out = {}
        total, before = sum(len(src.examples) for src in self.dev), 0
        try:
            for src in self.dev:
                examples = [NERExample(" ".join(e.words), [GoldSpan(s, t, lab) for s, t, lab in
                                                            word_spans_to_char(e.words, e.spans)])
                            for e in src.examples]
                ds = NERDataset(src.name, src.types, examples)
                read: set[int] = set()
                said = [time.monotonic()]

                def on_window(w: Any, _x: Any, read: set[int] = read, said: list[float] = said,
                              before: int = before) -> None:
                    read.add(w.text_index)
                    if progress is not None and time.monotonic() - said[0] >= DEV_PROGRESS_EVERY:
                        said[0] = time.monotonic()
                        progress(before + len(read), total)

                pred = self.model.predict([x.text for x in examples], src.types, threshold=self.cfg.eval_threshold,
                                          batch_size=16, on_window=on_window)
                out[src.name] = score_dataset(ds, pred).scores.f1
                before += len(examples)
        finally:
            self._train_mode()
        return out

    def train(self, stop_at: int | None = None) -> dict:
        """Run to ``train.steps`` (or stop at ``stop_at`` to continue later); checkpoints every ``save_every``."""
        import torch

        c = self.cfg.train
        self._train_mode()
        t0, seen, run_loss, run_steps = time.perf_counter(), 0, 0.0, 0
        self._t0 = t0
        from tqdm import tqdm

        bar = tqdm(total=c.steps, initial=self.step, desc="training", unit="step", disable=None)
        end = min(c.steps, stop_at) if stop_at else c.steps
        shown: dict[str, str] = {}  # the progress line: the latest loss and examples/s, and the latest dev F1
        try:
            while self.step < end:
                batch = self.sampler.next()
                with torch.autocast(self._device_type(), dtype=torch.bfloat16, enabled=c.precision == "bf16"):
                    loss = self.loss_on(batch)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]],
                                               c.max_grad_norm)
                self.opt.step()
                used_lr = self.sched.get_last_lr()[-1]  # the rate this step ran at (the scheduler then moves on)
                self.sched.step()
                self.step += 1
                seen += len(batch.words)
                run_loss += loss.item()
                run_steps += 1
                bar.update(1)
                # the mean over the steps summed: after a resume (or at --stop-at) fewer than log_every of them
                if self.step % c.log_every == 0 or self.step == end:
                    rate = seen / (time.perf_counter() - t0)
                    rec = {"step": self.step, "loss": run_loss / run_steps, "lr": used_lr,
                           "examples_per_s": rate}
                    if run_steps != c.log_every:
                        rec["steps"] = run_steps
                    self.history.append(rec)
                    shown.update(loss=f"{rec['loss']:.3f}", ex_s=f"{rate:.1f}")
                    bar.set_postfix(shown)
                    log.info("step %d loss %.4f lr %.2e %.1f ex/s", self.step, rec["loss"], rec["lr"], rate)
                    run_loss, run_steps = 0.0, 0
                # the last step is scored before its checkpoint is written: the checkpoint's history holds the
                # final dev F1 (what --ship of the finished run reports; a finished run re-run does not score again)
                if self.dev and (c.eval_every and self.step % c.eval_every == 0 or self.step == c.steps):
                    n_dev = sum(len(src.examples) for src in self.dev)  # minutes with a large dev set: said first
                    log.info("step %d: scoring the dev set%s (%d examples)", self.step, "s" if len(self.dev) > 1 else "",
                             n_dev)
                    bar.set_postfix({**shown, "dev": f"scoring {n_dev} examples"})
                    said_at = [time.monotonic()]

                    def dev_progress(done: int, total: int, step: int = self.step) -> None:
                        bar.set_postfix({**shown, "dev": f"scoring {done}/{total}"})
                        if time.monotonic() - said_at[0] >= DEV_LOG_EVERY:  # a log file (no bar there) hears of it too
                            said_at[0] = time.monotonic()
                            log.info("step %d: dev scoring at %d of %d examples", step, done, total)

                    scores = self.evaluate(dev_progress)
                    self.history.append({"step": self.step, "dev_f1": scores})
                    log.info("step %d dev F1 %s", self.step, scores)
                    # on a terminal (the step lines at INFO are not shown there without -v): on the bar, and a line
                    shown["dev_f1"] = "/".join(f"{v:.3f}" for v in scores.values())
                    bar.set_postfix(shown)
                    if not bar.disable and not log.isEnabledFor(logging.INFO):
                        bar.write(f"step {self.step} dev F1 " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()),
                                  file=sys.stderr)
                if self.step % c.save_every == 0 or self.step == end:
                    self.save_checkpoint()
        finally:
            bar.close()
        # seconds: this session; total_seconds: the whole run (earlier sessions up to their last checkpoint)
        final = {"step": self.step, "seconds": time.perf_counter() - t0, "total_seconds": self._total_seconds()}
        if self.step < c.steps:
            return final
        if self.dev:
            # scored at this step already (eval_every divides steps, or a finished run re-run to export): reused
            done = next((h["dev_f1"] for h in reversed(self.history) if h.get("step") == self.step and "dev_f1" in h),
                        None)
            final["dev_f1"] = done if done is not None else self.evaluate()
            if done is None:
                self.history.append({"step": self.step, "dev_f1": final["dev_f1"]})
                log.info("step %d dev F1 %s", self.step, final["dev_f1"])
        self.model.net.eval()
        return final

    def export(self, out_dir: str | Path | None = None) -> Path:
        """Save the trained model as a full gliner-format checkpoint (``<output_dir>/final`` by default)."""
        out = Path(out_dir) if out_dir else self.out / "final"
        self.model.net.eval()
        self.model._fingerprint = None
        path = self.model.save_pretrained(out)  # a whole new folder swapped in: never new files beside old ones
        hist = self.out / "history.json"
        atomic_write(hist, json.dumps(self.history, indent=1))
        return path


class _Damaged(Exception):
    """A checkpoint file that cannot be read (truncated, corrupt, missing)."""


def _read_checkpoint(folder: Path) -> tuple[dict, dict, Any, Any, Any]:
    """(state, trainable weights, optimizer, scheduler and RNG states) of a checkpoint folder, read in full before
    any of it is applied; :class:`_Damaged` naming the file that cannot be read."""
    import torch
    from safetensors.torch import load_file

    name = "state.json"
    try:
        st = json.loads((folder / name).read_text(encoding="utf-8"))
        if not isinstance(st, dict) or not isinstance(st.get("step"), int) or "sampler" not in st:
            raise ValueError("no step or sampler state")
        name = "trainable.safetensors"
        weights = load_file(str(folder / name))
        name = "optimizer.pt"
        opt = torch.load(folder / name, weights_only=True)
        name = "scheduler.pt"
        sched = torch.load(folder / name, weights_only=True)
        name = "rng.pt"
        rng = torch.load(folder / name, weights_only=True)
        if not isinstance(rng, dict) or "torch_rng" not in rng:
            raise ValueError("no torch_rng")
    except (FileNotFoundError, IsADirectoryError) as e:  # a file missing: the save was cut short
        raise _Damaged(f"{name}: {type(e).__name__}: {str(e)[:120]}") from None
    except (OSError, MemoryError):  # the storage or the machine, not the checkpoint (EIO, ESTALE, permissions)
        raise
    except Exception as e:  # noqa: BLE001 - json, safetensors, zip and unpickling errors of many types
        if "Weights only load failed" in str(e):  # a torch that refuses what it reads: not a damaged file
            raise
        raise _Damaged(f"{name}: {type(e).__name__}: {str(e)[:120]}") from None
    return st, weights, opt, sched, rng


def _weights_digest(net: Any) -> str:
    """A short hash of every weight of ``net`` (names, shapes, dtypes, values)."""
    import hashlib

    import torch

    h = hashlib.blake2b(digest_size=16)
    for k, v in sorted(net.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _examples_digest(examples: Sequence[Any]) -> str:
    """A short hash of a source's examples (words, spans, labels) as training reads them."""
    import hashlib

    h = hashlib.blake2b(digest_size=8)
    for ex in examples:
        h.update(repr((ex.words, ex.spans, ex.labels, ex.ignore)).encode("utf-8", "surrogatepass"))
    return h.hexdigest()


# settings that change how a run goes, not what it learns: they may differ when a run is resumed
_RUN_ONLY = {"threads", "eval_every", "save_every", "keep_checkpoints", "log_every", "output_dir"}
_MODEL_PATHS = ("from_checkpoint", "text_encoder", "labels_encoder")
_SOURCE_PATHS = ("path", "entities")


def _local(value: Any) -> bool:
    """A model source that names a local file or folder (not a hub id, a shipped model name or pkg:<package>)."""
    return isinstance(value, str) and not value.startswith("pkg:") and (os.path.isabs(value) or os.path.exists(value))


def recorded_config(cfg: TrainConfig) -> dict:
    """The configuration as a checkpoint records it (plain JSON), each local path as the absolute path of the file
    it names (symbolic links resolved): the same files given by another spelling (``-c r1.yaml`` and ``-c
    $PWD/r1.yaml``, a relative or an absolute ``${GLINKER_DATA}``) record the same configuration."""
    d = json.loads(json.dumps(cfg.model_dump(), default=list))
    for group in ("data", "dev"):
        for src in d.get(group) or []:
            for key in _SOURCE_PATHS:
                if isinstance(src.get(key), str):
                    src[key] = os.path.realpath(src[key])
    m = d.get("model") or {}
    for key in _MODEL_PATHS:
        if _local(m.get(key)):
            m[key] = os.path.realpath(m[key])
    return d


def refuse_starting_over(out: Path, resumable: bool | None = None) -> None:
    """A ConfigError when ``out`` holds a trained model (``final/``) or its ``history.json`` but no checkpoint to
    resume from: training would start over from step 0 and replace them, silently. ``resumable`` None: whether a
    checkpoint with its state is there."""
    if resumable is None:
        resumable = any((p / "state.json").is_file() for p in out.glob("checkpoints/step-*"))
    if resumable:
        return
    found = [str(p) for p in (out / "final", out / "history.json") if p.exists()]
    if not found:
        return
    raise ConfigError(f"{out} holds a trained run ({' and '.join(found)}) but no checkpoint to resume it from "
                      f"({out / 'checkpoints'} is missing or empty): training would start over from step 0 and "
                      "replace final/", where=str(out),
                      fix="to keep that model, pass another output_dir (--set output_dir=...); to retrain, delete "
                          f"{out / 'final'} (and {out / 'history.json'})")


def _same_file(then: Any, now: Any, config_dir: str | None, covered: bool = False) -> bool:
    """Whether a path recorded by a checkpoint names the file that ``now`` (a path as :func:`recorded_config`
    writes it) names: the same path, or an absolute one naming the same file.

    A path recorded otherwise may name the same file: runs before 2026-12-04 recorded paths as spelt (relative to
    the folder that session ran in, which is not known), and a run recorded today names its files by absolute paths
    that change when the project folder moves. Such a path is taken for ``now`` only when ``covered`` (a content
    digest the checkpoint recorded for it is compared: the data digest, the weights digest, the dev files' digest)
    and it names ``now`` from the working folder or the config's folder, or has the same file name."""
    if then == now:
        return True
    if not (isinstance(then, str) and isinstance(now, str)):
        return False
    if os.path.isabs(then) and os.path.realpath(then) == os.path.realpath(now):
        return True
    if not covered:
        return False
    if not os.path.isabs(then):
        bases = [os.getcwd()] + ([config_dir] if config_dir else [])
        if any(os.path.realpath(os.path.join(b, then)) == os.path.realpath(now) for b in bases):
            return True
    return os.path.basename(os.path.normpath(then)) == os.path.basename(os.path.normpath(now))


def _files_digest(sources: Sequence[Any]) -> list[dict]:
    """The sha256 of the bytes of each source's files (``path``, ``entities``; None for one not given or not
    there), in the order of the sources. A folder's digest covers the files its reader takes (those of the
    source's ``split``, and the ``labels.json`` beside them), by name and contents."""
    import hashlib

    from glinker.eval.datasets import training_files
    from glinker.model.packaged import sha256_file
    from glinker.model.train.batching import default_split

    def digest(p: str | None, split: str | None, i: int) -> str | None:
        if not p:
            return None
        path = Path(p)
        if path.is_file():
            return sha256_file(path)
        if not path.is_dir():
            return None
        # the split the reader takes (a folder of train/dev/test files: its dev files), not the whole folder
        files = training_files(path, default_split(p, split, "dev", f"dev[{i}]", warn=False))
        files += [lab for lab in dict.fromkeys(f.parent / "labels.json" for f in files) if lab.is_file()]
        h = hashlib.sha256()
        for f in sorted(files):
            h.update(f"{f.relative_to(path).as_posix()}\0{sha256_file(f)}\n".encode())
        return h.hexdigest() if files else None

    return [{key: digest(getattr(s, key, None), getattr(s, "split", None), i) for key in _SOURCE_PATHS}
            for i, s in enumerate(sources)]


def _covered_by(st: dict, cfg: TrainConfig, dev_ident: list[dict] | None) -> Any:
    """``covered(group, index, key)`` for :func:`_check_same_run`: whether the checkpoint state ``st`` recorded a
    content digest for that path that is compared with this run's files. Data paths: the data digest of the source
    (compared after the configuration); model paths: the weights digest (compared after it); dev paths: the dev
    files' sha256, equal to this run's (``dev_ident``)."""
    data, base, dev = st.get("data"), st.get("base"), st.get("dev_files")

    def covered(group: str, i: int | None, key: str) -> bool:
        if group == "model":
            return isinstance(base, dict) and bool(base.get("digest"))
        if group == "data":
            if not (isinstance(data, dict) and i is not None and i < len(cfg.data)):
                return False
            rec = data.get(f"{i}:{Path(cfg.data[i].path).name}")
            return isinstance(rec, dict) and bool(rec.get("digest"))
        if group == "dev":
            if not (isinstance(dev, list) and i is not None and i < len(dev) and isinstance(dev[i], dict)):
                return False
            then = dev[i].get(key)
            if not then:
                return False
            now = dev_ident[i].get(key) if dev_ident is not None and i < len(dev_ident) else None
            return then == now
        return False

    return covered


def _warn_dev_changed(then: Any, now: list[dict], cfg: TrainConfig, last: Path) -> None:
    """A warning for each dev file whose contents differ from the ones the run started with (``then``: the sha256
    its checkpoint recorded; ``now``: this session's): resuming is allowed (dev files only measure), but the dev F1
    of the history before and after are scores on different data under one name."""
    if not isinstance(then, list):
        return  # a checkpoint from before dev files were recorded
    for i, (was, cur) in enumerate(zip(then, now)):
        for key in _SOURCE_PATHS:
            a = was.get(key) if isinstance(was, dict) else None
            b = cur.get(key)
            if a and b and a != b:
                log.warning("dev[%d].%s %s changed since the run started (sha256 %s then, %s now, recorded in %s): "
                            "the dev F1 of %s from here on scores other data than the earlier ones in the history",
                            i, key, getattr(cfg.dev[i], key), a[:12], b[:12], last.name,
                            f"{i}:{Path(cfg.dev[i].path).name}")


def _agrees(value: Any, encoder: str | None) -> bool:
    """With from_checkpoint, model.text_encoder / labels_encoder only name the checkpoint's packaged encoders for
    --ship: left out, or naming the encoder the checkpoint holds (a package that is a copy of it, or its hub id)."""
    from glinker.model.shipped import public_encoder_name

    return value is None or (encoder is not None and isinstance(value, str) and public_encoder_name(value) == encoder)


def _check_same_run(saved: Any, now: Any, where: Path, config_dir: str | None = None,
                    encoders: tuple | None = None, covered: Any = None) -> None:
    """A ConfigError naming the settings that differ between a checkpoint's configuration and this one (a resumed
    run would otherwise crash on shapes, or silently keep the old learning rates from the optimizer state).

    Paths compare by the file they name (:func:`_same_file`; ``covered(group, index, key)`` tells whether a content
    digest covers a path recorded otherwise). With the same ``model.from_checkpoint``,
    ``model.text_encoder`` / ``labels_encoder`` are metadata for ``--ship`` that training never reads (the weights
    come from the checkpoint, whose digest the run records): a value added, removed or respelt is no other
    configuration as long as each agrees with the checkpoint's encoders (``encoders``: its ``model_name`` and
    ``labels_encoder``)."""
    if not isinstance(saved, dict):
        return  # a checkpoint from before configurations were saved
    saved = json.loads(json.dumps(saved))
    covered = covered or (lambda group, i, key: False)
    sm, nm = saved.get("model"), now.get("model")
    if isinstance(sm, dict) and isinstance(nm, dict):
        for key in _MODEL_PATHS:
            if _local(nm.get(key)) and _same_file(sm.get(key), nm.get(key), config_dir, covered("model", None, key)):
                sm[key] = nm[key]
        if sm.get("from_checkpoint") and sm.get("from_checkpoint") == nm.get("from_checkpoint"):
            for key, enc in zip(("text_encoder", "labels_encoder"), encoders or (None, None)):
                if _agrees(sm.get(key), enc) and _agrees(nm.get(key), enc):
                    sm[key] = nm.get(key)
    for group in ("data", "dev"):
        was, cur = saved.get(group), now.get(group)
        if isinstance(was, list) and isinstance(cur, list):
            for i, (a, b) in enumerate(zip(was, cur)):
                if isinstance(a, dict) and isinstance(b, dict):
                    for key in _SOURCE_PATHS:
                        if _same_file(a.get(key), b.get(key), config_dir, covered(group, i, key)):
                            a[key] = b.get(key)
    diffs: list[str] = []
    unknown_then: list[str] = []  # settings this build has and the checkpoint's (an older build's) configuration lacks

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                if k not in _RUN_ONLY:
                    if k not in a and re.fullmatch(r"|train|model|(?:data|dev)\[\d+\]", path):
                        unknown_then.append(f"{path}.{k}" if path else str(k))
                    walk(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{path}[{i}]")
        elif a != b:
            diffs.append(f"{path}: {a!r} then, {b!r} now")

    walk(saved, now, "")
    if unknown_then:  # "pack_prob: None then, 0.5 now" asked to restore a value no configuration can hold
        raise ConfigError(f"{where} was saved by an older glinker, whose configuration had no "
                          f"{', '.join(unknown_then[:6])}{' ...' if len(unknown_then) > 6 else ''}: its run cannot "
                          "be resumed by this version (what those settings do was not done then)",
                          where=str(where.parent.parent),
                          fix="finish this run with the glinker version that started it, or train into a new "
                              "output_dir with this one (from a finished run's weights: model.from_checkpoint: "
                              f"{where.parent.parent / 'final'}, where that run wrote them)")
    if diffs:
        paths = any(d.split(":")[0].endswith(_SOURCE_PATHS + _MODEL_PATHS) for d in diffs)
        raise ConfigError(f"{where} was trained with another configuration: " + "; ".join(diffs[:5])
                          + (f" (and {len(diffs) - 5} more)" if len(diffs) > 5 else ""), where=str(where.parent.parent),
                          fix="train into a new output_dir, or restore these settings to resume this run (only "
                              + ", ".join(sorted(_RUN_ONLY)) + " may change between sessions)"
                              + ("; a file recorded at another path counts as the same only where the checkpoint "
                                 "recorded a digest of its contents to compare (data, the starting weights, dev files; "
                                 "runs of older versions recorded fewer): give the path it was recorded with"
                                 if paths else ""))
