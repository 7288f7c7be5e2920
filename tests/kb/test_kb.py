"""The KB directory: store + alias index (homonyms), FAISS index, manifest, atomic/resumable build, updates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from glinker.errors import ConfigError, DataError, KBError
from glinker.kb import KB, build_kb
from glinker.kb.adapters import AdapterReport, load_adapter
from glinker.kb.build import estimate_resources
from glinker.kb.index import VectorIndex, auto_factory
from glinker.kb.store import TextTemplate, normalize_alias
from glinker.kb.testing import SAMPLE_ENTITIES
from glinker.types import Entity
from kb_adapters.wikidata import write_dump

from .conftest import write_jsonl


class ListAdapter:
    """An in-memory adapter (same Protocol) that can fail after ``fail_after`` entities, to simulate crashes."""

    name: ClassVar[str] = "list"
    options_model: ClassVar[Any] = None

    def __init__(self, entities: list[Entity], fail_after: int | None = None, tag: str = "a") -> None:
        self.entities, self.fail_after, self.tag = entities, fail_after, tag
        self.report = AdapterReport()
        self.yielded = 0

    def iter_entities(self) -> Iterator[Entity]:
        self.report = AdapterReport()
        for i, e in enumerate(self.entities):
            if self.fail_after is not None and i >= self.fail_after:
                raise RuntimeError("simulated crash")
            self.yielded += 1
            self.report.yielded += 1
            yield e

    def estimate_count(self) -> int | None:
        return len(self.entities)

    def describe(self) -> dict[str, Any]:
        return {"adapter": "list", "source": f"memory:{self.tag}", "options": {}}


class CountingEncoder:
    """Wraps a real encoder and counts the texts it embeds; optionally fails after some calls."""

    def __init__(self, inner: Any, fail_after_calls: int | None = None) -> None:
        self.inner, self.fail_after_calls = inner, fail_after_calls
        self.fingerprint, self.dim = inner.fingerprint, inner.dim
        self.calls = 0
        self.texts: list[str] = []

    def encode_entities(self, texts: Any, batch_size: int = 64) -> np.ndarray:
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise RuntimeError("simulated crash while embedding")
        self.calls += 1
        self.texts += list(texts)
        return self.inner.encode_entities(texts, batch_size=batch_size)


def many(n: int, start: int = 0) -> list[Entity]:
    words = ["river", "mount", "saint", "lake", "port", "new", "old", "north", "south", "royal"]
    return [Entity(id=f"E{i}", label=f"{words[i % 10]} {words[(i // 10) % 10]} {i}",
                   description=f"generated place number {i}", popularity=i % 13) for i in range(start, start + n)]


@pytest.fixture
def kb_dir(tmp_path: Path, encoder: Any) -> Path:
    src = write_jsonl(SAMPLE_ENTITIES, tmp_path / "kb.jsonl")
    build_kb(load_adapter("jsonl", str(src)), tmp_path / "kb", encoder, model_name="tiny")
    return tmp_path / "kb"


def brute_force(encoder: Any, kb: KB, query: str, k: int) -> list[str]:
    ents = kb.get([e.id for e in SAMPLE_ENTITIES])
    vecs = encoder.encode_entities([kb.template.render(e) for e in ents])
    q = encoder.encode_entities([query])[0]
    order = np.argsort(-(vecs @ q), kind="stable")[:k]
    return [ents[i].id for i in order]


def test_build_and_read_api(kb_dir: Path, encoder: Any) -> None:
    with KB.open(kb_dir) as kb:
        m = kb.manifest
        assert m.counts["entities"] == len(SAMPLE_ENTITIES) == m.counts["vectors"] == len(kb)
        assert m.model_fingerprint == encoder.fingerprint and m.dim == encoder.dim and m.factory == "Flat"
        assert m.source["adapter"] == "jsonl" and m.template == "{label}: {description}"
        assert kb.lookup_alias("  PARIS ") == ["Q90", "Q167646", "Q830149"]  # every homonym, by popularity
        assert kb.lookup_alias("paris, texas") == ["Q830149"]
        assert kb.lookup_alias("zurich") == ["Q72"] and kb.lookup_alias("tokyo") == ["Q1490"]
        assert kb.lookup_alias("nowhere") == []
        fz = kb.fuzzy("Pariss", limit=3, score_cutoff=80)
        assert {e for e, a, s in fz if a == "paris"} == {"Q90", "Q167646", "Q830149"}
        assert all(s >= 80 for _, _, s in fz)
        (e,) = kb.get(["Q72"])
        assert e.aliases == ["Zurich", "Züri"] and e.types == ["Q515"] and e.popularity == 200
        assert [x.id for x in kb.get(["Q1490", "missing", "Q42"])] == ["Q1490", "Q42"]
        rids = kb.rids(["Q90", "Q72", "missing"])
        assert set(rids) == {"Q90", "Q72"} and kb.store.ids_for_rids(list(rids.values())) == {
            rids["Q90"]: "Q90", rids["Q72"]: "Q72"}
        q = "Paris: capital of France"
        scores, ids = kb.search_text([q], encoder, k=4)
        assert ids[0] == brute_force(encoder, kb, q, 4)  # Flat is exact
        assert scores.shape == (1, 4) and np.all(np.diff(scores[0]) <= 1e-6)
        s2, ids2 = kb.search_vectors(encoder.encode_entities([q]), k=20)
        assert len(ids2[0]) == len(SAMPLE_ENTITIES) and np.isinf(s2[0, len(SAMPLE_ENTITIES):]).all()


def test_model_mismatch_is_a_clear_error(kb_dir: Path) -> None:
    with KB.open(kb_dir) as kb:
        with pytest.raises(KBError) as ei:
            kb.check_model("0" * 64)
        assert "fingerprint" in str(ei.value) and "rebuild" in str(ei.value)
        with pytest.raises(KBError):
            kb.search_vectors(np.zeros((1, (kb.manifest.dim or 1) + 1), np.float32))


def test_alias_only_kb(tmp_path: Path) -> None:
    build_kb(ListAdapter(SAMPLE_ENTITIES), tmp_path / "kb", None)
    with KB.open(tmp_path / "kb") as kb:
        assert kb.lookup_alias("paris") == ["Q90", "Q167646", "Q830149"]
        with pytest.raises(KBError) as ei:
            kb.search_vectors(np.zeros((1, 4), np.float32))
        assert "--model" in str(ei.value)


def test_not_a_kb(tmp_path: Path) -> None:
    with pytest.raises(KBError) as ei:
        KB.open(tmp_path)
    assert "kb build" in str(ei.value)


def test_bad_template_and_factory(tmp_path: Path, encoder: Any) -> None:
    with pytest.raises(ConfigError):
        TextTemplate("{label}: {summary}")
    with pytest.raises(ConfigError):
        build_kb(ListAdapter(SAMPLE_ENTITIES), tmp_path / "kb", encoder, factory="NotAnIndex99")
    assert TextTemplate("{label}: {description}").render(Entity(id="x", label="Paris")) == "Paris"


def test_normalize_alias() -> None:
    assert normalize_alias("  Zürich\tHB ") == normalize_alias("ZÜRICH hb") == "zürich hb"
    assert normalize_alias("ＰＡＲＩＳ") == "paris"  # NFKC folds full-width forms


def test_ivf_index_matches_exact_with_full_probe(tmp_path: Path, encoder: Any) -> None:
    ents = many(800)
    build_kb(ListAdapter(ents), tmp_path / "kb", encoder, factory="IVF8,Flat", nprobe=8, chunk_size=300)
    with KB.open(tmp_path / "kb") as kb:
        assert kb.manifest.factory == "IVF8,Flat" and kb.manifest.counts["vectors"] == 800
        q = encoder.encode_entities(["north lake 734: generated place number 734"])
        _, ids = kb.search_vectors(q, k=5)
        all_v = encoder.encode_entities([kb.template.render(e) for e in ents])
        exact = [ents[i].id for i in np.argsort(-(all_v @ q[0]), kind="stable")[:5]]
        assert ids[0] == exact
    with KB.open(tmp_path / "kb", mmap=False) as kb2:  # memory-mapped and in-RAM indexes agree
        assert kb2.search_vectors(q, k=5)[1] == ids


def test_duplicate_ids_later_record_wins(tmp_path: Path, encoder: Any, caplog: Any) -> None:
    ents = [Entity(id="A", label="first"), Entity(id="B", label="bee"), Entity(id="A", label="second")]
    with caplog.at_level("WARNING"):
        build_kb(ListAdapter(ents), tmp_path / "kb", encoder)
    assert "1 records repeated an id already seen (e.g. 'A')" in caplog.text
    build_kb(ListAdapter([Entity(id="N", label=" ", aliases=["Nameless Co"]), *ents[:2]]), tmp_path / "kb2", encoder)
    assert "1 entities have no label (e.g. 'N')" in caplog.text
    with KB.open(tmp_path / "kb") as kb:
        assert kb.manifest.counts["duplicates"] == 1 and len(kb) == 2
        assert kb.get(["A"])[0].label == "second" and kb.lookup_alias("first") == []


def test_a_build_of_another_source_says_it_replaces_an_interrupted_one(tmp_path: Path, encoder: Any,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """Hours of an interrupted build's work were removed with an INFO line only."""
    out = tmp_path / "kb"
    with pytest.raises(RuntimeError):
        build_kb(ListAdapter(many(1200), fail_after=1100, tag="v1"), out, encoder, chunk_size=500)
    build_kb(ListAdapter(SAMPLE_ENTITIES, tag="v2"), out, encoder)
    assert "an interrupted build of another source (or of this file before it changed) or other options (1,100 entities stored" in caplog.text
    assert len(list(out.glob(".staging-*"))) == 0


def test_interrupted_build_keeps_old_kb_and_resumes(tmp_path: Path, encoder: Any,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "kb"
    build_kb(ListAdapter(SAMPLE_ENTITIES, tag="v1"), out, encoder)
    ents = many(2000)
    # crash during ingest
    with pytest.raises(RuntimeError):
        build_kb(ListAdapter(ents, fail_after=1500, tag="v2"), out, encoder, chunk_size=500)
    with KB.open(out) as kb:
        assert len(kb) == len(SAMPLE_ENTITIES)  # the old KB is intact
    # crash during embedding
    enc = CountingEncoder(encoder, fail_after_calls=2)
    ad = ListAdapter(ents, tag="v2")
    with caplog.at_level("INFO", logger="glinker.kb.build"), pytest.raises(RuntimeError):
        build_kb(ad, out, enc, chunk_size=500)
    assert "resuming the interrupted build: 1500 entities" in caplog.text  # the stored 1500 were not written again
    with KB.open(out) as kb:
        assert len(kb) == len(SAMPLE_ENTITIES)
    enc2 = CountingEncoder(encoder)
    build_kb(ListAdapter(ents, tag="v2"), out, enc2, chunk_size=500)
    assert len(enc2.texts) == 1000  # the two embedded chunks were kept, two were left
    with KB.open(out) as kb:
        assert len(kb) == 2000 and kb.manifest.counts["vectors"] == 2000
        assert kb.lookup_alias("paris") == []
    assert len(list(out.glob("gen-*"))) == 1 and not list(out.glob(".staging-*"))


def test_truncated_wikidata_archive_build_keeps_what_was_read(tmp_path: Path, encoder: Any) -> None:
    full = tmp_path / "d.json.gz"
    write_dump(many(6000), full)
    data = full.read_bytes()
    cut = tmp_path / "cut.json.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as ei:
        build_kb(load_adapter("wikidata", str(cut), workers=0, block_mb=0.01), tmp_path / "kb", encoder,
                 chunk_size=1000)
    assert "truncated" in str(ei.value)
    from glinker.kb.store import EntityStore

    (staging,) = (tmp_path / "kb").glob(".staging-*")
    st = EntityStore(staging / "entities.sqlite")
    kept = st.count()
    st.close()
    assert kept > 1000  # everything read before the cut is stored
    gen = build_kb(load_adapter("wikidata", str(cut), workers=0, block_mb=0.01, allow_truncated=True),
                   tmp_path / "kb2", encoder)
    man = json.loads((gen / "manifest.json").read_text())
    assert man["counts"]["entities"] >= kept and man["source"]["report"]["bad"] >= 1


def test_incremental_add_update_remove(kb_dir: Path, encoder: Any) -> None:
    enc = CountingEncoder(encoder)
    with KB.open(kb_dir, writable=True) as kb:
        c = kb.upsert([Entity(id="Q999", label="Paris Hilton", description="American socialite"),
                       Entity(id="Q90", label="Paris", aliases=["Lutetia"], description="capital of France",
                              types=["Q515", "Q5119"], popularity=300),  # same text: no re-embedding
                       Entity(id="Q72", label="Zürich", description="largest city of Switzerland")], enc)
        assert c == {"added": 1, "updated": 1, "unchanged_text": 1, "same": 0}
        assert sorted(enc.texts) == ["Paris Hilton: American socialite", "Zürich: largest city of Switzerland"]
        assert kb.lookup_alias("lutetia") == ["Q90"] and kb.lookup_alias("paname") == []
        assert kb.lookup_alias("paris") == ["Q90", "Q167646", "Q830149"]
        assert kb.lookup_alias("paris hilton") == ["Q999"]
        assert kb.remove(["Q830149", "nope"], enc) == ["Q830149"]
        assert kb.manifest.counts["entities"] == kb.manifest.counts["vectors"] == len(SAMPLE_ENTITIES)
    with KB.open(kb_dir) as kb:
        assert kb.lookup_alias("paris") == ["Q90", "Q167646"]
        _, ids = kb.search_text(["Paris: city in Texas, United States"], encoder, k=len(SAMPLE_ENTITIES) + 2)
        assert "Q830149" not in ids[0] and "Q999" in ids[0]
        assert [h["op"] for h in kb.manifest.history] == ["build", "upsert", "remove"]


def test_interrupted_update_is_finished_later(kb_dir: Path, encoder: Any) -> None:
    with KB.open(kb_dir, writable=True) as kb:
        # journal the change in the store but "crash" before the index is updated
        kb.store.upsert([Entity(id="NEW", label="Atlantis", description="legendary island")], kb.template,
                        track_pending=True)
    with KB.open(kb_dir) as kb:
        assert kb.store.pending() and "NEW" not in kb.search_text(["Atlantis"], encoder, k=20)[1][0]
    with KB.open(kb_dir, writable=True) as kb:
        with pytest.raises(KBError):
            kb.apply_pending(None)  # needs the model
        assert kb.apply_pending(encoder) == 1 and not kb.store.pending()
    with KB.open(kb_dir) as kb:
        assert "NEW" in kb.search_text(["Atlantis: legendary island"], encoder, k=20)[1][0]


def test_counts_are_right_after_an_interrupted_long_update(kb_dir: Path, encoder: Any) -> None:
    """`kb add` of many entities stopped part way (Ctrl-C): the batches already stored are counted in the
    manifest (`kb info`), not the counts from before the add."""
    before = KB.open(kb_dir).manifest.counts["entities"]

    def entities():
        for i in range(5):
            yield Entity(id=f"N{i}", label=f"Newtown {i}", description="a town")
        raise KeyboardInterrupt

    with KB.open(kb_dir, writable=True) as kb, pytest.raises(KeyboardInterrupt):
        kb.upsert(entities(), encoder, batch=2)
    with KB.open(kb_dir) as kb:
        assert kb.manifest.counts["entities"] == kb.manifest.counts["vectors"] == len(kb) == before + 4


def test_update_needs_same_model(kb_dir: Path) -> None:
    class Other:
        fingerprint, dim = "other-model", 8

        def encode_entities(self, texts: Any, batch_size: int = 64) -> np.ndarray:
            raise AssertionError("must not be called")

    with KB.open(kb_dir, writable=True) as kb, pytest.raises(KBError):
        kb.upsert([Entity(id="X", label="x")], Other())
    with KB.open(kb_dir) as kb, pytest.raises(KBError):
        kb.upsert([Entity(id="X", label="x")], None)  # opened read-only


def test_auto_factory_and_estimates() -> None:
    assert auto_factory(5_000, 384) == "Flat"
    assert auto_factory(61_000, 256) == "IVF1024,SQfp16"
    assert auto_factory(1_000_000, 384) == "IVF4096,SQfp16"
    assert auto_factory(10_000_000, 384) == "IVF16384,SQfp16"  # 7.7 GB of fp16 codes
    assert auto_factory(20_000_000, 384) == "IVF16384,SQ8"  # fp16 would pass 8 GiB
    assert auto_factory(300_000_000, 64).startswith("IVF65536,")  # the last flat coarse quantizer
    assert auto_factory(1_000_000_000, 64).startswith("IVF131072_HNSW32,")
    assert auto_factory(100_000_000, 768).split(",")[1].startswith("PQ")
    est = estimate_resources(10_000_000, 384, "auto")
    assert est["kb_disk"] < 20 * 2**30 and est["peak_ram"] < 24 * 2**30


def test_index_remove_and_atomic_save(tmp_path: Path) -> None:
    vi = VectorIndex.create("Flat", 4)
    x = np.eye(4, dtype=np.float32)
    vi.add(x, np.array([10, 11, 12, 13]))
    assert vi.remove(np.array([11, 99])) == 1 and vi.ntotal == 3
    vi.save(tmp_path / "v.faiss")
    assert not list(tmp_path.glob("*.tmp"))
    back = VectorIndex.load(tmp_path / "v.faiss", "Flat", 1)
    _, ids = back.search(x[1:2], 3)
    assert 11 not in ids[0].tolist()


def test_corrupt_manifest(kb_dir: Path) -> None:
    gen = kb_dir / (kb_dir / "CURRENT").read_text().strip()
    (gen / "manifest.json").write_text("{not json")
    with pytest.raises(KBError) as ei:
        KB.open(kb_dir)
    assert "manifest" in str(ei.value)


def test_two_publishes_in_one_second_keep_distinct_generations(tmp_path, monkeypatch):
    """A rebuild published within the same second as the previous one must not clobber the live generation."""
    from glinker.kb import kb as kb_module
    from glinker.kb.kb import MANIFEST, current_generation

    monkeypatch.setattr(kb_module.time, "strftime", lambda fmt, t=None: "20260101T000000")
    root = tmp_path / "kb"
    root.mkdir()
    gens = []
    for i in range(2):
        staging = root / f".staging-{i}"
        staging.mkdir()
        (staging / "marker").write_text(str(i))
        (staging / MANIFEST).write_text("{}")
        gens.append(kb_module.publish_staged(root, staging, "samekey0"))
    assert gens[0].name != gens[1].name
    assert current_generation(root) == gens[1]
    assert (gens[1] / "marker").read_text() == "1"
    assert not gens[0].exists()  # the old generation is cleaned up after the switch


def test_fuzzy_many_matches_one_extract_per_name(kb_dir: Path) -> None:
    # fuzzy_many (one rapidfuzz cdist pass per chunk) must give exactly what one process.extract per name gives:
    # the same aliases, scores, order (ties in vocabulary order) and homonyms, at every cutoff and limit
    from rapidfuzz import fuzz, process

    from glinker.kb.store import normalize_alias

    names = ["Pariss", "paris", "Zurch", "Tokio", "Berlin", "x", "", "Paris Texas", "Steve Job", "Google Inc"]
    with KB.open(kb_dir) as kb:
        vocab = kb.store.alias_vocab()
        for cutoff in (0.0, 50.0, 80.0, 88.0, 100.0):
            for limit in (1, 2, 5, 100):
                got = kb.fuzzy_many(names, limit=limit, score_cutoff=cutoff, chunk=3)
                for name, hits in zip(names, got):
                    ref = process.extract(normalize_alias(name), vocab, scorer=fuzz.ratio, limit=limit,
                                          score_cutoff=cutoff)
                    want = [(e, a, s) for a, s, _ in ref for e in kb.lookup_alias(a)]
                    assert [(e, a) for e, a, _ in hits] == [(e, a) for e, a, _ in want], (name, cutoff, limit)
                    assert all(abs(s - w) < 1e-3 for (_, _, s), (_, _, w) in zip(hits, want))
                assert kb.fuzzy(names[0], limit=limit, score_cutoff=cutoff) == got[0]


def test_fuzzy_ties_put_the_name_itself_first(tmp_path: Path) -> None:
    """With a token scorer every alias containing "munich" scores 100: ties were broken by vocabulary order and the
    entities named exactly "Munich" could fall past the limit. The name itself comes first now, then the closest."""
    ents = [Entity(id=f"C{i}", label=f"a{i} club munich") for i in range(12)] + [
        Entity(id="Q1726", label="Munich", popularity=5), Entity(id="Q152456", label="Munich", popularity=1),
        Entity(id="Q99", label="munich city")]
    build_kb(load_adapter("jsonl", str(write_jsonl(ents, tmp_path / "m.jsonl"))), tmp_path / "kb", None)
    with KB.open(tmp_path / "kb") as kb:
        hits = kb.fuzzy("Munich", limit=2, score_cutoff=90, scorer="token_set_ratio")
        assert [(e, a) for e, a, _ in hits][:2] == [("Q1726", "munich"), ("Q152456", "munich")]
        assert hits[2][1] == "munich city" and all(s == 100 for *_, s in hits)


def test_hnsw_coarse_quantizer_searches_wider_than_nprobe() -> None:
    """faiss's default efSearch (16) for an HNSW quantizer returns the wrong lists once nprobe exceeds it."""
    import faiss

    vi = VectorIndex.create("IVF64_HNSW32,Flat", 8, nprobe=300)
    quantizer = faiss.downcast_index(faiss.extract_index_ivf(vi.index).quantizer)
    assert quantizer.hnsw.efSearch == 600
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 8)).astype(np.float32)
    vi.train(x)
    vi.add(x, np.arange(3000))
    vi.search(x[:2], 5, nprobe=8)  # a per-call nprobe is undone after the call, efSearch with it
    vi.search(x[:2], 5)
    assert quantizer.hnsw.efSearch == 600


def _varied_norm_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Clustered vectors whose norms vary like real entity vectors (about 1.4 to 6)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((32, dim)).astype(np.float32)
    x = centres[rng.integers(0, 32, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x * rng.uniform(1.4, 6.0, (n, 1)).astype(np.float32)


@pytest.mark.parametrize("factory", ["IVF64,Flat", "IVF64,SQfp16", "HNSW16"])
def test_approximate_indexes_search_inner_product_on_the_mips_transform(tmp_path: Path, factory: str) -> None:
    """Approximate indexes hold [x, sqrt(M^2 - |x|^2)] and search L2; scores come back as inner products."""
    dim = 20  # stored rows: 20 + norm complement + padding to 32
    x = _varied_norm_vectors(4000, dim)
    q = x[:200] / np.linalg.norm(x[:200], axis=1, keepdims=True) + 0.1
    exact = (q @ x.T).argsort(axis=1)[:, ::-1][:, :10]
    vi = VectorIndex.create(factory, dim, nprobe=16)
    assert vi.transformed and vi.dim == dim and vi.needs_training
    vi.train(x)
    assert vi.mips_norm == pytest.approx(float(np.linalg.norm(x, axis=1).max()) * 1.25, rel=1e-5)
    vi.add(x, np.arange(len(x)) + 100)
    scores, ids = vi.search(q, 10)
    recall = np.mean([len(set(a - 100) & set(b)) / 10 for a, b in zip(ids, exact)])
    assert recall > 0.9
    if "SQ" not in factory:  # stored exactly: the scores are the inner products
        assert np.allclose(scores, np.take_along_axis(q @ x.T, ids - 100, axis=1), atol=1e-3)
    # vectors read back (for re-scoring) are the originals, without the transform's extra coordinates
    tol = 0.05 if "SQ" in factory else 1e-5
    assert np.allclose(vi.reconstruct(np.array([100, 4099, 137])), x[[0, 3999, 37]], atol=tol)
    vi.save(tmp_path / "v.faiss")
    back = VectorIndex.load(tmp_path / "v.faiss", factory, 16, mips_norm=vi.mips_norm, dim=dim)
    assert np.array_equal(back.search(q, 10)[1], ids)
    with pytest.raises(KBError, match="norm bound"):
        VectorIndex.load(tmp_path / "v.faiss", factory, 16)


@pytest.mark.parametrize("factory", ["IVF64,Flat", "IVF64,SQfp16", "IVF32,PQ4", "IVF64_HNSW32,Flat"])
def test_ivf_lists_chosen_by_a_matrix_product_give_faiss_own_results(tmp_path: Path, factory: str) -> None:
    """An IVF index on a flat quantizer picks its lists with one torch product and lets faiss scan them
    (search_preassigned): the same ids, in the same order, and the same scores as faiss's own search, per-call
    nprobe included (PQ4 encodes residuals, so the coarse distances take part in the scores); an HNSW quantizer
    is left to faiss."""
    dim = 24
    x = _varied_norm_vectors(3000, dim, seed=1)
    q = x[:150] + 0.2 * np.random.default_rng(2).standard_normal((150, dim)).astype(np.float32)
    vi = VectorIndex.create(factory, dim, nprobe=8)
    vi.train(x)
    vi.add(x, np.arange(len(x)))
    assert (vi._coarse() is None) == ("HNSW" in factory)
    for nprobe in (None, 3, 64, 500):  # 500: more than the lists there are
        ours, ids = vi.search(q, 10, nprobe)
        plain = VectorIndex(vi.index, factory, vi.nprobe, vi.mips_norm, dim)
        plain._coarse_cache = (vi.index, None)  # faiss alone
        ref, ref_ids = plain.search(q, 10, nprobe)
        assert np.array_equal(ids, ref_ids), (factory, nprobe)
        assert np.allclose(ours, ref, rtol=1e-4, atol=1e-3)
    assert vi.search(q[:0], 5)[1].shape == (0, 5)
    import faiss
    import torch

    ivf = faiss.extract_index_ivf(vi.index)
    ref = {p: plain.search(q, 10, p) for p in (3, 8, 20)}
    if "HNSW" not in factory:
        # in blocks of queries (memory bounded whatever the batch), under a caller's bf16 autocast (ignored here)
        vi.COARSE_BLOCK = 7 * int(ivf.nlist)  # 7 queries a block
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert all(np.array_equal(vi.search(q, 10, p)[1], ref[p][1]) for p in ref)
    # from threads asking for different nprobe at once (given per call: the shared index is never changed)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda p: (p, vi.search(q, 10, p)), [3, 8, 20] * 8))
    assert all(np.array_equal(ids, ref[p][1]) and np.allclose(sc, ref[p][0], rtol=1e-4, atol=1e-3) for p, (sc, ids) in got)
    assert ivf.nprobe == 8


def test_a_graph_index_searched_from_threads_with_their_own_breadth() -> None:
    """efSearch per call (from nprobe) on an HNSW index: threads asking for different values at once get what each
    gets alone; the index keeps its own."""
    from concurrent.futures import ThreadPoolExecutor

    x = _varied_norm_vectors(3000, 16, seed=4)
    vi = VectorIndex.create("HNSW16", 16, nprobe=8)
    vi.train(x)
    vi.add(x, np.arange(len(x)))
    graph = vi._graph()
    ef = graph.hnsw.efSearch
    ref = {p: vi.search(x[:200], 10, p) for p in (1, 300, 900)}
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda p: (p, vi.search(x[:200], 10, p)), [1, 300, 900] * 6))
    assert all(np.array_equal(ids, ref[p][1]) for p, (_, ids) in got) and graph.hnsw.efSearch == ef


def test_ivf_on_inner_product_picks_lists_by_the_largest_products() -> None:
    """An IVF index built on inner products (not the transform), as a user's own faiss index may be."""
    import faiss

    x = _varied_norm_vectors(2000, 16, seed=3)
    index = faiss.index_factory(16, "IVF32,Flat", faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    index.add(x)
    vi = VectorIndex(index, "IVF32,Flat", nprobe=4, dim=16)
    assert not vi.transformed and vi._coarse() is not None
    ours = vi.search(x[:100] * 0.5, 7)
    ref = index.search(x[:100] * 0.5, 7)
    assert np.array_equal(ours[1], ref[1]) and np.allclose(ours[0], ref[0], rtol=1e-5, atol=1e-4)


def test_exact_flat_index_stays_on_inner_product() -> None:
    vi = VectorIndex.create("Flat", 4)
    assert not vi.transformed and vi.dim == 4 and not vi.needs_training


def test_transformed_rows_are_padded_for_simd_and_pq() -> None:
    assert VectorIndex.create("IVF8,Flat", 256).index.d == 272
    pq = VectorIndex.create("IVF8,PQ12", 20)  # 21 -> a multiple of 16 and of 12
    assert pq.index.d == 48 and pq.dim == 20
    x = _varied_norm_vectors(3000, 20)
    pq.train(x)
    pq.add(x, np.arange(3000))
    assert (pq.search(x[:5], 3)[1] >= 0).all()


def test_vector_above_the_norm_bound_is_stored_and_logged(caplog) -> None:
    x = _varied_norm_vectors(500, 8)
    vi = VectorIndex.create("IVF8,Flat", 8, nprobe=8)
    vi.train(x)
    big = x[:1] / np.linalg.norm(x[:1]) * vi.mips_norm * 2
    with caplog.at_level("WARNING", logger="glinker.kb.index"):
        vi.add(big, np.array([7]))
    assert "norm above the index's bound" in caplog.text and vi.ntotal == 1


def test_training_sample_grows_with_the_ivf_lists() -> None:
    """faiss's k-means wants >= 39 points per centroid: 300k is too few for IVF16384 (10M entities)."""
    from glinker.kb.build import estimate_resources
    from glinker.kb.index import default_train_size, factory_nlist

    assert factory_nlist("IVF16384_HNSW32,SQfp16") == 16384 and factory_nlist("HNSW32") is None
    assert default_train_size("IVF1024,SQfp16", 61_000) == 61_000
    assert default_train_size("IVF4096,SQfp16", 1_000_000) == 300_000
    assert default_train_size("IVF16384,SQfp16", 10_000_000) == 655_360
    assert default_train_size("HNSW32", 10_000_000) == 300_000
    est = estimate_resources(10_000_000, 384, "auto")
    assert est["factory"] == "IVF16384,SQfp16" and est["peak_ram"] >= 655_360 * 384 * 4


def test_sync_never_wipes_the_kb_on_an_empty_source_or_prunes_skipped_records(tmp_path: Path) -> None:
    src = write_jsonl(SAMPLE_ENTITIES, tmp_path / "e.jsonl")
    build_kb(load_adapter("jsonl", str(src)), tmp_path / "kb", None)
    n = len(SAMPLE_ENTITIES)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with KB.open(tmp_path / "kb", writable=True) as kb:
        with pytest.raises(KBError, match=f"would remove all {n}"):
            kb.sync(load_adapter("jsonl", str(empty)).iter_entities(), None)
        assert len(kb) == n
        lines = src.read_text().splitlines()
        bad = tmp_path / "bad.jsonl"
        bad.write_text("\n".join(lines[:-1] + ['{"id": "' + SAMPLE_ENTITIES[-1].id + '", "label": ["x"]}']) + "\n")
        ad = load_adapter("jsonl", str(bad), on_error="skip")
        c = kb.sync(ad.iter_entities(), None, source=ad)
        assert c["removed"] == 0 and len(kb) == n  # the skipped record's entity is not gone from the source


def test_a_built_kb_is_one_file_database_and_a_second_build_is_refused(tmp_path: Path) -> None:
    import sqlite3

    from glinker.io import locked

    src = write_jsonl(SAMPLE_ENTITIES, tmp_path / "e.jsonl")
    gen = build_kb(load_adapter("jsonl", str(src)), tmp_path / "kb", None)
    db = sqlite3.connect(gen / "entities.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # opens read-only anywhere (no -shm needed)
    db.close()
    assert not list(gen.glob("*-wal")) and not list(gen.glob("*-shm"))
    with locked(tmp_path / "kb" / ".build.lock", wait=False):  # what a running build holds
        with pytest.raises(KBError, match="another build is writing"):
            build_kb(load_adapter("jsonl", str(src)), tmp_path / "kb", None)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty and holds no KB"):
        build_kb(load_adapter("jsonl", str(src)), mine, None)


def test_update_publishes_a_new_generation_and_readers_keep_theirs(kb_dir: Path, encoder: Any) -> None:
    """KB.update (a pipeline's source sync): a process reading the KB meanwhile keeps a whole, unchanged KB (in
    place, it saw new entities whose vectors its loaded index lacked: FAISS 'key not found'); the next open sees
    the update; an update that changes nothing, or fails, publishes nothing."""
    from glinker.kb.kb import CURRENT

    reader = KB.open(kb_dir)
    n = len(reader)
    reader.index()
    with KB.update(kb_dir) as kb:
        kb.upsert([Entity(id="NEW", label="Atlantis", description="legendary island")], encoder)
        kb.remove(["Q90"])
    assert len(reader) == n and reader.lookup_alias("atlantis") == [] and "Q90" in reader.lookup_alias("paris")
    rids = reader.rids(reader.lookup_alias("paris"))
    assert reader.index().reconstruct(np.asarray(list(rids.values()))).shape[0] == len(rids)
    reader.close()
    with KB.open(kb_dir) as kb:
        assert kb.lookup_alias("atlantis") == ["NEW"] and "Q90" not in kb.lookup_alias("paris")
        assert "NEW" in kb.search_text(["Atlantis: legendary island"], encoder, k=3)[1][0]
    live = (kb_dir / CURRENT).read_text()
    with KB.update(kb_dir) as kb:  # the same records again: nothing to publish
        c = kb.upsert(KB.open(kb_dir).get(["NEW"]), encoder)
        assert c["same"] == 1 and not kb.changed
    with pytest.raises(RuntimeError), KB.update(kb_dir) as kb:
        kb.remove(["NEW"])
        raise RuntimeError("the source failed")
    assert (kb_dir / CURRENT).read_text() == live and not list(kb_dir.glob(".update-*"))
    assert len([d for d in kb_dir.iterdir() if d.name.startswith("gen-")]) == 2  # the live one and the one before
    # a reader that opened two updates ago, without loading its index, is told to open the KB again
    old = KB.open(kb_dir)
    for eid in ("X1", "X2"):
        with KB.update(kb_dir) as kb:
            kb.upsert([Entity(id=eid, label=eid)], encoder)
    with pytest.raises(KBError, match="was updated since this process opened it"):
        old.index()
    old.close()


def test_a_killed_update_leaves_a_copy_the_next_update_removes_but_never_a_running_ones(kb_dir: Path) -> None:
    """A process killed inside KB.update leaves its copy of the KB (``.update-*``); the next update removes it (it
    waited an hour before), while the copy of an update still running in another process is left alone."""
    import signal
    import subprocess
    import sys
    import time

    code = ("import sys, time\nfrom glinker.kb import KB\nwith KB.update(sys.argv[1]):\n"
            "    open(sys.argv[2], 'w').close()\n    time.sleep(120)\n")
    ready = kb_dir.parent / "ready"
    p = subprocess.Popen([sys.executable, "-c", code, str(kb_dir), str(ready)])
    try:
        deadline = time.time() + 120
        while not ready.exists():
            assert p.poll() is None and time.time() < deadline, "the updating process did not start"
            time.sleep(0.1)
        running = list(kb_dir.glob(".update-*"))
        assert len(running) == 1
        with pytest.raises(KBError, match="being written by another process"):  # one writer at a time
            with KB.update(kb_dir):
                pass
        assert running[0].is_dir()  # the running one's copy stays
        p.send_signal(signal.SIGKILL)
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
    assert running[0].is_dir()
    with KB.update(kb_dir):
        assert not running[0].exists()
    assert not list(kb_dir.glob(".update-*")) and not list(kb_dir.glob(".lock.update-*"))


def test_changed_reads_a_source_against_the_store_without_writing(kb_dir: Path, encoder: Any, caplog: Any) -> None:
    with KB.open(kb_dir) as kb:
        stored = kb.get(["Q90", "Q167646"])
        edited = stored[1].model_copy(update={"description": "another text"})
        new = Entity(id="NEW", label="Atlantis")
        changed, seen = kb.store.changed([stored[0], edited, new, stored[1]], kb.template)
        # Q90 as stored; Q167646's last record is the stored one again; NEW is new
        assert [e.id for e in changed] == ["NEW"] and seen == {"Q90", "Q167646", "NEW"}
        assert "1 source records repeat an id" in caplog.text and "alias_table" in caplog.text
        changed, _ = kb.store.changed([stored[1], edited], kb.template)
        assert [e.description for e in changed] == ["another text"]
