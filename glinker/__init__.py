"""glinker: link text to knowledge bases with the GLiNER bi-encoder.

Importing this package is cheap: torch, transformers and faiss load only when a model, an index or a
pipeline stage that needs them is used.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0.dev0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "__version__",
    "load_pipeline",
    "Pipeline",
    "Entity",
    "Document",
    "Mention",
    "Candidate",
    "Link",
    "LinkedDocument",
    "GlinkerError",
]

if TYPE_CHECKING:  # pragma: no cover
    from glinker.errors import GlinkerError
    from glinker.pipeline import Pipeline
    from glinker.types import Candidate, Document, Entity, Link, LinkedDocument, Mention

_LAZY = {
    "Pipeline": "glinker.pipeline",
    "Entity": "glinker.types",
    "Document": "glinker.types",
    "Mention": "glinker.types",
    "Candidate": "glinker.types",
    "Link": "glinker.types",
    "LinkedDocument": "glinker.types",
    "GlinkerError": "glinker.errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'glinker' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names with the lazily imported ones (``dir(glinker)``, completion in a REPL)."""
    return sorted(set(globals()) | set(_LAZY))


def load_pipeline(path: str | os.PathLike[str], *, model: str | None = None, kb: str | None = None,
                  batch_size: int | None = None, device: str | None = None, dtype: str | None = None,
                  check_resources: bool = True) -> "Pipeline":
    """Load and validate a YAML pipeline (:meth:`glinker.pipeline.Pipeline.from_yaml`); stages load their models
    lazily on first use. Overrides: ``model``, ``kb``, ``batch_size`` (a whole number from 1 to 100,000),
    ``device`` (cpu, cuda, cuda:N, mps; another name is refused now, one this machine lacks at first use),
    ``dtype`` (float32, bfloat16, float16 or auto: bfloat16 where the CPU or GPU runs it fast), and
    ``check_resources`` (default True: the model name, KB folders, label files and label banks the pipeline names
    are checked now, as ``glinker pipeline validate`` checks them; False leaves them to the first batch).
    ``link()`` of a pipeline that ends in ``select`` returns ``glinker.LinkedDocument``s."""
    from glinker.pipeline import Pipeline

    return Pipeline.from_yaml(path, model=model, kb=kb, batch_size=batch_size, device=device, dtype=dtype,
                              check_resources=check_resources)
