"""The config of `ghpo run`: one TOML file (or none: the tiny CPU default) for the whole local system.

What it is for: one place that fixes the GHPO settings every component must agree on (hint ladder, cold
start, group size, advantage convention), so the broker, the rollout server and the trainer cannot
drift apart; plus the run's budget, evaluation cadence and the few service knobs a local run needs.
`[ghpo]`, `[optim]` and `[deepspeed]` are the trainer's own sections, passed through; where `ghpo run`
sets its own defaults in them (no cold start, a constant lr of 3e-4 after 5 warm-up steps, micro-batches
of 64 rows grouped by length, since GHPO's long hinted prompts would otherwise set the padded width of
most of them), a section given in the file is laid over those key by key, so `[optim] lr = 1e-3` keeps
the constant schedule instead of falling back to the trainer's cosine one. Unknown sections and keys are
errors naming `section.key`.

What it deliberately does not do: start anything (stack.py), or expose every service setting (a real
deployment sets those through compose or Kubernetes).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ghpo.shared.algorithm.config import GHPOConfig
from ghpo.trainer.train.config import DeepSpeedSection, OptimSection


class RunConfigError(ValueError):
    """The run config is invalid; the message names each bad key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunSection(_Section):
    steps: int = Field(150, ge=1, le=10**8, description="Optimizer steps in all (a resume continues).")
    max_minutes: float = Field(
        13.0, gt=0.0, le=10**6, description="Wall-clock budget of training; the run stops cleanly past it."
    )
    max_rollouts: int | None = Field(
        None,
        ge=1,
        le=10**12,
        description="Generation budget: the run stops cleanly once the rollout server has generated this "
        "many completions (every round, hinted ones and dropped groups' included). None: no budget.",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed of the trainer, the data order and sampling.")
    checkpoint_every: int = Field(25, ge=1, le=10**7, description="Steps between checkpoints.")
    eval_every: int = Field(20, ge=1, le=10**7, description="Steps between held-out evaluations.")
    eval_per_level: int = Field(
        200, ge=1, le=100_000, description="Held-out problems per level per evaluation (level 1 has 15)."
    )
    eval_levels: list[int] = Field([1, 2, 3], min_length=1, max_length=16, description="arith levels.")
    stop_grace_s: float = Field(
        30.0,
        ge=1.0,
        le=86_400.0,
        description="Least time the trainer is given to finish its step and checkpoint when the run stops "
        "(Ctrl-C, a budget); the grace is the larger of this and 2 x (median step + last checkpoint).",
    )
    crash_loop_restarts: int = Field(
        3, ge=0, le=1000, description="Restarts of one process allowed within crash_loop_window_s."
    )
    crash_loop_window_s: float = Field(
        300.0, gt=0.0, le=86_400.0, description="Window of the crash-loop rule; one more crash stops the run."
    )


class ModelSection(_Section):
    path: str | None = Field(
        None, max_length=4096, description="Hugging Face model folder; empty: the tiny model (built once)."
    )


class DataSection(_Section):
    dataset: str = Field(
        "arith", min_length=1, max_length=4096, description="'arith' or a JSONL/Parquet path / HF dataset."
    )
    split: str | None = Field(None, max_length=128, description="Split of a HF dataset.")
    # Level 2 is where the tiny model starts poor (41% greedy) yet samples enough right answers to learn from.
    arith_levels: list[int] = Field([2], min_length=1, max_length=16, description="arith levels.")
    # Most of level 2's ~2,300 training-split problems: with 400 the run saw each ~13 times and its held-out
    # gain stopped near +9 points (memorised sums); 2,000 gave +11 to +14.5 in the same time (3 seeds).
    arith_per_level: int = Field(
        2000, ge=1, le=1_000_000, description="arith training problems per level (distinct, train split)."
    )


class RolloutSection(_Section):
    group_size: int = Field(8, ge=2, le=512, description="G: completions per prompt.")
    batch_groups: int = Field(64, ge=1, le=4096, description="Groups per training batch.")
    max_tokens: int = Field(96, ge=1, le=131_072, description="Most completion tokens.")
    temperature: float = Field(1.0, gt=0.0, le=10.0, description="Sampling temperature.")
    max_policy_lag: int = Field(1, ge=0, le=1000, description="Staleness bound, in policy versions.")
    max_concurrent_steps: int = Field(2, ge=1, le=256, description="GHPO steps generated at once.")
    dynamic_sampling: bool = Field(
        False, description="DAPO dynamic sampling: drop groups whose rewards are all equal, draw more."
    )


class ServicesSection(_Section):
    max_model_len: int = Field(512, ge=16, le=131_072, description="Inference context length.")
    kv_cache_gib: int = Field(1, ge=1, le=1024, description="Inference KV cache (CPU), GiB.")
    verifier_workers: int = Field(1, ge=1, le=256, description="math-verify worker processes.")
    broker_policy: str = Field("ghpo", pattern="^(ghpo|ghpo-memory|none)$", description="Hint policy.")
    start_timeout_s: float = Field(300.0, gt=0.0, le=7200.0, description="Time a service has to be ready.")
    outage_budget_s: float = Field(
        600.0,
        ge=0.0,
        le=86_400.0,
        description="How long the trainer waits for a service being restarted before it stops.",
    )
    trainer_threads: int = Field(
        0,
        ge=0,
        le=1024,
        description="torch threads of the trainer; 0: one fewer than the usable cores (at least 1), the "
        "inference engine's worker keeps the last one busy, and OpenMP threads that share a core with it "
        "wait on each other.",
    )

    def resolved_trainer_threads(self) -> int:
        return self.trainer_threads or max(1, usable_cores() - 1)


def usable_cores() -> int:
    """The cores this process may run on (its affinity, as a container's cpuset limits it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# `ghpo run`'s own defaults inside the trainer's sections (the rest are the trainer's defaults).
RUN_DEFAULTS: dict[str, dict[str, Any]] = {
    "ghpo": {"cold_start_steps": 0},
    "optim": {"lr": 3e-4, "warmup_steps": 5, "schedule": "constant"},
    "deepspeed": {"micro_batch_size": 64, "group_by_length": True},
}


class RunConfig(_Section):
    run: RunSection = Field(default_factory=RunSection)
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    ghpo: GHPOConfig = Field(default_factory=lambda: GHPOConfig(**RUN_DEFAULTS["ghpo"]))
    rollout: RolloutSection = Field(default_factory=RolloutSection)
    optim: OptimSection = Field(default_factory=lambda: OptimSection(**RUN_DEFAULTS["optim"]))
    deepspeed: DeepSpeedSection = Field(default_factory=lambda: DeepSpeedSection(**RUN_DEFAULTS["deepspeed"]))
    services: ServicesSection = Field(default_factory=ServicesSection)

    @model_validator(mode="before")
    @classmethod
    def _over_run_defaults(cls, data: Any) -> Any:
        """A trainer section from the file is laid over `ghpo run`'s defaults, key by key."""
        if not isinstance(data, dict):
            return data
        return {
            **data,
            **{
                name: {**defaults, **data[name]}
                for name, defaults in RUN_DEFAULTS.items()
                if isinstance(data.get(name), dict)
            },
        }


def parse_run_config(data: dict[str, Any], source: str = "<defaults>") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "<config>"
            if error["type"] == "extra_forbidden":
                lines.append(f"{key}: unknown key")
            else:
                lines.append(f"{key}: {error['msg']} (got {error.get('input')!r})")
        raise RunConfigError(f"invalid run config {source}:\n  " + "\n  ".join(lines)) from None


def load_run_config(path: str | Path | None) -> RunConfig:
    if path is None:
        return parse_run_config({})
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise RunConfigError(f"cannot read run config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RunConfigError(f"run config {path} is not valid TOML: {exc}") from None
    return parse_run_config(data, str(path))
