"""Group advantages: unbiased std as TRL, eps, no-std option, G = 1, NaN rejection, zero-advantage groups."""

import math

import pytest

torch = pytest.importorskip("torch")

from ghpo.trainer.core.advantages import group_advantages, group_std, zero_advantage_groups  # noqa: E402


def test_advantages_by_hand_with_unbiased_std():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    mean = 0.25
    std = math.sqrt(((0.75**2) + 3 * (0.25**2)) / 3)  # divide by G - 1
    expected = torch.tensor([(r - mean) / (std + 1e-4) for r in (1.0, 0.0, 0.0, 0.0)], dtype=torch.float64)
    torch.testing.assert_close(group_advantages(rewards, 4), expected)


def test_groups_are_normalised_independently():
    first = group_advantages(torch.tensor([1.0, 0.0, 0.5, 1.5], dtype=torch.float64), 2)
    second = group_advantages(torch.tensor([0.0, 0.0, 0.5, 1.5], dtype=torch.float64), 2)
    torch.testing.assert_close(first[2:], second[2:])
    assert torch.equal(second[:2], torch.zeros(2, dtype=torch.float64))


def test_all_correct_group_gives_zero_advantages():
    assert torch.equal(group_advantages(torch.ones(8), 8), torch.zeros(8))


def test_all_wrong_group_gives_zero_advantages():
    assert torch.equal(group_advantages(torch.zeros(8), 8), torch.zeros(8))


def test_group_of_one_gives_zero_advantage_and_std():
    rewards = torch.tensor([1.0, 0.0, 1.5])
    assert torch.equal(group_advantages(rewards, 1), torch.zeros(3))
    assert torch.equal(group_std(rewards, 1), torch.zeros(3))


def test_without_std_scaling_advantages_are_mean_centred():
    rewards = torch.tensor([1.5, 0.5, 0.0, 0.0])
    torch.testing.assert_close(
        group_advantages(rewards, 4, scale=False), torch.tensor([1.0, 0.0, -0.5, -0.5])
    )


def test_eps_is_added_to_the_std():
    rewards = torch.tensor([1.0, 0.0], dtype=torch.float64)
    std = math.sqrt(0.5)
    torch.testing.assert_close(
        group_advantages(rewards, 2, eps=0.5), torch.tensor([0.5, -0.5]).double() / (std + 0.5)
    )


def test_nan_reward_is_rejected():
    with pytest.raises(ValueError, match="non-finite"):
        group_advantages(torch.tensor([1.0, float("nan")]), 2)


def test_rewards_that_do_not_split_into_groups_are_rejected():
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="flat"):
        group_advantages(torch.zeros(2, 4), 4)
    with pytest.raises(ValueError, match="group_size must be >= 1"):
        group_advantages(torch.zeros(4), 0)


def test_zero_advantage_groups_are_detected():
    rewards = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 0.5, 0.0, 0.0])
    assert zero_advantage_groups(rewards, 2).tolist() == [True, False, True, True]
    assert zero_advantage_groups(rewards, 1).all()
