"""Real batches for the trainer tests and bench: the tiny model served by the real inference service
(vLLM CPU build) samples G completions per arithmetic prompt, the verifier's pure scoring gives rewards,
the core gives advantages, and the result is a `shared.schemas.rollout.Batch` exactly as the rollout
server would deliver it (behaviour log-probs from vLLM, policy version from the service).

Not a test module: imported by tests/e2e/test_trainer*.py and bench/trainer_throughput.py. It stands in
for the rollout server's sampling (no hints, no broker): the trainer is what is under test.
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
from ghpo.shared.tasks import arith
from ghpo.trainer.tiny.prompts import chat_messages
from tests.support.server import running_app

TOKEN = "trainer-test-token"
READY_TIMEOUT_S = 600


@contextlib.contextmanager
def inference_service(model_dir: Path, *, token: str | None = TOKEN) -> Iterator[str]:
    settings = InferenceSettings(
        model=str(model_dir), token=token, max_model_len=512, kv_cache_gib=1, max_num_seqs=64
    )
    with running_app(create_inference(settings)) as url:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while httpx.get(f"{url}/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "inference engine did not load"
            time.sleep(0.5)
        yield url


def generate(
    url: str, messages: list[list[dict]], *, n: int, seed: int, max_tokens: int, token=TOKEN, temperature=1.0
):
    body = {
        "prompts": [{"messages": m} for m in messages],
        "sampling": {"n": n, "seed": seed, "max_tokens": max_tokens, "temperature": temperature},
    }
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(f"{url}/v1/generate", json=body, headers=headers, timeout=600)
    assert response.status_code == 200, response.text
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
    token: str | None = TOKEN,
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


class ListSource:
    """A `BatchSource` over recorded batches (the trainer under test pulls, acks and announces as it would
    against the rollout server; what it sent is kept for assertions)."""

    def __init__(self, batches: list[Batch]):
        self.batches = list(batches)
        self.position = 0
        self.acked: list[tuple[str, int]] = []
        self.announced: list[int] = []
        self.cursor_sets: list[dict] = []

    def next_batch(self, wait_s: float) -> Batch | None:
        if self.position >= len(self.batches):  # a test asking for more than it recorded is a test bug
            raise AssertionError(f"ListSource: all {len(self.batches)} recorded batches were consumed")
        self.position += 1
        return self.batches[self.position - 1]

    def ack(self, batch_id: str, policy_version: int) -> None:
        self.acked.append((batch_id, policy_version))

    def announce_policy_version(self, policy_version: int) -> int | None:
        self.announced.append(policy_version)
        return max(self.announced)

    def get_cursor(self):
        from ghpo.shared.schemas.rollout import RolloutCursor

        return RolloutCursor(epoch=0, position=self.position)

    def set_cursor(self, cursor) -> None:
        self.cursor_sets.append(cursor.model_dump())
        self.position = cursor.position

    def close(self) -> None:
        pass
