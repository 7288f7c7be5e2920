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
    from glinker.model.shipped import check_delta_format

    try:
        check_delta_format(ship_format)  # before training, not after it
    except ModelError as e:
        raise typer.BadParameter(str(e), param_hint="--ship-format") from None
    cfg = load_train_config(config, overrides)
    for what, path in (("output_dir", Path(cfg.output_dir)), ("--export", export)):
        if path is not None and path.exists() and not path.is_dir():
            raise typer.BadParameter(f"{path} is a file; training writes a folder there", param_hint=what)
    t = Trainer(cfg)
    t.setup()  # holds output_dir until t.close(): a second run into it is refused, naming this one
    try:
        _run(t, cfg, export, ship, ship_format, stop_at)
    finally:
        t.close()


def _run(t, cfg, export: Path | None, ship: Path | None, ship_format: str, stop_at: int | None) -> None:
    from glinker.model.shipped import export_shipped

    if ship is not None and not (cfg.model.text_encoder and cfg.model.labels_encoder):  # known now, not after training
        raise typer.BadParameter("only models trained from packaged encoders can be shipped (model.text_encoder / "
                                 "labels_encoder set to pkg:<package>); drop --ship or use --export", param_hint="--ship")
    if t.step:
        typer.echo(f"resuming at step {t.step}", err=True)
    try:
        result = t.train(stop_at=stop_at)
    except KeyboardInterrupt:
        kept = sorted(t.ckpt_root.glob("step-*"))
        typer.echo(f"interrupted at step {t.step}: " + (f"the last checkpoint is {kept[-1].name} (one every "
                   f"{cfg.train.save_every} steps); run the same command to resume from it" if kept else
                   "no checkpoint was written yet; running the same command starts over"), err=True)
        raise typer.Exit(130) from None
    if t.step < cfg.train.steps:
        typer.echo(f"stopped at step {t.step} of {cfg.train.steps} (--stop-at); run the command without --stop-at, "
                   "or with a larger one, to continue", err=True)
        typer.echo(json.dumps(result, default=str))
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
