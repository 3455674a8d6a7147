"""The guidance broker app: `create_app(settings)` wires the Redis state into the shared service shell.

The Redis client (and, when no URL is configured, a local Redis server process that this app starts,
logs and stops) is created in the lifespan, never at import. /readyz reports "redis": false while PING
fails. Not here: routes (api.py), Redis keys and scripts (engine.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ghpo.services.broker.api import router
from ghpo.services.broker.engine import BrokerState
from ghpo.services.broker.metrics import SparsityWindow
from ghpo.services.broker.settings import Settings
from ghpo.shared.app import create_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        local = None
        url = settings.redis_url
        if url is None:
            from ghpo.shared.redis_local import start_local_redis

            local = start_local_redis(settings.redis_data_dir)
            url = local.url
        state = BrokerState(
            url,
            prefix=settings.key_prefix,
            timeout_s=settings.redis_timeout_s,
            update_id_ttl_s=settings.update_id_ttl_s,
            retry_after_s=settings.retry_after_s,
        )
        app.state.broker = state
        app.state.window = SparsityWindow(settings.metrics_window_groups, len(settings.ghpo.hint_ladder) + 1)
        try:
            yield
        finally:
            await state.close()
            if local is not None:
                local.stop()

    async def readiness() -> dict[str, bool]:
        state = getattr(app.state, "broker", None)
        return {"redis": state is not None and await state.ping()}

    app = create_service_app(
        name="broker", settings=settings, routers=[router], readiness=readiness, lifespan=lifespan
    )
    return app
