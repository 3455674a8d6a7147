"""Scoring evaluation samples with the verifier service's own code: its worker pool, or the service itself.

`LocalVerifier` runs `ghpo.services.verifier.engine.VerifierPool` in this process: math-verify in worker
processes with the service's per-item deadline and memory limit (from the verifier's Settings, so
`GHPO_VERIFIER_*` variables apply here too). `RemoteVerifier` posts to a running verifier's `/v1/verify`.
Either way each item is scored by `scoring.score` and `rewards.compute`, exactly as in training; we ask
for the accuracy and format rewards. Not here: which completions to score (run.py), metrics.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ghpo.shared.http import ServiceClient
from ghpo.shared.schemas.verifier import VerifyRequest, VerifyResponse

WEIGHTS = {"accuracy": 1.0, "format": 1.0}
REMOTE_BATCH = 512


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str
    accuracy: float
    format: float


class Verifier(Protocol):
    async def verify(self, items: Sequence[tuple[str, str]]) -> list[Verdict]: ...

    async def close(self) -> None: ...


class LocalVerifier:
    """The verifier service's worker pool, in this process."""

    def __init__(self, pool):
        self._pool = pool

    @classmethod
    async def start(cls, workers: int) -> LocalVerifier:
        from ghpo.services.verifier.engine import VerifierPool
        from ghpo.services.verifier.settings import Settings

        # one caller, all items at once: no back-pressure needed
        pool = VerifierPool.from_settings(Settings(workers=workers), max_queued_items=10_000_000)
        await pool.start()
        return cls(pool)

    async def verify(self, items: Sequence[tuple[str, str]]) -> list[Verdict]:
        outcomes = await self._pool.verify([(completion, gold, WEIGHTS) for completion, gold in items])
        return [
            Verdict(status, rewards["accuracy"], rewards["format"]) for _, status, rewards, *_ in outcomes
        ]

    async def close(self) -> None:
        await self._pool.close()


class RemoteVerifier:
    """A running verifier service's `POST /v1/verify`."""

    def __init__(self, url: str, *, token: str | None = None, timeout_s: float = 600.0):
        self._client = ServiceClient(url, token=token, timeout=timeout_s, total_budget=timeout_s * 2)
        self._run = uuid.uuid4().hex[:12]

    async def verify(self, items: Sequence[tuple[str, str]]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        for start in range(0, len(items), REMOTE_BATCH):
            body = VerifyRequest.model_validate(
                {
                    "items": [{"completion": c, "gold": g} for c, g in items[start : start + REMOTE_BATCH]],
                    "weights": WEIGHTS,
                }
            )
            # Scoring is a pure function of the body: a retried POST gives the same answer.
            response = await self._client.request_json(
                "POST",
                "/v1/verify",
                json=body,
                response_model=VerifyResponse,
                idempotency_key=f"eval-{self._run}-{start}",
            )
            verdicts.extend(
                Verdict(r.status, r.rewards["accuracy"], r.rewards["format"]) for r in response.results
            )
        return verdicts

    async def close(self) -> None:
        await self._client.aclose()
