"""`glinker train --config train.yaml`: train (or resume) a bi-encoder, then export it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def train(config: Path = typer.Option(..., "--config", "-c", help="Training YAML (see docs/training.md)."),
          set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a key: --set train.steps=100 (repeatable)."),
          export: Optional[Path] = typer.Option(None, help="Where to write the final gliner-format checkpoint "
                                                "(default: <output_dir>/final)."),
          ship: Optional[Path] = typer.Option(None, help="Also write the small shipped form (trained weights "
                                              "only, encoders from their packages) into this folder."),
          ship_format: str = typer.Option("int8-diff", help="Shipped delta format: int8-diff (encoder changes as int8 "
                                          "differences from the packaged weights), int4-diff (4-bit differences, "
                                          "int8 head: smallest, for many trained layers) or float16."),
          stop_at: Optional[int] = typer.Option(None, min=1, help="Stop at this step (continue later with the same command)."),
          ) -> None:
    """Train a GLiNER bi-encoder. Re-running the same command resumes from the last checkpoint."""
    import logging
    import sys

    import yaml

    _show_progress_when_redirected(logging.getLogger("glinker.model.train"), sys.stderr)

    from glinker.model.train import Trainer, load_train_config

    overrides = {}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set needs key=value, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    from glinker.errors import ModelError
    from glinker.model.shipped import check_delta_format, export_shipped

    try:
        check_delta_format(ship_format)  # before training, not after it
    except ModelError as e:
        raise typer.BadParameter(str(e), param_hint="--ship-format") from None
    cfg = load_train_config(config, overrides)
    for what, path in (("output_dir", Path(cfg.output_dir)), ("--export", export)):
        if path is not None and path.exists() and not path.is_dir():
            raise typer.BadParameter(f"{path} is a file; training writes a folder there", param_hint=what)
    t = Trainer(cfg)
    t.setup()
    if t.step:
        typer.echo(f"resuming at step {t.step}", err=True)
    result = t.train(stop_at=stop_at)
    if t.step < cfg.train.steps:
        typer.echo(f"stopped at step {t.step}; run the same command to continue", err=True)
        return
    path = t.export(export)
    typer.echo(f"model: {path}")
    if ship is not None:
        typer.echo(f"shipped form: {export_shipped(t.model, ship, cfg, fmt=ship_format)}")
    typer.echo(json.dumps(result, default=str))


def _show_progress_when_redirected(logger, stream) -> None:
    """Training runs for hours, usually with stderr sent to a file, where the progress bar is off: keep the
    trainer's step lines (loss, learning rate, examples/s, dev F1) at INFO there even without ``-v``."""
    import logging

    isatty = getattr(stream, "isatty", None)
    if not (isatty and isatty()) and logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
