"""The FAISS index of entity vectors: one factory string picks the index, ids are the store's rids, files are
written atomically and can be memory-mapped. faiss is imported only here, lazily."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from glinker.errors import ConfigError, DependencyError, KBError

log = logging.getLogger(__name__)

FLAT_MAX = 100_000
"""Up to this many entities the automatic choice is exact search."""
FP16_MAX_BYTES = 8 * 2**30
"""Up to this many bytes of fp16 codes the automatic choice keeps vectors in fp16 (SQfp16), the configuration
measured at 10M generated 384-d vectors (docs/bench/kb.md); SQ8 halves memory beyond it."""
SQ8_MAX_BYTES = 16 * 2**30
"""Above this many bytes of SQ8 codes the automatic choice switches to product quantisation."""


QUANTIZER_EF_SEARCH = 128
"""Least efSearch of an HNSW coarse quantizer (centroid search); raised to 2 x nprobe for wide probes."""


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as e:
        raise DependencyError("faiss is not installed", fix="pip install faiss-cpu") from e
    return faiss


def auto_factory(n: int, dim: int) -> str:
    """A factory string for ``n`` vectors of ``dim``: exact up to FLAT_MAX, then IVF with fp16 codes while they
    fit in FP16_MAX_BYTES, SQ8 codes while those fit in SQ8_MAX_BYTES, PQ beyond; about 4*sqrt(n) lists rounded
    to a power of two."""
    if n <= FLAT_MAX:
        return "Flat"
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    coarse = f"IVF{nlist}" if n <= 3_000_000 else f"IVF{nlist}_HNSW32"
    if n * dim > SQ8_MAX_BYTES:
        m = max(8, dim // 8)
        while dim % m:
            m -= 1
        return f"{coarse},PQ{m}"
    if n * dim * 2 <= FP16_MAX_BYTES:
        return f"{coarse},SQfp16"
    return f"{coarse},SQ8"


def default_nprobe(factory: str) -> int:
    """The nprobe the KB searches with unless told otherwise (about nlist/64, at least 16)."""
    if not factory.startswith("IVF"):
        return 1
    nlist = int("".join(ch for ch in factory[3:].split(",")[0].split("_")[0] if ch.isdigit()))
    return max(16, nlist // 64)


class VectorIndex:
    """A FAISS inner-product index keyed by int64 ids, with train/add/remove/search and atomic save."""

    def __init__(self, index: Any, factory: str, nprobe: int = 1) -> None:
        self.index = index
        self.factory = factory
        self.nprobe = nprobe
        self._apply_nprobe(nprobe)

    @classmethod
    def create(cls, factory: str, dim: int, nprobe: int | None = None) -> VectorIndex:
        """A new empty index from a faiss factory string (inner product); non-IVF indexes get an id map."""
        faiss = _faiss()
        spec = factory if factory.startswith(("IVF", "IDMap")) else f"IDMap2,{factory}"
        try:
            index = faiss.index_factory(int(dim), spec, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise ConfigError(f"invalid faiss factory string {factory!r}: {str(e).splitlines()[0][:200]}",
                              where="factory", fix="e.g. 'Flat', 'IVF4096,SQ8', 'IVF16384_HNSW32,PQ48', or 'auto'") from None
        return cls(index, factory, nprobe if nprobe is not None else default_nprobe(factory))

    def _apply_nprobe(self, nprobe: int) -> None:
        if self.factory.startswith("IVF"):
            faiss = _faiss()
            ivf = faiss.extract_index_ivf(self.index)
            ivf.nprobe = int(nprobe)
            # An HNSW coarse quantizer (IVF..._HNSW32) searches its centroids with efSearch (faiss default 16):
            # narrower than nprobe it returns the wrong lists however many are probed. Keep it well above.
            quantizer = self._hnsw_quantizer()
            if quantizer is not None:
                quantizer.hnsw.efSearch = max(QUANTIZER_EF_SEARCH, 2 * int(nprobe))

    def _hnsw_quantizer(self) -> Any:
        """The HNSW coarse quantizer of an ``IVF..._HNSW..`` index, else None."""
        if not self.factory.startswith("IVF"):
            return None
        faiss = _faiss()
        quantizer = faiss.downcast_index(faiss.extract_index_ivf(self.index).quantizer)
        return quantizer if hasattr(quantizer, "hnsw") else None

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def train(self, x: np.ndarray) -> None:
        """Train the quantisers on a sample (no-op for exact indexes)."""
        if not self.index.is_trained:
            x = np.ascontiguousarray(x, dtype=np.float32)
            self.index.train(x)

    def add(self, x: np.ndarray, ids: np.ndarray) -> None:
        """Add vectors under int64 ids."""
        if not self.index.is_trained:
            raise KBError("the vector index is not trained", fix="train it on a sample before adding vectors")
        quantizer = self._hnsw_quantizer()
        if quantizer is not None:  # assigning a vector is a top-1 search: no need for the width of an nprobe search
            quantizer.hnsw.efSearch = QUANTIZER_EF_SEARCH
        try:
            self.index.add_with_ids(np.ascontiguousarray(x, dtype=np.float32),
                                    np.ascontiguousarray(ids, dtype=np.int64))
        finally:
            self._apply_nprobe(self.nprobe)

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids (absent ids are ignored); returns how many were removed."""
        faiss = _faiss()
        if len(ids) == 0:
            return 0
        sel = faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
        return int(self.index.remove_ids(sel))

    def search(self, q: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row; missing results have id -1."""
        if nprobe is not None and nprobe != self.nprobe:
            self._apply_nprobe(nprobe)
        try:
            return self.index.search(np.ascontiguousarray(q, dtype=np.float32), int(k))
        finally:
            if nprobe is not None and nprobe != self.nprobe:
                self._apply_nprobe(self.nprobe)

    def save(self, path: str | Path) -> None:
        """Write the index atomically (temp file, fsync, rename) so a crash never leaves half a file."""
        faiss = _faiss()
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(self.index, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path, factory: str, nprobe: int, mmap: bool = False) -> VectorIndex:
        """Read an index written by :meth:`save` (memory-mapped when asked and supported)."""
        faiss = _faiss()
        path = Path(path)
        if not path.is_file():
            raise KBError(f"vector index not found: {path}", where=str(path),
                          fix="rebuild the KB with `glinker kb build`")
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError:
            index = faiss.read_index(str(path))  # some index types cannot be mmapped
        return cls(index, factory, nprobe)
