"""`make demo`'s script: builds the demo KB from the shipped Wikidata dump sample and prints links."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_demo_dump_is_in_the_official_layout():
    lines = gzip.open(ROOT / "examples" / "demo_kb" / "wikidata-demo.json.gz", "rt", encoding="utf-8").read().splitlines()
    assert lines[0] == "[" and lines[-1] == "]"
    assert all(x.endswith(",") for x in lines[1:-2]) and not lines[-2].endswith(",")
    ents = [json.loads(x.rstrip(",")) for x in lines[1:-1]]
    assert 100 <= len(ents) <= 1000
    by_id = {e["id"]: e for e in ents}
    assert by_id["Q42"]["labels"]["en"]["value"] == "Douglas Adams"
    assert by_id["Q90"]["labels"]["en"]["value"] == "Paris"


def test_demo_prints_links():
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py")], cwd=ROOT, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    # real entities of the shipped dump, found in the example texts
    assert "-> Q42 " in out and "Douglas Adams" in out
    assert "-> Q90 " in out and "-> Q15789 " in out


def test_cluster_demo_links_through_two_workers_like_a_local_run():
    """`make cluster-demo`: two worker processes, the coordinator, the same links as locally (needs Redis)."""
    import pytest

    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=2).ping()
    except redis.RedisError as e:
        pytest.skip(f"no Redis at 127.0.0.1:6379: {e}")
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "cluster_demo.py")], cwd=ROOT, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "the same as a local run, in the same order: yes" in r.stdout
    import re

    # each worker says what it linked; how the 4 one-document batches split between them depends on timing
    linked = [int(n) for n in re.findall(r"worker: linked (\d+) documents", r.stdout)]
    assert len(linked) == 2 and sum(linked) == 4, r.stdout
