"""Session 38 review: the run record's pipeline detail (which names the stage that changed when a resume is
refused) held a stage's kb: source URL with its password, in a file others can read, and printed it."""

from __future__ import annotations

import json

import pytest

from glinker.errors import ConfigError
from glinker.pipeline import Pipeline, loads_spec


def _pipe(password: str, extra: str = "") -> Pipeline:
    return Pipeline(loads_spec(
        "name: s\nstages:\n  m: {type: regex_mentions, patterns: {x: 'x'}}\n"
        f"  c: {{type: alias_candidates, input: m, kb: {{adapter: sql, source: 'postgresql://bob:{password}@db.example/kb',"
        f" options: {{table: companies}}}}{extra}}}\n"))


def test_the_run_record_and_a_refusal_hide_a_stage_kb_password(tmp_path):
    from glinker.cli.link import _claim_output, run_ident

    out = tmp_path / "o.jsonl"
    claim = _claim_output(out, run_ident(_pipe("hunter2"), None, None), False)
    record = (tmp_path / "o.jsonl.run.json").read_text()
    out.write_text('{"id": "1"}\n')  # the run wrote its output (a run record without one is removed)
    claim.__exit__(None, None, None)
    assert "hunter2" not in record and "***" in record
    assert json.loads(record)["identity"]["stages"]["c"]["type"] == "alias_candidates"
    with pytest.raises(ConfigError) as e:  # another pipeline: refused, naming the change without the password
        _claim_output(out, run_ident(_pipe("newpass", ", top_k: 3"), None, None), True)
    assert "hunter2" not in str(e.value) and "newpass" not in str(e.value)
    assert "c.top_k" in str(e.value), str(e.value)


def test_a_cluster_workers_differences_hide_secrets():
    from glinker.cluster import _differences

    a = {"stages": {"c": {"type": "t", "params": {"api_key": "k1", "url": "https://u:pw1@h/x", "n": 1}}}}
    b = {"stages": {"c": {"type": "t", "params": {"api_key": "k2", "url": "https://u:pw2@h/x", "n": 2}}}}
    said = _differences(a, b)
    assert "k1" not in said and "pw1" not in said and "pw2" not in said and "c.n (1 there, 2 here)" in said


def test_a_cluster_jobs_metadata_keeps_no_password():
    """A `glinker link --queue` job stored the pipeline identity with raw stage parameters in Redis (for the
    workers' messages): a stage kb: URL password or a secret-named parameter was readable there."""
    from glinker.cluster import _differences, shown_params

    ident = _pipe("hunter2").identity()
    shown = shown_params(ident)
    text = json.dumps(shown)
    assert "hunter2" not in text and "***" in text
    assert shown["stages"]["c"]["params"]["top_k"] == ident["stages"]["c"]["params"]["top_k"]
    other = shown_params(_pipe("hunter2", ", top_k: 3").identity())
    assert "c.top_k" in _differences(shown, other)
