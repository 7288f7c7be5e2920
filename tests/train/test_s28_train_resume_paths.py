"""A run resumes when its config names the same files by another spelling (the config path as typed, a relative or
an absolute ${VAR}, a symbolic link); other files are still refused. Runs recorded before paths were resolved
(relative spellings) resume too."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

torch.set_num_threads(1)


def _write_cfg(folder, tiny_ckpt, data_path: str, out: str = "run", **model):
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / "t.yaml"
    f.write_text(yaml.safe_dump({
        "output_dir": out, "seed": 3,
        "model": {"from_checkpoint": str(tiny_ckpt), "train_text_layers": -1, "train_label_layers": 0, **model},
        "data": [{"path": data_path}],
        "train": {"steps": 4, "batch_size": 2, "max_words": 16, "max_types": 5, "negative_types": 1,
                  "save_every": 2, "log_every": 1, "eval_every": 0, "threads": 1}}))
    return f


def _start(cfg, stop_at=2):
    from glinker.model.train import Trainer

    t = Trainer(cfg)
    t.setup()
    t.train(stop_at=stop_at)
    t.close()
    return t


def _resume(cfg):
    from glinker.model.train import Trainer

    t = Trainer(cfg)
    t.setup()
    t.close()
    return t.step


def test_the_config_given_by_another_path_spelling_resumes(tmp_path, tiny_ckpt, train_files, monkeypatch):
    from glinker.model.train import load_train_config

    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    shutil.copy(train_files / "train.json", cfg_dir / "train.json")
    f = _write_cfg(cfg_dir, tiny_ckpt, "train.json")
    monkeypatch.chdir(cfg_dir)
    _start(load_train_config("t.yaml"))                      # glinker train -c t.yaml
    assert _resume(load_train_config(str(f))) == 2           # glinker train -c $PWD/t.yaml
    monkeypatch.chdir(tmp_path)
    assert _resume(load_train_config("cfg/t.yaml")) == 2     # from the folder above
    (tmp_path / "link").symlink_to(cfg_dir, target_is_directory=True)
    assert _resume(load_train_config("link/t.yaml")) == 2    # through a symbolic link
    state = json.loads(next((cfg_dir / "run" / "checkpoints").glob("step-*")).joinpath("state.json").read_text())
    assert state["config"]["data"][0]["path"] == str((cfg_dir / "train.json").resolve())  # recorded resolved


def test_a_relative_or_absolute_variable_names_the_same_file(tmp_path, tiny_ckpt, train_files, monkeypatch):
    from glinker.model.train import load_train_config

    cfg_dir = tmp_path / "cfg"
    (cfg_dir / "d").mkdir(parents=True)
    shutil.copy(train_files / "train.json", cfg_dir / "d" / "train.json")
    _write_cfg(cfg_dir, tiny_ckpt, "${MYDATA}/train.json")
    monkeypatch.chdir(cfg_dir)
    monkeypatch.setenv("MYDATA", "d")
    _start(load_train_config("t.yaml"))
    monkeypatch.setenv("MYDATA", str(cfg_dir / "d"))
    assert _resume(load_train_config("t.yaml")) == 2


def test_other_files_are_still_refused(tmp_path, tiny_ckpt, train_files):
    """Another file, even with the same contents and name, is another run (the digest would not tell them apart)."""
    from glinker.errors import ConfigError
    from glinker.model.train import load_train_config

    cfg_dir = tmp_path / "cfg"
    (cfg_dir / "a").mkdir(parents=True)
    (cfg_dir / "b").mkdir()
    for d in ("a", "b"):
        shutil.copy(train_files / "train.json", cfg_dir / d / "train.json")
    _start(load_train_config(_write_cfg(cfg_dir, tiny_ckpt, "a/train.json")))
    with pytest.raises(ConfigError) as ei:
        _resume(load_train_config(_write_cfg(cfg_dir, tiny_ckpt, "b/train.json")))
    msg = str(ei.value)
    assert "another configuration" in msg and "data[0].path" in msg and str(cfg_dir / "b" / "train.json") in msg


def test_a_run_that_recorded_relative_paths_resumes(tmp_path, tiny_ckpt, train_files, monkeypatch):
    """Checkpoints written before this fix hold paths as spelt (relative to the folder that session ran in): the
    same file from here or the config's folder, or a path of the same file name, resumes (the data digest checks the
    contents); another file name is refused."""
    from glinker.errors import ConfigError
    from glinker.model.train import load_train_config

    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    shutil.copy(train_files / "train.json", cfg_dir / "train.json")
    f = _write_cfg(cfg_dir, tiny_ckpt, "train.json")
    t = _start(load_train_config(f))
    state_file = next(t.ckpt_root.glob("step-*")) / "state.json"
    state = json.loads(state_file.read_text())
    monkeypatch.chdir(tmp_path)
    for old, ok in (("train.json", True), ("cfg/train.json", True), ("../elsewhere/train.json", True),
                    ("other.json", False)):
        state["config"]["data"][0]["path"] = old
        state_file.write_text(json.dumps(state))
        if ok:
            assert _resume(load_train_config(f)) == 2, old
        else:
            with pytest.raises(ConfigError, match="another configuration"):
                _resume(load_train_config(f))


def test_a_local_from_checkpoint_by_another_spelling_resumes(tmp_path, tiny_ckpt, train_files, monkeypatch):
    from glinker.model.train import load_train_config

    cfg_dir = tmp_path / "cfg"
    shutil.copytree(tiny_ckpt, cfg_dir / "base")
    shutil.copy(train_files / "train.json", cfg_dir / "train.json")
    f = _write_cfg(cfg_dir, "base", "train.json")
    monkeypatch.chdir(cfg_dir)
    _start(load_train_config("t.yaml"))
    f.write_text(f.read_text().replace("from_checkpoint: base", f"from_checkpoint: {cfg_dir / 'base'}"))
    assert _resume(load_train_config(f)) == 2
