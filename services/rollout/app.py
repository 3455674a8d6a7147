"""The rollout server app: `create_app(settings)` wires Redis, the dataset, the upstream clients, the
replica pool and the producer into the shared service shell.

Everything heavy (dataset load, Redis connection, the producer's tasks) starts in the lifespan, never at
import. Before the producer starts, the server asks the broker for its GHPO settings and refuses to start
(ConfigError naming each differing key and both values) when they are not its own: a ladder or cold
start that differs would make the broker's levels mean other hints. /readyz reports "redis" (PING) and,
when the producer runs, "inference" (at least one replica not ejected). The producer's tasks are cancelled on shutdown; their claims expire and are drawn again by
whichever server runs next. Not here: routes (api.py), the sampling step (sampler.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from fastapi import FastAPI

from ghpo.services.rollout.api import router
from ghpo.services.rollout.cursor import Cursor
from ghpo.services.rollout.producer import Producer
from ghpo.services.rollout.queue import GroupQueue
from ghpo.services.rollout.replicas import ReplicaPool
from ghpo.services.rollout.sampler import Sampler
from ghpo.services.rollout.settings import Settings
from ghpo.shared.algorithm.config import ConfigError, GHPOConfig
from ghpo.shared.algorithm.environment import disagreement
from ghpo.shared.app import create_service_app
from ghpo.shared.data.records import PromptRecord
from ghpo.shared.http import ServiceClient
from ghpo.shared.logs import get_logger

log = get_logger(__name__)


def load_dataset(settings: Settings) -> list[PromptRecord]:
    """The training prompts (ghpo.shared.data.selection: the arith train split, or any source, mapped,
    filtered by level, minus the held-out rows)."""
    from ghpo.shared.data.selection import training_records

    records, report = training_records(settings.data_spec())
    log.info("dataset %s: %s; training on %d", settings.dataset, report.summary(), len(records))
    return records


async def agree_with_broker(broker: ServiceClient, ours: GHPOConfig) -> None:
    """ConfigError naming every GHPO setting in which the broker differs from this server, and both values."""
    theirs = await broker.request_json("GET", "/v1/algorithm", response_model=GHPOConfig)
    problem = disagreement(theirs, ours, their_name="broker", our_name="rollout")
    if problem is not None:
        log.error("refusing to start: %s", problem)
        raise ConfigError(f"{problem}; give every component the same GHPO_ALGORITHM_* settings")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        records = await asyncio.to_thread(load_dataset, settings)
        owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        redis = aioredis.Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_timeout_s,
            socket_connect_timeout=settings.redis_timeout_s,
            decode_responses=True,
        )
        cursor = Cursor(
            redis, settings.key_prefix, len(records), owner=owner, claim_ttl_s=settings.claim_ttl_s
        )
        await cursor.check_dataset(settings.seed)
        queue = GroupQueue(redis, settings.key_prefix, owner=owner)
        app.state.cursor, app.state.queue, app.state.producer = cursor, queue, None
        token = settings.upstream_token
        pool = ReplicaPool(
            settings.inference_urls,
            dns=settings.inference_dns,
            dns_refresh_s=settings.dns_refresh_s,
            eject_s=settings.eject_s,
            token=token,
            timeout_s=settings.generate_timeout_s,
        )
        app.state.pool = pool
        budget = {"timeout": settings.upstream_timeout_s, "total_budget": settings.upstream_budget_s}
        verifier = ServiceClient(settings.verifier_url, token=token, **budget)
        broker = ServiceClient(settings.broker_url, token=token, **budget)
        tasks: list[asyncio.Task[None]] = []
        try:
            if settings.producer_enabled:
                await agree_with_broker(broker, settings.ghpo)
                producer = Producer(
                    settings, records, cursor, queue, Sampler(settings, pool, verifier, broker)
                )
                app.state.producer = producer
                tasks = [
                    asyncio.create_task(producer.run(), name="producer"),
                    asyncio.create_task(producer.renew_claims(), name="renew-claims"),
                    asyncio.create_task(producer.update_gauges(), name="gauges"),
                ]
                for task in tasks:
                    task.add_done_callback(_log_death)
            log.info(
                "rollout server %s: %d prompts, producer %s", owner, len(records), settings.producer_enabled
            )
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await verifier.aclose()
            await broker.aclose()
            await pool.close()
            await redis.aclose()

    async def readiness() -> dict[str, bool]:
        checks = {"redis": False}
        queue = getattr(app.state, "queue", None)
        if queue is not None:
            with contextlib.suppress(Exception):
                checks["redis"] = bool(await queue.redis.ping())
        if settings.producer_enabled:
            pool = getattr(app.state, "pool", None)
            checks["inference"] = pool is not None and pool.healthy_count() > 0
        return checks

    app = create_service_app(
        name="rollout", settings=settings, routers=[router], readiness=readiness, lifespan=lifespan
    )
    return app


def _log_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s died", task.get_name(), exc_info=task.exception())
