"""``glinker link -p PIPELINE INPUT -o OUT``: link a text or JSONL file with a pipeline, streaming.

The input is read line by line (memory stays flat on any size); every batch is appended to the output and
flushed before the next one starts, so an interrupted run keeps what it wrote and a re-run resumes after the
documents already there (matched by id). A bad input line (invalid UTF-8, invalid JSON, no text) stops the run
with an error naming the file and line — after the batches before it are written — or is skipped with a
warning under ``--skip-bad``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import re
import shlex
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import typer

from glinker.cli import dtype_option
from glinker.cli.long_texts import LONG_TEXT_CHARS, LongTextProgress

from glinker.errors import ConfigError, DataError, GlinkerError
from glinker.io import InputIds, check_text

log = logging.getLogger(__name__)

LONG_DOCUMENT_CHARS = 200_000
"""A document at least this long is said when read (it is linked whole: minutes on a CPU, the bar standing still)."""


def register(app: typer.Typer) -> None:
    """Attach ``glinker link`` and ``glinker worker`` to the root CLI."""
    app.command("link")(link)
    app.command("worker")(worker)


def _stdin(path: Path) -> bool:
    return str(path) == "-"


_STDIN: list[Any] = []  # [(the stdin object it was made for, the reader)]


def _stdin_buffer() -> Any:
    """Standard input as a binary reader of glinker's own on file descriptor 0 (not ``sys.stdin.buffer``), the same
    one for every use in this process. The input is read ahead by a daemon thread (:func:`_prefetched`); one blocked
    in a read of ``sys.stdin.buffer`` when the run ends (Ctrl-C while the pipe is still open) holds the lock the
    interpreter takes on that object at shutdown: "Fatal Python error: _enter_buffered_busy". Where standard input
    has no descriptor (a test runner's), ``sys.stdin.buffer`` itself."""
    if _STDIN and _STDIN[0][0] is sys.stdin:
        return _STDIN[0][1]
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):  # (io.UnsupportedOperation is an OSError and a ValueError)
        return sys.stdin.buffer
    reader = open(fd, "rb", closefd=False)
    _STDIN[:] = [(sys.stdin, reader)]
    return reader


def _lines_name(path: Path) -> str:
    """A file name for a JSON array converted into JSON lines, never the array's own (``jq ... x > x`` empties x),
    beside it."""
    stem = path.name
    for suf in (".gz", ".bz2", ".xz", ".zst"):
        stem = stem.removesuffix(suf)
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    out = f"{stem}.jsonl" if f"{stem}.jsonl" != path.name else f"{stem}.lines.jsonl"
    return str(path.with_name(out))


def _gzipped(path: Path) -> bool:
    """Whether the input file is gzip-compressed (by its name or its first bytes), as :func:`_open_input` reads it."""
    if path.suffix.lower() == ".gz":
        return True
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def _open_input(path: Path) -> Any:
    """The input as a binary file: gzip-compressed when it says so (``.gz`` or the gzip magic bytes); ``-`` is
    standard input (read once, as it streams)."""
    import gzip

    if _stdin(path):
        return contextlib.nullcontext(_stdin_buffer())
    return gzip.open(path, "rb") if _gzipped(path) else open(path, "rb")


def _sniff(path: Path, fmt: str) -> str:
    """The input format: ``fmt`` when given, else by the suffix (``.gz`` looked through) or the first line."""
    name = path.name.lower().removesuffix(".gz")
    suf = Path(name).suffix
    first = b""
    if _stdin(path):  # look at what is buffered without consuming it
        head = _stdin_buffer().peek(65536) if fmt == "auto" else b""
        refuse_wide_text(head, path)
        first = next((ln.lstrip().removeprefix(b"\xef\xbb\xbf").lstrip() for ln in head.splitlines() if ln.strip()),
                     b"")
        suf = ""
    else:
        with _open_input(path) as f:
            refuse_wide_text(f.read(64), path)  # before the pipeline loads: a UTF-16 file fails at once
        with _open_input(path) as f:
            for raw in f:
                if raw.strip():
                    first = raw.lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()
                    break
    if fmt != "auto":
        return fmt
    if first.startswith(b"["):
        if _stdin(path):
            conv = "... | jq -c '.[]' > docs.jsonl"
        else:
            src, dst = shlex.quote(str(path)), shlex.quote(_lines_name(path))
            conv = f"gunzip -c {src} | jq -c '.[]' > {dst}" if _gzipped(path) else f"jq -c '.[]' {src} > {dst}"
        raise DataError("the file is one JSON array; glinker link reads JSONL (one JSON object per line) or text "
                        "(one document per line)", where=str(path), fix=f"convert it into another file, e.g. {conv}")
    if suf in (".jsonl", ".ndjson"):
        return "jsonl"
    if suf == ".txt":
        return "txt"
    if suf in (".csv", ".tsv"):
        raise ConfigError(f"{suf} files are not an input format of glinker link (the header and the columns would "
                          f"be linked as text)", where=str(path),
                          fix="convert it to JSONL ({\"id\": ..., \"text\": ...} a line), or pass --format txt to "
                              "link each line as one document")
    return "jsonl" if first.startswith(b"{") else "txt"


def iter_input(path: Path, fmt: str, skip_bad: bool, text_field: str = "text",
               problems: Optional[list[str]] = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, document dict)`` for every non-empty line; bad lines raise a DataError naming the line
    (or are skipped, with a warning, when ``skip_bad``). A JSONL record without an id is numbered by its line
    (see :class:`glinker.io.InputIds`: never an id an earlier record has; a record whose id is the one generated
    for an earlier line is a bad line)."""
    from glinker.pipeline.runner import record_meta

    ids = InputIds(str(path))
    with _open_input(path) as f:
        if hasattr(f, "peek"):  # a UTF-16/32 file is refused as a whole, --skip-bad or not: every line is garbage
            refuse_wide_text(f.peek(64)[:64], path)
        for n, raw in enumerate(f, 1):
            where = f"{path}:{n}"
            if n == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark is not text
            if b"\x00" in raw:  # never part of UTF-8 text (no multi-byte UTF-8 sequence holds a 0 byte)
                err = DataError(f"the line holds NUL bytes (byte {raw.index(0)}), which text never does (UTF-16 or "
                                "UTF-32 text, or binary data?)", where=where,
                                fix="re-encode the file as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8 for UTF-16 text), "
                                    "remove the NUL bytes (tr -d '\\000'), or pass --skip-bad")
                if skip_bad:
                    _skip(err, problems)
                    continue
                raise err
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                err = DataError(f"line is not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})", where=where,
                                fix="re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8), or pass --skip-bad")
                if skip_bad:
                    _skip(err, problems)
                    continue
                raise err from None
            if not line.strip():
                continue
            if fmt == "txt":
                yield n, {"id": str(n), "text": line.rstrip("\r\n")}
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                err = DataError(f"invalid JSON at column {e.colno}: {e.msg}", where=where,
                                fix="one JSON object per line, e.g. {\"id\": \"a\", \"text\": \"...\"}; or pass --skip-bad")
                if skip_bad:
                    _skip(err, problems)
                    continue
                raise err from None
            if isinstance(rec, str):
                rec = {"text": rec}
            if not isinstance(rec, dict) or not isinstance(rec.get(text_field), str):
                others = [k for k, v in rec.items() if isinstance(v, str) and k != "id"] if isinstance(rec, dict) else []
                null = isinstance(rec, dict) and text_field in rec and rec[text_field] is None
                if null:  # the field is there, without a text: not another field's name to give
                    err = DataError(f"the line's {text_field!r} is null", where=where,
                                    fix=f"give the document a text (a {text_field!r} string), or leave the line out; "
                                        "or pass --skip-bad")
                else:
                    err = DataError(f"the line has no string field {text_field!r}"
                                    + (f" (its text fields: {', '.join(others[:5])})" if others else ""), where=where,
                                    fix=(f"name the text field: --text-field {others[0]}; or " if others else
                                         f"each line is an object with a {text_field!r} string (and an optional id); "
                                         "or ") + "pass --skip-bad")
                if skip_bad:
                    _skip(err, problems)
                    continue
                raise err
            try:
                check_text(rec[text_field], where)
                doc_id = ids.assign(rec.get("id"), n)
            except DataError as err:
                if skip_bad:
                    _skip(err, problems)
                    continue
                raise
            doc = {"id": doc_id, "text": rec[text_field]}
            meta = record_meta(rec, text_field)
            if meta:
                doc["meta"] = meta
            yield n, doc


def refuse_wide_text(head: bytes, path: Path) -> None:
    """A DataError naming the file and its encoding when ``head`` (the input's first bytes, decompressed) is
    UTF-16 or UTF-32 text (:func:`glinker.kb.adapters.wide_unicode`): such a file is not read line by line as
    UTF-8, where its lines would be NUL-interleaved garbage or errors blaming Latin-1."""
    from glinker.kb.adapters import wide_unicode

    enc = wide_unicode(head)
    if enc is None:
        return
    how = ("it starts with a byte-order mark" if enc in ("UTF-16", "UTF-32")
           else "NUL bytes between its first letters, without a byte-order mark")
    if _stdin(path):
        fix = f"convert it on the way in: ... | iconv -f {enc} -t UTF-8 | glinker link ... -"
    else:
        name = path.name.removesuffix(".gz").removesuffix(".GZ")
        stem, dot, suf = name.rpartition(".")
        new = f"{stem}.utf8.{suf}" if dot else f"{name}.utf8"
        conv = f"iconv -f {enc} -t UTF-8"
        cat = f"gunzip -c {path} | {conv}" if name != path.name else f"{conv} {path}"
        fix = f"convert it to UTF-8 and link that: {cat} > {new}"
    raise DataError(f"the input is {enc} text ({how}); glinker link reads UTF-8", where=str(path), fix=fix)


def _skip(err: DataError, problems: Optional[list[str]]) -> None:
    log.warning("skipped %s: %s", err.where, err.message)
    if problems is not None:
        problems.append(f"{err.where}: {err.message}")


def _count_lines(path: Path) -> int | None:
    if path.suffix.lower() == ".gz" or not path.is_file():
        return None  # the bar counts without a total rather than decompress twice, or read a pipe's lines away
    try:
        n = 0
        with open(path, "rb") as f:
            while True:
                block = f.read(1 << 22)
                if not block:
                    break
                n += block.count(b"\n")
        return n
    except OSError:
        return None


def link(
    input: Path = typer.Argument(..., dir_okay=False, help="Input: .txt (one document a line) or .jsonl ({id?, text, ...} a line); - reads standard input."),
    pipeline: Path = typer.Option(..., "--pipeline", "-p", help="Pipeline YAML (examples: pipelines/wikidata.yaml in the source repository)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output .jsonl (appended, resumable), .json or .html."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", min=1, help="Documents per batch (default: the pipeline's)."),
    model: Optional[str] = typer.Option(None, "--model", help="Override the pipeline's model."),
    kb: Optional[str] = typer.Option(None, "--kb", help="Override the pipeline's KB directory."),
    device: Optional[str] = typer.Option(None, "--device", help="torch device, e.g. cpu or cuda."),
    dtype: Optional[str] = dtype_option("the pipeline's settings.dtype, else the checkpoint's"),
    fmt: str = typer.Option("auto", "--format", help="Input format: auto, txt or jsonl."),
    text_field: str = typer.Option("text", "--text-field", help="JSONL field holding the text."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip bad input lines with a warning instead of stopping."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Resume after the documents already in the output (default), or overwrite it."),
    resume_unverified: bool = typer.Option(False, "--resume-unverified", help="Resume an output that has no run record (written before glinker kept one, 2026-12-03), which cannot be checked: you say this same pipeline, model and KB wrote it."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
    stats: bool = typer.Option(False, "--stats", help="Print per-stage time and counts at the end."),
    queue: Optional[str] = typer.Option(None, "--queue", help="Redis URL (redis://host:6379/0): hand the batches to `glinker worker` processes on any machines instead of linking here."),
    job: Optional[str] = typer.Option(None, "--job", help="Job name on the queue (default: 'default'); workers serve one job."),
    max_in_flight: int = typer.Option(32, "--max-in-flight", min=1, help="With --queue: batches handed out at once (bounds Redis memory)."),
    max_attempts: int = typer.Option(3, "--max-attempts", min=1, help="With --queue: workers a batch may be handed to before the run stops (a batch that kills every worker)."),
    batch_timeout: Optional[float] = typer.Option(None, "--batch-timeout", min=1, help="With --queue: seconds after which a batch held by a live (hung) worker is handed to another (default: never)."),
) -> None:
    """Link every document of INPUT and write linked documents (JSONL: one per line, flushed per batch)."""
    if not _stdin(input) and not input.is_file():
        raise typer.BadParameter(f"{input} is not a file" if input.exists() else f"no such file: {input}",
                                 param_hint="INPUT")
    try:
        n = run_link(input, pipeline, output, batch_size=batch_size, model=model, kb=kb, device=device, dtype=dtype,
                     fmt=fmt,
                     text_field=text_field, skip_bad=skip_bad, resume=resume, progress=progress, stats=stats,
                     resume_unverified=resume_unverified,
                     queue=queue, job=job, max_in_flight=max_in_flight, max_attempts=max_attempts,
                     batch_timeout=batch_timeout)
    except GlinkerError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: {output} keeps every batch written; run the same command again to resume",
                   err=True)
        raise typer.Exit(130)
    typer.echo(f"linked {n['written']} documents -> {output}"
               + (f" ({n['skipped_done']} already done)" if n["skipped_done"] else "")
               + (f" ({n['bad']} bad line{'s' if n['bad'] != 1 else ''} skipped)" if n["bad"] else ""), err=True)
    if not (n["written"] or n["skipped_done"] or n["bad"]):
        typer.echo(f"warning: {'standard input' if _stdin(input) else input} holds no document (it is empty or "
                   "holds only blank lines)", err=True)


def worker(
    pipeline: Optional[Path] = typer.Option(None, "--pipeline", "-p", help="Serve a `glinker link --queue` job: the same pipeline YAML the coordinator was given."),
    queue: str = typer.Option(..., "--queue", help="Redis URL of the coordinator's queue, e.g. redis://head:6379/0."),
    job: Optional[str] = typer.Option(None, "--job", help="Job to serve (default: 'default')."),
    model: Optional[str] = typer.Option(None, "--model", help="With -p: override the pipeline's model (as the coordinator did). Without -p: serve a `glinker kb build --queue` job, embedding entity texts with this model."),
    kb: Optional[str] = typer.Option(None, "--kb", help="Override the pipeline's KB directory (as the coordinator did)."),
    device: Optional[str] = typer.Option(None, "--device", help="torch device, e.g. cpu or cuda:1."),
    dtype: Optional[str] = dtype_option("with -p, the pipeline's settings.dtype; with --model, the checkpoint's", "With -p give it as the coordinator was given it (it is part of the pipeline's identity); with --model as `kb build --queue --dtype` was given it (the job says which)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch threads of this worker (several workers on one machine: cores / workers)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Without -p: encoder batch size."),
    idle_exit: Optional[float] = typer.Option(None, "--idle-exit", min=0, help="Exit after this many seconds without a batch (default: serve until interrupted)."),
    stats: bool = typer.Option(False, "--stats", help="Print per-stage time and counts when the worker stops."),
) -> None:
    """Serve a `glinker link --queue` job (-p PIPELINE) or a `glinker kb build --queue` job (--model M): take
    batches from Redis, do them, send the results back.

    Start as many as the machines hold (one per GPU, or one per few CPU cores); a worker that dies has its
    batch re-done by another, and a worker whose pipeline, model or KB differs from the job's is refused."""
    import glinker
    from glinker.cluster import DEFAULT_JOB, EncodeTask, check_job_name, connect, redact, serve

    if pipeline is None and model is None:
        raise typer.BadParameter("give -p PIPELINE (a linking job) or --model M (a KB build's embedding job)",
                                 param_hint="--pipeline/--model")
    try:  # what can be wrong with the queue is found before the model and KB load (minutes for big ones)
        check_job_name(job or DEFAULT_JOB)
        connect(queue).close()
    except GlinkerError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2)

    def ready(w: Any) -> None:
        typer.echo(f"worker {w.name}: serving job {w.job} on {redact(queue)} (Ctrl-C or SIGTERM: stop after the "
                   "batch in hand)", err=True)
    import signal

    what = "linked" if pipeline is not None else "embedded"
    unit = "documents" if pipeline is not None else "entities"

    def _interrupt(*_: Any) -> None:
        # Stopped (SIGTERM) while still loading: nothing is taken from the queue yet, so the process ends here at
        # once. Raising KeyboardInterrupt instead stopped torch's or a library's import at an arbitrary point, where
        # it could be swallowed (the worker went on loading and served) or surface again at exit (status -2).
        sys.stderr.write(f"worker: {what} 0 {unit} in 0 batches (stopped while loading)\n")
        sys.stderr.flush()
        os._exit(0)

    # once serving, serve() installs its own handler: the batch in hand is finished first
    signal.signal(signal.SIGTERM, _interrupt)
    if threads:
        import torch

        torch.set_num_threads(threads)
    pipe = None
    n = {"documents": 0, "batches": 0}
    try:
        if pipeline is not None:
            pipe = glinker.load_pipeline(str(pipeline), model=model, kb=kb, device=device, dtype=dtype)
            with pipe.gc_frozen():
                n = serve(pipe, queue, job or DEFAULT_JOB, idle_exit=idle_exit, on_ready=ready)
        else:
            from glinker.kb.encoder import load_encoder

            enc = load_encoder(str(model), device=device, dtype=dtype)
            n = serve(EncodeTask(enc, batch_size, name=str(model)), queue, job or DEFAULT_JOB, idle_exit=idle_exit,
                      on_ready=ready)
    except GlinkerError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2)
    except KeyboardInterrupt:
        pass
    if stats and pipe is not None:
        typer.echo(pipe.stats.table(), err=True)
    typer.echo(f"worker: {what} {n['documents']} {unit} in {n['batches']} batches", err=True)


def _worker_args(model: str | None, kb: str | None, dtype: str | None) -> str:
    """The overrides a `glinker link --queue` run was given, as a worker's command line takes them (shell-quoted;
    local paths made absolute, as the job records them)."""
    import shlex

    out = []
    for flag, value in (("--model", model), ("--kb", kb), ("--dtype", dtype)):
        if value:
            p = Path(value).expanduser()
            shown = str(p.absolute()) if flag != "--dtype" and (flag == "--kb" or p.exists()) else value
            out += [flag, shlex.quote(shown)]
    return " ".join(out)


def run_link(input: Path, pipeline: Path, output: Path, **options: Any) -> dict[str, int]:
    """The body of ``glinker link`` (also used by tests; options as :func:`_run_link`'s): returns counts written /
    already done / bad. The pipeline is closed at the end, whatever happened (its stages' ``close()`` run)."""
    opened: list[Any] = []
    try:
        return _run_link(input, pipeline, output, opened=opened, **options)
    finally:
        for pipe in opened:
            pipe.close()


def _run_link(input: Path, pipeline: Path, output: Path, *, batch_size: int | None = None, model: str | None = None,
              kb: str | None = None, device: str | None = None, dtype: str | None = None, fmt: str = "auto",
              text_field: str = "text",
              skip_bad: bool = False, resume: bool = True, progress: bool = False, resume_unverified: bool = False,
              stats: bool = False, queue: str | None = None, job: str | None = None, max_in_flight: int = 32,
              heartbeat_ttl: float | None = None, max_attempts: int = 3,
              batch_timeout: float | None = None, opened: list[Any] | None = None) -> dict[str, int]:
    """:func:`run_link`'s work; the pipeline it loads is appended to ``opened`` (closed by the caller).

    With ``queue`` (a Redis URL) the batches are linked by ``glinker worker`` processes serving ``job``
    (:mod:`glinker.cluster`); reading, order, flushing, resuming and errors stay as in a local run."""
    import glinker
    from glinker.errors import StageError
    from glinker.io import (ResumeState, already_written, done_path, done_state, record_done, repair_jsonl_tail,
                            resume_state, write_jsonl)
    from glinker.stages.resources import watching_windows
    from glinker.stages.writers import HTMLWriter, JSONWriter
    from glinker.types import Document

    if fmt not in ("auto", "txt", "jsonl"):
        raise ConfigError(f"unknown input format {fmt!r}", where="--format", fix="use auto, txt or jsonl")
    fmt = _sniff(input, fmt)
    check_output(output, input, {".jsonl", ".json", ".html", ".htm"}, "linked.jsonl")
    why = _not_a_link_output(output)  # a file glinker did not write is neither appended to nor replaced
    if why is not None:
        raise ConfigError(f"the output {output} exists and is not one glinker link writes: {why}", where="--output",
                          fix="write to another file (-o), or delete this one if it may go")
    pipe = glinker.load_pipeline(str(pipeline), model=model, kb=kb, device=device, dtype=dtype)
    if opened is not None:
        opened.append(pipe)
    for name, stage in pipe.stages.items():
        f = type(stage).written_files(stage.params).get(os.path.abspath(output))
        if f is not None:
            raise ConfigError(f"stage {name!r} of {pipeline} writes {f}, the output of this run",
                              where="--output", fix="write the run's output (-o) to another file")
    out_kind = output.suffix.lower()
    # a queue job's workers must share the KBs and models (read once here; a missing KB fails before any record)
    resources = pipe.resource_ident() if queue else None
    # a page or array resumes only with its record of what it holds (one written before has none: started anew,
    # so another pipeline's page is replaced as before, not refused as a mix)
    claim = _claim_output(output, run_ident(pipe, model, kb, resources),
                          resume and (out_kind not in (".html", ".htm", ".json") or done_path(output).is_file()),
                          unverified=resume_unverified)
    writer: Any = None
    done = ResumeState()  # the documents already written (ids, text digests), in input order
    progress_file = done_path(output) if out_kind in (".html", ".htm", ".json") else None
    if progress_file is not None:
        # a page or JSON array is complete after every batch; what it holds is recorded beside it (ids, text
        # digests), so the run resumes as a JSONL output does: the page keeps the documents recorded
        kept = None
        if resume and output.is_file() and progress_file.is_file():
            done = done_state(progress_file)
            kept = done.lines
        else:
            progress_file.unlink(missing_ok=True)
        writer = (HTMLWriter if out_kind in (".html", ".htm") else JSONWriter)(
            output, continue_existing=kept is not None, keep=kept)
        if kept is not None and writer.count < done.lines:  # the page holds fewer (cut or replaced): those again
            log.warning("%s holds %d documents where %d were recorded: the others are linked again", output,
                        writer.count, done.lines)
            done = done_state(progress_file, keep=writer.count)
    elif not resume and output.exists():
        output.unlink()
    elif output.exists():
        # only the ids found at start are kept (memory grows with the resumed output, never with the new one)
        repair_jsonl_tail(output)
        done = resume_state(output)
    if done.lines:
        log.info("resuming: %d documents already in %s", done.lines, output)
        for stage in pipe.stages.values():  # files the pipeline's own writers hold: continued, not started anew
            stage.continue_output(done.lines)
    bs = batch_size or pipe.spec.header.settings.batch_size
    log_every = pipe.spec.header.settings.log_every
    problems: list[str] = []
    counts = {"written": 0, "skipped_done": 0, "bad": 0}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=None if _stdin(input) else _count_lines(input), desc="link", unit="line", file=sys.stderr,
                   dynamic_ncols=True,
                   disable=not sys.stderr.isatty())
    last_line = 0
    # in queue mode the input is read up to max_in_flight batches ahead: the bar follows what is written, each
    # answered batch moving it to its last input line (answers are written in input order)
    sent_lines: collections.deque[int] = collections.deque()
    shown = 0

    def write(recs: list[Any]) -> None:
        nonlocal shown
        if writer is not None:
            writer.write(recs)
            record_done(progress_file, recs)  # after the page holds them: a crash between leaves them re-linked
        else:
            write_jsonl(output, recs, append=True)
        if bar is not None and sent_lines:
            ln = sent_lines.popleft()
            bar.update(ln - shown)
            shown = ln
        before = counts["written"]
        counts["written"] += len(recs)
        if log_every and before // log_every != counts["written"] // log_every:  # `settings.log_every` of the pipeline
            log.info("%s: %d documents linked -> %s", pipe.name, counts["written"], output)

    coordinator = None
    before_term: Any = None  # the SIGTERM handler a queue run replaces while it runs
    if queue:
        import signal

        from glinker.cluster import DEFAULT_JOB, Coordinator, job_fingerprint

        try:
            coordinator = Coordinator(queue, job or DEFAULT_JOB, job_fingerprint(pipe.fingerprint(), resources),
                                      write, max_in_flight=max_in_flight, pipeline_name=pipe.name,
                                      max_attempts=max_attempts, batch_timeout=batch_timeout, resources=resources,
                                      identity=pipe.identity(),
                                      worker_args=_worker_args(model, kb, dtype),
                                      **({"heartbeat_ttl": heartbeat_ttl} if heartbeat_ttl else {}))
        except BaseException:
            claim.__exit__(None, None, None)  # no run happened: no run record is left (as a local run that fails)
            raise

        def _terminate(*_: Any) -> None:  # a scheduler's SIGTERM: end the job as Ctrl-C does (keys removed)
            raise KeyboardInterrupt

        if threading.current_thread() is threading.main_thread():
            before_term = signal.signal(signal.SIGTERM, _terminate)  # given back when the run ends (a library call)

    def flush(batch: list[tuple[int, Document]]) -> None:
        if not batch:
            return
        docs = [d for _, d in batch]
        lines = f"{input}:{batch[0][0]}-{batch[-1][0]}"
        if coordinator is not None:
            sent_lines.append(batch[-1][0])
            coordinator.submit({"docs": [d.model_dump(mode="json", exclude_defaults=True) for d in docs]}, lines)
            return
        watch = within(docs)
        try:
            with watching_windows(watch.see) if watch is not None else contextlib.nullcontext():
                res = pipe.run_batch(docs)
        except GlinkerError as e:
            kept = counts["written"] + counts["skipped_done"]
            said = (f"the {kept:,} documents before are in {output}" if kept else
                    f"no document was written to {output} before it")
            raise StageError(f"{e.message} (input lines {lines}; {said})", where=e.where, fix=e.fix) from e
        finally:
            if watch is not None:
                watch.close()
        write(output_records(res, docs))

    def within(docs: list[Document]) -> LongTextProgress | None:
        """How far the batch's long documents are read (the bar counts lines: one huge document holds it still for
        minutes): a bar of their words on a terminal, else INFO lines (-v); None when none is long or nothing would
        show it."""
        shows_bar = bar is not None and not bar.disable
        if not (shows_bar or log.isEnabledFor(logging.INFO)) or all(len(d.text) < LONG_TEXT_CHARS for d in docs):
            return None
        from tqdm import tqdm

        def make_bar(total: int, desc: str) -> Any:
            return tqdm(total=total, desc=desc, unit="word", file=sys.stderr, dynamic_ncols=True, leave=False)

        return LongTextProgress([d.text for d in docs], [d.id for d in docs], make_bar if shows_bar else None,
                                min_chars=LONG_TEXT_CHARS, verb="link", logger=log) or None

    batch: list[tuple[int, Document]] = []
    k = 0  # documents of the input read so far
    long_said = 0
    with claim, (pipe.gc_frozen() if coordinator is None else contextlib.nullcontext()):
        try:
            records = iter_input(input, fmt, skip_bad, text_field, problems)
            if coordinator is not None:  # answers are written while the input is slow to come (a pipe)
                records = _prefetched(records, coordinator.collect_ready)
            for n, rec in records:
                if bar is not None and coordinator is None:
                    bar.update(n - shown)
                    shown = n
                last_line = n
                k += 1
                if already_written(done, k, rec["id"], rec.get("text"), output, f"{input}:{n}",
                                   "link into another -o, or pass --no-resume to overwrite the output"):
                    counts["skipped_done"] += 1
                    continue
                batch.append((n, Document.model_validate(rec)))
                if len(rec.get("text") or "") >= LONG_DOCUMENT_CHARS and long_said < 3:
                    long_said += 1  # the bar counts lines: a huge document holds it still for minutes
                    say = f"{input}:{n}: a document of {len(rec['text']):,} characters is linked whole, which takes " \
                          "minutes on a CPU (about 3 s per 10,000 characters and core); " + \
                          ("a bar of its words shows how far it is read" if bar is not None and not bar.disable
                           else "-v logs how far it is read")
                    bar.write(say, file=sys.stderr) if bar is not None else typer.echo(say, err=True)
                if len(batch) >= bs:
                    flush(batch)
                    batch = []
            flush(batch)
            if coordinator is not None:
                coordinator.drain()
            if bar is not None:
                bar.update(last_line - shown)  # lines after the last batch: done or blank
        except DataError:
            flush(batch)  # the documents before the bad line are fine: keep them
            if coordinator is not None:
                coordinator.drain()
            raise
        finally:
            if coordinator is not None:
                coordinator.close()
                if before_term is not None:
                    import signal

                    signal.signal(signal.SIGTERM, before_term)
            if bar is not None:
                bar.close()
            if out_kind in (".html", ".htm", ".json"):
                writer.close()
            elif not output.exists():
                output.touch()  # an input without documents still gets its (empty) output
    counts["bad"] = len(problems)
    if stats and coordinator is None:
        typer.echo(pipe.stats.table(), err=True)
    elif stats:
        typer.echo("per-stage times are kept by each worker (`glinker worker --stats`)", err=True)
    return counts


def _prefetched(items: Iterator[Any], idle: Callable[[bool], None], wait: float = 0.5) -> Iterator[Any]:
    """``items`` read ahead by a thread of their own; while none is ready ``idle(True)`` runs every ``wait`` s, and
    ``idle(False)`` (not waiting) at least every ``wait`` s while they trickle in (a queue coordinator collects and
    writes answers meanwhile). An error of the reader is raised where it happened, after the items before it."""
    import queue
    import time

    box: queue.Queue = queue.Queue(maxsize=4096)
    end = object()
    stop = threading.Event()  # the consumer is gone (an error, Ctrl-C): the reader stops too

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=wait)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for x in items:
                if not put((True, x)):
                    return
        except BaseException as e:  # handed over to the consumer, in order
            put((False, e))
        finally:
            put((True, end))

    threading.Thread(target=read, name="glinker-input", daemon=True).start()
    last = time.monotonic()
    try:
        while True:
            if time.monotonic() - last >= wait:  # input trickling in: what is answered is written meanwhile
                idle(False)
                last = time.monotonic()
            try:
                ok, x = box.get(timeout=wait)
            except queue.Empty:
                idle(True)
                last = time.monotonic()
                continue
            if not ok:
                raise x
            if x is end:
                return
            yield x
    finally:
        stop.set()


def _not_a_link_output(output: Path) -> str | None:
    """Why the existing file ``output`` is no output of ``glinker link`` (None: it is one, is empty or missing), by
    the writers' own check (:func:`glinker.stages.writers.foreign_output`) with records of any kind (linked documents,
    or a pipeline's mentions or candidates). ``-o notes.txt`` is written as JSONL: without this it appended JSON lines
    to the notes (``--no-resume``: deleted them)."""
    from glinker.stages.writers import foreign_output

    fmt = {".html": "html", ".htm": "html", ".json": "json"}.get(output.suffix.lower(), "jsonl")
    return foreign_output(output, fmt, linked=False)


def check_output(output: Path, input: Path, kinds: set[str], example: str) -> None:
    """Refuse an output that cannot be written, that is the input itself (writing it would empty the input), or
    that names a compressed file (it would be written uncompressed); warn when its suffix is none of ``kinds``
    (the output is then JSONL)."""
    if output.is_dir():
        raise ConfigError(f"the output {output} is a directory", where="--output",
                          fix=f"give a file, e.g. -o {output / example}")
    if output.is_symlink():  # a link planted in a shared folder would have the run cut and append to its target
        raise ConfigError(f"the output {output} is a symbolic link (to {os.readlink(output)}): glinker does not "
                          "write through one", where="--output", fix="give the file's own path, or remove the link")
    if output.suffix.lower() in (".html", ".htm", ".json"):
        from glinker.io import done_path

        progress = done_path(output)
        if progress.is_symlink():  # read back, cut and appended to on resume: never through a link
            raise ConfigError(f"{progress}, the record of what {output.name} holds, is a symbolic link (to "
                              f"{os.readlink(progress)}): glinker does not write through one", where="--output",
                              fix="remove the link, or write to another file")
    suffix = output.suffix.lower()
    if suffix in (".gz", ".bz2", ".xz", ".zst", ".zip"):
        plain = output.with_suffix("")
        raise ConfigError(f"the output {output} names a compressed file; outputs are written uncompressed (a run "
                          "appends to its output as it goes and resumes it)", where="--output",
                          fix=f"write -o {plain} and compress it when the run is done (e.g. gzip {plain})")
    if suffix not in kinds:
        log.warning("%s: the output is written as JSONL (the output formats are %s)", output,
                    ", ".join(sorted(kinds)))
    if str(input) != "-" and output.exists() and input.exists() and os.path.samefile(output, input):
        raise ConfigError(f"the output {output} is the input file: writing it would erase the input", where="--output",
                          fix="write to another file")
    parent = output.parent if str(output.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the output's folder {parent}: {e.strerror}", where="--output",
                          fix="write somewhere you can") from None
    if not os.access(parent, os.W_OK) or (output.exists() and not os.access(output, os.W_OK)):
        raise ConfigError(f"cannot write {output} (permission denied)", where="--output", fix="write somewhere you can")


def linked_with(pipe: Any, model: str | None, kb: str | None) -> dict[str, Any]:
    """``{"model", "kb"}`` a run links with: the ones given (``--model``, ``--kb``), else the pipeline's own (a KB
    as :func:`glinker.stages.resources.shown_kb` shows it: read from its source as read, secrets masked)."""
    from glinker.stages.resources import shown_kb

    h = getattr(pipe.spec, "header", None)  # (a pipeline of another make may have none)
    return {"model": model or getattr(h, "model", None),
            "kb": kb or shown_kb(getattr(h, "kb", None), getattr(pipe.spec, "base_dir", None))}


def run_ident(pipe: Any, model: str | None, kb: str | None, resources: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    """What writes an output, for its run record: the pipeline's fingerprint, its model and KB as given (a KB read
    from its source as read, password hidden), and a digest of what the KBs and models hold (another KB rebuilt at
    the same path is another KB; `Pipeline.resource_ident`, or ``resources`` when already read)."""
    import hashlib


    h = pipe.spec.header

    def digest(res: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps({"kb": res["kb"], "model": res["model"]}, sort_keys=True,
                                         default=str).encode()).hexdigest()[:16]

    legacy: str | None = None
    try:
        res = resources if resources is not None else pipe.resource_ident()
        contents: str | None = digest(res)
        if any(not isinstance(k, str) and k is not None for k in _kb_refs(pipe)):
            # a kb: block was recorded as written until 2026-12-04: an output of then still resumes
            legacy = digest(pipe.resource_ident(kb_as_written=True))
    except GlinkerError:  # a missing KB: the stage that needs it says so when the run starts
        contents = None
    base = getattr(pipe.spec, "base_dir", None)
    out = {"pipeline": pipe.fingerprint(), **linked_with(pipe, model, kb), "contents": contents}
    try:  # what the fingerprint hashes, so that a refused resume can say which stage changed (not compared itself)
        out[_DETAIL] = _shown_identity(pipe.identity(), base)
    except Exception:  # noqa: BLE001 - a detail for messages only
        log.debug("no pipeline identity for the run record", exc_info=True)
    dtype = getattr(getattr(h, "settings", None), "dtype", None)
    if dtype is not None:  # named in a refusal (it is in the pipeline's fingerprint too); only when set
        out["dtype"] = dtype
    if legacy is not None and legacy != contents:
        out[LEGACY_CONTENTS] = legacy  # compared by _claim_output, never written
    return out


LEGACY_CONTENTS = "_legacy_contents"
_DETAIL = "identity"  # run-record key of the pipeline's identity: names what changed when "pipeline" differs
_SET_ONLY = ("dtype", "nprobe")  # run-record keys written only when set (older records lack them)


def _kb_refs(pipe: Any) -> list[Any]:
    """The KBs a pipeline's stages name (the header's, and each stage's own)."""
    refs = [pipe.spec.header.kb]
    for st in getattr(pipe.spec, "stages", {}).values():
        p = getattr(st, "params", None)
        refs.append(getattr(p, "kb", None))
    return refs


def _claim_output(output: Path, ident: dict[str, Any], resuming: bool, noun: str = "pipeline",
                  fix: str = "pass --no-resume to overwrite it, or write to another -o", flag: str = "--output",
                  unverified: bool | None = False) -> Any:
    """Hold ``OUTPUT.run.json`` locked for the run (a second ``glinker link`` on the same output is refused) and
    record in it what writes the output; a resumed JSONL output written by another pipeline, model or KB is
    refused (its links would be mixed with the new ones). Returns the claim (a context manager) that holds the lock.

    The output may go to a folder others can write (``-o /tmp/links.jsonl``): the record is never opened through a
    symbolic link (one planted there would have this run truncate and overwrite the file it points to), and it is
    never written in place. It is read, checked, and only then replaced whole (a temporary file beside it, renamed
    over it), so a run refused by the checks leaves it as it was.

    An output to resume that has no record (written by a glinker from before records existed, 2026-12-03, or by
    another program) cannot be checked: it is refused unless ``unverified`` (``--resume-unverified``: the caller
    says the same pipeline, model and KB wrote it; the record is written then); ``unverified=None`` says there is
    no such option (the refusal's fix is ``fix`` alone)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    ident = json.loads(json.dumps(ident, default=str))  # as it reads back
    legacy = ident.pop(LEGACY_CONTENTS, None)
    from glinker.io import Busy

    path = output.with_name(output.name + ".run.json")
    try:
        fd = _lock_record(path, flag)
    except Busy:
        raise ConfigError(f"another glinker {'link' if noun == 'pipeline' else 'ner'} is writing {output} (it holds "
                          f"{path})", where=flag,
                          fix="wait for it to finish, or write to another -o") from None
    try:
        before = _read_record(fd)
        if resuming and not isinstance(before, dict) and not unverified and output.exists() \
                and output.stat().st_size > 0:
            raise ConfigError(f"{output} has no run record ({path.name}): a glinker from before 2026-12-03 or another "
                              f"program wrote it, so which {noun} did cannot be checked, and resuming could mix two "
                              f"{noun}s' results in one file", where=flag,
                              fix=fix if unverified is None else
                              f"if this same {noun} (model, KB, settings) wrote it, resume with --resume-unverified "
                              f"(its record is written then); else {fix}")
        if resuming and isinstance(before, dict) and output.exists() and output.stat().st_size > 0:
            # a key recorded only when set (dtype) counts when either run set it
            keys = [*(k for k in ident if k != _DETAIL), *(k for k in _SET_ONLY if k in before and k not in ident)]
            differ = [k for k in keys if before.get(k) != ident.get(k)
                      and not (k == "contents" and legacy is not None and before.get(k) == legacy)
                      # a record of a build that kept the dtype in the pipeline fingerprint only
                      and not (k in _SET_ONLY and k not in before and "pipeline" in ident
                               and before.get("pipeline") == ident["pipeline"])]
            if differ:
                what = ", ".join(_pipeline_change(before.get(_DETAIL), ident.get(_DETAIL)) if k == "pipeline" else
                                 "what its KB or model holds (rebuilt or updated since)" if k == "contents" else
                                 "the labels (another set, or other descriptions, then)" if k == "labels" else
                                 f"{k} {_shown(before.get(k), k)} then, {_shown(ident.get(k), k)} now"
                                 for k in differ)
                raise ConfigError(f"{output} was written by another {noun} ({what}); resuming would mix two "
                                  f"{noun}s' results in one file", where=flag, fix=fix)
        fd = _replace_record(path, fd, json.dumps(ident, default=str) + "\n")
    except BaseException:
        _unlock_record(fd)
        raise
    return _Claim(fd, path, output)


def _shown_identity(ident: dict[str, Any], base: Any) -> dict[str, Any]:
    """A pipeline's identity as a run record keeps it (readable by others: mode 0644) and refusals print it: a
    stage's ``kb:`` block as :func:`shown_kb` shows it (the adapter's declared secrets too), then every parameter
    as a cluster job's metadata shows it (:func:`glinker.cluster.shown_params`)."""
    from glinker.cluster import shown_params
    from glinker.errors import GlinkerError
    from glinker.stages.resources import shown_kb

    out = json.loads(json.dumps(ident, default=str))
    for st in (out.get("stages") or {}).values():
        params = st.get("params")
        if isinstance(params, dict) and isinstance(params.get("kb"), dict):
            try:
                params["kb"] = shown_kb(params["kb"], base)
            except GlinkerError:  # an unset ${VAR}: masked as written
                pass
    return shown_params(out)


def _pipeline_change(before: Any, now: Any) -> str:
    """What changed in the pipeline between two run records, in a few words: a stage's parameter, or a plugin stage's
    class, distribution or version (an upgrade changes what it writes); generic for a record without the detail."""
    from glinker.cluster import _differences

    said = _differences(before, now) if isinstance(before, dict) and isinstance(now, dict) else ""
    return (f"the pipeline's stages or settings: {said.replace(' there, ', ' then, ').replace(' here)', ' now)')}" if said else
            "the pipeline's stages or settings")


def _lock_record(path: Path, flag: str) -> int:
    """A descriptor of the run record at ``path`` (created empty when missing), exclusively locked; :class:`Busy`
    when another run holds it. Opened read-write (an exclusive lock on NFS needs it) but never truncated, without
    following a symbolic link (``O_NOFOLLOW``: a link planted at ``path`` is refused, its target never opened) and
    without blocking on a FIFO; anything but a regular file is refused. A record that another run replaced or
    removed between our open and our lock is opened again: the lock must be on the file that is at ``path`` now
    (the record is replaced whole, see :func:`_replace_record`)."""
    from glinker.io import lock_exclusive, open_plain

    fix = "remove it (a run record is a plain file glinker writes), or write to another -o"
    while True:
        # read-write although nothing is written through it: NFS emulates flock with byte-range locks, and an
        # exclusive one needs a file opened for writing (flock(2)); no O_TRUNC, so opening never changes the file
        fd = open_plain(path, os.O_RDWR | os.O_CREAT, what=", this output's run record", where=flag, fix=fix)
        st = os.fstat(fd)
        try:
            lock_exclusive(fd, path, what=", this output's run record", where=flag,
                           fix="write the output to a local file system, or one with working file locks")
        except BaseException:
            os.close(fd)
            raise
        try:
            now = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
            return fd
        _unlock_record(fd)  # the run that held it replaced or removed it meanwhile: lock the one there now


def _read_record(fd: int) -> Any:
    """The run record read from the locked descriptor: its JSON, or None when empty or not JSON."""
    with open(fd, "rb", closefd=False) as f:
        raw = f.read()
    try:
        return json.loads(raw.decode("utf-8") or "null")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _replace_record(path: Path, fd: int, text: str) -> int:
    """Write ``text`` as the run record at ``path`` and return the descriptor that now holds the lock: a temporary
    file beside it, locked, written and renamed over the record (``os.replace``), so the record is never truncated
    and never written through a link; the lock on the replaced file (``fd``) is then released. A run that opened the
    replaced file finds it is no longer at ``path`` and locks the new one (:func:`_lock_record`)."""
    import tempfile

    from glinker.io import lock_exclusive, plain_mode

    new, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        lock_exclusive(new, tmp)  # a file of our own: nobody else holds it
        data = text.encode("utf-8")
        while data:
            data = data[os.write(new, data):]
        plain_mode(tmp)  # the mode a plain open() gave the record (mkstemp's is owner-only)
        os.replace(tmp, path)
    except BaseException:
        os.close(new)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _unlock_record(fd)
    return new


def _unlock_record(fd: int) -> None:
    """Release the lock on a run record's descriptor and close it."""
    from glinker.io import unlock

    try:
        unlock(fd)
    finally:
        os.close(fd)


def _shown(value: Any, key: str = "") -> str:
    """A run record's value in a message: ``none`` for no value (not Python's None), a switch on or off; an unset
    dtype is the checkpoint's precision, a model's fingerprint (``glinker ner`` records it) its first 12 characters."""
    if value is None:
        return "the checkpoint's (not set)" if key == "dtype" else "none"
    if isinstance(value, bool):  # a switch (flat_ner, multi_label): "on"/"off", not Python's True/False
        return "on" if value else "off"
    if key == "model" and isinstance(value, str) and re.fullmatch(r"[0-9a-f]{32,}", value):  # (not a name or path)
        return f"fingerprint {value[:12]}"
    return repr(value)


class _Claim:
    """The locked ``OUTPUT.run.json``; released at the end of the run, and removed when the run wrote no output
    (it failed before its first document: loading the model or KB), so no record is left of a run that did not
    happen."""

    def __init__(self, fd: int, path: Path, output: Path) -> None:
        self.fd: int | None = fd
        self.path, self.output = path, output

    def __enter__(self) -> "_Claim":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is None:  # released already (a run that ended before its `with` block)
            return
        try:
            if not self.output.exists():
                self.path.unlink(missing_ok=True)
        finally:
            fd, self.fd = self.fd, None
            _unlock_record(fd)


def output_records(res: Any, docs: Sequence[Any]) -> list[Any]:
    """One output record per document of a batch result: the linked document, or (for a pipeline that ends
    before linking) its mentions or output as a dict."""
    out = res.output if isinstance(res.output, list) else [res.output]
    kind = getattr(res, "kind", "")
    return [o if hasattr(o, "links") else _as_record(o, d, kind) for o, d in zip(out, docs)]


def json_records(res: Any, docs: Sequence[Any]) -> list[dict[str, Any]]:
    """:func:`output_records` as plain JSON-ready dicts (what workers and the HTTP server send)."""
    from glinker.io import to_jsonable

    return [to_jsonable(r) for r in output_records(res, docs)]


def _as_record(out: Any, doc: Any, kind: str = "") -> dict[str, Any]:
    """A non-linking pipeline's per-document output as a JSON record: its mentions, or (a pipeline that ends at a
    candidates stage: ``kind``) each mention with its candidates."""
    from glinker.io import to_jsonable
    from glinker.stages.records import CANDIDATES

    if kind == CANDIDATES:
        return {"id": doc.id, "text": doc.text, "candidates": [
            {"mention": to_jsonable(mc.mention), "candidates": [to_jsonable(c) for c in mc.candidates]} for mc in out]}
    if isinstance(out, list):
        return {"id": doc.id, "text": doc.text, "mentions": [to_jsonable(m) for m in out]}
    return {"id": doc.id, "text": doc.text, "output": to_jsonable(out) if hasattr(out, "model_dump") else out}
