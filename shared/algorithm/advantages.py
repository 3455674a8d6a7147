"""Group-relative advantages of GRPO/GHPO, in plain Python: A_i = (R_i - mean_G) / (std_G + eps).

The one implementation: the rollout server gives every final group its advantages with it, the trainer
trains on what arrives in the batch, and the tests check it against TRL's convention.

Conventions, chosen to match TRL's GRPOTrainer (the reference code is a TRL fork):
- std_G is the *unbiased* (Bessel-corrected, divide by G - 1) standard deviation, as TRL's `nanstd`;
- a group of one rollout (G = 1) has std 0 and advantage 0 (R - mean = 0), as TRL does in that case;
- `scale=False` gives mean-centred rewards (TRL `scale_rewards="none"`, Dr. GRPO);
- eps (GHPOConfig.advantage_eps, 1e-4 by default) is added to the std, not under a square root.
Hinted or not, a prompt's final group is normalised on its own: a hinted group is a group like any other.

What it deliberately does not do: accept NaN rewards. TRL turns an unscorable completion into NaN and
then a zero advantage; here a NaN is a bug upstream (the verifier must return 0.0 or fail), so it raises.
Nor does it batch groups into tensors: a group is a few floats, and the trainer never recomputes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def checked_rewards(rewards: Sequence[float]) -> list[float]:
    """The group's rewards as floats; ValueError on an empty group or a non-finite reward."""
    values = [float(r) for r in rewards]
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"rewards must be a non-empty list of finite numbers, got {values[:8]}")
    return values


def group_std(rewards: Sequence[float]) -> float:
    """Unbiased std of one group; 0 for a group of one rollout."""
    values = checked_rewards(rewards)
    if len(values) == 1:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def group_advantages(rewards: Sequence[float], *, eps: float, scale: bool) -> list[float]:
    """Per-rollout advantages of one group, in the rewards' order."""
    values = checked_rewards(rewards)
    mean = sum(values) / len(values)
    centred = [v - mean for v in values]
    if not scale:
        return centred
    std = group_std(values)
    return [c / (std + eps) for c in centred]
