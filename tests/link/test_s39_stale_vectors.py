"""Session 39, upgrade walkthrough: `glinker pipeline validate` said OK for a pipeline whose KB (or label bank) an
earlier release of the shipped model embedded; the stage refused it only when it loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from glinker.errors import PipelineError
from glinker.model.shipped import DEFAULT_MODEL, shipped_fingerprint
from glinker.pipeline.spec import load_spec

NOW = shipped_fingerprint(DEFAULT_MODEL)


def _kb(root: Path, fingerprint: str | None, model: str = DEFAULT_MODEL) -> Path:
    gen = root / "gen-20261201T000000-abcdef12"
    gen.mkdir(parents=True)
    (gen / "manifest.json").write_text(json.dumps({"model": model, "model_fingerprint": fingerprint}))
    (root / "CURRENT").write_text(gen.name + "\n")
    return root


PIPE = """name: p
model: {model}
kb: {kb}
stages:
  m: {{type: alias_mentions}}
  d: {{type: dense_candidates, input: m}}
  links: {{type: select, input: d}}
"""


@pytest.mark.skipif(NOW is None, reason="the shipped model's manifest records no fingerprint")
def test_a_kb_of_an_earlier_release_is_named_by_validate(tmp_path: Path) -> None:
    old = _kb(tmp_path / "old", "0" * 64)
    p = tmp_path / "p.yaml"
    p.write_text(PIPE.format(model=DEFAULT_MODEL, kb=old))
    with pytest.raises(PipelineError) as ei:
        load_spec(p, check_resources=True)
    prob = next(x for x in ei.value.problems if x.code == "E255")
    assert "an earlier release of glinker-bi-minilm" in prob.message and "stage 'd'" in prob.message
    assert f"--model {DEFAULT_MODEL} --out {old}" in prob.fix
    from glinker.cli import _load_groups, app

    _load_groups()
    r = CliRunner().invoke(app, ["pipeline", "validate", str(p)])
    assert r.exit_code == 2 and "E255" in r.output
    # as the model is now, an alias-only KB, another model's KB: no E255
    for root, fp, model in (("now", NOW, DEFAULT_MODEL), ("alias", None, DEFAULT_MODEL), ("other", "1" * 64, "x/y")):
        p.write_text(PIPE.format(model=DEFAULT_MODEL, kb=_kb(tmp_path / root, fp, model)))
        load_spec(p, check_resources=True)
    # a stage that does not compare vectors (no dense candidates): the old KB is fine for it
    p.write_text(PIPE.format(model=DEFAULT_MODEL, kb=old).replace("dense_candidates", "alias_candidates"))
    load_spec(p, check_resources=True)
    # nor re-scoring by coherence alone (the KB's vectors against each other), only the bi-encoder feature
    rescore = "  r: {{type: rescore, input: d, weights: {{alias: 1.0, {w}: 0.5}}}}\n  links: {{type: select, input: r}}\n"
    base = PIPE.format(model=DEFAULT_MODEL, kb=old).replace("dense_candidates", "alias_candidates")
    base = base.replace("  links: {type: select, input: d}\n", "")
    p.write_text(base + rescore.format(w="coherence"))
    load_spec(p, check_resources=True)
    p.write_text(base + rescore.format(w="biencoder"))
    with pytest.raises(PipelineError, match="E255"):
        load_spec(p, check_resources=True)


@pytest.mark.skipif(NOW is None, reason="the shipped model's manifest records no fingerprint")
def test_a_label_bank_of_other_weights_is_named(tmp_path: Path) -> None:
    bank = tmp_path / "bank"
    bank.mkdir()
    (bank / "label_bank.json").write_text(json.dumps({"format": "glinker.label_bank/1", "names": ["a"],
                                                     "model_fingerprint": "0" * 64}))
    p = tmp_path / "p.yaml"
    p.write_text(f"name: p\nmodel: {DEFAULT_MODEL}\nstages:\n  n: {{type: biencoder_mentions, label_bank: {bank}}}\n")
    with pytest.raises(PipelineError, match="E255"):
        load_spec(p, check_resources=True)
