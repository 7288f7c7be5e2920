"""glinker train when interrupted (Ctrl-C in the final export, SIGTERM) says what happened and that the same command
finishes the run; on a terminal the dev F1 of each evaluation is shown without -v."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

torch.set_num_threads(1)


def _yaml(tmp_path, train_cfg, name="t.yaml", **kw):
    cfg = train_cfg(**kw)
    f = tmp_path / name
    f.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_unset=True)))
    return f


def _cli(*args):
    from typer.testing import CliRunner

    from glinker.cli import app

    try:
        return CliRunner().invoke(app, ["train", *map(str, args)])
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped glinker train: it would end silently with 130")


def test_ctrl_c_in_the_final_export_says_that_the_same_command_finishes(tmp_path, train_cfg, monkeypatch):
    from glinker.model.train import Trainer

    f = _yaml(tmp_path, train_cfg, out="x", steps=2, save_every=2, threads=1)
    real = Trainer.export

    def cut(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "export", cut)
    r = _cli("--config", f)
    assert r.exit_code == 130
    assert "interrupted while writing the model to" in r.output and "training is finished (step 2" in r.output
    assert "run the same command" in r.output
    monkeypatch.setattr(Trainer, "export", real)
    monkeypatch.setattr(Trainer, "loss_on", lambda *a: pytest.fail("trained again"))
    r = _cli("--config", f)
    assert r.exit_code == 0 and (tmp_path / "x" / "final" / "gliner_config.json").is_file(), r.output
    assert "nothing to train" in r.output


def test_sigterm_in_setup_or_shipping_is_reported(tmp_path, train_cfg, monkeypatch):
    """SIGTERM is raised where the process is, as Ctrl-C is: exit 143 and the same kind of message."""
    import os

    from glinker.model.train import Trainer

    f = _yaml(tmp_path, train_cfg, out="y", steps=2, save_every=2, threads=1)
    real = Trainer.setup

    def killed(self):
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):  # unhandled, it would end the test session
            pytest.fail("glinker train does not handle SIGTERM")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        real(self)

    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        pytest.skip("SIGTERM is handled by the test runner here")
    monkeypatch.setattr(Trainer, "setup", killed)
    r = _cli("--config", f)
    assert r.exit_code == 143, r.output
    assert "terminated (SIGTERM) before training started" in r.output and "run the same command" in r.output
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back


def test_sigterm_stops_the_run_with_a_message_and_the_same_command_resumes(tmp_path, train_cfg):
    f = _yaml(tmp_path, train_cfg, out="z", steps=100000, save_every=2, log_every=1000, threads=1)
    p = subprocess.Popen([sys.executable, "-m", "glinker", "train", "--config", str(f)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not list((tmp_path / "z" / "checkpoints").glob("step-*")) and time.time() < deadline:
            assert p.poll() is None, p.communicate()
            time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 143, err
    assert "terminated (SIGTERM) at step" in err and "the last checkpoint is step-" in err
    assert "run the same command to resume" in err
    from glinker.model.train import Trainer, load_train_config

    t = Trainer(load_train_config(f))
    t.setup()
    t.close()
    assert t.step >= 2 and t.step % 2 == 0


def test_the_dev_f1_is_shown_on_the_progress_line(train_cfg, monkeypatch, capsys):
    """On a terminal without -v (INFO not shown), each evaluation's dev F1 goes on the progress bar and into a line
    above it."""
    import io

    import tqdm as tqdm_mod

    from glinker.model.train import Trainer

    postfixes: list[dict] = []

    class Bar(tqdm_mod.tqdm):
        def __init__(self, *a, **k):
            super().__init__(*a, **{**k, "disable": False, "file": io.StringIO()})

        def set_postfix(self, ordered_dict=None, refresh=True, **kw):
            postfixes.append(dict(ordered_dict or {}, **kw))
            super().set_postfix(ordered_dict, refresh, **kw)

    monkeypatch.setattr(tqdm_mod, "tqdm", Bar)
    logger = logging.getLogger("glinker.model.train")
    level = logger.level
    logger.setLevel(logging.WARNING)  # the CLI's default (-v not given) on a terminal
    try:
        t = Trainer(train_cfg(out="b", steps=4, eval_every=2, save_every=4, log_every=1))
        t.setup()
        t.train()
        t.close()
    finally:
        logger.setLevel(level)
    assert any("dev_f1" in p for p in postfixes[2:]), postfixes
    assert "loss" in postfixes[-1] and "dev_f1" in postfixes[-1]  # the latest F1 stays beside the loss
    err = capsys.readouterr().err
    assert "step 2 dev F1 0:train.json" in err and "step 4 dev F1" in err


@pytest.mark.parametrize("left", ["final", "history.json"])
def test_a_run_without_checkpoints_is_not_retrained_over_its_final_model(tmp_path, train_cfg, monkeypatch, left):
    """checkpoints/ deleted, final/ (or history.json) kept: a re-run would start over from step 0 and replace
    final/; it is refused before training, saying what was found and what to do (with --ship: test_s28_train_ship)."""
    import shutil

    from glinker.errors import ConfigError
    from glinker.model.train import Trainer

    f = _yaml(tmp_path, train_cfg, out="w", steps=2, save_every=2, threads=1)
    assert _cli("--config", f).exit_code == 0
    out = tmp_path / "w"
    shutil.rmtree(out / "checkpoints")
    if left == "history.json":
        shutil.rmtree(out / "final")
    kept = {p.name: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    monkeypatch.setattr(Trainer, "loss_on", lambda *a: pytest.fail("trained again"))
    r = _cli("--config", f)
    assert r.exit_code != 0 and isinstance(r.exception, ConfigError), r.output
    e = r.exception
    assert str(out / left) in str(e) and "no checkpoint to resume" in str(e)
    assert "start over from step 0 and replace final/" in str(e)
    assert "another output_dir" in e.fix and f"delete {out / 'final'}" in e.fix
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == kept


def test_a_path_inside_a_set_value_is_relative_to_where_the_command_runs(tmp_path, train_cfg, monkeypatch):
    """--set 'data.0={path: x}' reaches data[0].path as --set data.0.path=x does: relative to the working folder
    (as the docs say), and the missing-path message says so with the path it looked for."""
    import json

    from glinker.errors import ConfigError
    from glinker.model.train import load_train_config

    f = _yaml(tmp_path, train_cfg, out="v", steps=2)
    (tmp_path / "only-beside-the-config.json").write_text("[]")
    here = tmp_path / "elsewhere"
    here.mkdir()
    (here / "x.json").write_text(json.dumps([]))
    monkeypatch.chdir(here)
    for over in ({"data.0": {"path": "x.json"}}, {"data.0.path": "x.json"}, {"data": [{"path": "x.json"}]}):
        assert load_train_config(f, over).data[0].path == str(here / "x.json"), over
    with pytest.raises(ConfigError) as ei:
        load_train_config(f, {"data.0": {"path": "only-beside-the-config.json"}}, check_paths=True)
    msg = str(ei.value)
    assert f"not found: {here / 'only-beside-the-config.json'}" in msg and f"relative to {here})" in msg
    assert "--set data.0" in ei.value.where
