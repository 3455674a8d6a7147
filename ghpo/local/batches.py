"""Real trainer batches without the rollout server: the inference service (vLLM CPU build) samples G
completions per arithmetic prompt from a model, the verifier's scoring rewards them, and each group gets
its advantages, giving a `shared.schemas.rollout.Batch` exactly as the rollout server would deliver it
(behaviour log-probs from vLLM, policy version from the service).

What it is for: benches and tests of the trainer (bench/trainer_throughput.py, tests/e2e/test_trainer*.py),
where the trainer is what is measured or tested. What it deliberately does not do: hints, the broker,
queues or lag bounds (the rollout server's job); generation runs in this process
(`ghpo.shared.serving.running_app`), not as the `ghpo serve` processes of `ghpo run`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import torch

from ghpo.services.inference.app import create_app as create_inference
from ghpo.services.inference.settings import Settings as InferenceSettings
from ghpo.shared.algorithm.advantages import group_advantages
from ghpo.shared.schemas.inference import GenerateResponse
from ghpo.shared.schemas.rollout import Batch, Completion, ScoredGroup
from ghpo.shared.scoring.answers import score
from ghpo.shared.serving import running_app
from ghpo.shared.tasks import arith
from ghpo.trainer.tiny.prompts import chat_messages

READY_TIMEOUT_S = 600


@contextlib.contextmanager
def inference_service(model_dir: Path, *, token: str | None = None) -> Iterator[str]:
    """The inference service (vLLM CPU build) on `model_dir`, in this process; yields its URL once ready."""
    settings = InferenceSettings(
        model=str(model_dir), token=token, max_model_len=512, kv_cache_gib=1, max_num_seqs=64
    )
    with running_app(create_inference(settings)) as url:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while httpx.get(f"{url}/readyz", timeout=10).status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError(f"inference engine on {model_dir} did not load in {READY_TIMEOUT_S} s")
            time.sleep(0.5)
        yield url


def generate(
    url: str,
    messages: list[list[dict]],
    *,
    n: int,
    seed: int,
    max_tokens: int,
    token: str | None = None,
    temperature: float = 1.0,
) -> GenerateResponse:
    """One `/v1/generate` call: `n` samples per chat prompt."""
    body = {
        "prompts": [{"messages": m} for m in messages],
        "sampling": {"n": n, "seed": seed, "max_tokens": max_tokens, "temperature": temperature},
    }
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(f"{url}/v1/generate", json=body, headers=headers, timeout=600)
    if response.status_code != 200:
        raise RuntimeError(f"generate failed ({response.status_code}): {response.text[:2000]}")
    return GenerateResponse.model_validate_json(response.content)


def real_batches(
    url: str,
    *,
    n_batches: int,
    groups: int = 4,
    group_size: int = 4,
    seed: int = 0,
    max_tokens: int = 64,
    levels: tuple[int, ...] = (2, 3, 4),
    token: str | None = None,
    temperature: float = 1.0,
) -> list[Batch]:
    """`n_batches` batches of `groups` prompts x `group_size` scored samples each."""
    per_level = -(-n_batches * groups // len(levels))
    records = arith.make_split("train", per_level, list(levels), seed=seed)
    records = [
        records[i] for i in torch.randperm(len(records), generator=torch.Generator().manual_seed(seed))
    ]
    batches = []
    for b in range(n_batches):
        chosen = records[b * groups : (b + 1) * groups]
        response = generate(
            url,
            [chat_messages(r) for r in chosen],
            n=group_size,
            seed=seed * 1000 + b,
            max_tokens=max_tokens,
            token=token,
            temperature=temperature,
        )
        scored_groups = []
        for record, result in zip(chosen, response.results, strict=True):
            scores = [score(s.text or "", record.answer) for s in result.samples]
            advantages = group_advantages([s.total for s in scores], eps=1e-4, scale=True)
            scored_groups.append(
                ScoredGroup(
                    group_id=f"{record.id}-b{b}",
                    prompt_id=record.id,
                    epoch=0,
                    hint_level=0,
                    hint_ratio=0.0,
                    prompt_token_ids=result.prompt_token_ids,
                    temperature=temperature,
                    completions=[
                        Completion(
                            token_ids=s.token_ids,
                            behaviour_logprobs=s.logprobs,
                            finish_reason=s.finish_reason,
                            reward=sc.total,
                            accuracy=sc.accuracy,
                            advantage=a,
                            policy_version=s.policy_version,
                            text=s.text,
                        )
                        for s, sc, a in zip(result.samples, scores, advantages, strict=True)
                    ],
                    plain_accuracy=sum(sc.accuracy for sc in scores) / len(scores),
                    created_at=time.time(),
                )
            )
        batches.append(Batch(batch_id=f"batch-{seed}-{b}", groups=scored_groups, created_at=time.time()))
    return batches
