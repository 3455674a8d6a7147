"""The trainer's run config: one TOML file -> a validated, frozen `TrainConfig`.

Sections (unknown sections and keys are errors, so a misspelt key never silently keeps its default):
[model] path and, for LoRA, [model.lora]; [ghpo] the algorithm (`GHPOConfig`); [optim] AdamW and the
LR schedule; [deepspeed] ZeRO stage, precision, gradient checkpointing, micro-batch size; [run] steps,
seed, checkpoints, stop rules, the status/metrics port; [services] the rollout server, inference
replicas (a URL list and/or a DNS name), broker and token.
`services.token` may instead come from $GHPO_TRAINER_TOKEN, and the `[ghpo]` keys from the GHPO_ALGORITHM_*
variables that the broker and the rollout server read too (ghpo.shared.algorithm.environment: a
deployment sets them once for all three): they fill the keys the file leaves out, and a key set both ways
to different values is an error naming both. `load_config(path)` raises `ConfigError` whose message names
every bad key as `section.key` with what is allowed. Deliberately not here: building anything from the
config (engine.py, loop.py).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ghpo.shared.algorithm import config as algorithm
from ghpo.shared.algorithm import environment as algorithm_env
from ghpo.shared.algorithm.config import GHPOConfig, allowed_range

# The bearer token may come from the environment instead of the file (it is a secret).
TOKEN_ENV = "GHPO_TRAINER_TOKEN"


class ConfigError(ValueError):
    """The trainer config is invalid; the message names each bad key (`section.key`)."""


Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraSection(_Section):
    """LoRA (PEFT): only the adapters train, checkpoint and travel to inference; the base stays frozen."""

    rank: int = Field(16, ge=1, le=4096, description="LoRA rank r of every adapter.")
    alpha: float = Field(32.0, gt=0.0, le=1e6, description="LoRA alpha: adapters are scaled by alpha / rank.")
    dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Dropout on the adapters' input while training; 0 keeps the trainer's log-probs those "
        "of the served (merged) model.",
    )
    target_modules: list[str] = Field(
        default_factory=lambda: ["all-linear"],
        min_length=1,
        max_length=256,
        description="Linear layers that get an adapter, by name (e.g. ['q_proj', 'v_proj']), or "
        "['all-linear']: every linear layer but the output head.",
    )

    @field_validator("target_modules", mode="after")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        if any(not 1 <= len(name) <= 128 for name in value):
            raise ValueError("each module name must be 1 to 128 characters")
        return value

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank


class ModelSection(_Section):
    path: str = Field(min_length=1, max_length=4096, description="Hugging Face model folder to train.")
    lora: LoraSection | None = Field(
        None, description="Train LoRA adapters instead of every weight ([model.lora]; absent: full)."
    )


class OptimSection(_Section):
    lr: float = Field(1e-6, gt=0.0, le=1.0, description="Peak learning rate of AdamW.")
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="AdamW betas, each in [0, 1).")
    eps: float = Field(1e-8, gt=0.0, le=1e-2, description="AdamW epsilon.")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="Decoupled weight decay (matrices only).")
    warmup_steps: int = Field(0, ge=0, le=10**7, description="Linear warm-up from 0 to lr, in steps.")
    schedule: Literal["constant", "cosine", "linear"] = Field(
        "cosine", description="Decay after warm-up, down to min_lr_ratio * lr at run.steps."
    )
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="Floor of the decay as a share of lr.")
    max_grad_norm: float = Field(
        1.0, gt=0.0, le=1e6, description="Gradient clipping; also how DeepSpeed skips non-finite steps."
    )


class DeepSpeedSection(_Section):
    zero_stage: Literal[0, 1, 2, 3] = Field(0, description="ZeRO stage: 0 (none) .. 3 (params sharded).")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="Compute precision; master weights and optimizer state stay fp32."
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward.")
    micro_batch_size: int = Field(8, ge=1, le=4096, description="Rows (completions) per forward/backward.")
    group_by_length: bool = Field(
        False,
        description="Order a batch's rows by prompt then completion length before cutting micro-batches, so "
        "few rows are padded to a hinted prompt's length (HF Trainer's group_by_length). The dapo and dr_grpo "
        "losses are unchanged; with bnpo, rows of similar length share a micro-batch's token normaliser.",
    )


class RunSection(_Section):
    steps: int = Field(ge=1, le=10**8, description="Optimizer steps to take, in all (a resume continues).")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed of torch/python/numpy RNGs.")
    checkpoint_dir: str = Field(min_length=1, max_length=4096, description="Where checkpoints live.")
    checkpoint_every: int = Field(50, ge=1, le=10**7, description="Steps between checkpoints.")
    keep_checkpoints: int = Field(2, ge=1, le=1000, description="Complete checkpoints kept (newest).")
    resume: bool = Field(True, description="Resume from checkpoint_dir's `latest` when there is one.")
    max_empty_batches: int = Field(
        20, ge=1, le=10**6, description="Stop after this many consecutive batches with nothing trainable."
    )
    batch_wait_s: float = Field(10.0, ge=0.0, le=30.0, description="Long-poll time of each batch request.")
    tis_scope: Literal["stale", "all"] = Field(
        "stale",
        description="Rows that get the truncated-IS weight (ghpo.tis_cap): only rows sampled under an "
        "older policy version than the trainer's, or every row (also corrects engine mismatch).",
    )
    history_file: str | None = Field(
        None,
        max_length=4096,
        description="Append one JSON line per optimizer step (losses and the batch's reward-sparsity figures).",
    )
    num_threads: int = Field(0, ge=0, le=1024, description="torch CPU threads; 0 leaves torch's default.")
    entropy: bool = Field(
        True,
        description="Measure the mean token entropy of each step (a metric, no gradient; computed in the "
        "log-prob pass a chunk at a time). Off: reported as NaN, and the pass skips the softmax it needs.",
    )
    checkpoint_at_start: bool = Field(
        False,
        description="On a fresh start (nothing to resume), checkpoint step 0 first, so a trainer killed "
        "before its first periodic checkpoint resumes in agreement with the rollout server's cursor "
        "(on wherever a supervisor restarts the trainer: ghpo run, compose, Kubernetes).",
    )
    port: int = Field(8105, ge=0, le=65535, description="Metrics and status port; 0 = not served.")
    host: str = Field("127.0.0.1", min_length=1, max_length=253, description="Status server interface.")


class ServicesSection(_Section):
    rollout_url: str | None = Field(None, max_length=2048, description="Rollout server base URL.")
    inference_urls: list[str] = Field(
        default_factory=list, max_length=1024, description="Every inference replica to push weights to."
    )
    inference_dns: str | None = Field(
        None,
        max_length=2048,
        description="One URL whose host name resolves to every inference replica (a headless Service), "
        "re-resolved before pushes; replicas that appear are brought to the current version. Used in "
        "addition to inference_urls.",
    )
    dns_refresh_s: float = Field(
        0.0, ge=0.0, le=3600.0, description="Least time between resolutions of inference_dns (0: every push)."
    )
    broker_url: str | None = Field(None, max_length=2048, description="Guidance broker (checkpoints).")
    token: str | None = Field(None, max_length=4096, description="Bearer token for all of them.")
    weight_bucket_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, le=2**34, description="Gather and chunk size of a weight push."
    )
    push_dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="dtype of pushed weights: what the inference replicas serve."
    )
    timeout_s: float = Field(120.0, gt=0.0, le=3600.0, description="Time limit of one HTTP call.")
    outage_budget_s: float = Field(
        600.0,
        ge=0.0,
        le=86_400.0,
        description="How long the trainer waits for the rollout server or the broker to come back (being "
        "restarted) before it checkpoints and stops; a stop request ends the wait at once.",
    )
    weight_transport: Literal["http", "nccl"] = Field(
        "http",
        description="How weights reach inference: HTTP buckets (any machine), or an NCCL broadcast from this "
        "rank 0 to the replicas' GPU workers (CUDA on both sides).",
    )
    nccl_master_address: str = Field(
        "127.0.0.1",
        min_length=1,
        max_length=253,
        description="NCCL: this trainer's address, as replicas see it.",
    )
    nccl_port: int = Field(
        29600, ge=1024, le=65000, description="NCCL: rendezvous port of the first replica (+i for replica i)."
    )
    nccl_timeout_s: float = Field(300.0, gt=0.0, le=3600.0, description="NCCL: time limit of one update.")

    @field_validator("inference_dns", mode="after")
    @classmethod
    def _has_host(cls, value: str | None) -> str | None:
        if value is not None and not urlsplit(value).hostname:
            raise ValueError("must be a URL with a host name, e.g. http://inference:8103")
        return value


class TrainConfig(_Section):
    model: ModelSection
    ghpo: GHPOConfig = Field(default_factory=GHPOConfig)
    optim: OptimSection = Field(default_factory=OptimSection)
    deepspeed: DeepSpeedSection = Field(default_factory=DeepSpeedSection)
    run: RunSection
    services: ServicesSection = Field(default_factory=ServicesSection)

    @model_validator(mode="after")
    def _lora_over_http(self) -> TrainConfig:
        if self.model.lora is not None and self.services.weight_transport != "http":
            raise ValueError(
                "model.lora: LoRA adapters travel to inference over HTTP only; "
                "set services.weight_transport = 'http'"
            )
        return self


def _describe(error: dict[str, Any], from_env: frozenset[str]) -> str:
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc) or "<config>"
    line = f"{key}: {error['msg']}"
    if error["type"] != "missing":
        line += f" (got {error.get('input')!r})"
    if error["type"] == "extra_forbidden":
        line = f"{key}: unknown key"
    elif len(loc) >= 2 and loc[0] == "ghpo" and loc[1] in GHPOConfig.model_fields:
        line += f"; allowed: {allowed_range(loc[1])}"
        if loc[1] in from_env:
            line += f" (from {algorithm_env.env_name(loc[1])})"
    else:
        field = _field(loc)
        if field is not None and field.description:
            line += f"; {field.description}"
    return line


def _field(loc: list[str]) -> Any:
    model: Any = TrainConfig
    field = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return field
        field = fields[part]
        model = field.annotation
    return field


def parse_config(
    data: dict[str, Any], source: str = "<config>", from_env: frozenset[str] = frozenset()
) -> TrainConfig:
    """Validate a mapping (a parsed TOML document); ConfigError naming every bad key (`from_env`: the
    [ghpo] keys that came from GHPO_ALGORITHM_* variables, named as such)."""
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(error, from_env) for error in exc.errors()]
        raise ConfigError(f"invalid trainer config {source}:\n  " + "\n  ".join(lines)) from None


def _same_setting(key: str, a: Any, b: Any) -> bool:
    """Whether two raw values of one GHPO key mean the same setting ([0.5] and (0.5,), 20 and 20.0)."""
    try:
        return getattr(GHPOConfig(**{key: a}), key) == getattr(GHPOConfig(**{key: b}), key)
    except ValidationError:
        return a == b  # one is invalid: parse_config reports it


def algorithm_from_environment(
    data: dict[str, Any], environ: Mapping[str, str], source: str
) -> frozenset[str]:
    """Lay the GHPO_ALGORITHM_* variables over the [ghpo] keys `data` leaves out; returns the keys they
    gave. ConfigError for a variable that is no GHPO setting, or a key the file sets to another value."""
    try:
        values = algorithm_env.from_environment(environ)
    except algorithm.ConfigError as exc:
        raise ConfigError(f"invalid trainer config {source}: {exc}") from None
    section = data.setdefault("ghpo", {}) if values else None
    if not isinstance(section, dict):
        return frozenset()  # no variables, or a [ghpo] that is not a table: parse_config reports it
    for key, value in values.items():
        if key in section and not _same_setting(key, section[key], value):
            raise ConfigError(
                f"invalid trainer config {source}: ghpo.{key} = {algorithm_env.env_text(section[key])} in the "
                f"file but {algorithm_env.env_name(key)}={algorithm_env.env_text(value)} in the environment; "
                "set it in one place"
            )
    added = frozenset(key for key in values if key not in section)
    section.update({key: values[key] for key in added})
    return added


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> TrainConfig:
    """The config file at `path`, with the token and GHPO settings `environ` (default: this process's
    environment) gives."""
    path = Path(path)
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read trainer config {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"trainer config {path} is not valid TOML: {exc}") from None
    token = environ.get(TOKEN_ENV)
    if token and "token" not in data.get("services", {}):  # secrets stay out of config files
        data.setdefault("services", {})["token"] = token
    from_env = algorithm_from_environment(data, environ, str(path))
    return parse_config(data, str(path), from_env)
