"""scripts/tune_el.py re-ranks saved links offline exactly as ``rescore`` + ``select`` would (every missing_prior mode)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from .test_linking_stages import counted_kb, given, pipe

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "tune_el.py"

SAVE = """stages:
  m: {type: given_mentions}
  a: {type: alias_candidates, input: m, top_k: 10}
  r: {type: rescore, input: a, weights: {prior: 1.0, alias: 1.0, popularity: 1.0}, missing_prior: popularity}
  links: {type: select, input: r, nil_threshold: 0.0, top_k: 100, one_per_span: false}
"""
RUN = """stages:
  m: {type: given_mentions}
  a: {type: alias_candidates, input: m, top_k: 10}
  r: {type: rescore, input: a, weights: W, missing_prior: MODE}
  links: {type: select, input: r, nil_threshold: NIL, top_k: 10}
"""


@pytest.fixture(scope="module")
def tune():
    spec = importlib.util.spec_from_file_location("tune_el", SCRIPT)
    m = importlib.util.module_from_spec(spec)
    sys.modules["tune_el"] = m  # its dataclasses look their module up
    spec.loader.exec_module(m)
    return m


@pytest.mark.parametrize("counts", [True, False])
@pytest.mark.parametrize("mode", ["zero", "skip", "popularity", "auto"])
@pytest.mark.parametrize("weights,nil", [({"prior": 2.0, "alias": 1.0}, 0.5), ({"prior": 1.0, "popularity": 0.5}, 0.3),
                                         ({"prior": 1.0, "alias": 0.2, "popularity": 1.0}, 0.7)])
def test_relink_reproduces_rescore_and_select(tune, tiny_model, tiny_kb, tmp_path, mode, weights, nil, counts):
    kb = counted_kb(tmp_path / "kb") if counts else tiny_kb  # the tiny KB has no alias counts at all
    doc = given((0, 5), (10, 16), (18, 23), (24, 30), text="Paris and Berlin. Apple Google.")
    [saved] = pipe(SAVE, tiny_model, kb).link([doc])
    path = tmp_path / "links.jsonl"
    path.write_text(saved.model_dump_json() + "\n", encoding="utf-8")
    names, docs = tune.load_features(str(path), str(kb))
    m, w = tune.effective(mode, weights, counts)
    got = tune.relink(names, docs, w, nil, m)
    w = "{" + ", ".join(f"{k}: {v}" for k, v in weights.items()) + "}"
    [ref] = pipe(RUN.replace("W", w).replace("MODE", mode).replace("NIL", str(nil)), tiny_model, kb).link([doc])
    assert sorted((ln["mention"]["start"], ln["entity_id"]) for ln in got[0]["links"]) == \
        sorted((ln.mention.start, ln.entity_id) for ln in ref.links)
