"""The FAISS index of entity vectors: one factory string picks the index, ids are the store's rids, files are
written atomically and can be memory-mapped. faiss is imported only here, lazily."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from glinker.errors import ConfigError, DependencyError, KBError

log = logging.getLogger(__name__)

FLAT_MAX = 20_000
"""Up to this many entities the automatic choice is exact search. Above it IVF on the MIPS transform: at 61k real
entities IVF1024,SQfp16 (nprobe 32) searched 14x faster than Flat with recall@10 0.999, and linked AIDA testa
exactly as the Flat KB did (docs/bench/kb.md)."""
FP16_MAX_BYTES = 8 * 2**30
"""Up to this many bytes of fp16 codes the automatic choice keeps vectors in fp16 (SQfp16), the configuration
measured at 10M generated 384-d vectors (docs/bench/kb.md); SQ8 halves memory beyond it."""
SQ8_MAX_BYTES = 16 * 2**30
"""Above this many bytes of SQ8 codes the automatic choice switches to product quantisation."""


QUANTIZER_EF_SEARCH = 512
"""Least efSearch of an HNSW coarse quantizer (list assignment when adding, and probing); raised to 2 x nprobe for
wide probes. On the MIPS transform 128 was too narrow: 1M generated vectors with log-normal norms,
IVF4096_HNSW32,SQfp16, recall@10 0.875 / 0.952 at nprobe 8 / 32 with 128, 0.955 / 0.992 with 512 (the flat
quantizer: 0.996 / 1.000); adding took 1.6x longer (docs/bench/kb.md)."""
FLAT_QUANTIZER_MAX_LISTS = 65536
"""Up to this many IVF lists (about 270M entities) the automatic choice probes them with an exact flat quantizer:
an HNSW graph over the centroids misses lists for the transformed queries (they lie off the rows' sphere: norm
complement 0), 1M generated vectors, IVF4096_HNSW32 at efSearch 512, recall@10 0.955 at nprobe 8 with the graph
filing the vectors and 0.834 at any nprobe when they are filed exactly, against 0.996 for the flat quantizer. A
flat probe of 16,384 centroids costs 0.7 ms per single query (docs/bench/kb.md)."""
GRAPH_EF_SEARCH = 128
"""Least efSearch of a graph index over the entities themselves (``HNSW32``, ``HNSW32,SQ8``...)."""
NORM_HEADROOM = 1.25
"""The MIPS->L2 bound is this times the largest norm of the training sample, so later adds rarely exceed it."""


def needs_mips_transform(factory: str) -> bool:
    """Approximate indexes (IVF, HNSW, ...) are built on the MIPS->L2 transform; exact ``Flat`` stays on inner
    product. Entity vectors are not normalised (the shipped model's span 1.4 to 6.0): an IVF or HNSW index on raw
    inner product lost most true neighbours on real entities (recall@10 0.45 at nprobe 16, 61k entities; 0.95
    on the transform: docs/bench/kb.md)."""
    return factory.replace(" ", "").upper() not in ("FLAT", "IDMAP,FLAT", "IDMAP2,FLAT")


def mips_rows(x: np.ndarray, bound: float, width: int | None = None) -> tuple[np.ndarray, int]:
    """Rows of the MIPS->L2 transform, ``[x, sqrt(M^2 - |x|^2), 0...]`` (``width`` columns in all, default one
    more than ``x``), and how many rows had a norm above ``bound`` (their extra coordinate is 0)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    sq = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    out = np.zeros((x.shape[0], width or x.shape[1] + 1), np.float32)
    out[:, : x.shape[1]] = x
    out[:, x.shape[1]] = np.sqrt(np.maximum(bound * bound - sq, 0.0))
    return out, int((sq > bound * bound).sum())


def _transform_dims(factory: str, dim: int) -> int:
    """Extra stored dimensions on the MIPS->L2 transform: the norm complement, then zero padding to a multiple
    of 16 (faiss's SIMD scalar-quantiser kernels need it: SQfp16 on 257 dims ran 12x slower than on 272) and of
    a PQ code's sub-quantiser count."""
    import re

    pq = re.search(r"PQ(\d+)", factory.split(",")[-1])
    m = int(pq.group(1)) if pq else 1
    extra = 1
    while (dim + extra) % 16 or (dim + extra) % m:
        extra += 1
    return extra


def _faiss() -> Any:
    return import_faiss("faiss is not installed", "KB index", "pip install faiss-cpu")


_FAISS_CHECKED = False


def import_faiss(message: str, where: str, fix: str) -> Any:
    """The ``faiss`` module, or a DependencyError (``message``, ``where``, ``fix``). At the first import, a warning
    when faiss-cpu and faiss-gpu are both installed: the two distributions write the same ``faiss`` package, so
    whichever pip wrote last is imported and uninstalling either breaks the other."""
    global _FAISS_CHECKED
    try:
        import faiss
    except ImportError as e:
        raise DependencyError(message, where=where, fix=fix) from e
    if not _FAISS_CHECKED:
        _FAISS_CHECKED = True
        from importlib.metadata import distributions

        # (.get: a broken, empty .dist-info has no Name, and newer importlib_metadata raises KeyError on [])
        names = {(d.metadata.get("Name") or "").lower().replace("_", "-") for d in distributions()}
        gpu = sorted(n for n in names if n.startswith("faiss-gpu"))
        if "faiss-cpu" in names and gpu:
            log.warning("faiss-cpu and %s are both installed and share the faiss module (the one installed last is "
                        "used; uninstalling either breaks the other): keep one, e.g. `pip uninstall -y faiss-cpu && "
                        "pip install --force-reinstall --no-deps %s`", gpu[0], gpu[0])
    return faiss


def auto_factory(n: int, dim: int) -> str:
    """A factory string for ``n`` vectors of ``dim``: exact up to FLAT_MAX, then IVF with fp16 codes while they
    fit in FP16_MAX_BYTES, SQ8 codes while those fit in SQ8_MAX_BYTES, PQ beyond; about 4*sqrt(n) lists rounded
    to a power of two, probed with an exact (flat) coarse quantizer up to FLAT_QUANTIZER_MAX_LISTS lists."""
    if n <= FLAT_MAX:
        return "Flat"
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    coarse = f"IVF{nlist}" if nlist <= FLAT_QUANTIZER_MAX_LISTS else f"IVF{nlist}_HNSW32"
    if n * dim > SQ8_MAX_BYTES:
        m = max(8, dim // 8)
        while dim % m:
            m -= 1
        return f"{coarse},PQ{m}"
    if n * dim * 2 <= FP16_MAX_BYTES:
        return f"{coarse},SQfp16"
    return f"{coarse},SQ8"


def factory_nlist(factory: str) -> int | None:
    """The number of IVF lists of a factory string (``IVF16384_HNSW32,SQfp16`` -> 16384), else None."""
    if not factory.startswith("IVF"):
        return None
    return int("".join(ch for ch in factory[3:].split(",")[0].split("_")[0] if ch.isdigit()))


def default_nprobe(factory: str) -> int:
    """The nprobe the KB searches with unless told otherwise: about nlist/64, at least 64 (real entity vectors and
    mention queries, 61k entities, IVF1024 on the MIPS transform: recall@10 0.95-1.0 at 32 depending on the
    k-means start, 0.98-1.0 at 64; docs/bench/kb.md)."""
    nlist = factory_nlist(factory)
    return 1 if nlist is None else max(64, nlist // 64)


def default_train_size(factory: str, n: int) -> int:
    """How many of ``n`` vectors to train an index on: 300k, or 40 per IVF list when that is more (faiss's
    k-means wants at least 39 per centroid: IVF16384 for 10M entities trains on 655k), never more than ``n``."""
    nlist = factory_nlist(factory) or 0
    return min(n, max(300_000, 40 * nlist))


def graph_ef(nprobe: int) -> int:
    """A graph index's efSearch for a search breadth ``nprobe`` (at least :data:`GRAPH_EF_SEARCH`)."""
    return max(GRAPH_EF_SEARCH, int(nprobe))


def quantizer_ef(nprobe: int) -> int:
    """An HNSW coarse quantizer's efSearch when ``nprobe`` lists are probed: well above nprobe (faiss's default 16
    returns the wrong lists however many are probed)."""
    return max(QUANTIZER_EF_SEARCH, 2 * int(nprobe))


class VectorIndex:
    """A FAISS maximum-inner-product index keyed by int64 ids, with train/add/remove/search and atomic save.

    Exact ``Flat`` indexes search inner products directly. Approximate ones are built on the MIPS->L2 transform:
    each vector x gets an extra coordinate sqrt(M^2 - |x|^2) (every stored row then has norm M) and queries a 0
    (and are scaled to norm M), so the nearest rows in L2 are the largest inner products, and IVF lists / HNSW
    graphs are built on a metric they handle. ``mips_norm`` is M (fixed at training, persisted in the KB manifest); scores are converted back
    to inner products. A vector added later with a norm above M is stored with 0 there and logged: it ranks lower
    than it should, and a rebuild fixes it.
    """

    def __init__(self, index: Any, factory: str, nprobe: int = 1, mips_norm: float | None = None,
                 dim: int | None = None) -> None:
        self.index = index
        self.factory = factory
        self.nprobe = nprobe
        self.mips_norm = mips_norm
        self._direct_map = False  # IVF: hashtable id -> code map, set on the first reconstruct
        # stored rows: the vector, then (transform) its norm complement and zero padding up to a size PQ accepts
        self._dim = int(dim) if dim is not None else int(index.d) - int(self.transformed)
        self._apply_nprobe(nprobe)

    @property
    def transformed(self) -> bool:
        """True when the index holds MIPS->L2 transformed rows (the norm complement and padding after the vector)."""
        return self.index.metric_type == _faiss().METRIC_L2

    @classmethod
    def create(cls, factory: str, dim: int, nprobe: int | None = None) -> VectorIndex:
        """A new empty index from a faiss factory string; non-IVF indexes get an id map. Approximate indexes are
        built on the MIPS->L2 transform (see the class docstring); :meth:`train` fixes its norm bound."""
        faiss = _faiss()
        spec = factory if factory.startswith(("IVF", "IDMap")) else f"IDMap2,{factory}"
        mips = needs_mips_transform(factory)
        extra = _transform_dims(factory, int(dim)) if mips else 0
        try:
            index = faiss.index_factory(int(dim) + extra, spec, faiss.METRIC_L2 if mips else faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise ConfigError(f"invalid faiss factory string {factory!r}: {str(e).splitlines()[0][:200]}",
                              where="factory", fix="e.g. 'Flat', 'IVF4096,SQ8', 'IVF16384_HNSW32,PQ48', or 'auto'") from None
        return cls(index, factory, nprobe if nprobe is not None else default_nprobe(factory), dim=int(dim))

    @classmethod
    def check_factory(cls, factory: str, dim: int) -> None:
        """Raise a ConfigError naming ``factory`` unless faiss can build it for ``dim`` ('auto' always can): run
        before a build spends hours encoding vectors for an index it then cannot make."""
        if factory == "auto":
            return
        try:
            default_nprobe(factory)
            default_train_size(factory, 1_000_000)
        except ValueError:
            raise ConfigError(f"invalid faiss factory string {factory!r}", where="factory",
                              fix="e.g. 'Flat', 'IVF4096,SQ8', 'IVF16384_HNSW32,PQ48', or 'auto'") from None
        cls.create(factory, dim)

    def _apply_nprobe(self, nprobe: int) -> None:
        """IVF: lists probed (and the HNSW quantizer's breadth); a graph index: its efSearch (at least 128)."""
        graph = self._graph()
        if graph is not None:
            graph.hnsw.efSearch = graph_ef(nprobe)
        if self.factory.startswith("IVF"):
            faiss = _faiss()
            ivf = faiss.extract_index_ivf(self.index)
            ivf.nprobe = int(nprobe)
            # An HNSW coarse quantizer (IVF..._HNSW32) searches its centroids with efSearch (faiss default 16):
            # narrower than nprobe it returns the wrong lists however many are probed. Keep it well above.
            quantizer = self._hnsw_quantizer()
            if quantizer is not None:
                quantizer.hnsw.efSearch = quantizer_ef(nprobe)

    def _graph(self) -> Any:
        """The HNSW index of a graph factory (``HNSW32``, ``HNSW32,SQ8``...), else None."""
        if self.factory.startswith("IVF"):
            return None
        faiss = _faiss()
        inner = faiss.downcast_index(self.index)
        inner = faiss.downcast_index(inner.index) if hasattr(inner, "id_map") else inner
        return inner if hasattr(inner, "hnsw") else None

    def _hnsw_quantizer(self) -> Any:
        """The HNSW coarse quantizer of an ``IVF..._HNSW..`` index, else None."""
        if not self.factory.startswith("IVF"):
            return None
        faiss = _faiss()
        quantizer = faiss.downcast_index(faiss.extract_index_ivf(self.index).quantizer)
        return quantizer if hasattr(quantizer, "hnsw") else None

    @property
    def dim(self) -> int:
        """The dimension of the vectors added and searched (the stored rows may have more)."""
        return self._dim

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    @property
    def needs_training(self) -> bool:
        """Whether :meth:`train` must see a sample before vectors are added (quantisers, or the norm bound)."""
        return not self.index.is_trained or (self.transformed and self.mips_norm is None)

    def train(self, x: np.ndarray) -> None:
        """Train on a sample: the MIPS norm bound (transformed indexes) and the quantisers (no-op for Flat)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.transformed and self.mips_norm is None:
            self.mips_norm = float(np.linalg.norm(x, axis=1).max(initial=0.0)) * NORM_HEADROOM or 1.0
        if not self.index.is_trained:
            self.index.train(self._rows(x))
            self._coarse_cache = None  # the centroids are set now

    def _rows(self, x: np.ndarray) -> np.ndarray:
        """Stored rows: ``x`` itself, or [x, sqrt(M^2 - |x|^2)] on the transform."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not self.transformed:
            return x
        assert self.mips_norm is not None
        out, over = mips_rows(x, self.mips_norm, int(self.index.d))
        if over:
            log.warning("%d vector(s) have a norm above the index's bound %.3f: they are stored but will rank lower "
                        "than their inner product; rebuild the KB (glinker kb build) to re-fit the bound",
                        over, self.mips_norm)
        return out

    def _queries(self, q: np.ndarray, qn: np.ndarray) -> np.ndarray:
        """Query rows on the transform, ``q`` (float32) with row norms ``qn`` (n, 1): scaled to norm M, then zeros.
        The ranking by q.x is the same for any positive scale, and at norm M the q.centroid term, not the spread
        of the centroids' norms, decides which IVF lists are probed."""
        assert self.mips_norm is not None
        out = np.zeros((q.shape[0], int(self.index.d)), np.float32)
        out[:, : q.shape[1]] = q * (self.mips_norm / np.maximum(qn, 1e-12))
        return out

    def add(self, x: np.ndarray, ids: np.ndarray) -> None:
        """Add vectors under int64 ids."""
        if self.needs_training:
            raise KBError("the vector index is not trained", fix="train it on a sample before adding vectors")
        quantizer = self._hnsw_quantizer()
        if quantizer is not None:  # assigning a vector is a top-1 search: no need for the width of an nprobe search
            quantizer.hnsw.efSearch = QUANTIZER_EF_SEARCH
        try:
            self.index.add_with_ids(self._rows(x), np.ascontiguousarray(ids, dtype=np.int64))
        finally:
            self._apply_nprobe(self.nprobe)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors (n, dim) float32 of existing ids (decoded: approximate for SQ/PQ codes); an IVF
        index gets a hashtable id map on first use (ids are the store's rids, not 0..n-1)."""
        faiss = _faiss()
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.factory.startswith("IVF") and not self._direct_map:
            faiss.extract_index_ivf(self.index).set_direct_map_type(faiss.DirectMap.Hashtable)
            self._direct_map = True
        try:
            rows = self.index.reconstruct_batch(ids)
        except RuntimeError:
            rows = np.stack([self.index.reconstruct(int(i)) for i in ids]) if len(ids) else \
                np.zeros((0, int(self.index.d)), np.float32)
        return np.ascontiguousarray(np.asarray(rows, dtype=np.float32)[:, : self._dim])

    def reconstruct_found(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`reconstruct` for ids some of which the index may lack (entities stored by an update that has not
        written their vectors yet, or since this index was loaded): (the rows of the ids found, in order; a boolean
        mask of the ids found)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        try:
            return self.reconstruct(ids), np.ones(len(ids), dtype=bool)
        except RuntimeError:  # one or more ids not in the index: each looked up alone
            pass
        rows, found = [], np.zeros(len(ids), dtype=bool)
        for k, i in enumerate(ids):
            try:
                rows.append(self.index.reconstruct(int(i)))
            except RuntimeError as e:
                if "not found" not in str(e):  # an index that cannot reconstruct at all, or another failure: no
                    raise                      # "missing vector" (faiss says "key N not found" for an absent id)
                continue
            found[k] = True
        out = np.stack(rows).astype(np.float32)[:, : self._dim] if rows else np.zeros((0, self._dim), np.float32)
        return np.ascontiguousarray(out), found

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids (absent ids are ignored); returns how many were removed."""
        faiss = _faiss()
        if len(ids) == 0:
            return 0
        sel = faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
        return int(self.index.remove_ids(sel))

    def search(self, q: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (inner-product scores, ids) per query row; missing results have id -1."""
        q = np.ascontiguousarray(q, dtype=np.float32)
        k = int(k)
        qn = np.linalg.norm(q, axis=1, keepdims=True) if self.transformed else None
        rows = self._queries(q, qn) if qn is not None else q
        # nprobe is given per call, never set on the shared index: threads may ask for different values at once
        if self._coarse() is not None:
            return self._finish(self._preassigned(rows, k, nprobe), qn)
        params = self._search_params(int(nprobe) if nprobe is not None else self.nprobe)
        if params is None:
            return self._finish(self.index.search(rows, k), qn)
        return self._finish(self.index.search(rows, k, params=params[0]), qn)

    def _search_params(self, nprobe: int) -> Any:
        """faiss search parameters for ``nprobe`` as :meth:`_apply_nprobe` sets them on the index (IVF lists probed
        and an HNSW quantizer's breadth; a graph's efSearch), in a tuple that keeps every part alive; None for an
        exact index."""
        faiss = _faiss()
        if self._graph() is not None:
            p = faiss.SearchParametersHNSW()
            p.efSearch = graph_ef(nprobe)
            return (p,)
        if not self.factory.startswith("IVF"):
            return None
        p = faiss.SearchParametersIVF()
        p.nprobe = nprobe
        if self._hnsw_quantizer() is None:
            return (p,)
        qp = faiss.SearchParametersHNSW()
        qp.efSearch = quantizer_ef(nprobe)
        p.quantizer_params = qp
        return (p, qp)

    def _finish(self, found: tuple[np.ndarray, np.ndarray], qn: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The index's (distances, ids) as inner products: on the transform (``qn``: the queries' norms), q' =
        q M/|q| and |q' - [x, e]|^2 = 2 M^2 - 2 (M/|q|) q.x."""
        scores, ids = found
        if qn is None:
            return scores, ids
        m = float(self.mips_norm)  # type: ignore[arg-type]
        scores = np.where(ids >= 0, (2 * m * m - scores) * qn.astype(np.float64) / (2 * m), -np.inf)
        return scores.astype(np.float32), ids

    COARSE_BLOCK = 1 << 24
    """Query x list distances computed at once by :meth:`_preassigned` (64 MB of float32), as faiss's own
    quantizer works in blocks: a batch of 30k mentions against 16k lists does not take 2 GB."""

    def _preassigned(self, q: np.ndarray, k: int, nprobe: int | None) -> tuple[np.ndarray, np.ndarray]:
        """What ``index.search`` gives for an IVF index on a flat quantizer (the same lists, ids and order; scores
        to float rounding), with the lists chosen by matrix products (torch, in blocks of queries) and scanned by
        faiss (``search_preassigned``, over faiss's threads): faiss's own coarse step cost twice as much on the
        375 mentions of a linking batch (7.7 against 3.6 ms)."""
        import torch

        faiss = _faiss()
        ivf, cents, c_sq, l2 = self._coarse()
        probe = min(int(nprobe if nprobe is not None else self.nprobe), int(ivf.nlist))
        params = faiss.SearchParametersIVF()
        params.nprobe = probe
        n = q.shape[0]
        dist = np.empty((n, k), np.float32)
        ids = np.empty((n, k), np.int64)
        step = max(1, self.COARSE_BLOCK // int(ivf.nlist))
        with torch.inference_mode(), torch.autocast("cpu", enabled=False):  # a caller's bf16 autocast: not here
            for b0 in range(0, n, step):
                qb = q[b0:b0 + step]
                qt = torch.from_numpy(qb)
                dots = qt @ cents.T
                if l2:  # as faiss: |q|^2 + |c|^2 - 2 q.c, at least 0
                    dis, lists = torch.topk(((qt * qt).sum(1, keepdim=True) + c_sq - 2 * dots).clamp_(min=0), probe,
                                            dim=1, largest=False, sorted=True)
                else:
                    dis, lists = torch.topk(dots, probe, dim=1, largest=True, sorted=True)
                assign = np.ascontiguousarray(lists.numpy(), dtype=np.int64)
                dq = np.ascontiguousarray(dis.numpy(), dtype=np.float32)
                ivf.search_preassigned_c(len(qb), faiss.swig_ptr(qb), k, faiss.swig_ptr(assign), faiss.swig_ptr(dq),
                                         faiss.swig_ptr(dist[b0:b0 + step]), faiss.swig_ptr(ids[b0:b0 + step]),
                                         False, params)
        return dist, ids

    def _coarse(self) -> Any:
        """(the IVF index, its centroids as a float32 tensor, their squared norms, L2 metric?) for a CPU IVF index
        whose coarse quantizer is flat; None for any other index (searched by faiss alone). Such an index scans
        its lists over faiss's threads by query (``parallel_mode`` 3: what its own search does, one level up)."""
        cached = getattr(self, "_coarse_cache", None)
        if cached is not None and cached[0] is self.index:
            return cached[1]
        got = None
        faiss = _faiss()
        if self.factory.startswith("IVF") and isinstance(self.index, faiss.IndexIVF):
            import torch

            ivf = faiss.extract_index_ivf(self.index)
            quantizer = faiss.downcast_index(ivf.quantizer)
            if isinstance(quantizer, faiss.IndexFlat) and quantizer.ntotal == ivf.nlist and ivf.nlist > 0:
                cents = torch.from_numpy(quantizer.reconstruct_n(0, ivf.nlist).astype(np.float32, copy=False))
                got = (ivf, cents, (cents * cents).sum(1), quantizer.metric_type == faiss.METRIC_L2)
                ivf.parallel_mode = 3
        self._coarse_cache = (self.index, got)
        return got

    def save(self, path: str | Path) -> None:
        """Write the index atomically (a temporary file of a fresh name, fsync, rename) so a crash never leaves half a
        file; a write that fails (no room left, a read-only folder) is a KBError naming the file."""
        from glinker.io import atomic_write

        faiss = _faiss()
        path = Path(path)
        try:
            # streamed through the temporary file's own descriptor: a full disk is the OSError it raises
            atomic_write(path, lambda f: faiss.write_index(self.index, faiss.PyCallbackIOWriter(f.write)))
        except OSError as e:
            from glinker.kb.store import write_error

            said = write_error(e, path)
            if said is None:
                raise
            raise said from e

    @classmethod
    def load(cls, path: str | Path, factory: str, nprobe: int, mmap: bool = False,
             mips_norm: float | None = None, dim: int | None = None) -> VectorIndex:
        """Read an index written by :meth:`save` (memory-mapped when asked and supported); ``mips_norm`` is the
        bound it was trained with and ``dim`` the vectors' dimension (both from the KB manifest) when it is
        built on the MIPS->L2 transform. A file faiss cannot read (cut short, overwritten), or one that is not the
        index its manifest describes, is a KBError saying the KB is damaged."""
        from glinker.kb.store import DAMAGED_FIX

        faiss = _faiss()
        path = Path(path)
        if not path.is_file():
            raise KBError(f"vector index not found: {path}", where=str(path), fix=DAMAGED_FIX)
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError:
            try:
                index = faiss.read_index(str(path))  # some index types cannot be mmapped
            except RuntimeError as e:
                raise KBError(f"the vector index is damaged: faiss cannot read it ({_faiss_said(e)})",
                              where=str(path), fix=DAMAGED_FIX) from None
        try:
            out = cls(index, factory, nprobe, mips_norm, dim)
        except RuntimeError as e:  # (an IVF factory for an index that has no lists)
            raise KBError(f"the vector index is not the index its manifest describes (factory {factory}; "
                          f"{_faiss_said(e)})", where=str(path), fix=DAMAGED_FIX) from None
        if dim is not None and (int(index.d) <= dim if out.transformed else int(index.d) != dim):
            raise KBError(f"the vector index is not the index its manifest describes (factory {factory}, "
                          f"dimension {dim}; the file holds a {type(index).__name__} of dimension {index.d})",
                          where=str(path), fix=DAMAGED_FIX)
        if out.transformed and mips_norm is None:
            raise KBError("the vector index is built on the MIPS->L2 transform but its norm bound is missing",
                          where=str(path), fix="the KB manifest lacks `mips_norm`: rebuild the KB (glinker kb build)")
        return out


def _faiss_said(e: BaseException) -> str:
    """What a faiss error says, without the C++ function it came from."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text.rsplit("Error: ", 1)[-1][:200]
