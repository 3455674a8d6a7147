"""Fixtures shared by the end-to-end modules: the tiny model, per module one inference service, and the
orphan watch of the `ghpo run` tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def model_dir():
    """The tiny model's folder (built once into the model cache if absent)."""
    from ghpo.trainer.tiny import ensure_tiny_model

    return ensure_tiny_model()


@pytest.fixture(scope="module")
def inference_url(model_dir):
    """One real inference service (vLLM CPU engine) for the module's tests; one torch thread here."""
    import torch

    from ghpo.local.batches import inference_service
    from ghpo.services.inference.vllm_engine import preload
    from tests.e2e.trainer_support import TOKEN

    preload()  # before any engine is on the stack: no AsyncLLM.__del__ failing at exit (see preload)
    torch.set_num_threads(1)
    with inference_service(model_dir, token=TOKEN) as url:
        yield url


@pytest.fixture
def orphan_watch():
    """The processes below this one before the test; during it, orphans of what the test starts are
    adopted by this process, so `left_behind(..., before=orphan_watch)` finds them even renamed."""
    from tests.support.processes import adopting_orphans

    with adopting_orphans() as before:
        yield before
