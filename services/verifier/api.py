"""HTTP API of the verifier: `POST /v1/verify` (a batch of completions scored against gold answers).

Checks the service's own limits (batch size -> 413, string lengths and reward names -> 422, each naming
the limit and the item), hands the batch to the worker pool and maps outcomes to the wire schema in the
request's order. Not here: scoring (worker processes) and the app shell (app.py).
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from ghpo.services.verifier.engine import VerifierPool
from ghpo.services.verifier.settings import Settings
from ghpo.shared.errors import PayloadTooLarge, Unprocessable
from ghpo.shared.schemas.verifier import VerifyRequest, VerifyResponse, VerifyResult
from ghpo.shared.scoring.rewards import weights_problem

router = APIRouter(prefix="/v1", tags=["verifier"])


def _check(body: VerifyRequest, settings: Settings) -> list[tuple[str, str, dict[str, float]]]:
    """The batch as pool items, or a 413/422 naming the first limit it breaks."""
    if len(body.items) > settings.max_batch_items:
        raise PayloadTooLarge(
            f"batch has {len(body.items)} items; max_batch_items is {settings.max_batch_items}", field="items"
        )
    if body.weights is not None and (problem := weights_problem(body.weights)):
        raise Unprocessable(problem, field="weights")
    default = body.weights if body.weights is not None else settings.default_weights
    items = []
    for i, item in enumerate(body.items):
        if len(item.completion) > settings.max_completion_chars:
            raise Unprocessable(
                f"completion has {len(item.completion)} characters; max_completion_chars is "
                f"{settings.max_completion_chars}",
                field=f"items.{i}.completion",
            )
        if len(item.gold) > settings.max_gold_chars:
            raise Unprocessable(
                f"gold has {len(item.gold)} characters; max_gold_chars is {settings.max_gold_chars}",
                field=f"items.{i}.gold",
            )
        if item.weights is not None and (problem := weights_problem(item.weights)):
            raise Unprocessable(problem, field=f"items.{i}.weights")
        items.append((item.completion, item.gold, item.weights if item.weights is not None else default))
    return items


@router.post("/verify", response_model=VerifyResponse)
async def verify(body: VerifyRequest, request: Request) -> VerifyResponse:
    """Score each item: accuracy (math-verify), format, any other named reward, their weighted total."""
    settings: Settings = request.app.state.settings
    pool: VerifierPool = request.app.state.pool
    items = _check(body, settings)
    started = time.perf_counter()
    outcomes = await pool.verify(items)
    elapsed = time.perf_counter() - started
    results = [
        VerifyResult(
            id=item.id, status=status, rewards=values, total=total, extracted=extracted, detail=detail
        )
        for item, (_, status, values, total, extracted, detail) in zip(body.items, outcomes, strict=True)
    ]
    return VerifyResponse(results=results, elapsed_s=max(0.0, elapsed))
