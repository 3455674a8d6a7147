"""Wire schema of the verifier service (`POST /v1/verify`).

A request is a batch of items (completion, gold answer) plus optional reward weights by name; the
response has one result per item, in the request's order. The ceilings here are hard caps of the API;
the service's settings may set lower limits (checked in the service, answered 413/422 naming the limit).
This module does not compute anything.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from ghpo.shared.schemas.common import Id, Name, Score, WireModel

MAX_BATCH_ITEMS = 65_536
MAX_COMPLETION_CHARS = 4 * 1024 * 1024
MAX_GOLD_CHARS = 1024 * 1024
MAX_REWARDS = 32
MAX_EXTRACTED_CHARS = 1024
MAX_DETAIL_CHARS = 512

VerifyStatus = Literal["ok", "no_answer", "unparsable_gold", "timeout", "error"]
# Bounded so that a weighted sum of MAX_REWARDS rewards in [-1, 1] stays inside the Score range. Never
# negative: a weight says how much a reward counts; a penalty is a reward whose value is negative
# (ghpo.shared.scoring.rewards explains why).
Weight = Annotated[float, Field(ge=0.0, le=1000.0, allow_inf_nan=False)]
Weights = Annotated[dict[Name, Weight], Field(max_length=MAX_REWARDS)]


class VerifyItem(WireModel):
    completion: Annotated[str, StringConstraints(max_length=MAX_COMPLETION_CHARS)] = Field(
        description="The model's completion text."
    )
    gold: Annotated[str, StringConstraints(max_length=MAX_GOLD_CHARS)] = Field(
        description="The gold answer (bare LaTeX like '\\frac{1}{2}', or a text whose last \\boxed{} is it)."
    )
    id: Id | None = Field(default=None, description="Caller's id for the item, echoed in the result.")
    weights: Weights | None = Field(
        default=None, description="Rewards and weights for this item; overrides the request's."
    )


class VerifyRequest(WireModel):
    items: Annotated[list[VerifyItem], Field(min_length=1, max_length=MAX_BATCH_ITEMS)] = Field(
        description="The batch; results come back in the same order."
    )
    weights: Weights | None = Field(
        default=None,
        description="Rewards to compute and their weights, e.g. {'accuracy': 1.0, 'format': 0.5}; "
        "the service default when absent. total = sum(weight * reward).",
    )


class VerifyResult(WireModel):
    id: Id | None = Field(default=None, description="The item's id, if it had one.")
    status: VerifyStatus = Field(
        description="ok: scored; no_answer: no single final answer (see detail; accuracy 0, format still "
        "scored); unparsable_gold: the gold does not parse; timeout: past the deadline; error: failed."
    )
    rewards: Annotated[dict[Name, Score], Field(max_length=MAX_REWARDS)] = Field(
        description="Each requested reward's value; all 0 unless status is ok or no_answer."
    )
    total: Score = Field(description="Weighted sum of the rewards.")
    extracted: Annotated[str, StringConstraints(max_length=MAX_EXTRACTED_CHARS)] | None = Field(
        default=None, description="The answer found in the completion (truncated), if any."
    )
    detail: Annotated[str, StringConstraints(max_length=MAX_DETAIL_CHARS)] | None = Field(
        default=None, description="Why the status is not ok."
    )


class VerifyResponse(WireModel):
    results: Annotated[list[VerifyResult], Field(max_length=MAX_BATCH_ITEMS)] = Field(
        description="One result per request item, same order."
    )
    elapsed_s: float = Field(ge=0.0, le=1e6, description="Time the batch spent in the worker pool.")
