"""Shared pytest wiring: real uvicorn servers, a real Redis server and the benchmark files as fixtures,
GPU skip."""

import pytest

pytest_plugins = ["tests.support.server", "tests.support.redis", "tests.support.benchmarks"]


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none on this machine")
    for item in items:
        # The marker, not the keyword: a test parametrized with an id like "gpu-overlay" still runs.
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)
