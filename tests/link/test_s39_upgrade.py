"""Session 39, an operator upgrading with an older build's artifacts on disk: what they hit, reproduced first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glinker.cli.link import run_link
from glinker.errors import ConfigError


def _input(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"Paris is in France {i}."}) + "\n"
                            for i in range(n)), encoding="utf-8")
    return path


def test_an_output_without_a_run_record_is_not_resumed_unchecked(tmp_path: Path, pipeline: Path) -> None:
    """An output written before run records existed (2026-12-03) was resumed with no check at all: another
    pipeline's links were appended to it without a word."""
    out = tmp_path / "out.jsonl"
    run_link(_input(tmp_path / "two.jsonl", 2), pipeline, out)
    out.with_name("out.jsonl.run.json").unlink()  # what an older build left: the output alone
    five = _input(tmp_path / "five.jsonl", 5)
    with pytest.raises(ConfigError, match="has no run record") as ei:
        run_link(five, pipeline, out)
    assert "--resume-unverified" in ei.value.fix and "--no-resume" in ei.value.fix
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2  # nothing appended
    counts = run_link(five, pipeline, out, resume_unverified=True)
    assert counts["written"] == 3 and out.with_name("out.jsonl.run.json").is_file()
    assert [json.loads(x)["id"] for x in out.read_text(encoding="utf-8").splitlines()] == [f"d{i}" for i in range(5)]
    assert run_link(five, pipeline, out)["written"] == 0  # checked from now on, as any output


def test_an_older_builds_training_checkpoint_is_said_as_such() -> None:
    """A checkpoint saved before pack_prob, pack_words and precision existed was refused as "another configuration:
    train.pack_prob: None then, 0.5 now", with a fix (restore them) no configuration can follow."""
    from glinker.model.train.trainer import _check_same_run

    now = {"train": {"lr": 1e-4, "pack_prob": 0.5, "precision": "fp32"}, "model": {"hidden_size": 256},
           "data": [{"path": "/d/train.json", "weight": 1.0}]}
    old = {"train": {"lr": 1e-4}, "model": {"hidden_size": 256}, "data": [{"path": "/d/train.json", "weight": 1.0}]}
    where = Path("/runs/r1/checkpoints/step-0000002")
    with pytest.raises(ConfigError, match="saved by an older glinker") as ei:
        _check_same_run(old, now, where)
    assert "train.pack_prob, train.precision" in ei.value.message and "/runs/r1/final" in ei.value.fix
    # a value that differs (a key both have) is still "another configuration"
    with pytest.raises(ConfigError, match="another configuration: train.lr"):
        _check_same_run({**now, "train": {**now["train"], "lr": 2e-4}}, now, where)
    _check_same_run(json.loads(json.dumps(now)), now, where)  # the same: fine


def test_link_and_ner_offer_resume_unverified() -> None:
    from typer.testing import CliRunner

    from glinker.cli import _load_groups, app

    _load_groups()
    for cmd in ("link", "ner"):
        out = CliRunner().invoke(app, [cmd, "--help"], env={"COLUMNS": "200"}).output
        assert "--resume-unverified" in out, cmd
