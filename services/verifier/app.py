"""The verifier service app: `create_app(settings)` wires the worker pool into the shared service shell.

The pool (worker processes) is created in the app's lifespan, never at import, and shut down with it.
/readyz reports "workers": false while any worker is missing or warming up. Not here: routes (api.py),
the pool (engine.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ghpo.services.verifier.api import router
from ghpo.services.verifier.engine import VerifierPool
from ghpo.services.verifier.settings import Settings
from ghpo.shared.app import create_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = VerifierPool.from_settings(settings)
        app.state.pool = pool
        await pool.start()
        try:
            yield
        finally:
            await pool.close()

    async def readiness() -> dict[str, bool]:
        pool = getattr(app.state, "pool", None)
        return {"workers": pool is not None and pool.ready()}

    app = create_service_app(
        name="verifier", settings=settings, routers=[router], readiness=readiness, lifespan=lifespan
    )
    return app
