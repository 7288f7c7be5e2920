"""The trainer on a tiny real checkpoint: loss goes down, checkpoints resume exactly, loss math matches gliner."""

from __future__ import annotations

import json

import pytest
import torch

from glinker.model.train.loss import focal_loss_with_logits, negative_mask, span_loss

WORDS = ("john smith works at google in london . paris is the capital of france . apple inc was founded by "
         "steve jobs . maria lopez lives in berlin , germany .").split(" . ")


def _cfg(tmp_path, ckpt, files, steps, out="run", **train):
    from glinker.model.train import TrainConfig

    return TrainConfig.model_validate({
        "output_dir": str(tmp_path / out), "seed": 3,
        "model": {"from_checkpoint": str(ckpt), "train_text_layers": -1, "train_label_layers": 0},
        "data": [{"path": str(files / "train.json")}],
        "dev": [{"path": str(files / "train.json")}],
        "train": {"steps": steps, "batch_size": 4, "max_words": 16, "max_types": 5, "negative_types": 1,
                  "others_lr": 3e-3, "encoder_lr": 1e-3, "warmup_ratio": 0.1, "save_every": 3, "log_every": 1,
                  "eval_every": 0, "keep_checkpoints": 5, **train},
        "loss": {"alpha": 0.75, "gamma": 2.0}})


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_loss_decreases_and_model_learns(tmp_path, tiny_ckpt, train_files, precision):
    from glinker.model.train import Trainer

    t = Trainer(_cfg(tmp_path, tiny_ckpt, train_files, steps=60, precision=precision))
    t.setup()
    before = t.evaluate()
    res = t.train()
    losses = [h["loss"] for h in t.history if "loss" in h]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert res["dev_f1"]["0:train.json"] > max(0.5, list(before.values())[0])
    path = t.export()
    from glinker.model import BiEncoder

    m = BiEncoder.from_pretrained(path)
    ents = m.predict(["paris is the capital of france ."], ["location", "person", "organization"], threshold=0.5)[0]
    assert ("paris", "location") in {(e["text"], e["label"]) for e in ents}


def test_resume_continues_exactly(tmp_path, tiny_ckpt, train_files):
    from glinker.model.train import Trainer

    straight = Trainer(_cfg(tmp_path, tiny_ckpt, train_files, steps=6, out="a"))
    straight.setup()
    straight.train()
    first = Trainer(_cfg(tmp_path, tiny_ckpt, train_files, steps=6, out="b"))
    first.setup()
    part = first.train(stop_at=3)  # as if the process died after the step-3 checkpoint
    first.close()
    resumed = Trainer(_cfg(tmp_path, tiny_ckpt, train_files, steps=6, out="b"))
    resumed.setup()
    assert resumed.step == 3
    assert 0 < resumed.seconds_before <= part["total_seconds"]
    done = resumed.train()
    # the final record's total covers both sessions (the first up to its checkpoint), its seconds this one
    assert done["total_seconds"] >= resumed.seconds_before + done["seconds"] * 0.99
    a = straight._trainable_state()
    b = resumed._trainable_state()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_resume_refuses_another_configuration(tmp_path, tiny_ckpt, train_files):
    """Resuming with changed learning settings would crash on shapes or silently keep the old learning rates (the
    optimizer state): refused, naming the settings; how a run goes (threads, eval/save/log cadence) may change."""
    import os
    import stat

    from glinker.errors import ConfigError
    from glinker.model.train import Trainer

    first = Trainer(_cfg(tmp_path, tiny_ckpt, train_files, steps=6, out="c"))
    first.setup()
    first.train(stop_at=3)
    first.close()
    ckpt = next((tmp_path / "c" / "checkpoints").glob("step-*"))
    assert stat.S_IMODE(os.stat(ckpt).st_mode) == stat.S_IMODE(os.stat(tmp_path / "c").st_mode)  # not 0700
    changed = Trainer(_cfg(tmp_path, tiny_ckpt, train_files, steps=6, out="c", others_lr=0.5))
    with pytest.raises(ConfigError) as ei:
        changed.setup()
    assert "train.others_lr: 0.003 then, 0.5 now" in str(ei.value) and "new output_dir" in str(ei.value)
    again = Trainer(_cfg(tmp_path, tiny_ckpt, train_files, steps=6, out="c", eval_every=2, log_every=5))
    (tmp_path / "c" / "checkpoints" / ".tmp-killed").mkdir()  # a save cut short by kill -9: cleared on resume
    again.setup()
    assert again.step == 3 and not list((tmp_path / "c" / "checkpoints").glob(".tmp-*"))
    again.close()
    # the data changed since (its sampler state indexes the examples): refused, naming the source
    data = json.loads((train_files / "train.json").read_text())
    (train_files / "train.json").write_text(json.dumps(data[:2]))
    with pytest.raises(ConfigError, match="trained on other data: 0:train.json \\(4 examples then, 2 now\\)"):
        Trainer(_cfg(tmp_path, tiny_ckpt, train_files, steps=6, out="c")).setup()


def test_sources_without_types_and_two_dev_files_of_one_name(tmp_path, tiny_ckpt, train_files, caplog, monkeypatch):
    from glinker.errors import DataError
    from glinker.model.train import Trainer

    (train_files / "sub").mkdir()
    (train_files / "sub" / "train.json").write_text((train_files / "train.json").read_text())
    cfg = _cfg(tmp_path, tiny_ckpt, train_files, steps=2, out="d")
    cfg.dev.append(cfg.dev[0].model_copy(update={"path": str(train_files / "sub" / "train.json")}))
    t = Trainer(cfg)
    t.setup()
    assert sorted(t.evaluate()) == ["0:train.json", "1:train.json"]
    # the dev scoring says how far it is (examples read, both files counted), here at every window
    import glinker.model.train.trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "DEV_PROGRESS_EVERY", 0.0)
    seen: list[tuple[int, int]] = []
    assert t.evaluate(lambda done, total: seen.append((done, total))) == t.evaluate()
    n = 2 * len(t.dev[0].examples)
    assert seen and seen[-1] == (n, n) and all(b == n for _, b in seen)
    assert [a for a, _ in seen] == sorted(a for a, _ in seen)
    cfg = _cfg(tmp_path, tiny_ckpt, train_files, steps=2, out="e")
    cfg.data[0].drop_types = ["person", "organization", "location"]
    with pytest.raises(DataError, match="no entity types"):
        Trainer(cfg).setup()
    cfg = _cfg(tmp_path, tiny_ckpt, train_files, steps=2, out="f")
    cfg.data[0].drop_types = ["persn"]
    Trainer(cfg).setup()
    assert "name types the data does not have: 'persn'" in caplog.text


def test_interrupted_checkpoint_write_leaves_previous(tmp_path, tiny_ckpt, train_files, monkeypatch):
    from glinker.model.train import Trainer

    t = Trainer(_cfg(tmp_path, tiny_ckpt, train_files, steps=6, out="c"))
    t.setup()
    t.train(stop_at=3)
    saved = sorted((tmp_path / "c" / "checkpoints").glob("step-*"))
    assert [p.name for p in saved] == ["step-0000003"]

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    t.step = 4
    with pytest.raises(OSError):
        t.save_checkpoint()
    assert sorted(p.name for p in (tmp_path / "c" / "checkpoints").iterdir()) == ["step-0000003"]


def test_focal_loss_matches_gliner_formula():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3)
    y = (torch.rand(2, 5, 3) > 0.7).float()
    p = torch.sigmoid(x)
    bce = -(y * torch.log(p.clamp_min(1e-6)) + (1 - y) * torch.log((1 - p).clamp_min(1e-6)))
    torch.testing.assert_close(focal_loss_with_logits(x, y), bce)
    pt = p * y + (1 - p) * (1 - y)
    ref = bce * (1 - pt) ** 2 * (0.75 * y + 0.25 * (1 - y))
    torch.testing.assert_close(focal_loss_with_logits(x, y, alpha=0.75, gamma=2.0), ref)
    valid = torch.ones_like(y, dtype=torch.bool)
    assert torch.isclose(span_loss(x, y, valid, alpha=0.75, gamma=2.0), ref.sum() / 2)


def test_negative_sampling_keeps_positives():
    g = torch.Generator().manual_seed(0)
    y = torch.zeros(4, 50, 6)
    y[0, 3, 1] = 1
    for masking in ("global", "label", "span"):
        keep = negative_mask(y, 0.3, masking, g)
        assert keep[0, 3, 1]
        frac = keep[y == 0].float().mean().item()
        assert 0.05 < frac < 0.7, (masking, frac)
    assert negative_mask(y, 1.0, "global").all()


def test_config_errors_name_the_key(tmp_path):
    from glinker.errors import ConfigError
    from glinker.model.train import load_train_config

    f = tmp_path / "t.yaml"
    f.write_text("output_dir: x\nmodel:\n  from_checkpoint: y\n  hiden_size: 3\ndata:\n  - {path: z}\n")
    with pytest.raises(ConfigError, match=r"t.yaml:4.*hiden_size.*\n.*did you mean 'hidden_size'"):
        load_train_config(f)


def test_ignored_ranges_reach_the_batch_and_leave_the_loss(tmp_path, tiny_ckpt, train_files):
    """A partial annotation's unlabelled mentions ("ignore" ranges): their inner spans are neither positives nor
    negatives; a wrong range is an error naming the record."""
    import random

    from glinker.errors import DataError
    from glinker.eval.datasets import iter_training
    from glinker.model.train import Trainer
    from glinker.model.train.batching import BatchSampler, Source, _cut, ner_examples

    words = "the film stars keir dullea and gary lockwood as astronauts .".split()
    rec = {"tokenized_text": words, "ner": [[1, 1, "film"]], "ignore": [[3, 4], [6, 7]]}
    (tmp_path / "part.json").write_text(json.dumps([rec]))
    ex, _ = ner_examples(str(tmp_path / "part.json"), None, None, [], {})
    assert ex[0].ignore == [(3, 4), (6, 7)]
    # cutting a window clips the ranges to it
    assert _cut(words, [(1, 1, "film")], 5, random.Random(0), [(3, 4), (6, 7)])[2] == [(3, 4)]
    t = Trainer(_cfg(tmp_path, tiny_ckpt, train_files, steps=1))
    t.setup()
    b = BatchSampler([Source("p", "ner", 1.0, ex, ["film"])], 1, 32, 5, 0, t.model.max_width, 0).next()
    inside = {(s, w) for s, w in zip(*torch.nonzero(b.ignore[0], as_tuple=True)) for s, w in [(int(s), int(w))]}
    assert inside == {(3, 0), (3, 1), (4, 0), (6, 0), (6, 1), (7, 0)}   # keir, keir dullea, dullea, gary, ...
    assert b.targets[0, 1, 0].sum() == 1 and not b.ignore[0, 1, 0]

    t.model.net.eval()
    with torch.no_grad():
        full = float(t.loss_on(b))
        b.ignore[:] = True
        b.ignore[0, 1, 0] = False                                           # only the positive span is left
        only_pos = float(t.loss_on(b))
        b.ignore[0, 1, 0] = True
        assert float(t.loss_on(b)) == 0.0
    assert 0 < only_pos < full

    bad = {"tokenized_text": words, "ner": [], "ignore": [[4, 30]]}
    (tmp_path / "bad.json").write_text(json.dumps([rec, bad]))
    with pytest.raises(DataError, match="ignore") as err:
        list(iter_training(tmp_path / "bad.json"))
    assert "bad.json" in str(err.value)


def test_packing_joins_examples_of_one_source_with_shifted_spans():
    from glinker.model.train.batching import BatchSampler, Example, Source

    ex = [Example(f"w{i} a b c d".split(), [(0, 0, "thing")], ignore=[(2, 3)]) for i in range(20)]
    src = Source("s", "ner", 1.0, ex, ["thing"])
    b = BatchSampler([src], 4, 8, 5, 0, 4, 0, pack_words=30, pack_prob=1.0).next()
    assert all(8 <= n <= 30 for n in b.n_words) and max(b.n_words) > 8
    for words, tgt, ign in zip(b.words, b.targets, b.ignore):
        starts = [i for i, w in enumerate(words) if w.startswith("w")]
        assert len(starts) == len(words) // 5 > 1                      # whole examples, one after another
        assert {int(i) for i in torch.nonzero(tgt[:, 0, 0]).flatten()} == set(starts)   # every span moved along
        assert all(bool(ign[s + 2, 0]) and bool(ign[s + 3, 0]) for s in starts)          # and every ignored range
    plain = BatchSampler([src], 4, 8, 5, 0, 4, 0).next()
    assert plain.n_words == [5, 5, 5, 5]


def test_window_words_set_in_the_config_reaches_the_saved_checkpoint(tmp_path, tiny_ckpt, train_files):
    from glinker.model import BiEncoder
    from glinker.model.train import TrainConfig
    from glinker.model.train.trainer import init_model

    raw = _cfg(tmp_path, tiny_ckpt, train_files, steps=1).model_dump(exclude_unset=True)
    raw["model"]["window_words"] = 8
    model = init_model(TrainConfig.model_validate(raw))
    assert model.window_words == 8
    again = BiEncoder.from_pretrained(model.save_pretrained(tmp_path / "saved"))
    assert again.config["window_words"] == 8 and again.window_words == 8
    assert BiEncoder.from_pretrained(tiny_ckpt, window_words=0).config.get("window_words") is None


def test_bf16_on_a_cpu_where_it_is_slower_warns_to_use_fp32(tmp_path, tiny_ckpt, train_files, monkeypatch, caplog):
    import logging

    from glinker.model import scoring
    from glinker.model.train import Trainer

    assert scoring.bf16_speedup("cpu") is None or scoring.bf16_speedup("cpu") > 0  # the real probe runs here
    monkeypatch.setattr(scoring, "bf16_speedup", lambda device="cpu": 0.1)
    with caplog.at_level(logging.WARNING, logger="glinker.model.train.trainer"):
        Trainer(_cfg(tmp_path, tiny_ckpt, train_files, steps=1, precision="bf16")).setup()
    assert any("10.0x slower" in r.message and "train.precision=fp32" in r.message for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glinker.model.train.trainer"):
        Trainer(_cfg(tmp_path, tiny_ckpt, train_files, steps=1, out="b", precision="fp32")).setup()
    assert not caplog.records


def test_train_cli_logs_its_steps_when_stderr_is_a_file(tmp_path, tiny_ckpt, train_files):
    """Without -v and with stderr redirected (no progress bar), the step lines must still reach the log."""
    import subprocess
    import sys

    import yaml

    cfg = _cfg(tmp_path, tiny_ckpt, train_files, steps=2, save_every=2)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_unset=True)))
    with open(tmp_path / "err.log", "w") as err:
        r = subprocess.run([sys.executable, "-m", "glinker", "train", "--config", str(tmp_path / "train.yaml")],
                           stdout=subprocess.PIPE, stderr=err, text=True, timeout=300)
    log = (tmp_path / "err.log").read_text()
    assert r.returncode == 0, log
    assert "step 1 loss" in log and "step 2 loss" in log
    # a long dev evaluation is said before it runs (it sat silent for minutes after the step line)
    assert log.index("step 2 loss") < log.index("step 2: scoring the dev set (") < log.index("step 2 dev F1")
    assert "model:" in r.stdout


def test_training_config_file_problems_say_training_config(tmp_path):
    from glinker.errors import ConfigError
    from glinker.model.train import load_train_config

    f = tmp_path / "t.yaml"
    f.write_text("output_dir: x\ntrain:\n  steps: 5\n  steps: 100\n")  # YAML would keep one silently
    with pytest.raises(ConfigError) as ei:
        load_train_config(f)
    assert "training config" in str(ei.value) and f"{f}:4: duplicate key 'steps'" in str(ei.value)
    with pytest.raises(ConfigError) as ei:
        load_train_config(tmp_path / "none.yaml")
    assert "training config file not found" in str(ei.value) and "examples/train/" in str(ei.value)


def test_set_overrides_reach_lists_and_are_named_in_errors(tmp_path, monkeypatch):
    from glinker.errors import ConfigError
    from glinker.model.train import load_train_config

    f = tmp_path / "cfg" / "t.yaml"
    f.parent.mkdir()
    f.write_text("output_dir: runs/a\nmodel: {from_checkpoint: glinker-bi-minilm}\n"
                 "data: [{path: one.json}]\ntrain: {steps: 5}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_train_config(f, {"data.0.path": "two.json", "output_dir": "runs/b"})
    assert cfg.data[0].path == str(tmp_path / "two.json") and cfg.output_dir == str(tmp_path / "runs" / "b")  # --set: from here
    in_file = load_train_config(f)
    assert in_file.output_dir == str(f.parent / "runs" / "a")  # in the file: from its folder
    assert in_file.data[0].path == str(f.parent / "one.json")  # missing: named where the docs say it is looked for
    (tmp_path / "one.json").write_text("[]")  # only where the command runs (a relative ${GLINKER_DATA}): taken there
    assert load_train_config(f).data[0].path == "one.json"
    f.write_text("output_dir: runs/a\nmodle: {from_checkpoint: glinker-bi-minilm}\ndata: [{path: one.json}]\n")
    with pytest.raises(ConfigError) as ei:  # the misspelt section is named first, not only the missing one
        load_train_config(f)
    assert str(ei.value).startswith("[E") and "modle: Extra inputs" in str(ei.value)
    assert "did you mean 'model'" in str(ei.value) and "also model: Field required" in str(ei.value)
    with pytest.raises(ConfigError) as ei:
        load_train_config(f, {"train.stepz": 3})
    assert "--set train.stepz" in str(ei.value) and "did you mean 'steps'" in str(ei.value)
    for bad in ({"data.5.path": "x"}, {"train": 5, "train.steps": 3}):
        with pytest.raises(ConfigError, match="no such place"):
            load_train_config(f, bad)


def test_the_logged_learning_rate_is_the_one_the_step_ran_at(tmp_path, tiny_ckpt, train_files):
    """The log and history.json showed the next step's rate (the scheduler had moved on): the last step always read
    0, and a run shorter than its warm-up looked as if nothing trained."""
    from glinker.model.train import Trainer

    t = Trainer(_cfg(tmp_path, tiny_ckpt, train_files, steps=3, warmup_ratio=0.0, save_every=100))
    t.setup()
    t.train()
    lrs = [h["lr"] for h in t.history if "loss" in h]
    assert lrs[0] == pytest.approx(3e-3)          # cosine from the full rate: the first step ran at others_lr
    assert len(lrs) == 3 and lrs[-1] > 0 and lrs == sorted(lrs, reverse=True)
