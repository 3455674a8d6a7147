"""`POST /v1/weights/nccl` over real HTTP: validation, the time limit and what a failed transfer leaves.

The engine is a stand-in (`StandInEngine`): NCCL needs two CUDA devices, and what is under test here is
the route's orchestration (checks, drain, time limit, version, restore, metrics), not vLLM's transfer.
It answers like a CUDA engine with one worker and receives by blocking, failing or succeeding as told.
The real transfer is in tests/gpu/test_inference_nccl_gpu.py; the CPU engine's refusal is in
tests/service/test_inference_service.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import save_file

from ghpo.services.inference.api import router
from ghpo.services.inference.nccl_api import router as nccl_router
from ghpo.services.inference.runtime import Runtime
from ghpo.services.inference.settings import Settings
from ghpo.services.inference.specs import checkpoint_spec
from ghpo.services.inference.weights import WeightUpdates
from ghpo.shared.app import create_service_app

TOKEN = "nccl-route-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TENSORS = [
    {"name": "embed.weight", "dtype": "float32", "shape": [8, 4]},
    {"name": "norm.weight", "dtype": "bfloat16", "shape": [4]},
]


class StandInEngine:
    """A CUDA engine with one worker whose NCCL receive hangs, fails or succeeds (`mode`)."""

    device = "cuda"
    nccl_workers = 1

    def __init__(self) -> None:
        self.mode = "ok"
        self.received: list[tuple[dict, dict]] = []
        self.loaded: list[Path] = []
        self.failed: str | None = None

    async def receive_nccl(self, init_info: dict, update_info: dict) -> None:
        self.received.append((init_info, update_info))
        if self.mode == "hang":  # the trainer never shows up
            await asyncio.Event().wait()
        if self.mode == "fail":
            raise RuntimeError("NCCL error: remote process exited or there was a network error")

    async def load_weights(self, folder: Path) -> None:
        self.loaded.append(folder)

    def healthy(self) -> bool:
        return self.failed is None

    def fail(self, reason: str) -> None:
        self.failed = reason

    async def generate(self, prompts, spec):  # not called here
        raise NotImplementedError

    async def close(self) -> None:
        pass


@pytest.fixture
def served(tmp_path, serve_app):
    model = tmp_path / "model"
    model.mkdir()
    save_file(
        {"embed.weight": torch.zeros(8, 4), "norm.weight": torch.ones(4, dtype=torch.bfloat16)},
        model / "model.safetensors",
    )
    settings = Settings(model=str(model), token=TOKEN, device="cuda", nccl_timeout_s=30.0)
    engine = StandInEngine()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        updates = WeightUpdates(
            expected=checkpoint_spec(model),
            staging_root=tmp_path / "staging",
            max_update_bytes=1 << 20,
            max_chunk_bytes=1 << 16,
        )
        app.state.runtime = Runtime(
            model_name="stand-in", vocab_size=8, tokenizer=None, updates=updates, engine=engine
        )
        yield

    app = create_service_app(
        name="inference", settings=settings, routers=[router, nccl_router], lifespan=lifespan
    )
    return serve_app(app), engine, model


def _request(version: int, **changes) -> dict:
    body = {
        "version": version,
        "master_address": "127.0.0.1",
        "master_port": 29555,
        "world_size": 2,
        "tensors": TENSORS,
        "bucket_bytes": 1 << 20,
    }
    return {**body, **changes}


def _post(url: str, body: dict) -> httpx.Response:
    return httpx.post(f"{url}/v1/weights/nccl", json=body, headers=AUTH, timeout=60)


def _failures(url: str, reason: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    found = re.search(rf'ghpo_inference_weight_update_failures_total\{{reason="{reason}"\}} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def _version(url: str) -> int:
    response = httpx.get(f"{url}/v1/weights", headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()["policy_version"]


def test_a_received_update_bumps_the_version_and_tells_the_engine_the_group(served):
    url, engine, _ = served
    assert httpx.get(f"{url}/v1/weights", headers=AUTH).json()["nccl_workers"] == 1
    response = _post(url, _request(1))
    assert response.status_code == 200, response.text
    assert response.json()["policy_version"] == 1 and _version(url) == 1
    init_info, update_info = engine.received[0]
    assert init_info["rank_offset"] == 1 and init_info["world_size"] == 2
    assert init_info["packed"] is True and init_info["packed_buffer_size_bytes"] == 1 << 20
    assert update_info["names"] == ["embed.weight", "norm.weight"]
    assert update_info["dtype_names"] == ["float32", "bfloat16"] and update_info["shapes"] == [[8, 4], [4]]


def test_bad_nccl_requests_are_refused_before_the_engine_sees_them(served):
    url, engine, _ = served
    err = _post(url, _request(1, world_size=3))
    assert err.status_code == 422 and err.json()["error"]["field"] == "world_size"
    renamed = [dict(TENSORS[0], name="lm_head.weight"), TENSORS[1]]
    err = _post(url, _request(1, tensors=renamed))
    assert err.status_code == 422 and err.json()["error"]["field"] == "tensors.0.name"
    err = _post(url, _request(1, tensors=[dict(TENSORS[0], shape=[4, 8]), TENSORS[1]]))
    assert err.status_code == 422 and err.json()["error"]["field"] == "tensors.0.shape"
    err = _post(url, _request(0))
    assert err.status_code == 422 and err.json()["error"]["field"] == "version"
    err = _post(url, _request(1, master_port=70000))
    assert err.status_code == 422 and err.json()["error"]["field"] == "master_port"
    assert engine.received == []
    assert _post(url, _request(2)).status_code == 200
    err = _post(url, _request(2))
    assert err.status_code == 409 and "not newer" in err.json()["error"]["message"]
    assert len(engine.received) == 1 and _version(url) == 2


def test_a_transfer_past_its_time_limit_keeps_the_version_and_takes_the_engine_out(served):
    url, engine, _ = served
    before = _failures(url, "nccl_timeout")
    engine.mode = "hang"
    response = _post(url, _request(1, timeout_s=0.5))
    assert response.status_code == 503, response.text
    assert "timed out after 0.5 s" in response.json()["error"]["message"]
    assert "served version stays 0" in response.json()["error"]["message"]
    assert _failures(url, "nccl_timeout") == before + 1
    assert engine.failed is not None  # stuck in NCCL: unusable until restarted
    gone = httpx.get(f"{url}/v1/weights", headers=AUTH)
    assert gone.status_code == 503 and "restarted" in gone.json()["error"]["message"]
    assert "ghpo_inference_weights_version 0.0" in httpx.get(f"{url}/metrics").text


def test_a_failed_transfer_restores_the_served_weights_from_disk_or_takes_the_engine_out(served):
    url, engine, model = served
    before = _failures(url, "nccl")
    engine.mode = "fail"
    response = _post(url, _request(1))
    assert response.status_code == 503 and "remote process exited" in response.json()["error"]["message"]
    assert _failures(url, "nccl") == before + 1
    assert engine.loaded == [model] and engine.failed is None  # version 0 reloaded from the model folder
    assert _version(url) == 0
    engine.mode = "ok"
    assert _post(url, _request(1)).status_code == 200
    engine.mode = "fail"  # version 1 exists only inside the engine now: nothing to restore from
    assert _post(url, _request(2)).status_code == 503
    assert engine.loaded == [model] and "no on-disk copy of version 1" in engine.failed
    assert httpx.get(f"{url}/v1/weights", headers=AUTH).status_code == 503
