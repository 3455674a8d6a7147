"""The rollout server's calls to its inference replicas: generate a round, tokenize plain prompts.

A call carries the prompts of several slots. Three rules decide what happens when a replica refuses it,
each one method, and the loop in `_send` only routes a refusal to its rule:
- fail-over (`_failed_over`): a replica that fails (transport error, 5xx or 429, after its client's own
  retries) is ejected and the call goes to the next least-busy one, until `replica_attempts` failures;
  any other refusal ends the call;
- admission of prompts (`_admitted`; the producer's admission of groups is another matter): a prompt the
  service refuses as too long (422 naming `prompts.<i>`) is dropped (`prompt_too_long`) and the call is
  sent again without it;
- freshness (`_fresh_enough`): a replica serving weights older than the lag bound allows (409) is asked
  again after STALE_ENGINE_WAIT_S, until `generate_timeout_s` has passed since the call began.
Time spent awaiting replicas, those waits included, goes on the step's clock. What this module does not
do: choose or probe replicas (replicas.py), or decide what a result means (sampler.py).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ghpo.services.rollout import metrics
from ghpo.services.rollout.replicas import ReplicaPool
from ghpo.services.rollout.settings import Settings
from ghpo.services.rollout.slot import Slot, StepClock
from ghpo.shared.errors import Conflict, GhpoError, Unprocessable
from ghpo.shared.logs import get_logger
from ghpo.shared.schemas.common import WireModel
from ghpo.shared.schemas.inference import (
    GenerateRequest,
    GenerateResponse,
    Prompt,
    PromptResult,
    SamplingParams,
    TokenizedPrompt,
    TokenizeRequest,
    TokenizeResponse,
)
from ghpo.shared.schemas.rollout import DropReason

log = get_logger(__name__)
_PROMPT_FIELD = re.compile(r"^prompts\.(\d+)")
STALE_ENGINE_WAIT_S = 0.5  # a replica still on older weights than the lag bound allows: ask again soon
R = TypeVar("R")


@dataclass
class _Budget:
    """What one call may still spend: replica failures so far, and the time it must give up by."""

    deadline: float
    failures: int = 0


def _replica_fault(exc: GhpoError) -> bool:
    """A failure of the replica (another may answer), not a refusal of the request."""
    return exc.status_code >= 500 or exc.status_code == 429


class InferenceCalls:
    """Generate and tokenize calls over a replica pool, with the three rules above."""

    def __init__(self, settings: Settings, pool: ReplicaPool):
        self.settings = settings
        self.pool = pool

    async def generate(
        self,
        slots: list[Slot],
        prompts: list[Prompt],
        sampling: SamplingParams,
        min_version: int,
        clock: StepClock,
    ) -> list[tuple[Slot, PromptResult]] | None:
        """One /v1/generate of `prompts` (one per slot): each slot not dropped meanwhile, with its result;
        None when the call gave up."""

        def body(kept: list[Prompt]) -> GenerateRequest:
            return GenerateRequest(prompts=kept, sampling=sampling, min_policy_version=min_version)

        sent = await self._send("/v1/generate", slots, prompts, body, clock)
        if sent is None:
            return None
        kept, content = sent
        return _matched(kept, GenerateResponse.model_validate_json(content).results)

    async def tokenize(
        self, slots: list[Slot], prompts: list[Prompt], clock: StepClock
    ) -> list[tuple[Slot, TokenizedPrompt]] | None:
        """One /v1/tokenize of `prompts` (one per slot), as `generate` but nothing is generated."""
        sent = await self._send(
            "/v1/tokenize", slots, prompts, lambda kept: TokenizeRequest(prompts=kept), clock
        )
        if sent is None:
            return None
        kept, content = sent
        return _matched(kept, TokenizeResponse.model_validate_json(content).results)

    async def _send(
        self,
        path: str,
        slots: list[Slot],
        prompts: list[Prompt],
        body: Callable[[list[Prompt]], WireModel],
        clock: StepClock,
    ) -> tuple[list[Slot], bytes] | None:
        """POST the prompts of the slots still admitted until a replica answers: (those slots, the answer's
        body), or None when the call gave up (or no prompt was left)."""
        budget = _Budget(deadline=time.monotonic() + self.settings.generate_timeout_s)
        pending = list(zip(slots, prompts, strict=True))
        while pending:
            try:
                answer = await clock.timed(self._post(path, body([prompt for _, prompt in pending])))
                return [slot for slot, _ in pending], answer
            except Unprocessable as exc:
                pending = self._admitted(pending, exc)
            except Conflict:
                if not await self._fresh_enough(budget, clock):
                    return None
            except GhpoError as exc:
                if not self._failed_over(budget, exc, path):
                    return None
        return None

    async def _post(self, path: str, body: WireModel) -> bytes:
        """One POST to the least-busy replica, ejected when it failed."""
        async with self.pool.acquire() as replica:
            try:
                response = await replica.client.request(
                    "POST",
                    path,
                    json=body,
                    timeout=self.settings.generate_timeout_s,
                    # generation is seeded and tokenizing pure: a retry is harmless
                    idempotency_key=f"{path.rsplit('/', 1)[-1]}-{uuid.uuid4().hex}",
                )
            except GhpoError as exc:
                if _replica_fault(exc):
                    self.pool.eject(replica, str(exc))
                raise
        return response.content

    def _failed_over(self, budget: _Budget, exc: GhpoError, path: str) -> bool:
        """Fail-over: whether to try the next replica after `exc` (the failing one is already ejected)."""
        metrics.UPSTREAM_ERRORS.labels(service="inference", kind=exc.code).inc()
        if not _replica_fault(exc):
            log.error("inference refused a %s call: %s", path, exc)
            return False
        budget.failures += 1
        return budget.failures < self.settings.replica_attempts

    def _admitted(self, pending: list[tuple[Slot, Prompt]], exc: Unprocessable) -> list[tuple[Slot, Prompt]]:
        """Admission: the pending prompts without the one the service refused as too long (its slot dropped);
        any other 422 is a bug here and propagates."""
        match = _PROMPT_FIELD.match(exc.field or "")
        if match is None:
            raise exc
        refused, _ = pending[int(match.group(1))]
        refused.drop = DropReason.prompt_too_long
        return [(slot, prompt) for slot, prompt in pending if slot is not refused]

    async def _fresh_enough(self, budget: _Budget, clock: StepClock) -> bool:
        """Freshness: the replica serves weights older than the call allows; wait for the trainer's push and
        say whether to ask again (not past the call's deadline)."""
        metrics.UPSTREAM_ERRORS.labels(service="inference", kind="stale_weights").inc()
        if time.monotonic() > budget.deadline:
            return False
        await clock.timed(asyncio.sleep(STALE_ENGINE_WAIT_S))
        return True


def _matched(slots: list[Slot], results: list[R]) -> list[tuple[Slot, R]]:
    if len(results) != len(slots):
        raise ValueError(f"inference answered {len(results)} results for {len(slots)} prompts")
    return list(zip(slots, results, strict=True))
