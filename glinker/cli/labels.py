"""``glinker labels``: build label banks (any number of labels, straight to disk, resumable) and inspect them."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer

from glinker.cli import dtype_option

from glinker.model.shipped import DEFAULT_MODEL

labels_app = typer.Typer(help="Build and inspect label banks (precomputed label vectors).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Attach the ``labels`` command group to the root CLI."""
    app.add_typer(labels_app, name="labels")


@labels_app.command("build")
def build(
    labels_file: Path = typer.Argument(..., help="One label per line (# comments), .json list / {name: description}, "
                                       "or .jsonl {name, description} lines."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Checkpoint folder, shipped model name or hub id (default: the shipped model)."),
    out: Path = typer.Option(..., "--out", "-o", help="Bank folder to write (memory-mapped vectors.npy)."),
    index: str = typer.Option(
        "auto",
        "--index",
        help="FAISS index over the vectors: 'auto' (from 100,000 labels an inverted file of about N/256 lists, "
        "IVF512,Flat for 100k, IVF4096,Flat for 1M, scored by matrix products; none below; `glinker ner` uses it from 100,000 labels), "
        "'none', or a faiss factory string such as Flat, "
        "IVF4096,Flat, HNSW32.",
    ),
    exact_share: float | None = typer.Option(
        None, "--exact-share", min=0.0, max=0.99,
        help="Share of labels, those with the smallest vectors, that an IVF index leaves out of its lists to be "
        "scored exactly for every span (default 0.05; 0: none). They are the generic labels (person, location) "
        "the nearest lists miss most.",
    ),
    batch_size: int = typer.Option(256, "--batch-size", "-b", min=1, help="Labels per encoder forward pass."),
    chunk_size: int = typer.Option(
        16_384, "--chunk-size", min=1, help="Labels encoded and flushed to disk between progress records."
    ),
    resume: bool = typer.Option(True, "--resume/--restart", help="Continue an interrupted build in OUT."),
    device: str | None = typer.Option(None, "--device", help="torch device, e.g. cpu or cuda."),
    dtype: str | None = dtype_option(extra="An interrupted build resumes only in the same one (another starts over)."),
    queue: str | None = typer.Option(None, "--queue", help="Redis URL: encode on `glinker worker --model M --queue URL` processes (any machines) instead of here."),
    job: str | None = typer.Option(None, "--job", help="With --queue: the job name the workers serve (default: 'default')."),
) -> None:
    """Encode LABELS_FILE into a label bank folder for `glinker ner --label-bank` and `LabelBank.load`.

    Vectors go straight to disk a chunk at a time (memory stays flat for a million labels); an interrupted
    build resumes where it stopped. Prints one JSON line with the counts and timings.
    """
    from glinker.cli.ner import _labels
    from glinker.errors import ConfigError
    from glinker.model import BiEncoder
    from glinker.model.labels import DEFAULT_INDEX_THRESHOLD, check_factory, exact_count, large_factory

    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file", where="--out", fix="give a folder for the label bank")
    if job is not None and queue is None:
        raise ConfigError("--job names a queue's job and needs --queue", where="--job", fix="add --queue URL, or drop --job")
    from glinker.model.labels import check_bank_folder

    check_bank_folder(out)  # before the model loads, not after
    labels = _labels(None, labels_file, None)
    t0 = time.perf_counter()
    m = BiEncoder.from_pretrained(model, device=device, dtype=dtype)
    load_s = time.perf_counter() - t0
    n = len(labels)
    factory = index
    if index == "auto":
        factory = large_factory(n) if n >= DEFAULT_INDEX_THRESHOLD else "none"
    if factory != "none":
        check_factory(factory, n, m.dim)  # before the encoding, not after it
    t0 = time.perf_counter()
    bar = sys.stderr.isatty()  # bars on a terminal only: none drawn into a redirected log
    from glinker.cli.stopping import stoppable
    from glinker.cluster import queued_encoder
    from glinker.model.labels import rows_done

    def say(how: str) -> str:  # `kill` or a scheduler stopping the build says what Ctrl-C says (exit 143)
        done = rows_done(out, n)
        at = f" at {done:,} of {n:,} labels" if done else ""
        return (f"{how}{at}: the labels encoded so far are kept; run the same command again to continue ({out} is "
                "built only when it finishes)")

    with stoppable(say), queued_encoder(m, queue, job, model) as remote:
        bank = m.encode_labels_to(labels, out, batch_size=batch_size, chunk_size=chunk_size, progress=bar,
                                  resume=resume, encoder=remote)
    enc_s = time.perf_counter() - t0
    idx_s = 0.0
    same = bank.has_index and bank.index_factory == factory and (
        exact_share is None or _bank_meta(out).get("exact_labels", 0) == exact_count(factory, len(bank), exact_share))
    if factory != "none" and not same:
        t1 = time.perf_counter()
        bank.build_index(factory, progress=bar, exact_share=exact_share)
        bank.save_index(out)
        if m.device.type == "cpu" and factory.upper().startswith("IVF"):
            _save_lowp_lists(m, bank, out)
        idx_s = time.perf_counter() - t1
    elif factory == "none" and bank.has_index:
        bank.drop_index(out)  # --index none: a bank without an index, as asked
    typer.echo(
        json.dumps(
            {
                "bank": str(out),
                "labels": len(bank),
                "dim": bank.dim,
                "model_load_s": round(load_s, 1),
                "encode_s": round(enc_s, 1),
                "index": None if factory == "none" else factory,
                "index_s": round(idx_s, 1),
            }
        )
    )


def _save_lowp_lists(m: Any, bank: Any, out: Path) -> None:
    """Where this CPU scores through the low-precision pre-filter, write the IVF index's lists in that precision
    beside it now (memory-mapped at scoring time; otherwise written at first use, which a read-only deployment
    of the folder cannot do)."""
    from glinker.model import scoring

    info = scoring.lowp_prefilter(m.device) if m.lowp else None
    if info is None:
        return
    bank.ivf_lists(lowp=info.dtype)  # the bank is the folder's: its lists are saved there


def _bank_meta(bank_dir: Path) -> dict:
    """A bank folder's label_bank.json ({} when unreadable)."""
    try:
        meta = json.loads((Path(bank_dir) / "label_bank.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


@labels_app.command("info")
def info(bank_dir: Path = typer.Argument(..., help="A label bank folder.")) -> None:
    """Print a bank's label count, dimension, model fingerprint and index as one JSON line."""
    from glinker.model import LabelBank

    bank = LabelBank.load(bank_dir)
    meta = _bank_meta(bank_dir)
    vec = Path(bank_dir) / "vectors.npy"
    typer.echo(
        json.dumps(
            {
                "labels": len(bank),
                "dim": bank.dim,
                "model_fingerprint": bank.model_fingerprint,
                # the precision the vectors were computed in, as the build recorded it (None: built before it did)
                "precision": meta.get("precision"),
                "index": bank.index_factory if bank.has_index else None,
                # labels the IVF index leaves out of its lists, scored exactly for every span
                "exact_labels": meta.get("exact_labels", 0) if bank.has_index else None,
                "vectors_bytes": vec.stat().st_size,
                "first": bank.names[:3],
            }
        )
    )
