"""Session 39, a benchmark reproducer's walkthrough: `glinker eval ner --sweep` on the published sets showed only the
mean of every set run (CoNLL included) and `docs/benchmarks.md`'s zero-shot figure appeared nowhere in its output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from glinker.cli import app
from glinker.eval.ner import ZERO_SHOT_BENCHMARK


def test_the_sweep_shows_the_zero_shot_mean(tmp_path: Path) -> None:
    ckpt = Path(__file__).resolve().parents[1] / "fixtures" / "gliner" / "deberta"
    if not (ckpt / "gliner_config.json").is_file():
        pytest.skip("tiny gliner fixture missing")
    rec = [{"sentence": "John Smith works at Google .", "entities": [{"name": "John", "type": "person",
                                                                      "pos": [0, 4]}]}]
    for name in (*ZERO_SHOT_BENCHMARK, "conll2003"):
        d = tmp_path / "data" / name
        d.mkdir(parents=True)
        (d / "test.json").write_text(json.dumps(rec))
        (d / "labels.json").write_text('["person", "organization"]')
    r = CliRunner().invoke(app, ["eval", "ner", "--data", str(tmp_path / "data"), "--model", str(ckpt),
                                 "--sweep", "0.1,0.5"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert "zero-shot avg: the 7 published sets" in lines[-5]
    assert re.fullmatch(r"best_threshold=[\d.]+ avg_micro_f1=\d\.\d{4} zero_shot_avg=\d\.\d{4}", lines[-1])
    r = CliRunner().invoke(app, ["eval", "ner", "--data", str(tmp_path / "data" / "conll2003"), "--model",
                                 str(ckpt), "--sweep", "0.5"])
    assert r.exit_code == 0 and "zero-shot" not in r.output and "zero_shot_avg" not in r.output
