"""What the inference service's routes share: the `Runtime` (model, tokenizer, engine, update gate and
weight updates, built by the app's lifespan), the guard every /v1 route passes through before it touches
the engine (`loaded_runtime`: 503 until the engine is loaded, and after it failed), and the weights
status that the HTTP and NCCL update routes both answer with.

Not here: routes (api.py, nccl_api.py), building the runtime or loading the engine (app.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from ghpo.services.inference.engine import Engine, UpdateGate
from ghpo.services.inference.weights import WeightUpdates
from ghpo.shared.errors import Unavailable
from ghpo.shared.schemas.inference import WeightsStatus


@dataclass
class Runtime:
    """Everything the routes need once the engine is up."""

    model_name: str
    vocab_size: int
    tokenizer: Any
    updates: WeightUpdates
    gate: UpdateGate = field(default_factory=UpdateGate)
    engine: Engine | None = None
    load_error: str | None = None

    def render_chat(self, messages: list[dict[str, str]]) -> list[int]:
        rendered = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(rendered, dict) or hasattr(
            rendered, "input_ids"
        ):  # transformers 5 returns a BatchEncoding
            rendered = rendered["input_ids"]
        return list(rendered)


def loaded_runtime(request: Request) -> Runtime:
    """The app's Runtime once its engine is loaded and healthy; else Unavailable (503 + Retry-After)."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None or runtime.engine is None:
        detail = f": {runtime.load_error}" if runtime is not None and runtime.load_error else ""
        raise Unavailable(f"engine is not loaded yet{detail}", retry_after=5.0)
    if not runtime.engine.healthy():  # died, or stuck/half-loaded after a failed NCCL update
        raise Unavailable("engine failed; the service must be restarted (see /readyz)", retry_after=30.0)
    return runtime


def weights_status_of(runtime: Runtime) -> WeightsStatus:
    """What `GET /v1/weights` answers: the served version, the pending update, the chunk limit."""
    updates: WeightUpdates = runtime.updates
    return WeightsStatus(
        policy_version=runtime.gate.version,
        model=runtime.model_name,
        pending_update=updates.pending.update_id if updates.pending else None,
        max_chunk_bytes=updates.max_chunk_bytes,
        last_update_seconds=updates.last_update_seconds,
        nccl_workers=runtime.engine.nccl_workers,
    )
