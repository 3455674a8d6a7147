"""A rollout Batch becomes padded micro-batches: rows in order, prompts left-padded and completions
right-padded so every completion starts at one column, masks and flags per row."""

from __future__ import annotations

import types

import pytest
import torch

from ghpo.shared.schemas.rollout import Batch, Completion, ScoredGroup
from ghpo.trainer.train.batches import (
    batch_stats,
    hinted_advantage_share,
    micro_batches,
    rescues_by_level,
    trainable,
)
from ghpo.trainer.train.step import completion_logps

PAD = 0


def completion(tokens, advantage, *, version=0, finish="stop", reward=None):
    return Completion(
        token_ids=tokens,
        behaviour_logprobs=[-0.5 - i for i in range(len(tokens))],
        finish_reason=finish,
        reward=reward if reward is not None else advantage,
        accuracy=1.0 if advantage > 0 else 0.0,
        advantage=advantage,
        policy_version=version,
    )


def group(gid, prompt, completions, level=0, temperature=1.0, plain=None):
    return ScoredGroup(
        group_id=gid,
        prompt_id=gid,
        epoch=0,
        hint_level=level,
        hint_ratio=0.0 if level == 0 else 0.25,
        prompt_token_ids=prompt,
        plain_prompt_token_ids=plain,
        temperature=temperature,
        completions=completions,
        created_at=1.0,
    )


BATCH = Batch(
    batch_id="b1",
    groups=[
        group("g1", [5, 6, 7], [completion([11, 12], 1.0), completion([13], -1.0, finish="length")]),
        group("g2", [8], [completion([14, 15, 16], 0.5, version=3), completion([17], -0.5)], level=1),
    ],
    created_at=1.0,
)


def test_rows_are_left_padded_prompts_then_right_padded_completions():
    (mb,) = micro_batches(BATCH, micro_batch_size=8, pad_token_id=PAD)
    assert mb.prompt_width == 3 and mb.input_ids.tolist() == [
        [5, 6, 7, 11, 12, PAD],
        [5, 6, 7, 13, PAD, PAD],
        [PAD, PAD, 8, 14, 15, 16],
        [PAD, PAD, 8, 17, PAD, PAD],
    ]
    assert mb.attention_mask.tolist()[2] == [0, 0, 1, 1, 1, 1]
    assert mb.position_ids.tolist()[2] == [0, 0, 0, 1, 2, 3]  # real tokens count from 0, as in inference
    assert mb.completion_mask.tolist() == [[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 0]]
    assert mb.behaviour_logps.tolist()[0] == [-0.5, -1.5, 0.0]
    assert mb.advantages.tolist() == [1.0, -1.0, 0.5, -0.5]
    assert mb.hinted.tolist() == [False, False, True, True]
    assert mb.truncated.tolist() == [False, True, False, False]
    assert mb.policy_versions.tolist() == [0, 0, 3, 0]
    assert mb.tokens == 7


def test_micro_batches_keep_row_order_and_pad_each_on_its_own():
    first, second = micro_batches(BATCH, micro_batch_size=2, pad_token_id=PAD)
    assert first.rows == second.rows == 2
    assert first.input_ids.tolist() == [[5, 6, 7, 11, 12], [5, 6, 7, 13, PAD]]
    assert second.prompt_width == 1 and second.completion_ids.tolist() == [[14, 15, 16], [17, PAD, PAD]]
    with pytest.raises(ValueError, match="micro_batch_size"):
        micro_batches(BATCH, micro_batch_size=0, pad_token_id=PAD)


def test_group_by_length_puts_rows_of_like_prompt_length_together_and_keeps_each_row_whole():
    hinted = group(
        "g3", [8, 9, 10, 21, 22, 23, 24], [completion([18], 1.0), completion([19, 20], -1.0)], level=2
    )
    mixed = BATCH.model_copy(update={"groups": [BATCH.groups[0], hinted, BATCH.groups[1]]})
    in_order = micro_batches(mixed, micro_batch_size=3, pad_token_id=PAD)
    grouped = micro_batches(mixed, micro_batch_size=3, pad_token_id=PAD, group_by_length=True)

    assert [mb.prompt_width for mb in in_order] == [7, 7]  # the hinted group straddles both
    assert [mb.prompt_width for mb in grouped] == [3, 7]  # prompt lengths 1, 1, 3 | 3, 7, 7
    cells = sum(mb.input_ids.numel() for mb in grouped)
    assert cells < sum(mb.input_ids.numel() for mb in in_order)

    # the same rows, each with its own advantage, flags and behaviour log-probs
    def rows(mbs):
        return sorted(
            (
                tuple(mb.completion_ids[i][mb.completion_mask[i].bool()].tolist()),
                float(mb.advantages[i]),
                bool(mb.hinted[i]),
                tuple(mb.behaviour_logps[i][mb.completion_mask[i].bool()].tolist()),
            )
            for mb in mbs
            for i in range(mb.rows)
        )

    assert rows(grouped) == rows(in_order)
    assert sum(mb.tokens for mb in grouped) == sum(mb.tokens for mb in in_order)


def test_a_batch_whose_advantages_are_all_zero_is_not_trainable():
    flat = BATCH.model_copy(deep=True)
    for g in flat.groups:
        for c in g.completions:
            c.advantage = 0.0
    assert trainable(BATCH) and not trainable(flat)


def test_batch_stats_report_difficult_and_zero_advantage_shares():
    stats = batch_stats(BATCH)
    assert stats["difficult_fraction"] == 0.5  # g2 ended hinted
    assert stats["zero_advantage_fraction"] == 0.0
    assert stats["reward_mean"] == pytest.approx(0.0)


def scored(gid, level, rounds, accuracies, advantages=None):
    advantages = advantages or [0.0] * len(accuracies)
    g = group(gid, [1], [completion([2], a) for a in advantages], level=level)
    completions = [
        c.model_copy(update={"accuracy": acc}) for c, acc in zip(g.completions, accuracies, strict=True)
    ]
    return g.model_copy(update={"generation_rounds": rounds, "completions": completions})


def test_rescue_counts_follow_each_group_up_its_ladder():
    batch = Batch(
        batch_id="b2",
        groups=[
            scored("plain", 0, 1, [1.0, 0.0]),  # solved without a hint: no hint level tried
            scored("at-2", 2, 3, [1.0, 0.0]),  # levels 1 and 2 tried, rescued at 2
            scored("failed", 3, 4, [0.0, 0.0]),  # 1, 2, 3 tried, nothing rescued it
            scored("memory", 3, 1, [0.0, 1.0]),  # started at 3 (ghpo-memory), rescued there
        ],
        created_at=1.0,
    )
    assert rescues_by_level(batch) == {"1": [2, 0], "2": [2, 1], "3": [2, 1]}


def test_hinted_advantage_share_is_the_hinted_groups_part_of_all_absolute_advantage():
    batch = Batch(
        batch_id="b3",
        groups=[
            scored("plain", 0, 1, [1.0, 0.0], [1.0, -1.0]),
            scored("hinted", 1, 2, [1.0, 0.0], [3.0, -3.0]),
        ],
        created_at=1.0,
    )
    assert hinted_advantage_share(batch) == pytest.approx(0.75)
    assert hinted_advantage_share(batch.model_copy(update={"groups": batch.groups[:1]})) == 0.0


class _FixedLogits(torch.nn.Module):
    """A "model" whose next-token logits are a fixed function of the input token: enough to see which
    distribution completion_logps takes its log-probs from."""

    def __init__(self, vocab: int = 20):
        super().__init__()
        self.table = torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(0)) * 3

    def forward(self, input_ids, **_):
        return types.SimpleNamespace(logits=self.table[input_ids])


def test_log_probs_are_those_of_the_policy_at_each_groups_sampling_temperature():
    batch = Batch(
        batch_id="t",
        groups=[
            group("cold", [5, 6], [completion([11, 12], 1.0)], temperature=0.5),
            group("warm", [7], [completion([13, 14], -1.0)]),
        ],
        created_at=1.0,
    )
    (mb,) = micro_batches(batch, micro_batch_size=8, pad_token_id=PAD)
    assert mb.temperatures.tolist() == [0.5, 1.0]
    model = _FixedLogits()
    logps, _ = completion_logps(model, mb)
    for row, temperature in enumerate([0.5, 1.0]):
        inputs = mb.input_ids[row, mb.prompt_width - 1 : -1]
        expected = torch.log_softmax(model.table[inputs] / temperature, dim=-1)
        expected = expected.gather(-1, mb.completion_ids[row].unsqueeze(-1)).squeeze(-1)
        assert torch.allclose(logps[row], expected, atol=1e-6)


def test_a_kept_unhinted_completion_trains_on_the_plain_prompt_as_a_plain_row():
    kept = completion([21, 22], -1.0).model_copy(update={"unhinted": True})
    rescued = group("g3", [9, 9, 9, 9], [kept, completion([23], 1.0)], level=2, plain=[4])
    batch = Batch(batch_id="b2", groups=[rescued], created_at=1.0)
    (mb,) = micro_batches(batch, micro_batch_size=8, pad_token_id=PAD)
    assert mb.input_ids[0].tolist()[:4] == [PAD, PAD, PAD, 4]  # the plain prompt, left-padded
    assert mb.input_ids[1].tolist()[:4] == [9, 9, 9, 9]
    assert mb.hinted.tolist() == [False, True]
    assert hinted_advantage_share(batch) == pytest.approx(0.5)  # the kept row's weight is not the hint's


def test_a_completion_flagged_unhinted_needs_a_hinted_group_with_the_plain_prompt():
    kept = completion([21], -1.0).model_copy(update={"unhinted": True})
    with pytest.raises(ValueError, match="plain_prompt_token_ids"):
        group("g4", [9], [kept], level=1)
    with pytest.raises(ValueError, match="hinted group"):
        group("g5", [9], [kept], level=0, plain=[4])
