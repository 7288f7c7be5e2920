"""Findings of the training audit (session 30): --ship into a folder of other files, BIO files whose first sentence
looks indexed or that mix layouts, gold spans the window cuts or that are wider than the model's spans, a dev file
changed between sessions, the final dev F1 in the last checkpoint, booleans as numbers in train.yaml, messages,
and --export naming the run's own folder.

A tiny BERT encoder stands in for a packaged encoder (as in test_s28_train_ship.py), so nothing loads a real model.
"""

from __future__ import annotations

import json
import logging
import random
import re
from pathlib import Path

import pytest
import torch
import yaml

from glinker.errors import ConfigError, DataError

torch.set_num_threads(1)
PKG = "pkg:fake-tiny-enc"
NEW = {"text_encoder": PKG, "labels_encoder": PKG, "hidden_size": 32, "max_width": 4, "max_len": 32,
       "train_text_layers": 1, "train_label_layers": 0}


def _yaml(path: Path, out: str, model: dict, steps: int = 2, **train) -> Path:
    path.write_text(yaml.safe_dump({
        "output_dir": out, "seed": 3, "model": model, "data": [{"path": str(path.parent / "train.json")}],
        "train": {"steps": steps, "batch_size": 2, "max_words": 16, "max_types": 5, "negative_types": 1,
                  "save_every": 2, "log_every": 1, "eval_every": 0, "threads": 1, "warmup_ratio": 0.0, **train}}))
    return path


def _cli(*args):
    from typer.testing import CliRunner

    from glinker.cli import app

    return CliRunner().invoke(app, ["train", *map(str, args)])


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------------------
# 1. --ship into a folder that holds other things


def test_ship_into_a_folder_of_other_files_is_refused_before_training(pkg, tmp_path, train_files):
    f = _yaml(train_files / "base.yaml", str(tmp_path / "base"), NEW)
    keep = tmp_path / "keep"
    keep.mkdir()
    _write(keep / "NOTES.md", "notes\n")
    r = _cli("--config", f, "--ship", keep)
    assert isinstance(r.exception, ConfigError), r.output
    assert str(keep) in str(r.exception) and "NOTES.md" in str(r.exception) and "fix:" in str(r.exception)
    assert (keep / "NOTES.md").read_text() == "notes\n" and not (tmp_path / "base").exists()


def test_export_shipped_refuses_other_files_and_keeps_notes_beside_a_shipped_model(pkg, tmp_path, train_files):
    from glinker.model import shipped
    from glinker.model.train import Trainer, load_train_config

    cfg = load_train_config(_yaml(train_files / "base.yaml", str(tmp_path / "base"), NEW))
    t = Trainer(cfg)
    t.setup()
    t.train()
    t.close()
    keep = tmp_path / "keep"
    keep.mkdir()
    _write(keep / "NOTES.md", "notes\n")
    with pytest.raises(ConfigError, match=re.escape(str(keep))):
        shipped.export_shipped(t.model, keep, cfg)
    assert sorted(p.name for p in keep.iterdir()) == ["NOTES.md"]

    out = tmp_path / "shipped"  # a shipped model's folder: written again, the user's files carried over
    shipped.export_shipped(t.model, out, cfg, name="first")
    _write(out / "README.md", "about this model\n")
    (out / "notes").mkdir()
    _write(out / "notes" / "a.txt", "a\n")
    shipped.export_shipped(t.model, out, cfg, name="again")
    assert json.loads((out / shipped.MANIFEST).read_text())["name"] == "again"
    assert (out / "README.md").read_text() == "about this model\n" and (out / "notes" / "a.txt").read_text() == "a\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    shipped.export_shipped(t.model, empty, cfg)  # an empty folder is fine
    assert (empty / shipped.MANIFEST).is_file()


# ------------------------------------------------------------------------------------------------------------
# 2, 3. BIO layouts decided for the whole file; mixed layouts refused


def test_a_conll2003_file_whose_first_sentence_counts_is_not_read_as_indexed(tmp_path):
    from glinker.eval.datasets import iter_bio, iter_training

    f = _write(tmp_path / "conll_num.txt", "-DOCSTART- -X- -X- O\n\n1 CD B-NP O\n\nJohn NNP B-NP B-PER\n"
                                           "Smith NNP I-NP I-PER\nvisited VBD B-VP O\nParis NNP B-NP B-LOC\n")
    assert [(e.tokens, e.spans) for e in iter_training(f)] == [
        (["1"], []), (["John", "Smith", "visited", "Paris"], [(0, 1, "person"), (3, 3, "location")])]
    # indexed files still are, per sentence (0.. or 1..) or numbered throughout the file
    g = _write(tmp_path / "idx.conllu", "1\tJohn\tB-PER\n2\tSmith\tI-PER\n\n0\tParis\tB-LOC\n\n1\tRome\tB-LOC\n"
                                        "2\tis\tO\n\n3\tok\tO\n")
    assert [e.tokens for e in iter_bio(g)] == [["John", "Smith"], ["Paris"], ["Rome", "is"], ["ok"]]
    h = _write(tmp_path / "idx2.conllu", "0\tJohn\tB-PER\n1\tSmith\tI-PER\n\n1\t7\tO\n2\tParis\tB-LOC\n")
    assert [e.tokens for e in iter_bio(h)] == [["John", "Smith"], ["7", "Paris"]]
    # and an indexed file with an irregular line (a UD range, a gap) stays indexed: its words were its numbers
    ud = "".join("1\tParis\tB-LOC\n2\tis\tO\n\n" for _ in range(20)) + "1\tVamos\tO\n2-3\tal\tO\n2\ta\tO\n"
    assert [e.tokens for e in iter_bio(_write(tmp_path / "ud.conllu", ud))][-2:] == [["Paris", "is"],
                                                                                    ["Vamos", "al", "a"]]
    gap = _write(tmp_path / "gap.conllu", "1\tParis\tB-LOC\n2\tis\tO\n\n1\tBerlin\tB-LOC\n3\tx\tO\n")
    assert [e.tokens for e in iter_bio(gap)] == [["Paris", "is"], ["Berlin", "x"]]


@pytest.mark.parametrize("text,line,now,before", [
    ("John\tB-PER\nSmith\tI-PER\nsaid\tO\n\n0\tParis\tB-LOC\nis\tO\n", 5, 3, 2),
    ("0\tParis\tB-LOC\n\nJohn\tB-PER\nSmith\tI-PER\n", 3, 2, 3),
    ("John NNP B-NP B-PER\nSmith\tI-PER\n", 2, 2, 4),
])
def test_a_bio_file_that_mixes_column_layouts_is_an_error(tmp_path, text, line, now, before):
    from glinker.eval.datasets import iter_training

    f = _write(tmp_path / "mixed.bio", text)
    with pytest.raises(DataError) as ei:
        list(iter_training(f))
    msg = str(ei.value)
    assert f"{f}:{line}" in msg and f"has {now} columns, the lines before it {before}" in msg and "fix:" in msg


# ------------------------------------------------------------------------------------------------------------
# 4. spans cut by the window or wider than the model's spans: ignored, not negatives


def test_a_span_cut_by_the_window_becomes_an_ignored_range():
    from glinker.model.train.batching import _cut

    words = [f"w{i}" for i in range(20)]
    spans = [(2, 3, "a"), (8, 12, "b")]
    for seed in range(40):
        rng, again = random.Random(seed), random.Random(seed)
        win, kept, ign = _cut(words, spans, 10, rng)
        lo = int(win[0][1:])
        _draws(again, spans, 10)
        assert rng.getstate() == again.getstate()  # the same random draws as before
        hi = lo + 10
        for s, e, t in spans:
            if s >= lo and e < hi:
                assert (s - lo, e - lo, t) in kept
            elif s < hi and e >= lo:  # cut: its part inside the window is ignored
                assert (max(s, lo) - lo, min(e, hi - 1) - lo) in ign and all(x[2] != t for x in kept)


def _draws(rng: random.Random, spans: list, max_words: int) -> None:
    """The random numbers _cut draws (as before spans cut by the window were ignored)."""
    s, e, _ = spans[rng.randrange(len(spans))]
    rng.randrange(0, max(1, max_words - (e - s + 1)))


def test_spans_wider_than_max_width_are_ignored_with_one_warning_per_source(caplog):
    from glinker.model.train.batching import BatchSampler, Example, Source

    words = "the long name of a very large organisation here today".split()
    ex = Example(words, [(1, 7, "organisation"), (3, 3, "thing")])
    src = Source("0:x.json", "ner", 1.0, [ex, Example(list(words), [(0, 5, "organisation")])],
                 ["organisation", "thing"])
    with caplog.at_level(logging.WARNING, logger="glinker.model.train.batching"):
        sampler = BatchSampler([src], 1, 16, 5, 0, 4, 0)
    warned = [r.getMessage() for r in caplog.records if "max_width" in r.getMessage()]
    assert len(warned) == 1 and "0:x.json" in warned[0] and "2 spans" in warned[0]
    assert "'long name of a very large organisation'" in warned[0]
    src._order, src._pos = [0], 0
    b = sampler.next()
    assert b.words == [words]
    # every span inside words 1-7 is out of the loss, but the gold span "of" (3) inside it is a positive
    k = b.labels.index("thing")
    assert b.targets[0, 3, 0, k] == 1 and not b.ignore[0, 3, 0]
    assert all(bool(b.ignore[0, s, w]) for s in range(1, 8) for w in range(4) if s + w <= 7 and (s, w) != (3, 0))
    assert not b.ignore[0, 0].any() and not b.ignore[0, 8].any()
    assert b.targets[0].sum() == 1


# ------------------------------------------------------------------------------------------------------------
# 5, 6. a changed dev file is named on resume; the final dev F1 is in the last checkpoint


@pytest.mark.parametrize("as_folder", [False, True, "default split"])
def test_a_dev_file_changed_since_the_run_started_is_named(train_cfg, train_files, caplog, as_folder):
    from glinker.model.train import Trainer

    folder = train_files / "devset"
    folder.mkdir()
    dev = folder / "dev.json"
    dev.write_text((train_files / "train.json").read_text())
    (folder / "train.json").write_text("[]")  # another split of the folder: not read, not digested
    spec = {"path": str(folder)} if as_folder == "default split" else {"path": str(folder), "split": "dev"}
    cfg = train_cfg(out="devrun", steps=6, dev=[spec if as_folder else {"path": str(dev)}])
    t = Trainer(cfg)
    t.setup()
    t.train(stop_at=3)
    t.close()
    recs = json.loads(dev.read_text())
    dev.write_text(json.dumps(recs[:2]))
    with caplog.at_level(logging.WARNING, logger="glinker.model.train.trainer"):
        again = Trainer(cfg)
        again.setup()
        again.close()
    assert again.step == 3  # resumed: dev files only measure
    msg = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "dev[0].path" in msg and str(folder if as_folder else dev) in msg and "changed since the run started" in msg
    if as_folder:  # a change to a file the reader does not take is no change
        caplog.clear()
        dev.write_text(json.dumps(recs))
        (folder / "train.json").write_text("[{}]")
        with caplog.at_level(logging.WARNING, logger="glinker.model.train.trainer"):
            third = Trainer(cfg)
            third.setup()
            third.close()
        assert third.step == 3 and "changed since the run started" not in caplog.text


def test_the_final_dev_f1_is_in_the_last_checkpoint(train_cfg, monkeypatch):
    from glinker.model.train import Trainer

    cfg = train_cfg(out="fin", steps=4, eval_every=0, save_every=3)
    t = Trainer(cfg)
    t.setup()
    res = t.train()
    t.close()
    st = json.loads((t.ckpt_root / "step-0000004" / "state.json").read_text())
    assert [h["dev_f1"] for h in st["history"] if h.get("step") == 4 and "dev_f1" in h] == [res["dev_f1"]]
    monkeypatch.setattr(Trainer, "evaluate", lambda *a: pytest.fail("evaluated again"))
    again = Trainer(cfg)
    again.setup()
    assert again.train()["dev_f1"] == res["dev_f1"]
    again.close()


# ------------------------------------------------------------------------------------------------------------
# 8. booleans are no numbers


@pytest.mark.parametrize("key,value", [("steps", "yes"), ("pack_prob", "no"), ("threads", "true")])
def test_a_boolean_for_a_number_is_refused(tmp_path, key, value):
    from glinker.model.train import load_train_config

    f = _write(tmp_path / "t.yaml", "output_dir: run\nmodel: {from_checkpoint: glinker-bi-minilm}\n"
                                    f"data:\n  - {{path: d.json}}\ntrain:\n  {key}: {value}\n")
    with pytest.raises(ConfigError) as ei:
        load_train_config(f)
    assert f"{f}:6" in str(ei.value) and f"train.{key}" in str(ei.value) and "boolean" in str(ei.value)
    with pytest.raises(ConfigError, match="--set seed"):
        load_train_config(_write(tmp_path / "ok.yaml", "output_dir: run\nmodel: {from_checkpoint: x}\n"
                                                       "data:\n  - {path: d.json}\n"), {"seed": True})
    assert load_train_config(tmp_path / "ok.yaml", {"train.pack_prob": 1}).train.pack_prob == 1.0


# ------------------------------------------------------------------------------------------------------------
# 9. messages


@pytest.mark.parametrize("name,text,msg", [
    ("s.json", json.dumps([{"sentence": "John Smith visited Paris.", "entities": [
        {"name": "John Smith", "type": 5, "pos": [0, 10]}]}]), "entity 0 has type 5, which is not a string"),
    ("a.json", "[]\n", "holds no records"),
    ("e.bio", "", "the file is empty"),
    ("c.bio", "-DOCSTART- -X- -X- O\n\n", "no token line"),
])
def test_data_messages_say_what_is_wrong(tmp_path, name, text, msg):
    from glinker.eval.datasets import iter_training

    f = _write(tmp_path / name, text)
    with pytest.raises(DataError, match=msg) as ei:
        list(iter_training(f))
    assert str(f) in str(ei.value)


def test_stop_at_below_the_runs_step_says_so(tiny_ckpt, train_files):
    f = _yaml(train_files / "s.yaml", str(train_files / "run"), {"from_checkpoint": str(tiny_ckpt)}, steps=6)
    assert _cli("--config", f, "--stop-at", 4).exit_code == 0
    r = _cli("--config", f, "--stop-at", 2)
    assert r.exit_code == 0, r.output
    assert "already at step 4 of 6, past --stop-at 2" in r.output and "stopped at step 4" not in r.output


# ------------------------------------------------------------------------------------------------------------
# 10. --export naming the run's own folder


def test_export_into_the_runs_own_folder_is_refused(tiny_ckpt, train_files):
    out = train_files / "run"
    f = _yaml(train_files / "x.yaml", str(out), {"from_checkpoint": str(tiny_ckpt)})
    for export in (out, train_files):
        r = _cli("--config", f, "--export", export)
        assert isinstance(r.exception, ConfigError) and "--export" in str(r.exception), r.output
        assert not out.exists()


# ------------------------------------------------------------------------------------------------------------
# 7. the docs


def test_the_fine_tuning_docs_mention_int4_diff():
    text = (Path(__file__).parents[2] / "docs" / "training.md").read_text(encoding="utf-8")
    section = text.split("## Fine-tuning the shipped model on your data", 1)[1].split("\n## ", 1)[0]
    assert "--ship-format int4-diff" in section and "79.03" in section


def test_ship_into_the_full_models_folder_is_refused_before_training(tiny_ckpt, train_files):
    out = train_files / "run"
    f = _yaml(train_files / "x.yaml", str(out), {"from_checkpoint": str(tiny_ckpt)})
    r = _cli("--config", f, "--ship", out / "final")
    assert isinstance(r.exception, ConfigError) and "--ship" in str(r.exception), r.output
    assert not out.exists()
