import os

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _torch_threads(count: int):
    """Run a test with ``count`` torch threads, restoring the setting afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(count)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one torch thread on a shared CPU."""
    yield from _torch_threads(1)


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:  # pragma: no cover
        has_gpu = False
    if not has_gpu:
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def two_threads():
    """Real-weights inference on the 2-core CI machine: two torch threads."""
    yield from _torch_threads(2)
