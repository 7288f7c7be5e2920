"""``glinker kb``: build, inspect, update and search knowledge-base directories."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, Iterator

import typer

from glinker.cli import dtype_option

from glinker.errors import ConfigError, GlinkerError, SourceCut

log = logging.getLogger(__name__)

kb_app = typer.Typer(help="Build, inspect, update and search knowledge bases.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Attach the ``kb`` command group to the root CLI."""
    app.add_typer(kb_app, name="kb")


def _merged_options(opt: list[str], **flags: Any) -> dict[str, Any]:
    """The ``-o key=value`` options with the command's own flags (``--table`` ...) added; one given both ways
    with different values is an error, not a silent choice."""
    options = _parse_options(opt)
    for key, val in flags.items():
        if val is not None:
            if key in options and options[key] != val:
                raise typer.BadParameter(f"given twice, as --{key} {val!r} and -o {key}={options[key]!r}",
                                         param_hint=f"--{key}")
            options[key] = val
    return options


def _parse_options(opts: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in opts:
        if "=" not in item:
            raise ConfigError(f"adapter option {item!r} is not key=value", where="--opt",
                              fix="e.g. -o table=entities -o languages=en,de -o min_sitelinks=5 (-o is --opt here; "
                                  "a KB folder is given with --out)")
        key, val = item.split("=", 1)
        key = key.strip()
        # only objects/lists are JSON; scalars stay strings and the adapter's options model coerces them
        # ("5" -> 5 for an int option, while table=2024 stays the string "2024")
        if val.lstrip()[:1] in ("{", "["):
            try:
                value: Any = json.loads(val)
            except json.JSONDecodeError as e:
                raise ConfigError(f"option {key!r} is not valid JSON: {e}", where=f"--opt {key}",
                                  fix='quote it for the shell, e.g. -o \'columns={"id": "sku"}\'') from None
        else:
            value = val
        if key in out and out[key] != value:
            # the last one won silently: -o p31_include=Q5 -o p31_include=Q515 built a KB without Q5's items
            raise ConfigError(f"option {key!r} given twice, as {out[key]!r} and {value!r}", where=f"--opt {key}",
                              fix=f"give it once; a list option takes several values in one: -o {key}=A,B (or "
                                  f"-o '{key}=[\"A\", \"B\"]')")
        out[key] = value
    return out


def _encoder(model: str | None, fallback: str | None, dtype: str | None = None) -> tuple[Any, str | None]:
    """The encoder named by ``--model``, else by ``fallback`` (the model a KB's manifest records), else the shipped
    default; and its name. A relative model path a manifest records (builds before absolute paths were recorded)
    that is no folder here is said as such."""
    from glinker.kb.encoder import default_model, load_encoder

    name = model or fallback or default_model()
    if name is None:
        raise ConfigError("no model given and no default model is shipped yet", where="--model",
                          fix="pass --model PATH_OR_NAME, or --model none for an alias-only KB")
    if name.lower() == "none":
        return None, None
    try:
        return load_encoder(name, dtype=dtype), name
    except GlinkerError as e:
        if model or name != fallback or _no_relative_path(name):
            raise
        e.message += (f"; the KB records its model as {name!r}, which is no folder here ({Path.cwd()}): a model "
                      "folder given by a relative path was recorded as given, relative to the folder its build ran "
                      "in (before glinker recorded local model folders by their absolute path)")
        e.fix = (f"pass the model's folder, e.g. --model /path/to/{name} (or run the command from the folder the build "
                 "ran in)")
        e.args = (e.render(),)
        raise


def _no_relative_path(name: str) -> bool:
    """Whether a model name cannot be a relative folder path: absolute, a shipped name, or a folder found here."""
    from glinker.model.shipped import is_shipped

    p = Path(name).expanduser()
    return p.is_absolute() or p.is_dir() or is_shipped(name)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


@kb_app.command("build")
def build(
    adapter: str = typer.Option(..., "--adapter", "-a", help="wikidata, sql, jsonl, csv, or an installed third-party adapter."),
    source: str = typer.Option(..., "--source", "-s", help="Dump/file path, or a SQLAlchemy URL for sql."),
    out: Path | None = typer.Option(None, "--out", help="Required: the KB directory to create or replace "
                                    "(atomically; a local --model folder is recorded by its absolute path)."),
    opt: list[str] = typer.Option([], "--opt", "-o", help="Adapter option key=value (repeatable; JSON values allowed)."),
    languages: str | None = typer.Option(None, help="wikidata: languages in order of preference, e.g. en,de."),
    table: str | None = typer.Option(None, help="sql: table to read."),
    query: str | None = typer.Option(None, help="sql: SELECT to read."),
    model: str | None = typer.Option(None, help="Bi-encoder (name, dir or hub id); 'none' for an alias-only KB."),
    template: str = typer.Option("{label}: {description}", help="Entity text template for the encoder."),
    factory: str = typer.Option("auto", help="faiss factory string, or 'auto' (by size)."),
    nprobe: int | None = typer.Option(None, help="IVF lists searched per query (default: by size)."),
    batch_size: int = typer.Option(64, help="Encoder batch size."),
    chunk_size: int = typer.Option(16384, help="Entities per checkpoint (store commit / vector file)."),
    no_resume: bool = typer.Option(False, "--no-resume", help="Discard an interrupted build instead of resuming it."),
    queue: str | None = typer.Option(None, "--queue", help="Redis URL: embed the entities on `glinker worker --model M --queue URL` processes (any machines) instead of here."),
    job: str | None = typer.Option(None, "--job", help="With --queue: the job name the workers serve (default: 'default')."),
    dtype: str | None = dtype_option(),
) -> None:
    """Build a KB directory from a source (resumable; the old KB stays intact until the new one is complete)."""
    from glinker.kb.adapters import load_adapter
    from glinker.kb.build import build_kb, estimate_resources

    if out is None:  # -o is an adapter option here (it is the output in link, ner and labels build)
        path_like = [o for o in opt if "=" not in o]
        raise ConfigError("no KB folder to build: --out is required", where="--out",
                          fix=(f"-o is --opt in `glinker kb build` (an adapter option key=value): write --out "
                               f"{path_like[0]}" if path_like else "add --out DIR, e.g. --out kb/mine"))
    options = _merged_options(opt, languages=languages, table=table, query=query)
    ad = load_adapter(adapter, source, **options)
    with _closing(ad):  # the adapter's connections and files end with the command
        enc, name = _encoder(model, None, dtype)
        if enc is not None:
            from glinker.kb.index import VectorIndex

            VectorIndex.check_factory(factory, enc.dim)
        try:
            n = ad.estimate_count()
        except Exception:  # the estimate is advisory
            n = None
        if n is not None:
            est = estimate_resources(n, enc.dim if enc is not None else None, factory)
            typer.echo(f"estimate: ~{n:,} entities; KB on disk ~{_human(est['kb_disk'])}, temporary "
                       f"~{_human(est['temp_disk'])}, peak memory ~{_human(est['peak_ram'])}"
                       + (f", index {est['factory']}" if "factory" in est else ""), err=True)
        if queue and enc is None:
            raise typer.BadParameter("an alias-only KB (--model none) has nothing to embed", param_hint="--queue")
        from glinker.cluster import queued_encoder

        from glinker.cli.stopping import stoppable

        def say(how: str) -> str:  # `kill` or a scheduler stopping the build: said and kept as Ctrl-C is (exit 143)
            keep = f"{out} keeps its previous KB, if any"
            if getattr(ad, "resumable", True):
                return (f"{how}: what was built is kept; run the same command again to resume ({keep} until the build "
                        "finishes)")
            # a SQL table may change before the next run: its partial copy is removed, never resumed
            return (f"{how}: a build with the {getattr(ad, 'name', None) or adapter} adapter cannot resume (its source "
                    f"may change before the next run), so what it had read was removed; run the same command again to "
                    f"build from the start ({keep})")

        with stoppable(say), queued_encoder(enc, queue, job, str(name)) as remote:
            gen = build_kb(ad, out, remote or enc, model_name=name, template=template, factory=factory,
                           nprobe=nprobe, batch_size=batch_size, chunk_size=chunk_size, resume=not no_resume,
                           progress=sys.stderr.isatty())  # no bar drawn into a log file or a pipe
        from glinker.kb.manifest import Manifest

        m = Manifest.load(gen / "manifest.json")
        rep = m.source.get("report", {})
        typer.echo(f"built {out}: {m.counts.get('entities', 0):,} entities, {m.counts.get('aliases', 0):,} aliases "
                   f"({m.counts.get('alias_counts', 0):,} with counts), {m.counts.get('vectors', 0):,} vectors ({m.factory or 'no index'}); "
                   f"{rep.get('bad', 0)} bad records, {rep.get('skipped', 0)} filtered")


def _folds_line(store: Any) -> str:
    """What the store's accent-free alias keys cover (its fold version)."""
    from glinker.kb.store import APOSTROPHES, FOLD_VERSION

    if not store.has_folds:
        return ("no (built before accent folding: an update such as `glinker kb link-stats` or `kb add` adds "
                "them)")
    if store.fold_version == 1:
        return (f"yes, version 1 of {FOLD_VERSION}: Latin accents only (an update such as `glinker kb link-stats` "
                "or `kb add` refolds Greek accents, Arabic vowel marks and apostrophe look-alikes too)")
    if store.fold_version == 2:
        return (f"yes, version 2 of {FOLD_VERSION}: Latin/Greek accents and Arabic vowel marks, not apostrophe "
                "look-alikes (O’Brien does not match O'Brien; an update such as `glinker kb link-stats` or `kb add` "
                "refolds them)")
    if store.fold_version == 3:
        return (f"yes, version 3 of {FOLD_VERSION}: Latin/Greek accents, Arabic vowel marks and "
                "apostrophe look-alikes, not the Hebrew geresh and gershayim (ארה״ב does not match ארה\"ב; an update "
                "such as `glinker kb link-stats` or `kb add` refolds them)")
    if store.fold_version < FOLD_VERSION:
        return (f"yes, version {store.fold_version} of {FOLD_VERSION}: Latin/Greek accents, Arabic vowel marks, "
                "apostrophe look-alikes and Hebrew marks, not characters that do not show (Ber\u00adlin with a soft "
                "hyphen does not match Berlin; an update such as `glinker kb link-stats` or `kb add` refolds them)")
    return (f"yes, version {store.fold_version}: names also match without Latin/Greek accents or Arabic vowel marks, "
            f"with any of ' ＇ {' '.join(APOSTROPHES)} for an apostrophe (O’Brien, Oʼbrien, O`Brien match "
            "O'Brien), with ' and \" for the Hebrew geresh and gershayim (ארה\"ב matches ארה״ב), and without "
            "characters that do not show (soft hyphens, zero-width spaces and joiners, direction marks)")


@kb_app.command("info")
def info(path: Path = typer.Argument(..., help="KB directory."),
         as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON (with `pending` and the "
                                      "store's entity count while an update is unfinished).")) -> None:
    """Show a KB's manifest: model, template, index, counts, source and dates."""
    from glinker.kb import KB

    with KB.open(path) as kb:
        m = kb.manifest
        pend = kb.store.pending()
        # an update stopped before it finished (or one running in place): the manifest's counts are those of its
        # last finished batch, the store may hold more, and some of its entities have no vector yet
        counts = dict(m.counts, entities=kb.store.count()) if pend else m.counts
        adds = sum(op == "add" for _, op in pend)
        if as_json:
            out = json.loads(m.model_dump_json())
            if pend:
                out["counts"] = counts
                out["pending"] = {"index_changes": len(pend), "to_embed": adds, "to_remove": len(pend) - adds}
            typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
            return
        size = sum(f.stat().st_size for f in kb.path.iterdir() if f.is_file())
        entities = f"{counts.get('entities', 0):,}"
        if pend and counts.get("entities") != m.counts.get("entities"):
            entities += f" (in the store; the manifest says {m.counts.get('entities', 0):,}: an update is unfinished)"
        pending = ("0" if not pend else
                   f"{len(pend):,} index changes not applied ({adds:,} entities without their vector yet, "
                   f"{len(pend) - adds:,} removals): an update was interrupted, or is running; run it again (any "
                   "`glinker kb add` or `kb remove` with the KB's model finishes them)")
        rows = [("path", str(kb.path)), ("entities", entities), ("aliases", f"{counts.get('aliases', 0):,}"),
                ("counted", f"{counts.get('alias_counts', 0):,} (alias, entity) pairs with a count (p(e|m) prior)"),
                ("linkstats", f"{counts.get('link_stats', 0):,} forms with link statistics (min_link_prob)"),
                ("vectors", f"{counts.get('vectors', 0):,}"), ("model", f"{m.model} ({(m.model_fingerprint or 'none')[:12]})"), ("dim", str(m.dim)),
                ("template", m.template), ("index", f"{m.factory} nprobe={m.nprobe} metric={m.metric}"
                          + (f" (norm bound {m.mips_norm:.3f})" if m.mips_norm else "")),
                ("source", f"{m.source.get('adapter')} {m.source.get('source')}"),
                ("created", m.created), ("updated", m.updated), ("disk", _human(size)),
                ("pending", pending),
                ("folds", _folds_line(kb.store))]
        for k, v in rows:
            typer.echo(f"{k:>9}  {v}")


@contextlib.contextmanager
def _closing(ad: Any) -> Iterator[Any]:
    """The adapter, its optional ``close()`` called when the command ends (a database's pooled connections)."""
    try:
        yield ad
    finally:
        close = getattr(ad, "close", None)
        if callable(close):
            close()


@contextlib.contextmanager
def _source_bar(ad: Any) -> Iterator[Iterator[Any]]:
    """The adapter's entities, counted on a progress bar when stderr is a terminal (read, embedded and stored in
    batches as they pass)."""
    from glinker.kb.build import _bar

    on = sys.stderr.isatty()
    try:
        est = ad.estimate_count() if on else None
    except Exception:  # noqa: BLE001 - an estimate is a nicety
        est = None
    from glinker.kb.adapters import read_entities

    with _bar(on, total=est, desc="entities", unit="ent", unit_scale=True, file=sys.stderr) as bar:
        def counted() -> Iterator[Any]:
            for e in read_entities(ad):  # the adapter's own errors said with its name
                yield e
                bar.update()
        yield counted()


def _guess_adapter(source: str) -> str:
    """The adapter a source's name suggests (:func:`_suggested_adapter`), else ``jsonl``."""
    return _suggested_adapter(source) or "jsonl"


def _suggested_adapter(source: str) -> str | None:
    """``sql`` for a URL, ``jsonl``/``csv`` by a file's suffix (``.jsonl``, ``.csv``, ``.tsv``, compressed or not);
    None when the name says nothing."""
    name = source.lower().removesuffix(".gz").removesuffix(".bz2")
    if "://" in source:
        return "sql"
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    return None


def _same_option(given: Any, built: Any) -> bool:
    """Whether an option given as text (``-o languages=en,de``) is the value the build recorded (``['en', 'de']``)."""
    if isinstance(given, str) and isinstance(built, (list, tuple)):
        return [x.strip() for x in given.split(",") if x.strip()] == [str(x) for x in built]
    if isinstance(given, str) and not isinstance(built, str):
        return given.strip().lower() == str(built).lower()
    return False


def _checked_encoder(kb: Any, model: str | None, dtype: str | None = None) -> Any:
    """The encoder of ``--model`` (default: the KB's own), checked against the KB's vectors: a model whose weights
    changed under the same name (an upgrade) is said as such. Without ``--dtype`` it runs in the precision the KB
    was embedded in (a KB built with ``--dtype bfloat16`` gets bfloat16 vectors for its new entities too)."""
    built = kb.manifest.vectors_dtype
    if dtype is None and built not in (None, "float32"):
        log.info("running the model in %s, the precision %s was embedded in (--dtype sets another)", built, kb.root)
        dtype = built
    enc, name = _encoder(model, kb.manifest.model or "none", dtype)
    if enc is not None and kb.manifest.has_vectors:
        kb.check_model(enc.fingerprint, name)
    return enc


@contextlib.contextmanager
def _interrupted(command: str, atomic: bool) -> Iterator[None]:
    """Ctrl-C on ``kb add``/``kb remove`` said as what it kept and what to run, not as a traceback (exit 130)."""
    try:
        yield
    except KeyboardInterrupt:
        if atomic:
            typer.echo(f"interrupted: nothing was changed (an --atomic {command} keeps nothing until it is complete); "
                       "run the same command again", err=True)
        elif command == "add":
            typer.echo("interrupted: the KB keeps the batches `kb add` stored before (entities of the batch it was "
                       "embedding have no vector until the next update, which finishes them first); run the same "
                       "command again to finish (records stored already are compared, not written again)", err=True)
        else:
            typer.echo("interrupted: entities removed from the store may keep their vector until the next update "
                       "finishes the removal; run the same command again to finish (ids removed already are said "
                       "as not found)", err=True)
        raise typer.Exit(130) from None


@kb_app.command("add")
def add(
    path: Path = typer.Argument(..., help="KB directory."),
    adapter: str | None = typer.Option(None, "--adapter", "-a", help="Default: the adapter the KB was built with."),
    source: str = typer.Option(..., "--source", "-s", help="Entities to add or update (by id)."),
    opt: list[str] = typer.Option([], "--opt", "-o", help="Adapter option key=value."),
    table: str | None = typer.Option(None, help="sql: table to read."),
    query: str | None = typer.Option(None, help="sql: SELECT to read."),
    model: str | None = typer.Option(None, help="Defaults to the model recorded in the KB manifest."),
    prune: bool = typer.Option(False, "--prune", help="Also remove the KB's entities the source no longer has "
                               "(the source is the whole KB, e.g. its SQL table read again)."),
    atomic: bool = typer.Option(False, "--atomic", help="Write the update into a copy of the KB and switch to it "
                                "when complete: processes reading the KB meanwhile never see it half-done (an "
                                "interrupted run keeps nothing; default: in place, batch by batch)."),
    dtype: str | None = dtype_option(),
) -> None:
    """Add new entities and update existing ones (by id) without a rebuild; with --prune, sync with the source."""
    from glinker.kb import KB
    from glinker.kb.adapters import BUILTIN_ADAPTERS, load_adapter

    options = _merged_options(opt, table=table, query=query)
    with KB.open(path) as k:  # how it was built (closed before the update opens it)
        built = k.manifest.source
    built_adapter = built.get("adapter") if isinstance(built.get("adapter"), str) else None
    named = adapter
    if adapter:
        log.info("kb add: reading %s with the %s adapter (-a)", source, adapter)
    elif built_adapter and built_adapter in BUILTIN_ADAPTERS and _suggested_adapter(source) not in (None,
                                                                                              built_adapter):
        # glinker's own formats into a KB of another built-in kind (records.jsonl into a Wikidata KB; a Wikidata
        # dump is .json, .json.gz, .json.bz2): read as the source's name says, as the docs show
        adapter = str(_suggested_adapter(source))
        log.info("kb add: reading %s with the %s adapter, as its name says (%s was built with %s; -a names "
                 "another)", source, adapter, path, built_adapter)
    elif built_adapter:  # a third-party adapter (a URL of its own, any name) reads what it built
        adapter = built_adapter
        log.info("kb add: reading %s with the %s adapter, the one %s was built with (-a names another)", source,
                 adapter, path)
    else:
        adapter = _guess_adapter(source)
        log.warning("kb add: %s records no adapter; reading %s with the %s adapter, as its name suggests (-a names "
                    "another)", path, source, adapter)
    if built_adapter == adapter and isinstance(built.get("options"), dict):
        # the build's table, columns, mapping, alias table...: `kb add` replaces whole records with what it reads, so
        # an option not given again is the build's (a field no longer mapped would be emptied)
        from glinker.kb.adapters import MASK, get_adapter_class, secret_options

        cls = get_adapter_class(adapter)
        # a secret (API key, password) is never taken from the manifest, which keeps it masked: given again, or asked
        secret = secret_options(cls, built["options"]) | {k for k, v in built["options"].items() if v == MASK}
        base = {k: v for k, v in built["options"].items() if v is not None and k not in secret}
        optional = set(getattr(cls, "optional_secrets", ()) or ())  # secrets the adapter can read without
        missing = sorted(k for k in secret if k not in options and k not in optional
                         and built["options"].get(k) not in (None, "", [], {}))
        if missing:
            raise ConfigError(f"{path} was built with the secret option{'s' if len(missing) > 1 else ''} "
                              f"{', '.join(map(repr, missing))} of the {adapter} adapter, which kb add never takes from "
                              "the KB's manifest (it records secrets as ***)", where=f"--opt {missing[0]}",
                              fix="give it again: " + " ".join(f"-o {k}=..." for k in missing)
                                  + f" (e.g. -o {missing[0]}=\"$MY_{missing[0].upper()}\")")
        for one, other in (("table", "query"), ("query", "table")):
            if one in options:
                base.pop(other, None)
        reading = set(getattr(cls, "reading_options", ()))  # how it reads, not what
        differ = sorted(k for k in options if k in base and k not in reading and options[k] != base[k]
                        and not _same_option(options[k], base[k]))
        if differ:
            log.warning("kb add: %s %s from the build's (%s): records are replaced with what these options read",
                        ", ".join(differ), "differs" if len(differ) == 1 else "differ",
                        ", ".join(f"{k}={base[k]!r}" for k in differ))
        options = {**base, **options}
    guess = _suggested_adapter(source)
    # read with the build's adapter by default: a source whose name says it is of another kind gets the hint
    hint = (f"kb add reads with the adapter {path} was built with ({adapter}) unless -a names another: for this "
            f"source, -a {guess}") if not named and built_adapter == adapter and guess not in (None, adapter) else ""
    try:
        ad = load_adapter(adapter, source, **options)
        with _closing(ad), _interrupted("add", atomic), \
                KB.update(path) if atomic else KB.open(path, writable=True) as kb:
            enc = _checked_encoder(kb, model, dtype) if kb.manifest.has_vectors else None
            with _source_bar(ad) as ents:
                if prune:  # the whole source read against the KB before anything is written, as a pipeline's sync
                    # does: a source lost mid-read (a dropped database connection) leaves the KB as it was; its
                    # new and changed records wait in a file in the KB folder, not in memory
                    changed, seen = kb.store.changed(ents, kb.template, spool=Path(kb.root))
                else:
                    c = kb.upsert(ents, enc)
            if prune:
                with contextlib.closing(changed):  # type: ignore[type-var]
                    if enc is not None and len(changed) >= 1000:  # the bar is closed: say what the model does next
                        log.warning("kb add: embedding up to %s new or changed texts", f"{len(changed):,}")
                    c = kb.sync(changed, enc, source=ad, seen=seen)
            typer.echo(f"added {c['added']}, updated {c['updated']}"
                       + (" (texts changed: re-embedded), " if kb.manifest.has_vectors else " (texts changed), ")
                       + f"{c['unchanged_text']} with the same text, {c['same']} unchanged"
                       + (f", removed {c['removed']}" if prune else "")
                       + f"; {len(kb):,} entities")
    except GlinkerError as e:
        if isinstance(e, SourceCut):
            # the adapter's fix is a build's (what was read is kept, the build resumes): kb add has no build to
            # resume; records go in by id, so the same command on the whole source is the way on
            e.fix = ("download or copy the source again, then run the same kb add: records are added or updated by "
                     "id, so what this run wrote is written again unchanged" + (
                         "" if not (prune or atomic) else f" (with {'--prune' if prune else '--atomic'} this run "
                                                          "wrote nothing)")
                     + (f"; or pass -o {e.keep_option}=true to add what was read" if e.keep_option else ""))
        if hint:
            e.fix = (e.fix + "; " if e.fix else "") + hint
        e.args = (e.render(),)
        raise
    if not (c["added"] + c["updated"] + c["unchanged_text"] + c["same"]):
        rep = getattr(ad, "report", None)
        seen = (f": {rep.read:,} records read, {rep.skipped:,} filtered out by the adapter, {rep.bad:,} bad"
                if rep is not None and (rep.read or rep.skipped or rep.bad) else "")
        log.warning("kb add: the %s adapter found no entity in %s%s%s", adapter, source, seen,
                    f" ({hint})" if hint else "")


@kb_app.command("link-stats")
def link_stats(path: Path = typer.Argument(..., help="KB directory."),
               data: list[Path] = typer.Option(..., "--data", "-d",
                                               help="Annotated documents (AIDA or ELEVANT JSONL); repeatable."),
               limit: int | None = typer.Option(None, help="Read at most this many documents per file.")) -> None:
    """Count how often each KB form the alias dictionary matches in annotated text is a gold mention (its link
    probability), for ``alias_mentions``' ``min_link_prob``. Replaces earlier statistics; use training data only."""
    from itertools import chain

    from glinker.eval.datasets import iter_el
    from glinker.kb import KB
    from glinker.stages.mentions import count_link_stats

    for f in data:
        if not f.is_file():
            raise typer.BadParameter(f"no such file: {f}", param_hint="--data")
    from tqdm import tqdm

    docs = tqdm(chain.from_iterable(iter_el(f, limit) for f in data), desc="link-stats", unit="doc",
                file=sys.stderr, disable=not sys.stderr.isatty())  # a corpus may hold millions of documents
    stats, n_docs = count_link_stats(path, docs)
    with KB.open(path, writable=True) as kb:
        kb.set_link_stats(stats, source=", ".join(str(f) for f in data))
    # seldom a mention: matched at least 3 times, a gold mention less than half of them (what the summary shows;
    # alias_mentions' min_link_prob and link_prob_min_seen choose what is skipped)
    low = sorted((a / b, -b, k) for k, (a, b) in stats.items() if b >= 3 and a / b < 0.5)
    shown = ", ".join(f"{k!r} {-nb * p:.0f}/{-nb}" for p, nb, k in low[:8])
    typer.echo(f"{len(stats):,} forms matched in {n_docs:,} documents; "
               + (f"{len(low):,} seldom mentions (a gold mention in under half of 3 or more matches): {shown}"
                  + (", ..." if len(low) > 8 else "") if low else "none seldom a mention (under half of 3 or more "
                  "matches)"))


@kb_app.command("remove")
def remove(path: Path = typer.Argument(..., help="KB directory."),
           ids: list[str] = typer.Argument(..., help="Entity ids to remove."),
           model: str | None = typer.Option(None, help="Only needed to finish an interrupted update."),
           atomic: bool = typer.Option(False, "--atomic", help="Remove them in a copy of the KB and switch to it when "
                                       "complete: processes reading the KB meanwhile never see it half-done.")) -> None:
    """Remove entities by id (records, aliases and vectors)."""
    from glinker.kb import KB

    with _interrupted("remove", atomic), KB.update(path) if atomic else KB.open(path, writable=True) as kb:
        enc = None
        if model or (kb.store.pending() and kb.manifest.has_vectors):
            enc = _checked_encoder(kb, model)
        ids = [i.strip() for i in ids]  # ids are stored trimmed, as adapters read them
        removed = kb.remove(ids, enc)
        missing = [i for i in ids if i not in set(removed)]
        typer.echo(f"removed {len(removed)}" + (f"; not found: {', '.join(missing)}" if missing else "")
                   + f"; {len(kb):,} entities")


@kb_app.command("search")
def search(path: Path = typer.Argument(..., help="KB directory."),
           text: str = typer.Argument(..., help="A mention or name to look up."),
           k: int = typer.Option(10, "-k", min=1, help=(
               "Results per method: entities for exact aliases and dense search; for fuzzy, the k closest aliases, "
               "each with all its entities (homonyms), so more than k lines may show.")),
           fuzzy_cutoff: float = typer.Option(85.0, "--fuzzy", help="rapidfuzz score cutoff (0-100)."),
           model: str | None = typer.Option(None, help="Defaults to the KB's model; 'none' skips dense search."),
           as_json: bool = typer.Option(False, "--json", help="Print the results as JSON, by method: alias (ids), "
                                        "fuzzy (id, alias, score) and dense (id, score).")) -> None:
    """Look a name up by exact alias, fuzzy alias and (with the model) dense vector search."""
    from glinker.kb import KB

    with KB.open(path) as kb:
        from glinker.kb.store import normalize_alias

        key = normalize_alias(text)
        res: dict[str, Any] = {"alias": (kb.lookup_alias(text) or  # else "Zurich" finds Zürich, as the stages do
                                         kb.store.lookup_folded([key]).get(key, []))[:k],
                               "fuzzy": [{"id": i, "alias": a, "score": round(s, 1)}
                                         for i, a, s in kb.fuzzy(text, limit=k, score_cutoff=fuzzy_cutoff)]}
        if kb.manifest.has_vectors and (model or "").lower() != "none":
            enc = _checked_encoder(kb, model)
            scores, ids = kb.search_text([text], enc, k=k)
            res["dense"] = [{"id": i, "score": round(float(s), 4)} for i, s in zip(ids[0], scores[0])]
        labels = {e.id: e for e in kb.get(list({*res["alias"], *(h["id"] for h in res["fuzzy"]),
                                                 *(h["id"] for h in res.get("dense", []))}))}
        if as_json:
            typer.echo(json.dumps(res, ensure_ascii=False, indent=2))
            return
        for method, hits in res.items():
            typer.echo(f"{method}:")
            for h in hits:
                hid = h if isinstance(h, str) else h["id"]
                e = labels.get(hid)
                score = "" if isinstance(h, str) else f"  {h['score']}"
                if isinstance(h, dict) and "alias" in h:
                    score = f"  ~{h['alias']!r} {h['score']}"
                desc = e.description if e else ""
                desc = desc if len(desc) <= 160 else desc[:157] + "..."
                typer.echo(f"  {hid:<12} {e.label if e else '?'} — {desc}{score}")
