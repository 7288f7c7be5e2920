"""Knowledge bases: adapters in, a persistent entity store, an alias index and a FAISS index out.

``from glinker.kb import KB`` stays light: faiss and the model load only when a vector index is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from glinker.kb.build import build_kb
    from glinker.kb.kb import KB

__all__ = ["KB", "build_kb"]


def __getattr__(name: str) -> Any:
    if name == "KB":
        from glinker.kb.kb import KB

        return KB
    if name == "build_kb":
        from glinker.kb.build import build_kb

        return build_kb
    raise AttributeError(name)
