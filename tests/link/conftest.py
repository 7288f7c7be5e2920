"""Fixtures for the linking tests: a tiny real bi-encoder checkpoint and a tiny real KB (SQLite + FAISS) built
from it, shared by the session."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from glinker.types import Entity
from tests.kb.conftest import build_records_kb  # noqa: F401  (for this folder's tests)

ENTITIES = [
    Entity(id="Q90", label="Paris", aliases=["City of Light"], description="capital of France",
           types=["Q515"], popularity=300),
    Entity(id="Q830149", label="Paris", aliases=["Paris, Texas"], description="city in Texas, United States",
           types=["Q515"], popularity=40),
    Entity(id="Q167646", label="Paris", description="son of Priam in Greek mythology", types=["Q5"], popularity=80),
    Entity(id="Q142", label="France", aliases=["French Republic"], description="country in Europe",
           types=["Q6256"], popularity=400),
    Entity(id="Q183", label="Germany", aliases=["Deutschland"], description="country in Europe",
           types=["Q6256"], popularity=390),
    Entity(id="Q64", label="Berlin", description="capital of Germany", types=["Q515"], popularity=250),
    Entity(id="Q84", label="London", description="capital of the United Kingdom", types=["Q515"], popularity=350),
    Entity(id="Q95", label="Google", aliases=["Google LLC"], description="company", types=["Q4830453"],
           popularity=200),
    Entity(id="Q312", label="Apple Inc.", aliases=["Apple"], description="company founded by Steve Jobs",
           types=["Q4830453"], popularity=220),
    Entity(id="Q89", label="apple", description="fruit", types=["Q1364"], popularity=150),
    Entity(id="Q19837", label="Steve Jobs", description="founder of apple inc", types=["Q5"], popularity=120),
    Entity(id="Q1", label="John Smith", description="person", types=["Q5"], popularity=5),
]

TEXTS = [
    "Steve Jobs founded Apple in California.",
    "Paris is the capital of France; Paris, Texas is a city.",
    "John Smith lives in Berlin and works for Google.",
    "Nothing to link here.",
]


def write_entities(path: Path, entities: list[Entity] = ENTITIES) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for e in entities:
            f.write(json.dumps(e.model_dump(exclude_defaults=True), ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from glinker.model.testing import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny", text_encoder="bert")


@pytest.fixture(scope="session")
def tiny_kb(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    from glinker.kb.adapters import load_adapter
    from glinker.kb.build import build_kb
    from glinker.model import BiEncoder

    d = tmp_path_factory.mktemp("kb")
    src = write_entities(d / "entities.jsonl")
    enc = BiEncoder.from_pretrained(tiny_model)
    build_kb(load_adapter("jsonl", str(src)), d / "kb", enc, model_name=str(tiny_model))
    return d / "kb"


PIPE = """name: t
model: {model}
kb: {kb}
settings: {{batch_size: 2}}
stages:
  mentions: {{type: alias_mentions}}
  a: {{type: alias_candidates, input: mentions}}
  r: {{type: rescore, input: a, weights: {{biencoder: 0.5, popularity: 1.0, alias: 1.0}}}}
  links: {{type: select, input: r}}
"""


@pytest.fixture
def pipeline(tmp_path, tiny_model, tiny_kb) -> Path:
    """A linking pipeline (alias mentions and candidates, re-scored, selected) over the tiny model and KB."""
    p = tmp_path / "p.yaml"
    p.write_text(PIPE.format(model=tiny_model, kb=tiny_kb))
    return p



def alias_mention_texts(kb: Path, *texts: str, **params) -> list[list[str]]:
    """The texts of the mentions an ``alias_mentions`` stage over ``kb`` (with ``params``) finds in each text; each
    mention's offsets checked against its text."""
    from glinker.pipeline import Pipeline, loads_spec

    stage = json.dumps({"type": "alias_mentions", **params})
    p = Pipeline(loads_spec(f"name: t\nkb: {kb}\nstages:\n  m: {stage}\n"))
    rows = p(list(texts))
    for text, ms in zip(texts, rows):
        assert all(text[m.start:m.end] == m.text for m in ms)
    return [[m.text for m in ms] for ms in rows]


REDIS_URL = os.environ.get("GLINKER_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_job():
    """A unique job name on the local Redis server (its keys removed after), or a skip naming why."""
    redis = pytest.importorskip("redis")
    try:
        r = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        r.ping()
    except redis.RedisError as e:
        pytest.skip(f"Redis unreachable at {REDIS_URL}: {e}")
    job = "t" + uuid.uuid4().hex[:10]
    yield job
    keys = list(r.scan_iter(match=f"glinker:{job}:*"))
    if keys:
        r.delete(*keys)
