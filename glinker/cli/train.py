"""`glinker train --config train.yaml`: train (or resume) a bi-encoder, then export it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def train(config: Path = typer.Option(..., "--config", "-c", help="Training YAML (docs/training.md and examples/train/ in the source repository)."),
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
    """Train a GLiNER bi-encoder. Re-running the same command resumes from the last checkpoint (Ctrl-C or SIGTERM
    stop it, exit 130 / 143); on a finished run it writes the model again without training, and with --ship the
    shipped form of its final/ (no data read, no evaluation)."""
    import logging
    import sys

    import yaml

    _show_progress_when_redirected(logging.getLogger("glinker.model.train"), sys.stderr)

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
    state: dict = {"phase": "setup", "cfg": None, "trainer": None}
    from glinker.cli.stopping import stoppable

    with stoppable(lambda how: _say_interrupted(how, state, export, ship)):
        _train(config, overrides, export, ship, ship_format, stop_at, state)


def _train(config: Path, overrides: dict, export: Path | None, ship: Path | None, ship_format: str,
           stop_at: int | None, state: dict) -> None:
    from glinker.model.shipped import check_shippable, encoder_names
    from glinker.model.train import Trainer, load_train_config
    from glinker.model.train.config import check_data_paths
    from glinker.model.train.trainer import refuse_starting_over

    cfg = load_train_config(config, overrides)
    state["cfg"] = cfg
    for what, path in (("output_dir", Path(cfg.output_dir)), ("--export", export), ("--ship", ship)):
        if path is not None and path.exists() and not path.is_dir():
            raise typer.BadParameter(f"{path} is a file; training writes a folder there", param_hint=what)
    if export is not None:
        _refuse_export_over_run(export, Path(cfg.output_dir))
    if ship is not None:
        from glinker.model.shipped import check_ship_dir

        check_ship_dir(ship)  # a folder of other files, refused before training rather than after it
        model_dir = export if export is not None else Path(cfg.output_dir) / "final"
        if _same_path(ship, model_dir):
            from glinker.errors import ConfigError

            raise ConfigError(f"--ship {ship} is where the full model is written ({model_dir}): the shipped form "
                              "would replace it", where="--ship", fix="ship into another folder")
    m = cfg.model
    if ship is not None:  # everything the shipped export would refuse after training, checked before it
        check_shippable(m.text_encoder, m.labels_encoder, from_checkpoint=m.from_checkpoint,
                        encoders=encoder_names(m.from_checkpoint) if m.from_checkpoint else None)
    t = Trainer(cfg)
    state["trainer"] = t
    out = Path(cfg.output_dir)
    if ship is not None and (export is None or _same_path(export, out / "final")) and out.is_dir() \
            and t.setup_finished():  # a finished run whose final/ holds its model: shipped as it is
        try:
            check_shippable(m.text_encoder, m.labels_encoder, from_checkpoint=m.from_checkpoint,
                            encoders=(t.model.config.get("model_name"), t.model.config.get("labels_encoder")))
            _ship_finished(t, cfg, ship, ship_format, state)
        finally:
            t.close()
        return
    refuse_starting_over(out)  # (before the output folder's lock is taken; Trainer.setup checks again)
    check_data_paths(cfg)  # a missing data file is named now, with its line, not after the model has loaded
    t.setup()  # holds output_dir until t.close(): a second run into it is refused, naming this one
    try:
        if ship is not None:  # the model's own encoder names (a hub checkpoint's are known only now)
            check_shippable(m.text_encoder, m.labels_encoder, from_checkpoint=m.from_checkpoint,
                            encoders=(t.model.config.get("model_name"), t.model.config.get("labels_encoder")))
        _run(t, cfg, export, ship, ship_format, stop_at, state)
    finally:
        t.close()


def _same_path(a: Path, b: Path) -> bool:
    import os

    return os.path.realpath(a) == os.path.realpath(b)


def _refuse_export_over_run(export: Path, out: Path) -> None:
    """A ConfigError when ``--export`` names the run's output_dir or a folder holding it: the model's folder is
    replaced whole when it is written, so the run would be copied into its own model (or replaced)."""
    import os

    exp, run = os.path.realpath(export), os.path.realpath(out)
    if exp == run or run.startswith(exp.rstrip(os.sep) + os.sep):
        from glinker.errors import ConfigError

        raise ConfigError(f"--export {export} is {'the run' if exp == run else 'a folder holding the run'}'s "
                          f"output_dir {out}: the model is written as a whole folder there, replacing it",
                          where="--export",
                          fix=f"leave --export out (the model goes to {out / 'final'}), or name a folder outside "
                              f"{out}")


def _ship_finished(t, cfg, ship: Path, ship_format: str, state: dict) -> None:
    """Ship the finished run's ``final/`` as it is: nothing trained, no data read, no evaluation."""
    from glinker.model.shipped import export_shipped

    final = Path(cfg.output_dir) / "final"
    typer.echo(f"the run is finished (step {t.step} of {cfg.train.steps}): nothing to train; {final} holds its "
               "model: writing its shipped form from it as it is (no data read, no dev evaluation)", err=True)
    state["phase"] = "ship"
    typer.echo(f"shipped form: {export_shipped(t.model, ship, cfg, fmt=ship_format)}")
    state["phase"] = "done"
    result = {"step": t.step, "seconds": 0.0, "total_seconds": t.seconds_before}
    dev = next((h["dev_f1"] for h in reversed(t.history) if h.get("step") == t.step and "dev_f1" in h), None)
    if dev is not None:
        result["dev_f1"] = dev
    typer.echo(json.dumps(result, default=str))


def _run(t, cfg, export: Path | None, ship: Path | None, ship_format: str, stop_at: int | None,
         state: dict | None = None) -> None:
    from glinker.model.shipped import export_shipped
    from glinker.model.train.trainer import refuse_starting_over

    state = state if state is not None else {}
    if t.step == 0:  # no checkpoint resumed: a model trained into this output_dir would be replaced
        refuse_starting_over(Path(cfg.output_dir), resumable=False)
    if t.step >= cfg.train.steps:
        typer.echo(f"the run is finished (step {t.step} of {cfg.train.steps}): nothing to train; writing the model"
                   + (" and its shipped form" if ship is not None else ""), err=True)
    elif t.step:
        typer.echo(f"resuming at step {t.step}", err=True)
    state["phase"] = "train"
    before = t.step
    result = t.train(stop_at=stop_at)
    if t.step < cfg.train.steps:
        if stop_at is not None and stop_at < before:
            typer.echo(f"the run is already at step {before} of {cfg.train.steps}, past --stop-at {stop_at}: nothing "
                       f"was trained; run the command without --stop-at, or with one above {before}, to continue",
                       err=True)
        else:
            typer.echo(f"stopped at step {t.step} of {cfg.train.steps} (--stop-at); run the command without "
                       "--stop-at, or with a larger one, to continue", err=True)
        typer.echo(json.dumps(result, default=str))
        return
    state["phase"] = "export"
    path = t.export(export)
    typer.echo(f"model: {path}")
    if ship is not None:
        state["phase"] = "ship"
        typer.echo(f"shipped form: {export_shipped(t.model, ship, cfg, fmt=ship_format)}")
    state["phase"] = "done"
    typer.echo(json.dumps(result, default=str))


def _say_interrupted(how: str, state: dict, export: Path | None, ship: Path | None) -> str:
    """What was cut short, what is kept, and that re-running the same command resumes or finishes."""
    cfg, t, phase = state.get("cfg"), state.get("trainer"), state.get("phase")
    ckpts = Path(cfg.output_dir) / "checkpoints" if cfg is not None else None
    kept = sorted(ckpts.glob("step-*")) if ckpts is not None and ckpts.is_dir() else []
    step = getattr(t, "step", 0) if t is not None else 0
    final = Path(export) if export else Path(cfg.output_dir) / "final" if cfg is not None else None
    if phase == "train":
        msg = f"{how} at step {step}: " + (
            f"the last checkpoint is {kept[-1].name} (one every {cfg.train.save_every} steps); run the same command to "
            "resume from it" if kept else "no checkpoint was written yet; running the same command starts over")
    elif phase == "export":
        msg = (f"{how} while writing the model to {final}: training is finished (step {step}, kept in "
               f"{kept[-1] if kept else 'its last checkpoint'}); {final} holds the previous model or none (an export "
               "is swapped in whole, and the next run restores a swap cut short); run the same command to write it "
               "(nothing is trained again)")
    elif phase == "ship":
        msg = (f"{how} while writing the shipped form to {ship}: the model is in {final}; run the same command to "
               "write the shipped form (nothing is trained again)")
    elif phase == "done":
        msg = f"{how} after the run finished: the model is in {final}" + (f", its shipped form in {ship}" if ship else "")
    else:
        msg = f"{how} before training started (loading the configuration, model and data): " + (
            f"nothing was trained in this session; run the same command to resume from {kept[-1].name}" if kept
            else "nothing was trained; run the same command to start")
    return msg


def _show_progress_when_redirected(logger, stream) -> None:
    """Training runs for hours, usually with stderr sent to a file, where the progress bar is off: keep the
    trainer's step lines (loss, learning rate, examples/s, dev F1) at INFO there even without ``-v``."""
    import logging

    isatty = getattr(stream, "isatty", None)
    if not (isatty and isatty()) and logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
