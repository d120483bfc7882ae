"""Shared fixtures: device and dtype (kornia style), fixed-seed generators, temp run roots."""
from __future__ import annotations

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

# With pytest-xdist each worker gets one thread, so 2 workers share 2 cores fairly.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture
def one_thread():
    """One torch thread for the test (restored after): small-op tests and CPU-time comparisons."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_addoption(parser):
    parser.addoption("--device", action="store", default="cpu", help="cpu or cuda")


@pytest.fixture
def device(request) -> torch.device:
    d = request.config.getoption("--device")
    if d.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    return torch.device(d)


@pytest.fixture
def gen() -> torch.Generator:
    """A CPU generator with a fixed seed."""
    g = torch.Generator()
    g.manual_seed(1234)
    return g


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="CUDA not available")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)
