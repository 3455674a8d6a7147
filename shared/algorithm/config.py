"""GHPOConfig: every knob of the GHPO algorithm, bounded and documented (torch-free).

What it is for: one validated object that the trainer, the rollout orchestrator and the guidance broker
share, so that the hint ladder, the cold start and the loss settings cannot drift between them.
Defaults reproduce the paper / reference code (ladder 0.25/0.5/0.75, eps 1e-4, bnpo loss, clip 0.2/0.2,
no KL) except `cold_start_steps`, which follows the paper (20) rather than the released config (0).

Every component takes the whole object, as one nested settings block (`ghpo`): the broker and the rollout
server from the GHPO_ALGORITHM_* variables (environment.py), the trainer from its config file's `[ghpo]`
section and the same variables; the ladder's length is bounded by the levels the broker's wire schema
carries.

What it deliberately does not do: read files or the environment (environment.py and the trainer's config
loader do), or hold optimiser / model hyperparameters or service-specific knobs (the broker's policy,
the rollout server's group size).
"""

from __future__ import annotations

import itertools
import typing
from collections.abc import Mapping
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ghpo.shared.schemas.broker import MAX_LEVELS

LossType = Literal["bnpo", "grpo", "dapo", "dr_grpo"]
HintCut = Literal["char", "token", "line"]
ConditionOn = Literal["hinted", "plain"]
PlainCorrection = Literal["truncated_is", "none"]
ImportanceLevel = Literal["token", "sequence"]

MAX_HINT_LEVELS = MAX_LEVELS - 1  # levels 0..L travel as the broker schema's Level (0..MAX_LEVELS-1)


class ConfigError(ValueError):
    """A GHPO config value is invalid; the message names each bad key and its allowed range."""


class GHPOConfig(BaseModel):
    """The GHPO algorithm settings. Construct with keywords or `GHPOConfig.from_mapping(dict)`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hint_ladder: tuple[float, ...] = Field(
        (0.25, 0.5, 0.75),
        min_length=1,
        max_length=MAX_HINT_LEVELS,
        description="Hint ratios tried in order on a difficult group; strictly increasing, each in (0, 1).",
    )
    cold_start_steps: int = Field(
        20,
        ge=0,
        le=1_000_000,
        description="Optimizer steps of plain GRPO before difficulty detection starts.",
    )
    hint_cut: HintCut = Field(
        "char", description="Where the worked solution is cut: char (reference), token, line."
    )
    condition_on: ConditionOn = Field(
        "hinted",
        description="Context of a hinted group's log-probs: the hinted prompt, or the plain (IS-weighted)",
    )
    plain_is_cap: float = Field(
        2.0,
        ge=1.0,
        le=1000.0,
        description="Cap on the plain/hinted importance weight when condition_on=plain.",
    )
    plain_correction: PlainCorrection = Field(
        "truncated_is",
        description="Weight of a hinted completion trained on the plain prompt: truncated_is (per token "
        "min(plain/hinted ratio, plain_is_cap), the Guide method) or none (weight 1: what the reference code "
        "does to most rescued groups; biased toward the hinted policy, but the hard tokens keep their gradient).",
    )
    keep_unhinted: int = Field(
        0,
        ge=0,
        le=64,
        description="Completions of a group's failed unhinted round kept in its rescued group, in place of as "
        "many hinted ones (NuRL keeps 1); they train on the plain prompt and show how much the policy needs "
        "the hint. 0 = the paper. Must be smaller than G.",
    )
    advantage_eps: float = Field(1e-4, gt=0.0, le=1.0, description="Added to the group std before dividing.")
    scale_advantages: bool = Field(
        True, description="Divide advantages by the group std (False: mean-centre only)."
    )
    loss_type: LossType = Field(
        "bnpo",
        description="Token normalisation: bnpo (micro-batch token mean, reference code), "
        "grpo (sequence mean then batch mean), dapo (global token mean with a given normaliser), "
        "dr_grpo (sum / (batch * max completion length)).",
    )
    eps_low: float = Field(
        0.2, ge=0.0, lt=1.0, description="Lower clip: ratios below 1 - eps_low are clipped."
    )
    eps_high: float = Field(
        0.2, ge=0.0, le=10.0, description="Upper clip: ratios above 1 + eps_high are clipped."
    )
    beta: float = Field(
        0.0, ge=0.0, le=10.0, description="Weight of the k3 KL estimate to the reference policy."
    )
    kl_ratio_correction: bool = Field(
        False,
        description="Multiply the k3 KL by the policy ratio (unbiased reverse-KL gradient, DeepSeek-V3.2; "
        "TRL's use_bias_correction_kl). Off = the reference code's plain k3.",
    )
    tis_cap: float | None = Field(
        None,
        ge=1.0,
        le=1000.0,
        description="Truncated importance sampling cap against the engine's behaviour log-probs; None = off.",
    )
    tis_level: ImportanceLevel = Field(
        "token", description="Truncated IS weight per token (verl TIS) or one per sequence."
    )
    mask_truncated_completions: bool = Field(
        False, description="Exclude completions cut at the max length from the loss."
    )

    @field_validator("hint_ladder", mode="after")
    @classmethod
    def _ladder_is_increasing_in_open_unit_interval(cls, ladder: tuple[float, ...]) -> tuple[float, ...]:
        for ratio in ladder:
            if not 0.0 < ratio < 1.0:
                raise ValueError(f"every hint ratio must be in (0, 1), got {ratio}")
        for lower, upper in itertools.pairwise(ladder):
            if not lower < upper:
                raise ValueError(f"hint ratios must be strictly increasing, got {lower} then {upper}")
        return ladder

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> GHPOConfig:
        """Validate a plain mapping (from TOML/YAML/CLI); raise ConfigError naming key and allowed range."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            lines = []
            for error in exc.errors():
                key = ".".join(str(part) for part in error["loc"]) or "<config>"
                top = str(error["loc"][0]) if error["loc"] else ""
                allowed = allowed_range(top) if top in cls.model_fields else "no such key"
                lines.append(f"{key}: {error['msg']} (got {error.get('input')!r}; allowed: {allowed})")
            raise ConfigError("invalid GHPO config:\n  " + "\n  ".join(lines)) from exc


def allowed_range(key: str) -> str:
    """Human-readable allowed values of a GHPOConfig field, built from its declared bounds."""
    field = GHPOConfig.model_fields[key]
    if key == "hint_ladder":
        return f"1 to {MAX_HINT_LEVELS} strictly increasing ratios, each in (0, 1)"
    choices = _literal_choices(field.annotation)
    if choices:
        return " | ".join(choices)
    parts = []
    for bound in field.metadata:
        if isinstance(bound, annotated_types.Ge):
            parts.append(f">= {bound.ge}")
        elif isinstance(bound, annotated_types.Gt):
            parts.append(f"> {bound.gt}")
        elif isinstance(bound, annotated_types.Le):
            parts.append(f"<= {bound.le}")
        elif isinstance(bound, annotated_types.Lt):
            parts.append(f"< {bound.lt}")
    text = (
        " and ".join(parts) if parts else (field.annotation.__name__ if field.annotation is bool else "any")
    )
    if _allows_none(field.annotation):
        text += " (or null = off)"
    return text


def _literal_choices(annotation: Any) -> list[str]:
    if typing.get_origin(annotation) is Literal:
        return [str(choice) for choice in typing.get_args(annotation)]
    return []


def _allows_none(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)
