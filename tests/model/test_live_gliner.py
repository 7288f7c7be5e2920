"""Run the reference gliner 0.2.29 live on the same inputs (in-process, or the .venv-gliner interpreter).

Also proves that gliner loads checkpoints written by glinker's save_pretrained (strict keys), span and
token level.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _conformance import FIXTURES, compare_entities, conforming_rows, load_golden, max_logit_diff, setting_args

from glinker.model import BiEncoder
from glinker.model.testing import build_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = FIXTURES / "make_golden.py"

pytestmark = pytest.mark.reference


def _reference_python() -> str:
    if importlib.util.find_spec("gliner") is not None:
        return sys.executable
    venv = Path(os.environ.get("GLINER_REF_PYTHON", ROOT / ".venv-gliner" / "bin" / "python"))
    if venv.exists():
        return str(venv)
    pytest.importorskip("gliner")  # skips with the usual message
    raise AssertionError("unreachable")


def _record(pairs: list[tuple[Path, Path]]) -> list[dict]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = [str(p) for pair in pairs for p in pair]
    r = subprocess.run(
        [_reference_python(), str(SCRIPT), "record", *args],
        capture_output=True,
        check=False,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return [load_golden(out) for _, out in pairs]


def _assert_conforms(model: BiEncoder, golden: dict) -> None:
    assert golden["gliner_version"] == "0.2.29"
    for name, case in golden["cases"].items():
        case, _ = conforming_rows(model.tokenizer, case)
        assert max_logit_diff(model, case) <= 1e-4, name
        for key, expected in case["entities"].items():
            got = model.predict(case["texts"], case["labels"], long_text="truncate", **setting_args(key))
            assert compare_entities(got, expected) is None, (name, key)


def test_live_gliner_on_fixture_and_on_our_checkpoints(tmp_path):
    ckpts = [
        FIXTURES / "modernbert",
        build_tiny_checkpoint(tmp_path / "ours-deberta", "deberta", seed=5),
        build_tiny_checkpoint(tmp_path / "ours-token", "modernbert", seed=6, span_mode="token_level"),
    ]
    goldens = _record([(c, tmp_path / f"live{i}.pt") for i, c in enumerate(ckpts)])
    for ckpt, golden in zip(ckpts, goldens):
        _assert_conforms(BiEncoder.from_pretrained(ckpt), golden)
