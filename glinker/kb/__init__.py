"""Knowledge bases: adapters in, a persistent entity store, an alias index and a FAISS index out.

``from glinker.kb import KB`` stays light: faiss and the model load only when a vector index is used.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Any

if "pytest" in sys.modules:  # under pytest: the adapter conformance suite's failures show their values and diffs
    with contextlib.suppress(Exception):  # a pytest without the hook: the suite's own messages still say what failed
        sys.modules["pytest"].register_assert_rewrite("glinker.kb.testing")

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
