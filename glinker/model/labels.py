"""LabelBank: the projected label vectors P = prompt_rep_layer(E) of a label set, computed once and saved."""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from glinker.errors import ConfigError, DataError, ModelError
from glinker.io import plain_mode
from glinker.locks import pid_alive

log = logging.getLogger(__name__)

BANK_JSON = "label_bank.json"
BANK_VECTORS = "vectors.npy"
BANK_EMBEDDINGS = "embeddings.npy"
BANK_INDEX = "labels.faiss"
# the IVF index's lists in the pre-filter's low precision, saved beside the index at first use (memory-mapped after:
# no float32 copy of the lists in memory; see LabelBank.ivf_lists)
BANK_IVF_LOWP = "labels.ivf-lowp"
_IVF_LOWP_FORMAT = "glinker.ivf_lowp/1"

# Banks at least this large are scored through a FAISS index (top-k labels per span) unless told otherwise.
# Measured (docs/bench/labels.md): at 100k labels the default IVF index scored by matrix products agrees with
# exhaustive scoring on 99.2% (shipped model) and 100% (edge checkpoint) of spans, and is faster than exhaustive
# scoring with or without the bfloat16 pre-filter (edge checkpoint, 16 texts: 7.56 ex/s against 2.75 with bf16 on an
# AVX512-BF16 CPU; 3.90 against 0.57 in float32 on an AVX2 one).
DEFAULT_INDEX_THRESHOLD = 100_000
# factory used when an index is built implicitly: exact up to 10k labels, above an inverted file of about N/256 lists
# (~256 labels a list, a power of two: IVF512 at 100k, IVF4096 at 1M), probed DEFAULT_NPROBE lists deep and scored by
# matrix products on the CPU (scoring.score_rows_ivf). Measured (docs/bench/labels.md), 1 thread, AVX512-BF16 CPU:
# shipped model, 100k labels, 128 CoNLL-dev sentences, threshold 0.3: IVF512 at nprobe 64 99.1% of spans as
# exhaustive scoring, IVF1024 99.0% (below the 99% goal), both ~3x exhaustive's speed, IVF512 built 2.6x faster;
# edge checkpoint, 1M labels, 32 texts, the two indexes alternating in one process: IVF4096 3.42 ex/s (best of 3),
# IVF2048 3.15 (and 99.4% vs 100% of 178 spans as exhaustive); HNSW32 (efSearch 512, MIPS transform) at 100k:
# 98.8% at less than half IVF's speed (84% on the edge checkpoint).
DEFAULT_NPROBE = 64
# 2026-12-05 (session 36): on a bank of 100k real label names (common types, Wikidata descriptions, entity and place
# names), 64 CoNLL-dev sentences, threshold 0.5, IVF512: 89.1% / 98.1% / 99.8% / 100% of spans as exhaustive scoring
# at nprobe 64 / 128 / 192 / 256 (8.3 / 11.0 / 13.6 / 15.9 s against 30.9 s exhaustive). Generic labels (person,
# organization) have the smallest vectors of such a bank and fall in lists a few probes miss; the generated label
# strings behind the earlier 99.1% at 64 hid it. So an IVF bank probes 3/8 of its lists unless told otherwise.
DEFAULT_NPROBE_SHARE = 0.375
# 2026-12-05 (session 38): the labels such spans miss are a few generic ones (person, location, organization: 78 of
# the 78 spans missed at nprobe 64 on 128 CoNLL-train sentences), and they have the smallest vectors of the bank
# (person's is smaller than 98.3% of 100k real names'). Scored exactly for every span, the labels of the smallest
# 5% of norms, the rest in an IVF index trained without them: the best label is in the probed lists or that set
# for 99.8% of spans at 32 probes of 512 and 100% at 48-64 (faiss's IVF alone: 81.9% / 93.3% at 32 / 64, 99.7% at
# 192); on biomedical sentences 99.9% at 32, 100% at 64 (alone: 97.8%, 99.8%). docs/bench/labels.md.
DEFAULT_EXACT_SHARE = 0.05
DEFAULT_EXACT_NPROBE_SHARE = 0.125
_FLAT_UP_TO = 10_000


def default_nprobe(nlist: int, exact: bool = False) -> int:
    """Lists an IVF label index probes per span unless ``bank.nprobe`` says otherwise: 3/8 of them (192 of 512),
    1/8 of an index whose smallest labels are scored exactly (``exact``), at least DEFAULT_NPROBE (all of a
    smaller index)."""
    share = DEFAULT_EXACT_NPROBE_SHARE if exact else DEFAULT_NPROBE_SHARE
    return min(int(nlist), max(DEFAULT_NPROBE, math.ceil(share * int(nlist))))


def _ivf_of(index: Any) -> Any:
    """The inverted file inside a read FAISS index, or None when it is none."""
    try:
        return _faiss().extract_index_ivf(index)
    except (RuntimeError, TypeError):
        return None


def _is_ivf(index: Any) -> bool:
    """Whether a read FAISS index is an inverted file."""
    return _ivf_of(index) is not None


def is_ivf_ip(factory: str, mips: str = "auto") -> bool:
    """Whether ``factory`` builds an inner-product inverted file (``IVF...``, no MIPS transform): the index whose
    lists are scored by matrix products, and which may leave its smallest labels to exact scoring."""
    return str(factory).upper().startswith("IVF") and not uses_mips_transform(factory, mips)


def exact_count(factory: str, n: int, share: float, mips: str = "auto") -> int:
    """How many of ``n`` labels an index of ``factory`` built with ``exact_share=share`` leaves to exact scoring: the
    share of them rounded up, for an inner-product IVF index only, and never so many that fewer labels than its
    lists would be left to train it."""
    from glinker.kb.index import factory_nlist

    if share <= 0 or not is_ivf_ip(factory, mips):
        return 0
    return max(0, min(math.ceil(round(share * n, 9)), n - (factory_nlist(factory) or 1)))


def smallest_norms(vectors: Any, count: int, batch_size: int = 65_536) -> Any:
    """Sorted int64 rows of the ``count`` rows of ``vectors`` (N, D) with the smallest norms (read in batches: a
    memory-mapped bank is not loaded whole)."""
    import torch

    n = int(vectors.shape[0])
    norms = torch.empty(n)
    for a in range(0, n, batch_size):
        norms[a : a + batch_size] = torch.as_tensor(vectors[a : a + batch_size]).float().norm(dim=1)
    return torch.sort(torch.topk(norms, count, largest=False).indices).values


def large_factory(n: int) -> str:
    """The index built for a bank of ``n`` labels unless told otherwise: ``Flat`` up to 10k, else
    ``IVF<about n/256>,Flat`` (inner product: its lists are scored by matrix products)."""
    import math

    if n <= _FLAT_UP_TO:
        return "Flat"
    return f"IVF{2 ** max(5, round(math.log2(n / 256)))},Flat"
# HNSW search breadth. Graph indexes are built on the MIPS->L2 transform (see build_faiss_index): with the shipped
# model v3 at 100k labels (128 CoNLL-dev sentences, threshold 0.3) the same entities as exhaustive scoring on
# 96.3% / 98.5% / 99.4% / 100% of spans at efSearch 128 / 256 / 512 / 1024 (docs/bench/labels.md).
DEFAULT_EF_SEARCH = 512


def _faiss() -> Any:
    from glinker.kb.index import import_faiss

    return import_faiss("label retrieval needs faiss", "LabelBank index",
                        "pip install faiss-cpu (or score exhaustively: label_top_k=0)")


def uses_mips_transform(factory: str, mips: str = "auto") -> bool:
    """Whether an index of ``factory`` is built on the MIPS->L2 transform: ``mips`` "auto" (graph indexes: HNSW,
    NSG), "l2" (always) or "ip" (never)."""
    if mips not in ("auto", "l2", "ip"):
        raise ConfigError(f"unknown label index metric {mips!r}", where="mips", fix='use "auto", "l2" or "ip"')
    if mips != "auto":
        return mips == "l2"
    head = factory.split(",")[0].upper()
    return not head.startswith(("IVF", "IMI")) and ("HNSW" in head or "NSG" in head)


def _augment(v: Any, max_norm: float) -> Any:
    """Rows for the MIPS->L2 transform: [p, sqrt(M^2 - |p|^2)], so that every row has norm M."""
    from glinker.kb.index import mips_rows

    return mips_rows(v, max_norm)[0]


def build_faiss_index(
    vectors: Any,
    factory: str = "Flat",
    batch_size: int = 65_536,
    progress: bool = False,
    train_size: int = 100_000,
    seed: int = 0,
    mips: str = "auto",
    exclude: Any = None,
) -> Any:
    """A FAISS index that retrieves the rows of ``vectors`` (N, D) with the largest inner products, added in
    batches. ``exclude`` (sorted int64 rows; an IVF index only) leaves those rows out of the index, trained and
    filled with the others under their own row numbers (they are scored exactly beside it).

    ``factory`` is a faiss index-factory string: ``"Flat"`` (exact), ``"HNSW32"``, ``"IVF1024,Flat"``, ...
    Indexes that need training are trained on a random sample of at most ``train_size`` rows.

    Inner product is not a metric and graph indexes navigate it badly, so by default (``mips="auto"``) they
    are built on the MIPS->L2 transform: rows ``[p, sqrt(M^2 - |p|^2)]`` (M the largest norm), queries
    ``[q, 0]``; then ``|q' - p'|^2 = |q|^2 + M^2 - 2 q.p`` and the nearest rows are exactly the largest inner
    products. Such an index is one dimension wider than the vectors, which is how :func:`search_index` knows.
    """
    import numpy as np
    import torch

    faiss = _faiss()
    n = int(vectors.shape[0])
    d = int(vectors.shape[1])
    l2 = uses_mips_transform(factory, mips)

    def raw(a: int, b: int) -> Any:
        v = vectors[a:b]
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().float().numpy()
        return np.ascontiguousarray(v, dtype=np.float32)

    max_norm = 0.0
    if l2:  # one pass over the (possibly memory-mapped) rows for the largest norm
        for a in range(0, n, batch_size):
            v = raw(a, min(n, a + batch_size))
            max_norm = max(max_norm, float(np.sqrt(np.einsum("ij,ij->i", v, v).max(initial=0.0))))

    def rows(a: int, b: int) -> Any:
        return _augment(raw(a, b), max_norm) if l2 else raw(a, b)

    def gathered(ids: Any) -> Any:
        """The float32 rows ``ids`` (sorted) of ``vectors``, contiguous (a memory-mapped bank is read where needed)."""
        v = vectors[torch.as_tensor(ids)] if isinstance(vectors, torch.Tensor) else vectors[ids]
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().float().numpy()
        return np.ascontiguousarray(v, dtype=np.float32)

    keep = None  # the rows indexed, when some are left out
    if exclude is not None and len(exclude):
        mask = np.ones(n, dtype=bool)
        mask[np.asarray(exclude, dtype=np.int64)] = False
        keep = np.flatnonzero(mask)

    try:
        index = faiss.index_factory(
            d + 1 if l2 else d, factory, faiss.METRIC_L2 if l2 else faiss.METRIC_INNER_PRODUCT
        )
    except RuntimeError as e:
        raise ConfigError(
            f"faiss cannot build index {factory!r}: {str(e).strip().splitlines()[-1]}",
            where="label index factory",
            fix='use a faiss factory string such as "Flat", "HNSW32" or "IVF1024,Flat"',
        ) from None
    if not index.is_trained:
        from glinker.kb.index import factory_nlist

        rng = np.random.default_rng(seed)
        # faiss's k-means wants at least 39 points per list
        pool = n if keep is None else len(keep)
        take = np.sort(rng.choice(pool, size=min(pool, max(train_size, 40 * (factory_nlist(factory) or 0))),
                                  replace=False))
        sample = gathered(take if keep is None else keep[take])
        if l2:
            sample = _augment(sample, max_norm)
        try:
            index.train(sample)
        except RuntimeError as e:
            raise ConfigError(
                f"faiss could not train {factory!r} on {len(sample)} labels: "
                f"{str(e).strip().splitlines()[-1]}",
                where="label index factory",
                fix='use fewer IVF lists for this many labels, or an exact index: "Flat"',
            ) from None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n if keep is None else len(keep), desc="indexing labels", unit="label")
    if keep is None:
        for a in range(0, n, batch_size):
            chunk = rows(a, min(n, a + batch_size))
            index.add(chunk)
            if bar is not None:
                bar.update(len(chunk))
    else:
        for a in range(0, len(keep), batch_size):
            ids = keep[a : a + batch_size]
            index.add_with_ids(gathered(ids), ids)
            if bar is not None:
                bar.update(len(ids))
    if bar is not None:
        bar.close()
    log.info("built faiss index %s over %d labels (dim %d%s%s)", factory, int(index.ntotal), d,
             ", MIPS->L2" if l2 else "", f"; {n - len(keep)} scored exactly beside it" if keep is not None else "")
    return index


def check_factory(factory: str, n: int, dim: int, mips: str = "auto") -> None:
    """A ConfigError unless faiss can build ``factory`` over ``n`` label vectors of ``dim``: run before a build
    spends its time encoding labels for an index it then cannot make."""
    import re

    faiss = _faiss()
    l2 = uses_mips_transform(factory, mips)
    try:
        faiss.index_factory(dim + 1 if l2 else dim, factory, faiss.METRIC_L2 if l2 else faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise ConfigError(f"faiss cannot build index {factory!r}: {str(e).strip().splitlines()[-1]}",
                          where="label index factory",
                          fix='use a faiss factory string such as "Flat", "HNSW32" or "IVF1024,Flat"') from None
    m = re.match(r"IVF(\d+)", factory)
    if m and int(m.group(1)) > n:
        raise ConfigError(f"{factory!r} needs at least {m.group(1)} labels to train its lists; there are {n}",
                          where="label index factory",
                          fix=f"use fewer lists (IVF{max(1, n // 39)},Flat) or an exact index: Flat")


def search_index(
    index: Any, queries: Any, k: int, ef_search: int = DEFAULT_EF_SEARCH, nprobe: int | None = None,
    exact: bool = False,
) -> Any:
    """(n, k) int64 label rows of the ``k`` largest inner products per query row; -1 where fewer exist.

    An index one dimension wider than the queries is built on the MIPS->L2 transform: queries get a 0 appended."""
    import numpy as np

    faiss = _faiss()
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if int(index.d) == q.shape[1] + 1:
        q = np.ascontiguousarray(np.concatenate([q, np.zeros((q.shape[0], 1), np.float32)], axis=1))
    k = max(1, min(int(k), int(index.ntotal)))
    inner = faiss.downcast_index(index)
    if hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = max(int(ef_search), k)
    ivf = _ivf_of(index)
    if ivf is not None:
        ivf.nprobe = (min(int(nprobe), int(ivf.nlist)) if nprobe is not None else
                      default_nprobe(int(ivf.nlist), exact=exact))
    _, ids = index.search(q, k)
    return ids


class LabelBank:
    """Label names, the texts that were encoded for them, and their P vectors (C, D) float32."""

    def __init__(
        self,
        names: Sequence[str],
        prompts: Sequence[str],
        vectors: Any,
        model_fingerprint: str = "",
        embeddings: Any = None,
    ) -> None:
        import torch

        if len(names) != len(prompts) or len(names) != int(vectors.shape[0]):
            raise DataError(
                f"label bank has {len(names)} names, {len(prompts)} prompts and "
                f"{int(vectors.shape[0])} vectors",
                where="LabelBank",
                fix="pass one vector per label",
            )
        _check_unique(names)
        self.names = list(names)
        self.prompts = list(prompts)
        self.vectors = vectors if isinstance(vectors, torch.Tensor) else torch.as_tensor(vectors)
        self.model_fingerprint = model_fingerprint
        # pooled label-encoder vectors E: only kept for models whose scoring needs them (fusion, token level)
        self.embeddings = (
            embeddings
            if embeddings is None or isinstance(embeddings, torch.Tensor)
            else torch.as_tensor(embeddings)
        )
        self._index = {n: i for i, n in enumerate(self.names)}
        # FAISS inner-product index over ``vectors`` (built lazily, or read lazily from ``_index_path``)
        # None: DEFAULT_INDEX_THRESHOLD
        self.index_threshold: int | None = None
        self.index_factory: str | None = None
        self.ef_search = DEFAULT_EF_SEARCH
        self.nprobe: int | None = None  # lists an IVF index probes per span; None: default_nprobe (1/8 or 3/8)
        self._faiss_index: Any = None
        self._exact: Any = None  # (rows, their float32 vectors) of the labels an IVF index leaves to exact scoring
        self._ivf: Any = None  # the IVF lists as tensors (ivf_lists), for the index they were taken from
        self._no_lean = False  # the lean lists could not be saved beside the index (ivf_lists)
        self._index_path: Path | None = None
        self._dir: Path | None = None  # the folder the bank was loaded from
        # a model's scoring matrices for these labels (folded P, the low-precision copy), reused across calls
        self._scoring_cache: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"LabelBank({len(self)} labels, dim={self.dim})"

    @property
    def dim(self) -> int:
        """Vector width D."""
        return int(self.vectors.shape[1]) if self.vectors.dim() == 2 else 0

    def index_of(self, name: str) -> int:
        """Row of ``name``; DataError when absent."""
        try:
            return self._index[name]
        except KeyError:
            raise DataError(
                f"label {name!r} is not in the label bank",
                where="LabelBank",
                fix="encode a bank that contains it",
            ) from None

    def subset(self, names: Sequence[str]) -> LabelBank:
        """A bank with only ``names`` (in that order)."""
        idx = [self.index_of(n) for n in names]
        return LabelBank(
            [self.names[i] for i in idx],
            [self.prompts[i] for i in idx],
            self.vectors[idx],
            self.model_fingerprint,
            None if self.embeddings is None else self.embeddings[idx],
        )

    # ---- FAISS retrieval ---------------------------------------------------------------------------
    @property
    def has_index(self) -> bool:
        """Whether an index is built or saved beside the vectors (it is read on first use)."""
        return self._faiss_index is not None or self._index_path is not None

    def default_factory(self) -> str:
        """The factory used when an index is built implicitly (:func:`large_factory`)."""
        return large_factory(len(self))

    def build_index(
        self, factory: str | None = None, batch_size: int = 65_536, progress: bool = False, mips: str = "auto",
        exact_share: float | None = None,
    ) -> LabelBank:
        """Build the FAISS index over the P vectors (``factory``: a faiss factory string; ``mips``: see
        :func:`build_faiss_index`).

        An inner-product IVF index (``IVF...``) leaves the ``exact_share`` of labels with the smallest vectors (unset:
        DEFAULT_EXACT_SHARE, 5%; 0: none) out of its lists: they are scored exactly for every span, beside the lists
        a span probes. Those are the generic labels (person, location) that the lists nearest a span miss most."""

        if self.vectors.dim() != 2 or len(self) == 0:
            raise DataError("cannot index an empty label bank", where="LabelBank", fix="add labels first")
        f = factory or self.default_factory()
        share = DEFAULT_EXACT_SHARE if exact_share is None else float(exact_share)
        if not 0.0 <= share < 1.0:
            raise ConfigError(f"exact_share must be in [0, 1), got {exact_share!r}", where="exact_share",
                              fix="e.g. 0.05 (the default: the 5% of labels with the smallest vectors), or 0 for none")
        exclude = None
        count = exact_count(f, len(self), share, mips)
        if count:
            exclude = smallest_norms(self.vectors, count, batch_size)
        self._faiss_index = build_faiss_index(self.vectors, f, batch_size=batch_size, progress=progress, mips=mips,
                                              exclude=exclude)
        self._exact = None
        self.index_factory = f
        self._index_path = None
        self._ivf = None
        self._no_lean = False
        return self

    def faiss_index(self) -> Any:
        """The index: read from disk or built (default factory) on first use."""
        if self._faiss_index is None:
            if self._index_path is not None:
                faiss = _faiss()
                try:
                    idx = faiss.read_index(str(self._index_path))
                except RuntimeError as e:
                    raise DataError(
                        f"label index is damaged: {str(e).strip().splitlines()[-1]}",
                        where=str(self._index_path),
                        fix="delete it and rebuild: bank.build_index(); bank.save(folder)",
                    ) from None
                # an IVF index may leave labels out (scored exactly beside it), never hold more than the bank
                short_ok = int(idx.ntotal) < len(self) and _is_ivf(idx)
                if (int(idx.ntotal) != len(self) and not short_ok) or int(idx.d) not in (self.dim, self.dim + 1):
                    raise DataError(
                        f"label index holds {idx.ntotal} vectors of dim {idx.d}, the bank "
                        f"{len(self)} of dim {self.dim}",
                        where=str(self._index_path),
                        fix="delete it and rebuild: bank.build_index(); bank.save(folder)",
                    )
                self._faiss_index = idx
            else:
                import time

                t0 = time.perf_counter()
                self.build_index()
                took = time.perf_counter() - t0
                d = self._dir
                if d is not None and os.access(d, os.W_OK):
                    try:  # the next run reads it instead of building it again
                        self.save_index(d)
                        log.warning("built a %s index over %d labels in %.0f s and saved it in %s", self.index_factory,
                                    len(self), took, d)
                    except OSError as e:
                        log.warning("built a %s index over %d labels in %.0f s; could not save it in %s: %s",
                                    self.index_factory, len(self), took, d, e)
                else:
                    log.warning("built a %s index over %d labels in %.0f s, for this process only: build the bank "
                                "with its index once (glinker labels build ... --index %s)", self.index_factory,
                                len(self), took, self.index_factory)
        return self._faiss_index

    def ivf_lists(self, lowp: Any = None) -> Any:
        """The index's lists as :class:`glinker.model.scoring.IVFLists` (views of its memory) when it is an
        inner-product IVF-Flat index, for scoring by matrix products (:func:`~glinker.model.scoring.score_rows_ivf`);
        None for other indexes (they are searched through FAISS).

        With ``lowp``, the dtype of the low-precision pre-filter that will score them, and an index saved in the
        bank folder, the lists come in their lean form: the low-precision lists memory-mapped from
        ``labels.ivf-lowp/`` beside the index (written there at first use when the folder is writable; a changed
        index is detected and the folder rewritten), survivors re-scored from the bank's vectors. The FAISS index
        (a float32 copy of every vector) is then not held in memory: at a million labels ~2 GB less, and
        processes reading the same bank share the lists through the page cache."""
        ivf = self._ivf
        own = ivf is not None and not ivf.lean and ivf.owner is self._faiss_index  # the index's float32 lists
        want_lean = lowp is not None and self._index_path is not None and not self._no_lean
        if want_lean:
            if ivf is not None and ivf.lean and ivf._low.labels.vectors_t.dtype == lowp:
                return ivf
            lean = self._read_ivf_lowp(lowp)
            if lean is None:
                full = ivf if own else self._ivf_from_index()
                if full is None:  # not an inner-product IVF-Flat index
                    self._ivf = None
                    return None
                lean = self._write_ivf_lowp(full, lowp)
                if lean is None:  # not writable: the float32 lists, without trying again
                    self._no_lean = True
                    self._ivf = full
                    return full
            # the FAISS index (its float32 lists) is let go: search() reads it again if it is asked
            self._ivf, self._faiss_index = lean, None
            return lean
        if own:
            return ivf
        self._ivf = self._ivf_from_index()
        return self._ivf

    def _ivf_from_index(self) -> Any:
        import numpy as np
        import torch

        from glinker.model.scoring import IVFLists

        faiss = _faiss()
        index = self.faiss_index()
        ivf = faiss.downcast_index(index)
        d = self.dim
        if not isinstance(ivf, faiss.IndexIVFFlat) or int(ivf.d) != d or ivf.metric_type != faiss.METRIC_INNER_PRODUCT:
            return None
        flat = faiss.downcast_index(ivf.quantizer)
        if not isinstance(flat, faiss.IndexFlat):
            return None
        inv = ivf.invlists
        nlist = int(ivf.nlist)
        cen = torch.from_numpy(faiss.rev_swig_ptr(flat.get_xb(), nlist * d).reshape(nlist, d))
        vectors, ids = [], []
        for j in range(nlist):
            n = int(inv.list_size(j))
            if n == 0:
                vectors.append(torch.zeros(0, d))
                ids.append(torch.zeros(0, dtype=torch.long))
                continue
            codes = faiss.rev_swig_ptr(inv.get_codes(j), n * d * 4).view(np.float32).reshape(n, d)
            vectors.append(torch.from_numpy(codes))
            ids.append(torch.from_numpy(faiss.rev_swig_ptr(inv.get_ids(j), n)))
        rows, vecs = self.exact_labels()
        if rows.numel():  # the labels left out of the lists: one list every span reads
            vectors.append(vecs)
            ids.append(rows)
        return IVFLists(cen, vectors, ids, owner=index, always=1 if rows.numel() else 0)

    def exact_labels(self) -> Any:
        """(rows, float32 vectors) of the labels the IVF index leaves out of its lists, scored exactly for every span
        (empty without an index, or with one that holds every label). Read from the lean lists when they are
        loaded, else from the index's lists (the labels none of them holds)."""
        import numpy as np
        import torch

        if self._exact is None:
            ivf = self._ivf
            if ivf is not None and ivf.always:
                rows = ivf.ids[-1]
            elif self._faiss_index is None and self._index_path is None:
                rows = torch.zeros(0, dtype=torch.long)
            else:
                faiss = _faiss()
                index = self.faiss_index()
                if int(index.ntotal) >= len(self):
                    rows = torch.zeros(0, dtype=torch.long)
                else:
                    ivf_index = faiss.extract_index_ivf(index)
                    inv = ivf_index.invlists
                    held = np.zeros(len(self), dtype=bool)
                    for j in range(int(ivf_index.nlist)):
                        n = int(inv.list_size(j))
                        if n:
                            held[faiss.rev_swig_ptr(inv.get_ids(j), n)] = True
                    rows = torch.from_numpy(np.flatnonzero(~held).astype(np.int64))
            self._exact = (rows, self.vectors[rows].float().contiguous())
        return self._exact

    def _ivf_lowp_meta(self, dtype: Any) -> dict:
        from glinker.model.scoring import LOWP_ROW_ALIGN

        return {
            "format": _IVF_LOWP_FORMAT,
            "dtype": str(dtype),
            "align": LOWP_ROW_ALIGN,
            "count": len(self),
            "dim": self.dim,
            "index": _file_signature(self._index_path),
        }

    def _read_ivf_lowp(self, dtype: Any) -> Any:
        """The lean lists saved beside the index, or None (absent, stale or unreadable: then read from the index)."""
        import numpy as np
        import torch

        from glinker.model.scoring import IVFLists, IVFLowp

        d = self._index_path.parent / BANK_IVF_LOWP
        if not (d / "meta.json").is_file():
            return None
        try:
            meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
            want = self._ivf_lowp_meta(dtype)
            if {k: meta.get(k) for k in want} != want:
                log.info("the low-precision IVF lists in %s are not this index's: written again", d)
                return None
            sizes = [int(x) for x in meta["sizes"]]
            cen = torch.from_numpy(np.load(d / "centroids.npy", allow_pickle=False))
            ids = torch.from_numpy(np.load(d / "ids.npy", allow_pickle=False))
            rows = np.load(d / "rows.npy", mmap_mode="r", allow_pickle=False)
            always = int(meta.get("always", 0))
            if sum(sizes) != len(self) or ids.shape != (len(self),) or cen.shape != (len(sizes) - always, self.dim):
                raise ValueError(f"{len(sizes)} lists of {sum(sizes)} labels, {tuple(ids.shape)} ids, centroids "
                                 f"{tuple(cen.shape)}")
            if len(self) and (int(ids.min()) < 0 or int(ids.max()) >= len(self)):
                raise ValueError("label rows out of range")
            with warnings.catch_warnings():  # read-only memmap: torch warns that the tensor is not writable
                warnings.simplefilter("ignore")
                low = torch.from_numpy(rows).view(dtype)
            low_lists = IVFLowp.from_rows(low, sizes, meta["norms"])
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
            log.warning("could not read the low-precision IVF lists in %s (%s): reading the index instead", d, e)
            return None
        return IVFLists(cen, None, list(ids.split(sizes)), _low=low_lists, source=self.vectors, always=always)

    def _write_ivf_lowp(self, full: Any, dtype: Any) -> Any:
        """Save ``full``'s low-precision lists beside the index and return them memory-mapped (lean); None when
        the folder is not writable or the write fails (the float32 lists are used as before)."""
        import numpy as np
        import torch

        folder = self._index_path.parent
        if not os.access(folder, os.W_OK):
            return None
        low = full.lowp(dtype)
        sizes = [int(i.shape[0]) for i in full.ids]
        meta = {**self._ivf_lowp_meta(dtype), "sizes": sizes, "always": full.always,
                "norms": [low.labels.norm_max, low.labels.low_norm_max, low.labels.err_norm_max]}
        target = folder / BANK_IVF_LOWP
        tmp = Path(tempfile.mkdtemp(prefix=f".{BANK_IVF_LOWP}.", dir=folder))
        try:
            np.save(tmp / "centroids.npy", full.centroids.numpy())
            np.save(tmp / "ids.npy", (torch.cat(full.ids) if full.ids else torch.zeros(0, dtype=torch.long)).numpy())
            np.save(tmp / "rows.npy", low.rows.contiguous().view(torch.int16).numpy())
            (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
            for f in tmp.iterdir():
                plain_mode(f)
            plain_mode(tmp, executable=True)
            shutil.rmtree(target, ignore_errors=True)
            os.rename(tmp, target)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if target.is_dir():  # another process (or thread) put its copy in place first: use that one
                lean = self._read_ivf_lowp(dtype)
                if lean is not None:
                    return lean
            log.warning("could not save the low-precision IVF lists in %s: %s", folder, e)
            return None
        log.info("saved the index's lists in %s for memory-mapped scoring (%d labels)", target, len(self))
        return self._read_ivf_lowp(dtype)

    def search(self, queries: Any, k: int) -> Any:
        """(n, k) int64 rows of the ``k`` labels with the largest inner product per query (-1: none): the index's,
        merged with the labels it leaves to exact scoring."""
        import numpy as np
        import torch

        rows, vecs = self.exact_labels()
        ids = search_index(self.faiss_index(), queries, k, self.ef_search, self.nprobe, exact=bool(rows.numel()))
        if not rows.numel():
            return ids
        q = torch.as_tensor(np.ascontiguousarray(queries, dtype=np.float32))
        got = torch.as_tensor(ids)
        found = torch.where(got >= 0, torch.linalg.vecdot(q[:, None, :], self.vectors[got.clamp(min=0)].float()),
                            torch.tensor(-math.inf))
        ex_s, ex_j = (q @ vecs.T).topk(min(int(k), int(rows.numel())), dim=1)
        scores = torch.cat([found, ex_s], dim=1)
        cand = torch.cat([got, rows[ex_j]], dim=1)
        best = scores.topk(min(int(k), int(scores.shape[1])), dim=1).indices
        out = torch.gather(cand, 1, best)
        out = torch.where(torch.gather(scores, 1, best) > -math.inf, out, torch.full_like(out, -1))
        if out.shape[1] < ids.shape[1]:
            out = torch.cat([out, torch.full((out.shape[0], ids.shape[1] - out.shape[1]), -1)], dim=1)
        return out.numpy()

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write ``label_bank.json`` + ``vectors.npy`` atomically into ``out_dir``."""
        import numpy as np

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        meta = _meta(
            self.names, self.prompts, self.dim, self.model_fingerprint, self.index_factory if self.has_index else None
        )
        arr = self.vectors.detach().cpu().float().numpy()
        files = [(BANK_VECTORS, lambda f: np.save(f, arr))]
        index = None
        if self.has_index:
            faiss = _faiss()
            index = self.faiss_index()
            meta["exact_labels"] = len(self) - int(index.ntotal)
            files.append((BANK_INDEX, lambda f: faiss.write_index(index, faiss.PyCallbackIOWriter(f.write))))
        if self.embeddings is not None:
            emb = self.embeddings.detach().cpu().float().numpy()
            files.append((BANK_EMBEDDINGS, lambda f: np.save(f, emb)))
        for name, writer in (
            *files,
            (BANK_JSON, lambda f: f.write(json.dumps(meta, ensure_ascii=False).encode())),
        ):
            _atomic_write_nosync(out / name, writer)
        if index is None:
            (out / BANK_INDEX).unlink(missing_ok=True)  # a stale index must not outlive its vectors
        shutil.rmtree(out / BANK_IVF_LOWP, ignore_errors=True)  # lists of the index written before
        if index is not None:
            self._saved_in(out)
        return out

    @classmethod
    def write_batches(
        cls,
        out_dir: str | os.PathLike,
        names: Sequence[str],
        prompts: Sequence[str],
        batches: Iterable[Any],
        dim: int,
        model_fingerprint: str = "",
        progress: bool = False,
        resume: bool = False,
        precision: str = "float32",
    ) -> LabelBank:
        """Write a bank whose vectors arrive in row-order batches straight to disk; returns it memory-mapped.

        Peak memory is one batch, whatever the number of labels (a million labels of D=512 is 2 GB on disk).
        The folder is a bank only once ``label_bank.json`` is written, at the end. With ``resume``, a build
        interrupted in the same folder (same names, prompts, dim and fingerprint) continues: ``batches`` is
        then given the number of rows already on disk through :func:`rows_done` and must start there.
        ``precision`` names what the vectors were computed in (the encoder's dtype), recorded in the bank: an
        interrupted build resumes only in the same one (otherwise it starts over, with a warning), and a finished
        bank of these labels in another precision is rebuilt, so that one bank never mixes precisions.
        """
        from glinker.io import Busy, locked

        out = Path(out_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = _build_lock(out)
        try:
            with locked(lock, wait=False):
                bank = cls._write_batches(out, names, prompts, batches, dim, model_fingerprint, progress, resume,
                                          precision)
                lock.unlink(missing_ok=True)  # done: no file is left beside the bank (a killed build leaves it)
                return bank
        except Busy:
            raise ConfigError(f"another process is building a label bank into {out}", where=str(out),
                              fix="wait for it to finish, or write this bank to another folder (-o)") from None

    @classmethod
    def _write_batches(cls, out: Path, names: Sequence[str], prompts: Sequence[str], batches: Iterable[Any],
                       dim: int, model_fingerprint: str, progress: bool, resume: bool, precision: str) -> LabelBank:
        w = _BankWriter(out, names, prompts, dim, model_fingerprint, resume, precision)
        if w.complete:  # nothing to encode: the batches are not asked for
            close = getattr(batches, "close", None)
            if callable(close):
                close()
            return w.finish()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=w.n, initial=w.done, desc="writing label vectors", unit="label")
        for b in batches:
            w.append(b)
            if bar is not None:
                bar.update(int(b.shape[0]))
        if bar is not None:
            bar.close()
        return w.finish()

    def drop_index(self, out_dir: str | os.PathLike) -> None:
        """Remove the saved FAISS index of the bank in ``out_dir`` (and forget it here)."""
        d = Path(out_dir)
        meta = json.loads((d / BANK_JSON).read_text(encoding="utf-8"))
        meta["index_factory"] = None
        meta.pop("exact_labels", None)
        _atomic_write_nosync(d / BANK_JSON, lambda f: f.write(json.dumps(meta, ensure_ascii=False).encode()))
        (d / BANK_INDEX).unlink(missing_ok=True)
        shutil.rmtree(d / BANK_IVF_LOWP, ignore_errors=True)
        self._faiss_index = None
        self._exact = None
        self._index_path = None
        self._ivf = None
        self.index_factory = None

    def save_index(self, out_dir: str | os.PathLike) -> Path:
        """Write only the FAISS index (and the metadata naming it) into a saved bank folder, leaving the
        vectors alone: for big memory-mapped banks whose vectors are already on disk."""
        out = Path(out_dir)
        meta_f = out / BANK_JSON
        if not meta_f.is_file():
            raise DataError("not a label bank folder", where=str(out), fix="save the bank first: bank.save(folder)")
        faiss = _faiss()
        index = self.faiss_index()
        meta = json.loads(meta_f.read_text(encoding="utf-8"))
        if int(meta.get("count", -1)) != len(self):
            raise DataError(
                f"the folder holds {meta.get('count')} labels, this bank {len(self)}",
                where=str(out),
                fix="save the whole bank: bank.save(folder)",
            )
        meta["index_factory"] = self.index_factory
        meta["exact_labels"] = len(self) - int(index.ntotal)
        _atomic_write_nosync(out / BANK_INDEX, lambda f: faiss.write_index(index, faiss.PyCallbackIOWriter(f.write)))
        shutil.rmtree(out / BANK_IVF_LOWP, ignore_errors=True)  # lists of the index written before
        _atomic_write_nosync(meta_f, lambda f: f.write(json.dumps(meta, ensure_ascii=False).encode()))
        self._saved_in(out)
        return out

    def _saved_in(self, out: Path) -> None:
        """After the index was written into ``out``: a bank without a folder, or of that folder, is now backed by
        it (``ivf_lists`` can then save and map the lean lists beside it)."""
        if self._dir is None or self._dir.resolve() == out.resolve():
            self._dir, self._index_path, self._no_lean = out, out / BANK_INDEX, False

    @classmethod
    def load(cls, bank_dir: str | os.PathLike, mmap: bool = True) -> LabelBank:
        """Read a saved bank; with ``mmap`` the vectors stay on disk until touched."""
        import numpy as np
        import torch

        d = Path(bank_dir)
        meta_f, vec_f = d / BANK_JSON, d / BANK_VECTORS
        if not d.exists():
            recover_swap(d)
        if not meta_f.is_file() or not vec_f.is_file():
            if not d.exists():
                raise DataError("no such label bank folder", where=str(d),
                                fix="check the path, or build the bank: glinker labels build LABELS -m MODEL -o DIR")
            if (d / BUILD_STATE).is_file():
                raise DataError("the label bank's build was interrupted before it finished", where=str(d),
                                fix="re-run the same `glinker labels build` command: it resumes where it stopped")
            raise DataError(
                "not a label bank folder",
                where=str(d),
                fix=f"pass a folder written by `glinker labels build` or LabelBank.save (it holds {BANK_JSON} and "
                    f"{BANK_VECTORS})",
            )
        try:
            meta = json.loads(meta_f.read_text(encoding="utf-8"))
            arr = np.load(vec_f, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, EOFError, json.JSONDecodeError) as e:  # EOFError: an empty vectors file
            raise DataError(
                f"label bank is damaged: {e or type(e).__name__}", where=str(d),
                fix="build it again (glinker labels build LABELS -m MODEL -o FOLDER), or re-encode and save it"
            ) from e
        if arr.ndim != 2 or arr.shape[0] != len(meta.get("names", [])):
            raise DataError(
                f"label bank vectors {arr.shape} do not match {len(meta.get('names', []))} names",
                where=str(vec_f),
                fix="re-encode and save the bank",
            )
        with warnings.catch_warnings():  # read-only memmap: torch warns that the tensor is not writable
            warnings.simplefilter("ignore")
            vec = torch.from_numpy(arr)
            emb = None
            if (d / BANK_EMBEDDINGS).is_file():
                emb = torch.from_numpy(
                    np.load(d / BANK_EMBEDDINGS, mmap_mode="r" if mmap else None, allow_pickle=False)
                )
        bank = cls(
            meta["names"], meta.get("prompts", meta["names"]), vec, meta.get("model_fingerprint", ""), emb
        )
        bank._dir = d
        if (d / BANK_INDEX).is_file():
            bank._index_path = d / BANK_INDEX
            bank.index_factory = meta.get("index_factory")
        return bank

    def check_model(self, fingerprint: str, dim: int) -> None:
        """ModelError when the bank was encoded by a different model."""
        if self.dim != dim or (
            self.model_fingerprint and fingerprint and self.model_fingerprint != fingerprint
        ):
            raise ModelError(
                f"the label bank{f' {self._dir}' if self._dir else ''} was encoded with a different model "
                f"(fingerprint {self.model_fingerprint[:12]}, this model {fingerprint[:12]}; dim {self.dim} vs {dim})",
                where=str(self._dir) if self._dir else "LabelBank",
                fix="use the model that built it, or re-encode the labels with this one: glinker labels build "
                    "LABELS -m MODEL -o DIR (in Python: model.encode_labels(labels))",
            )


def read_labels_file(path: str | os.PathLike) -> list[str] | dict[str, str]:
    """Labels from a file, checked as read (a DataError names the file and the line or entry):

    - ``.json``: a list of names, or an object ``{name: description}`` (the description is what is encoded);
    - ``.jsonl``: one label a line, ``{"name": ..., "description": ...}`` (``label`` for ``name``; description
      optional) or a JSON string;
    - anything else (``.txt``): one name a line; blank lines and lines starting with ``#`` are skipped.

    Names and descriptions are stripped and must not be empty; a name given twice is an error in the JSON forms
    and kept once (with a warning) in a text file. A UTF-8 byte-order mark is read."""
    from glinker.io import not_utf8, wide_text_error

    p = Path(path)
    try:
        with p.open("rb") as f:
            wide = wide_text_error(p, f.read(64))
        if wide is not None:  # UTF-16 without a byte-order mark decodes as UTF-8: labels of NULs between letters
            raise wide
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise not_utf8(p) from None
    except OSError as e:
        raise DataError(f"cannot read labels: {e.strerror}", where=str(p), fix="check the path") from None
    suffix = p.suffix.lower()
    if suffix == ".json":
        out = _labels_json(text, p)
    elif suffix in (".jsonl", ".ndjson"):
        out = _labels_jsonl(text, p)
    else:
        out = _labels_text(text, p)
    if not out:
        raise DataError("no labels in the file", where=str(p), fix="one label a line")
    return out


def _labels_text(text: str, p: Path) -> list[str]:
    """One name a line (``#`` comments and blank lines skipped). A line that is a JSON list is refused (it would be
    one label: name the file .json); a line holding a comma or a tab is read as one label, with a warning naming it
    (``person, organization`` lists labels on one line); a repeated name is kept once, with a warning naming it."""
    if text.lstrip()[:1] in ("[", "{"):
        try:
            whole = json.loads(text)
        except (ValueError, RecursionError):
            whole = None
        if isinstance(whole, (list, dict)):  # a JSON file under another name: each of its lines would be a label
            raise DataError("the file is JSON, which a text labels file reads one line a label", where=str(p),
                            fix=f"name it {p.stem}.json (a JSON list of names, or an object {{name: description}})")
    names: list[str] = []
    first: dict[str, int] = {}
    repeated: list[str] = []
    n_rep = 0
    listed: list[str] = []
    for n, raw in enumerate(text.splitlines(), 1):
        x = raw.replace("\ufeff", "").strip()  # a BOM mid-file: files joined
        if not x or x.startswith("#"):
            continue
        if x.startswith("[") and x.endswith("]"):
            try:
                is_list = isinstance(json.loads(x), list)
            except (ValueError, RecursionError):
                is_list = False
            if is_list:
                raise DataError("the line is a JSON list, which a text labels file reads as one label",
                                where=f"{p}:{n}", fix="give one label a line (each name of the list on a line "
                                                      "of its own)")
        if x in first:
            n_rep += 1
            if len(repeated) < 3:
                repeated.append(f"{x!r} on lines {first[x]} and {n}")
            continue
        if ("," in x or "\t" in x) and len(listed) < 3:
            listed.append(f"{n} ({x[:40]!r})")
        first[x] = n
        names.append(x)
    if listed:
        log.warning("%s: line %s: a comma or a tab, read as one label: a text labels file gives one label a "
                    "line (`person` and `organization` on lines of their own)", p, ", ".join(listed))
    if repeated:
        log.warning("%s: %d repeated label line(s) kept once (%s)", p, n_rep, "; ".join(repeated))
    return names


def _labels_json(text: str, p: Path) -> list[str] | dict[str, str]:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for k, v in items:
            if k in d:
                raise DataError(f"label {k!r} is given twice", where=str(p), fix="give every label once")
            d[k] = v
        return d

    try:
        out = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg}", where=f"{p}:{e.lineno}",
                        fix="a JSON list of names or an object {name: description}") from None
    if isinstance(out, list):
        for i, x in enumerate(out):
            if not isinstance(x, str) or not x.strip():
                raise DataError(f"entry {i} is {x!r}, not a label name", where=str(p),
                                fix='a list of non-empty strings, e.g. ["person", "organization"]')
        names = [x.strip() for x in out]
        if len(set(names)) < len(names):
            dup = next(n for i, n in enumerate(names) if n in names[:i])
            raise DataError(f"label {dup!r} is given twice", where=str(p), fix="give every label once")
        return names
    if isinstance(out, dict):
        described: dict[str, str] = {}
        for k, v in out.items():
            if not k.strip() or not isinstance(v, str) or not v.strip():
                raise DataError(f"label {k!r}: {'the name is empty' if not k.strip() else f'its description is {v!r}'}",
                                where=str(p), fix='map every non-empty name to a non-empty description, e.g. '
                                                 '{"person": "a human being"}')
            if k.strip() in described:
                raise DataError(f"label {k.strip()!r} is given twice", where=str(p), fix="give every label once")
            described[k.strip()] = v.strip()
        return described
    raise DataError("must hold a list of names or an object {name: description}", where=str(p),
                    fix='e.g. ["person", "organization"]')


def _labels_jsonl(text: str, p: Path) -> list[str] | dict[str, str]:
    names: list[str] = []
    desc: dict[str, str] = {}
    lines: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{p}:{n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON: {e.msg}", where=where,
                            fix='one label a line: {"name": "person", "description": "a human being"}') from None
        if isinstance(rec, str):
            rec = {"name": rec}
        name = rec.get("name", rec.get("label")) if isinstance(rec, dict) else None
        d = rec.get("description") if isinstance(rec, dict) else None
        if not isinstance(name, str) or not name.strip() or (d is not None and (not isinstance(d, str) or not d.strip())):
            raise DataError("expected a non-empty \"name\" and an optional non-empty \"description\"", where=where,
                            fix='one label a line: {"name": "person", "description": "a human being"}')
        name = name.strip()
        if name in desc or name in names:
            raise DataError(f"label {name!r} is given twice", where=where, fix="give every label once")
        names.append(name)
        lines[name] = n
        if d is not None:
            desc[name] = d.strip()
    if desc and len(desc) < len(names):
        missing = next(x for x in names if x not in desc)
        raise DataError(f"label {missing!r} has no description while others have one", where=f"{p}:{lines[missing]}",
                        fix="give every label a description, or none")
    return desc or names


def _check_unique(names: Sequence[str]) -> None:
    """DataError naming the first repeated label name (one pass, whatever the number of labels)."""
    if len(set(names)) != len(names):
        seen: set[str] = set()
        dup = next(n for n in names if n in seen or seen.add(n))  # type: ignore[func-returns-value]
        raise DataError(
            f"duplicate label name {dup!r} in a label bank", where="LabelBank", fix="label names must be unique"
        )


def _file_signature(path: Path) -> dict:
    """Size and a digest of the first and last MiB of ``path``: tells a replaced index from the one saved lists
    were taken from, without reading gigabytes."""
    import hashlib

    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 1 << 20:
            f.seek(max(1 << 20, size - (1 << 20)))
            h.update(f.read())
    return {"bytes": size, "sha256_ends": h.hexdigest()}


def _atomic_write_nosync(path: Path, writer: Callable[[Any], Any]) -> None:
    """Write ``path`` through a temporary file in the same folder, then rename it into place (no fsync: a bank's
    build resumes from its state file)."""
    from glinker.io import atomic_write

    atomic_write(path, writer, fsync=False)


def _meta(names: Sequence[str], prompts: Sequence[str], dim: int, fingerprint: str, factory: str | None) -> dict:
    return {
        "format": "glinker.label_bank/1",
        "names": list(names),
        "prompts": list(prompts),
        "dim": dim,
        "count": len(names),
        "model_fingerprint": fingerprint,
        "index_factory": factory,
    }


BUILD_STATE = ".label_bank.building.json"


def check_bank_folder(out: Path) -> None:
    """A DataError when ``out`` is a folder with files of its own (not a label bank, finished or being built):
    building there would overwrite them. Checked before a model loads, and again when the build starts."""
    out = Path(out)
    if out.is_dir() and not (out / BANK_JSON).is_file() and not (out / BUILD_STATE).is_file() and any(
            not f.name.startswith(".") for f in out.iterdir()):
        raise DataError("the folder is not empty and holds no label bank: building there would overwrite its files",
                        where=str(out), fix="give a new or empty folder for the label bank")


def _labels_digest(names: Sequence[str], prompts: Sequence[str], dim: int, fingerprint: str) -> str:
    import hashlib

    h = hashlib.sha256(f"{dim}\0{fingerprint}\0{len(names)}\0".encode())
    for a, b in zip(names, prompts):
        h.update(a.encode("utf-8", "surrogatepass") + b"\0" + b.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


def staging_dir(out_dir: str | os.PathLike) -> Path:
    """Where a bank replacing the finished bank in ``out_dir`` is built, beside it: the old bank stays whole (and
    readable by processes that have it open) until the new one is complete and swapped in."""
    out = Path(out_dir)
    return out.parent / f".{out.name}.building"


def _build_lock(out: Path) -> Path:
    """The lock file of builds into the bank folder ``out``: beside it, since a replacing build renames the folder."""
    return out.parent / f".{out.name}.build.lock"


def recover_swap(out_dir: str | os.PathLike) -> None:
    """Finish or undo a bank replacement killed between its two renames (``out`` moved to ``.out.old-PID``, the
    new bank not yet moved in from :func:`staging_dir`): the finished new bank goes into place, else the old one
    goes back; old copies whose swap completed are removed. Swaps of live processes are left alone."""
    out = Path(out_dir)
    olds = []
    for f in out.parent.glob(f".{glob.escape(out.name)}.old-*"):
        pid = f.name.rpartition("-")[2]
        try:
            young = time.time() - f.lstat().st_mtime < 60
        except OSError:
            continue
        # a live swapper is between two renames for microseconds: an old copy of a live pid that is not young
        # belongs to a dead swapper whose pid was reused
        if pid.isdigit() and int(pid) != os.getpid() and young and pid_alive(int(pid)):
            return  # a replacement in progress
        olds.append(f)
    if not out.exists():
        new = staging_dir(out)
        if (new / BANK_JSON).is_file() and (new / BANK_VECTORS).is_file():
            os.rename(new, out)
            log.warning("label bank %s: a replacement was stopped while swapping in; the new bank, which was "
                        "complete, is now in place", out)
        elif olds:
            back = max(olds, key=lambda f: f.stat().st_mtime)
            os.rename(back, out)
            olds.remove(back)
            log.warning("label bank %s: a replacement was stopped while swapping in; the previous bank is back", out)
    for f in olds:
        shutil.rmtree(f, ignore_errors=True)
    lock = _build_lock(out)  # the build lock a killed build left: removed unless held
    if olds and lock.exists():
        from glinker.io import Busy, locked

        try:
            with locked(lock, wait=False):
                lock.unlink(missing_ok=True)
        except (Busy, OSError):
            pass


def rows_done(out_dir: str | os.PathLike, count: int | None = None) -> int:
    """Rows already written by an interrupted :meth:`LabelBank.write_batches` build of ``out_dir`` (0: none),
    in the folder itself or, when it replaces a finished bank there, in :func:`staging_dir`. With ``count``, only
    a build of that many labels counts (a build stopped before it started leaves an earlier build's state there,
    which it would have discarded)."""
    for d in (staging_dir(out_dir), Path(out_dir)):
        try:
            state = json.loads((d / BUILD_STATE).read_text(encoding="utf-8"))
            if count is not None and state.get("count") != count:
                return 0
            return int(state["done"])
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError):
            return 0
    return 0


class _BankWriter:
    """Rows of a label bank appended to a memory-mapped ``vectors.npy``; progress is recorded after every
    batch (after the rows are flushed), so an interrupted build resumes where it stopped."""

    def __init__(
        self, out: Path, names: Sequence[str], prompts: Sequence[str], dim: int, fingerprint: str, resume: bool,
        precision: str = "float32",
    ) -> None:
        import numpy as np

        self.n = len(names)
        if len(prompts) != self.n:
            raise DataError(
                f"{self.n} names but {len(prompts)} prompts", where="LabelBank", fix="give one prompt per name"
            )
        _check_unique(names)
        self.out, self.names, self.prompts, self.dim, self.fingerprint = out, names, prompts, dim, fingerprint
        self.precision = precision
        recover_swap(out)
        if out.exists() and not out.is_dir():
            raise DataError("is a file, not a folder", where=str(out), fix="give a new folder for the label bank")
        self.digest = _labels_digest(names, prompts, dim, fingerprint)
        self.complete = resume and self._finished_here()
        if self.complete:  # a finished bank of these labels and this model: nothing to encode, nothing written
            self.done = self.n
            log.info("label bank %s is already complete (%d labels)", out, self.n)
            self._say_unfinished_replacement()
            return
        if (out / BANK_JSON).is_file():
            # another finished bank is there: build beside it and swap at the end, so that it stays whole for the
            # processes reading it (its vectors are memory-mapped) and survives an interrupted build
            self.work = staging_dir(out)
        else:
            self.work = out
            check_bank_folder(out)
            shutil.rmtree(staging_dir(out), ignore_errors=True)  # a replacement that was never finished
        self.work.mkdir(parents=True, exist_ok=True)
        work = self.work
        state = {}
        if resume and (work / BUILD_STATE).is_file() and (work / BANK_VECTORS).is_file():
            try:
                state = json.loads((work / BUILD_STATE).read_text(encoding="utf-8"))
            except ValueError:
                state = {}
        self.done = int(state.get("done", 0)) if state.get("digest") == self.digest else 0
        if not self.done and state.get("done"):
            log.warning("label bank %s: the earlier, interrupted build's %s labels (of %s) are discarded: it encoded "
                        "other labels (or used another model), so this build starts over", out,
                        f"{int(state['done']):,}", f"{int(state['count']):,}" if state.get("count") else "?")
        was = state.get("precision")
        if self.done and was is None and precision != "float32":
            # a state of an earlier glinker: float32 unless that build was given a dtype, which it did not record
            log.warning("label bank %s: the interrupted build (%d of %d labels) did not record its precision (an "
                        "earlier glinker): starting over in %s, so that the bank holds one precision", out,
                        self.done, self.n, precision)
            self.done = 0
        elif self.done and was is not None and was != precision:
            log.warning("label bank %s: the interrupted build encoded %d of %d labels in %s, this one runs in %s: "
                        "starting over, so that the bank holds one precision (resume with --dtype %s to keep them)",
                        out, self.done, self.n, was, precision, was)
            self.done = 0
        if self.done:
            self.arr = np.load(work / BANK_VECTORS, mmap_mode="r+")
            if self.arr.shape != (self.n, dim):
                self.done = 0
        if not self.done:
            for name in (BANK_JSON, BANK_INDEX, BANK_EMBEDDINGS, BANK_VECTORS):
                # unlinked, not overwritten: a process that has the old file mapped keeps reading the old rows
                (work / name).unlink(missing_ok=True)
            self.arr = np.lib.format.open_memmap(work / BANK_VECTORS, mode="w+", dtype=np.float32, shape=(self.n, dim))
            self._record()
        else:  # said at the default level, as a KB build's resume is
            log.warning("resuming at %s of %s labels (an interrupted build in %s)", f"{self.done:,}", f"{self.n:,}",
                        work)

    def _say_unfinished_replacement(self) -> None:
        """Say the staging folder of an interrupted build of *other* labels into this bank's folder: kept (its
        build resumes when run again), but hidden beside the bank, up to a whole bank's size, it stayed unnoticed."""
        staged = staging_dir(self.out)
        if not staged.is_dir():
            return
        log.warning("label bank %s already holds these labels; beside it is an unfinished build of other labels "
                    "into it (%s labels written, in %s): run that build again to finish it, or delete the folder",
                    self.out, f"{rows_done(self.out):,}", staged)

    def _finished_here(self) -> bool:
        """Whether the folder already holds a finished bank of exactly these labels, prompts, dim and model."""
        try:
            meta = json.loads((self.out / BANK_JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return ((self.out / BANK_VECTORS).is_file() and meta.get("names") == list(self.names)
                and meta.get("prompts") == list(self.prompts) and meta.get("dim") == self.dim
                and meta.get("model_fingerprint") == self.fingerprint
                and meta.get("precision", self.precision) == self.precision)  # (banks before it: not recorded)

    def _record(self) -> None:
        state = {"digest": self.digest, "done": self.done, "count": self.n, "precision": self.precision}
        _atomic_write_nosync(self.work / BUILD_STATE, lambda f: f.write(json.dumps(state).encode()))

    def append(self, b: Any) -> None:
        import numpy as np

        b = b.detach().cpu().float().numpy() if hasattr(b, "detach") else np.asarray(b, np.float32)
        if b.ndim != 2 or b.shape[1] != self.dim or self.done + b.shape[0] > self.n:
            raise DataError(
                f"label vector batch of shape {b.shape} does not fit rows {self.done}.. of ({self.n}, {self.dim})",
                where="LabelBank.write_batches",
                fix="yield (rows, dim) float arrays covering exactly one row per name",
            )
        self.arr[self.done : self.done + b.shape[0]] = b
        self.arr.flush()
        self.done += b.shape[0]
        self._record()

    def finish(self) -> LabelBank:
        if self.complete:
            return LabelBank.load(self.out, mmap=True)
        if self.done != self.n:
            raise DataError(
                f"got {self.done} label vectors for {self.n} names",
                where="LabelBank.write_batches",
                fix="yield one vector per name",
            )
        del self.arr
        meta = {**_meta(self.names, self.prompts, self.dim, self.fingerprint, None), "precision": self.precision}
        _atomic_write_nosync(self.work / BANK_JSON, lambda f: f.write(json.dumps(meta, ensure_ascii=False).encode()))
        (self.work / BUILD_STATE).unlink(missing_ok=True)
        if self.work != self.out:  # swap the new bank in; the old one goes (open memory maps keep their pages)
            old = self.out.parent / f".{self.out.name}.old-{os.getpid()}"
            os.rename(self.out, old)
            os.rename(self.work, self.out)
            shutil.rmtree(old, ignore_errors=True)
        return LabelBank.load(self.out, mmap=True)
