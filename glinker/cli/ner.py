"""`glinker ner`: named-entity recognition with a GLiNER bi-encoder over text or JSONL files."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from glinker.cli import dtype_option
from glinker.cli.long_texts import LONG_TEXT_CHARS, LongTextProgress

from glinker.errors import ConfigError, DataError
from glinker.io import InputIds, check_text, wide_text_error
from glinker.model.shipped import DEFAULT_MODEL

log = logging.getLogger(__name__)


def _terminal() -> bool:
    return sys.stderr.isatty()


def _read_docs(path: Path, text_field: str, whole_file: bool, skip_bad: bool = False,
               pos: list[int] | None = None) -> Iterator[dict]:
    """Documents {id, text} from a .txt (one per line, or the whole file) or .jsonl file; '-' is stdin. A bad
    line raises a DataError naming it, or is skipped with a warning when ``skip_bad``. ``pos[0]`` follows the
    input lines read (blank and skipped ones included)."""
    for item in _read_lines(path, text_field, whole_file, pos):
        if isinstance(item, DataError):
            if not skip_bad:
                raise item
            log.warning("skipped %s: %s", item.where, item.message)
            continue
        yield item


def _read_lines(path: Path, text_field: str, whole_file: bool,
                pos: list[int] | None = None) -> Iterator[dict | DataError]:
    is_jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
    name = "<stdin>" if str(path) == "-" else str(path)
    try:
        fh = sys.stdin.buffer if str(path) == "-" else path.open("rb")
    except OSError as e:
        raise DataError(f"cannot read input: {e.strerror}", where=name, fix="check the path") from None
    if str(path) == "-" and hasattr(fh, "peek"):  # standard input has no suffix: JSONL when it starts with an object
        head = fh.peek(65536)                    # (as `glinker link -` reads it; looked at, not consumed)
        first = next((ln.strip().removeprefix(b"\xef\xbb\xbf").lstrip() for ln in head.splitlines() if ln.strip()),
                     b"")
        is_jsonl = first.startswith(b"{")

    def decode(raw: bytes, where: str) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})", where=where,
                            fix="re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8), or pass "
                                "--skip-bad") from None

    ids = InputIds(name)  # a record without an id: its line number, never an earlier record's id
    if hasattr(fh, "peek"):  # UTF-16/32 (Notepad's "Unicode"): said as such, not read as NUL-riddled UTF-8 text
        wide = wide_text_error(name, fh.peek(64)[:64])
        if wide is not None:
            if str(path) != "-":
                fh.close()
            raise wide
    with fh:
        if whole_file and not is_jsonl:
            text = decode(fh.read().removeprefix(b"\xef\xbb\xbf"), name)
            check_text(text, name)
            yield {"id": "0", "text": text}
            return
        for n, raw in enumerate(fh, 1):
            if pos is not None:
                pos[0] = n
            where = f"{name}:{n}"
            try:
                line = decode(raw.removeprefix(b"\xef\xbb\xbf") if n == 1 else raw, where)
                if not line.strip():
                    continue
                if not is_jsonl:
                    check_text(line, where)
                    yield {"id": str(n), "text": line.rstrip("\r\n")}
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"invalid JSON at column {e.colno}: {e.msg}", where=where,
                                    fix="one JSON object per line; or pass --skip-bad") from None
                if not isinstance(rec, dict) or not isinstance(rec.get(text_field), str):
                    raise DataError(f"record has no string field {text_field!r}", where=where,
                                    fix=f"give every line a {text_field!r} field, or pass --text-field; or "
                                        "--skip-bad")
                check_text(rec[text_field], where)
                if "id" not in rec:
                    rec["id"] = ids.assign(None, n)
                elif rec["id"] is not None:  # kept as given (a number stays a number); null stays null
                    ids.assign(rec["id"], n)
            except DataError as e:
                yield e
                continue
            yield rec


def _labels(labels: str | None, labels_file: Path | None, bank: Path | None) -> object:
    given = sum(x is not None for x in (labels, labels_file, bank))
    if given != 1:
        raise ConfigError(
            "give exactly one of --labels, --labels-file, --label-bank",
            where="ner",
            fix="e.g. --labels person,organization,location",
        )
    if bank is not None:
        from glinker.model import LabelBank

        return LabelBank.load(bank)
    if labels_file is not None:
        from glinker.model.labels import read_labels_file

        return read_labels_file(labels_file)
    out = [x.strip() for x in labels.split(",") if x.strip()]
    if not out:
        raise ConfigError("no labels given", where="--labels", fix="e.g. --labels person,organization")
    return out


def ner(
    input: Path = typer.Argument(
        ..., help="Input .txt (one text per line) or .jsonl ({'text': ...} per line); - for stdin (read as JSONL when its first line is a JSON object)."
    ),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Shipped model name, checkpoint folder or Hugging Face hub id (default: the shipped model)."),
    labels: list[str] | None = typer.Option(
        None, "--labels", "-l", help="Comma-separated labels, e.g. person,organization (repeatable: -l person -l "
        "location)."
    ),
    labels_file: Path | None = typer.Option(
        None, "--labels-file", help="One label per line (# comments), .json list / {name: description}, or .jsonl "
        "{name, description} lines."
    ),
    label_bank: Path | None = typer.Option(None, "--label-bank", help="A label bank folder written by `glinker labels build` (or LabelBank.save)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write JSONL here (default: stdout)."),
    threshold: float = typer.Option(0.5, "--threshold", "-t", min=0.0, max=1.0, help="Keep entities scoring above this (strictly)."),
    nested: bool = typer.Option(False, "--nested", help="Allow nested entities (default: flat)."),
    multi_label: bool = typer.Option(False, "--multi-label", help="Allow several labels on the same span."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", min=1, help="Texts per forward pass."),
    text_field: str = typer.Option("text", "--text-field", help="JSONL field holding the text."),
    whole_file: bool = typer.Option(False, "--whole-file", help="Treat a .txt input as one document."),
    truncate: bool = typer.Option(
        False, "--truncate", help="Cut long texts like gliner instead of chunking them."
    ),
    device: str | None = typer.Option(None, "--device", help="torch device, e.g. cpu or cuda."),
    dtype: str | None = dtype_option(),
    label_top_k: int | None = typer.Option(
        None,
        "--label-top-k",
        min=0,
        help="Score each span against only the K labels a FAISS index retrieves (0: every label; "
        "default: 64 for label banks of 100,000 labels or more, every label below).",
    ),
    nprobe: int | None = typer.Option(
        None, "--nprobe", min=1, help="Lists of an IVF label index searched per span (default: 1/8 of them, 3/8 for an "
        "index built before its smallest labels were scored exactly; fewer is faster and misses more of what "
        "exhaustive scoring finds: docs/model.md)."),
    window_words: int | None = typer.Option(
        None, "--window-words", min=0, help="Read long texts in windows of at most N words (default: the model's "
        "`window_words`, else its max_len; 0: max_len)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip bad input lines (with a warning) instead of "
                                  "stopping at the first."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue an interrupted run into the same -o "
                                "(the default), or start the output over."),
    resume_unverified: bool = typer.Option(False, "--resume-unverified", help="Continue an output that has no run "
                                           "record (written before glinker kept one, 2026-12-03), which cannot be "
                                           "checked: you say this same model, labels and settings wrote it."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="A progress bar on a terminal."),
) -> None:
    """Find entities of the labels given with -l (or --labels-file, --label-bank) in INPUT and write one JSON line per document.

    Each output line is the input record (or {id, text}) plus "entities": [{start, end, text, label, score}]
    with character offsets, and "truncated": whether part of the text was not read. With -o, the output is
    flushed every 256 documents; a bad input line stops the run after the documents before it are written; a
    re-run resumes after the documents already written (same model, labels and settings).
    """
    from itertools import islice

    from glinker.cli.link import _claim_output, _count_lines, check_output
    from glinker.io import ResumeState, already_written, json_line, open_plain_file, repair_jsonl_tail, resume_state
    from glinker.model import BiEncoder
    from glinker.model.labels import _labels_digest

    if output is not None:  # before anything slow: where the results go
        check_output(output, input, {".jsonl"}, "entities.jsonl")
    if str(input) != "-" and (input.is_dir() or not input.exists()):  # and what they come from (pipes are fine)
        raise DataError("cannot read input: " + ("it is a directory" if input.is_dir() else "no such file"),
                        where=str(input), fix="check the path")
    # -l person -l location: every one (the last alone was kept, the others dropped without a word)
    lab = _labels(",".join(labels) if labels else None, labels_file, label_bank)
    m = BiEncoder.from_pretrained(model, device=device, window_words=window_words, dtype=dtype)
    if isinstance(lab, (list, dict)):
        lab = m.encode_labels(lab, progress=len(lab) >= 2048 and progress)  # encoded once, reused for every batch
    if nprobe is not None:
        lab.nprobe = nprobe
    settings = {"model": m.fingerprint, "labels": _labels_digest(lab.names, lab.prompts, lab.dim, m.fingerprint),
                "threshold": threshold, "nested": nested, "multi_label": multi_label, "truncate": truncate,
                "label_top_k": label_top_k, "window_words": window_words, "text_field": text_field,
                "whole_file": whole_file}
    if nprobe is not None:  # only when given: outputs written before --nprobe existed still resume
        settings["nprobe"] = nprobe
    if dtype is not None:  # only when given: outputs written before --dtype existed still resume
        settings["dtype"] = dtype
    claim = None
    done = ResumeState()
    if output is not None:
        claim = _claim_output(output, settings, resume, noun="run", unverified=resume_unverified)
        if resume and output.exists():
            repair_jsonl_tail(output)
            done = resume_state(output, text_field)
        else:
            open_plain_file(output, "w", where="--output", special_ok=True).close()  # never through a link
    pos = [0]  # input lines read: the bar counts lines (blank, skipped and already written ones too)
    docs = _read_docs(input, text_field, whole_file, skip_bad, pos)  # streamed: memory does not grow with the input
    bar = None
    if progress and output is not None and str(input) != "-":
        from tqdm import tqdm

        bar = tqdm(total=_count_lines(input), desc="ner", unit="line", file=sys.stderr, dynamic_ncols=True,
                   disable=not sys.stderr.isatty())
    out = sys.stdout if output is None else open_plain_file(output, "a", where="--output", special_ok=True)
    k = 0

    def skip_done() -> Iterator[dict]:
        nonlocal k
        for d in docs:
            k += 1
            if not already_written(done, k, str(d.get("id")), d.get(text_field, d.get("text")), output, str(input),
                                   "write to another -o, or pass --no-resume to start the output over"):
                yield d

    def make_bar(total: int, desc: str) -> Any:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="word", file=sys.stderr, dynamic_ncols=True, leave=False)

    def within(texts: list[str], chunk: list[dict]) -> LongTextProgress | None:
        """Progress within the chunk's long texts: a bar on a terminal (with -o, as the bar of lines), else INFO
        lines (-v). None, so that the model is not asked for it, when no text is long or nothing would show it."""
        on_bar = progress and output is not None and _terminal()
        if truncate or not (on_bar or log.isEnabledFor(logging.INFO)) \
                or all(len(t) < LONG_TEXT_CHARS for t in texts):
            return None  # --truncate: one window a text
        return LongTextProgress(texts, [d.get("id") for d in chunk], make_bar if on_bar else None,
                                min_chars=LONG_TEXT_CHARS, logger=log)

    def run(chunk: list[dict]) -> None:
        texts = [d[text_field] if text_field in d else d["text"] for d in chunk]
        watch = within(texts, chunk)
        try:
            res = m.predict(texts, lab, threshold=threshold, flat_ner=not nested, multi_label=multi_label,
                            batch_size=batch_size, long_text="truncate" if truncate else "chunk",
                            label_top_k=label_top_k, on_window=watch)
        finally:
            if watch is not None:
                watch.close()
        for d, ents in zip(chunk, res):
            rec = {**d, "entities": list(ents), "truncated": bool(getattr(ents, "truncated", False))}
            out.write(json_line(rec) + "\n")
        out.flush()  # results already written survive an error on a later line
        if bar is not None:
            bar.update(pos[0] - bar.n)

    todo = skip_done()
    try:
        with claim if claim is not None else contextlib.nullcontext():
            if done.lines:
                log.info("resuming: %d documents already in %s", done.lines, output)
            while True:
                chunk: list[dict] = []
                try:
                    chunk.extend(islice(todo, 256))
                except DataError:
                    run(chunk)  # the documents before the bad line are written first
                    raise
                if not chunk:
                    if bar is not None and bar.total:
                        bar.update(bar.total - bar.n)  # the lines after the last document
                    break
                run(chunk)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: the documents written so far are kept in {output}; run the same command again "
                   "to continue" if output is not None else "interrupted", err=True)
        raise typer.Exit(130) from None
    finally:
        if bar is not None:
            bar.close()
        if output is not None:
            out.close()


def register(app: typer.Typer) -> None:
    """Add `glinker ner` to the root app."""
    app.command("ner")(ner)
