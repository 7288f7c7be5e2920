"""`glinker ner`: named-entity recognition with a GLiNER bi-encoder over text or JSONL files."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import typer

from glinker.errors import ConfigError, DataError
from glinker.io import check_text


def _read_docs(path: Path, text_field: str, whole_file: bool) -> Iterator[dict]:
    """Documents {id, text} from a .txt (one per line, or the whole file) or .jsonl file; '-' is stdin."""
    is_jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
    name = "<stdin>" if str(path) == "-" else str(path)
    try:
        fh = sys.stdin.buffer if str(path) == "-" else path.open("rb")
    except OSError as e:
        raise DataError(f"cannot read input: {e.strerror}", where=name, fix="check the path") from None

    def decode(raw: bytes, where: str) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})", where=where,
                            fix="re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None

    with fh:
        if whole_file and not is_jsonl:
            yield {"id": "0", "text": decode(fh.read().removeprefix(b"\xef\xbb\xbf"), name)}
            return
        for n, raw in enumerate(fh, 1):
            line = decode(raw.removeprefix(b"\xef\xbb\xbf") if n == 1 else raw, f"{name}:{n}")
            if not line.strip():
                continue
            if not is_jsonl:
                yield {"id": str(n), "text": line.rstrip("\r\n")}
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"invalid JSON: {e.msg}", where=f"{name}:{n}", fix="one JSON object per line"
                ) from None
            if not isinstance(rec, dict) or not isinstance(rec.get(text_field), str):
                raise DataError(
                    f"record has no string field {text_field!r}",
                    where=f"{name}:{n}",
                    fix=f"give every line a {text_field!r} field, or pass --text-field",
                )
            check_text(rec[text_field], f"{name}:{n}")
            rec.setdefault("id", str(n))
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
        ..., help="Input .txt (one text per line) or .jsonl ({'text': ...} per line); - for stdin."
    ),
    model: str = typer.Option(..., "--model", "-m", help="Shipped model name (glinker-bi-minilm), checkpoint folder or Hugging Face hub id."),
    labels: str | None = typer.Option(
        None, "--labels", "-l", help="Comma-separated labels, e.g. person,organization."
    ),
    labels_file: Path | None = typer.Option(
        None, "--labels-file", help="One label per line, or .json list / {name: description}."
    ),
    label_bank: Path | None = typer.Option(None, "--label-bank", help="A label bank folder written by `glinker labels build` (or LabelBank.save)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write JSONL here (default: stdout)."),
    threshold: float = typer.Option(0.5, "--threshold", "-t", min=0.0, max=1.0, help="Minimum score."),
    nested: bool = typer.Option(False, "--nested", help="Allow nested entities (default: flat)."),
    multi_label: bool = typer.Option(False, "--multi-label", help="Allow several labels on the same span."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", min=1, help="Texts per forward pass."),
    text_field: str = typer.Option("text", "--text-field", help="JSONL field holding the text."),
    whole_file: bool = typer.Option(False, "--whole-file", help="Treat a .txt input as one document."),
    truncate: bool = typer.Option(
        False, "--truncate", help="Cut long texts like gliner instead of chunking them."
    ),
    device: str | None = typer.Option(None, "--device", help="torch device, e.g. cpu or cuda."),
    label_top_k: int | None = typer.Option(
        None,
        "--label-top-k",
        min=0,
        help="Score each span against only the K labels a FAISS index retrieves (0: every label; "
        "default: 64 for label banks of 100,000 labels or more, every label below).",
    ),
    window_words: int | None = typer.Option(
        None, "--window-words", min=0, help="Read long texts in windows of at most N words (default: the model's "
        "`window_words`, else its max_len; 0: max_len)."),
) -> None:
    """Find entities of the given LABELS in INPUT and write one JSON line per document.

    Each output line is the input record (or {id, text}) plus "entities": [{start, end, text, label, score}]
    with character offsets, and "truncated": whether part of the text was not read.
    """
    from glinker.model import BiEncoder

    from itertools import islice

    lab = _labels(labels, labels_file, label_bank)
    docs = _read_docs(input, text_field, whole_file)  # streamed: memory does not grow with the input
    m = BiEncoder.from_pretrained(model, device=device, window_words=window_words)
    if isinstance(lab, (list, dict)):
        lab = m.encode_labels(lab)  # encoded once, reused for every batch
    if output is not None and output.is_dir():
        raise ConfigError(f"the output {output} is a directory", where="--output",
                          fix=f"give a file, e.g. -o {output / 'entities.jsonl'}")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
    out = sys.stdout if output is None else output.open("w", encoding="utf-8")
    try:
        while chunk := list(islice(docs, 256)):
            res = m.predict(
                [d[text_field] if text_field in d else d["text"] for d in chunk],
                lab,
                threshold=threshold,
                flat_ner=not nested,
                multi_label=multi_label,
                batch_size=batch_size,
                long_text="truncate" if truncate else "chunk",
                label_top_k=label_top_k,
            )
            for d, ents in zip(chunk, res):
                rec = {**d, "entities": list(ents), "truncated": bool(getattr(ents, "truncated", False))}
                out.write(json.dumps(rec, ensure_ascii=False) + "\n")
            out.flush()  # results already written survive an error on a later line
    finally:
        if output is not None:
            out.close()


def register(app: typer.Typer) -> None:
    """Add `glinker ner` to the root app."""
    app.command("ner")(ner)
