"""The KB manifest: which model and template built the vectors, the index spec, counts, source and dates."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from glinker.errors import KBError

FORMAT_VERSION = 1


def now() -> str:
    """UTC time stamp, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Manifest(BaseModel):
    """Everything needed to use a KB directory correctly, and to tell where it came from."""

    # (protected_namespaces: pydantic < 2.10 warns of every field named model_*, e.g. model_fingerprint)
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    format_version: int = FORMAT_VERSION
    model: str | None = Field(default=None, description="How the model was named at build time (path/name).")
    model_fingerprint: str | None = Field(default=None, description="None: an alias-only KB without vectors.")
    dim: int | None = None
    template: str = "{label}: {description}"
    factory: str | None = None
    nprobe: int = 1
    metric: str = Field(default="inner_product", description="inner_product (exact Flat, or a KB built before the "
                        "transform) or mips_l2 (approximate indexes: MIPS->L2 transform with bound mips_norm).")
    mips_norm: float | None = Field(default=None, description="Norm bound M of the MIPS->L2 transform.")
    counts: dict[str, int] = Field(default_factory=dict)
    source: dict[str, Any] = Field(default_factory=dict)
    created: str = Field(default_factory=now)
    updated: str = Field(default_factory=now)
    glinker_version: str = ""
    history: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def has_vectors(self) -> bool:
        return self.model_fingerprint is not None

    @property
    def vectors_dtype(self) -> str | None:
        """The precision the KB's vectors were embedded in (``--dtype``), as its build recorded it; None for a KB
        without vectors or built before builds recorded it (2026-12-05: float32 unless a dtype was set)."""
        if not self.has_vectors:
            return None
        for h in self.history:
            if h.get("op") == "build" and isinstance(h.get("dtype"), str):
                return h["dtype"]
        return None

    def save(self, path: str | Path) -> None:
        """Write atomically (temp file, fsync, rename)."""
        from glinker.io import atomic_write

        atomic_write(path, self.model_dump_json(indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Read and validate a manifest; a missing or invalid one is a KBError naming the field."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise KBError(f"no manifest.json in {path.parent}", where=str(path),
                          fix="this is not a KB directory; build one with `glinker kb build`") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            line = f":{e.lineno}" if isinstance(e, json.JSONDecodeError) else ""
            raise KBError(f"the manifest is damaged: not valid JSON ({e})", where=f"{path}{line}",
                          fix="rebuild the KB with `glinker kb build ... --out DIR` (or restore its folder from a "
                              "copy)") from None
        # a newer glinker's manifest may hold fields this one does not know: its version is said first
        version = data.get("format_version") if isinstance(data, dict) else None
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise KBError(f"KB format {version} is newer than this glinker supports ({FORMAT_VERSION})",
                          where=str(path), fix="upgrade glinker (pip install -U glinker) to read this KB")
        if not isinstance(data, dict):
            raise KBError(f"the manifest is damaged: a JSON {type(data).__name__}, not an object", where=str(path),
                          fix="rebuild the KB with `glinker kb build ... --out DIR` (or restore its folder from a "
                              "copy)")
        try:
            m = cls(**data)
        except ValidationError as e:
            err = e.errors()[0]
            raise KBError(f"invalid manifest field {'.'.join(map(str, err['loc']))}: {err['msg']}", where=str(path),
                          fix="rebuild the KB with this glinker version") from None
        return m


def glinker_version() -> str:
    """The installed glinker version (empty when unknown)."""
    try:
        from importlib.metadata import version

        return version("glinker")
    except Exception:  # not installed as a distribution (e.g. running from a checkout)
        return ""
