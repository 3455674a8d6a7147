"""NCCL weight updates on CUDA: this test process is trainer rank 0 (`push_weights_nccl`), the inference
service's vLLM worker the receiver, with the tiny random Qwen2 of the CPU service tests.

Needs two GPUs, not one: NCCL refuses two ranks of one group on the same device ("Duplicate GPU
detected"), so the worker runs on GPU 0 and the trainer's tensors live on GPU 1. Skipped otherwise (and
without vllm). Checks that the update changes the samples, bumps the version, and that the served
log-probs then match a transformers forward pass of the broadcast weights (every tensor arrived, the
tied head was re-tied); and that a transfer whose trainer never shows up times out, keeps the version
and takes the engine out of service.
"""

from __future__ import annotations

import socket
import time

import httpx
import pytest
import torch

if not torch.cuda.is_available() or torch.cuda.device_count() < 2:  # before importing vLLM (slow)
    pytest.skip(
        "an NCCL update needs two GPUs (trainer rank and inference worker on different devices)",
        allow_module_level=True,
    )
pytest.importorskip("vllm")

from ghpo.services.inference.app import create_app
from ghpo.services.inference.settings import Settings
from ghpo.shared.http import SyncServiceClient
from ghpo.shared.serving import running_app
from ghpo.trainer.tiny.random_model import build_random_qwen2
from ghpo.trainer.train.push_http import tensor_specs
from ghpo.trainer.train.push_nccl import push_weights_nccl
from tests.service.test_inference_service import AUTH, PROMPTS, TOKEN, new_weights

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

GPU_LOGPROB_TOLERANCE = 5e-3  # as in test_inference_gpu.py
TRAINER_DEVICE = "cuda:1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(model_dir):
    settings = Settings(
        model=str(model_dir),
        token=TOKEN,
        device="cuda",
        dtype="float32",
        max_model_len=256,
        gpu_memory_utilization=0.3,
        nccl_timeout_s=120.0,
    )
    return running_app(create_app(settings))


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 600
    while httpx.get(f"{url}/readyz").status_code != 200:
        assert time.monotonic() < deadline, "engine did not load"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_random_qwen2(tmp_path_factory.mktemp("tiny-qwen2-nccl") / "model")


def _timeouts(url: str) -> float:
    prefix = 'ghpo_inference_weight_update_failures_total{reason="nccl_timeout"} '
    line = next(x for x in httpx.get(f"{url}/metrics").text.splitlines() if x.startswith(prefix))
    return float(line.removeprefix(prefix))


def _generate(url: str, **sampling) -> dict:
    body = {"prompts": PROMPTS, "sampling": sampling}
    response = httpx.post(f"{url}/v1/generate", json=body, headers=AUTH, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


def test_an_nccl_update_changes_samples_bumps_the_version_and_matches_transformers(model_dir):
    from transformers import Qwen2ForCausalLM

    with _start(model_dir) as url:
        _wait_ready(url)
        before = _generate(url, n=1, max_tokens=16, temperature=0.0)
        weights = {n: t.to(TRAINER_DEVICE) for n, t in new_weights(model_dir, seed=11).items()}
        with SyncServiceClient(url, token=TOKEN, timeout=120) as client:
            started = time.perf_counter()
            status = push_weights_nccl(
                client, weights, 1, master_address="127.0.0.1", master_port=_free_port(), timeout_s=120
            )
            print(f"NCCL weight update: {time.perf_counter() - started:.3f} s end to end")
        assert status.policy_version == 1 and status.nccl_workers == 1
        after = _generate(url, n=2, max_tokens=16, temperature=1.0, seed=0)
        greedy = _generate(url, n=1, max_tokens=16, temperature=0.0)
        assert [r["samples"][0]["token_ids"] for r in greedy["results"]] != [
            r["samples"][0]["token_ids"] for r in before["results"]
        ]
        model = Qwen2ForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(TRAINER_DEVICE).eval()
        model.load_state_dict(weights, strict=False)  # lm_head is tied to embed_tokens
        worst = 0.0
        for result in after["results"]:
            prompt = result["prompt_token_ids"]
            for s in result["samples"]:
                assert s["policy_version"] == 1
                ids = torch.tensor([prompt + s["token_ids"]], device=TRAINER_DEVICE)
                with torch.no_grad():
                    logits = model(ids).logits[0, len(prompt) - 1 : -1].float()
                expected = torch.log_softmax(logits, -1).gather(
                    -1, torch.tensor(s["token_ids"], device=TRAINER_DEVICE)[:, None]
                )[:, 0]
                worst = max(worst, (expected.cpu() - torch.tensor(s["logprobs"])).abs().max().item())
        assert worst < GPU_LOGPROB_TOLERANCE, f"max |logprob difference| {worst}"


def test_an_nccl_update_whose_trainer_never_comes_times_out_and_keeps_the_version(model_dir):
    with _start(model_dir) as url:
        _wait_ready(url)
        weights = new_weights(model_dir, seed=12)
        body = {
            "version": 1,
            "master_address": "127.0.0.1",
            "master_port": _free_port(),  # nobody hosts the rendezvous there
            "world_size": 2,
            "tensors": [s.model_dump() for s in tensor_specs(weights)],
            "bucket_bytes": 1 << 20,
            "timeout_s": 10.0,
        }
        before = _timeouts(url)
        response = httpx.post(f"{url}/v1/weights/nccl", json=body, headers=AUTH, timeout=120)
        assert response.status_code == 503, response.text
        assert "timed out" in response.json()["error"]["message"]
        assert _timeouts(url) == before + 1
        assert "ghpo_inference_weights_version 0.0" in httpx.get(f"{url}/metrics").text
        assert httpx.get(f"{url}/readyz").status_code == 503  # worker stuck in the rendezvous: restart
