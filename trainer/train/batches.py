"""A rollout `Batch` -> micro-batches of padded tensors for the trainer's forward pass.

Row order is the batch's: groups in order, completions in order. Each micro-batch is padded on its own
(to its longest prompt and completion): prompts are LEFT-padded and completions RIGHT-padded, so every
completion starts at the same column P and its log-probs are logits[:, P-1 : P+T-1]. Position ids count
real tokens only, so a padded row sees exactly the positions inference saw. A row is *hinted* when its
group ended at a hint level > 0 and it was sampled from the hinted prompt (a kept unhinted completion of
such a group is a plain row, on the plain prompt), *truncated* when inference stopped it at the length
limit, *stale* when it was sampled under an older policy version than the trainer holds. Not here: any
model or loss.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

import torch

from ghpo.shared.schemas.rollout import Batch


@dataclass
class MicroBatch:
    input_ids: torch.Tensor  # (R, P + T) long
    attention_mask: torch.Tensor  # (R, P + T) long
    position_ids: torch.Tensor  # (R, P + T) long
    prompt_width: int  # P
    completion_ids: torch.Tensor  # (R, T) long
    completion_mask: torch.Tensor  # (R, T) float, 1 on completion tokens
    behaviour_logps: torch.Tensor  # (R, T) float, 0 on padding
    advantages: torch.Tensor  # (R,)
    hinted: torch.Tensor  # (R,) bool
    truncated: torch.Tensor  # (R,) bool
    policy_versions: torch.Tensor  # (R,) long
    temperatures: torch.Tensor  # (R,) float, the sampling temperature of each row's group

    @property
    def rows(self) -> int:
        return int(self.input_ids.size(0))

    @property
    def tokens(self) -> int:
        return int(self.completion_mask.sum())


@dataclass(frozen=True)
class _Row:
    prompt: list[int]
    completion: list[int]
    behaviour: list[float]
    advantage: float
    hinted: bool
    truncated: bool
    version: int
    temperature: float


def _rows(batch: Batch) -> list[_Row]:
    return [
        _Row(
            prompt=group.plain_prompt_token_ids if c.unhinted else group.prompt_token_ids,
            completion=c.token_ids,
            behaviour=c.behaviour_logprobs,
            advantage=c.advantage,
            hinted=group.hint_level > 0 and not c.unhinted,
            truncated=c.finish_reason == "length",
            version=c.policy_version,
            temperature=group.temperature,
        )
        for group in batch.groups
        for c in group.completions
    ]


def _collate(rows: list[_Row], pad_token_id: int) -> MicroBatch:
    width_p = max(len(r.prompt) for r in rows)
    width_t = max(1, max(len(r.completion) for r in rows))
    n = len(rows)
    input_ids = torch.full((n, width_p + width_t), pad_token_id, dtype=torch.long)
    attention = torch.zeros((n, width_p + width_t), dtype=torch.long)
    completion_mask = torch.zeros((n, width_t), dtype=torch.float32)
    behaviour = torch.zeros((n, width_t), dtype=torch.float32)
    for i, r in enumerate(rows):
        p, t = len(r.prompt), len(r.completion)
        input_ids[i, width_p - p : width_p] = torch.tensor(r.prompt, dtype=torch.long)
        attention[i, width_p - p : width_p] = 1
        if t:
            input_ids[i, width_p : width_p + t] = torch.tensor(r.completion, dtype=torch.long)
            attention[i, width_p : width_p + t] = 1
            completion_mask[i, :t] = 1.0
            behaviour[i, :t] = torch.tensor(r.behaviour, dtype=torch.float32)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    return MicroBatch(
        input_ids=input_ids,
        attention_mask=attention,
        position_ids=positions,
        prompt_width=width_p,
        completion_ids=input_ids[:, width_p:],
        completion_mask=completion_mask,
        behaviour_logps=behaviour,
        advantages=torch.tensor([r.advantage for r in rows], dtype=torch.float32),
        hinted=torch.tensor([r.hinted for r in rows], dtype=torch.bool),
        truncated=torch.tensor([r.truncated for r in rows], dtype=torch.bool),
        policy_versions=torch.tensor([r.version for r in rows], dtype=torch.long),
        temperatures=torch.tensor([r.temperature for r in rows], dtype=torch.float32),
    )


def micro_batches(
    batch: Batch,
    micro_batch_size: int,
    pad_token_id: int,
    *,
    rank: int = 0,
    world: int = 1,
    group_by_length: bool = False,
) -> list[MicroBatch]:
    """The batch's rows in order, `micro_batch_size` rows per micro-batch (the last may be smaller);
    with several data-parallel ranks, rank r takes rows r, r + world, ... (every rank at least one).
    `group_by_length` orders each rank's rows by (prompt, completion) length first (a stable sort): a GHPO
    batch mixes short plain prompts with long hinted ones, and in batch order nearly every micro-batch holds
    a hinted group, so every row is padded to its prompt."""
    if micro_batch_size < 1:
        raise ValueError(f"micro_batch_size must be >= 1, got {micro_batch_size}")
    rows = _rows(batch)
    if world > 1:
        if len(rows) < world:
            raise ValueError(f"batch {batch.batch_id} has {len(rows)} rows for {world} data-parallel ranks")
        rows = rows[rank::world]
    if group_by_length:
        rows = sorted(rows, key=lambda r: (len(r.prompt), len(r.completion)))
    return [
        _collate(rows[i : i + micro_batch_size], pad_token_id) for i in range(0, len(rows), micro_batch_size)
    ]


def batch_stats(batch: Batch) -> dict[str, float]:
    """Reward-sparsity figures of a batch: difficult and zero-advantage group fractions, mean reward."""
    groups = batch.groups
    rewards = [c.reward for g in groups for c in g.completions]
    zero_adv = sum(1 for g in groups if len({c.reward for c in g.completions}) == 1)
    difficult = sum(1 for g in groups if g.hint_level > 0 or (g.plain_accuracy == 0.0))
    return {
        "difficult_fraction": difficult / len(groups),
        "zero_advantage_fraction": zero_adv / len(groups),
        "reward_mean": sum(rewards) / max(1, len(rewards)),
    }


def rescues_by_level(batch: Batch) -> dict[str, list[int]]:
    """{hint level: [groups tried at it, groups it rescued]} for levels >= 1.

    A group's rounds climb one level each from its start level (0 under the paper's policy, the remembered
    level under ghpo-memory) to its final level, so the levels it tried are final - rounds + 1 .. final.
    Every level but the final one left the group all wrong (that is why it climbed); the final one rescued
    it when at least one completion there is right."""
    counts: dict[int, list[int]] = {}
    for g in batch.groups:
        start = g.hint_level - g.generation_rounds + 1
        for level in range(max(1, start), g.hint_level + 1):
            tried = counts.setdefault(level, [0, 0])
            tried[0] += 1
            if level == g.hint_level and any(c.accuracy == 1.0 for c in g.completions):
                tried[1] += 1
    return {str(level): counts[level] for level in sorted(counts)}


def hinted_advantage_share(batch: Batch) -> float | None:
    """Share of the batch's summed |advantage| that sits on rows of hinted groups: how much of the policy
    gradient's weight the hints supplied (None when every advantage is 0)."""
    total = hinted = 0.0
    for g in batch.groups:
        for c in g.completions:
            total += abs(c.advantage)
            hinted += abs(c.advantage) if g.hint_level > 0 and not c.unhinted else 0.0
    return hinted / total if total else None


def batch_sparsity_record(batch: Batch) -> dict[str, Any]:
    """`batch_stats` plus groups by final hint level, the rollout accuracy without / with hints, the rescue
    counts per hint level and the hinted share of the advantage weight."""
    groups = batch.groups
    by_level = collections.Counter(str(g.hint_level) for g in groups)
    plain = [g.plain_accuracy for g in groups if g.plain_accuracy is not None]
    hinted = [c.accuracy for g in groups if g.hint_level > 0 for c in g.completions if not c.unhinted]
    return batch_stats(batch) | {
        "groups_by_level": dict(sorted(by_level.items(), key=lambda kv: int(kv[0]))),
        "plain_accuracy": sum(plain) / len(plain) if plain else None,
        "hinted_accuracy": sum(hinted) / len(hinted) if hinted else None,
        "rescues_by_level": rescues_by_level(batch),
        "hinted_advantage_share": hinted_advantage_share(batch),
    }


def trainable(batch: Batch) -> bool:
    """False when no completion token would get a gradient: every advantage is 0 or there are no tokens."""
    return any(c.advantage != 0.0 and c.token_ids for g in batch.groups for c in g.completions)
