"""What the KB needs from a model: a fingerprint, a dimension and label-side entity vectors."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from glinker.errors import DependencyError, KBError

log = logging.getLogger(__name__)


@runtime_checkable
class EntityEncoder(Protocol):
    """The label side of the bi-encoder: ``encode_entities(texts)`` -> (N, dim) float32 projected vectors."""

    fingerprint: str
    dim: int

    def encode_entities(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Vectors of entity texts, one row per text, in input order."""
        ...


def load_encoder(model: str, device: str | None = None, dtype: str | None = None) -> EntityEncoder:
    """Load ``glinker.model.BiEncoder`` from a shipped name, a local directory or a hub id (on ``device``, in
    ``dtype``: float32, bfloat16, float16 or auto; None: the checkpoint's)."""
    try:
        from glinker.model import BiEncoder  # type: ignore[attr-defined]
    except ImportError as e:
        raise DependencyError(f"the glinker model package is not available: {e}",
                              fix="install glinker with its model dependencies, or build with --model none "
                                  "(alias-only KB)") from e
    enc = BiEncoder.from_pretrained(model, device=device, dtype=dtype)
    if not isinstance(enc, EntityEncoder):
        raise KBError(f"model {model!r} does not provide encode_entities/fingerprint/dim", where="model",
                      fix="use a glinker bi-encoder checkpoint")
    return enc  # type: ignore[no-any-return]


def default_model() -> str | None:
    """The shipped default model name, once one is actually shipped in this installation."""
    try:
        from glinker.model.shipped import DEFAULT_MODEL, is_shipped
    except ImportError:
        return None
    return DEFAULT_MODEL if is_shipped(DEFAULT_MODEL) else None


def encode_sorted(encoder: EntityEncoder, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """Encode in length-sorted order (less padding per batch), returned in input order."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    vecs = np.asarray(encoder.encode_entities([texts[i] for i in order], batch_size=batch_size), dtype=np.float32)
    if vecs.shape != (len(texts), encoder.dim):
        raise KBError(f"encoder returned shape {vecs.shape}, expected {(len(texts), encoder.dim)}", where="model",
                      fix="the encoder must return one row of size dim per text")
    out = np.empty_like(vecs)
    out[order] = vecs
    return out
