"""The inference service on a CUDA GPU (vLLM's CUDA build, `ghpo[gpu]`): generation, an HTTP weight update
and the trainer/inference log-prob check, with the tiny random Qwen2 of the CPU service tests.

Skipped without a GPU (tests/conftest.py) or without vllm. Updates here go over HTTP like on CPU; the
NCCL path (vLLM's weight-transfer API, two GPUs) is in test_inference_nccl_gpu.py. bf16 would be the production dtype,
but the log-prob check runs in fp32 so the tolerance stays meaningful.
"""

from __future__ import annotations

import time

import httpx
import pytest

pytest.importorskip("vllm")

import torch

from ghpo.services.inference.app import create_app
from ghpo.services.inference.settings import Settings
from ghpo.shared.http import SyncServiceClient
from ghpo.shared.serving import running_app
from ghpo.trainer.tiny.random_model import build_random_qwen2
from ghpo.trainer.train.push_http import push_weights
from tests.service.test_inference_service import (
    AUTH,
    PROMPTS,
    TOKEN,
    new_weights,
)

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

GPU_LOGPROB_TOLERANCE = 5e-3  # fp32 on both sides, but TF32/cuBLAS kernels differ from torch's defaults


@pytest.fixture(scope="module")
def gpu_service(tmp_path_factory):
    model_dir = build_random_qwen2(tmp_path_factory.mktemp("tiny-qwen2-gpu") / "model")
    settings = Settings(
        model=str(model_dir),
        token=TOKEN,
        device="cuda",
        dtype="float32",
        max_model_len=256,
        gpu_memory_utilization=0.3,
    )
    with running_app(create_app(settings)) as url:
        deadline = time.monotonic() + 600
        while httpx.get(f"{url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "engine did not load"
            time.sleep(0.5)
        yield url, model_dir


def test_gpu_update_changes_samples_and_logprobs_match_transformers(gpu_service):
    from transformers import Qwen2ForCausalLM

    url, model_dir = gpu_service
    greedy = {"prompts": PROMPTS, "sampling": {"n": 1, "max_tokens": 16, "temperature": 0.0}}
    before = httpx.post(f"{url}/v1/generate", json=greedy, headers=AUTH, timeout=300).json()
    weights = new_weights(model_dir, seed=1)
    with SyncServiceClient(url, token=TOKEN, timeout=120) as client:
        started = time.perf_counter()
        status = push_weights(client, weights, 1)
        print(
            f"HTTP weight update on GPU: {time.perf_counter() - started:.3f} s, commit {status.last_update_seconds:.3f} s"
        )
    assert status.policy_version == 1
    # Like for like: the same greedy request before and after, so only the weights can change the answer.
    greedy_after = httpx.post(f"{url}/v1/generate", json=greedy, headers=AUTH, timeout=300).json()
    assert [s["policy_version"] for r in greedy_after["results"] for s in r["samples"]] == [1] * len(PROMPTS)
    assert [r["samples"][0]["token_ids"] for r in greedy_after["results"]] != [
        r["samples"][0]["token_ids"] for r in before["results"]
    ]
    # Sampled completions after the update carry the new weights' log-probs (checked against transformers).
    sampled = {"prompts": PROMPTS, "sampling": {"n": 2, "max_tokens": 16, "temperature": 1.0, "seed": 0}}
    after = httpx.post(f"{url}/v1/generate", json=sampled, headers=AUTH, timeout=300).json()
    model = Qwen2ForCausalLM.from_pretrained(model_dir, dtype=torch.float32).cuda().eval()
    model.load_state_dict(weights, strict=False)
    worst = 0.0
    for result in after["results"]:
        for s in result["samples"]:
            assert s["policy_version"] == 1
            ids = torch.tensor([result["prompt_token_ids"] + s["token_ids"]], device="cuda")
            with torch.no_grad():
                logits = model(ids).logits[0, len(result["prompt_token_ids"]) - 1 : -1].float()
            expected = torch.log_softmax(logits, -1).gather(
                -1, torch.tensor(s["token_ids"], device="cuda")[:, None]
            )[:, 0]
            worst = max(worst, (expected.cpu() - torch.tensor(s["logprobs"])).abs().max().item())
    assert worst < GPU_LOGPROB_TOLERANCE, f"max |logprob difference| {worst}"
