"""The inference service app: `create_app(settings)` wires the engine, the update gate and the weight
updates into the shared service shell.

The engine loads in the background from the lifespan (vLLM takes tens of seconds on CPU): the server
answers /healthz at once, /readyz says "engine": false and /v1 routes answer 503 with Retry-After until
it is ready; a failed load is logged and named in those 503s. Shut down with the app. Not here: routes
(api.py, nccl_api.py), what the routes share (runtime.py), the engine (vllm_engine.py), update validation
(weights.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from ghpo.services.inference import metrics
from ghpo.services.inference.api import router
from ghpo.services.inference.nccl_api import router as nccl_router
from ghpo.services.inference.runtime import Runtime
from ghpo.services.inference.settings import Settings
from ghpo.services.inference.specs import checkpoint_spec
from ghpo.services.inference.weights import WeightUpdates
from ghpo.shared.app import create_service_app
from ghpo.shared.logs import get_logger

log = get_logger(__name__)


def _runtime(settings: Settings, staging: Path) -> Runtime:
    from transformers import AutoTokenizer

    model_dir = Path(settings.model)
    config = json.loads((model_dir / "config.json").read_text())
    return Runtime(
        model_name=settings.served_model_name or model_dir.name,
        vocab_size=int(config["vocab_size"]),
        tokenizer=AutoTokenizer.from_pretrained(model_dir),
        updates=WeightUpdates(
            expected=checkpoint_spec(model_dir),
            staging_root=staging,
            max_update_bytes=settings.max_update_bytes,
            max_chunk_bytes=settings.max_chunk_bytes,
        ),
    )


async def _load_engine(runtime: Runtime, settings: Settings) -> None:
    from ghpo.services.inference.vllm_engine import VllmEngine

    try:
        runtime.engine = await VllmEngine.start(
            model=settings.model,
            device=settings.device,
            dtype=settings.dtype,
            max_model_len=settings.max_model_len,
            kv_cache_gib=settings.kv_cache_gib,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            max_num_seqs=settings.max_num_seqs,
            seed=settings.seed,
            logprobs_mode=settings.logprobs_mode,
        )
        metrics.ENGINE_READY.set(1)
    except Exception as exc:
        log.exception("engine failed to load")
        runtime.load_error = f"{type(exc).__name__}: {exc}"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with contextlib.ExitStack() as stack:
            staging = (
                Path(settings.staging_dir)
                if settings.staging_dir
                else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ghpo-inference-")))
            )
            runtime = await asyncio.to_thread(_runtime, settings, staging)
            app.state.runtime = runtime
            loading = asyncio.create_task(_load_engine(runtime, settings))
            try:
                yield
            finally:
                if not loading.done():
                    loading.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await loading
                metrics.ENGINE_READY.set(0)
                if runtime.engine is not None:
                    await runtime.engine.close()
                runtime.updates.close()

    async def readiness() -> dict[str, bool]:
        runtime = getattr(app.state, "runtime", None)
        return {"engine": runtime is not None and runtime.engine is not None and runtime.engine.healthy()}

    app = create_service_app(
        name="inference",
        settings=settings,
        routers=[router, nccl_router],
        readiness=readiness,
        lifespan=lifespan,
    )
    return app
