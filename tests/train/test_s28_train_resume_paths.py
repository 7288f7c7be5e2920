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
    """Another file is another run: one of another name by the configuration, one of the same name (which may be the
    recorded file moved) by the data digest, naming both paths. A copy of the same contents and name resumes (the
    data digest, recorded and compared, cannot tell it from the file moved; it trains the same)."""
    from glinker.errors import ConfigError
    from glinker.model.train import load_train_config

    cfg_dir = tmp_path / "cfg"
    for d in ("a", "b", "c"):
        (cfg_dir / d).mkdir(parents=True)
        shutil.copy(train_files / "train.json", cfg_dir / d / "train.json")
    shutil.copy(train_files / "train.json", cfg_dir / "c" / "other.json")
    _start(load_train_config(_write_cfg(cfg_dir, tiny_ckpt, "a/train.json")))
    with pytest.raises(ConfigError) as ei:
        _resume(load_train_config(_write_cfg(cfg_dir, tiny_ckpt, "c/other.json")))
    msg = str(ei.value)
    assert "another configuration" in msg and "data[0].path" in msg and str(cfg_dir / "c" / "other.json") in msg
    assert _resume(load_train_config(_write_cfg(cfg_dir, tiny_ckpt, "b/train.json"))) == 2
    data = json.loads((train_files / "train.json").read_text())
    (cfg_dir / "c" / "train.json").write_text(json.dumps(data[:3]))
    with pytest.raises(ConfigError) as ei:
        _resume(load_train_config(_write_cfg(cfg_dir, tiny_ckpt, "c/train.json")))
    msg = str(ei.value)
    assert "other data" in msg and "4 examples then, 3 now" in msg
    assert f"read from {cfg_dir / 'a' / 'train.json'} then, {cfg_dir / 'c' / 'train.json'} now" in msg


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


def _state(t):
    f = sorted(t.ckpt_root.glob("step-*"))[-1] / "state.json"
    return f, json.loads(f.read_text())


def test_a_path_recorded_otherwise_is_the_same_only_where_a_digest_covers_it(tmp_path, tiny_ckpt, train_files,
                                                                             monkeypatch):
    """A data path recorded by another spelling (a relative one, or only the same file name) resumes only when the
    checkpoint recorded the data digest (runs before 2026-12-03 did not); a from_checkpoint recorded otherwise only
    with the weights digest: without it the setting is named."""
    from glinker.errors import ConfigError
    from glinker.model.train import load_train_config

    cfg_dir = tmp_path / "cfg"
    shutil.copytree(tiny_ckpt, cfg_dir / "base")
    shutil.copy(train_files / "train.json", cfg_dir / "train.json")
    f = _write_cfg(cfg_dir, str(cfg_dir / "base"), "train.json")
    t = _start(load_train_config(f))
    state_file, state = _state(t)
    monkeypatch.chdir(tmp_path)
    for old in ("train.json", "../elsewhere/train.json", "/gone/project/cfg/train.json"):
        s = json.loads(json.dumps(state))
        s["config"]["data"][0]["path"] = old
        state_file.write_text(json.dumps(s))
        assert _resume(load_train_config(f)) == 2, old  # the data digest is recorded: compared after
        del s["data"]
        state_file.write_text(json.dumps(s))
        with pytest.raises(ConfigError) as ei:
            _resume(load_train_config(f))
        assert "data[0].path" in str(ei.value) and "another configuration" in str(ei.value), old
        assert "digest" in ei.value.fix
    s = json.loads(json.dumps(state))
    s["config"]["model"]["from_checkpoint"] = "/gone/project/cfg/base"
    state_file.write_text(json.dumps(s))
    assert _resume(load_train_config(f)) == 2  # the weights digest is recorded: compared after
    del s["base"]
    state_file.write_text(json.dumps(s))
    with pytest.raises(ConfigError, match="model.from_checkpoint"):
        _resume(load_train_config(f))


def test_dev_files_resume_by_another_path_only_with_their_digest(tmp_path, tiny_ckpt, train_files, monkeypatch):
    """Dev files are never trained on, so no data digest covers them: the checkpoint records the sha256 of each dev
    file, and a dev path recorded otherwise (moved, another spelling) is the same only when that digest is recorded
    and equal; another dev file of the same name is refused, naming dev[0].path."""
    from glinker.errors import ConfigError
    from glinker.model.train import load_train_config

    cfg_dir = tmp_path / "cfg"
    (cfg_dir / "d").mkdir(parents=True)
    shutil.copy(train_files / "train.json", cfg_dir / "train.json")
    shutil.copy(train_files / "train.json", cfg_dir / "d" / "dev.json")
    f = _write_cfg(cfg_dir, tiny_ckpt, "train.json")
    raw = yaml.safe_load(f.read_text())
    f.write_text(yaml.safe_dump({**raw, "dev": [{"path": "d/dev.json"}]}))
    t = _start(load_train_config(f))
    state_file, state = _state(t)
    assert state["dev_files"][0]["path"]  # recorded
    (cfg_dir / "e").mkdir()
    shutil.move(cfg_dir / "d" / "dev.json", cfg_dir / "e" / "dev.json")  # moved: the same bytes
    f.write_text(yaml.safe_dump({**raw, "dev": [{"path": "e/dev.json"}]}))
    assert _resume(load_train_config(f)) == 2
    monkeypatch.chdir(cfg_dir)
    for old in ("/gone/d/dev.json", "d/dev.json"):  # other contents under a path of the same name: refused
        (cfg_dir / "e" / "dev.json").write_text(json.dumps(json.loads((train_files / "train.json").read_text())[:2]))
        s = json.loads(json.dumps(state))
        s["config"]["dev"][0]["path"] = old
        state_file.write_text(json.dumps(s))
        with pytest.raises(ConfigError) as ei:
            _resume(load_train_config(f))
        assert "dev[0].path" in str(ei.value), old
        shutil.copy(train_files / "train.json", cfg_dir / "e" / "dev.json")  # the same bytes again: resumes
        assert _resume(load_train_config(f)) == 2, old
        del s["dev_files"]  # a run recorded before dev digests: refused
        state_file.write_text(json.dumps(s))
        with pytest.raises(ConfigError, match=r"dev\[0\].path"):
            _resume(load_train_config(f))


def test_a_run_resumes_after_its_project_folder_moved(tmp_path, tiny_ckpt, train_files):
    """Absolute paths recorded today name the old folder after a move: the same file names with their digests
    recorded and equal resume; other contents are refused by the data digest, naming both paths."""
    from glinker.errors import ConfigError
    from glinker.model.train import load_train_config

    proj = tmp_path / "M_new"
    shutil.copytree(tiny_ckpt, proj / "ck")
    shutil.copy(train_files / "train.json", proj / "train.json")
    _write_cfg(proj, str(proj / "ck"), "train.json")
    _start(load_train_config(proj / "t.yaml"))
    moved = tmp_path / "M2_new"
    shutil.move(proj, moved)
    f = _write_cfg(moved, str(moved / "ck"), "train.json")  # the config names the folder's new place
    assert _resume(load_train_config(f)) == 2
    data = json.loads((train_files / "train.json").read_text())
    (moved / "train.json").write_text(json.dumps([dict(x, ner=[[s, e, "thing"] for s, e, _ in x["ner"]])
                                                  for x in data]))
    with pytest.raises(ConfigError) as ei:
        _resume(load_train_config(f))
    msg = str(ei.value)
    assert "other data" in msg and "as many examples, other contents" in msg
    assert f"read from {proj / 'train.json'} then, {moved / 'train.json'} now" in msg


def test_the_python_api_does_not_retrain_over_a_final_model_either(train_cfg, tmp_path):
    """Trainer.setup() refuses, as `glinker train` does, to start over from step 0 in an output folder that holds a
    trained model (final/) but no checkpoint (it retrained and replaced final/ silently)."""
    import shutil

    from glinker.errors import ConfigError
    from glinker.model.train import Trainer

    cfg = train_cfg(out="api", steps=2, save_every=2)
    t = Trainer(cfg)
    t.setup()
    t.train()
    t.export()
    t.close()
    shutil.rmtree(tmp_path / "api" / "checkpoints")
    before = (tmp_path / "api" / "final" / "model.safetensors").stat().st_mtime_ns
    t = Trainer(cfg)
    with pytest.raises(ConfigError, match="no checkpoint to resume"):
        t.setup()
    t.close()
    assert (tmp_path / "api" / "final" / "model.safetensors").stat().st_mtime_ns == before
