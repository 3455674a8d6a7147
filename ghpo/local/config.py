"""The config of `ghpo run`: one TOML file (or none: the tiny CPU default) for the whole local system.

What it is for: one place that fixes the GHPO settings every component must agree on (hint ladder, cold
start, group size, advantage convention), so the broker, the rollout server and the trainer cannot
drift apart; plus the run's model, data (source, field mapping, levels, held-out rows), prompt template,
budget, evaluation and the few service knobs a local run needs.
`[ghpo]`, `[optim]` and `[deepspeed]` are the trainer's own sections, passed through; where `ghpo run`
sets its own defaults in them (no cold start, a constant lr of 5e-5 after 5 warm-up steps, micro-batches
sized from a memory estimate ("auto": at most 64 rows) and grouped by length, since GHPO's long hinted
prompts would otherwise set the padded width of most of them), a section given in the file is laid over
those key by key, so `[optim] lr = 1e-3` keeps the constant schedule instead of falling back to the
trainer's cosine one. Unknown sections and keys are errors naming `section.key`. Each section's docstring
is the line `ghpo run --help` shows for it; `ghpo run --print-config` prints them all with their defaults.

What it deliberately does not do: start anything (stack.py), or expose every service setting (a real
deployment sets those through compose or Kubernetes).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ghpo.shared.algorithm.config import GHPOConfig
from ghpo.shared.algorithm.hints import HINT_SEPARATOR
from ghpo.shared.data.benchmarks import BENCHMARKS
from ghpo.shared.data.loaders import FieldMapping, MappingError
from ghpo.shared.data.selection import DataSpec
from ghpo.shared.data.template import PromptTemplate
from ghpo.shared.schemas.broker import PolicyName
from ghpo.trainer.train.config import DeepSpeedSection, LoraSection, OptimSection

EVAL_CHOICES = ("arith", "heldout", "off", *(f"benchmark:{name}" for name in BENCHMARKS))
PREPARED_MODELS = ("smollm2",)  # [model] path names that `ghpo models prepare` makes


class RunConfigError(ValueError):
    """The run config is invalid; the message names each bad key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunSection(_Section):
    """Budget (steps, minutes, completions), seed, checkpoints, evaluation, export at the end."""

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
    eval: str = Field(
        "arith",
        description="In-run evaluation (no hints; greedy, and sampled with eval_samples): 'arith' (the synthetic task's held-out split), "
        "'benchmark:NAME' (math500, aime24, amc23, minerva, olympiadbench), 'heldout' (the data.heldout "
        "rows of the training source) or 'off'.",
    )
    eval_every: int = Field(20, ge=1, le=10**7, description="Steps between held-out evaluations.")
    eval_samples: int = Field(
        4,
        ge=0,
        le=64,
        description="Completions per held-out problem at temperature 1 for the sampled accuracy (their mean "
        "accuracy, avg@k) beside the greedy one; 0: greedy only.",
    )
    eval_per_level: int = Field(
        200, ge=1, le=100_000, description="eval = 'arith': problems per level (level 1 has 15)."
    )
    eval_levels: list[int] = Field(
        [2, 4], min_length=1, max_length=16, description="eval = 'arith': the levels evaluated."
    )
    eval_limit: int | None = Field(
        None, ge=1, le=1_000_000, description="eval = 'benchmark:NAME' or 'heldout': first N problems only."
    )
    export: bool = Field(
        True, description="At the end, write the trained policy as a Hugging Face folder in <run_dir>/export."
    )
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

    @field_validator("eval")
    @classmethod
    def _known_eval(cls, value: str) -> str:
        if value not in EVAL_CHOICES:
            raise ValueError(f"must be one of {', '.join(EVAL_CHOICES)}")
        return value


class ModelSection(_Section):
    """The policy: a Hugging Face model folder (with a chat template), a prepared name, or the tiny model."""

    path: str | None = Field(
        None,
        max_length=4096,
        description="Hugging Face model folder, or 'smollm2' (made offline by `ghpo models prepare "
        "smollm2`); empty: the tiny model (shipped in trainer/tiny/model).",
    )
    lora: LoraSection | None = Field(
        None, description="Train LoRA adapters instead of every weight ([model.lora]; absent: full)."
    )


class DataSection(_Section):
    """Training prompts: the source, its field mapping, the levels kept, rows held out for evaluation."""

    dataset: str = Field(
        "arith",
        min_length=1,
        max_length=4096,
        description="'arith' (synthetic task), a benchmark name (math500, aime24, amc23, minerva, "
        "olympiadbench), a JSONL/JSON/Parquet file, a saved dataset folder or a Hugging Face dataset name.",
    )
    split: str | None = Field(None, max_length=128, description="Split of a Hugging Face dataset.")
    config: str | None = Field(None, max_length=128, description="Configuration of a Hugging Face dataset.")
    map: str = Field(
        "",
        max_length=1024,
        description="Field mapping, as `ghpo data inspect --map`: problem=question,answer=final_answer "
        "(fields: problem, answer, solution, id, level, meta; 'answer=' takes the last \\boxed{} of the "
        "solution). Hints need a solution column.",
    )
    levels: list[int] = Field(
        [], max_length=64, description="Keep only rows of these levels (a mapped level column); [] keeps all."
    )
    heldout: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="Rows held out of training, by a hash of their id (for eval = 'heldout').",
    )
    limit: int | None = Field(
        None, ge=1, le=10**8, description="Train on the first N rows left after the hold-out."
    )
    # Where GHPO is meant to act (docs/tiny-world.md): level 4, which the tiny model samples right 2.5% of
    # the time, so at most one plain group of 8 in five holds a success (GRPO's signal is sparse) while
    # the hint ladder turns most all-wrong groups into mixed ones.
    arith_levels: list[int] = Field([4], min_length=1, max_length=16, description="arith levels.")
    # Distinct problems per level, so a 13-minute run sees each about once (no memorised sums).
    arith_per_level: int = Field(
        2000, ge=1, le=1_000_000, description="arith training problems per level (distinct, train split)."
    )

    @field_validator("map")
    @classmethod
    def _mapping_parses(cls, value: str) -> str:
        try:
            FieldMapping().with_overrides(value)
        except MappingError as exc:
            raise ValueError(str(exc)) from None
        return value

    def spec(self, seed: int) -> DataSpec:
        """The selection every component reads (ghpo.shared.data.selection)."""
        return DataSpec(
            dataset=self.dataset,
            split=self.split,
            config=self.config,
            mapping=self.map,
            levels=tuple(self.levels),
            heldout=self.heldout,
            limit=self.limit,
            arith_levels=tuple(self.arith_levels),
            arith_per_level=self.arith_per_level,
            seed=seed,
        )


class PromptSection(_Section):
    """How a problem becomes a chat prompt, in training and in evaluation alike."""

    system: str = Field("", max_length=8192, description="System turn of every prompt; empty: none.")
    instruction: str = Field(
        "",
        max_length=8192,
        description="Appended to every problem in the user turn, before any hint, e.g. '\\nPlease reason step "
        "by step, and put your final answer within \\\\boxed{}.'; empty: the problem alone (the tiny model).",
    )
    hint_separator: str = Field(
        HINT_SEPARATOR, min_length=1, max_length=8192, description="Text between the problem and its hint."
    )

    def template(self) -> PromptTemplate:
        return PromptTemplate(self.system, self.instruction, self.hint_separator)


class RolloutSection(_Section):
    """Sampling: group size G, groups per batch, completion length, temperature, staleness bound."""

    group_size: int = Field(8, ge=2, le=512, description="G: completions per prompt.")
    batch_groups: int = Field(16, ge=1, le=4096, description="Groups per training batch.")
    max_tokens: int = Field(96, ge=1, le=131_072, description="Most completion tokens.")
    temperature: float = Field(1.0, gt=0.0, le=10.0, description="Sampling temperature.")
    max_policy_lag: int = Field(1, ge=0, le=1000, description="Staleness bound, in policy versions.")
    max_concurrent_steps: int = Field(2, ge=1, le=256, description="GHPO steps generated at once.")
    dynamic_sampling: bool = Field(
        False, description="DAPO dynamic sampling: drop groups whose rewards are all equal, draw more."
    )


# Completions per step from which the trainer takes every core (services.trainer_threads = 0). On 2 cores
# (bench/peer_trl.py --sides time): 8 x 8 trains at 1.09 s/step on one thread and 1.22 on two; 64 x 8 at
# 14.35 s/step on one and 9.83 on two.
ALL_CORES_COMPLETIONS = 256


class ServicesSection(_Section):
    """The local services: context length, KV cache, verifier workers, hint policy, trainer threads."""

    max_model_len: int = Field(512, ge=16, le=131_072, description="Inference context length.")
    kv_cache_gib: int = Field(1, ge=1, le=1024, description="Inference KV cache (CPU), GiB.")
    verifier_workers: int = Field(1, ge=1, le=256, description="math-verify worker processes.")
    broker_policy: PolicyName = Field(
        "ghpo",
        description="Hint policy; 'none' is plain GRPO (no hints).",
    )
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
        description="torch threads of the trainer; 0: every usable core when a step trains on at least "
        f"{ALL_CORES_COMPLETIONS} completions (training then outlasts generating the next batch, and the "
        "inference engine's core would sit idle), else one fewer (the engine's worker keeps the last one "
        "busy, and OpenMP threads that share a core with it wait on each other).",
    )


def usable_cores() -> int:
    """The cores this process may run on (its affinity, as a container's cpuset limits it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class RunDeepSpeedSection(DeepSpeedSection):
    """ZeRO stage, precision, gradient checkpointing, micro-batch size ('auto': sized from memory)."""

    micro_batch_size: int | Literal["auto"] = Field(  # type: ignore[assignment]
        "auto",
        description="Rows per forward/backward; 'auto': the most (up to 64) whose estimated memory fits this "
        "machine (ghpo.local.memory); a number that cannot fit is refused before the run starts.",
    )

    @field_validator("micro_batch_size")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 4096:
            raise ValueError("must be 'auto' or in 1..4096")
        return value


# `ghpo run`'s own defaults inside the trainer's sections (the rest are the trainer's defaults).
RUN_DEFAULTS: dict[str, dict[str, Any]] = {
    "ghpo": {"cold_start_steps": 0},
    # 1e-4: the study's rate on the tiny world (docs/results.md), where GRPO takes level 4 from 0 to 45%
    # greedy within 1,000 completions of 16 x 8.
    "optim": {"lr": 1e-4, "warmup_steps": 5, "schedule": "constant"},
    "deepspeed": {"micro_batch_size": "auto", "group_by_length": True},
}


class RunConfig(_Section):
    run: RunSection = Field(default_factory=RunSection)
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    prompt: PromptSection = Field(default_factory=PromptSection)
    ghpo: GHPOConfig = Field(default_factory=lambda: GHPOConfig(**RUN_DEFAULTS["ghpo"]))
    rollout: RolloutSection = Field(default_factory=RolloutSection)
    optim: OptimSection = Field(default_factory=lambda: OptimSection(**RUN_DEFAULTS["optim"]))
    deepspeed: RunDeepSpeedSection = Field(
        default_factory=lambda: RunDeepSpeedSection(**RUN_DEFAULTS["deepspeed"])
    )
    services: ServicesSection = Field(default_factory=ServicesSection)

    def trainer_threads(self) -> int:
        """The trainer's torch threads (see `services.trainer_threads`)."""
        if self.services.trainer_threads:
            return self.services.trainer_threads
        cores = usable_cores()
        if self.rollout.batch_groups * self.rollout.group_size >= ALL_CORES_COMPLETIONS:
            return cores
        return max(1, cores - 1)

    @model_validator(mode="after")
    def _room_for_prompts(self) -> RunConfig:
        if self.rollout.max_tokens >= self.services.max_model_len:
            raise ValueError(
                f"rollout.max_tokens = {self.rollout.max_tokens} leaves no room for a prompt in "
                f"services.max_model_len = {self.services.max_model_len}: raise services.max_model_len or "
                "lower rollout.max_tokens"
            )
        return self

    @model_validator(mode="after")
    def _heldout_eval_has_rows(self) -> RunConfig:
        if self.run.eval == "heldout" and (self.data.heldout == 0 or self.data.dataset == "arith"):
            raise ValueError(
                "run.eval = 'heldout' evaluates rows held out of the training source: set data.heldout to "
                "a number of rows (and a dataset other than 'arith', which has eval = 'arith')"
            )
        return self

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
            key = ".".join(str(part) for part in error["loc"])
            if error["type"] == "extra_forbidden":
                lines.append(f"{key}: unknown key")
            elif not key:  # a check across sections: its message names the keys
                lines.append(str(error["msg"]).removeprefix("Value error, "))
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
