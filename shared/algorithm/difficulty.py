"""Difficulty detection and the hint-ladder decision of GHPO (torch-free, plain floats).

A group is *difficult* when every one of its rollouts has accuracy reward 0. The input is the raw
accuracy (correctness) reward only, never the shaped total: a format bonus of 0.5 would make an all-wrong
group look like it had signal. NaN or infinite accuracies are a bug upstream and are rejected loudly.

The step's decision for one prompt, after its group at `level` has been scored:
- detection is off during the cold start (optimizer step < cold_start_steps): plain GRPO, no hint;
- a group that is not difficult is final at its level;
- a difficult group goes one level up the ladder (level k -> k+1) and is regenerated, unless the prompt
  has no worked solution (never hinted) or the ladder is exhausted (the group is trained as it is, with
  zero advantages, exactly like GRPO would).

What this module deliberately does not do: scoring, generation, or remembering levels across steps (the
guidance broker owns that state; it passes the starting level in).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def checked_accuracies(accuracies: Sequence[float]) -> list[float]:
    """The group's accuracy rewards as floats; raise ValueError on an empty group or a non-finite value."""
    values = [float(value) for value in accuracies]
    if not values:
        raise ValueError("accuracy rewards: a group needs at least one rollout, got an empty group")
    for index, value in enumerate(values):
        if math.isnan(value):
            raise ValueError(f"accuracy rewards: rollout {index} has a NaN accuracy reward")
        if math.isinf(value):
            raise ValueError(f"accuracy rewards: rollout {index} has an infinite accuracy reward ({value})")
    return values


def is_difficult(accuracies: Sequence[float]) -> bool:
    """True iff every rollout of the group has accuracy reward exactly 0."""
    return all(value == 0.0 for value in checked_accuracies(accuracies))


def difficult_groups(groups: Sequence[Sequence[float]]) -> list[bool]:
    """`is_difficult` for each group of a batch."""
    return [is_difficult(group) for group in groups]


def detection_enabled(step: int, cold_start_steps: int) -> bool:
    """Difficulty detection runs from optimizer step `cold_start_steps` on (steps count from 0)."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if cold_start_steps < 0:
        raise ValueError(f"cold_start_steps must be >= 0, got {cold_start_steps}")
    return step >= cold_start_steps


def next_hint_level(
    level: int, ladder: Sequence[float], *, difficult: bool, solvable: bool = True
) -> int | None:
    """The level to regenerate a group at, or None when the group at `level` is final.

    `solvable` is False for a prompt without a worked solution (or whose gold answer did not parse): such a
    prompt is never hinted. Level `len(ladder)` is the last rung: a difficult group there is final.
    """
    if not 0 <= level <= len(ladder):
        raise ValueError(
            f"hint level must be in 0..{len(ladder)} for a ladder of {len(ladder)} ratios, got {level}"
        )
    if not difficult or not solvable or level == len(ladder):
        return None
    return level + 1


def plan_next_level(
    accuracies: Sequence[float],
    level: int,
    ladder: Sequence[float],
    *,
    step: int,
    cold_start_steps: int,
    solvable: bool = True,
) -> int | None:
    """One decision of the step: the level to regenerate at, or None if this group is kept as final.

    During the cold start nothing is escalated. A group that starts above level 0 (the broker remembered a
    level that worked) is still escalated on failure, since detection is what the cold start switches off.
    """
    difficult = is_difficult(accuracies)  # validates the rewards even during the cold start
    if not detection_enabled(step, cold_start_steps):
        return None
    return next_hint_level(level, ladder, difficult=difficult, solvable=solvable)
