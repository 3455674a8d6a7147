"""HTTP API of the rollout server, under /v1: batches for the trainer, acks, policy version, cursor, status.

`GET /v1/batches/next` answers a due redelivery first, else a new batch of `batch_groups` whole groups
(stale groups, older than trainer version - max_policy_lag, are dropped on the way and counted), else
204 (after long-polling up to `wait_s`). The batch body is assembled from the group JSON stored in Redis
without re-parsing it. Not here: Redis scripts (queue.py, cursor.py), the producer (producer.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from ghpo.services.rollout import metrics
from ghpo.services.rollout.producer import now_ms
from ghpo.services.rollout.settings import Settings
from ghpo.shared.errors import Unprocessable
from ghpo.shared.schemas.rollout import (
    Batch,
    BatchAck,
    BatchAckResult,
    DropReason,
    PolicyVersionUpdate,
    RolloutCursor,
    RolloutStatus,
)

router = APIRouter(prefix="/v1", tags=["rollout"])
BATCH_ID = re.compile(r"^[A-Za-z0-9._:@/+-]{1,128}$")
POLL_S = 0.05
MAX_WAIT_S = 30.0


def _wake_producer(request: Request) -> None:
    producer = getattr(request.app.state, "producer", None)
    if producer is not None:
        producer.wake.set()


@router.get(
    "/batches/next",
    response_model=Batch,
    responses={204: {"description": "No complete batch is ready (after waiting up to wait_s)."}},
)
async def next_batch(
    request: Request,
    wait_s: Annotated[float, Query(ge=0.0, le=MAX_WAIT_S, description="Long-poll up to this long.")] = 0.0,
) -> Response:
    settings: Settings = request.app.state.settings
    queue = request.app.state.queue
    deadline = time.monotonic() + wait_s
    while True:
        version = await queue.version()
        floor = version - settings.max_policy_lag
        got = await queue.next_batch(
            settings.batch_groups, now_ms(), int(settings.ack_timeout_s * 1000), floor
        )
        for lag in got.stale_lags:
            metrics.POLICY_LAG.observe(lag + settings.max_policy_lag)
        if got.stale_lags:
            metrics.DROPPED.labels(reason=DropReason.stale_policy.value).inc(len(got.stale_lags))
            _wake_producer(request)
        if got.batch_id is not None:
            break
        if time.monotonic() >= deadline:
            return Response(status_code=204)
        await asyncio.sleep(POLL_S)
    if got.delivery == 1:
        metrics.BATCHES_DELIVERED.inc()
        for v in got.versions:
            metrics.POLICY_LAG.observe(max(0, version - v))
    else:
        metrics.BATCHES_REDELIVERED.inc()
    _wake_producer(request)
    body = (
        f'{{"batch_id":{json.dumps(got.batch_id)},"groups":[{",".join(got.bodies)}],'
        f'"delivery":{got.delivery},"created_at":{time.time()}}}'
    )
    return Response(content=body, media_type="application/json")


@router.post("/batches/{batch_id}/ack", response_model=BatchAckResult)
async def ack_batch(batch_id: str, body: BatchAck, request: Request) -> BatchAckResult:
    """Acknowledge a delivered batch: its groups count as trained; a repeated ack answers False."""
    if not BATCH_ID.match(batch_id):
        raise Unprocessable(f"invalid batch id {batch_id[:80]!r}", field="batch_id")
    n = await request.app.state.queue.ack(batch_id)
    if n is not None:
        metrics.BATCHES_ACKED.inc()
        _wake_producer(request)
    return BatchAckResult(batch_id=batch_id, acknowledged=n is not None, cursor=await _trained(request))


async def _trained(request: Request) -> RolloutCursor:
    epoch, position = await request.app.state.cursor.trained()
    acked = await request.app.state.queue.acked_groups()
    return RolloutCursor(epoch=epoch, position=position, acked_groups=acked)


@router.post("/policy-version", response_model=PolicyVersionUpdate)
async def policy_version(body: PolicyVersionUpdate, request: Request) -> PolicyVersionUpdate:
    """The trainer announces the version inference now serves; versions never go back."""
    version = await request.app.state.queue.set_version(body.policy_version)
    metrics.TRAINER_VERSION.set(version)
    _wake_producer(request)
    return PolicyVersionUpdate(policy_version=version)


@router.get("/cursor", response_model=RolloutCursor)
async def get_cursor(request: Request) -> RolloutCursor:
    """The trained cursor: the first position not yet acknowledged or dropped, and the groups acknowledged."""
    return await _trained(request)


@router.put("/cursor", response_model=RolloutCursor)
async def put_cursor(body: RolloutCursor, request: Request) -> RolloutCursor:
    """Rewind (or forward) drawing; queued, in-flight and unacknowledged groups are dropped as rewound;
    the acknowledged-groups count is set back when the body gives one."""
    settings: Settings = request.app.state.settings
    cursor = request.app.state.cursor
    if body.position >= cursor.size:
        raise Unprocessable(
            f"position {body.position} is past the dataset ({cursor.size} prompts: 0..{cursor.size - 1})",
            field="position",
        )
    dropped = await cursor.rewind(body.epoch, body.position, settings.batch_groups, body.acked_groups)
    if dropped:
        metrics.DROPPED.labels(reason=DropReason.rewound.value).inc(dropped)
    _wake_producer(request)
    return body


@router.get("/status", response_model=RolloutStatus)
async def status(request: Request) -> RolloutStatus:
    queue, cursor = request.app.state.queue, request.app.state.cursor
    counts = await queue.counts(now_ms())
    trained, drawn = await cursor.trained(), await cursor.next_draw()
    dropped, stats = await queue.dropped(), await queue.stats()
    return RolloutStatus(
        policy_version=await queue.version(),
        queued_groups=counts.queued,
        in_flight_groups=counts.in_flight,
        unacked_batches=counts.unacked,
        epoch=drawn[0],
        dropped={DropReason(k): v for k, v in dropped.items() if k in DropReason.__members__},
        acked_groups=await queue.acked_groups(),
        trained_cursor=RolloutCursor(epoch=trained[0], position=trained[1]),
        draw_cursor=RolloutCursor(epoch=drawn[0], position=drawn[1]),
        **{k: v for k, v in stats.items() if k in RolloutStatus.model_fields},
    )
