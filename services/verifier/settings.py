"""Settings of the verifier service (environment variables `GHPO_VERIFIER_*`).

Every limit of the service lives here: worker pool size, the per-item deadline, batch and string limits,
queue bound, and the default rewards with their weights. Nothing here touches processes or HTTP.
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

# Hard ceilings of the wire schema; settings may only lower them.
from ghpo.shared.schemas.verifier import MAX_BATCH_ITEMS, MAX_COMPLETION_CHARS, MAX_GOLD_CHARS
from ghpo.shared.scoring.rewards import weights_problem
from ghpo.shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GHPO_VERIFIER_", extra="forbid", validate_default=True)

    port: int = Field(8101, ge=1, le=65535, description="TCP port to listen on.")
    workers: int = Field(2, ge=1, le=256, description="Worker processes running math-verify.")
    item_deadline_s: float = Field(
        10.0,
        ge=0.1,
        le=600.0,
        description="Wall-clock limit for one item inside a worker; past it the worker is killed and "
        "replaced and the item gets status 'timeout'.",
    )
    math_timeout_s: int = Field(
        2,
        ge=1,
        le=600,
        description="math-verify's own (SIGALRM) limit per parse/compare call, in whole seconds; it lets "
        "cooperative slow items time out without killing the worker. Keep it below item_deadline_s.",
    )
    worker_memory_mib: int = Field(
        4096,
        ge=0,
        le=1_048_576,
        description="Address-space limit of each worker process in MiB (0: none). An item that tries to "
        "build a gigantic number then fails with status 'error' instead of exhausting the machine.",
    )
    max_chunk_items: int = Field(
        8,
        ge=1,
        le=1024,
        description="Most items sent to one worker in one message (fewer IPC round trips; smaller chunks "
        "balance load better).",
    )
    max_batch_items: int = Field(
        1024, ge=1, le=MAX_BATCH_ITEMS, description="Most items in one /v1/verify request; more gets 413."
    )
    max_completion_chars: int = Field(
        65536,
        ge=1,
        le=MAX_COMPLETION_CHARS,
        description="Longest completion accepted, in characters; longer gets 422 naming the item.",
    )
    max_gold_chars: int = Field(
        4096,
        ge=1,
        le=MAX_GOLD_CHARS,
        description="Longest gold answer accepted, in characters; longer gets 422 naming the item.",
    )
    max_queued_items: int = Field(
        16384,
        ge=1,
        le=1_000_000,
        description="Most items waiting for a worker across all requests; past it requests get 503.",
    )
    default_weights: dict[str, float] = Field(
        default_factory=lambda: {"accuracy": 1.0, "format": 0.5},
        description="Rewards computed when a request names none, with their weights (total = weighted "
        "sum). The reference: accuracy 1.0 + format 0.5.",
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        # math_timeout_s >= item_deadline_s is allowed (every slow item then costs a worker restart).
        if self.max_queued_items < self.max_batch_items:
            raise ValueError("max_queued_items must be at least max_batch_items (a full batch must fit)")
        problem = weights_problem(self.default_weights)
        if problem:
            raise ValueError(f"default_weights: {problem}")
        return self
