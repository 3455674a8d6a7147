"""Wire schema of the guidance broker (`/v1/plan`, `/v1/outcomes`, `/v1/prompts/{id}`, `/v1/stats`,
`/v1/snapshot`, `/v1/algorithm`).

Hint levels are integers: 0 is the plain prompt, level k (1..len(ladder)) appends the first
`ladder[k-1]` fraction of the worked solution. An outcome lists the groups one prompt went through in
one step, in escalation order (e.g. level 0 all wrong, then level 1 with 3 of 8 correct). The ceilings
here are hard caps of the API; the service checks its own (lower) limits and the ladder-dependent rules
(level in range, escalation order) before writing anything. `GET /v1/algorithm` answers the broker's
GHPO settings as a `ghpo.shared.algorithm.config.GHPOConfig` (that model is the schema; it is not
repeated here). This module computes nothing.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ghpo.shared.schemas.common import Id, PolicyVersion, WireModel

MAX_BATCH_PROMPTS = 65_536
MAX_LEVELS = 16  # hint levels including level 0; ladders are 3 rungs in the paper
MAX_GROUP_SIZE = 4096
MAX_STEP = 2**40

Level = Annotated[int, Field(ge=0, lt=MAX_LEVELS)]
Step = Annotated[int, Field(ge=0, le=MAX_STEP)]
Count = Annotated[int, Field(ge=0, le=2**53)]
PolicyName = Literal["ghpo", "ghpo-memory", "ghpo-adaptive", "none"]
HintRatio = Annotated[float, Field(gt=0.0, lt=1.0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class PlanRequest(WireModel):
    step: Step = Field(description="The trainer's optimizer step the prompts are generated for.")
    prompt_ids: list[Id] = Field(
        max_length=MAX_BATCH_PROMPTS, description="Prompts to plan; an id never seen before is a new prompt."
    )


class PromptPlan(WireModel):
    prompt_id: Id
    start_level: Level = Field(description="Hint level of the first group generated this step.")
    max_level: Level = Field(description="Highest level escalation may reach this step (0: no hints).")


class PlanResponse(WireModel):
    step: Step
    policy: PolicyName
    ladder: list[HintRatio] = Field(max_length=MAX_LEVELS, description="Hint ratio of levels 1..len(ladder).")
    plans: list[PromptPlan] = Field(max_length=MAX_BATCH_PROMPTS, description="In request order.")


class LevelResult(WireModel):
    level: Level = Field(description="Hint level this group was generated at.")
    correct: int = Field(ge=0, le=MAX_GROUP_SIZE, description="Rollouts whose accuracy reward is 1.")
    G: int = Field(ge=1, le=MAX_GROUP_SIZE, description="Rollouts in the group.")


class Outcome(WireModel):
    prompt_id: Id
    update_id: Id = Field(
        description="Unique per (prompt, step) outcome; a retried or duplicated outcome with the same id "
        "is applied once."
    )
    step: Step
    policy_version: PolicyVersion
    results: list[LevelResult] = Field(
        min_length=1, max_length=MAX_LEVELS, description="Groups in escalation order; the last is final."
    )


class OutcomesRequest(WireModel):
    outcomes: list[Outcome] = Field(min_length=1, max_length=MAX_BATCH_PROMPTS)


class OutcomeAck(WireModel):
    update_id: Id
    applied: bool = Field(description="False when this update id had already been applied.")


class OutcomesResponse(WireModel):
    applied: Count
    duplicates: Count
    acks: list[OutcomeAck] = Field(max_length=MAX_BATCH_PROMPTS, description="In request order.")


class LevelStats(WireModel):
    level: Level
    groups: Count = Field(description="Groups generated at this level.")
    correct: Count = Field(description="Correct rollouts at this level.")
    wrong: Count = Field(description="Wrong rollouts at this level.")


class PromptState(WireModel):
    prompt_id: Id
    visits: Count = Field(description="Outcomes recorded (one per step the prompt was trained on).")
    levels: list[LevelStats] = Field(max_length=MAX_LEVELS)
    last_informative_level: Level | None = Field(
        description="Last level whose group had non-zero reward variance (neither all wrong nor all right)."
    )
    last_start_level: Level | None
    last_final_level: Level | None
    last_final_correct: Count | None
    last_final_G: Count | None
    last_step: Step | None
    last_policy_version: PolicyVersion | None
    next_plan: PromptPlan = Field(description="What /v1/plan would answer for this prompt at last_step + 1.")


class BrokerStats(WireModel):
    policy: PolicyName
    ladder: list[HintRatio] = Field(max_length=MAX_LEVELS)
    prompts: Count = Field(description="Prompts with at least one outcome.")
    groups: Count = Field(description="Outcomes recorded (final groups).")
    nohint_groups: Count = Field(description="Outcomes whose first group was at level 0.")
    difficult_groups: Count = Field(description="Level-0 groups with every rollout wrong.")
    difficult_fraction: float = Field(ge=0.0, le=1.0, description="difficult_groups / nohint_groups.")
    nohint_accuracy: float = Field(ge=0.0, le=1.0, description="Correct / total rollouts at level 0.")
    zero_advantage_fraction: float = Field(
        ge=0.0, le=1.0, description="Final groups (after hints) all wrong or all right, over groups."
    )
    final_level_groups: list[Count] = Field(max_length=MAX_LEVELS, description="Final groups by level.")
    level_attempts: list[Count] = Field(max_length=MAX_LEVELS, description="Groups generated by level.")
    level_rescues: list[Count] = Field(
        max_length=MAX_LEVELS, description="Groups by level that were not all wrong (rescued at k >= 1)."
    )
    rescue_rate: list[Fraction] = Field(max_length=MAX_LEVELS, description="level_rescues / level_attempts.")
    duplicates: Count = Field(description="Outcomes ignored because their update id was already applied.")


class RestoreResponse(WireModel):
    prompts: Count = Field(description="Prompts in the restored state.")


SnapshotFormat = Literal["ghpo-broker-snapshot/1"]
