"""Settings of the rollout server (environment variables `GHPO_ROLLOUT_*`).

Where the upstream services are (inference replicas as a list of URLs or one DNS name, verifier, broker),
where the queue lives (Redis), the dataset (source, mapping, levels, hold-out) and its shuffling seed, the
prompt template (system turn, instruction, hint separator), sampling, batching, the lag bound and the
timeouts. The GHPO settings (ladder, cold start, hint cut, conditioning, advantages) are the nested
`ghpo` block every component shares, read from GHPO_ALGORITHM_* (ghpo.shared.settings.GHPOServiceSettings);
this server takes every hint cut but `token`, which needs a tokenizer it does not load. Nothing here talks
to Redis or HTTP.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from ghpo.shared.algorithm.config import GHPOConfig
from ghpo.shared.algorithm.hints import HINT_SEPARATOR
from ghpo.shared.data.selection import DataSpec
from ghpo.shared.data.template import PromptTemplate
from ghpo.shared.schemas.rollout import MAX_GROUP_SIZE, MAX_GROUPS_PER_BATCH
from ghpo.shared.settings import GHPOServiceSettings

Url = str


class Settings(GHPOServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GHPO_ROLLOUT_", extra="forbid", validate_default=True)

    port: int = Field(8104, ge=1, le=65535, description="TCP port to listen on.")
    # --- upstream services
    inference_urls: list[Url] = Field(
        default_factory=list, max_length=1024, description="Inference replica base URLs (JSON list)."
    )
    inference_dns: str | None = Field(
        None,
        max_length=2048,
        description="One URL whose host name resolves to many replicas (a headless service); re-resolved "
        "every dns_refresh_s. Used in addition to inference_urls.",
    )
    dns_refresh_s: float = Field(30.0, ge=0.5, le=3600.0, description="How often inference_dns is resolved.")
    verifier_url: Url = Field("http://127.0.0.1:8101", max_length=2048, description="Verifier base URL.")
    broker_url: Url = Field("http://127.0.0.1:8102", max_length=2048, description="Guidance broker base URL.")
    upstream_token: str | None = Field(
        None, max_length=4096, description="Bearer token sent to the upstream services (None: none)."
    )
    generate_timeout_s: float = Field(
        600.0, ge=1.0, le=7200.0, description="Time limit of one /v1/generate call (one round)."
    )
    upstream_timeout_s: float = Field(
        60.0, ge=0.5, le=3600.0, description="Time limit of one verifier or broker call."
    )
    upstream_budget_s: float = Field(
        120.0, ge=1.0, le=7200.0, description="Total time retries of one verifier/broker call may take."
    )
    replica_attempts: int = Field(
        3, ge=1, le=100, description="Replicas one generation round is tried on before its groups drop."
    )
    eject_s: float = Field(
        5.0, ge=0.1, le=3600.0, description="A failing replica is out this long before it is probed back."
    )
    # --- queue and state
    redis_url: str = Field("redis://127.0.0.1:6379/0", max_length=2048, description="redis:// URL.")
    redis_timeout_s: float = Field(5.0, ge=0.05, le=60.0, description="Socket timeout of Redis calls.")
    key_prefix: str = Field(
        "ghpo:rollout:",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9:._-]+$",
        description="Prefix of every Redis key; rollout servers feeding one trainer share it.",
    )
    batch_groups: int = Field(
        8, ge=1, le=MAX_GROUPS_PER_BATCH, description="Whole groups per delivered batch."
    )
    ack_timeout_s: float = Field(
        300.0, ge=0.1, le=86400.0, description="An unacknowledged batch is redelivered after this long."
    )
    claim_ttl_s: float = Field(
        60.0,
        ge=1.0,
        le=86400.0,
        description="A drawn position whose server stops renewing its claim this long is drawn again.",
    )
    max_policy_lag: int = Field(
        1, ge=0, le=1000, description="Groups older than trainer version - this are dropped at delivery."
    )
    producer_enabled: bool = Field(True, description="Run the producer (False: a delivery-only server).")
    prompts_per_step: int = Field(
        8, ge=1, le=4096, description="Prompts drawn per GHPO step (one plan, one generate call per round)."
    )
    max_concurrent_steps: int = Field(
        3, ge=1, le=256, description="Steps in progress at once; > 1 keeps the engines busy between rounds."
    )
    dynamic_sampling: bool = Field(
        False,
        description="DAPO dynamic sampling: drop a sampled group whose rewards are all equal (no_signal) "
        "and keep drawing until batches are full of groups with signal.",
    )
    # --- dataset
    dataset: str = Field(
        "arith",
        min_length=1,
        max_length=4096,
        description="'arith' (synthetic task, train split), a benchmark name (math500, ...), a JSONL/JSON/"
        "Parquet file, a saved dataset folder or a Hugging Face dataset name.",
    )
    dataset_split: str | None = Field(None, max_length=128, description="Split for a HF dataset.")
    dataset_config: str | None = Field(None, max_length=128, description="Configuration of a HF dataset.")
    dataset_map: str = Field(
        "",
        max_length=1024,
        description="Field mapping overrides, field=column,... (problem, answer, solution, id, level, meta).",
    )
    dataset_levels: list[int] = Field(
        default_factory=list, max_length=64, description="Keep only rows of these levels (empty: all)."
    )
    dataset_heldout: int = Field(
        0, ge=0, le=1_000_000, description="Rows held out of training for evaluation (by a hash of the id)."
    )
    dataset_limit: int | None = Field(
        None, ge=1, le=100_000_000, description="Train on the first N rows left after the hold-out."
    )
    arith_per_level: int = Field(200, ge=1, le=1_000_000, description="arith: problems per level.")
    arith_levels: list[int] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5, 6], min_length=1, max_length=16, description="arith levels."
    )
    seed: int = Field(
        0, ge=0, le=2**31 - 1, description="Seed of the epoch shuffles and the generation seeds."
    )
    # --- sampling
    group_size: int = Field(8, ge=1, le=MAX_GROUP_SIZE, description="G: completions per prompt.")
    temperature: float = Field(
        1.0, gt=0.0, le=10.0, description="Sampling temperature (the trainer trains the tempered policy)."
    )
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_tokens: int = Field(
        1024,
        ge=1,
        le=131_072,
        description="Most completion tokens; prompt + this must fit inference max_model_len.",
    )
    reward_weights: dict[str, float] | None = Field(
        None, max_length=32, description="Verifier reward weights (None: the verifier's default)."
    )
    include_text: bool = Field(True, description="Send completion texts in batches (debugging, logs).")
    # --- prompt template (ghpo.shared.data.template)
    prompt_system: str = Field("", max_length=8192, description="System turn of every prompt (empty: none).")
    prompt_instruction: str = Field(
        "", max_length=8192, description="Text appended to every problem in the user turn, before any hint."
    )
    hint_separator: str = Field(
        HINT_SEPARATOR, min_length=1, max_length=8192, description="Text between the problem and its hint."
    )

    @field_validator("inference_dns", "upstream_token", "dataset_split", "dataset_config", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("ghpo", mode="after")
    @classmethod
    def _hint_cut_without_tokenizer(cls, ghpo: GHPOConfig) -> GHPOConfig:
        if ghpo.hint_cut == "token":
            raise ValueError(
                "hint_cut 'token' needs a tokenizer, which the rollout server does not load (it cuts hints "
                "before the inference service applies the chat template): use char or line"
            )
        return ghpo

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if not self.inference_urls and self.inference_dns is None and self.producer_enabled:
            raise ValueError("give inference_urls or inference_dns (or set producer_enabled=false)")
        if self.ghpo.keep_unhinted >= self.group_size:
            raise ValueError(
                f"ghpo.keep_unhinted ({self.ghpo.keep_unhinted}) must be smaller than group_size "
                f"({self.group_size}): a rescued group keeps at least one hinted completion"
            )
        return self

    def data_spec(self) -> DataSpec:
        return DataSpec(
            dataset=self.dataset,
            split=self.dataset_split,
            config=self.dataset_config,
            mapping=self.dataset_map,
            levels=tuple(self.dataset_levels),
            heldout=self.dataset_heldout,
            limit=self.dataset_limit,
            arith_levels=tuple(self.arith_levels),
            arith_per_level=self.arith_per_level,
            seed=self.seed,
        )

    def template(self) -> PromptTemplate:
        return PromptTemplate(self.prompt_system, self.prompt_instruction, self.hint_separator)

    @property
    def admission_groups(self) -> int:
        """Groups allowed queued, in flight or delivered-unacked: (max_policy_lag + 1) x batch_groups."""
        return (self.max_policy_lag + 1) * self.batch_groups
