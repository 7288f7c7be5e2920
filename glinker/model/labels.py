"""LabelBank: the projected label vectors P = prompt_rep_layer(E) of a label set, computed once and saved."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from glinker.errors import DataError, ModelError

BANK_JSON = "label_bank.json"
BANK_VECTORS = "vectors.npy"
BANK_EMBEDDINGS = "embeddings.npy"


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
        }
        arr = self.vectors.detach().cpu().float().numpy()
        files = [(BANK_VECTORS, lambda f: np.save(f, arr))]
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
        return out

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
        return cls(
            meta["names"], meta.get("prompts", meta["names"]), vec, meta.get("model_fingerprint", ""), emb
        )

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
