"""LabelBank: the projected label vectors P = prompt_rep_layer(E) of a label set, computed once and saved."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from glinker.errors import ConfigError, DataError, DependencyError, ModelError

log = logging.getLogger(__name__)

BANK_JSON = "label_bank.json"
BANK_VECTORS = "vectors.npy"
BANK_EMBEDDINGS = "embeddings.npy"
BANK_INDEX = "labels.faiss"

# Banks at least this large are scored through a FAISS index (top-k labels per span) unless told otherwise.
# Measured (docs/bench/labels.md): at 100k labels on CPU, exhaustive chunked scoring still beats HNSW
# retrieval with efSearch 512 (11.5 s vs 23 s for 16 texts), so the switch is well above that.
DEFAULT_INDEX_THRESHOLD = 250_000
# factory used when an index is built implicitly: exact up to 10k labels, HNSW above
DEFAULT_LARGE_FACTORY = "HNSW32"
_FLAT_UP_TO = 10_000
# HNSW search breadth: 128 found the same entities on only 70% of spans at 100k labels, 512 on 100%
DEFAULT_EF_SEARCH = 512


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as e:
        raise DependencyError(
            "label retrieval needs faiss",
            where="LabelBank index",
            fix="pip install faiss-cpu (or score exhaustively: label_top_k=0)",
        ) from e
    return faiss


def build_faiss_index(
    vectors: Any,
    factory: str = "Flat",
    batch_size: int = 65_536,
    progress: bool = False,
    train_size: int = 100_000,
    seed: int = 0,
) -> Any:
    """An inner-product FAISS index over ``vectors`` (N, D), added in batches.

    ``factory`` is a faiss index-factory string: ``"Flat"`` (exact), ``"HNSW32"``, ``"IVF1024,Flat"``, ...
    Indexes that need training are trained on a random sample of at most ``train_size`` rows.
    """
    import numpy as np
    import torch

    faiss = _faiss()
    n = int(vectors.shape[0])
    d = int(vectors.shape[1])

    def rows(a: int, b: int) -> Any:
        v = vectors[a:b]
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().float().numpy()
        return np.ascontiguousarray(v, dtype=np.float32)

    try:
        index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise ConfigError(
            f"faiss cannot build index {factory!r}: {str(e).strip().splitlines()[-1]}",
            where="label index factory",
            fix='use a faiss factory string such as "Flat", "HNSW32" or "IVF1024,Flat"',
        ) from None
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        take = np.sort(rng.choice(n, size=min(n, train_size), replace=False))
        sample = vectors[torch.as_tensor(take)] if isinstance(vectors, torch.Tensor) else vectors[take]
        if isinstance(sample, torch.Tensor):
            sample = sample.detach().cpu().float().numpy()
        sample = np.ascontiguousarray(sample, dtype=np.float32)
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

        bar = tqdm(total=n, desc="indexing labels", unit="label")
    for a in range(0, n, batch_size):
        chunk = rows(a, min(n, a + batch_size))
        index.add(chunk)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    log.info("built faiss index %s over %d labels (dim %d)", factory, n, d)
    return index


def search_index(
    index: Any, queries: Any, k: int, ef_search: int = DEFAULT_EF_SEARCH, nprobe: int = 32
) -> Any:
    """(n, k) int64 label rows of the ``k`` largest inner products per query row; -1 where fewer exist."""
    import numpy as np

    faiss = _faiss()
    q = np.ascontiguousarray(queries, dtype=np.float32)
    k = max(1, min(int(k), int(index.ntotal)))
    inner = faiss.downcast_index(index)
    if hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = max(int(ef_search), k)
    try:
        ivf = faiss.extract_index_ivf(index)
    except (RuntimeError, TypeError):
        ivf = None
    if ivf is not None:
        ivf.nprobe = min(int(nprobe), int(ivf.nlist))
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
        if len(set(names)) != len(names):
            dup = next(n for n in names if list(names).count(n) > 1)
            raise DataError(
                f"duplicate label name {dup!r} in a label bank",
                where="LabelBank",
                fix="label names must be unique",
            )
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
        self.index_threshold = DEFAULT_INDEX_THRESHOLD
        self.index_factory: str | None = None
        self.ef_search = DEFAULT_EF_SEARCH
        self.nprobe = 32
        self._faiss_index: Any = None
        self._index_path: Path | None = None

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
        """The factory used when an index is built implicitly: exact ``Flat`` up to 10k labels, else HNSW."""
        return "Flat" if len(self) <= _FLAT_UP_TO else DEFAULT_LARGE_FACTORY

    def build_index(
        self, factory: str | None = None, batch_size: int = 65_536, progress: bool = False
    ) -> LabelBank:
        """Build the inner-product FAISS index over the P vectors (``factory``: a faiss factory string)."""
        if self.vectors.dim() != 2 or len(self) == 0:
            raise DataError("cannot index an empty label bank", where="LabelBank", fix="add labels first")
        f = factory or self.default_factory()
        self._faiss_index = build_faiss_index(self.vectors, f, batch_size=batch_size, progress=progress)
        self.index_factory = f
        self._index_path = None
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
                if int(idx.ntotal) != len(self) or int(idx.d) != self.dim:
                    raise DataError(
                        f"label index holds {idx.ntotal} vectors of dim {idx.d}, the bank "
                        f"{len(self)} of dim {self.dim}",
                        where=str(self._index_path),
                        fix="delete it and rebuild: bank.build_index(); bank.save(folder)",
                    )
                self._faiss_index = idx
            else:
                self.build_index()
        return self._faiss_index

    def search(self, queries: Any, k: int) -> Any:
        """(n, k) int64 rows of the ``k`` labels with the largest inner product per query (-1: none)."""
        return search_index(self.faiss_index(), queries, k, self.ef_search, self.nprobe)

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write ``label_bank.json`` + ``vectors.npy`` atomically into ``out_dir``."""
        import numpy as np

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": "glinker.label_bank/1",
            "names": self.names,
            "prompts": self.prompts,
            "dim": self.dim,
            "count": len(self),
            "model_fingerprint": self.model_fingerprint,
            "index_factory": self.index_factory if self.has_index else None,
        }
        arr = self.vectors.detach().cpu().float().numpy()
        files = [(BANK_VECTORS, lambda f: np.save(f, arr))]
        index = None
        if self.has_index:
            faiss = _faiss()
            index = self.faiss_index()
            files.append((BANK_INDEX, lambda f: faiss.write_index(index, faiss.PyCallbackIOWriter(f.write))))
        if self.embeddings is not None:
            emb = self.embeddings.detach().cpu().float().numpy()
            files.append((BANK_EMBEDDINGS, lambda f: np.save(f, emb)))
        for name, writer in (
            *files,
            (BANK_JSON, lambda f: f.write(json.dumps(meta, ensure_ascii=False).encode())),
        ):
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out)
            try:
                with os.fdopen(fd, "wb") as f:
                    writer(f)
                os.replace(tmp, out / name)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        if index is None:
            (out / BANK_INDEX).unlink(missing_ok=True)  # a stale index must not outlive its vectors
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
    ) -> LabelBank:
        """Write a bank whose vectors arrive in row-order batches straight to disk; returns it memory-mapped.

        Peak memory is one batch, whatever the number of labels (a million labels of D=512 is 2 GB on disk).
        """
        import numpy as np

        n = len(names)
        if len(prompts) != n:
            raise DataError(
                f"{n} names but {len(prompts)} prompts", where="LabelBank", fix="give one prompt per name"
            )
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / BANK_JSON).unlink(missing_ok=True)  # the folder is not a bank until the JSON is written
        (out / BANK_INDEX).unlink(missing_ok=True)
        arr = np.lib.format.open_memmap(out / BANK_VECTORS, mode="w+", dtype=np.float32, shape=(n, dim))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n, desc="writing label vectors", unit="label")
        pos = 0
        for b in batches:
            b = b.detach().cpu().float().numpy() if hasattr(b, "detach") else np.asarray(b, np.float32)
            if b.ndim != 2 or b.shape[1] != dim or pos + b.shape[0] > n:
                raise DataError(
                    f"label vector batch of shape {b.shape} does not fit rows {pos}.. of ({n}, {dim})",
                    where="LabelBank.write_batches",
                    fix="yield (rows, dim) float arrays covering exactly one row per name",
                )
            arr[pos : pos + b.shape[0]] = b
            pos += b.shape[0]
            if bar is not None:
                bar.update(b.shape[0])
        if bar is not None:
            bar.close()
        if pos != n:
            raise DataError(
                f"got {pos} label vectors for {n} names",
                where="LabelBank.write_batches",
                fix="yield one vector per name",
            )
        arr.flush()
        del arr
        (out / BANK_EMBEDDINGS).unlink(missing_ok=True)
        meta = {
            "format": "glinker.label_bank/1",
            "names": list(names),
            "prompts": list(prompts),
            "dim": dim,
            "count": n,
            "model_fingerprint": model_fingerprint,
            "index_factory": None,
        }
        fd, tmp = tempfile.mkstemp(prefix=f".{BANK_JSON}.", dir=out)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(json.dumps(meta, ensure_ascii=False).encode())
            os.replace(tmp, out / BANK_JSON)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return cls.load(out, mmap=True)

    @classmethod
    def load(cls, bank_dir: str | os.PathLike, mmap: bool = True) -> LabelBank:
        """Read a saved bank; with ``mmap`` the vectors stay on disk until touched."""
        import numpy as np
        import torch

        d = Path(bank_dir)
        meta_f, vec_f = d / BANK_JSON, d / BANK_VECTORS
        if not meta_f.is_file() or not vec_f.is_file():
            raise DataError(
                "not a label bank folder",
                where=str(d),
                fix=f"pass a folder written by LabelBank.save (it holds {BANK_JSON} and {BANK_VECTORS})",
            )
        try:
            meta = json.loads(meta_f.read_text(encoding="utf-8"))
            arr = np.load(vec_f, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, json.JSONDecodeError) as e:
            raise DataError(
                f"label bank is damaged: {e}", where=str(d), fix="re-encode and save the bank"
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
                "the label bank was encoded with a different model",
                where="LabelBank",
                fix="re-encode the labels with this model: model.encode_labels(labels)",
            )
