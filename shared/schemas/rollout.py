"""Wire schemas of the rollout server API (`/v1`): scored GHPO groups, batches, acknowledgements.

A `ScoredGroup` is one prompt's final group of G completions after guidance: the hint level it ended at
(0 = no hint, k = the k-th ladder ratio), the prompt token ids it should be trained on (hinted or plain,
per `condition_on`), and per completion the sampled token ids, the behaviour log-probs returned by
inference, the reward, the raw accuracy, the group advantage and the policy version it was sampled
under. The trainer pulls `GET /v1/batches/next` (a `Batch` of whole groups; 204 when none is ready),
and `POST /v1/batches/{batch_id}/ack`s it; an unacknowledged batch is redelivered after a timeout with
the same `batch_id` (the trainer drops duplicates by id). This module is provisional: the rollout
service may add fields, but not loosen bounds.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from ghpo.shared.schemas.common import (
    Id,
    LogProb,
    PolicyVersion,
    Score,
    Text,
    Timestamp,
    TokenIds,
    WireModel,
)
from ghpo.shared.schemas.inference import FinishReason

MAX_GROUP_SIZE = 512
MAX_GROUPS_PER_BATCH = 4096
MAX_HINT_LEVELS = 16


class DropReason(StrEnum):
    """Why a group was dropped whole (counted per reason, never half-trained)."""

    stale_policy = "stale_policy"  # older than max_policy_lag versions when it would be delivered
    inference_failed = "inference_failed"
    verifier_failed = "verifier_failed"
    gold_unparseable = "gold_unparseable"  # the gold answer cannot be parsed: never hinted, reported
    prompt_too_long = "prompt_too_long"
    shutdown = "shutdown"
    broker_failed = "broker_failed"  # no plan could be had from the guidance broker
    rewound = "rewound"  # queued or in flight when the cursor was moved (PUT /v1/cursor)
    lease_lost = "lease_lost"  # its claim on the position expired and another server took it over
    internal_error = "internal_error"  # an unexpected failure in the rollout server (logged)
    no_signal = "no_signal"  # dynamic sampling (DAPO): every reward of the group equal, no advantage signal


class Completion(WireModel):
    token_ids: TokenIds
    behaviour_logprobs: list[LogProb] = Field(max_length=131_072, description="Per token, from inference.")
    finish_reason: FinishReason
    reward: Score = Field(description="Total shaped reward (accuracy + format weight x format).")
    accuracy: float = Field(ge=0.0, le=1.0, allow_inf_nan=False, description="Raw correctness, 1.0 or 0.0.")
    advantage: Score = Field(description="Group advantage of this completion in its final group.")
    policy_version: PolicyVersion = Field(description="Weights version the completion was sampled under.")
    text: Text | None = None
    unhinted: bool = Field(
        False,
        description="Sampled from the plain prompt in a group that ended hinted (ghpo.keep_unhinted): "
        "trained on the group's `plain_prompt_token_ids`.",
    )

    @model_validator(mode="after")
    def _aligned(self) -> Completion:
        if len(self.behaviour_logprobs) != len(self.token_ids):
            raise ValueError(
                f"behaviour_logprobs has {len(self.behaviour_logprobs)} entries for {len(self.token_ids)} tokens"
            )
        return self


class ScoredGroup(WireModel):
    group_id: Id = Field(description="Unique per (epoch, prompt, rollout server); used for de-duplication.")
    prompt_id: Id
    epoch: int = Field(ge=0, le=1_000_000)
    hint_level: int = Field(ge=0, le=MAX_HINT_LEVELS, description="0 = no hint; k = k-th ladder ratio.")
    hint_ratio: float = Field(ge=0.0, lt=1.0, allow_inf_nan=False, description="ω of the final round.")
    condition_on: Literal["hinted", "plain"] = "hinted"
    prompt_token_ids: TokenIds = Field(description="Context the completions are trained on.")
    plain_prompt_token_ids: TokenIds | None = Field(
        None, description="The unhinted prompt: the context of the completions flagged `unhinted`."
    )
    temperature: float = Field(
        1.0,
        gt=0.0,
        le=10.0,
        allow_inf_nan=False,
        description="Sampling temperature of the completions; the trainer takes log-probs of the policy at "
        "this temperature (logits / T), as the samples came from it.",
    )
    completions: list[Completion] = Field(min_length=1, max_length=MAX_GROUP_SIZE)
    generation_rounds: int = Field(1, ge=1, le=MAX_HINT_LEVELS + 1)
    plain_accuracy: float | None = Field(
        None, ge=0.0, le=1.0, allow_inf_nan=False, description="Mean accuracy of the unhinted round."
    )
    created_at: Timestamp

    @model_validator(mode="after")
    def _hint_consistent(self) -> ScoredGroup:
        if (self.hint_level == 0) != (self.hint_ratio == 0.0):
            raise ValueError("hint_ratio must be 0 exactly when hint_level is 0")
        if any(c.unhinted for c in self.completions) and (
            self.hint_level == 0 or self.plain_prompt_token_ids is None
        ):
            raise ValueError(
                "a completion flagged unhinted needs a hinted group (hint_level > 0) that carries "
                "plain_prompt_token_ids"
            )
        return self

    @property
    def policy_versions(self) -> tuple[int, int]:
        """(oldest, newest) policy version among the completions."""
        versions = [c.policy_version for c in self.completions]
        return min(versions), max(versions)


class Batch(WireModel):
    batch_id: Id
    groups: list[ScoredGroup] = Field(min_length=1, max_length=MAX_GROUPS_PER_BATCH)
    delivery: int = Field(1, ge=1, le=1_000_000, description="1 on first delivery, +1 per redelivery.")
    created_at: Timestamp


class BatchAck(WireModel):
    """Body of `POST /v1/batches/{batch_id}/ack`."""

    policy_version: PolicyVersion = Field(description="Trainer's policy version after training on the batch.")


class RolloutCursor(WireModel):
    """`GET/PUT /v1/cursor`: a position in the epoch's shuffled prompt order.

    GET answers the *trained* cursor: the first position not yet acknowledged or dropped (everything
    before it is settled), and the groups acknowledged so far. PUT moves drawing there; what was queued
    or in flight is dropped as `rewound`, and `acked_groups`, when given, is set back with it: a trainer
    resuming from a checkpoint takes back the acknowledgements its lost steps made, so the count stays
    that of the groups the resumed model was trained on.
    """

    epoch: int = Field(ge=0, le=1_000_000)
    position: int = Field(ge=0, le=10**9, description="Index into the epoch's shuffled order.")
    acked_groups: int | None = Field(
        None, ge=0, le=10**12, description="Groups acknowledged up to this cursor (None: leave as is)."
    )


class BatchAckResult(WireModel):
    batch_id: Id
    acknowledged: bool = Field(description="False when the id was unknown or already acknowledged.")
    cursor: RolloutCursor | None = Field(
        None, description="The trained cursor (with acked_groups) right after this acknowledgement."
    )


class RolloutStatus(WireModel):
    """`GET /v1/status`."""

    policy_version: PolicyVersion
    queued_groups: int = Field(ge=0, le=10**9)
    in_flight_groups: int = Field(ge=0, le=10**9)
    unacked_batches: int = Field(ge=0, le=10**9)
    epoch: int = Field(ge=0, le=1_000_000)
    dropped: dict[DropReason, int] = Field(default_factory=dict, max_length=len(DropReason))
    acked_groups: int = Field(
        0, ge=0, le=10**12, description="Groups in acknowledged batches (a cursor rewind sets it back)."
    )
    completions_generated: int = Field(
        0,
        ge=0,
        le=10**15,
        description="Completions generated in all rounds (hinted, and dropped groups' too), all time.",
    )
    groups_sampled: int = Field(
        0,
        ge=0,
        le=10**12,
        description="Groups whose last round was scored (then queued or dropped), all time.",
    )
    difficult_groups: int = Field(
        0, ge=0, le=10**12, description="Sampled groups that ended hinted or were all wrong without a hint."
    )
    no_signal_groups: int = Field(
        0, ge=0, le=10**12, description="Sampled groups whose rewards were all equal (no advantage signal)."
    )
    trained_cursor: RolloutCursor | None = Field(None, description="As GET /v1/cursor.")
    draw_cursor: RolloutCursor | None = Field(None, description="The next position to be drawn.")


class PolicyVersionUpdate(WireModel):
    """`POST /v1/policy-version`: the trainer announces the version inference now serves."""

    policy_version: PolicyVersion
