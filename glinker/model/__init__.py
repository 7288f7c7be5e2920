"""GLiNER bi-encoder in torch + transformers, checkpoint-compatible with gliner 0.2.29.

Heavy modules (torch, transformers) load on first attribute access, so ``import glinker.model`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BiEncoder", "Entities", "LabelBank"]


def __getattr__(name: str) -> Any:
    if name in ("BiEncoder", "Entities"):
        from glinker.model import biencoder

        return getattr(biencoder, name)
    if name == "LabelBank":
        from glinker.model.labels import LabelBank

        return LabelBank
    raise AttributeError(f"module 'glinker.model' has no attribute {name!r}")
