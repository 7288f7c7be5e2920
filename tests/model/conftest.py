import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: one thread avoids OpenMP barrier stalls on a shared 2-core machine (8 ms per tiny matmul)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random span checkpoint (ModernBERT text encoder), built once per test module."""
    from glinker.model.testing import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "m", "modernbert", seed=0)


@pytest.fixture(scope="module")
def model(tiny):
    from glinker.model import BiEncoder

    return BiEncoder.from_pretrained(tiny)
