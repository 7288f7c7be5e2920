"""A training run's life: what trains, logged losses, locks, resumes on damaged or replaced checkpoints, the
final export's atomicity and file modes, and the messages when a run's folders are used as models."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def _trainer(cfg):
    from glinker.model.train import Trainer

    t = Trainer(cfg)
    t.setup()
    return t


def test_a_frozen_label_encoder_still_trains_its_projection(train_cfg):
    """labels_projection is part of the head: trained (with its cached encoder output) when the label encoder is
    frozen; the label vectors equal the network's own."""
    t = _trainer(train_cfg(steps=3, save_every=100, model={"train_label_layers": 0}))
    net = t.model.net
    proj = net.token_rep_layer.labels_projection
    assert proj.weight.requires_grad
    w0 = proj.weight.detach().clone()
    enc0 = {k: v.clone() for k, v in net.token_rep_layer.labels_encoder.state_dict().items()}
    t.model.net.eval()
    with torch.no_grad():
        labels = ["person", "location", "person"]
        enc = t.model.labels_tokenizer(labels, return_tensors="pt", padding="longest")
        want = net.encode_label_tokens(enc["input_ids"], enc["attention_mask"])
        torch.testing.assert_close(t._label_vectors(labels), want, rtol=1e-5, atol=1e-5)
    t.train()
    assert not torch.equal(proj.weight, w0)
    for k, v in net.token_rep_layer.labels_encoder.state_dict().items():
        assert torch.equal(v, enc0[k]), k
    assert all(v.shape[-1] == 32 for v in t._label_cache.values())  # the encoder's width, not D=48
    t.close()


def test_from_checkpoint_applies_dropout_and_max_len_and_refuses_architecture_changes(train_cfg, tmp_path):
    from glinker.errors import ConfigError
    from glinker.model import BiEncoder
    from glinker.model.train.trainer import init_model

    for key, value in (("hidden_size", 64), ("max_width", 8)):
        with pytest.raises(ConfigError) as ei:
            init_model(train_cfg(model={key: value}))
        assert f"model.{key}" in str(ei.value) and "checkpoint" in str(ei.value) and "leave" in str(ei.value)
    kept = init_model(train_cfg())  # unset: the checkpoint's
    assert kept.config["dropout"] == 0.1 and kept.max_len == 64 and kept.max_width == 4
    m = init_model(train_cfg(model={"dropout": 0.25, "max_len": 32, "max_width": 4, "hidden_size": 48}))
    drops = [mod.p for name, mod in m.net.named_modules() if isinstance(mod, torch.nn.Dropout)
             and not name.startswith("token_rep_layer.")]
    assert drops and set(drops) == {0.25}
    assert m.net.token_rep_layer.bert_layer.model.config.hidden_dropout_prob != 0.25  # the encoder keeps its own
    assert m.max_len == 32
    saved = BiEncoder.from_pretrained(m.save_pretrained(tmp_path / "saved"))
    assert saved.config["dropout"] == 0.25 and saved.max_len == 32


def test_logged_loss_is_the_mean_of_the_steps_summed(train_cfg):
    """log_every 5, stopped at 3 and resumed: the record at step 5 averages steps 4-5 (not their sum / 5), the
    session's last steps are logged at its end; state.json and history.json hold the same."""
    per_step: dict[int, float] = {}

    def record(t):
        real = t.loss_on

        def loss_on(batch):
            loss = real(batch)
            per_step[t.step + 1] = float(loss.detach())
            return loss
        t.loss_on = loss_on

    cfg = train_cfg(steps=8, log_every=5, save_every=100, others_lr=1e-4, encoder_lr=1e-5)
    first = _trainer(cfg)
    record(first)
    first.train(stop_at=3)
    first.close()
    resumed = _trainer(cfg)
    record(resumed)
    resumed.train()
    resumed.export()
    resumed.close()
    losses = {h["step"]: h for h in resumed.history if "loss" in h}
    mean = lambda steps: sum(per_step[s] for s in steps) / len(steps)
    assert losses[5]["loss"] == pytest.approx(mean([4, 5])) and losses[5]["steps"] == 2
    assert sorted(losses) == [3, 5, 8]
    assert losses[3]["loss"] == pytest.approx(mean([1, 2, 3])) and losses[3]["steps"] == 3
    assert losses[8]["loss"] == pytest.approx(mean([6, 7, 8]))
    hist = json.loads((resumed.out / "history.json").read_text())
    assert [h["loss"] for h in hist if "loss" in h] == [losses[s]["loss"] for s in (3, 5, 8)]


def test_resume_refuses_a_replaced_base_model(train_cfg, tiny_ckpt, tmp_path):
    from safetensors.torch import load_file, save_file

    from glinker.errors import ConfigError

    base = tmp_path / "base"
    shutil.copytree(tiny_ckpt, base)
    cfg = train_cfg(out="r", steps=6, model={"from_checkpoint": str(base)})
    t = _trainer(cfg)
    t.train(stop_at=3)
    t.close()
    again = _trainer(cfg)  # the same base: resumes
    assert again.step == 3
    again.close()
    sd = load_file(str(base / "model.safetensors"))
    k = next(k for k in sd if k.startswith("token_rep_layer.bert_layer."))
    sd[k] = sd[k] + 0.01
    save_file(sd, str(base / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ConfigError) as ei:
        _trainer(cfg)
    msg = str(ei.value)
    assert "other weights" in msg and str(base) in msg and "new output_dir" in msg and "step-0000003" in msg


def test_a_second_run_into_the_same_folder_is_locked_out(train_cfg):
    from glinker.errors import ConfigError

    cfg = train_cfg(out="l", steps=6)
    first = _trainer(cfg)
    in_progress = first.ckpt_root / ".tmp-saving"
    in_progress.mkdir(parents=True)
    from glinker.model.train import Trainer

    with pytest.raises(ConfigError) as ei:
        Trainer(cfg).setup()
    assert "another glinker train" in str(ei.value) and f"pid {os.getpid()}" in str(ei.value)
    assert in_progress.is_dir()  # the running one's save is left alone
    # another process holding it (a run on the same folder started elsewhere)
    first.close()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom glinker.io import locked\n"
        f"with locked({str(first.out / '.train.lock')!r}, wait=False, mode='a+') as f:\n"
        "    f.write('pid x on elsewhere'); f.flush(); print('held', flush=True); time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match="another glinker train is running"):
            Trainer(cfg).setup()
    finally:
        holder.kill()
        holder.wait()
    with _trainer(cfg) as t:  # free again: a stale temporary folder is cleared under the lock
        assert not in_progress.exists() and t.step == 0


def test_a_run_that_fails_to_set_up_leaves_no_empty_folder(train_cfg, tmp_path):
    from glinker.errors import ConfigError

    with pytest.raises(ConfigError):
        _trainer(train_cfg(out="never", model={"hidden_size": 64}))
    assert not (tmp_path / "never").exists()


def test_the_final_export_swaps_whole_folders(train_cfg, tmp_path, monkeypatch):
    """An export interrupted between its renames leaves the old model whole (restored by the next run), a killed
    export's temporary folder is removed, files beside the model are kept, modes follow the umask."""
    from glinker.model import BiEncoder
    from glinker.model import checkpoint as ck

    t = _trainer(train_cfg(out="x", steps=2, save_every=1))
    t.train()
    final = t.export()
    (final / "NOTES.md").write_text("mine")
    (final / "pytorch_model.bin").write_bytes(b"stale weights of the other format")
    old_fp = BiEncoder.from_pretrained(final).fingerprint
    killed = final.parent / ".final.tmp-killed"
    killed.mkdir()
    (killed / "gliner_config.json").write_text("{}")
    with torch.no_grad():
        next(p for p in t.model.net.parameters() if p.requires_grad).add_(1.0)

    real = os.replace
    calls = []

    def cut(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the new folder's rename in: the process dies here
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(ck.os, "replace", cut)
    with pytest.raises(KeyboardInterrupt):
        t.export()
    monkeypatch.setattr(ck.os, "replace", real)
    assert not killed.exists()  # the killed export's leftovers went first
    assert not final.exists() and list(final.parent.glob(".final.old-*"))
    t.close()
    again = _trainer(train_cfg(out="x", steps=2, save_every=1))  # the next run puts the old model back
    assert BiEncoder.from_pretrained(final).fingerprint == old_fp and not list(final.parent.glob(".final.old-*"))
    with torch.no_grad():
        next(p for p in again.model.net.parameters() if p.requires_grad).add_(1.0)
    old_umask = os.umask(0o027)
    try:
        again.export()
    finally:
        os.umask(old_umask)
    again.close()
    new = BiEncoder.from_pretrained(final)
    assert new.fingerprint != old_fp
    assert (final / "NOTES.md").read_text() == "mine" and not (final / "pytorch_model.bin").exists()
    assert not [p.name for p in final.parent.iterdir() if p.name.startswith(".final.") and "lock" not in p.name]
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)
    assert mode(final) == 0o750
    assert mode(final / "model.safetensors") == mode(final / "gliner_config.json") == 0o640


def test_checkpoint_weights_have_the_mode_of_the_other_files(train_cfg):
    old_umask = os.umask(0o022)
    try:
        t = _trainer(train_cfg(out="m", steps=1, save_every=1))
        t.train(stop_at=1)
        t.close()
    finally:
        os.umask(old_umask)
    step = next(t.ckpt_root.glob("step-*"))
    modes = {f.name: stat.S_IMODE(os.stat(f).st_mode) for f in step.iterdir()}
    assert set(modes.values()) == {0o644}, modes


def test_a_damaged_checkpoint_falls_back_to_the_one_before(train_cfg, caplog):
    from glinker.errors import ConfigError

    cfg = train_cfg(out="d", steps=9, save_every=3)
    t = _trainer(cfg)
    t.train(stop_at=6)
    t.close()
    opt = t.ckpt_root / "step-0000006" / "optimizer.pt"
    opt.write_bytes(opt.read_bytes()[:100])  # a copy cut short
    with caplog.at_level(logging.WARNING, logger="glinker.model.train.trainer"):
        again = _trainer(cfg)
    assert again.step == 3
    assert "step-0000006" in caplog.text and "optimizer.pt" in caplog.text and "resuming from step-0000003" in caplog.text
    assert sorted(p.name for p in again.ckpt_root.iterdir()) == [".damaged-step-0000006", "step-0000003"]
    again.close()
    (again.ckpt_root / "step-0000003" / "trainable.safetensors").write_bytes(b"\0" * 10)
    with pytest.raises(ConfigError) as ei:
        _trainer(cfg)
    assert "every checkpoint of this run is damaged" in str(ei.value) and str(again.ckpt_root) in str(ei.value)


def test_dev_is_scored_once_at_the_last_step(train_cfg, monkeypatch):
    from glinker.model.train.trainer import Trainer

    n = []
    real = Trainer.evaluate
    monkeypatch.setattr(Trainer, "evaluate", lambda self, progress=None: n.append(self.step) or real(self, progress))
    t = _trainer(train_cfg(out="e", steps=6, eval_every=3, save_every=3))
    res = t.train()
    t.close()
    assert n == [3, 6] and res["dev_f1"] == t.history[-1]["dev_f1"]
    assert [h["step"] for h in t.history if "dev_f1" in h] == [3, 6]
    again = _trainer(train_cfg(out="e", steps=6, eval_every=3, save_every=3))  # a finished run re-run to export
    again.train()
    again.close()
    assert n == [3, 6]


def test_a_run_folder_or_step_folder_given_as_a_model_says_where_the_model_is(train_cfg):
    from glinker.errors import ModelError
    from glinker.model import BiEncoder

    t = _trainer(train_cfg(out="t1", steps=2, save_every=1))
    t.train()
    t.close()
    step = next(t.ckpt_root.glob("step-*"))
    with pytest.raises(ModelError) as ei:
        BiEncoder.from_pretrained(step)
    assert "trained weights only" in str(ei.value) and "glinker train" in str(ei.value)
    with pytest.raises(ModelError) as ei:
        BiEncoder.from_pretrained(t.out)
    assert "without an exported model yet" in str(ei.value) and str(t.out / "final") in str(ei.value)
    with _trainer(train_cfg(out="t1", steps=2, save_every=1)) as again:
        again.train()
        again.export()
    for folder in (t.out, step):
        with pytest.raises(ModelError) as ei:
            BiEncoder.from_pretrained(folder)
        assert str(t.out / "final") in str(ei.value)


def test_a_mistyped_local_path_is_not_only_a_hub_error(tmp_path, monkeypatch, train_cfg):
    import huggingface_hub
    import transformers

    from glinker.errors import ModelError
    from glinker.model.checkpoint import resolve_dir
    from glinker.model.train.trainer import init_model

    def offline(*a, **k):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "t1").mkdir(parents=True)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ModelError) as ei:
        resolve_dir("runs/nope")
    assert "no local folder runs/nope exists" in str(ei.value) and "t1" in str(ei.value)
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", offline)
    cfg = train_cfg(model={"from_checkpoint": None, "text_encoder": "encs/nope", "labels_encoder": "encs/nope"})
    with pytest.raises(ModelError) as ei:
        init_model(cfg)
    assert "model.text_encoder" in str(ei.value) and "no local folder encs/nope exists" in str(ei.value)


def test_an_export_into_a_symlinked_folder_replaces_the_folder_it_points_to(tmp_path):
    from glinker.model import BiEncoder

    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "gliner"
    m = BiEncoder.from_pretrained(str(fixtures / "modernbert"))
    real = tmp_path / "models" / "v1"
    m.save_pretrained(real)
    link = tmp_path / "current"
    link.symlink_to(real, target_is_directory=True)
    with torch.no_grad():
        next(iter(m.net.parameters())).add_(1.0)
    m.save_pretrained(link)
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert BiEncoder.from_pretrained(real).fingerprint == m.fingerprint  # the target holds the new model
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".current")]
    assert not [p.name for p in real.parent.iterdir() if p.name.startswith(".v1.") and "lock" not in p.name]
