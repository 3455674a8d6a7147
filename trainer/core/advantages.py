"""Group-relative advantages of GRPO/GHPO: A_i = (R_i - mean_G) / (std_G + eps).

Conventions, chosen to match TRL's GRPOTrainer (the reference code is a TRL fork):
- rewards are one flat tensor of `num_groups * group_size` values, each group contiguous;
- std_G is the *unbiased* (Bessel-corrected, divide by G - 1) standard deviation, as TRL's `nanstd`;
- a group of one rollout (G = 1) has std 0 and advantage 0 (R - mean = 0), as TRL does in that case;
- `scale=False` gives mean-centred rewards (TRL `scale_rewards="none"`, Dr. GRPO);
- eps defaults to 1e-4, added to the std, not under a square root.
Hinted or not, a prompt's final group is normalised on its own: a hinted group is a group like any other.

What it deliberately does not do: accept NaN rewards. TRL turns an unscorable completion into NaN and
then a zero advantage; here a NaN is a bug upstream (the verifier must return 0.0 or fail), so it raises.
"""

from __future__ import annotations

import torch


def _grouped(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    if rewards.dim() != 1:
        raise ValueError(
            f"rewards must be flat (num_groups * group_size values), got shape {tuple(rewards.shape)}"
        )
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if rewards.numel() == 0 or rewards.numel() % group_size != 0:
        raise ValueError(f"rewards: {rewards.numel()} values do not split into groups of {group_size}")
    if not torch.isfinite(rewards).all():
        bad = torch.nonzero(~torch.isfinite(rewards)).flatten().tolist()
        raise ValueError(f"rewards: non-finite (NaN or inf) reward at positions {bad[:8]}")
    return rewards.view(-1, group_size)


def group_std(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Unbiased std of each group, shape (num_groups,); 0 for groups of one rollout."""
    grouped = _grouped(rewards, group_size)
    if group_size == 1:
        return torch.zeros(grouped.size(0), dtype=rewards.dtype, device=rewards.device)
    return grouped.std(dim=1, correction=1)


def group_advantages(
    rewards: torch.Tensor, group_size: int, *, eps: float = 1e-4, scale: bool = True
) -> torch.Tensor:
    """Per-rollout advantages, same shape as `rewards` (flat, groups contiguous)."""
    grouped = _grouped(rewards, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale:
        centred = centred / (group_std(rewards, group_size).unsqueeze(1) + eps)
    return centred.reshape(-1)


def zero_advantage_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Bool (num_groups,): groups whose rollouts all share one reward, hence give no gradient."""
    grouped = _grouped(rewards, group_size)
    return (grouped == grouped[:, :1]).all(dim=1)
