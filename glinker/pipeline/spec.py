"""Pipeline YAML → validated spec. Every problem found is reported at once, each with its line and a fix.

Validation imports stage classes (which are light by contract) but never builds stages or loads models.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from glinker.errors import ConfigError, GlinkerError, PipelineError, Problem, closest
from glinker.pipeline.registry import StageRegistry, registry as default_registry
from glinker.pipeline.stage import DOCUMENTS, Stage, StageParams, placed_path
from glinker.pipeline.yamlsrc import LoadedYAML, load_yaml

log = logging.getLogger(__name__)

RESERVED_STAGE_KEYS = ("type", "input", "inputs", "description")

MAX_BATCH_SIZE = 100_000
"""The largest ``settings.batch_size`` (and ``batch_size=`` override) a pipeline takes."""


def checked_batch_size(value: Any, where: str = "batch_size") -> int:
    """A ``batch_size`` given in Python (``load_pipeline(..., batch_size=)``, ``Pipeline.run(batch_size=)``) as an
    int from 1 to MAX_BATCH_SIZE, as the YAML's ``settings.batch_size`` is checked (a numpy integer is taken); a
    ConfigError naming ``where`` otherwise: 0 or a negative number ran one document per batch, a string failed at
    the first batch."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= value <= MAX_BATCH_SIZE:
        raise ConfigError(f"batch_size must be a whole number from 1 to {MAX_BATCH_SIZE:,}, not {value!r:.60}",
                          where=where, fix="e.g. batch_size=16, or leave it out for the pipeline's settings.batch_size")
    return int(value)


DTYPES = ("float32", "bfloat16", "float16", "auto")


def checked_dtype(value: Any, where: str = "dtype") -> str:
    """A ``dtype`` given in Python or on a command line (``load_pipeline(..., dtype=)``, ``--dtype``) as one of
    :data:`DTYPES` (a torch dtype is taken by its name, case and a ``torch.`` prefix aside); a ConfigError naming
    ``where`` otherwise, before anything loads."""
    name = str(value).strip().lower().removeprefix("torch.")
    if name not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, not {value!r:.60}", where=where,
                          fix="e.g. --dtype auto (bfloat16 where the CPU or GPU runs it fast), or float32")
    return name


class Settings(BaseModel):
    """Run settings shared by all stages."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(default=32, ge=1, le=MAX_BATCH_SIZE,
                            description="Documents per batch moved through the stages.")
    device: str | None = Field(default=None, pattern=r"^(cpu|cuda|mps)(:\d+)?$",
                               description="Torch device for model stages: cpu, cuda, cuda:1, mps; default: cpu (a "
                               "GPU only when named here or with --device).")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] | None = Field(  # DTYPES
        default=None, description="Precision of model stages: float32, bfloat16, float16, or auto (bfloat16 on a CPU "
        "with AMX, or with AVX512-BF16 where it measures fast, and on a GPU that has it: ~2x faster on an AMX CPU "
        "with the same links on AIDA within 0.03 F1; float32 elsewhere); default: the checkpoint's (float32 for the "
        "shipped model). Part of the pipeline's identity: a run resumes, and cluster workers serve, only with the "
        "same setting.")
    log_every: int = Field(default=0, ge=0, description="Log progress at INFO every N documents, and the final count of a call that reached N (0: the final count only, at DEBUG).")
    window_words: int | None = Field(
        default=None, ge=0, description="Longest window, in words, a model stage reads at once (longer documents are "
        "read in overlapping windows); default: the model's `window_words` (the shipped model: 32), else its "
        "max_len; 0: max_len.")


class PipelineHeader(BaseModel):
    """Top-level keys of a pipeline file (``stages`` is validated stage by stage)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Pipeline name, shown in logs and summaries.")
    description: str = Field(default="", description="Free text.")
    version: Literal[1] = Field(default=1, description="Pipeline file format version.")
    model: str | None = Field(default=None, description="Default bi-encoder for model stages: a shipped model name, a "
                              "local dir or a hub id. None by default: a stage that needs a model and has none is "
                              "refused (E250); set it here or on the stage, or pass --model.")
    kb: str | dict[str, Any] | None = Field(
        default=None, description="Default knowledge base: a KB directory (built by `glinker kb build`; relative to "
        "the file), or a KB read from its source at warm-up ({adapter, source, options, cache, refresh, template}, as "
        "a stage's `kb`; e.g. a SQL table).")
    settings: Settings = Field(default_factory=Settings, description="Run settings.")
    output: str | None = Field(default=None, description="The stage whose output is the pipeline's result; default: the only sink (with several, the last in the file, and a warning).")
    stages: dict[str, Any] = Field(description="Stage name → stage definition (type, input(s), parameters).")

    # a `kb:` mapping is checked by kb_source_problems (its keys, adapter and options, each at its line)


class StageSpec(BaseModel):
    """One validated stage: its type, its inputs (stage names or ``documents``) and its typed parameters."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    type: str
    inputs: list[str]
    params: StageParams | None  # None only while a file with problems is being checked
    cls: type[Stage] | None
    line: int | None = None
    description: str = ""


class PipelineSpec(BaseModel):
    """A whole validated pipeline; ``stages`` keeps file order."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    header: PipelineHeader
    stages: dict[str, StageSpec]
    source: str = "<string>"
    base_dir: Path = Field(default_factory=Path.cwd)
    output: str
    header_lines: dict[str, int] = Field(default_factory=dict)
    """The line of each top-level key (``model``, ``kb``...): where problems with their values are said."""
    kb_places: dict[str, dict[str, str]] = Field(default_factory=dict)
    """Each KB read from its source (by its definition's JSON) -> where its block and options are in the file
    (dotted path -> ``file:line``; "@" -> how messages name the block), so that errors met when it is read at
    warm-up point at the block, not at the first stage that uses it."""

    @property
    def name(self) -> str:
        return self.header.name


def _fmt_loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


def _pydantic_problems(err: ValidationError, prefix: tuple, src: LoadedYAML, model: type[BaseModel],
                       code_unknown: str, code_value: str) -> list[Problem]:
    problems = []
    for e in err.errors():
        loc = tuple(e["loc"])
        path = prefix + loc
        line = src.line_of(path)
        where = f"{src.source}:{line}" if line else src.source
        field_path = _fmt_loc(path)
        if e["type"] == "extra_forbidden":
            key = str(loc[-1])
            parent = model
            # nested models (settings.x): suggest from the nested model's fields
            if len(loc) > 1 and loc[0] in model.model_fields:
                ann = model.model_fields[loc[0]].annotation
                if isinstance(ann, type) and issubclass(ann, BaseModel):
                    parent = ann
            valid = list(parent.model_fields)
            guess = closest(key, valid)
            hint = f"did you mean {guess!r}? " if guess else ""
            problems.append(Problem(code_unknown, f"unknown key {key!r} at {field_path}", where=where, line=line,
                                    fix=f"{hint}valid keys here: {', '.join(valid)}"))
        elif e["type"] == "missing":
            what = _value_fix(model, loc, missing=True)  # what the key holds, as an invalid value's fix says it
            problems.append(Problem(code_value, f"required key {field_path!r} is missing", where=where, line=line,
                                    fix=f"add `{loc[-1]}:` here" + (f" ({what})" if what else "")))
        else:
            got = e.get("input")
            got_s = "" if isinstance(got, (dict, list)) else f" (got {got!r})"  # a mapping's own message says more
            fix = _value_fix(model, loc)
            if isinstance(got, bool) and "string" in e["msg"]:
                fix = "quote it: YAML reads unquoted yes/no/on/off/true/false as booleans; " + fix
            problems.append(Problem(code_value, f"invalid value for {field_path!r}: {e['msg']}{got_s}",
                                    where=where, line=line, fix=fix))
    return problems


def _value_fix(model: type[BaseModel], loc: tuple, missing: bool = False) -> str:
    """What the field at ``loc`` takes: its type, default and the first sentence of its description (the fix of an
    invalid value; with ``missing``, what a missing key should hold, "" for a field not found)."""
    field = model.model_fields.get(str(loc[0])) if loc else None
    while field is not None and len(loc) > 1 and isinstance(field.annotation, type) \
            and issubclass(field.annotation, BaseModel):
        model, loc = field.annotation, loc[1:]
        field = model.model_fields.get(str(loc[0]))
    if missing and len(loc) > 1:  # a key inside a list's item or a mapping's value: not the field found
        return ""
    if field is None:
        return "" if missing else "see docs/yaml-reference.md for the allowed values"
    import types
    import typing

    a = field.annotation
    args = [x for x in typing.get_args(a) if x is not type(None)]
    if typing.get_origin(a) in (typing.Union, types.UnionType) and len(args) == 1:  # X | None: X (or nothing)
        a = args[0]
    ann = getattr(a, "__name__", None) or str(a).replace("typing.", "")
    if ann in ("Literal", "Optional") or typing.get_origin(a) is typing.Literal:
        ann = "one of the values named"
    text = field.description or ""
    first = text.split(". ")[0].rstrip(".")  # the field's first sentence: the whole text is in docs/yaml-reference.md
    desc = f" — {first[:157] + '...' if len(first) > 160 else first}" if first else ""
    value = field.get_default(call_default_factory=True) if not field.is_required() else None
    default = "" if field.is_required() else f" (default: {value!r})"
    return f"expected {ann}{default}{desc}"


def parse_spec(loaded: LoadedYAML, *, reg: StageRegistry | None = None, base_dir: Path | None = None,
               check_resources: bool = False) -> PipelineSpec:
    """Validate a loaded YAML document. Raises PipelineError listing every problem found; ``check_resources``
    adds :func:`resource_problems` (stages without a KB or model, and names that do not exist)."""
    from glinker.pipeline.graph import check_graph

    reg = reg or default_registry
    src = loaded
    problems: list[Problem] = list(src.duplicates)
    data = src.data
    if not isinstance(data, dict):
        kind = "is empty" if data is None else f"holds a {type(data).__name__}"
        raise PipelineError([Problem("E202", f"a pipeline must be a YAML mapping, this file {kind}",
                                     where=src.where(()), line=src.line_of(()),
                                     fix="start with `name: ...` and a `stages:` mapping")], source=src.source)

    raw_stages = data.get("stages")
    # `x-...` keys hold YAML anchors for reuse (as in docker-compose); they are not part of the schema.
    header_data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    if isinstance(raw_stages, dict):
        header_data["stages"] = {}
    header: PipelineHeader | None = None
    try:
        header = PipelineHeader.model_validate(header_data)
    except ValidationError as e:
        problems += _pydantic_problems(e, (), src, PipelineHeader, "E211", "E212")

    stages: dict[str, StageSpec] = {}
    if isinstance(raw_stages, dict):
        if not raw_stages:
            problems.append(Problem("E213", "the pipeline has no stages", where=src.where(("stages",)),
                                    line=src.line_of(("stages",)), fix="add at least one stage under `stages:`"))
        for name, body in raw_stages.items():
            if not isinstance(name, str):  # `yes:`, `on:`, `2024:` read by YAML as a boolean or a number
                line = src.line_of(("stages", name))
                problems.append(Problem("E216", f"the stage name {name!r} is not text: YAML reads unquoted yes/no/"
                                        "on/off/true/false as booleans and digits as numbers",
                                        where=f"{src.source}:{line}", line=line,
                                        fix="quote the name ('on': ...) and the inputs naming it, or rename it"))
            spec, ps = _parse_stage(str(name), body, src, reg)
            problems += ps
            stages[str(name)] = spec
    elif raw_stages is not None:
        problems.append(Problem("E212", f"`stages` must be a mapping of stage name → definition, got {type(raw_stages).__name__}",
                                where=src.where(("stages",)), line=src.line_of(("stages",)),
                                fix="write `stages:` followed by indented `name: {type: ..., ...}` entries"))

    kb_places: dict[str, dict[str, str]] = {}
    if header is not None and isinstance(header.kb, dict):
        ps, places = kb_source_problems(header.kb, ("kb",), src, "kb")
        problems += ps
        kb_places.update(places)
    for sname, st in stages.items():
        own = getattr(st.params, "kb", None) if st.params is not None else None
        if own is not None and not isinstance(own, str):
            block = own.model_dump() if hasattr(own, "model_dump") else own  # a plugin's `kb: dict` too
            ps, places = kb_source_problems(block, ("stages", sname, "kb"), src, f"stage {sname!r} kb")
            problems += ps
            kb_places.update(places)

    output = header.output if header else None
    if stages:
        graph_problems, output = check_graph(stages, output, src, quiet=bool(problems))
        problems += graph_problems
    header_lines = {k: ln for (k, *rest), ln in ((p, ln) for p, ln in src.lines.items() if p)
                    if not rest and isinstance(k, str)}
    if check_resources and header is not None:
        partial = PipelineSpec.model_construct(header=header, stages=stages, source=src.source,
                                               base_dir=base_dir or Path.cwd(), output=output or "",
                                               header_lines=header_lines)
        problems += [p for p in resource_problems(partial, check_paths=True) if p.code not in ("E252", "E254")]
    if problems:
        problems.sort(key=lambda p: (p.line or 0))
        raise PipelineError(problems, source=src.source)
    assert header is not None and output is not None
    return PipelineSpec(header=header, stages=stages, source=src.source, base_dir=base_dir or Path.cwd(),
                        output=output, kb_places=kb_places, header_lines=header_lines)


def _names_variable(v: Any) -> bool:
    if isinstance(v, str):
        from glinker.stages.resources import _ENV  # the pattern kb blocks expand

        return _ENV.search(v) is not None
    if isinstance(v, dict):
        return any(_names_variable(x) for x in v.values())
    if isinstance(v, list):
        return any(_names_variable(x) for x in v)
    return False


def kb_source_problems(value: Any, path: tuple, src: LoadedYAML, owner: str) -> tuple[list[Problem],
                                                                                        dict[str, dict[str, str]]]:
    """Check a kb block read from its source (``kb: {adapter, source, options, ...}``) without reading the source:
    its keys, that the adapter exists, and the adapter's options (names, types, and what the adapter checks before
    connecting, e.g. the sql adapter's table or query and its column mapping). ``${VAR}`` values are checked as the
    environment gives them now (one that is unset is left to the run). Returns the problems, each at its line, and
    where the block's keys are (for errors met when the source is read: :attr:`PipelineSpec.kb_places`)."""
    from glinker.errors import GlinkerError
    from glinker.kb.adapters import check_adapter_options, check_option_names, get_adapter_class
    from glinker.stages.resources import KBSource, _expand_all, env_note, kb_option_path

    problems: list[Problem] = []
    try:
        ks = KBSource.model_validate(value)
    except ValidationError as e:
        return _pydantic_problems(e, path, src, KBSource, "E211", "E212"), {}
    places = {".".join(str(k) for k in p[len(path):]): f"{src.source}:{line}"
              for p, line in src.lines.items() if tuple(p[:len(path)]) == tuple(path)}
    places["@"] = owner
    try:
        options = _expand_all(ks.options)
        expanded = True
    except ConfigError:  # a ${VAR} without a default, unset here: its value is the run's to check
        options, expanded = ks.options, False
    def check(opts: dict[str, Any]) -> None:
        if expanded:
            check_adapter_options(ks.adapter, opts)
        else:
            model = getattr(get_adapter_class(ks.adapter), "options_model", None)
            if getattr(model, "model_fields", None):
                check_option_names(ks.adapter, model, opts)

    written: dict[str, str] = {}  # an option checked under the name it was meant to have -> the name written

    def said(e: GlinkerError) -> Problem:
        rel = kb_option_path(e.where, ks.adapter)
        if len(rel) >= 2 and rel[0] == "options" and str(rel[1]) in written:  # at the key as the file writes it
            rel = ("options", written[str(rel[1])], *rel[2:])
        line = src.line_of(path + rel)
        unknown = e.message.startswith("unknown option")
        # a value read from the environment: which (not for a misspelt key, whose value is not the problem)
        note = env_note(ks.model_dump(), rel) if rel and not unknown else ""
        key = ".".join(str(k) for k in path + rel)
        return Problem("E211" if unknown else "E212", f"{key}: {e.message}{note}",
                       where=f"{src.source}:{line}" if line else src.source, line=line, fix=e.fix)

    # every problem of the options at once: after one, the options are checked again without the one it names, a
    # misspelt one under the name it was meant to have (`tabel` as `table`, so the column mapping is checked too);
    # a problem the removal itself causes, such as a required option now missing, is not said
    import difflib

    try:
        known = list(getattr(getattr(get_adapter_class(ks.adapter), "options_model", None), "model_fields", None) or [])
    except GlinkerError:  # no such adapter: said by the first check below
        known = []
    opts = dict(options)
    removed: list[str] = []
    for _ in range(8):
        try:
            check(opts)
        except GlinkerError as e:
            rel = kb_option_path(e.where, ks.adapter)
            name = str(rel[1]) if len(rel) >= 2 and rel[0] == "options" else ""
            if removed and name not in written and (
                    not name or "required" in e.message or "missing" in e.message
                    or difflib.get_close_matches(name, removed, n=1, cutoff=0.6)):
                break  # what leaving an option out caused (`tabel` out: "give table or query"), not a problem
            problems.append(said(e))
            if name in opts:
                value = opts.pop(name)
                removed.append(name)
                meant = difflib.get_close_matches(name, known, n=1, cutoff=0.6) if e.message.startswith(
                    "unknown option") and name not in written else []
                if meant and meant[0] not in opts and meant[0] not in removed:
                    opts[meant[0]] = value
                    written[meant[0]] = name
                continue
        break
    if expanded and ks.adapter == "sql" and isinstance(ks.source, str) and "${" not in ks.source:
        from kb_adapters.sql import parse_url

        try:
            parse_url(ks.source)  # read, not connected to: an unencoded '@' in a password is found here
        except GlinkerError as e:
            problems.append(said(e))
    return problems, {ks.model_dump_json(): places}


def _parse_stage(name: str, body: Any, src: LoadedYAML, reg: StageRegistry) -> tuple[StageSpec, list[Problem]]:
    """Validate one stage. With problems, the spec is partial (cls/params may be None) for the graph checks."""
    path = ("stages", name)
    line = src.line_of(path)
    where = src.where(path)
    problems: list[Problem] = []
    stype = body.get("type") if isinstance(body, dict) else None
    cls: type[Stage] | None = None
    if name == DOCUMENTS:
        problems.append(Problem("E214", f"{DOCUMENTS!r} is reserved for the pipeline input", where=where, line=line,
                                fix="give the stage another name"))
    if not isinstance(body, dict):
        problems.append(Problem("E214", f"stage {name!r} must be a mapping, got {type(body).__name__}",
                                where=where, line=line, fix=f"write `{name}: {{type: <stage type>, ...}}`"))
        body = {}
    elif not isinstance(stype, str) or not stype:
        what = "has no `type`" if stype in (None, "") else f"has a `type` that is a {type(stype).__name__}, not a name"
        import difflib

        # a key close to `type` that no stage type has as an option (`type_map` is rescore's), the closest first
        options = {f for t in reg.names() for f in getattr(reg.get(t), "Params", BaseModel).model_fields}
        keys = [k for k in body if isinstance(k, str) and k != "type" and k not in options]
        close = difflib.get_close_matches("type", [k.lower() for k in keys], n=1, cutoff=0.6)
        typo = next((k for k in keys if k.lower() == close[0]), None) if close else None
        if stype is None and typo is not None:  # `typ: ...`, `Type: ...`: the key is misspelt, not missing
            what += f": its key {typo!r} looks like `type` misspelt"
            line = src.line_of(path + (typo,)) or line
            where = f"{src.source}:{line}" if line else where
        problems.append(Problem("E215", f"stage {name!r} {what}", where=where, line=line,
                                fix=(f"write `type: {body[typo]}`" if stype is None and typo is not None
                                     and isinstance(body[typo], str) else "write `type: <one stage type>`")
                                + f", one of: {', '.join(reg.names())}"))
    else:
        tline = src.line_of(path + ("type",))
        if ":" in stype or ("." in stype and stype not in reg):
            problems.append(Problem(
                "E230", f"stage type {stype!r} looks like an import path; pipeline files cannot import classes",
                where=f"{src.source}:{tline}", line=tline,
                fix="register the class as a `glinker.stages` entry point and use its name"))
        else:
            try:
                cls = reg.get(stype)
            except ConfigError as e:
                if e.code == "E230":
                    guess = closest(stype, reg.names())
                    hint = f"did you mean {guess!r}? " if guess else ""
                    problems.append(Problem("E230", f"unknown stage type {stype!r} in stage {name!r}",
                                            where=f"{src.source}:{tline}", line=tline,
                                            fix=f"{hint}known types: {', '.join(reg.names())}"))
                else:
                    problems.append(Problem(e.code, e.message, where=f"{src.source}:{tline}", line=tline, fix=e.fix))

    inputs: list[str] = []
    if "input" in body and "inputs" in body:
        problems.append(Problem("E216", f"stage {name!r} has both `input` and `inputs`", where=where, line=line,
                                fix="use `input: <stage>` for one input or `inputs: [a, b]` for several"))
    elif "inputs" in body:
        raw = body["inputs"]
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw) or not raw:
            odd = [x for x in raw if isinstance(x, (bool, int, float))] if isinstance(raw, list) else []
            read_as = "a boolean or number" if len(odd) == 1 else "booleans or numbers"
            said = (f" ({', '.join(map(repr, odd))} read as {read_as}: YAML reads unquoted yes/no/on/off/true/false "
                    "and digits so)") if odd else ""
            problems.append(Problem("E216", f"`inputs` of stage {name!r} must be a non-empty list of stage names{said}",
                                    where=src.where(path + ("inputs",)), line=src.line_of(path + ("inputs",)),
                                    fix="write `inputs: [stage_a, stage_b]`" + (", quoting such names ('on')" if odd
                                                                                 else "")))
        else:
            inputs = list(raw)
    elif "input" in body:
        raw = body["input"]
        if not isinstance(raw, str):
            odd = isinstance(raw, (bool, int, float))
            problems.append(Problem("E216", f"`input` of stage {name!r} must be one stage name"
                                    + (f" ({raw!r} read as a {type(raw).__name__}: YAML reads unquoted yes/no/on/off/"
                                       "true/false and digits so)" if odd else ""),
                                    where=src.where(path + ("input",)), line=src.line_of(path + ("input",)),
                                    fix="write `input: <stage>`, or `inputs: [a, b]` for several"
                                        + ("; quote a name such as 'on'" if odd else "")))
        else:
            inputs = [raw]
    else:
        inputs = [DOCUMENTS]

    partial = StageSpec(name=name, type=str(stype or ""), inputs=inputs, params=None, cls=cls, line=line)
    if cls is None:
        return partial, problems
    n = len(inputs)
    if inputs and cls.max_inputs is not None and n > cls.max_inputs:
        key = "inputs" if "inputs" in body else "input"
        problems.append(Problem("E217", f"stage {name!r} ({stype}) takes at most {cls.max_inputs} input(s), got {n}",
                                where=src.where(path + (key,)), line=src.line_of(path + (key,)),
                                fix="merge the inputs first (e.g. a merge stage), or pick one"))
    elif inputs and n < cls.min_inputs:
        problems.append(Problem("E217", f"stage {name!r} ({stype}) needs at least {cls.min_inputs} inputs, got {n}",
                                where=where, line=line, fix="list them under `inputs:`"))

    params_data = {k: v for k, v in body.items() if k not in RESERVED_STAGE_KEYS}
    params = None
    if isinstance(params_data.get("kb"), dict) and "kb" in cls.Params.model_fields:
        # a kb block read from its source: its own keys checked at their lines (as the pipeline's `kb:`), not said
        # as "kb.str: Input should be a valid string" and an unknown key of the stage
        kb_problems, _ = kb_source_problems(params_data["kb"], path + ("kb",), src, f"stage {name!r} kb")
        if kb_problems:
            problems += kb_problems
            params_data = {k: v for k, v in params_data.items() if k != "kb"}
    try:
        params = cls.Params.model_validate(params_data)
    except ValidationError as e:
        for p in _pydantic_problems(e, path, src, cls.Params, "E220", "E221"):
            if p.code == "E220":
                valid = list(RESERVED_STAGE_KEYS) + list(cls.Params.model_fields)
                key = p.message.split("'")[1]
                guess = closest(key, valid)
                hint = f"did you mean {guess!r}? " if guess else ""
                p.message = f"unknown key {key!r} for stage {name!r} ({stype})"
                p.fix = f"{hint}valid keys for {stype}: {', '.join(valid)}"
            problems.append(p)
    except Exception as e:  # a validator of a plugin's Params failed with something else than a ValueError
        problems.append(Problem("E221", f"stage {name!r} ({stype}): checking its parameters failed: "
                                        f"{type(e).__name__}: {e}", where=where, line=line,
                                fix=f"check the stage's parameters; the error comes from the validators of "
                                    f"{cls.Params.__module__}.{cls.Params.__qualname__} (a validator should raise "
                                    "ValueError with a message)"))
    if problems or params is None:
        return partial, problems
    for k, v in params_data.items():  # ${VAR} is expanded in kb blocks only: elsewhere it stays as written
        if k != "kb" and _names_variable(v):
            log.warning("%s: stage %r: %s names an environment variable (${...}), which only a kb block's source, "
                        "options and cache expand: it is used as written", src.where(path + (k,)), name, k)
    desc = body.get("description", "")
    return StageSpec(name=name, type=stype, inputs=inputs, params=params, cls=cls, line=line,
                     description=str(desc) if desc else ""), []


_HUB_ID = None


def missing_kb(value: str, base_dir: Path, found: Path | None = None) -> tuple[str, str]:
    """The message and fix for a pipeline's KB folder that does not exist: where it was looked for, and the build
    command that makes it where the pipeline will look first; when ``found`` (where ``value`` leads) is a file,
    :func:`kb_is_a_file`'s."""
    import os

    if found is not None and found.is_file():
        return kb_is_a_file(value, found)

    want = Path(value).expanduser()
    want = want if want.is_absolute() else base_dir / want
    rel = os.path.relpath(want)
    out = rel if not rel.startswith("../../..") else str(want)
    return (f"KB folder {value!r} does not exist (looked in {base_dir} and the working folder {Path.cwd()})",
            f"build it with `glinker kb build ... --out {out}`, pass --kb DIR (relative to the working folder), or "
            "fix the path in the pipeline (relative to the pipeline file)")


def kb_is_a_file(value: str, path: Path) -> tuple[str, str]:
    """The message and fix for a ``kb:`` that names a file (the entities, not a KB folder built from them);
    ``path`` is the file found (resolved), which the build command names as it is."""
    import shlex

    path = path.expanduser().absolute()
    for folder in (path.parent, path.parent.parent):  # a file of the KB folder, or of one of its generations
        if (folder / "CURRENT").is_file():
            return (f"kb {value!r} is a file of a KB folder ({path}), not the folder",
                    f"give the KB folder: `kb: {folder}`")
    name = path.name.lower()
    for suf in (".gz", ".bz2"):
        name = name.removesuffix(suf) if not name.endswith(f".json{suf}") else name
    opts, block_opts = "", ""
    if name.endswith((".jsonl", ".ndjson")):
        adapter = "jsonl"
    elif name.endswith((".csv", ".tsv")):
        adapter = "csv"
        if name.endswith(".tsv"):
            opts, block_opts = " -o delimiter=tab", ", options: {delimiter: tab}"
    elif name.endswith((".json", ".json.gz", ".json.bz2")):
        adapter = "wikidata"
    elif name.endswith((".db", ".sqlite", ".sqlite3")):
        adapter = "sql"
        opts, block_opts = " --table TABLE", ", options: {table: TABLE}"
    else:
        adapter = "ADAPTER"
    if adapter == "sql":  # escaped as SQLAlchemy reads it back (a folder named dir?x)
        from sqlalchemy.engine import URL

        source = URL.create("sqlite", database=str(path)).render_as_string()
    else:
        source = str(path)
    block = f"kb: {{adapter: {adapter}, source: {json.dumps(source)}{block_opts}}}"  # a JSON string is YAML too
    build = f"glinker kb build -a {adapter} -s {shlex.quote(source)}{opts} --out kb/NAME"
    return (f"kb {value!r} is a file ({path}), not a KB folder: a KB is built from such a file",
            f"read it as the KB's source, `{block}` (built at the first start, kept and synced after), or build a KB "
            f"folder with `{build}` and give `kb: kb/NAME`")


def resource_problems(spec: PipelineSpec, model: str | None = None, kb: Any = None,
                      check_paths: bool = False, *, unused: bool = True, sources: bool = True) -> list[Problem]:
    """Stages that need a KB or a model while neither they nor the pipeline (or ``model`` / ``kb``, given on the
    command line) name one (E250); with ``check_paths``, also model names that cannot load (E251) and the KB
    folders, label files and label banks the file names that do not exist (yet: E252, a warning for `pipeline
    validate`), so that they are found before a run is; E254 (a warning only): a model name read as a hub id whose
    owner part is a local folder (most likely a mistyped path). ``unused=False`` leaves out the pipeline's own model and
    KB when no stage uses them, ``sources=False`` the source files of ``kb:`` blocks (read at warm-up, or not at
    all when a cached KB is kept): what ``load_pipeline`` checks, where each problem is an error."""
    import re

    global _HUB_ID
    if _HUB_ID is None:
        _HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
    h = spec.header
    model = model if model is not None else h.model
    kb = kb if kb is not None else h.kb
    out: list[Problem] = []

    def where(st: StageSpec | None, key: str | None = None) -> tuple[str, int | None]:
        """A stage's place, or the line of the top-level ``key`` (when its value is the file's, not an override)."""
        if st is None and key is not None and getattr(spec.header, key, None) is (model if key == "model" else kb):
            line = spec.header_lines.get(key)
        else:
            line = st.line if st is not None else None
        return (f"{spec.source}:{line}" if line else spec.source), line

    # the stages that use the pipeline's own model and KB (having none of their own): named in its problems
    users: dict[str, list[str]] = {"kb": [], "model": []}
    for name, st in spec.stages.items():
        p = st.params
        fields = type(p).model_fields if p is not None else {}
        if "kb" in fields and getattr(p, "kb", None) is None:
            users["kb"].append(name)
        weights = getattr(p, "weights", None)
        if "model" in fields and getattr(st.cls, "model_is_biencoder", True) and getattr(p, "model", None) is None \
                and not (isinstance(weights, dict) and st.type == "rescore" and not weights.get("biencoder", 0)):
            users["model"].append(name)

    def owner(st: StageSpec | None, what: str) -> str:
        if st is not None:
            return f"stage {st.name!r}"
        used = users.get(what) or []
        return "the pipeline" + (f" (the {what} of stage {', '.join(map(repr, used[:3]))}"
                                 f"{', ...' if len(used) > 3 else ''})" if used else "")

    def check(what: str, value: Any, st: StageSpec | None) -> None:
        if not isinstance(value, str) or not value or "${" in value:
            return
        if st is None and not unused and not users.get(what):
            return  # the pipeline's own, which no stage uses
        w, line = where(st, what)
        found = found_path(value, spec.base_dir)
        if what == "model":
            from glinker.model import shipped

            if value.lower() == "none" or shipped.is_shipped(value):
                return
            if found.is_dir():
                from glinker.errors import ModelError
                from glinker.model.checkpoint import check_checkpoint_folder

                try:  # what loading it would say: a train output folder, a folder without gliner_config.json
                    check_checkpoint_folder(found)
                    return
                except ModelError as e:
                    msg, fix = f"model {value!r}: {e.message} ({found})", e.fix
            elif not value.startswith((".", "/", "~")) and _HUB_ID.fullmatch(value):
                head = value.split("/", 1)[0]
                local = next((d / head for d in (spec.base_dir, Path.cwd()) if (d / head).is_dir()), None)
                if local is None:
                    return  # a hub id: fetched (or read from the hub cache) when the model loads
                # owner/name where the folder `owner` is here: a local path, most likely, that does not exist
                w, line = where(st, what)
                out.append(Problem("E254", f"{owner(st, what)}: model {value!r} is no folder, so it is read as a hub "
                                           f"id (owner/name), but {local} is a folder here", where=w, line=line,
                                   fix=f"fix the path (relative to the pipeline file; ./{value} says it is one), or "
                                       "ignore this if it is a hub id"))
                return
            else:
                import difflib

                close = difflib.get_close_matches(value, shipped.shipped_names(), n=1, cutoff=0.75)
                msg, fix = (f"model {value!r} is not a folder, a shipped model ({', '.join(shipped.shipped_names()) or 'none'}) "
                            "or a hub id (owner/name)" + (f": did you mean {close[0]!r}?" if close else ""),
                            "fix the name or the path (relative to the pipeline file)")
        elif what == "kb":
            if found.is_dir():
                return
            msg, fix = missing_kb(value, spec.base_dir, found)
        else:
            if found.exists():
                return
            msg, fix = (f"{what} {value!r} does not exist (looked in {spec.base_dir} and the working folder)",
                        "fix the path (relative to the pipeline file)")
        # a model name that is none of the forms can never load (E251), nor a kb: naming a file become a KB folder
        # (E253); a missing file may be built later (E252: a warning for `pipeline validate`, an error when the
        # pipeline runs)
        code = "E251" if what == "model" else "E253" if what == "kb" and found.is_file() else "E252"
        out.append(Problem(code, f"{owner(st, what)}: {msg}", where=w, line=line, fix=fix))

    def check_source(ref: Any, st: StageSpec | None) -> None:
        """A kb: block's source file (or relative sqlite:/// file) found neither beside the pipeline file nor in the
        working folder: a warning, as a missing KB folder (it may be made before the run)."""
        d = ref.model_dump() if hasattr(ref, "model_dump") else ref
        src = d.get("source") if isinstance(d, dict) else None
        if not isinstance(src, str) or not src or "${" in src:
            return
        if d.get("adapter") not in ("jsonl", "csv", "wikidata", "sql"):
            return  # a third-party adapter's source need not be a file (a table name, an index, a URL of its own)
        from glinker.kb.adapters import source_file

        path = source_file(src, spec.base_dir)  # beside the pipeline file (absolute then), else as named
        if path is None or Path(path).expanduser().exists():
            return  # not a file (a server's URL, an in-memory database), or there
        w, line = where(st)
        name = f"stage {st.name!r}" if st is not None else "the pipeline"
        out.append(Problem("E252", f"{name}: kb source file {path!r} does not exist (looked in {spec.base_dir} and the "
                                   f"working folder {Path.cwd()})", where=w, line=line,
                           fix="fix the kb: block's source: (a relative path is read from the pipeline file's folder "
                               "when it is there, else from the working folder)"))

    if check_paths:
        check("model", h.model, None)
        check("kb", h.kb, None)
        if sources and h.kb is not None and not isinstance(h.kb, str) and (unused or users["kb"]):
            check_source(h.kb, None)
    for name, st in spec.stages.items():
        p = st.params
        if p is None:
            continue
        fields = type(p).model_fields
        weights = getattr(p, "weights", None)
        bi_model = "model" in fields and getattr(st.cls, "model_is_biencoder", True)
        uses_model = bi_model and not (
            isinstance(weights, dict) and st.type == "rescore" and not weights.get("biencoder", 0))
        for what, needed, default in (("kb", "kb" in fields, kb), ("model", uses_model, model)):
            if needed and getattr(p, what, None) is None and not default:
                w, line = where(st)
                out.append(Problem("E250", f"stage {name!r} ({st.type}) needs a {what} and none is given", where=w,
                                   line=line, fix=f"set `{what}:` at the top of the file (or on the stage), or pass "
                                                  f"--{what} to glinker link ({what}= to load_pipeline)"))
        if check_paths:
            for what in ("kb", "model", "labels_file", "label_bank"):
                if what in fields and (what != "model" or bi_model):
                    check(what, getattr(p, what, None), st)
            if st.cls is not None:
                for value in st.cls.reads(p):
                    check("file", value, st)
            own = getattr(p, "kb", None) if "kb" in fields else None
            if sources and own is not None and not isinstance(own, str):
                check_source(own, st)
            out.extend(_stale_vectors(spec, st, getattr(p, "model", None) or model,
                                      own if own is not None else kb, where))
    return out


def found_path(value: str, base_dir: Path) -> Path:
    """Where a path a pipeline file names is read, as the run's ``resolve_path`` reads it: beside the pipeline file
    (``base_dir``) when it is there, else from the working folder when it is there; one found in neither is
    beside the pipeline file (where the warning about it says to make it)."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    beside = base_dir / p
    return p if not beside.exists() and p.exists() else beside


def _vector_uses(st: StageSpec) -> list[str]:
    """What of a stage compares vectors made by its model: ``kb`` (dense candidates, re-scoring with the bi-encoder
    feature; coherence compares the KB's vectors with each other only) and ``label_bank``."""
    p, uses = st.params, []
    weights = getattr(p, "weights", None)
    if st.type == "dense_candidates" or (st.type == "rescore" and isinstance(weights, dict)
                                         and weights.get("biencoder", 0) > 0):
        uses.append("kb")
    if getattr(p, "label_bank", None):
        uses.append("label_bank")
    return uses


def _stale_vectors(spec: PipelineSpec, st: StageSpec, model: Any, kb: Any,
                   where: Callable[..., tuple[str, int | None]]) -> list[Problem]:
    """E255 for a KB or label bank of ``st`` whose vectors an earlier release of the shipped model ``model`` made
    (its manifest records the weights' fingerprint, read without loading the model): the stage refuses it at
    warm-up, and ``glinker pipeline validate`` said OK after an upgrade."""
    from glinker.model.shipped import shipped_fingerprint

    uses = _vector_uses(st)
    now = shipped_fingerprint(model) if uses and isinstance(model, str) else None
    if now is None:
        return []
    out = []
    for what in uses:
        value = kb if what == "kb" else getattr(st.params, "label_bank", None)
        if not isinstance(value, str) or not value or "${" in value:
            continue
        then, built_with = _recorded_fingerprint(found_path(value, spec.base_dir), what)
        if then is None or then == now or built_with not in (None, model):
            continue  # not there, alias-only, as the model is now, or another model's (said when it loads)
        w, line = where(st, what)
        rebuild = (f"glinker kb build ... --model {model} --out {value}" if what == "kb" else
                   f"glinker labels build LABELS -m {model} -o {value}")
        # (a bank records no model name: another model's, or an earlier release's of this one)
        whose = f"an earlier release of {model}" if what == "kb" else f"another model or an earlier release of {model}"
        out.append(Problem("E255", f"stage {st.name!r}: {what.replace('_', ' ')} {value!r} holds vectors of {whose} "
                                   f"(fingerprint {then[:12]}; {model} is now {now[:12]}): the stage refuses it when "
                                   "it loads", where=w, line=line,
                           fix=f"rebuild it with the model as it is now: {rebuild}"))
    return out


def _recorded_fingerprint(folder: Path, what: str) -> tuple[str | None, str | None]:
    """(model fingerprint, model name) a KB's manifest or a label bank's label_bank.json records; (None, None) when
    unreadable or none (an alias-only KB)."""
    try:
        if what == "kb":
            from glinker.kb.kb import MANIFEST, current_generation

            meta = json.loads((current_generation(folder) / MANIFEST).read_text(encoding="utf-8"))
            return meta.get("model_fingerprint"), meta.get("model")
        meta = json.loads((folder / "label_bank.json").read_text(encoding="utf-8"))
        return meta.get("model_fingerprint") or None, None
    except (GlinkerError, OSError, ValueError, AttributeError):
        return None, None


def load_spec(path: str | Path, *, reg: StageRegistry | None = None, check_resources: bool = False) -> PipelineSpec:
    """Read and validate a pipeline file; relative paths in it resolve against its folder."""
    loaded = load_yaml(path=path)
    return parse_spec(loaded, reg=reg, base_dir=Path(path).resolve().parent, check_resources=check_resources)


def loads_spec(text: str, *, reg: StageRegistry | None = None, source: str = "<string>",
               base_dir: Path | None = None) -> PipelineSpec:
    """Validate a pipeline given as a YAML string."""
    loaded = load_yaml(text, source=source)
    return parse_spec(loaded, reg=reg, base_dir=base_dir)


@dataclass(frozen=True)
class FileUse:
    """A file or folder a pipeline writes or reads, as `pipeline validate` and `pipeline show` list it."""

    mode: Literal["writes", "reads"]
    path: str
    """Absolute where it can be told before the run; as written otherwise (an unset ${VAR}, a database URL)."""
    by: str
    """The part of the pipeline file that names it: ``stage 'out' (write_links, jsonl)``, ``kb``..."""
    note: str = ""
    """What the run will do with what is there now (a file a writer will refuse, append to or replace)."""
    refused: str | None = None
    """Why a writer will refuse the file as it is now (it exists and that writer did not make it), or None."""


def pipeline_files(spec: PipelineSpec) -> list[FileUse]:
    """Every file and folder ``spec`` names to write (its writer stages' files, the cache folders its KBs read from
    a source are built in) and to read (KB folders and sources, local model folders, label files and banks), paths
    resolved as the run resolves them. A pipeline file chooses these paths: a user checks them here before running
    a file from someone else (docs/getting-started.md). Reads nothing but the writers' existing files' heads."""
    import os

    from glinker.errors import GlinkerError
    from glinker.stages.output import WriteLinks
    from glinker.io import cache_root
    from glinker.stages.resources import KBSource, expand_env, shown_kb

    def beside(value: str) -> str:
        """As the run's ``resolve_path``: beside the pipeline file when it is there, else from the working folder
        when it is there; a path found in neither is listed beside the pipeline file, where the warning about it
        says to make it (``missing_kb``)."""
        return os.path.abspath(found_path(value, spec.base_dir))

    writes: list[FileUse] = []
    reads: list[FileUse] = []

    def kb_uses(ref: Any, by: str) -> None:
        if ref is None:
            return
        if isinstance(ref, str):
            reads.append(FileUse("reads", ref if "${" in ref else beside(ref), f"{by} (KB folder)"))
            return
        try:
            src = ref if isinstance(ref, KBSource) else KBSource.model_validate(
                ref.model_dump() if hasattr(ref, "model_dump") else ref)
        except ValidationError:  # a plugin's own kind of kb block: not one glinker reads
            return
        try:
            shown = shown_kb(src, spec.base_dir)
            source = str(shown.get("source"))
        except GlinkerError:  # a ${VAR} unset now: the run's to read
            from glinker.io import redact

            source = redact(src.source)
        reads.append(FileUse("reads", source, f"{by} (its {src.adapter} source)"))
        if src.cache:
            try:
                cache = os.path.abspath(placed_path(expand_env(src.cache), spec.base_dir))
            except GlinkerError:
                cache = src.cache
            writes.append(FileUse("writes", cache, f"{by} (the KB built from its source)", "a folder"))
        else:
            writes.append(FileUse("writes", str(cache_root() / "kb") + os.sep + "<one folder per source>",
                                  f"{by} (the KB built from its source)", "a folder under $GLINKER_CACHE"))

    h = spec.header
    kb_uses(h.kb, "kb")
    if h.model and not h.model.startswith("${") and (Path(h.model).expanduser().is_absolute() or
                                                     (spec.base_dir / h.model).is_dir() or Path(h.model).is_dir()):
        reads.append(FileUse("reads", beside(h.model), "model (folder)"))
    for name, st in spec.stages.items():
        p, cls = st.params, st.cls
        if p is None or cls is None:
            continue
        by = f"stage {name!r} ({st.type})"
        if issubclass(cls, WriteLinks):
            path, fmt = cls.target(p)
            why = cls.refused(p)
            if why is not None:
                note = f"exists and {why}: the run will refuse to write it"
            elif path.is_file() and path.stat().st_size:
                note = ("exists: appended to" if fmt == "jsonl" and getattr(p, "append", False) else
                        "exists: replaced (continued when `glinker link` resumes)")
            else:
                note = "new" if not path.exists() else ""
            writes.append(FileUse("writes", os.path.abspath(path), f"stage {name!r} ({st.type}, {fmt})", note,
                                  refused=why))
        else:
            for absolute in cls.written_files(p):
                writes.append(FileUse("writes", absolute, by))
        fields = type(p).model_fields
        if "kb" in fields:
            kb_uses(getattr(p, "kb", None), f"stage {name!r} kb")
        for what in ("labels_file", "label_bank", "patterns", "model"):  # what the built-in stages read
            value = getattr(p, what, None) if what in fields else None
            if not isinstance(value, str) or not value or "${" in value:
                continue
            if what == "model" and not (Path(value).expanduser().is_absolute() or (spec.base_dir / value).exists()
                                        or Path(value).exists()):
                continue  # a shipped model's name or a hub id: not a path of the file's choosing
            reads.append(FileUse("reads", beside(value), f"stage {name!r} {what}"))
        for value in cls.reads(p):  # what a stage of its own says it reads
            reads.append(FileUse("reads", value if "${" in value else beside(value), by))
    return writes + reads
