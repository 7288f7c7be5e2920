"""`glinker eval ner|el`: measure zero-shot NER and entity linking on benchmark data.

Scores are printed as a table/summary, then one machine-readable last line
(``avg_micro_f1=<x>`` for NER, ``el_f1=<x> ed_acc=<y> kb_coverage=<z>`` for EL).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from pathlib import Path
from typing import Any, Sequence

import typer

from glinker.cli import dtype_option

from glinker.errors import ConfigError, DataError, GlinkerError
from glinker.io import refuse_linked_file
from glinker.model.shipped import DEFAULT_MODEL

log = logging.getLogger(__name__)


eval_app = typer.Typer(help="Measure NER span F1 and entity-linking P/R/F1 on benchmark data.",
                       no_args_is_help=True)


def _fail(e: GlinkerError) -> None:
    typer.echo(str(e), err=True)
    raise typer.Exit(2)


def _overlaps(out: Path, src: Path) -> bool:
    """Whether writing ``out`` would write ``src`` (the same file, through links too) or into the folder ``src``."""
    o, i = out.resolve(), src.resolve()
    if o == i or i in o.parents:
        return True
    try:
        return out.exists() and src.exists() and os.path.samefile(out, src)
    except OSError:
        return False


def _guard_output(flag: str, out: Path | None, data: Sequence[Path] = (), predictions: Path | None = None,
                  others: Sequence[tuple[str, Path | None]] = ()) -> None:
    """Refuse, before any work, an output that would replace an input: a --data file or anything inside a --data
    folder (a data file's ``labels.json`` too), the --predictions file, or another output or input file."""
    if out is None:
        return
    for src in data:
        srcs = [src] + ([src.parent / "labels.json"] if src.is_file() else [])
        hit = next((x for x in srcs if _overlaps(out, x)), None)
        if hit is not None:
            raise ConfigError(f"{flag} {out} is in the evaluation data (--data {src}"
                              + (f": {hit}" if hit != src else "") + "): writing it would replace the gold data or "
                              "be read as data", where=flag, fix=f"write {flag} outside the data")
    if predictions is not None and _overlaps(out, predictions):
        raise ConfigError(f"{flag} {out} is the --predictions file {predictions}: writing it would replace the "
                          "predictions being scored", where=flag, fix=f"give {flag} another file")
    for name, other in others:
        if other is not None and _overlaps(out, other):
            raise ConfigError(f"{flag} {out} is also {name} {other}: one would overwrite the other", where=flag,
                              fix=f"give {flag} another file")
    if out.is_dir():
        raise ConfigError(f"{flag} {out} is a folder", where=flag, fix=f"give {flag} a file name, e.g. report.json")
    refuse_linked_file(out, flag)
    if not out.resolve().parent.is_dir():
        raise ConfigError(f"{flag} {out}: the folder {out.parent} does not exist", where=flag,
                          fix="create the folder first, or write elsewhere")


def _write_report(path: Path, report: dict[str, Any]) -> None:
    """Write the JSON report atomically: a temporary file beside it, fsynced, then renamed over ``path`` (a path
    that is no regular file, such as /dev/stdout or a named pipe, is written in place)."""

    from glinker.io import _special, atomic_write

    text = json.dumps(report, indent=2) + "\n"
    if _special(path):  # /dev/stdout, a named pipe, a device: written in place, never replaced by a file
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return
    # replaced at its own path (a link planted there meanwhile is replaced, its target never written)
    old = os.stat(path, follow_symlinks=False) if os.path.lexists(path) else None
    atomic_write(path, text, mode=old.st_mode & 0o777 if old is not None and stat.S_ISREG(old.st_mode) else None)


def _progress(total: int, desc: str) -> Any:
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="sent", file=sys.stderr, leave=False,
                    disable=not sys.stderr.isatty())
    except ImportError:  # tqdm is a dependency, but progress is never worth failing for
        return None


@eval_app.command("ner")
def ner(
    data: Path = typer.Option(..., "--data", "-d", help="A dataset folder (test.json + labels.json), a folder of them, or annotated BIO / GLiNER JSON data."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Model folder, hub id, or shipped model name."),
    threshold: float = typer.Option(0.5, "--threshold", "-t", help="Span score threshold (GLiNER's eval uses 0.5)."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", min=1, help="Texts per forward pass."),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="Score only the first N sentences of each set (with --predictions too)."),
    device: str | None = typer.Option(None, "--device", help="torch device, e.g. cpu or cuda."),
    dtype: str | None = dtype_option(),
    predictions: Path | None = typer.Option(None, "--predictions", help="Score saved predictions (JSONL) instead of running a model."),
    save_predictions: Path | None = typer.Option(None, "--save-predictions", help="Write the predictions as JSONL."),
    mode: str = typer.Option("gliner", "--mode", help="gliner (whitespace-word spans, GLiNER's convention) or char."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the full report as JSON (atomically; never onto an input)."),
    split: str = typer.Option("test", "--split", help="Which file of each dataset folder: test (test.json), dev, ..."),
    sweep: str | None = typer.Option(
        None, "--sweep", help="Comma-separated thresholds, e.g. 0.2,0.3,0.4,0.5: one prediction pass, a row per "
        "threshold, then `best_threshold=<t>`. Pick a threshold on a dev split, never on test sets."),
    window_words: int | None = typer.Option(
        None, "--window-words", min=0, help="Read long texts in windows of at most N words (default: the model's "
        "`window_words`, else its max_len; 0: max_len)."),
) -> None:
    """Span-level micro P/R/F1 per dataset (exact span + type), then `avg_micro_f1=<x>`."""
    from glinker.eval.datasets import load_ner_datasets
    from glinker.eval.ner import evaluate_ner, score_predictions_file

    try:
        if mode not in ("gliner", "char"):
            raise ConfigError(f"unknown --mode {mode!r}", where="--mode", fix="use gliner or char")
        ignored = [name for name, given in (("--save-predictions", save_predictions is not None),
                                            ("--json", json_out is not None), ("--predictions", predictions is not None))
                   if given and sweep is not None]
        if predictions is not None and threshold != 0.5:
            ignored.append("--threshold (saved predictions were filtered when they were made)")
        if ignored:
            raise ConfigError(f"{', '.join(ignored)} cannot be used {'with --sweep' if sweep else 'here'}: it "
                              "would be ignored", where=ignored[0].split()[0],
                              fix="run the sweep alone (it prints a row per threshold), then a run at the chosen "
                                  "threshold with --save-predictions / --json" if sweep else "drop --threshold")
        if predictions is not None and save_predictions is not None:
            raise ConfigError("--save-predictions writes the predictions a model run makes; with --predictions "
                              "there are none", where="--save-predictions",
                              fix="drop --save-predictions (the --predictions file is the saved predictions)")
        # outputs that would replace an input are refused before anything is read or run
        _guard_output("--save-predictions", save_predictions, [data], predictions)
        _guard_output("--json", json_out, [data], predictions, [("--save-predictions", save_predictions)])
        if sweep is not None:
            _sweep(data, split, sweep, model, batch_size, limit, device, mode, window_words, dtype)
            return
        if predictions is not None:
            report = score_predictions_file(predictions, data, mode=mode, split=split, limit=limit)
        else:
            datasets = load_ner_datasets(data, split=split, limit=limit)
            predict = _load_predict(model, threshold, batch_size, device, window_words, dtype)
            bar = _progress(sum(len(d.examples) for d in datasets), "eval ner")
            try:
                report = evaluate_ner(predict, datasets, mode=mode, save_predictions=save_predictions,
                                      progress=(bar.update if bar is not None else None), limit=limit)
            finally:
                if bar is not None:
                    bar.close()
    except GlinkerError as e:
        _fail(e)
    report.run = {"model": None if predictions is not None else model,
                  "threshold": None if predictions is not None else threshold,
                  "predictions": str(predictions) if predictions is not None else None,
                  "data": str(data), "split": split if data.is_dir() else None, "mode": mode,
                  **({"dtype": dtype} if dtype is not None and predictions is None else {})}
    typer.echo(report.table())
    if json_out is not None:
        _write_report(json_out, report.as_dict())
    typer.echo(report.last_line())


def _sweep(data: Path, split: str, sweep: str, model: str, batch_size: int, limit: int | None,
           device: str | None, mode: str, window_words: int | None = None, dtype: str | None = None) -> None:
    from glinker.eval.datasets import load_ner_datasets
    from glinker.eval.ner import sweep_thresholds

    try:
        ts = sorted({float(x) for x in sweep.split(",") if x.strip()})
    except ValueError:
        raise ConfigError(f"--sweep {sweep!r} is not a list of numbers", where="--sweep",
                          fix="e.g. --sweep 0.2,0.3,0.4,0.5") from None
    if not ts or ts[0] < 0 or ts[-1] >= 1:
        raise ConfigError("--sweep needs thresholds in [0, 1)", where="--sweep", fix="e.g. --sweep 0.2,0.3,0.4,0.5")
    datasets = load_ner_datasets(data, split=split, limit=limit)
    bar = _progress(sum(len(d.examples) for d in datasets), "eval ner")
    try:
        predict = _load_predict(model, ts[0], batch_size, device, window_words, dtype)
        reports = sweep_thresholds(predict, datasets, ts, mode=mode, progress=(bar.update if bar is not None else None))
    finally:
        if bar is not None:
            bar.close()
    from glinker.eval.ner import NOT_COMPARABLE

    names = [d.name for d in datasets]
    typer.echo(f"model: {model}  thresholds: {', '.join(f'{t:g}' for t in ts)}")
    typer.echo(f"data: {data}" + (f"  (split: {split})" if data.is_dir() else ""))
    if limit is not None:
        typer.echo(f"every score and average is on --limit {limit} sentences per set: {NOT_COMPARABLE}")
    sets = f"{len(names)} set{'s' if len(names) != 1 else ''}"
    # the seven published zero-shot sets' mean, the figure papers quote, as a column of its own when they were run
    zero_shot = next(iter(reports.values())).zero_shot_avg is not None
    typer.echo("| threshold | " + " | ".join(names) + f" | average of the {sets} |"
               + (" zero-shot avg: the 7 published sets |" if zero_shot else ""))
    typer.echo("|---:|" + "---:|" * (len(names) + 1 + zero_shot))
    for t, rep in reports.items():
        typer.echo(f"| {t:g} | " + " | ".join(f"{r.scores.f1:.1%}" for r in rep.results)
                   + f" | {rep.avg_micro_f1:.1%} |" + (f" {rep.zero_shot_avg:.1%} |" if zero_shot else ""))
    best = max(reports, key=lambda t: (reports[t].avg_micro_f1, -abs(t - 0.5)))
    typer.echo(f"best_threshold={best:g} {reports[best].last_line()}")


def _load_predict(model: str, threshold: float, batch_size: int, device: str | None,
                  window_words: int | None = None, dtype: str | None = None) -> Any:
    """The model's predict as the ``predict(texts, labels)`` callable the evaluator needs."""
    from glinker.errors import ModelError

    try:
        from glinker.model import BiEncoder

        enc = BiEncoder.from_pretrained(model, device=device, window_words=window_words, dtype=dtype)
    except GlinkerError as e:
        if model == DEFAULT_MODEL:
            raise ModelError(f"the default model {DEFAULT_MODEL!r} is not available ({e.message})", where="--model",
                             fix="pass --model with a checkpoint folder or a hub id, e.g. "
                                 "--model knowledgator/gliner-bi-small-v1.0") from e
        raise
    except ImportError as e:
        raise ModelError(f"the model code cannot be loaded: {e}", where="glinker.model",
                         fix="install glinker with its model dependencies (torch, transformers)") from e

    def predict(texts: list[str], labels: list[str]) -> list[list[dict]]:
        return enc.predict(texts, labels, threshold=threshold, flat_ner=True, batch_size=batch_size)

    return predict


@eval_app.command("el")
def el(
    data: list[Path] = typer.Option(..., "--data", "-d", help="Gold documents: AIDA JSONL or ELEVANT benchmark JSONL. Repeat to score several files as one set (document ids then get the file name as a prefix)."),
    pipeline: Path | None = typer.Option(None, "--pipeline", "-p", help="Linking pipeline YAML to run on the documents."),
    predictions: Path | None = typer.Option(None, "--predictions", help="Score saved linked documents (JSONL) instead of running a pipeline."),
    save: Path | None = typer.Option(None, "--save", help="Append linked documents to this JSONL (resumes: documents already there are not re-run)."),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="Only the first N documents."),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b", min=1, help="Documents per batch (default: the pipeline's)."),
    kb_ids: Path | None = typer.Option(None, "--kb-ids", help="Entity ids in the KB (one per line, or JSONL with id/qid), for KB coverage."),
    exclude_coref: bool = typer.Option(False, "--exclude-coref", help="Drop gold coreference mentions (ELEVANT coref labels)."),
    ks: str = typer.Option("1,5,10,20,50,100", "--ks", help="Comma-separated k for candidate recall@k."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the full report as JSON (atomically; never onto an input)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Override the pipeline's model."),
    kb: str | None = typer.Option(None, "--kb", help="Override the pipeline's KB directory."),
    dtype: str | None = dtype_option("the pipeline's settings.dtype, else the checkpoint's"),
) -> None:
    """End-to-end InKB P/R/F1, disambiguation accuracy, recall@k, NIL accuracy and KB coverage."""
    from glinker.eval.datasets import iter_el_files
    from glinker.eval.el import evaluate_el, load_kb_ids, predictions_from_linked

    try:
        try:
            k_list = sorted({int(k) for k in ks.split(",") if k.strip()})
        except ValueError:
            raise ConfigError(f"invalid --ks {ks!r}", where="--ks", fix="use comma-separated integers, e.g. 1,5,10") from None
        if not k_list or k_list[0] < 1:
            raise ConfigError(f"--ks {ks!r}: every k must be at least 1", where="--ks", fix="e.g. --ks 1,5,10")
        if (pipeline is None) == (predictions is None):
            raise ConfigError("give exactly one of --pipeline and --predictions", where="--pipeline",
                              fix="run a pipeline (--pipeline P) or score saved links (--predictions FILE)")
        if predictions is not None and save is not None:
            raise ConfigError("--save writes the links a --pipeline run makes; with --predictions there are none",
                              where="--save", fix="drop --save (the predictions file is the saved links)")
        for flag, value in (("--kb", kb), ("--model", model), ("--dtype", dtype)):
            if predictions is not None and value is not None:  # they override a pipeline's: saved links have none
                raise ConfigError(f"{flag} overrides the --pipeline's; saved --predictions are scored as they are",
                                  where=flag, fix="drop it" + ("; for the KB coverage of the gold entities pass "
                                                              f"--kb-ids {value} (a KB folder or a file of ids)"
                                                              if flag == "--kb" else ""))
        # the report must not replace an input (checked before anything is read or run)
        _guard_output("--json", json_out, list(data), predictions, [("--save", save), ("--kb-ids", kb_ids)])
        gold = list(iter_el_files(data, limit=limit))
        mentions = [m for d in gold for m in d.mentions]
        if mentions and all(m.is_nil for m in mentions) and any(m.raw_id for m in mentions):
            example = next(m.raw_id for m in mentions if m.raw_id)
            log.warning("none of the gold entity ids is a Wikidata QID (e.g. %r): ELEVANT files are scored by QID, so "
                        "every gold mention counts as NIL; gold with another KB's ids goes in AIDA-style JSONL (its "
                        "wikidata_qid field takes any id)", example)
        ids = [d.id for d in gold]
        found_by: str | None = None  # how the mentions were found: unknown for saved links
        if predictions is not None:
            from glinker.io import iter_linked_jsonl

            linked = list(iter_linked_jsonl(predictions))
        else:
            linked, found_by, used = _run_pipeline(pipeline, gold, save, batch_size, model, kb, dtype)  # type: ignore[arg-type]
        _check_predictions(linked, gold, predictions if predictions is not None else save)
        wanted = set(ids)
        preds = [p for p in predictions_from_linked(linked) if p.doc_id in wanted]
        kb_set = load_kb_ids(str(kb_ids)) if kb_ids is not None else None
        report = evaluate_el(gold, preds, kb=kb_set, ks=k_list, exclude_coref=exclude_coref, mentions=found_by)
        if kb_set and report.kb_distinct and not report.kb_distinct_present:  # every miss then "not in the KB"
            log.warning("none of the %d gold entities is among the %d ids of --kb-ids %s (e.g. %r there): check that "
                        "they are the KB's ids (a CSV's id column is named id, qid, wikidata_id, entity_id or kb_id; "
                        "without one its first column is read)", report.kb_distinct, len(kb_set), kb_ids, next(iter(sorted(kb_set))))
    except GlinkerError as e:
        _fail(e)
    if predictions is not None:
        used = {"model": model, "kb": kb}
    run = {"pipeline": str(pipeline) if pipeline is not None else None,
           "predictions": str(predictions) if predictions is not None else None,
           # what linked: the overrides, else the pipeline's own model and KB (secrets masked)
           "model": used["model"], "kb": used["kb"],
           "data": [str(d) for d in data], "limit": limit, "mentions": report.mentions,
           **({"dtype": dtype} if dtype is not None and pipeline is not None else {})}
    if pipeline is not None:
        typer.echo(f"pipeline: {pipeline}" + (f"  model: {model}" if model else "") + (f"  kb: {kb}" if kb else "")
                   + f"  (mentions: {'gold, given_mentions' if found_by == 'gold' else 'found end to end'})")
    else:
        typer.echo(f"predictions: {predictions}")
    typer.echo(f"data: {', '.join(map(str, data))}" + (f"  (first {limit} documents)" if limit is not None else ""))
    typer.echo(report.summary())
    if json_out is not None:
        _write_report(json_out, {"run": run, **report.as_dict()})
    typer.echo(report.last_line())


def _check_predictions(linked: list[Any], gold: list, source: Path | None) -> None:
    """Saved links must be of these gold documents: an error when none of their ids is a gold id, or when a
    document's text differs from the gold text (they would all score as misses); a warning when some gold
    documents have no saved links (scored as misses)."""
    from glinker.eval.el import gold_by_id

    where = str(source) if source is not None else "predictions"
    texts = {i: d.text for i, d in gold_by_id(gold).items()}  # a repeated gold id is said as such first
    got = {str(getattr(d, "id", None)): getattr(d, "text", None) for d in linked}
    if not got:
        raise DataError("no linked documents", where=where,
                        fix="score a file written by `glinker eval el --save` or `glinker link` on these documents")
    matched = [i for i in got if i in texts]
    if not matched:
        raise DataError(f"none of the {len(got)} linked documents' ids is a gold document's id (theirs: "
                        f"{', '.join(sorted(got)[:3])}...; the gold's: {', '.join(list(texts)[:3])}...)", where=where,
                        fix="score links made from this --data (several --data files prefix ids with the file name)")
    bad = next((i for i in matched if got[i] is not None and got[i] != texts[i]), None)
    if bad is not None:
        raise DataError(f"document {bad!r} has another text in the links than in the gold data", where=where,
                        fix="score links made from this --data")
    for d in linked:  # a mention whose offsets point at other words than it names (edited by hand, or shifted)
        text = getattr(d, "text", None)  # (the document's text against the gold's: above)
        if text is None:
            continue
        for j, link in enumerate(getattr(d, "links", None) or []):
            m = link.mention
            if m.text and text[m.start:m.end] != m.text:
                raise DataError(f"document {d.id!r}, link {j}: the mention {m.text!r:.40} has offsets {m.start}-"
                                f"{m.end}, where the text reads {text[m.start:m.end]!r:.40}", where=where,
                                fix="offsets are [start, end) character positions into the document's text (0-based, "
                                    "end exclusive); fix them, or score links made by glinker from this --data")
    missing = len(texts) - len(matched)
    if missing:
        log.warning("%d of %d gold documents have no linked document in %s: they count as misses", missing,
                    len(texts), where)


def _mentions_of(pipe: Any) -> str:
    """"gold" when the pipeline takes the gold mentions (a ``given_mentions`` stage), else "end-to-end"."""
    stages = getattr(getattr(pipe, "spec", None), "stages", None) or {}
    types = {getattr(st, "type", None) for st in (stages.values() if isinstance(stages, dict) else stages)}
    return "gold" if "given_mentions" in types else "end-to-end"


def _run_pipeline(path: Path, gold: list, save: Path | None, batch_size: int | None, model: str | None = None,
                  kb: str | None = None, dtype: str | None = None) -> tuple[list[Any], str, dict[str, Any]]:
    """Link the gold documents' texts with a pipeline; with ``save``, resume from and append to a JSONL.
    Returns the linked documents, how the pipeline finds mentions (:func:`_mentions_of`) and the model and KB that
    linked (an override, else the pipeline's own; a KB as :func:`glinker.stages.resources.shown_kb` shows it)."""
    import glinker
    from glinker.io import iter_linked_jsonl
    from glinker.stages.writers import JSONLWriter

    pipe = glinker.load_pipeline(str(path), model=model, kb=kb, dtype=dtype)
    found_by = _mentions_of(pipe)
    from glinker.cli.link import linked_with

    used = linked_with(pipe, model, kb)
    docs = [d.to_document() for d in gold]
    claim = None
    if save is not None:
        import hashlib

        from glinker.cli.link import _claim_output, run_ident

        data = hashlib.sha256("\0".join(f"{d.id}\0{d.text}" for d in docs).encode()).hexdigest()[:16]
        if _saved_docs_among(save, docs):  # another --limit of the same data: the saved links serve it too
            data = _recorded(save).get("data", data)
        # what wrote the saved links: resuming into links of another pipeline, KB or data is refused
        claim = _claim_output(save, {**run_ident(pipe, model, kb), "data": data}, resuming=True,
                              noun="evaluation run", fix="delete it, or --save to another file", flag="--save",
                              unverified=None)
    writer = JSONLWriter(save) if save is not None else None
    done: list[Any] = []
    if writer is not None:
        if writer.already:
            typer.echo(f"resuming: {writer.already} documents already in {save}", err=True)
        docs = writer.pending(docs)
    bar = _progress(len(docs), "eval el")
    try:
        with pipe.gc_frozen():
            for res in pipe.run(docs, batch_size=batch_size):
                out = res.output if isinstance(res.output, list) else [res.output]
                linked = [_as_linked(o, doc, pipe) for o, doc in zip(out, res.documents)]
                if writer is not None:
                    writer.write(linked)
                else:
                    done.extend(linked)
                if bar is not None:
                    bar.update(len(res.documents))
    finally:
        if bar is not None:
            bar.close()
        if claim is not None:
            claim.__exit__(None, None, None)
        pipe.close()  # its stages' close() run
    return (list(iter_linked_jsonl(save)) if save is not None else done), found_by, used


def _as_linked(out: Any, doc: Any, pipe: Any) -> Any:
    from glinker.types import LinkedDocument

    if isinstance(out, LinkedDocument):
        if out.id is None:
            out.id = doc.id
        return out
    if isinstance(out, dict) and "links" in out:
        rec = LinkedDocument.model_validate({"id": doc.id, "text": doc.text, **out})
        return rec
    raise ConfigError(
        f"end-to-end linking is not available yet with pipeline {pipe.name!r}: its output stage "
        f"{pipe.output_name!r} produces {type(out).__name__}, not linked documents",
        where=f"pipeline {pipe.name!r}",
        fix="use a pipeline whose output stage selects links (LinkedDocument), or score saved links with "
            "--predictions FILE")


def _saved_docs_among(save: Path, docs: Sequence[Any]) -> bool:
    """Whether every document the saved links file holds is one of ``docs`` (same id, same text): the same data
    read with another --limit, whose saved links a resumed run may keep."""
    from glinker.io import resume_state, text_digest

    if not save.is_file():
        return False
    st = resume_state(save)
    gold = {str(d.id): text_digest(d.text) for d in docs}
    return st.lines > 0 and all(i in gold and gold[i] == t for i, t in zip(st.ids, st.texts))


def _recorded(save: Path) -> dict[str, Any]:
    """The run record beside a saved links file (``SAVE.run.json``), or {}."""
    try:
        rec = json.loads(save.with_name(save.name + ".run.json").read_text(encoding="utf-8") or "null")
    except (OSError, json.JSONDecodeError):
        return {}
    return rec if isinstance(rec, dict) else {}


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
