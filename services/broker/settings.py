"""Settings of the guidance broker (environment variables `GHPO_BROKER_*`).

Where the state lives (Redis URL, or none: start a local server and say so), which policy plans hint
levels, the group size, the `ghpo-memory` step-down rule and `ghpo-adaptive`'s target, and the service's
limits. The GHPO settings it plans with (the ladder, the cold start) are the nested `ghpo` block every
component shares, read from GHPO_ALGORITHM_* (ghpo.shared.settings.GHPOServiceSettings). Nothing here
talks to Redis or HTTP.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from ghpo.services.broker.policies import PolicyConfig
from ghpo.shared.schemas.broker import MAX_BATCH_PROMPTS, MAX_GROUP_SIZE, PolicyName
from ghpo.shared.settings import GHPOServiceSettings


class Settings(GHPOServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GHPO_BROKER_", extra="forbid", validate_default=True)

    port: int = Field(8102, ge=1, le=65535, description="TCP port to listen on.")
    redis_url: str | None = Field(
        None,
        max_length=2048,
        description="redis:// URL of the state store; None starts a local Redis server (dev) and logs it.",
    )
    redis_data_dir: str | None = Field(
        None, max_length=4096, description="Data dir of the local server (None: a fresh temp dir)."
    )
    redis_timeout_s: float = Field(
        2.0, ge=0.05, le=60.0, description="Socket timeout of Redis calls; past it requests get 503."
    )
    key_prefix: str = Field(
        "ghpo:broker:",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9:._-]+$",
        description="Prefix of every Redis key (one prefix per training run if runs share a server).",
    )
    policy: PolicyName = Field(
        "ghpo-memory", description="Hint policy: ghpo, ghpo-memory, ghpo-adaptive or none."
    )
    group_size: int = Field(
        8, ge=0, le=MAX_GROUP_SIZE, description="G every result must have (0: accept any G)."
    )
    step_down_accuracy: float = Field(
        0.75,
        gt=0.0,
        le=1.0,
        description="ghpo-memory: a non-escalated group this accurate makes the next visit start a level lower.",
    )
    stale_after_steps: int = Field(
        0,
        ge=0,
        le=10**9,
        description="ghpo-memory, ghpo-adaptive: memory older than this starts a level lower (0: never).",
    )
    target_accuracy: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="ghpo-adaptive: the hinted accuracy aimed at; a final group above it makes the next "
        "visit start a level lower.",
    )
    update_id_ttl_s: int = Field(
        7 * 24 * 3600,
        ge=60,
        le=365 * 24 * 3600,
        description="How long an applied update id is remembered for deduplication.",
    )
    max_batch_prompts: int = Field(
        8192, ge=1, le=MAX_BATCH_PROMPTS, description="Most prompts/outcomes per request; more gets 413."
    )
    metrics_window_groups: int = Field(
        4096, ge=1, le=10**6, description="Recent outcomes the ratio gauges are computed over."
    )
    retry_after_s: int = Field(1, ge=1, le=3600, description="Retry-After sent with 503 when Redis is down.")

    @field_validator("redis_url", "redis_data_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value  # GHPO_BROKER_REDIS_URL= (set but empty) means "none"

    def policy_config(self) -> PolicyConfig:
        return PolicyConfig(
            name=self.policy,
            n_hint_levels=len(self.ghpo.hint_ladder),
            cold_start_steps=self.ghpo.cold_start_steps,
            step_down_accuracy=self.step_down_accuracy,
            stale_after_steps=self.stale_after_steps,
            target_accuracy=self.target_accuracy,
        )
